/**
 * The ESX Server sparse extent ("COWD", the vmfsSparse redo log) as a DiskLayer. Spec: VMware
 * Virtual Disk Format 1.1, "ESX Server Sparse Extents"; qemu reads it in block/vmdk.c
 * (vmdk_open_vmfs_sparse), and qemu is our oracle. A grain whose grain table entry is 0, or whose
 * grain directory entry is 0, is not in this extent: it is returned as a hole so the parent is read.
 *
 * Offsets are extent-relative bytes. Grain tables are read on demand into a ByteLru; contiguous
 * grains (adjacent in the disk and in the file) are read with one call.
 */
import type { ByteSource } from '../file.js';
import { SECTOR_SIZE } from '../types.js';
import { GrainedExtent, type GrainEntry } from './grained.js';
import { checkBound, expectField, MiB } from '../../util/bounded.js';
import { UnsupportedError } from '../../util/errors.js';
import {
  COWD_GT_BYTES,
  COWD_GTES_PER_GT,
  COWD_MAGIC,
  COWD_MAX_GD_ENTRIES,
  COWD_MAX_GRAIN_SECTORS,
  COWD_VERSION,
  COWDisk_Header,
  cowdGdEntriesNeeded,
  decodeCowdHeader,
  type CowdHeader,
} from './structs-cowd.js';

const STRUCT = 'COWDisk_Header';
const DEFAULT_CACHE_BYTES = 8 * MiB;

export function isCowdExtent(head: Buffer): boolean {
  return head.length >= 4 && head.readUInt32LE(COWDisk_Header.magicNumber) === COWD_MAGIC;
}

export class CowdExtent extends GrainedExtent {
  private constructor(
    source: ByteSource,
    readonly header: CowdHeader,
    /** The grain directory: the sector of each grain table (0 = none), numGDEntries used entries. */
    private readonly gd: Uint32Array,
    cacheBytes: number,
  ) {
    super(source, header.numSectors * SECTOR_SIZE, header.grainSize * SECTOR_SIZE, COWD_GTES_PER_GT, cacheBytes);
  }

  static async open(source: ByteSource, opts: { cacheBytes?: number } = {}): Promise<CowdExtent> {
    const headBuf = await source.read(0, COWDisk_Header.SIZE);
    const h = decodeCowdHeader(headBuf);
    const where = { path: source.path };
    expectField(h.magicNumber === COWD_MAGIC, 'E_COWD_MAGIC', STRUCT, 'magicNumber', `0x${h.magicNumber.toString(16)} is not 'COWD'`, where);
    if (h.version !== COWD_VERSION) {
      throw new UnsupportedError('E_COWD_VERSION', `${STRUCT}.version ${h.version} is not supported (only ${COWD_VERSION})`, { structure: STRUCT, field: 'version', value: h.version, ...where });
    }
    expectField(h.grainSize >= 1, 'E_COWD_HEADER', STRUCT, 'grainSize', 'is 0', where);
    checkBound(STRUCT, 'grainSize', h.grainSize, COWD_MAX_GRAIN_SECTORS, where);
    // numSectors is a uint32, so the capacity is at most 2 TiB: no overflow below.
    const needed = cowdGdEntriesNeeded(h.numSectors, h.grainSize);
    checkBound(STRUCT, 'numGDEntries', h.numGDEntries, COWD_MAX_GD_ENTRIES, where);
    expectField(h.numGDEntries >= needed, 'E_COWD_HEADER', STRUCT, 'numGDEntries', `${h.numGDEntries} entries cannot map ${h.numSectors} sectors (needs ${needed})`, { value: h.numGDEntries, needed, ...where });
    // Only the entries that map the capacity are ever used; read those and no more.
    const gdBytes = needed * 4;
    checkBound(STRUCT, 'gdOffset', h.gdOffset, Math.max(0, Math.floor((source.size - gdBytes) / SECTOR_SIZE)), { fileSize: source.size, ...where });
    const gdBuf = await source.read(h.gdOffset * SECTOR_SIZE, gdBytes);
    const gd = new Uint32Array(needed);
    for (let i = 0; i < needed; i++) gd[i] = gdBuf.readUInt32LE(i * 4);
    return new CowdExtent(source, h, gd, opts.cacheBytes ?? DEFAULT_CACHE_BYTES);
  }

  /** The grain table for the GT coverage `index`, or null when its GDE is 0 (nothing allocated there). */
  protected async grainTable(index: number): Promise<Buffer | null> {
    const sector = this.gd[index]!;
    if (sector === 0) return null;
    const cached = this.cache.get(index);
    if (cached) return cached;
    checkBound('COWD grain directory', `GDE[${index}]`, sector, Math.floor((this.source.size - COWD_GT_BYTES) / SECTOR_SIZE), { path: this.source.path, fileSize: this.source.size });
    const gt = await this.source.read(sector * SECTOR_SIZE, COWD_GT_BYTES);
    this.cache.set(index, gt);
    return gt;
  }

  protected grainEntry(gt: Buffer, grain: number, grainStart: number): GrainEntry {
    const gte = gt.readUInt32LE((grain % COWD_GTES_PER_GT) * 4);
    if (gte === 0) return { state: 'unallocated', file: 0 };
    // The grain's bytes that lie within the capacity must lie within the file.
    const fileSize = this.source.size;
    const span = Math.min(this.grainBytes, this.size - grainStart);
    if (gte * SECTOR_SIZE + span > fileSize) {
      checkBound('COWD grain table', `GTE[${grain}]`, gte, Math.floor((fileSize - span) / SECTOR_SIZE), { path: this.source.path, fileSize });
    }
    return { state: 'data', file: gte * SECTOR_SIZE };
  }
}
