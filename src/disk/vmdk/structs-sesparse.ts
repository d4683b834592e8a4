/**
 * The ESXi Space-Efficient sparse extent (createType seSparse). VMware has not published its
 * format; these names are those of qemu's block/vmdk.c (VMDKSESparseConstHeader,
 * VMDKSESparseVolatileHeader), which reads it, and we accept exactly what qemu accepts.
 *
 * Layout: a 512-byte const header at sector 0 whose fields are little-endian uint64 (offsets and
 * sizes in sectors) locating the volatile header, the journal, the grain directory, the grain
 * tables, the free bitmap, the backmap and the grains. A grain is 8 sectors (4 KiB); a grain table
 * has 4096 uint64 entries (64 sectors) and so covers 16 MiB.
 *
 * Grain directory entry (GDE): 0 = no grain table; otherwise the top 32 bits are 0x10000000 and the
 * low 32 bits are the index of the grain table in the grain tables area.
 * Grain table entry (GTE): the top nibble is the type:
 *   0x0 unallocated (the whole entry must be 0): read the parent;
 *   0x1 unmapped (SCSI UNMAP) and 0x2 zero: read as zeros, the parent is NOT read (qemu: VMDK_ZEROED);
 *   0x3 allocated: a grain index in the grains area, whose 60 bits are stored shuffled: entry bits
 *       48..59 hold the index's low 12 bits and entry bits 0..47 its high 48 bits.
 */

export const SESPARSE_CONST_HEADER_MAGIC = 0xcafebabe;
export const SESPARSE_VOLATILE_HEADER_MAGIC = 0xcafecafe;
/** version 0x0000000200000001: the only one qemu reads. */
export const SESPARSE_VERSION_HI = 0x00000002;
export const SESPARSE_VERSION_LO = 0x00000001;
export const SESPARSE_GRAIN_SECTORS = 8;
export const SESPARSE_GT_SECTORS = 64;
export const SESPARSE_GTES_PER_GT = (SESPARSE_GT_SECTORS * 512) / 8;
export const SESPARSE_GT_BYTES = SESPARSE_GT_SECTORS * 512;
/** qemu: "max supported size is 64TB" for an seSparse disk. */
export const SESPARSE_MAX_CAPACITY_SECTORS = (64 * 1024 ** 4) / 512;

/** GDE top 32 bits when a grain table is allocated. */
export const SESPARSE_GDE_ALLOCATED_HI = 0x10000000;
/** GTE types (top nibble of the entry). */
export const SESPARSE_GTE_UNALLOCATED = 0x0;
export const SESPARSE_GTE_UNMAPPED = 0x1;
export const SESPARSE_GTE_ZERO = 0x2;
export const SESPARSE_GTE_ALLOCATED = 0x3;

/** Byte offsets of VMDKSESparseConstHeader (each field a little-endian uint64). */
export const VMDKSESparseConstHeader = {
  SIZE: 512,
  magic: 0,
  version: 8,
  capacity: 16,
  grain_size: 24,
  grain_table_size: 32,
  flags: 40,
  reserved1: 48,
  reserved2: 56,
  reserved3: 64,
  reserved4: 72,
  volatile_header_offset: 80,
  volatile_header_size: 88,
  journal_header_offset: 96,
  journal_header_size: 104,
  journal_offset: 112,
  journal_size: 120,
  grain_dir_offset: 128,
  grain_dir_size: 136,
  grain_tables_offset: 144,
  grain_tables_size: 152,
  free_bitmap_offset: 160,
  free_bitmap_size: 168,
  backmap_offset: 176,
  backmap_size: 184,
  grains_offset: 192,
  grains_size: 200,
  pad: 208, // uint8_t[304]
} as const;

/** Byte offsets of VMDKSESparseVolatileHeader (uint64 fields). */
export const VMDKSESparseVolatileHeader = {
  SIZE: 512,
  magic: 0,
  free_gt_number: 8,
  next_txn_seq_number: 16,
  replay_journal: 24,
  pad: 32, // uint8_t[480]
} as const;

/** The uint64 fields of the const header after `flags`, in on-disk order (all sector counts/offsets). */
export const SESPARSE_REGION_FIELDS = [
  'volatile_header_offset',
  'volatile_header_size',
  'journal_header_offset',
  'journal_header_size',
  'journal_offset',
  'journal_size',
  'grain_dir_offset',
  'grain_dir_size',
  'grain_tables_offset',
  'grain_tables_size',
  'free_bitmap_offset',
  'free_bitmap_size',
  'backmap_offset',
  'backmap_size',
  'grains_offset',
  'grains_size',
] as const;
export type SeSparseRegionField = (typeof SESPARSE_REGION_FIELDS)[number];

export type SeSparseConstHeader = {
  /** Kept as bigint: the reader compares it with the magic before trusting anything else. */
  magic: bigint;
  version: bigint;
  capacity: bigint;
  grain_size: bigint;
  grain_table_size: bigint;
  flags: bigint;
  reserved: [bigint, bigint, bigint, bigint];
} & Record<SeSparseRegionField, bigint>;

export interface SeSparseVolatileHeader {
  magic: bigint;
  free_gt_number: bigint;
  next_txn_seq_number: bigint;
  replay_journal: bigint;
}

export function decodeSeSparseConstHeader(buf: Buffer): SeSparseConstHeader {
  const H = VMDKSESparseConstHeader;
  const u64 = (off: number): bigint => buf.readBigUInt64LE(off);
  const regions = {} as Record<SeSparseRegionField, bigint>;
  for (const f of SESPARSE_REGION_FIELDS) regions[f] = u64(H[f]);
  return {
    magic: u64(H.magic),
    version: u64(H.version),
    capacity: u64(H.capacity),
    grain_size: u64(H.grain_size),
    grain_table_size: u64(H.grain_table_size),
    flags: u64(H.flags),
    reserved: [u64(H.reserved1), u64(H.reserved2), u64(H.reserved3), u64(H.reserved4)],
    ...regions,
  };
}

export function encodeSeSparseConstHeader(h: SeSparseConstHeader): Buffer {
  const H = VMDKSESparseConstHeader;
  const buf = Buffer.alloc(H.SIZE);
  buf.writeBigUInt64LE(h.magic, H.magic);
  buf.writeBigUInt64LE(h.version, H.version);
  buf.writeBigUInt64LE(h.capacity, H.capacity);
  buf.writeBigUInt64LE(h.grain_size, H.grain_size);
  buf.writeBigUInt64LE(h.grain_table_size, H.grain_table_size);
  buf.writeBigUInt64LE(h.flags, H.flags);
  buf.writeBigUInt64LE(h.reserved[0], H.reserved1);
  buf.writeBigUInt64LE(h.reserved[1], H.reserved2);
  buf.writeBigUInt64LE(h.reserved[2], H.reserved3);
  buf.writeBigUInt64LE(h.reserved[3], H.reserved4);
  for (const f of SESPARSE_REGION_FIELDS) buf.writeBigUInt64LE(h[f], H[f]);
  return buf;
}

export function decodeSeSparseVolatileHeader(buf: Buffer): SeSparseVolatileHeader {
  const H = VMDKSESparseVolatileHeader;
  return {
    magic: buf.readBigUInt64LE(H.magic),
    free_gt_number: buf.readBigUInt64LE(H.free_gt_number),
    next_txn_seq_number: buf.readBigUInt64LE(H.next_txn_seq_number),
    replay_journal: buf.readBigUInt64LE(H.replay_journal),
  };
}

export function encodeSeSparseVolatileHeader(h: SeSparseVolatileHeader): Buffer {
  const H = VMDKSESparseVolatileHeader;
  const buf = Buffer.alloc(H.SIZE);
  buf.writeBigUInt64LE(h.magic, H.magic);
  buf.writeBigUInt64LE(h.free_gt_number, H.free_gt_number);
  buf.writeBigUInt64LE(h.next_txn_seq_number, H.next_txn_seq_number);
  buf.writeBigUInt64LE(h.replay_journal, H.replay_journal);
  return buf;
}

/** A GDE for grain table `index`. */
export function encodeSeSparseGde(index: number): bigint {
  return (BigInt(SESPARSE_GDE_ALLOCATED_HI) << 32n) | BigInt(index >>> 0);
}

/** A GTE: an allocated grain index (shuffled as described above), or a zero / unmapped marker. */
export function encodeSeSparseGte(type: 'allocated' | 'zero' | 'unmapped', grainIndex = 0): bigint {
  if (type === 'zero') return BigInt(SESPARSE_GTE_ZERO) << 60n;
  if (type === 'unmapped') return BigInt(SESPARSE_GTE_UNMAPPED) << 60n;
  const idx = BigInt(grainIndex);
  return (BigInt(SESPARSE_GTE_ALLOCATED) << 60n) | ((idx & 0xfffn) << 48n) | (idx >> 12n);
}

/** Grain directory entries needed to map `capacitySectors`. */
export function seSparseGdEntriesNeeded(capacitySectors: number): number {
  return Math.ceil(capacitySectors / (SESPARSE_GTES_PER_GT * SESPARSE_GRAIN_SECTORS));
}
