/**
 * A hosted sparse VMDK extent (VMware Virtual Disk Format 1.1, "Hosted Sparse Extents"), including
 * stream-optimized extents ("Stream-Optimized Compressed Sparse Extents": deflated grains behind
 * GrainMarkers, grain directory possibly at the end behind a footer).
 *
 * Layout: the grain directory (GD) holds the sector of each grain table (GT); each GT holds
 * numGTEsPerGT grain table entries (GTE), the sector of each grain of grainSize sectors. A GTE of 0
 * is unallocated (the parent in the chain answers), 1 is a zeroed grain when the header's flags say
 * so (qemu VMDK4_FLAG_ZERO_GRAIN), anything else is the grain's sector in this file.
 *
 * Everything read from the file is distrusted: each size or count is checked against a limit and
 * against the file before it is used (qemu block/vmdk.c habits, with its limits where it has them).
 */
import { inflateSync } from 'node:zlib';
import { endianness } from 'node:os';
import { checkBound, checkWithin, safeMul, MiB } from '../../util/bounded.js';
import { BoundExceededError, CorruptStructureError, UnsupportedError } from '../../util/errors.js';
import { ByteLru } from '../../util/lru.js';
import type { ByteSource } from '../file.js';
import { mergeRanges } from '../layered.js';
import { SECTOR_SIZE, type AllocRange, type ByteRange, type DiskLayer } from '../types.js';
import {
  COMPRESSION_DEFLATE,
  COMPRESSION_NONE,
  decodeMarker,
  decodeSparseExtentHeader,
  FOOTER_SIZE,
  FooterLayout,
  GD_AT_END,
  GDE_SIZE,
  GRAIN_MARKER_HEADER_SIZE,
  GTE_SIZE,
  GTE_UNALLOCATED,
  GTE_ZEROED,
  MARKER_EOS,
  MARKER_FOOTER,
  MARKER_SIZE,
  NEWLINE_CHECK,
  SPARSE_EXTENT_HEADER_SIZE,
  SPARSE_MAGICNUMBER,
  SparseExtentHeaderLayout,
  SparseFlags,
  type SparseExtentHeader,
} from './structs.js';

export type { SparseExtentHeader } from './structs.js';

/** Limits on what a header may claim before we allocate or loop on it. */
export const SparseLimits = {
  /** Highest version qemu and the spec know (3 = stream-optimized with markers). */
  version: 3,
  /** Sectors of capacity: 256 TiB (the format's practical maximum is 62 TB). */
  capacity: (256 * 1024 ** 4) / SECTOR_SIZE,
  /**
   * Sectors per grain: 1 MiB. VMware writes 128 (64 KiB); qemu allows up to 1 GiB, but a
   * compressed grain is inflated whole, so the grain size bounds our memory per read.
   */
  grainSize: 2048,
  /** qemu: "L2 table size too big" above 512; the spec fixes 512. */
  numGTEsPerGT: 512,
  /** Grain directory entries (4 bytes each, held in memory): 16 MiB of directory. */
  gdEntries: 4 * 1024 * 1024,
  /** Sectors of embedded descriptor: 1 MiB of text. */
  descriptorSize: (1 * MiB) / SECTOR_SIZE,
} as const;

export function isSparseExtent(head: Buffer): boolean {
  return head.length >= 4 && head.readUInt32LE(SparseExtentHeaderLayout.magicNumber) === SPARSE_MAGICNUMBER;
}

export interface SparseExtentOptions {
  /** Byte budget of the grain-table cache and of the inflated-grain cache together (default 16 MiB). */
  cacheBytes?: number;
}

const DEFAULT_CACHE_BYTES = 16 * MiB;
const LITTLE_ENDIAN_HOST = endianness() === 'LE';

/** One uncompressed run of the source to copy into `out`: contiguous grains become one read. */
interface PendingRead {
  outOffset: number;
  filePos: number;
  length: number;
}

export class SparseExtent implements DiskLayer {
  readonly size: number;
  readonly streamOptimized: boolean;
  private readonly grainBytes: number;
  private readonly gtEntries: number;
  private readonly gtBytes: number;
  /** Bytes of the disk one grain table covers. */
  private readonly gtSpan: number;
  private readonly zeroedGrains: boolean;
  private readonly markers: boolean;
  private readonly gtCache: ByteLru<number, Uint32Array>;
  private readonly grainCache: ByteLru<number, Buffer>;

  private constructor(
    private readonly source: ByteSource,
    readonly header: SparseExtentHeader,
    readonly embeddedDescriptor: string | null,
    /** Grain directory: sector of each grain table, 0 = none. */
    private readonly gd: Uint32Array,
    cacheBytes: number,
  ) {
    this.size = header.capacity * SECTOR_SIZE;
    this.grainBytes = header.grainSize * SECTOR_SIZE;
    this.gtEntries = header.numGTEsPerGT;
    this.gtBytes = header.numGTEsPerGT * GTE_SIZE;
    this.gtSpan = this.gtEntries * this.grainBytes;
    this.streamOptimized = header.compressAlgorithm === COMPRESSION_DEFLATE;
    this.zeroedGrains = (header.flags & SparseFlags.zeroedGrainGte) !== 0;
    this.markers = (header.flags & SparseFlags.markers) !== 0;
    // Grain tables are small and hit on every read: they get most of the budget. Inflated grains
    // only matter for stream-optimized extents (a sequential reader hits each one once).
    const grainBudget = this.streamOptimized ? Math.max(this.grainBytes * 4, Math.floor(cacheBytes / 4)) : 0;
    this.gtCache = new ByteLru(Math.max(this.gtBytes, cacheBytes - grainBudget), (gt) => gt.byteLength);
    this.grainCache = new ByteLru(grainBudget, (g) => g.length);
  }

  /**
   * Reads and validates the header (the footer's copy when gdOffset is GD_AT_END), the embedded
   * descriptor and the grain directory. On success the extent owns `source` (close() closes it);
   * on failure the source is left open for the caller.
   */
  static async open(source: ByteSource, opts: SparseExtentOptions = {}): Promise<SparseExtent> {
    const where = `${source.path}: SparseExtentHeader`;
    if (source.size < SPARSE_EXTENT_HEADER_SIZE) throw new CorruptStructureError('E_VMDK_HEADER', `${source.path}: ${source.size} bytes is too small for a sparse extent header`, { path: source.path, size: source.size });
    const head = await source.read(0, SPARSE_EXTENT_HEADER_SIZE);
    if (!isSparseExtent(head)) {
      throw new CorruptStructureError('E_VMDK_MAGIC', `${source.path}: no sparse extent magic "KDMV" at offset 0`, { path: source.path, structure: 'SparseExtentHeader', field: 'magicNumber', value: head.readUInt32LE(0) });
    }
    const first = decodeSparseExtentHeader(head, where);
    let header = first;
    if (first.gdOffset === GD_AT_END) header = await readFooterHeader(source);
    validateHeader(header, source);
    const embeddedDescriptor = await readEmbeddedDescriptor(source, first);

    // Number of grain directory entries: one per grain table's span of the capacity.
    const gtSpanSectors = safeMul(header.numGTEsPerGT, header.grainSize, 'SparseExtentHeader', 'numGTEsPerGT*grainSize');
    const gdEntries = Math.ceil(header.capacity / gtSpanSectors);
    checkBound('SparseExtentHeader', 'gdEntries', gdEntries, SparseLimits.gdEntries, { path: source.path, capacity: header.capacity, grainSize: header.grainSize, numGTEsPerGT: header.numGTEsPerGT });
    const gdPos = (header.gdOffset as number) * SECTOR_SIZE;
    // The directory must lie in the file before we allocate for it: its size is bounded by the file too.
    checkWithin(`${source.path}: grain directory (gdOffset ${header.gdOffset as number}, ${gdEntries} entries)`, gdPos, gdEntries * GDE_SIZE, source.size, { path: source.path, structure: 'SparseExtentHeader', field: 'gdOffset' });
    const gd = new Uint32Array(gdEntries);
    if (gdEntries > 0) {
      const raw = Buffer.from(gd.buffer, gd.byteOffset, gd.byteLength);
      await source.readInto(raw, 0, raw.length, gdPos);
      if (!LITTLE_ENDIAN_HOST) raw.swap32();
    }
    return new SparseExtent(source, header, embeddedDescriptor, gd, opts.cacheBytes ?? DEFAULT_CACHE_BYTES);
  }

  async readInto(out: Buffer, offset: number): Promise<ByteRange[]> {
    checkWithin(`${this.source.path}: sparse extent`, offset, out.length, this.size);
    const holes: ByteRange[] = [];
    const reads: Promise<void>[] = [];
    // The uncompressed run being extended; a holder so the closure's updates are visible to TS.
    const run: { pending: PendingRead | null } = { pending: null };
    const end = offset + out.length;
    const flush = (): void => {
      const p = run.pending;
      if (p) {
        const read = this.source.readInto(out, p.outOffset, p.length, p.filePos);
        // Settled below; until then a rejection must not count as unhandled (we may be awaiting a GT).
        read.catch(() => undefined);
        reads.push(read);
        run.pending = null;
      }
    };
    const hole = (start: number, length: number): void => {
      const last = holes[holes.length - 1];
      if (last && last.offset + last.length === start) last.length += length;
      else holes.push({ offset: start, length });
    };
    try {
      let pos = offset;
      while (pos < end) {
        const gtIndex = Math.floor(pos / this.gtSpan);
        if (this.gd[gtIndex] === 0) {
          // No grain table: the whole span is unallocated, skip it at once.
          const n = Math.min((gtIndex + 1) * this.gtSpan, end) - pos;
          flush();
          hole(pos, n);
          pos += n;
          continue;
        }
        const gt = this.gtCache.get(gtIndex) ?? (await this.loadGrainTable(gtIndex));
        const gtEnd = Math.min((gtIndex + 1) * this.gtSpan, end);
        while (pos < gtEnd) {
          const grain = Math.floor(pos / this.grainBytes);
          const inGrain = pos - grain * this.grainBytes;
          const n = Math.min(this.grainBytes - inGrain, gtEnd - pos);
          const gte = gt[grain - gtIndex * this.gtEntries]!;
          if (gte === GTE_UNALLOCATED) {
            flush();
            hole(pos, n);
          } else if (gte === GTE_ZEROED && this.zeroedGrains) {
            flush();
            out.fill(0, pos - offset, pos - offset + n);
          } else if (this.streamOptimized) {
            flush();
            const data = await this.inflatedGrain(grain, gte, gtIndex);
            data.copy(out, pos - offset, inGrain, inGrain + n);
          } else {
            const filePos = gte * SECTOR_SIZE + inGrain;
            this.checkGrainInFile(gte, grain, gtIndex, filePos, n);
            const p = run.pending;
            if (p && p.filePos + p.length === filePos) p.length += n;
            else {
              flush();
              run.pending = { outOffset: pos - offset, filePos, length: n };
            }
          }
          pos += n;
        }
      }
      flush();
    } finally {
      // Never leave a read running into `out` after we return or throw.
      const settled = await Promise.allSettled(reads);
      for (const s of settled) if (s.status === 'rejected') throw s.reason;
    }
    return holes;
  }

  async allocation(offset: number, length: number): Promise<AllocRange[]> {
    checkWithin(`${this.source.path}: sparse extent`, offset, length, this.size);
    const ranges: AllocRange[] = [];
    const push = (start: number, n: number, state: AllocRange['state']): void => {
      const last = ranges[ranges.length - 1];
      if (last && last.state === state && last.offset + last.length === start) last.length += n;
      else ranges.push({ offset: start, length: n, state });
    };
    const end = offset + length;
    let pos = offset;
    while (pos < end) {
      const gtIndex = Math.floor(pos / this.gtSpan);
      const gtEnd = Math.min((gtIndex + 1) * this.gtSpan, end);
      if (this.gd[gtIndex] === 0) {
        push(pos, gtEnd - pos, 'unallocated');
        pos = gtEnd;
        continue;
      }
      const gt = this.gtCache.get(gtIndex) ?? (await this.loadGrainTable(gtIndex));
      while (pos < gtEnd) {
        const grain = Math.floor(pos / this.grainBytes);
        const n = Math.min((grain + 1) * this.grainBytes, gtEnd) - pos;
        const gte = gt[grain - gtIndex * this.gtEntries]!;
        push(pos, n, gte === GTE_UNALLOCATED ? 'unallocated' : gte === GTE_ZEROED && this.zeroedGrains ? 'zero' : 'data');
        pos += n;
      }
    }
    return mergeRanges(ranges);
  }

  async close(): Promise<void> {
    this.gtCache.clear();
    this.grainCache.clear();
    await this.source.close();
  }

  private async loadGrainTable(gtIndex: number): Promise<Uint32Array> {
    const gde = this.gd[gtIndex]!;
    const pos = gde * SECTOR_SIZE;
    if (pos + this.gtBytes > this.source.size) {
      throw new CorruptStructureError('E_VMDK_GD_ENTRY', `${this.source.path}: grain directory entry ${gtIndex} points to sector ${gde}, past the end of the file (${this.source.size} bytes)`, {
        path: this.source.path, structure: 'GrainDirectory', field: `entry[${gtIndex}]`, value: gde, size: this.source.size,
      });
    }
    const gt = new Uint32Array(this.gtEntries);
    const raw = Buffer.from(gt.buffer, gt.byteOffset, gt.byteLength);
    await this.source.readInto(raw, 0, raw.length, pos);
    if (!LITTLE_ENDIAN_HOST) raw.swap32();
    this.gtCache.set(gtIndex, gt);
    return gt;
  }

  private checkGrainInFile(gte: number, grain: number, gtIndex: number, filePos: number, length: number): void {
    if (filePos + length > this.source.size) {
      throw new CorruptStructureError('E_VMDK_GTE', `${this.source.path}: grain table entry for grain ${grain} points to sector ${gte}, past the end of the file (${this.source.size} bytes)`, {
        path: this.source.path, structure: 'GrainTable', field: `entry[${grain - gtIndex * this.gtEntries}]`, gt: gtIndex, value: gte, size: this.source.size,
      });
    }
  }

  /**
   * A stream-optimized grain, inflated whole (spec: GrainMarker { lba, size, data[size] }, data is
   * a zlib stream). The inflated length must cover the grain's part of the capacity and may not
   * exceed the grain: the last grain of a disk whose capacity is not a whole number of grains is
   * written short (qemu), every other grain is exactly grainSize sectors.
   */
  private async inflatedGrain(grain: number, gte: number, gtIndex: number): Promise<Buffer> {
    const cached = this.grainCache.get(grain);
    if (cached) return cached;
    const pos = gte * SECTOR_SIZE;
    const path = this.source.path;
    this.checkGrainInFile(gte, grain, gtIndex, pos, this.markers ? GRAIN_MARKER_HEADER_SIZE : 1);
    let deflated: Buffer;
    if (this.markers) {
      const marker = decodeMarker(await this.source.read(pos, GRAIN_MARKER_HEADER_SIZE), `${path}: GrainMarker of grain ${grain}`);
      // qemu refuses a GrainMarker size of 0 or past two grains (block/vmdk.c vmdk_read_extent).
      if (marker.size === 0) {
        throw new CorruptStructureError('E_VMDK_GRAIN_MARKER', `${path}: grain ${grain} points to a metadata marker (size 0) at sector ${gte}, not a GrainMarker`, { path, structure: 'GrainMarker', field: 'size', value: 0, grain });
      }
      checkBound('GrainMarker', 'size', marker.size, 2 * this.grainBytes, { path, grain, sector: gte });
      checkWithin(`${path}: deflated grain ${grain} at sector ${gte}`, pos + GRAIN_MARKER_HEADER_SIZE, marker.size, this.source.size, { path, structure: 'GrainMarker', field: 'size', grain });
      deflated = await this.source.read(pos + GRAIN_MARKER_HEADER_SIZE, marker.size);
    } else {
      // Compressed grains without markers: the zlib stream ends itself; read what two grains can hold.
      deflated = await this.source.read(pos, Math.min(2 * this.grainBytes, this.source.size - pos));
    }
    const expected = Math.min(this.grainBytes, this.size - grain * this.grainBytes);
    let data: Buffer;
    try {
      data = inflateSync(deflated, { maxOutputLength: this.grainBytes });
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      const tooBig = e.code === 'ERR_BUFFER_TOO_LARGE' || e instanceof RangeError;
      throw new CorruptStructureError('E_VMDK_INFLATE', `${path}: grain ${grain} at sector ${gte}: ${tooBig ? `inflates past the grain size of ${this.grainBytes} bytes` : `deflate data is corrupt (${e.message})`}`, {
        path, structure: 'GrainMarker', field: 'data', grain, sector: gte, limit: this.grainBytes, zlib: e.code ?? null,
      });
    }
    if (data.length < expected || data.length > this.grainBytes) {
      throw new CorruptStructureError('E_VMDK_INFLATE', `${path}: grain ${grain} at sector ${gte} inflates to ${data.length} bytes, expected ${expected}`, {
        path, structure: 'GrainMarker', field: 'data', grain, sector: gte, value: data.length, expected,
      });
    }
    this.grainCache.set(grain, data);
    return data;
  }
}

/** Checks every header field we use against its limit and against the file. */
function validateHeader(h: SparseExtentHeader, source: ByteSource): void {
  const path = source.path;
  const S = 'SparseExtentHeader';
  if (h.version < 1 || h.version > SparseLimits.version) {
    throw new UnsupportedError('E_VMDK_VERSION', `${path}: sparse extent version ${h.version} is not supported (1..${SparseLimits.version})`, { path, structure: S, field: 'version', value: h.version });
  }
  if ((h.flags & SparseFlags.validNewlineTest) !== 0) {
    const ok = h.singleEndLineChar === NEWLINE_CHECK.singleEndLineChar && h.nonEndLineChar === NEWLINE_CHECK.nonEndLineChar
      && h.doubleEndLineChar1 === NEWLINE_CHECK.doubleEndLineChar1 && h.doubleEndLineChar2 === NEWLINE_CHECK.doubleEndLineChar2;
    if (!ok) {
      throw new CorruptStructureError('E_VMDK_NEWLINE', `${path}: the header's newline check bytes are wrong: the file was probably copied in text mode`, { path, structure: S, field: 'singleEndLineChar' });
    }
  }
  if (h.compressAlgorithm !== COMPRESSION_NONE && h.compressAlgorithm !== COMPRESSION_DEFLATE) {
    throw new UnsupportedError('E_VMDK_COMPRESSION', `${path}: compressAlgorithm ${h.compressAlgorithm} is not supported (0 none, 1 deflate)`, { path, structure: S, field: 'compressAlgorithm', value: h.compressAlgorithm });
  }
  checkBound(S, 'capacity', h.capacity, SparseLimits.capacity, { path });
  if (h.grainSize === 0 || (h.grainSize & (h.grainSize - 1)) !== 0) {
    throw new CorruptStructureError('E_VMDK_GRAIN_SIZE', `${path}: grainSize ${h.grainSize} is not a power of two`, { path, structure: S, field: 'grainSize', value: h.grainSize });
  }
  checkBound(S, 'grainSize', h.grainSize, SparseLimits.grainSize, { path });
  if (h.numGTEsPerGT === 0) {
    throw new CorruptStructureError('E_VMDK_HEADER', `${path}: numGTEsPerGT is 0`, { path, structure: S, field: 'numGTEsPerGT', value: 0 });
  }
  checkBound(S, 'numGTEsPerGT', h.numGTEsPerGT, SparseLimits.numGTEsPerGT, { path });
  if (h.gdOffset === GD_AT_END) {
    throw new CorruptStructureError('E_VMDK_FOOTER', `${path}: the footer's header copy also says GD_AT_END`, { path, structure: 'footer', field: 'gdOffset' });
  }
  const fileSectors = Math.floor(source.size / SECTOR_SIZE);
  checkBound(S, 'gdOffset', h.gdOffset, fileSectors, { path, fileSize: source.size });
  if (h.capacity > 0 && h.gdOffset === 0) {
    throw new CorruptStructureError('E_VMDK_HEADER', `${path}: gdOffset is 0 (the grain directory would overlap the header)`, { path, structure: S, field: 'gdOffset', value: 0 });
  }
}

/**
 * The header a GD_AT_END extent really uses: the copy in the footer (qemu block/vmdk.c reads it at
 * file end - 1536: footer Marker, header, end-of-stream Marker).
 */
async function readFooterHeader(source: ByteSource): Promise<SparseExtentHeader> {
  const path = source.path;
  // qemu counts the file in whole sectors (rounded up); bytes past the end read as zeros.
  const fileEnd = Math.ceil(source.size / SECTOR_SIZE) * SECTOR_SIZE;
  const pos = fileEnd - FOOTER_SIZE;
  if (pos < SPARSE_EXTENT_HEADER_SIZE) {
    throw new CorruptStructureError('E_VMDK_FOOTER', `${path}: gdOffset is GD_AT_END but the file (${source.size} bytes) is too small to hold a footer`, { path, structure: 'footer', size: source.size });
  }
  const footer = Buffer.alloc(FOOTER_SIZE);
  await source.readInto(footer, 0, Math.min(FOOTER_SIZE, source.size - pos), pos);
  const fm = decodeMarker(footer.subarray(FooterLayout.footerMarker, FooterLayout.footerMarker + MARKER_SIZE), `${path}: footer Marker`);
  const eos = decodeMarker(footer.subarray(FooterLayout.eosMarker, FooterLayout.eosMarker + MARKER_SIZE), `${path}: end-of-stream Marker`);
  const headerCopy = footer.subarray(FooterLayout.header, FooterLayout.header + SPARSE_EXTENT_HEADER_SIZE);
  if (!isSparseExtent(headerCopy) || fm.size !== 0 || fm.type !== MARKER_FOOTER || eos.val !== 0n || eos.size !== 0 || eos.type !== MARKER_EOS) {
    throw new CorruptStructureError('E_VMDK_FOOTER', `${path}: gdOffset is GD_AT_END but the last 1536 bytes are not footer Marker + header + end-of-stream Marker`, {
      path, structure: 'footer', field: 'marker', footerType: fm.type, eosType: eos.type,
    });
  }
  return decodeSparseExtentHeader(headerCopy, `${path}: footer SparseExtentHeader`);
}

/** The descriptor text embedded at descriptorOffset (monolithicSparse, streamOptimized); NULs trimmed. */
async function readEmbeddedDescriptor(source: ByteSource, h: SparseExtentHeader): Promise<string | null> {
  if (h.descriptorOffset === 0 || h.descriptorSize === 0) return null;
  const path = source.path;
  if (h.descriptorSize > SparseLimits.descriptorSize) {
    throw new BoundExceededError('SparseExtentHeader', 'descriptorSize', h.descriptorSize, SparseLimits.descriptorSize, { path });
  }
  const pos = safeMul(h.descriptorOffset, SECTOR_SIZE, 'SparseExtentHeader', 'descriptorOffset');
  const length = h.descriptorSize * SECTOR_SIZE;
  checkWithin(`${path}: embedded descriptor (descriptorOffset ${h.descriptorOffset}, descriptorSize ${h.descriptorSize})`, pos, length, source.size, { path, structure: 'SparseExtentHeader', field: 'descriptorOffset' });
  const buf = await source.read(pos, length);
  const nul = buf.indexOf(0);
  const text = buf.toString('utf8', 0, nul < 0 ? buf.length : nul);
  // An all-NUL area (the extents of a twoGbMaxExtentSparse disk reserve one) holds no descriptor.
  return text.length > 0 ? text : null;
}
