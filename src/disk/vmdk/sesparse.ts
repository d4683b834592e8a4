/**
 * The ESXi Space-Efficient sparse extent (seSparse) as a DiskLayer. The format is undocumented by
 * VMware; we follow qemu's block/vmdk.c (vmdk_open_se_sparse, check_se_sparse_const_header,
 * get_cluster_offset), which is our oracle, and accept what it accepts (see structs-sesparse.ts).
 *
 * Offsets are extent-relative bytes. An unallocated grain (or grain table) is a hole, so the parent
 * is read; a zero or unmapped grain reads as zeros and is reported 'zero' (qemu returns VMDK_ZEROED
 * for both and does not read the parent). Grain tables are read on demand into a ByteLru; grains
 * adjacent in the disk and in the file are read with one call.
 */
import type { ByteSource } from '../file.js';
import { SECTOR_SIZE } from '../types.js';
import { GrainedExtent, type GrainEntry } from './grained.js';
import { checkBound, expectField, MiB } from '../../util/bounded.js';
import { BoundExceededError, CorruptStructureError, UnsupportedError, type ErrorData } from '../../util/errors.js';
import {
  decodeSeSparseConstHeader,
  decodeSeSparseVolatileHeader,
  SESPARSE_CONST_HEADER_MAGIC,
  SESPARSE_GDE_ALLOCATED_HI,
  SESPARSE_GRAIN_SECTORS,
  SESPARSE_GT_BYTES,
  SESPARSE_GT_SECTORS,
  SESPARSE_GTE_ALLOCATED,
  SESPARSE_GTE_UNALLOCATED,
  SESPARSE_GTE_UNMAPPED,
  SESPARSE_GTE_ZERO,
  SESPARSE_GTES_PER_GT,
  SESPARSE_MAX_CAPACITY_SECTORS,
  SESPARSE_REGION_FIELDS,
  SESPARSE_VERSION_HI,
  SESPARSE_VERSION_LO,
  SESPARSE_VOLATILE_HEADER_MAGIC,
  seSparseGdEntriesNeeded,
  VMDKSESparseConstHeader,
  VMDKSESparseVolatileHeader,
  type SeSparseConstHeader,
  type SeSparseRegionField,
  type SeSparseVolatileHeader,
} from './structs-sesparse.js';

const CONST = 'VMDKSESparseConstHeader';
const VOLATILE = 'VMDKSESparseVolatileHeader';
const DEFAULT_CACHE_BYTES = 8 * MiB;
/** qemu's bound on the grain directory (vmdk_add_extent: "L1 size too big"), in entries. */
const MAX_GD_ENTRIES = 32 * 1024 * 1024;
/** Region offsets and sizes are sectors; past this their byte value is not a safe integer. */
const MAX_SECTOR_FIELD = Math.floor(Number.MAX_SAFE_INTEGER / SECTOR_SIZE);

export function isSeSparseExtent(head: Buffer): boolean {
  return (
    head.length >= 16 &&
    head.readUInt32LE(VMDKSESparseConstHeader.magic) === SESPARSE_CONST_HEADER_MAGIC &&
    head.readUInt32LE(VMDKSESparseConstHeader.magic + 4) === 0 &&
    head.readUInt32LE(VMDKSESparseConstHeader.version) === SESPARSE_VERSION_LO &&
    head.readUInt32LE(VMDKSESparseConstHeader.version + 4) === SESPARSE_VERSION_HI
  );
}

/** The const header's region fields as sector numbers (each bounded to a safe byte offset). */
type SeSparseRegions = Record<SeSparseRegionField, number>;

function hex(v: bigint): string {
  return `0x${v.toString(16).padStart(16, '0')}`;
}

function allZero(buf: Buffer, from: number): boolean {
  for (let i = from; i < buf.length; i++) if (buf[i] !== 0) return false;
  return true;
}

export class SeSparseExtent extends GrainedExtent {
  /** Grains in the grains area (from grains_size). */
  private readonly grainCount: number;

  private constructor(
    source: ByteSource,
    readonly header: SeSparseConstHeader,
    readonly volatileHeader: SeSparseVolatileHeader,
    readonly regions: SeSparseRegions,
    readonly capacitySectors: number,
    /** The grain directory: for each 16 MiB of the disk, the index of its grain table, or -1 for none. */
    private readonly gd: Float64Array,
    cacheBytes: number,
  ) {
    super(source, capacitySectors * SECTOR_SIZE, SESPARSE_GRAIN_SECTORS * SECTOR_SIZE, SESPARSE_GTES_PER_GT, cacheBytes);
    this.grainCount = Math.floor(regions.grains_size / SESPARSE_GRAIN_SECTORS);
  }

  static async open(source: ByteSource, opts: { cacheBytes?: number } = {}): Promise<SeSparseExtent> {
    const where: ErrorData = { path: source.path };
    const headBuf = await source.read(0, VMDKSESparseConstHeader.SIZE);
    const h = decodeSeSparseConstHeader(headBuf);
    expectField(h.magic === BigInt(SESPARSE_CONST_HEADER_MAGIC), 'E_SESPARSE_MAGIC', CONST, 'magic', `${hex(h.magic)} is not 0xcafebabe`, where);
    const unsupported = (field: string, value: bigint, why: string): never => {
      throw new UnsupportedError('E_SESPARSE_UNSUPPORTED', `${CONST}.${field} = ${hex(value)}: ${why}`, { structure: CONST, field, value: hex(value), ...where });
    };
    const expectedVersion = (BigInt(SESPARSE_VERSION_HI) << 32n) | BigInt(SESPARSE_VERSION_LO);
    if (h.version !== expectedVersion) unsupported('version', h.version, `only ${hex(expectedVersion)} is supported`);
    if (h.grain_size !== BigInt(SESPARSE_GRAIN_SECTORS)) unsupported('grain_size', h.grain_size, `only ${SESPARSE_GRAIN_SECTORS} sectors is supported`);
    if (h.grain_table_size !== BigInt(SESPARSE_GT_SECTORS)) unsupported('grain_table_size', h.grain_table_size, `only ${SESPARSE_GT_SECTORS} sectors is supported`);
    if (h.flags !== 0n) unsupported('flags', h.flags, 'no flags are supported');
    h.reserved.forEach((r, i) => {
      if (r !== 0n) unsupported(`reserved${i + 1}`, r, 'reserved fields must be 0');
    });
    if (!allZero(headBuf, VMDKSESparseConstHeader.pad)) unsupported('pad', 0n, 'the padding is not zero');
    checkBound(CONST, 'capacity', h.capacity, SESPARSE_MAX_CAPACITY_SECTORS, where);
    const capacitySectors = Number(h.capacity);

    const regions = {} as SeSparseRegions;
    for (const f of SESPARSE_REGION_FIELDS) {
      checkBound(CONST, f, h[f], MAX_SECTOR_FIELD, where);
      regions[f] = Number(h[f]);
    }
    const fileSize = source.size;
    const fileSectors = Math.floor(fileSize / SECTOR_SIZE);

    // The volatile header: one sector that must lie within the file.
    checkBound(CONST, 'volatile_header_offset', regions.volatile_header_offset, Math.max(0, fileSectors - 1), { fileSize, ...where });
    const volBuf = await source.read(regions.volatile_header_offset * SECTOR_SIZE, VMDKSESparseVolatileHeader.SIZE);
    const vh = decodeSeSparseVolatileHeader(volBuf);
    expectField(vh.magic === BigInt(SESPARSE_VOLATILE_HEADER_MAGIC), 'E_SESPARSE_MAGIC', VOLATILE, 'magic', `${hex(vh.magic)} is not 0xcafecafe`, where);
    if (vh.replay_journal !== 0n) {
      throw new UnsupportedError('E_SESPARSE_DIRTY', `${VOLATILE}.replay_journal is set: the journal must be replayed by ESXi first`, { structure: VOLATILE, field: 'replay_journal', ...where });
    }
    if (!allZero(volBuf, VMDKSESparseVolatileHeader.pad)) {
      throw new UnsupportedError('E_SESPARSE_UNSUPPORTED', `${VOLATILE}.pad is not zero`, { structure: VOLATILE, field: 'pad', ...where });
    }

    // The grain directory: grain_dir_size sectors of uint64 GDEs, enough to map the capacity.
    const gdEntries = (regions.grain_dir_size * SECTOR_SIZE) / 8;
    checkBound(CONST, 'grain_dir_size', gdEntries, MAX_GD_ENTRIES, { unit: 'entries', ...where });
    const needed = seSparseGdEntriesNeeded(capacitySectors);
    expectField(gdEntries >= needed, 'E_SESPARSE_HEADER', CONST, 'grain_dir_size', `${gdEntries} entries cannot map ${capacitySectors} sectors (needs ${needed})`, { value: regions.grain_dir_size, needed, ...where });
    const gdBytes = needed * 8;
    checkBound(CONST, 'grain_dir_offset', regions.grain_dir_offset, Math.max(0, Math.floor((fileSize - gdBytes) / SECTOR_SIZE)), { fileSize, ...where });
    const gdBuf = await source.read(regions.grain_dir_offset * SECTOR_SIZE, gdBytes);
    const gtCount = Math.floor(regions.grain_tables_size / SESPARSE_GT_SECTORS);
    const gd = new Float64Array(needed);
    for (let i = 0; i < needed; i++) {
      const lo = gdBuf.readUInt32LE(i * 8);
      const hi = gdBuf.readUInt32LE(i * 8 + 4);
      if (lo === 0 && hi === 0) {
        gd[i] = -1;
        continue;
      }
      if (hi !== SESPARSE_GDE_ALLOCATED_HI) {
        throw new CorruptStructureError('E_SESPARSE_GDE', `seSparse grain directory entry ${i} = ${hex(gdBuf.readBigUInt64LE(i * 8))}: not a grain table reference`, { structure: 'seSparse grain directory', field: `GDE[${i}]`, value: hex(gdBuf.readBigUInt64LE(i * 8)), ...where });
      }
      checkBound('seSparse grain directory', `GDE[${i}]`, lo, gtCount - 1, { limitFrom: 'grain_tables_size', ...where });
      gd[i] = lo;
    }
    return new SeSparseExtent(source, h, vh, regions, capacitySectors, gd, opts.cacheBytes ?? DEFAULT_CACHE_BYTES);
  }

  protected async grainTable(index: number): Promise<Buffer | null> {
    const gtIndex = this.gd[index]!;
    if (gtIndex < 0) return null;
    const cached = this.cache.get(gtIndex);
    if (cached) return cached;
    const pos = (this.regions.grain_tables_offset + gtIndex * SESPARSE_GT_SECTORS) * SECTOR_SIZE;
    if (pos + SESPARSE_GT_BYTES > this.source.size) {
      throw new BoundExceededError('seSparse grain directory', `GDE[${index}]`, gtIndex, Math.floor((this.source.size / SECTOR_SIZE - this.regions.grain_tables_offset) / SESPARSE_GT_SECTORS) - 1, { reason: 'grain table beyond the end of the file', path: this.source.path, fileSize: this.source.size });
    }
    const gt = await this.source.read(pos, SESPARSE_GT_BYTES);
    this.cache.set(gtIndex, gt);
    return gt;
  }

  private badGte(grain: number, gt: Buffer, at: number, why: string): never {
    const value = hex(gt.readBigUInt64LE(at));
    throw new CorruptStructureError('E_SESPARSE_GTE', `seSparse grain table entry for grain ${grain} = ${value}: ${why}`, { structure: 'seSparse grain table', field: `GTE[${grain}]`, value, path: this.source.path });
  }

  protected grainEntry(gt: Buffer, grain: number, grainStart: number): GrainEntry {
    const at = (grain % SESPARSE_GTES_PER_GT) * 8;
    const lo = gt.readUInt32LE(at);
    const hi = gt.readUInt32LE(at + 4);
    const type = hi >>> 28;
    if (type === SESPARSE_GTE_UNALLOCATED) {
      if (lo !== 0 || hi !== 0) this.badGte(grain, gt, at, 'an unallocated entry must be 0');
      return { state: 'unallocated', file: 0 };
    }
    if (type === SESPARSE_GTE_ZERO || type === SESPARSE_GTE_UNMAPPED) return { state: 'zero', file: 0 };
    if (type !== SESPARSE_GTE_ALLOCATED) this.badGte(grain, gt, at, `unknown entry type ${type}`);
    const { grainCount, grainBytes } = this;
    // Entry bits 48..59 are the index's low 12 bits, bits 0..47 its high bits.
    const high = (hi & 0xffff) * 0x100000000 + lo;
    if (high >= grainCount / 4096) {
      checkBound('seSparse grain table', `GTE[${grain}]`, BigInt(high) * 4096n + BigInt((hi >>> 16) & 0xfff), grainCount - 1, { limitFrom: 'grains_size', path: this.source.path });
    }
    const index = high * 4096 + ((hi >>> 16) & 0xfff);
    checkBound('seSparse grain table', `GTE[${grain}]`, index, grainCount - 1, { limitFrom: 'grains_size', path: this.source.path });
    const grainsBase = this.regions.grains_offset * SECTOR_SIZE;
    const grainPos = grainsBase + index * grainBytes;
    const span = Math.min(grainBytes, this.size - grainStart);
    const fileSize = this.source.size;
    if (grainPos + span > fileSize) {
      throw new BoundExceededError('seSparse grain table', `GTE[${grain}]`, index, Math.floor((fileSize - span - grainsBase) / grainBytes), { reason: 'grain beyond the end of the file', path: this.source.path, fileSize });
    }
    return { state: 'data', file: grainPos };
  }
}
