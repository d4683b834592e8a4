/**
 * On-disk structures of hosted sparse VMDK extents, declared once with the names of the VMware
 * Virtual Disk Format 1.1 specification ("Hosted Sparse Extents", "Stream-Optimized Compressed
 * Sparse Extents"). All fields are little-endian. Parsers read through these declarations; nothing
 * else in src/disk/vmdk uses a bare offset into a header or marker.
 *
 * COWD (vmfsSparse) and SEsparse structures live in their own files.
 */
import { readU64 } from '../../util/bounded.js';
import { CorruptStructureError } from '../../util/errors.js';

/** The bytes "KDMV" at offset 0 (spec: SPARSE_MAGICNUMBER 0x564d444b read as a little-endian uint32). */
export const SPARSE_MAGICNUMBER = 0x564d444b;

/**
 * Spec: SparseExtentHeader, packed, 512 bytes (one sector) at offset 0 of the extent, and a copy in
 * the footer of a stream-optimized extent whose gdOffset is GD_AT_END.
 *
 *   uint32 magicNumber; uint32 version; uint32 flags; SectorType capacity; SectorType grainSize;
 *   SectorType descriptorOffset; SectorType descriptorSize; uint32 numGTEsPerGT; SectorType rgdOffset;
 *   SectorType gdOffset; SectorType overHead; Bool uncleanShutdown; char singleEndLineChar;
 *   char nonEndLineChar; char doubleEndLineChar1; char doubleEndLineChar2; uint16 compressAlgorithm;
 *   uint8 pad[433];
 */
export const SparseExtentHeaderLayout = {
  magicNumber: 0,
  version: 4,
  flags: 8,
  capacity: 12,
  grainSize: 20,
  descriptorOffset: 28,
  descriptorSize: 36,
  numGTEsPerGT: 44,
  rgdOffset: 48,
  gdOffset: 56,
  overHead: 64,
  uncleanShutdown: 72,
  singleEndLineChar: 73,
  nonEndLineChar: 74,
  doubleEndLineChar1: 75,
  doubleEndLineChar2: 76,
  compressAlgorithm: 77,
  pad: 79,
} as const;
export const SPARSE_EXTENT_HEADER_SIZE = 512;

export interface SparseExtentHeader {
  magicNumber: number;
  version: number;
  flags: number;
  /** Sectors of the extent. */
  capacity: number;
  /** Sectors per grain. */
  grainSize: number;
  descriptorOffset: number;
  descriptorSize: number;
  numGTEsPerGT: number;
  rgdOffset: number;
  /** Sector of the grain directory, or GD_AT_END (then the footer's copy of the header holds it). */
  gdOffset: number | typeof GD_AT_END;
  overHead: number;
  uncleanShutdown: number;
  singleEndLineChar: number;
  nonEndLineChar: number;
  doubleEndLineChar1: number;
  doubleEndLineChar2: number;
  compressAlgorithm: number;
}

/** Spec: "gdOffset ... GD_AT_END (0xffffffffffffffff)": the grain directory follows the grains (stream-optimized). */
export const GD_AT_END = 'GD_AT_END' as const;
export const GD_AT_END_RAW = 0xffffffffffffffffn;

/** Spec: flags of SparseExtentHeader. */
export const SparseFlags = {
  /** bit 0: the newline characters below are valid (detects a file mangled by a text-mode transfer). */
  validNewlineTest: 1 << 0,
  /** bit 1: a redundant grain directory and tables are kept (rgdOffset). */
  redundantGrainTable: 1 << 1,
  /** bit 2: grain table entry 1 means "zeroed grain" (qemu: VMDK4_FLAG_ZERO_GRAIN; later VMware specs). */
  zeroedGrainGte: 1 << 2,
  /** bit 16: grains are compressed. */
  compressedGrains: 1 << 16,
  /** bit 17: there are markers (GrainMarker before each grain, Marker before metadata). */
  markers: 1 << 17,
} as const;

/** Spec: compressAlgorithm values. */
export const COMPRESSION_NONE = 0;
export const COMPRESSION_DEFLATE = 1;

/** The newline characters the spec requires when validNewlineTest is set. */
export const NEWLINE_CHECK = { singleEndLineChar: 0x0a, nonEndLineChar: 0x20, doubleEndLineChar1: 0x0d, doubleEndLineChar2: 0x0a } as const;

/** Grain table entries with a meaning of their own (spec: "Grain Table Entries"; qemu VMDK_GTE_ZEROED). */
export const GTE_UNALLOCATED = 0;
export const GTE_ZEROED = 1;
/** Bytes per grain directory and grain table entry (uint32 sector offsets). */
export const GDE_SIZE = 4;
export const GTE_SIZE = 4;

/**
 * Decodes a SparseExtentHeader from the first 512 bytes of `buf`. Only decodes (64-bit fields past
 * 2^53 are E_BOUND); the extent reader validates the values against the file and its limits.
 */
export function decodeSparseExtentHeader(buf: Buffer, where = 'SparseExtentHeader'): SparseExtentHeader {
  if (buf.length < SPARSE_EXTENT_HEADER_SIZE) {
    throw new CorruptStructureError('E_VMDK_HEADER', `${where}: ${buf.length} bytes, a header needs ${SPARSE_EXTENT_HEADER_SIZE}`, { structure: where, length: buf.length });
  }
  const L = SparseExtentHeaderLayout;
  const gdRaw = buf.readBigUInt64LE(L.gdOffset);
  return {
    magicNumber: buf.readUInt32LE(L.magicNumber),
    version: buf.readUInt32LE(L.version),
    flags: buf.readUInt32LE(L.flags),
    capacity: readU64(buf, L.capacity, where, 'capacity'),
    grainSize: readU64(buf, L.grainSize, where, 'grainSize'),
    descriptorOffset: readU64(buf, L.descriptorOffset, where, 'descriptorOffset'),
    descriptorSize: readU64(buf, L.descriptorSize, where, 'descriptorSize'),
    numGTEsPerGT: buf.readUInt32LE(L.numGTEsPerGT),
    rgdOffset: readU64(buf, L.rgdOffset, where, 'rgdOffset'),
    gdOffset: gdRaw === GD_AT_END_RAW ? GD_AT_END : readU64(buf, L.gdOffset, where, 'gdOffset'),
    overHead: readU64(buf, L.overHead, where, 'overHead'),
    uncleanShutdown: buf.readUInt8(L.uncleanShutdown),
    singleEndLineChar: buf.readUInt8(L.singleEndLineChar),
    nonEndLineChar: buf.readUInt8(L.nonEndLineChar),
    doubleEndLineChar1: buf.readUInt8(L.doubleEndLineChar1),
    doubleEndLineChar2: buf.readUInt8(L.doubleEndLineChar2),
    compressAlgorithm: buf.readUInt16LE(L.compressAlgorithm),
  };
}

/** Encodes a header (tests and image generators craft extents with it). */
export function encodeSparseExtentHeader(h: SparseExtentHeader): Buffer {
  const L = SparseExtentHeaderLayout;
  const buf = Buffer.alloc(SPARSE_EXTENT_HEADER_SIZE);
  buf.writeUInt32LE(h.magicNumber, L.magicNumber);
  buf.writeUInt32LE(h.version, L.version);
  buf.writeUInt32LE(h.flags >>> 0, L.flags);
  buf.writeBigUInt64LE(BigInt(h.capacity), L.capacity);
  buf.writeBigUInt64LE(BigInt(h.grainSize), L.grainSize);
  buf.writeBigUInt64LE(BigInt(h.descriptorOffset), L.descriptorOffset);
  buf.writeBigUInt64LE(BigInt(h.descriptorSize), L.descriptorSize);
  buf.writeUInt32LE(h.numGTEsPerGT, L.numGTEsPerGT);
  buf.writeBigUInt64LE(BigInt(h.rgdOffset), L.rgdOffset);
  buf.writeBigUInt64LE(h.gdOffset === GD_AT_END ? GD_AT_END_RAW : BigInt(h.gdOffset), L.gdOffset);
  buf.writeBigUInt64LE(BigInt(h.overHead), L.overHead);
  buf.writeUInt8(h.uncleanShutdown, L.uncleanShutdown);
  buf.writeUInt8(h.singleEndLineChar, L.singleEndLineChar);
  buf.writeUInt8(h.nonEndLineChar, L.nonEndLineChar);
  buf.writeUInt8(h.doubleEndLineChar1, L.doubleEndLineChar1);
  buf.writeUInt8(h.doubleEndLineChar2, L.doubleEndLineChar2);
  buf.writeUInt16LE(h.compressAlgorithm, L.compressAlgorithm);
  return buf;
}

/**
 * Spec: stream-optimized markers. Every grain is preceded by a GrainMarker
 *   { SectorType lba; uint32 size; uint8 data[size] }   (size > 0: deflated bytes follow)
 * and every metadata block by a Marker, one sector long
 *   { SectorType val; uint32 size (= 0); uint32 type; uint8 pad[496] }
 * whose `val` is the number of sectors of metadata that follow (GT, GD, footer) or 0 (EOS).
 */
export const MarkerLayout = { val: 0, size: 8, type: 12, data: 12 } as const;
/** Bytes of a GrainMarker before its deflated data (lba + size). */
export const GRAIN_MARKER_HEADER_SIZE = 12;
export const MARKER_SIZE = 512;

export const MARKER_EOS = 0;
export const MARKER_GT = 1;
export const MARKER_GD = 2;
export const MARKER_FOOTER = 3;

export interface Marker {
  /** lba of a GrainMarker, or sectors of metadata following a metadata Marker (as read: any 64-bit value). */
  val: bigint;
  /** Deflated bytes of a GrainMarker; 0 for a metadata Marker. */
  size: number;
  /** MARKER_EOS / GT / GD / FOOTER; meaningful only when size is 0. */
  type: number;
}

/** Decodes a (Grain)Marker from the start of `buf` (at least 16 bytes; a GrainMarker needs 12). */
export function decodeMarker(buf: Buffer, where = 'Marker'): Marker {
  if (buf.length < GRAIN_MARKER_HEADER_SIZE) {
    throw new CorruptStructureError('E_VMDK_MARKER', `${where}: ${buf.length} bytes, a marker needs ${GRAIN_MARKER_HEADER_SIZE}`, { structure: where, length: buf.length });
  }
  const size = buf.readUInt32LE(MarkerLayout.size);
  return {
    val: buf.readBigUInt64LE(MarkerLayout.val),
    size,
    type: size === 0 && buf.length >= 16 ? buf.readUInt32LE(MarkerLayout.type) : -1,
  };
}

/**
 * The footer of a stream-optimized extent with GD_AT_END, as qemu reads it (block/vmdk.c): the
 * last three sectors of the file are a Marker of type MARKER_FOOTER, a copy of the header (with
 * the real gdOffset), and the end-of-stream Marker.
 */
export const FOOTER_SIZE = 3 * MARKER_SIZE;
export const FooterLayout = { footerMarker: 0, header: MARKER_SIZE, eosMarker: 2 * MARKER_SIZE } as const;
