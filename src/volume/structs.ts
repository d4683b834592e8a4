/**
 * Every on-disk structure of the volume layer, declared once, with the field names of its own
 * documentation. Offsets are bytes from the start of the structure; all integers are little-endian
 * unless a comment says otherwise. Parsers read fields through these names, never bare offsets.
 */

/**
 * MBR / EBR sector (the classic "Master Boot Record"; UEFI 2.10 §5.2.1 Table 5-1, Legacy MBR).
 * 446 bytes of boot code, four 16-byte partition records, then the 0x55 0xAA boot signature.
 * An EBR (extended boot record) has the same layout; only its first two records are meaningful.
 */
export const MBR = {
  BootCode: 0,
  UniqueMBRDiskSignature: 440, // u32, the "disk identifier" sfdisk prints as 0x........
  PartitionRecord: 446, // 4 x MBR_PARTITION_RECORD
  PartitionRecordCount: 4,
  Signature: 510, // u16 0xAA55 (bytes 0x55 0xAA)
  SIZE: 512,
} as const;
export const MBR_SIGNATURE = 0xaa55;

/** One partition record of an MBR or EBR (UEFI 2.10 §5.2.1 Table 5-2). */
export const MBR_PARTITION_RECORD = {
  BootIndicator: 0, // u8: 0x80 bootable ("active"), 0x00 not; anything else is not a partition table
  StartingCHS: 1, // 3 bytes, ignored (LBA rules since the 1990s)
  OSType: 4, // u8: the partition type id (0x83 Linux, 0x07 NTFS, 0x05/0x0F/0x85 extended, 0xEE GPT protective)
  EndingCHS: 5, // 3 bytes, ignored
  StartingLBA: 8, // u32, in logical sectors; relative, in an EBR (see mbr.ts)
  SizeInLBA: 12, // u32, in logical sectors
  SIZE: 16,
} as const;

/** Extended partition container types: CHS extended, LBA extended (Windows), Linux extended. */
export const MBR_EXTENDED_TYPES: ReadonlySet<number> = new Set([0x05, 0x0f, 0x85]);
/** The protective MBR's single partition type: the disk holds a GPT (UEFI 2.10 §5.2.3). */
export const MBR_TYPE_GPT_PROTECTIVE = 0xee;

/** GPT header (UEFI 2.10 §5.3.2 Table 5-5), at LBA 1 (primary) and the disk's last LBA (backup). */
export const GPT_HEADER = {
  Signature: 0, // 8 bytes "EFI PART"
  Revision: 8, // u32, 0x00010000 for 1.0
  HeaderSize: 12, // u32, >= 92 and <= the logical block size
  HeaderCRC32: 16, // u32, CRC32 of HeaderSize bytes with this field zeroed
  Reserved: 20, // u32, must be zero
  MyLBA: 24, // u64, the LBA holding this header
  AlternateLBA: 32, // u64, the LBA of the other header
  FirstUsableLBA: 40, // u64
  LastUsableLBA: 48, // u64
  DiskGUID: 56, // 16 bytes, EFI_GUID
  PartitionEntryLBA: 72, // u64, start of this header's partition entry array
  NumberOfPartitionEntries: 80, // u32
  SizeOfPartitionEntry: 84, // u32, 128 x 2^n
  PartitionEntryArrayCRC32: 88, // u32, CRC32 of NumberOfPartitionEntries * SizeOfPartitionEntry bytes
  MIN_SIZE: 92,
} as const;
export const GPT_SIGNATURE = 'EFI PART';
export const GPT_REVISION_1_0 = 0x00010000;

/** GPT partition entry (UEFI 2.10 §5.3.3 Table 5-6). */
export const GPT_PARTITION_ENTRY = {
  PartitionTypeGUID: 0, // 16 bytes; all zero = unused entry
  UniquePartitionGUID: 16, // 16 bytes
  StartingLBA: 32, // u64
  EndingLBA: 40, // u64, inclusive
  Attributes: 48, // u64
  PartitionName: 56, // 72 bytes, 36 UTF-16LE code units, NUL-terminated when shorter
  PartitionNameBytes: 72,
  MIN_SIZE: 128,
} as const;

/** NTFS boot sector, "BIOS parameter block" (NTFS documentation of the Linux-NTFS project, "$Boot"). */
export const NTFS_BOOT_SECTOR = {
  OemId: 3, // 8 bytes "NTFS    "
  BytesPerSector: 0x0b, // u16
  SectorsPerCluster: 0x0d, // u8; > 0x80 means 2^(256 - value)
  MftLcn: 0x30, // u64, cluster of $MFT
  ClustersPerMftRecord: 0x40, // i8; negative means 2^(-value) bytes
  VolumeSerialNumber: 0x48, // u64
} as const;
export const NTFS_OEM_ID = 'NTFS    ';
/** $Volume is MFT record 3; its $VOLUME_NAME attribute (type 0x60) holds the label. */
export const NTFS_VOLUME_RECORD = 3;
export const MFT_RECORD = {
  Magic: 0, // "FILE"
  UsaOffset: 4, // u16, update sequence array offset
  UsaCount: 6, // u16, 1 + number of sectors the record spans
  AttrsOffset: 20, // u16, first attribute
  BytesInUse: 24, // u32
} as const;
export const ATTR_RECORD_HEADER = {
  Type: 0, // u32, 0xFFFFFFFF ends the list
  Length: 4, // u32
  NonResident: 8, // u8
  ValueLength: 16, // u32 (resident)
  ValueOffset: 20, // u16 (resident)
} as const;
export const NTFS_AT_VOLUME_NAME = 0x60;
export const NTFS_AT_END = 0xffffffff;

/** ext2/3/4 superblock (Linux fs/ext4/ext4.h, struct ext4_super_block), 1024 bytes into the volume. */
export const EXT4_SUPER_BLOCK_OFFSET = 1024;
export const ext4_super_block = {
  s_magic: 0x38, // u16 0xEF53
  s_feature_compat: 0x5c, // u32
  s_feature_incompat: 0x60, // u32
  s_feature_ro_compat: 0x64, // u32
  s_uuid: 0x68, // 16 bytes, printed in byte order
  s_volume_name: 0x78, // 16 bytes, NUL-padded
  SIZE: 1024,
} as const;
export const EXT4_SUPER_MAGIC = 0xef53;
export const EXT3_FEATURE_COMPAT_HAS_JOURNAL = 0x0004;
export const EXT3_FEATURE_INCOMPAT_JOURNAL_DEV = 0x0008;
/** The features an ext2 or ext3 driver knows (e2fsprogs' EXT2/EXT3_FEATURE_*_SUPP): anything else makes it ext4, as blkid decides. */
export const EXT3_FEATURE_INCOMPAT_SUPP = 0x0002 | 0x0004 | 0x0010; // FILETYPE | RECOVER | META_BG
export const EXT2_FEATURE_RO_COMPAT_SUPP = 0x0001 | 0x0002 | 0x0004; // SPARSE_SUPER | LARGE_FILE | BTREE_DIR

/** FAT boot sector and BPB (Microsoft "FAT: General Overview of On-Disk Format" 1.03, §3). */
export const FAT_BOOT_SECTOR = {
  BS_jmpBoot: 0, // 3 bytes: EB xx 90 or E9 xx xx
  BS_OEMName: 3,
  BPB_BytsPerSec: 11, // u16: 512, 1024, 2048, 4096
  BPB_SecPerClus: 13, // u8: power of 2, 1..128
  BPB_RsvdSecCnt: 14, // u16, non-zero
  BPB_NumFATs: 16, // u8
  BPB_RootEntCnt: 17, // u16 (0 on FAT32)
  BPB_TotSec16: 19, // u16
  BPB_Media: 21, // u8: 0xF0, 0xF8..0xFF
  BPB_FATSz16: 22, // u16 (0 on FAT32)
  BPB_TotSec32: 32, // u32
  // FAT12/FAT16 extended BPB (§3.2)
  BS_BootSig: 38, // u8 0x29 when the next three fields are present
  BS_VolID: 39, // u32
  BS_VolLab: 43, // 11 bytes
  BS_FilSysType: 54, // 8 bytes "FAT12   " / "FAT16   "
  // FAT32 extended BPB (§3.3)
  BPB_FATSz32: 36, // u32
  BS_BootSig32: 66,
  BS_VolID32: 67,
  BS_VolLab32: 71,
  BS_FilSysType32: 82, // "FAT32   "
} as const;
/** Cluster-count limits that decide the FAT type (FAT spec §3.5): the only correct way to tell. */
export const FAT12_MAX_CLUSTERS = 4084;
export const FAT16_MAX_CLUSTERS = 65524;

/** exFAT main boot sector (Microsoft exFAT specification §3.1). */
export const EXFAT_BOOT_SECTOR = {
  FileSystemName: 3, // 8 bytes "EXFAT   "
  ClusterHeapOffset: 88, // u32, sectors
  ClusterCount: 92, // u32
  FirstClusterOfRootDirectory: 96, // u32
  VolumeSerialNumber: 100, // u32
  BytesPerSectorShift: 108, // u8, 9..12
  SectorsPerClusterShift: 109, // u8, BytesPerSectorShift + this <= 25
} as const;
export const EXFAT_NAME = 'EXFAT   ';
/** exFAT directory entry: Volume Label (§7.3): EntryType 0x83, CharacterCount, VolumeLabel (11 UTF-16 units). */
export const EXFAT_VOLUME_LABEL_ENTRY = { EntryType: 0, CharacterCount: 1, VolumeLabel: 2, SIZE: 32 } as const;
export const EXFAT_ENTRY_VOLUME_LABEL = 0x83;

/** BitLocker volume header: the OEM id "-FVE-FS-" replaces NTFS's (libbde documentation §2). */
export const BITLOCKER_SIGNATURE = '-FVE-FS-';
export const BITLOCKER_SIGNATURE_OFFSET = 3;

/**
 * Linux swap header (include/linux/swap.h, union swap_header): the magic sits in the last 10 bytes
 * of the first page; the info block follows 1024 bytes of boot bits.
 */
export const SWAP_HEADER = {
  version: 1024, // u32
  last_page: 1028, // u32
  nr_badpages: 1032, // u32
  sws_uuid: 1036, // 16 bytes
  sws_volume: 1052, // 16 bytes label
} as const;
export const SWAP_MAGICS = ['SWAPSPACE2', 'SWAP-SPACE'] as const;
/** The page sizes mkswap may have used; the magic is at pagesize - 10. */
export const SWAP_PAGE_SIZES = [4096, 8192, 16384, 65536] as const;

/** LVM2 physical volume label (LVM2 lib/format_text/layout.h, struct label_header / pv_header). */
export const LVM2_LABEL_HEADER = {
  id: 0, // 8 bytes "LABELONE"
  sector_xl: 8, // u64, the sector holding this label
  crc_xl: 16, // u32
  offset_xl: 20, // u32, offset of the pv_header within this sector
  type: 24, // 8 bytes "LVM2 001"
} as const;
export const LVM2_LABEL_ID = 'LABELONE';
export const LVM2_LABEL_TYPE = 'LVM2 001';
export const LVM2_LABEL_SCAN_SECTORS = 4;
export const LVM2_PV_HEADER = { pv_uuid: 0, ID_LEN: 32 } as const;
