/**
 * The volume layer's contract: what a disk is divided into. A Volume is a byte range of the disk
 * with its partition-table type and the filesystem found there by signature. The names ('p1',
 * 'p5', 'whole') are the names every later command uses (`p1/Windows/...`).
 */

export interface VolumeWarning {
  /** Stable code: W_GPT_BACKUP_USED, W_MBR_EBR_LOOP, W_PARTITION_PAST_END ... */
  code: string;
  message: string;
}

export type FsKind =
  | 'ntfs'
  | 'ext2'
  | 'ext3'
  | 'ext4'
  | 'fat12'
  | 'fat16'
  | 'fat32'
  | 'exfat'
  | 'swap'
  | 'lvm2'
  | 'bitlocker'
  | 'unknown'
  /** Not a filesystem container: an MBR extended partition. */
  | 'none';

export interface FsDetection {
  kind: FsKind;
  label?: string;
  /** As blkid prints it: ext/swap as a RFC 4122 string, NTFS as 16 hex digits, FAT/exFAT as XXXX-XXXX, LVM as its 38-char PV id. */
  uuid?: string;
}

export interface Volume {
  /** 'p1', 'p2' ... (Linux numbering: MBR logical partitions are p5 onwards); 'whole' on a disk without a table. */
  name: string;
  /** The partition number (p5 → 5); 0 for 'whole'. */
  index: number;
  /** Bytes from the start of the disk. */
  start: number;
  /** Bytes, as the table says (a partition past the disk's end keeps its size and gets a warning). */
  size: number;
  /** GPT type GUID in lowercase, or an MBR id as '0x83'; name is the human name fdisk shows. */
  type: { id: string; name: string };
  /** GPT UniquePartitionGUID, lowercase. */
  partUuid?: string;
  /** GPT PartitionName. */
  label?: string;
  /** MBR BootIndicator 0x80. */
  bootable?: boolean;
  filesystem: FsDetection;
}

export interface VolumeTable {
  scheme: 'gpt' | 'mbr' | 'none';
  sectorSize: number;
  /** GPT DiskGUID (lowercase) or the MBR disk signature as '0x1234abcd'. */
  diskGuid?: string;
  warnings: VolumeWarning[];
  volumes: Volume[];
}

/** The slice of a Disk the volume layer reads through. */
export type ReadAt = (offset: number, length: number) => Promise<Buffer>;
