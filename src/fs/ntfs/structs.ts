/**
 * Every NTFS on-disk structure the reader touches, declared once with the names of the Linux-NTFS
 * documentation / ntfs-3g's layout.h (NTFS_BOOT_SECTOR, MFT_RECORD, ATTR_RECORD, ...) and libyal's
 * "New Technologies File System (NTFS)" notes. Each declaration is a table of field offsets; the
 * decoders below read through it, so parsing code never uses a bare offset. All fields are
 * little-endian. Times are 100 ns intervals since 1601-01-01 UTC.
 */
import { CorruptStructureError } from '../../util/errors.js';
import { readI64, readU64 } from '../../util/bounded.js';

/** NTFS_BOOT_SECTOR (layout.h): the first sector of the volume. */
export const NTFS_BOOT_SECTOR = {
  oem_id: 0x03, // "NTFS    "
  bytes_per_sector: 0x0b, // u16, BPB
  sectors_per_cluster: 0x0d, // u8; > 0x80 means 2^(256 - value) (clusters above 64 KiB)
  number_of_sectors: 0x28, // s64
  mft_lcn: 0x30, // s64
  mftmirr_lcn: 0x38, // s64
  clusters_per_mft_record: 0x40, // s8; negative means 2^-value bytes
  clusters_per_index_record: 0x44, // s8; same encoding
  volume_serial_number: 0x48, // u64
  end_of_sector_marker: 0x1fe, // u16 0xAA55
  SIZE: 512,
} as const;
export const NTFS_OEM_ID = 'NTFS    ';

/** The update sequence header shared by MFT_RECORD and INDEX_BLOCK (NTFS_RECORD in layout.h). */
export const NTFS_RECORD = {
  magic: 0x00, // u32: "FILE", "INDX" ("BAAD" after a failed multi-sector write)
  usa_ofs: 0x04, // u16: offset of the update sequence array
  usa_count: 0x06, // u16: 1 + number of 512-byte strides protected
} as const;
/** Fixups protect every NTFS_BLOCK_SIZE stride, whatever the sector size (layout.h). */
export const NTFS_BLOCK_SIZE = 512;

/** MFT_RECORD (FILE record header, layout.h). */
export const MFT_RECORD = {
  ...NTFS_RECORD,
  lsn: 0x08, // u64
  sequence_number: 0x10, // u16
  link_count: 0x12, // u16: number of FILE_NAME attributes (hard links, DOS names included)
  attrs_offset: 0x14, // u16
  flags: 0x16, // u16: MFT_RECORD_FLAGS
  bytes_in_use: 0x18, // u32
  bytes_allocated: 0x1c, // u32
  base_mft_record: 0x20, // u64 MFT_REF: 0 for a base record
  next_attr_instance: 0x28, // u16
  mft_record_number: 0x2c, // u32 (NTFS 3.1+)
  SIZE: 0x30,
} as const;
export const MFT_RECORD_IN_USE = 0x0001;
export const MFT_RECORD_IS_DIRECTORY = 0x0002;

/** ATTR_RECORD: the header every attribute starts with; resident and non-resident tails. */
export const ATTR_RECORD = {
  type: 0x00, // u32 ATTR_TYPES; 0xFFFFFFFF ends the list
  length: 0x04, // u32
  non_resident: 0x08, // u8
  name_length: 0x09, // u8, in UTF-16 units
  name_offset: 0x0a, // u16
  flags: 0x0c, // u16 ATTR_FLAGS
  instance: 0x0e, // u16
  // resident
  value_length: 0x10, // u32
  value_offset: 0x14, // u16
  resident_flags: 0x16, // u8
  RESIDENT_SIZE: 0x18,
  // non-resident
  lowest_vcn: 0x10, // s64
  highest_vcn: 0x18, // s64
  mapping_pairs_offset: 0x20, // u16
  compression_unit: 0x22, // u8: log2 of clusters per compression unit (4 => 16)
  allocated_size: 0x28, // s64
  data_size: 0x30, // s64
  initialized_size: 0x38, // s64
  compressed_size: 0x40, // s64, only when compressed or sparse
  NON_RESIDENT_SIZE: 0x40,
} as const;
export const ATTR_END = 0xffffffff;
export const ATTR_IS_COMPRESSED = 0x0001;
export const ATTR_COMPRESSION_MASK = 0x00ff;
export const ATTR_IS_ENCRYPTED = 0x4000;
export const ATTR_IS_SPARSE = 0x8000;

/** ATTR_TYPES (layout.h). */
export const AT = {
  STANDARD_INFORMATION: 0x10,
  ATTRIBUTE_LIST: 0x20,
  FILE_NAME: 0x30,
  OBJECT_ID: 0x40,
  SECURITY_DESCRIPTOR: 0x50,
  VOLUME_NAME: 0x60,
  VOLUME_INFORMATION: 0x70,
  DATA: 0x80,
  INDEX_ROOT: 0x90,
  INDEX_ALLOCATION: 0xa0,
  BITMAP: 0xb0,
  REPARSE_POINT: 0xc0,
  EA_INFORMATION: 0xd0,
  EA: 0xe0,
  LOGGED_UTILITY_STREAM: 0x100,
} as const;

/** STANDARD_INFORMATION (NTFS 1.2: 48 bytes; 3.x: 72 bytes with owner/security ids). */
export const STANDARD_INFORMATION = {
  creation_time: 0x00,
  last_data_change_time: 0x08,
  last_mft_change_time: 0x10,
  last_access_time: 0x18,
  file_attributes: 0x20, // u32 FILE_ATTR_FLAGS
  owner_id: 0x30, // u32 (v3)
  security_id: 0x34, // u32 (v3): key into $Secure
  SIZE_V1: 48,
  SIZE_V3: 72,
} as const;

/** FILE_ATTR_FLAGS (DOS attributes and NTFS additions). */
export const FILE_ATTR = {
  READONLY: 0x0001,
  HIDDEN: 0x0002,
  SYSTEM: 0x0004,
  DIRECTORY: 0x0010,
  ARCHIVE: 0x0020,
  SPARSE_FILE: 0x0200,
  REPARSE_POINT: 0x0400,
  COMPRESSED: 0x0800,
  ENCRYPTED: 0x4000,
  DUP_FILE_NAME_INDEX_PRESENT: 0x10000000, // in FILE_NAME: the file is a directory
} as const;

/** FILE_NAME_ATTR: a name of the file in its parent directory (also the key of $I30 entries). */
export const FILE_NAME_ATTR = {
  parent_directory: 0x00, // u64 MFT_REF
  creation_time: 0x08,
  last_data_change_time: 0x10,
  last_mft_change_time: 0x18,
  last_access_time: 0x20,
  allocated_size: 0x28,
  data_size: 0x30,
  file_attributes: 0x38, // u32
  reparse_point_tag: 0x3c, // u32
  file_name_length: 0x40, // u8, UTF-16 units
  file_name_type: 0x41, // u8 FILE_NAME_TYPE_FLAGS
  file_name: 0x42,
  SIZE: 0x42,
} as const;
export const FILE_NAME_POSIX = 0;
export const FILE_NAME_WIN32 = 1;
export const FILE_NAME_DOS = 2;
export const FILE_NAME_WIN32_AND_DOS = 3;

/** INDEX_HEADER: starts the entries of an INDEX_ROOT value and of an INDEX_BLOCK. */
export const INDEX_HEADER = {
  entries_offset: 0x00, // u32, from the start of this header
  index_length: 0x04, // u32: bytes in use, from the start of this header
  allocated_size: 0x08, // u32
  ih_flags: 0x0c, // u8: LARGE_INDEX (1) = entries have child nodes
  SIZE: 0x10,
} as const;
export const LARGE_INDEX = 0x01;

/** INDEX_ROOT: the resident top of a B+tree ($I30 for directories). */
export const INDEX_ROOT = {
  type: 0x00, // u32: the attribute type indexed (FILE_NAME for $I30), 0 for view indexes
  collation_rule: 0x04, // u32
  index_block_size: 0x08, // u32
  clusters_per_index_block: 0x0c, // u8
  index: 0x10, // INDEX_HEADER
  SIZE: 0x20,
} as const;

/** INDEX_BLOCK ("INDX"): one node of the B+tree in $INDEX_ALLOCATION, protected by fixups. */
export const INDEX_BLOCK = {
  ...NTFS_RECORD,
  lsn: 0x08,
  index_block_vcn: 0x10, // s64
  index: 0x18, // INDEX_HEADER
  SIZE: 0x28,
} as const;

/** INDEX_ENTRY_HEADER; in a NODE entry the child's VCN is the entry's last 8 bytes. */
export const INDEX_ENTRY_HEADER = {
  indexed_file: 0x00, // u64 MFT_REF (directory indexes)
  data_offset: 0x00, // u16 (view indexes: $SII, $SDH, $R ...)
  data_length: 0x02, // u16
  length: 0x08, // u16: whole entry, 8-aligned
  key_length: 0x0a, // u16
  ie_flags: 0x0c, // u16
  key: 0x10,
  SIZE: 0x10,
} as const;
export const INDEX_ENTRY_NODE = 0x01;
export const INDEX_ENTRY_END = 0x02;

/** ATTR_LIST_ENTRY: one line of $ATTRIBUTE_LIST, naming the record that holds an attribute. */
export const ATTR_LIST_ENTRY = {
  type: 0x00, // u32
  length: 0x04, // u16
  name_length: 0x06, // u8
  name_offset: 0x07, // u8
  lowest_vcn: 0x08, // s64
  mft_reference: 0x10, // u64 MFT_REF
  instance: 0x18, // u16
  SIZE: 0x1a,
} as const;

/** REPARSE_POINT ($REPARSE_POINT value); non-Microsoft tags carry a 16-byte GUID before the data. */
export const REPARSE_POINT = {
  reparse_tag: 0x00, // u32
  reparse_data_length: 0x04, // u16
  reparse_data: 0x08,
  SIZE: 0x08,
} as const;
export const IO_REPARSE_TAG_IS_MICROSOFT = 0x80000000;
export const IO_REPARSE_TAG_MOUNT_POINT = 0xa0000003;
export const IO_REPARSE_TAG_SYMLINK = 0xa000000c;
export const IO_REPARSE_TAG_WOF = 0x80000017;
export const IO_REPARSE_TAG_DEDUP = 0x80000013;

/**
 * WOF_EXTERNAL_INFO: the start of an IO_REPARSE_TAG_WOF reparse point's data (Windows SDK
 * wofapi.h / ntifs.h; ntfs-3g-system-compression's system_compression.c): which WOF provider owns
 * the file.
 */
export const WOF_EXTERNAL_INFO = {
  Version: 0x00, // u32: WOF_CURRENT_VERSION
  Provider: 0x04, // u32: WOF_PROVIDER_WIM (1, WIMBoot) or WOF_PROVIDER_FILE (2, "compact")
  SIZE: 0x08,
} as const;
export const WOF_CURRENT_VERSION = 1;
export const WOF_PROVIDER_WIM = 1;
export const WOF_PROVIDER_FILE = 2;
/** FILE_PROVIDER_EXTERNAL_INFO_V1: follows WOF_EXTERNAL_INFO for the FILE provider. */
export const FILE_PROVIDER_EXTERNAL_INFO_V1 = {
  Version: 0x00, // u32: FILE_PROVIDER_CURRENT_VERSION
  Algorithm: 0x04, // u32: FILE_PROVIDER_COMPRESSION_*
  SIZE: 0x08,
} as const;
export const FILE_PROVIDER_CURRENT_VERSION = 1;
/** FILE_PROVIDER_COMPRESSION_*: the algorithm and so the chunk size (4/32/8/16 KiB). */
export const FILE_PROVIDER_COMPRESSION = {
  XPRESS4K: 0,
  LZX: 1,
  XPRESS8K: 2,
  XPRESS16K: 3,
} as const;
/** The named $DATA stream holding a FILE-provider file's chunk table and chunks. */
export const WOF_COMPRESSED_DATA_STREAM = 'WofCompressedData';

/** MOUNT_POINT_REPARSE_DATA / SYMLINK_REPARSE_DATA (offsets within reparse_data). */
export const MOUNT_POINT_REPARSE_DATA = {
  subst_name_offset: 0x00,
  subst_name_length: 0x02,
  print_name_offset: 0x04,
  print_name_length: 0x06,
  path_buffer: 0x08,
} as const;
export const SYMLINK_REPARSE_DATA = {
  ...MOUNT_POINT_REPARSE_DATA,
  flags: 0x08, // u32: SYMLINK_FLAG_RELATIVE (1)
  path_buffer: 0x0c,
} as const;
export const SYMLINK_FLAG_RELATIVE = 1;

/** VOLUME_INFORMATION ($Volume). */
export const VOLUME_INFORMATION = {
  major_ver: 0x08,
  minor_ver: 0x09,
  flags: 0x0a, // u16 VOLUME_FLAGS
  SIZE: 0x0c,
} as const;
export const VOLUME_IS_DIRTY = 0x0001;

/** INTX_FILE: how Interix (and ntfs-3g) store symlinks, devices, FIFOs and sockets in a system file. */
export const INTX_FILE = {
  magic: 0x00, // 8 bytes
  major: 0x08, // u64 (devices)
  minor: 0x10, // u64
  device_end: 0x18,
  target: 0x08, // UTF-16 (symlinks)
} as const;
export const INTX_SYMBOLIC_LINK = Buffer.from('IntxLNK\x01', 'latin1');
export const INTX_CHARACTER_DEVICE = Buffer.from('IntxCHR\x00', 'latin1');
export const INTX_BLOCK_DEVICE = Buffer.from('IntxBLK\x00', 'latin1');

/** SECURITY_DESCRIPTOR_RELATIVE (self-relative security descriptor). */
export const SECURITY_DESCRIPTOR_RELATIVE = {
  revision: 0x00,
  control: 0x02,
  owner: 0x04, // u32 offset of the owner SID
  group: 0x08,
  sacl: 0x0c,
  dacl: 0x10,
  SIZE: 0x14,
} as const;
/** SECURITY_DESCRIPTOR_HEADER: the $SDS entry header, also the data of a $SII index entry. */
export const SECURITY_DESCRIPTOR_HEADER = {
  hash: 0x00,
  security_id: 0x04,
  offset: 0x08, // u64: of this entry in $SDS
  length: 0x10, // u32: header + descriptor
  SIZE: 0x14,
} as const;

/** Well-known MFT record numbers (FILE_* in layout.h). */
export const FILE_MFT = 0;
export const FILE_MFTMirr = 1;
export const FILE_Volume = 3;
export const FILE_root = 5;
export const FILE_Bitmap = 6;
export const FILE_UpCase = 10;
export const FILE_Secure = 9;
export const FILE_first_user = 16;

/** MFT_REF: 48-bit record number and 16-bit sequence number. */
export function mftRefRecord(buf: Buffer, offset: number): number {
  return buf.readUInt32LE(offset) + buf.readUInt16LE(offset + 4) * 0x100000000;
}
export function mftRefSequence(buf: Buffer, offset: number): number {
  return buf.readUInt16LE(offset + 6);
}

/** 100 ns ticks since 1601 to ns since 1970 (exact in bigint). */
const EPOCH_DIFF_TICKS = 116444736000000000n;
export function ntfsTimeToNs(buf: Buffer, offset: number): bigint {
  return (buf.readBigInt64LE(offset) - EPOCH_DIFF_TICKS) * 100n;
}

export interface StandardInformation {
  creationNs: bigint;
  dataChangeNs: bigint;
  mftChangeNs: bigint;
  accessNs: bigint;
  fileAttributes: number;
  securityId?: number;
}

export function decodeStandardInformation(v: Buffer, where: string): StandardInformation {
  if (v.length < STANDARD_INFORMATION.SIZE_V1) {
    throw new CorruptStructureError('E_NTFS_ATTR', `${where}: STANDARD_INFORMATION is ${v.length} bytes, less than ${STANDARD_INFORMATION.SIZE_V1}`, { structure: 'STANDARD_INFORMATION', where, length: v.length });
  }
  const si: StandardInformation = {
    creationNs: ntfsTimeToNs(v, STANDARD_INFORMATION.creation_time),
    dataChangeNs: ntfsTimeToNs(v, STANDARD_INFORMATION.last_data_change_time),
    mftChangeNs: ntfsTimeToNs(v, STANDARD_INFORMATION.last_mft_change_time),
    accessNs: ntfsTimeToNs(v, STANDARD_INFORMATION.last_access_time),
    fileAttributes: v.readUInt32LE(STANDARD_INFORMATION.file_attributes),
  };
  if (v.length >= STANDARD_INFORMATION.SIZE_V3) si.securityId = v.readUInt32LE(STANDARD_INFORMATION.security_id);
  return si;
}

export interface FileName {
  parentRecord: number;
  parentSequence: number;
  fileAttributes: number;
  nameType: number;
  name: string;
  /** The UTF-16 code units (collation and $UpCase work on units, not code points). */
  units: Uint16Array;
  dataSize: number;
  reparseTag: number;
}

/** Decodes a FILE_NAME_ATTR (attribute value or $I30 key), checking the name fits in `v`. */
export function decodeFileName(v: Buffer, where: string): FileName {
  if (v.length < FILE_NAME_ATTR.SIZE) {
    throw new CorruptStructureError('E_NTFS_ATTR', `${where}: FILE_NAME is ${v.length} bytes, less than ${FILE_NAME_ATTR.SIZE}`, { structure: 'FILE_NAME_ATTR', where, length: v.length });
  }
  const n = v.readUInt8(FILE_NAME_ATTR.file_name_length);
  const end = FILE_NAME_ATTR.file_name + n * 2;
  if (end > v.length) {
    throw new CorruptStructureError('E_NTFS_ATTR', `${where}: FILE_NAME.file_name_length = ${n} runs past its ${v.length} bytes`, { structure: 'FILE_NAME_ATTR', field: 'file_name_length', where, value: n, limit: (v.length - FILE_NAME_ATTR.file_name) >> 1 });
  }
  const units = new Uint16Array(n);
  for (let i = 0; i < n; i++) units[i] = v.readUInt16LE(FILE_NAME_ATTR.file_name + i * 2);
  return {
    parentRecord: mftRefRecord(v, FILE_NAME_ATTR.parent_directory),
    parentSequence: mftRefSequence(v, FILE_NAME_ATTR.parent_directory),
    fileAttributes: v.readUInt32LE(FILE_NAME_ATTR.file_attributes),
    nameType: v.readUInt8(FILE_NAME_ATTR.file_name_type),
    name: v.toString('utf16le', FILE_NAME_ATTR.file_name, end),
    units,
    dataSize: Math.max(0, readI64Fast(v, FILE_NAME_ATTR.data_size, 'FILE_NAME_ATTR', 'data_size')),
    reparseTag: v.readUInt32LE(FILE_NAME_ATTR.reparse_point_tag),
  };
}

/**
 * readI64 without BigInts for the values that fit in 53 bits (all but the hostile ones, which
 * readI64 then refuses by name): an MFT record's parse reads five per non-resident attribute, and
 * a walk parses every record.
 */
export function readI64Fast(buf: Buffer, offset: number, structure: string, field: string): number {
  const lo = buf.readUInt32LE(offset);
  const hi = buf.readInt32LE(offset + 4);
  // |hi| < 2^21: |hi * 2^32 + lo| <= 2^53 - 1, exact
  if (hi > -0x200000 && hi < 0x200000) return hi * 0x100000000 + lo;
  return readI64(buf, offset, structure, field);
}

export { readU64, readI64 };
