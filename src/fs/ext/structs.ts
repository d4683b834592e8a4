/**
 * Every on-disk structure of ext2/3/4, declared once, with the kernel's names (Linux fs/ext4/ext4.h,
 * ext4_extents.h, xattr.h, namei.c; Documentation/filesystems/ext4/*.rst "ext4 Data Structures and
 * Algorithms"). Offsets are bytes from the start of the structure; every integer is little-endian.
 * Parsers read fields through these names, never bare offsets.
 */

/** The primary superblock sits 1024 bytes into the volume whatever the block size (ext4 doc §"Super Block"). */
export const EXT4_SUPER_BLOCK_OFFSET = 1024;
export const EXT4_SUPER_MAGIC = 0xef53;

/** struct ext4_super_block (1024 bytes). */
export const ext4_super_block = {
  s_inodes_count: 0x0, // u32
  s_blocks_count_lo: 0x4, // u32
  s_r_blocks_count_lo: 0x8, // u32
  s_free_blocks_count_lo: 0xc, // u32
  s_free_inodes_count: 0x10, // u32
  s_first_data_block: 0x14, // u32: 1 on 1 KiB-block filesystems, else 0
  s_log_block_size: 0x18, // u32: block size = 2^(10 + this)
  s_log_cluster_size: 0x1c, // u32 (bigalloc)
  s_blocks_per_group: 0x20, // u32
  s_clusters_per_group: 0x24, // u32
  s_inodes_per_group: 0x28, // u32
  s_mtime: 0x2c, // u32
  s_wtime: 0x30, // u32
  s_mnt_count: 0x34, // u16
  s_max_mnt_count: 0x36, // u16
  s_magic: 0x38, // u16 0xEF53
  s_state: 0x3a, // u16: EXT4_VALID_FS 1, EXT4_ERROR_FS 2, EXT4_ORPHAN_FS 4
  s_errors: 0x3c, // u16
  s_minor_rev_level: 0x3e, // u16
  s_lastcheck: 0x40, // u32
  s_checkinterval: 0x44, // u32
  s_creator_os: 0x48, // u32
  s_rev_level: 0x4c, // u32: 0 EXT4_GOOD_OLD_REV (128-byte inodes, first ino 11), 1 EXT4_DYNAMIC_REV
  s_def_resuid: 0x50, // u16
  s_def_resgid: 0x52, // u16
  s_first_ino: 0x54, // u32 (dynamic rev)
  s_inode_size: 0x58, // u16 (dynamic rev)
  s_block_group_nr: 0x5a, // u16
  s_feature_compat: 0x5c, // u32
  s_feature_incompat: 0x60, // u32
  s_feature_ro_compat: 0x64, // u32
  s_uuid: 0x68, // 16 bytes
  s_volume_name: 0x78, // 16 bytes, NUL-padded
  s_last_mounted: 0x88, // 64 bytes
  s_algorithm_usage_bitmap: 0xc8, // u32
  s_prealloc_blocks: 0xcc, // u8
  s_prealloc_dir_blocks: 0xcd, // u8
  s_reserved_gdt_blocks: 0xce, // u16
  s_journal_uuid: 0xd0, // 16 bytes
  s_journal_inum: 0xe0, // u32
  s_journal_dev: 0xe4, // u32
  s_last_orphan: 0xe8, // u32: head of the orphan inode list (linked through i_dtime)
  s_hash_seed: 0xec, // 4 x u32: htree hash seed
  s_def_hash_version: 0xfc, // u8
  s_jnl_backup_type: 0xfd, // u8
  s_desc_size: 0xfe, // u16 (64bit)
  s_default_mount_opts: 0x100, // u32
  s_first_meta_bg: 0x104, // u32 (meta_bg)
  s_mkfs_time: 0x108, // u32
  s_jnl_blocks: 0x10c, // 17 x u32: a copy of the journal inode's i_block[] and size
  s_blocks_count_hi: 0x150, // u32 (64bit)
  s_r_blocks_count_hi: 0x154, // u32
  s_free_blocks_count_hi: 0x158, // u32
  s_min_extra_isize: 0x15c, // u16
  s_want_extra_isize: 0x15e, // u16
  s_flags: 0x160, // u32: EXT2_FLAGS_SIGNED_HASH 1, EXT2_FLAGS_UNSIGNED_HASH 2
  s_raid_stride: 0x164, // u16
  s_mmp_interval: 0x166, // u16
  s_mmp_block: 0x168, // u64
  s_raid_stripe_width: 0x170, // u32
  s_log_groups_per_flex: 0x174, // u8
  s_checksum_type: 0x175, // u8: 1 = crc32c
  s_encryption_level: 0x176, // u8
  s_kbytes_written: 0x178, // u64
  s_first_error_time: 0x198, // u32
  s_mount_opts: 0x200, // 64 bytes
  s_usr_quota_inum: 0x240, // u32
  s_grp_quota_inum: 0x244, // u32
  s_overhead_clusters: 0x248, // u32
  s_backup_bgs: 0x24c, // 2 x u32 (sparse_super2)
  s_encrypt_algos: 0x254, // 4 x u8
  s_encrypt_pw_salt: 0x258, // 16 bytes
  s_lpf_ino: 0x268, // u32
  s_prj_quota_inum: 0x26c, // u32
  s_checksum_seed: 0x270, // u32 (metadata_csum_seed): crc32c(~0, s_uuid)
  s_wtime_hi: 0x274, // u8
  s_mtime_hi: 0x275, // u8
  s_mkfs_time_hi: 0x276, // u8
  s_lastcheck_hi: 0x277, // u8
  s_encoding: 0x27c, // u16 (casefold): 1 = utf8
  s_encoding_flags: 0x27e, // u16
  s_orphan_file_inum: 0x280, // u32 (orphan_file)
  s_checksum: 0x3fc, // u32: crc32c of the 1020 bytes before it
  SIZE: 1024,
} as const;

export const EXT4_GOOD_OLD_REV = 0;
export const EXT4_GOOD_OLD_INODE_SIZE = 128;
export const EXT4_GOOD_OLD_FIRST_INO = 11;
export const EXT4_ROOT_INO = 2;
export const EXT4_MIN_BLOCK_LOG_SIZE = 10;
/** The kernel accepts block sizes up to 64 KiB (EXT4_MAX_BLOCK_LOG_SIZE 16). */
export const EXT4_MAX_BLOCK_LOG_SIZE = 16;
export const EXT4_CRC32C_CHKSUM = 1;
export const EXT2_FLAGS_SIGNED_HASH = 0x1;
export const EXT2_FLAGS_UNSIGNED_HASH = 0x2;
export const EXT4_VALID_FS = 0x1;
export const EXT4_ERROR_FS = 0x2;

/** s_feature_compat */
export const COMPAT = {
  DIR_PREALLOC: 0x1,
  IMAGIC_INODES: 0x2,
  HAS_JOURNAL: 0x4,
  EXT_ATTR: 0x8,
  RESIZE_INODE: 0x10,
  DIR_INDEX: 0x20,
  SPARSE_SUPER2: 0x200,
  FAST_COMMIT: 0x400,
  STABLE_INODES: 0x800,
  ORPHAN_FILE: 0x1000,
} as const;

/** s_feature_incompat */
export const INCOMPAT = {
  COMPRESSION: 0x1,
  FILETYPE: 0x2,
  RECOVER: 0x4, // the journal needs recovery
  JOURNAL_DEV: 0x8, // this is an external journal device, not a filesystem
  META_BG: 0x10,
  EXTENTS: 0x40,
  '64BIT': 0x80,
  MMP: 0x100,
  FLEX_BG: 0x200,
  EA_INODE: 0x400,
  DIRDATA: 0x1000,
  CSUM_SEED: 0x2000,
  LARGEDIR: 0x4000,
  INLINE_DATA: 0x8000,
  ENCRYPT: 0x10000,
  CASEFOLD: 0x20000,
} as const;
/** The incompat features this reader understands; any other bit means we cannot read the layout. */
export const INCOMPAT_SUPPORTED =
  INCOMPAT.FILETYPE | INCOMPAT.RECOVER | INCOMPAT.META_BG | INCOMPAT.EXTENTS | INCOMPAT['64BIT'] | INCOMPAT.MMP | INCOMPAT.FLEX_BG |
  INCOMPAT.EA_INODE | INCOMPAT.CSUM_SEED | INCOMPAT.LARGEDIR | INCOMPAT.INLINE_DATA | INCOMPAT.ENCRYPT | INCOMPAT.CASEFOLD;

/** s_feature_ro_compat */
export const RO_COMPAT = {
  SPARSE_SUPER: 0x1,
  LARGE_FILE: 0x2,
  BTREE_DIR: 0x4,
  HUGE_FILE: 0x8,
  GDT_CSUM: 0x10,
  DIR_NLINK: 0x20,
  EXTRA_ISIZE: 0x40,
  HAS_SNAPSHOT: 0x80,
  QUOTA: 0x100,
  BIGALLOC: 0x200,
  METADATA_CSUM: 0x400,
  REPLICA: 0x800,
  READONLY: 0x1000,
  PROJECT: 0x2000,
  SHARED_BLOCKS: 0x4000,
  VERITY: 0x8000,
  ORPHAN_PRESENT: 0x10000,
} as const;

/** struct ext4_group_desc: 32 bytes, or s_desc_size (>= 64) with the 64bit feature. */
export const ext4_group_desc = {
  bg_block_bitmap_lo: 0x0, // u32
  bg_inode_bitmap_lo: 0x4, // u32
  bg_inode_table_lo: 0x8, // u32
  bg_free_blocks_count_lo: 0xc, // u16
  bg_free_inodes_count_lo: 0xe, // u16
  bg_used_dirs_count_lo: 0x10, // u16
  bg_flags: 0x12, // u16
  bg_exclude_bitmap_lo: 0x14, // u32
  bg_block_bitmap_csum_lo: 0x18, // u16
  bg_inode_bitmap_csum_lo: 0x1a, // u16
  bg_itable_unused_lo: 0x1c, // u16
  bg_checksum: 0x1e, // u16: crc16 (gdt_csum) or crc32c & 0xFFFF (metadata_csum)
  bg_block_bitmap_hi: 0x20, // u32 (64bit)
  bg_inode_bitmap_hi: 0x24, // u32
  bg_inode_table_hi: 0x28, // u32
  bg_free_blocks_count_hi: 0x2c, // u16
  bg_free_inodes_count_hi: 0x2e, // u16
  bg_used_dirs_count_hi: 0x30, // u16
  bg_itable_unused_hi: 0x32, // u16
  SIZE: 32,
  SIZE_64BIT: 64,
} as const;
export const EXT4_MIN_DESC_SIZE_64BIT = 64;
export const EXT4_MAX_DESC_SIZE = 1024;
/** bg_flags */
export const EXT4_BG_INODE_UNINIT = 0x1;
export const EXT4_BG_BLOCK_UNINIT = 0x2;

/** struct ext4_inode. Fields past 128 bytes exist when i_extra_isize covers them (EXT4_FITS_IN_INODE). */
export const ext4_inode = {
  i_mode: 0x0, // u16
  i_uid: 0x2, // u16: low 16 bits
  i_size_lo: 0x4, // u32
  i_atime: 0x8, // u32 (signed seconds, extended by i_atime_extra's epoch bits)
  i_ctime: 0xc, // u32
  i_mtime: 0x10, // u32
  i_dtime: 0x14, // u32: deletion time; on the orphan list, the next orphan's inode number
  i_gid: 0x18, // u16: low 16 bits
  i_links_count: 0x1a, // u16
  i_blocks_lo: 0x1c, // u32
  i_flags: 0x20, // u32
  l_i_version: 0x24, // u32 (osd1, Linux)
  i_block: 0x28, // 15 x u32 (60 bytes): block map, extent tree root, fast symlink, inline data, device
  i_generation: 0x64, // u32
  i_file_acl_lo: 0x68, // u32: xattr block
  i_size_high: 0x6c, // u32
  i_obso_faddr: 0x70, // u32
  l_i_blocks_high: 0x74, // u16 (osd2, Linux)
  l_i_file_acl_high: 0x76, // u16
  l_i_uid_high: 0x78, // u16
  l_i_gid_high: 0x7a, // u16
  l_i_checksum_lo: 0x7c, // u16
  l_i_reserved: 0x7e, // u16
  i_extra_isize: 0x80, // u16: bytes of the large inode used past 128
  i_checksum_hi: 0x82, // u16
  i_ctime_extra: 0x84, // u32: bits 0-1 epoch (seconds bits 32-33), bits 2-31 nanoseconds
  i_mtime_extra: 0x88, // u32
  i_atime_extra: 0x8c, // u32
  i_crtime: 0x90, // u32
  i_crtime_extra: 0x94, // u32
  i_version_hi: 0x98, // u32
  i_projid: 0x9c, // u32
} as const;
/** Number of u32 slots in i_block (EXT4_N_BLOCKS): 12 direct, single, double, triple indirect. */
export const EXT4_N_BLOCKS = 15;
export const EXT4_NDIR_BLOCKS = 12;
export const EXT4_IND_BLOCK = 12;
export const EXT4_DIND_BLOCK = 13;
export const EXT4_TIND_BLOCK = 14;
export const EXT4_EPOCH_BITS = 2;
export const EXT4_EPOCH_MASK = (1 << EXT4_EPOCH_BITS) - 1;

/** i_flags (EXT4_*_FL). */
export const EXT4_FL = {
  SECRM: 0x1,
  UNRM: 0x2,
  COMPR: 0x4,
  SYNC: 0x8,
  IMMUTABLE: 0x10,
  APPEND: 0x20,
  NODUMP: 0x40,
  NOATIME: 0x80,
  ENCRYPT: 0x800,
  INDEX: 0x1000, // htree directory
  IMAGIC: 0x2000,
  JOURNAL_DATA: 0x4000,
  NOTAIL: 0x8000,
  DIRSYNC: 0x10000,
  TOPDIR: 0x20000,
  HUGE_FILE: 0x40000, // i_blocks counts filesystem blocks, not 512-byte sectors
  EXTENTS: 0x80000,
  VERITY: 0x100000,
  EA_INODE: 0x200000, // this inode holds a large xattr value
  INLINE_DATA: 0x10000000,
  PROJINHERIT: 0x20000000,
  CASEFOLD: 0x40000000,
} as const;

/** struct ext4_extent_header (ext4_extents.h): heads the tree in i_block and every tree block. */
export const ext4_extent_header = {
  eh_magic: 0x0, // u16 0xF30A
  eh_entries: 0x2, // u16
  eh_max: 0x4, // u16
  eh_depth: 0x6, // u16: 0 = the entries are leaves (ext4_extent)
  eh_generation: 0x8, // u32
  SIZE: 12,
} as const;
export const EXT4_EXT_MAGIC = 0xf30a;
/** The kernel refuses trees deeper than this (EXT4_MAX_EXTENT_DEPTH in ext4_extents.h). */
export const EXT4_MAX_EXTENT_DEPTH = 5;
/** struct ext4_extent_idx: an interior entry. */
export const ext4_extent_idx = {
  ei_block: 0x0, // u32: first logical block this subtree covers
  ei_leaf_lo: 0x4, // u32
  ei_leaf_hi: 0x8, // u16
  ei_unused: 0xa, // u16
  SIZE: 12,
} as const;
/** struct ext4_extent: a leaf entry. */
export const ext4_extent = {
  ee_block: 0x0, // u32: first logical block
  ee_len: 0x4, // u16: <= 32768 initialized; > 32768 uninitialized, length ee_len - 32768
  ee_start_hi: 0x6, // u16
  ee_start_lo: 0x8, // u32
  SIZE: 12,
} as const;
export const EXT_INIT_MAX_LEN = 32768;
/** struct ext4_extent_tail: a crc32c after eh_max entries of a tree block (metadata_csum). */
export const ext4_extent_tail = { et_checksum: 0x0, SIZE: 4 } as const;

/** struct ext4_dir_entry_2 (with the filetype feature; without it, name_len is a u16 and file_type absent). */
export const ext4_dir_entry_2 = {
  inode: 0x0, // u32: 0 = unused entry
  rec_len: 0x4, // u16: bytes to the next entry (EXT4_MAX_REC_LEN / 0 mean 64 KiB on 64 KiB blocks)
  name_len: 0x6, // u8
  file_type: 0x7, // u8
  name: 0x8, // name_len bytes, not NUL-terminated
  HEADER_SIZE: 8,
} as const;
export const EXT4_NAME_LEN = 255;
export const EXT4_MAX_REC_LEN = 65535;
/** EXT4_DIR_REC_LEN(1): the smallest entry the kernel's ext4_check_dir_entry accepts. */
export const EXT4_DIR_REC_LEN_MIN = 12;
/** file_type values (EXT4_FT_*). */
export const EXT4_FT = { UNKNOWN: 0, REG_FILE: 1, DIR: 2, CHRDEV: 3, BLKDEV: 4, FIFO: 5, SOCK: 6, SYMLINK: 7 } as const;
/** struct ext4_dir_entry_tail: a fake entry in the last 12 bytes of a leaf block holding its crc32c. */
export const ext4_dir_entry_tail = {
  det_reserved_zero1: 0x0, // u32 0 (looks like inode 0)
  det_rec_len: 0x4, // u16 12
  det_reserved_zero2: 0x6, // u8 0 (name_len)
  det_reserved_ft: 0x7, // u8 0xDE
  det_checksum: 0x8, // u32
  SIZE: 12,
} as const;
export const EXT4_FT_DIR_CSUM = 0xde;

/** struct dx_root_info, after the "." and ".." entries of an htree root block (namei.c). */
export const dx_root = {
  dot: 0, // 12-byte ext4_dir_entry_2 "."
  dotdot: 12, // ext4_dir_entry_2 ".." whose rec_len covers the rest of the block
  info: 24, // struct dx_root_info
  info_reserved_zero: 24, // u32
  info_hash_version: 28, // u8
  info_info_length: 29, // u8: 8
  info_indirect_levels: 30, // u8
  info_unused_flags: 31, // u8
  entries: 32, // dx_countlimit then dx_entry[]
} as const;
/** An interior htree node: a fake empty dirent of 8 bytes, then dx_countlimit + dx_entry[]. */
export const dx_node = { fake: 0, entries: 8 } as const;
/** struct dx_countlimit overlays the first dx_entry's hash. */
export const dx_countlimit = { limit: 0x0, count: 0x2, SIZE: 4 } as const;
export const dx_entry = { hash: 0x0, block: 0x4, SIZE: 8 } as const;
/** dx_get_block: the high 4 bits of dx_entry.block are reserved; the kernel masks them off. */
export const DX_BLOCK_MASK = 0x0fffffff;
/** The low bit of a dx_entry.hash: the leaf it points at continues a run of equal hashes from the previous leaf. */
export const DX_HASH_COLLISION = 0x1;
/** dx_root_info.info_length as the kernel and e2fsck write it (sizeof(struct dx_root_info)). */
export const DX_ROOT_INFO_LENGTH = 8;
/** dx_root_info.unused_flags bit the kernel refuses ("Unimplemented hash flags"). */
export const DX_ROOT_UNIMPLEMENTED_FLAGS = 0x1;
/** struct dx_tail after `limit` dx_entries (metadata_csum). */
export const dx_tail = { dt_reserved: 0x0, dt_checksum: 0x4, SIZE: 8 } as const;
/** Hash versions (DX_HASH_*). The unsigned variants are chosen by s_flags, not stored. */
export const DX_HASH = { LEGACY: 0, HALF_MD4: 1, TEA: 2, LEGACY_UNSIGNED: 3, HALF_MD4_UNSIGNED: 4, TEA_UNSIGNED: 5, SIPHASH: 6 } as const;
/** The kernel's htree depth limit with large_dir (EXT4_HTREE_LEVEL), 2 without. */
export const EXT4_HTREE_LEVEL = 3;
export const EXT4_HTREE_LEVEL_COMPAT = 2;

/** struct ext4_xattr_header: heads an xattr block. */
export const ext4_xattr_header = {
  h_magic: 0x0, // u32 0xEA020000
  h_refcount: 0x4, // u32
  h_blocks: 0x8, // u32: always 1
  h_hash: 0xc, // u32
  h_checksum: 0x10, // u32 (metadata_csum)
  h_reserved: 0x14, // 3 x u32
  SIZE: 32,
} as const;
/** struct ext4_xattr_ibody_header: heads the xattrs in a large inode, after i_extra_isize. */
export const ext4_xattr_ibody_header = { h_magic: 0x0, SIZE: 4 } as const;
export const EXT4_XATTR_MAGIC = 0xea020000;
/** struct ext4_xattr_entry; entries are padded to 4 bytes and end with a zero u32. */
export const ext4_xattr_entry = {
  e_name_len: 0x0, // u8
  e_name_index: 0x1, // u8
  e_value_offs: 0x2, // u16: from the block start, or from the first entry in the inode body
  e_value_inum: 0x4, // u32: ea_inode holding the value, else 0
  e_value_size: 0x8, // u32
  e_hash: 0xc, // u32
  e_name: 0x10, // e_name_len bytes
  HEADER_SIZE: 16,
} as const;
export const EXT4_XATTR_PAD = 4;
/** e_name_index to the prefix getfattr shows; indexes missing here are never listed (as the kernel). */
export const EXT4_XATTR_INDEX = {
  USER: 1,
  POSIX_ACL_ACCESS: 2,
  POSIX_ACL_DEFAULT: 3,
  TRUSTED: 4,
  LUSTRE: 5,
  SECURITY: 6,
  SYSTEM: 7, // system.data: inline data
  RICHACL: 8,
  ENCRYPTION: 9,
  HURD: 10,
} as const;
/** The largest xattr value the kernel accepts through the VFS (XATTR_SIZE_MAX). */
export const XATTR_SIZE_MAX = 65536;

/** The ext4 compact POSIX ACL (acl.h: ext4_acl_header, ext4_acl_entry, ext4_acl_entry_short). */
export const ext4_acl_header = { a_version: 0x0, SIZE: 4 } as const;
export const EXT4_ACL_VERSION = 1;
export const ext4_acl_entry = { e_tag: 0x0, e_perm: 0x2, e_id: 0x4, SIZE: 8, SHORT_SIZE: 4 } as const;
/** The VFS form getxattr returns (posix_acl_xattr_header version 2, 8-byte entries). */
export const POSIX_ACL_XATTR_VERSION = 2;
export const ACL_TAG = { USER_OBJ: 0x1, USER: 0x2, GROUP_OBJ: 0x4, GROUP: 0x8, MASK: 0x10, OTHER: 0x20 } as const;
export const ACL_UNDEFINED_ID = 0xffffffff;

/** Inline data: the first 60 bytes in i_block, the rest in the "system.data" xattr (inline.c). */
export const EXT4_MIN_INLINE_DATA_SIZE = 60;
export const EXT4_INLINE_DOTDOT_SIZE = 4;
