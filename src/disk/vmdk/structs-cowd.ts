/**
 * The ESX Server sparse extent (the "COWD" redo log, createType vmfsSparse), declared once with the
 * names of the VMware Virtual Disk Format 1.1 specification, section "ESX Server Sparse Extents".
 *
 * Layout of the file (spec): the 2048-byte COWDisk_Header in sectors 0..3, the grain directory at
 * gdOffset (numGDEntries little-endian uint32 sector numbers of grain tables, 0 = no table), grain
 * tables of 4096 uint32 grain table entries (the sector of the grain in this file, 0 = not in this
 * extent: read the parent), and the grains. Unlike the hosted SparseExtentHeader there is no
 * zeroed-grain GTE: qemu's VMDK3 path (block/vmdk.c, vmdk_open_vmfs_sparse) reads it the same way.
 */
/** magicNumber: the bytes 'C' 'O' 'W' 'D' at offset 0, i.e. 0x44574f43 read little-endian. */
export const COWD_MAGIC = 0x44574f43;
/** The only version the specification defines; a COWD with another version (the Workstation 3 "VMDK3") lays out its tables differently. */
export const COWD_VERSION = 1;
/** Grain table entries per grain table: fixed at 4096 for ESX Server sparse extents (spec). */
export const COWD_GTES_PER_GT = 4096;
export const COWD_GT_BYTES = COWD_GTES_PER_GT * 4;

export const COWDISK_MAX_PARENT_FILELEN = 1024;
export const COWDISK_MAX_NAME_LEN = 60;
export const COWDISK_MAX_DESC_LEN = 512;

/** Byte offsets of the COWDisk_Header fields (all little-endian uint32 unless noted). */
export const COWDisk_Header = {
  SIZE: 2048,
  magicNumber: 0,
  version: 4,
  flags: 8,
  /** Capacity of the extent in sectors. */
  numSectors: 12,
  /** Grain size in sectors. */
  grainSize: 16,
  /** Sector of the grain directory. */
  gdOffset: 20,
  numGDEntries: 24,
  /** The next free data sector (where the next grain would be allocated). */
  freeSector: 28,
  /** union u: a root disk records its geometry, a child (redo log) its parent. */
  u_root_cylinders: 32,
  u_root_heads: 36,
  u_root_sectors: 40,
  u_child_parentFileName: 32, // char[COWDISK_MAX_PARENT_FILELEN]
  u_child_parentGeneration: 32 + COWDISK_MAX_PARENT_FILELEN,
  generation: 1060,
  name: 1064, // char[COWDISK_MAX_NAME_LEN]
  description: 1124, // char[COWDISK_MAX_DESC_LEN]
  savedGeneration: 1636,
  reserved: 1640, // char[8]
  uncleanShutdown: 1648,
  padding: 1652, // char[396]
} as const;

/** The qemu bound on grainSize (block/vmdk.c vmdk_add_extent: a 1 GiB grain "is unrealistic"). */
export const COWD_MAX_GRAIN_SECTORS = 0x200000;
/** The qemu bound on the grain directory length (vmdk_add_extent: "L1 size too big"). */
export const COWD_MAX_GD_ENTRIES = 32 * 1024 * 1024;

export interface CowdHeader {
  magicNumber: number;
  version: number;
  flags: number;
  numSectors: number;
  grainSize: number;
  gdOffset: number;
  numGDEntries: number;
  freeSector: number;
  /** u.child.parentFileName (NUL-terminated); empty for a root disk. */
  parentFileName: string;
  parentGeneration: number;
  generation: number;
  name: string;
  description: string;
  savedGeneration: number;
  uncleanShutdown: number;
}

function cString(buf: Buffer, offset: number, length: number): string {
  const field = buf.subarray(offset, offset + length);
  const nul = field.indexOf(0);
  return field.subarray(0, nul < 0 ? field.length : nul).toString('latin1');
}

/** Decodes the header fields; validation is the reader's job (cowd.ts). `buf` holds >= 2048 bytes. */
export function decodeCowdHeader(buf: Buffer): CowdHeader {
  const H = COWDisk_Header;
  return {
    magicNumber: buf.readUInt32LE(H.magicNumber),
    version: buf.readUInt32LE(H.version),
    flags: buf.readUInt32LE(H.flags),
    numSectors: buf.readUInt32LE(H.numSectors),
    grainSize: buf.readUInt32LE(H.grainSize),
    gdOffset: buf.readUInt32LE(H.gdOffset),
    numGDEntries: buf.readUInt32LE(H.numGDEntries),
    freeSector: buf.readUInt32LE(H.freeSector),
    parentFileName: cString(buf, H.u_child_parentFileName, COWDISK_MAX_PARENT_FILELEN),
    parentGeneration: buf.readUInt32LE(H.u_child_parentGeneration),
    generation: buf.readUInt32LE(H.generation),
    name: cString(buf, H.name, COWDISK_MAX_NAME_LEN),
    description: cString(buf, H.description, COWDISK_MAX_DESC_LEN),
    savedGeneration: buf.readUInt32LE(H.savedGeneration),
    uncleanShutdown: buf.readUInt32LE(H.uncleanShutdown),
  };
}

/** Encodes a header (for the test-image generator and crafted-header tests). */
export function encodeCowdHeader(h: CowdHeader): Buffer {
  const H = COWDisk_Header;
  const buf = Buffer.alloc(H.SIZE);
  buf.writeUInt32LE(h.magicNumber, H.magicNumber);
  buf.writeUInt32LE(h.version, H.version);
  buf.writeUInt32LE(h.flags, H.flags);
  buf.writeUInt32LE(h.numSectors, H.numSectors);
  buf.writeUInt32LE(h.grainSize, H.grainSize);
  buf.writeUInt32LE(h.gdOffset, H.gdOffset);
  buf.writeUInt32LE(h.numGDEntries, H.numGDEntries);
  buf.writeUInt32LE(h.freeSector, H.freeSector);
  buf.write(h.parentFileName.slice(0, COWDISK_MAX_PARENT_FILELEN - 1), H.u_child_parentFileName, 'latin1');
  buf.writeUInt32LE(h.parentGeneration, H.u_child_parentGeneration);
  buf.writeUInt32LE(h.generation, H.generation);
  buf.write(h.name.slice(0, COWDISK_MAX_NAME_LEN - 1), H.name, 'latin1');
  buf.write(h.description.slice(0, COWDISK_MAX_DESC_LEN - 1), H.description, 'latin1');
  buf.writeUInt32LE(h.savedGeneration, H.savedGeneration);
  buf.writeUInt32LE(h.uncleanShutdown, H.uncleanShutdown);
  return buf;
}

/** Grain directory entries needed to map `numSectors` (spec: numGDEntries = CEILING(numSectors, gtCoverage)). */
export function cowdGdEntriesNeeded(numSectors: number, grainSize: number): number {
  return Math.ceil(numSectors / (COWD_GTES_PER_GT * grainSize));
}
