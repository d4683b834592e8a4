/**
 * The ext2/3/4 superblock and group descriptors (ext4 doc "Super Block", "Block Group Descriptors",
 * "Meta Block Groups"). parseSuperblock validates every geometry field before anything is derived
 * from it: a hostile superblock must not make us allocate or loop on its numbers.
 */
import { checkBound, expectField, safeMul } from '../../util/bounded.js';
import { UnsupportedError } from '../../util/errors.js';
import { crc32cUpdate, crc32cU32 } from './crc32c.js';
import {
  COMPAT,
  EXT4_CRC32C_CHKSUM,
  EXT4_GOOD_OLD_FIRST_INO,
  EXT4_GOOD_OLD_INODE_SIZE,
  EXT4_GOOD_OLD_REV,
  EXT4_MAX_BLOCK_LOG_SIZE,
  EXT4_MAX_DESC_SIZE,
  EXT4_MIN_BLOCK_LOG_SIZE,
  EXT4_MIN_DESC_SIZE_64BIT,
  EXT4_SUPER_MAGIC,
  INCOMPAT,
  INCOMPAT_SUPPORTED,
  RO_COMPAT,
  ext4_group_desc,
  ext4_super_block,
} from './structs.js';

/** Group counts past this are refused: 2^32 blocks / 8 Ki blocks per group on 1 KiB blocks is 2^19; 64bit grows it. */
export const MAX_GROUPS = 1 << 24;
/** Inodes per group cannot exceed one bitmap block's bits (8 * 64 KiB). */
export const MAX_INODES_PER_GROUP = 8 * 65536;

/** struct ext4_super_block, decoded: the kernel's field names, 64-bit halves joined. */
export interface Ext4SuperBlock {
  s_inodes_count: number;
  s_blocks_count: number;
  s_r_blocks_count: number;
  s_free_blocks_count: number;
  s_free_inodes_count: number;
  s_first_data_block: number;
  s_log_block_size: number;
  s_log_cluster_size: number;
  s_blocks_per_group: number;
  s_clusters_per_group: number;
  s_inodes_per_group: number;
  s_mtime: number;
  s_wtime: number;
  s_magic: number;
  s_state: number;
  s_errors: number;
  s_minor_rev_level: number;
  s_creator_os: number;
  s_rev_level: number;
  s_first_ino: number;
  s_inode_size: number;
  s_block_group_nr: number;
  s_feature_compat: number;
  s_feature_incompat: number;
  s_feature_ro_compat: number;
  s_uuid: string;
  s_volume_name: string;
  s_last_mounted: string;
  s_reserved_gdt_blocks: number;
  s_journal_uuid: string;
  s_journal_inum: number;
  s_journal_dev: number;
  s_last_orphan: number;
  s_hash_seed: number[];
  s_def_hash_version: number;
  s_jnl_backup_type: number;
  s_desc_size: number;
  s_default_mount_opts: number;
  s_first_meta_bg: number;
  s_mkfs_time: number;
  s_jnl_blocks: number[];
  s_min_extra_isize: number;
  s_want_extra_isize: number;
  s_flags: number;
  s_log_groups_per_flex: number;
  s_checksum_type: number;
  s_backup_bgs: [number, number];
  s_checksum_seed: number;
  s_encoding: number;
  s_encoding_flags: number;
  s_orphan_file_inum: number;
  s_checksum: number;
}

/** What follows from a validated superblock. */
export interface ExtGeometry {
  blockSize: number;
  groupCount: number;
  descSize: number;
  descPerBlock: number;
  inodeSize: number;
  /** crc32c seed of every metadata checksum but the superblock's (ext4_fill_super: s_csum_seed). */
  csumSeed: number;
  metadataCsum: boolean;
}

const S = 'ext4_super_block';

function cstr(b: Buffer, at: number, len: number): string {
  const s = b.subarray(at, at + len);
  const nul = s.indexOf(0);
  return s.subarray(0, nul < 0 ? len : nul).toString('utf8');
}

function uuid(b: Buffer, at: number): string {
  const h = b.toString('hex', at, at + 16);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

export function hasCompat(sb: Ext4SuperBlock, f: number): boolean {
  return (sb.s_feature_compat & f) !== 0;
}
export function hasIncompat(sb: Ext4SuperBlock, f: number): boolean {
  return (sb.s_feature_incompat & f) !== 0;
}
export function hasRoCompat(sb: Ext4SuperBlock, f: number): boolean {
  return (sb.s_feature_ro_compat & f) !== 0;
}

/** Decodes the 1024 bytes of a superblock and checks its magic; geometry is validated by superblockGeometry. */
export function parseSuperblock(b: Buffer): Ext4SuperBlock {
  expectField(b.length >= ext4_super_block.SIZE, 'E_EXT_SUPERBLOCK', S, 'SIZE', `${b.length} bytes, need ${ext4_super_block.SIZE}`);
  const F = ext4_super_block;
  const u32 = (o: number) => b.readUInt32LE(o);
  const u16 = (o: number) => b.readUInt16LE(o);
  const magic = u16(F.s_magic);
  expectField(magic === EXT4_SUPER_MAGIC, 'E_EXT_MAGIC', S, 's_magic', `0x${magic.toString(16)} is not 0xef53: not an ext2/3/4 filesystem`);
  const incompat = u32(F.s_feature_incompat);
  const is64 = (incompat & INCOMPAT['64BIT']) !== 0;
  const hi = (o: number) => (is64 ? u32(o) * 0x100000000 : 0);
  const rev = u32(F.s_rev_level);
  return {
    s_inodes_count: u32(F.s_inodes_count),
    s_blocks_count: u32(F.s_blocks_count_lo) + hi(F.s_blocks_count_hi),
    s_r_blocks_count: u32(F.s_r_blocks_count_lo) + hi(F.s_r_blocks_count_hi),
    s_free_blocks_count: u32(F.s_free_blocks_count_lo) + hi(F.s_free_blocks_count_hi),
    s_free_inodes_count: u32(F.s_free_inodes_count),
    s_first_data_block: u32(F.s_first_data_block),
    s_log_block_size: u32(F.s_log_block_size),
    s_log_cluster_size: u32(F.s_log_cluster_size),
    s_blocks_per_group: u32(F.s_blocks_per_group),
    s_clusters_per_group: u32(F.s_clusters_per_group),
    s_inodes_per_group: u32(F.s_inodes_per_group),
    s_mtime: u32(F.s_mtime),
    s_wtime: u32(F.s_wtime),
    s_magic: magic,
    s_state: u16(F.s_state),
    s_errors: u16(F.s_errors),
    s_minor_rev_level: u16(F.s_minor_rev_level),
    s_creator_os: u32(F.s_creator_os),
    s_rev_level: rev,
    // EXT4_GOOD_OLD_REV filesystems have fixed values here (ext4.h EXT4_FIRST_INO / EXT4_INODE_SIZE)
    s_first_ino: rev === EXT4_GOOD_OLD_REV ? EXT4_GOOD_OLD_FIRST_INO : u32(F.s_first_ino),
    s_inode_size: rev === EXT4_GOOD_OLD_REV ? EXT4_GOOD_OLD_INODE_SIZE : u16(F.s_inode_size),
    s_block_group_nr: u16(F.s_block_group_nr),
    s_feature_compat: u32(F.s_feature_compat),
    s_feature_incompat: incompat,
    s_feature_ro_compat: u32(F.s_feature_ro_compat),
    s_uuid: uuid(b, F.s_uuid),
    s_volume_name: cstr(b, F.s_volume_name, 16),
    s_last_mounted: cstr(b, F.s_last_mounted, 64),
    s_reserved_gdt_blocks: u16(F.s_reserved_gdt_blocks),
    s_journal_uuid: uuid(b, F.s_journal_uuid),
    s_journal_inum: u32(F.s_journal_inum),
    s_journal_dev: u32(F.s_journal_dev),
    s_last_orphan: u32(F.s_last_orphan),
    s_hash_seed: [0, 1, 2, 3].map((i) => u32(F.s_hash_seed + 4 * i)),
    s_def_hash_version: b.readUInt8(F.s_def_hash_version),
    s_jnl_backup_type: b.readUInt8(F.s_jnl_backup_type),
    s_desc_size: u16(F.s_desc_size),
    s_default_mount_opts: u32(F.s_default_mount_opts),
    s_first_meta_bg: u32(F.s_first_meta_bg),
    s_mkfs_time: u32(F.s_mkfs_time),
    s_jnl_blocks: Array.from({ length: 17 }, (_, i) => u32(F.s_jnl_blocks + 4 * i)),
    s_min_extra_isize: u16(F.s_min_extra_isize),
    s_want_extra_isize: u16(F.s_want_extra_isize),
    s_flags: u32(F.s_flags),
    s_log_groups_per_flex: b.readUInt8(F.s_log_groups_per_flex),
    s_checksum_type: b.readUInt8(F.s_checksum_type),
    s_backup_bgs: [u32(F.s_backup_bgs), u32(F.s_backup_bgs + 4)],
    s_checksum_seed: u32(F.s_checksum_seed),
    s_encoding: u16(F.s_encoding),
    s_encoding_flags: u16(F.s_encoding_flags),
    s_orphan_file_inum: u32(F.s_orphan_file_inum),
    s_checksum: u32(F.s_checksum),
  };
}

/** ext4_superblock_csum: crc32c(~0) over the bytes before s_checksum. */
export function superblockChecksum(b: Buffer): number {
  return crc32cUpdate(0xffffffff, b, 0, ext4_super_block.s_checksum);
}

/** Validates the geometry (every bound named) and derives block size, group count, descriptor size. */
export function superblockGeometry(sb: Ext4SuperBlock, volumeSize: number): ExtGeometry {
  const unsupported = sb.s_feature_incompat & ~INCOMPAT_SUPPORTED;
  if (unsupported !== 0) {
    if (sb.s_feature_incompat & INCOMPAT.JOURNAL_DEV) throw new UnsupportedError('E_EXT_JOURNAL_DEV', 'this is an external ext3/4 journal device, not a filesystem', { feature_incompat: sb.s_feature_incompat });
    throw new UnsupportedError('E_EXT_FEATURE', `incompatible ext4 features 0x${unsupported.toString(16)} are not supported`, { structure: S, field: 's_feature_incompat', value: `0x${unsupported.toString(16)}` });
  }
  checkBound(S, 's_log_block_size', sb.s_log_block_size, EXT4_MAX_BLOCK_LOG_SIZE - EXT4_MIN_BLOCK_LOG_SIZE);
  const blockSize = 1024 << sb.s_log_block_size;
  checkBound(S, 's_blocks_per_group', sb.s_blocks_per_group, blockSize * 8);
  expectField(sb.s_blocks_per_group > 0, 'E_EXT_SUPERBLOCK', S, 's_blocks_per_group', 'is zero');
  checkBound(S, 's_inodes_per_group', sb.s_inodes_per_group, Math.min(blockSize * 8, MAX_INODES_PER_GROUP));
  expectField(sb.s_inodes_per_group > 0, 'E_EXT_SUPERBLOCK', S, 's_inodes_per_group', 'is zero');
  expectField(sb.s_first_data_block < sb.s_blocks_count, 'E_EXT_SUPERBLOCK', S, 's_first_data_block', `${sb.s_first_data_block} is not below s_blocks_count ${sb.s_blocks_count}`);
  // ext4_fill_super: an inode size is a power of two between 128 and the block size
  const inodeSize = sb.s_inode_size;
  expectField(inodeSize >= EXT4_GOOD_OLD_INODE_SIZE && (inodeSize & (inodeSize - 1)) === 0, 'E_EXT_SUPERBLOCK', S, 's_inode_size', `${inodeSize} is not a power of two >= 128`);
  checkBound(S, 's_inode_size', inodeSize, blockSize);
  const groupCount = Math.ceil((sb.s_blocks_count - sb.s_first_data_block) / sb.s_blocks_per_group);
  checkBound(S, 'group count', groupCount, MAX_GROUPS, { s_blocks_count: sb.s_blocks_count, s_blocks_per_group: sb.s_blocks_per_group });
  // The inode count must be what the groups hold (ext4_fill_super checks exactly this)
  expectField(safeMul(groupCount, sb.s_inodes_per_group, S, 's_inodes_count') === sb.s_inodes_count, 'E_EXT_SUPERBLOCK', S, 's_inodes_count', `${sb.s_inodes_count} != ${groupCount} groups x ${sb.s_inodes_per_group}`);
  expectField(sb.s_first_ino >= 1 && sb.s_first_ino <= sb.s_inodes_count, 'E_EXT_SUPERBLOCK', S, 's_first_ino', `${sb.s_first_ino} outside 1..${sb.s_inodes_count}`);
  let descSize: number = ext4_group_desc.SIZE;
  if (sb.s_feature_incompat & INCOMPAT['64BIT']) {
    descSize = sb.s_desc_size;
    expectField(descSize >= EXT4_MIN_DESC_SIZE_64BIT && (descSize & (descSize - 1)) === 0, 'E_EXT_SUPERBLOCK', S, 's_desc_size', `${descSize} is not a power of two >= 64`);
    checkBound(S, 's_desc_size', descSize, Math.min(EXT4_MAX_DESC_SIZE, blockSize));
  }
  // A filesystem larger than its volume is a truncated image: reads past the end will fail loudly.
  checkBound(S, 's_blocks_count', sb.s_blocks_count, Math.floor(Number.MAX_SAFE_INTEGER / blockSize));
  void volumeSize;
  const metadataCsum = (sb.s_feature_ro_compat & RO_COMPAT.METADATA_CSUM) !== 0;
  if (metadataCsum) expectField(sb.s_checksum_type === EXT4_CRC32C_CHKSUM, 'E_EXT_SUPERBLOCK', S, 's_checksum_type', `${sb.s_checksum_type} is not crc32c (1)`);
  let csumSeed = 0;
  if (sb.s_feature_incompat & INCOMPAT.CSUM_SEED) csumSeed = sb.s_checksum_seed;
  else if (metadataCsum) csumSeed = crc32cUpdate(0xffffffff, Buffer.from(sb.s_uuid.replace(/-/g, ''), 'hex'));
  return { blockSize, groupCount, descSize, descPerBlock: blockSize / descSize, inodeSize, csumSeed, metadataCsum };
}

/** ext4_bg_has_super: does group g hold a superblock backup (and so a GDT copy)? */
export function groupHasSuper(sb: Ext4SuperBlock, g: number): boolean {
  if (g === 0) return true;
  if (sb.s_feature_compat & COMPAT.SPARSE_SUPER2) return g === sb.s_backup_bgs[0] || g === sb.s_backup_bgs[1];
  if (g <= 1 || !(sb.s_feature_ro_compat & RO_COMPAT.SPARSE_SUPER)) return true;
  if (!(g & 1)) return false;
  for (const base of [3, 5, 7]) {
    let n = base;
    while (n < g) n *= base;
    if (n === g) return true;
  }
  return false;
}

/**
 * The block holding group descriptor block `nr` (descriptor_loc in fs/ext4/super.c): contiguous
 * after the superblock, except with meta_bg past s_first_meta_bg, where each meta group's
 * descriptor block sits in its first group (after that group's superblock backup, if any).
 */
export function descriptorBlock(sb: Ext4SuperBlock, geo: ExtGeometry, nr: number): number {
  if (!(sb.s_feature_incompat & INCOMPAT.META_BG) || nr < sb.s_first_meta_bg) return sb.s_first_data_block + nr + 1;
  const bg = geo.descPerBlock * nr;
  let hasSuper = groupHasSuper(sb, bg) ? 1 : 0;
  if (geo.blockSize === 1024 && sb.s_first_data_block === 0) hasSuper++;
  return sb.s_first_data_block + bg * sb.s_blocks_per_group + hasSuper;
}

/** struct ext4_group_desc, decoded (64-bit halves joined when the descriptor is 64 bytes or more). */
export interface Ext4GroupDesc {
  bg_block_bitmap: number;
  bg_inode_bitmap: number;
  bg_inode_table: number;
  bg_free_blocks_count: number;
  bg_free_inodes_count: number;
  bg_used_dirs_count: number;
  bg_flags: number;
  bg_itable_unused: number;
  bg_checksum: number;
}

export function parseGroupDesc(b: Buffer, descSize: number): Ext4GroupDesc {
  const F = ext4_group_desc;
  const wide = descSize >= F.SIZE_64BIT;
  const u32hi = (lo: number, hi: number) => b.readUInt32LE(lo) + (wide ? b.readUInt32LE(hi) * 0x100000000 : 0);
  const u16hi = (lo: number, hi: number) => b.readUInt16LE(lo) + (wide ? b.readUInt16LE(hi) * 0x10000 : 0);
  return {
    bg_block_bitmap: u32hi(F.bg_block_bitmap_lo, F.bg_block_bitmap_hi),
    bg_inode_bitmap: u32hi(F.bg_inode_bitmap_lo, F.bg_inode_bitmap_hi),
    bg_inode_table: u32hi(F.bg_inode_table_lo, F.bg_inode_table_hi),
    bg_free_blocks_count: u16hi(F.bg_free_blocks_count_lo, F.bg_free_blocks_count_hi),
    bg_free_inodes_count: u16hi(F.bg_free_inodes_count_lo, F.bg_free_inodes_count_hi),
    bg_used_dirs_count: u16hi(F.bg_used_dirs_count_lo, F.bg_used_dirs_count_hi),
    bg_flags: b.readUInt16LE(F.bg_flags),
    bg_itable_unused: u16hi(F.bg_itable_unused_lo, F.bg_itable_unused_hi),
    bg_checksum: b.readUInt16LE(F.bg_checksum),
  };
}

/** ext4_group_desc_csum (metadata_csum): crc32c(seed, le32 group, desc with bg_checksum as zero) & 0xFFFF. */
export function groupDescChecksum(csumSeed: number, group: number, desc: Buffer): number {
  let crc = crc32cU32(csumSeed, group);
  crc = crc32cUpdate(crc, desc, 0, ext4_group_desc.bg_checksum);
  crc = crc32cUpdate(crc, Buffer.alloc(2));
  crc = crc32cUpdate(crc, desc, ext4_group_desc.bg_checksum + 2, desc.length);
  return crc & 0xffff;
}
