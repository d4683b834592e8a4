/**
 * One VMDK (one member of a chain) as a disk layer: the concatenation of its descriptor's extents,
 * each at the sum of the sectors of the extents before it (spec: "Extent Descriptions", in order).
 *
 *   FLAT, VMFS, VMFSRAW, VMFSRDM  a plain run of sectors in a file, from OFFSET (RawLayer)
 *   ZERO                          no file; reads as zeros ('zero' state)
 *   SPARSE                        hosted sparse extent (KDMV; also streamOptimized)
 *   VMFSSPARSE                    ESX redo log (COWD)
 *   SESPARSE                      ESX space-efficient sparse (SE Sparse)
 *
 * Sparse extents are dispatched on their magic rather than on the line's type word, as qemu does
 * for SPARSE/VMFSSPARSE, so a mislabelled extent is read by the reader its bytes belong to and a
 * file of none of these kinds is a typed error. Extent files are opened through the caller's
 * opener, read-only; a read spanning extents is split at their boundaries.
 */
import { dirname, isAbsolute, join } from 'node:path';
import type { ByteSource } from '../file.js';
import { RawLayer } from '../raw.js';
import { mergeRanges } from '../layered.js';
import { SECTOR_SIZE, type AllocRange, type ByteRange, type DiskLayer } from '../types.js';
import { CorruptStructureError, SourceNotFoundError, UnsupportedError, toSnapferryError } from '../../util/errors.js';
import { MiB, checkWithin } from '../../util/bounded.js';
import type { ExtentDescriptor, ExtentType, VmdkDescriptor } from './descriptor.js';
import { SparseExtent, isSparseExtent } from './sparse.js';
import { CowdExtent, isCowdExtent } from './cowd.js';
import { SeSparseExtent, isSeSparseExtent } from './sesparse.js';

export type Opener = (path: string) => Promise<ByteSource>;

export interface VmdkLayerOptions {
  opener: Opener;
  /** Byte budget for the grain-table caches of all of this member's sparse extents together. */
  cacheBytes?: number;
  /** Accept extent file names that are absolute or climb out of the descriptor's directory. */
  allowExternalExtents?: boolean;
}

/** An extent placed in the disk: [start, start + size) of the layer. */
export interface PlacedExtent {
  descriptor: ExtentDescriptor;
  /** The extent file's path (relative names resolved against the descriptor's directory); null for ZERO. */
  path: string | null;
  start: number;
  size: number;
  /** null for ZERO. */
  layer: DiskLayer | null;
}

/** The smallest cache we give one sparse extent, however many extents share the budget. */
const MIN_EXTENT_CACHE = 1 * MiB;

/** Resolves a file name from a descriptor (extent FILENAME, parentFileNameHint) against its file's directory. */
export function resolveBeside(descriptorPath: string, fileName: string): string {
  return isAbsolute(fileName) ? fileName : join(dirname(descriptorPath), fileName);
}

/** Opens the reader a sparse extent's magic names. Takes ownership of `source` (closes it on failure). */
export async function openSparseExtent(source: ByteSource, type: ExtentType | 'bare', opts: { cacheBytes?: number }): Promise<DiskLayer> {
  try {
    const head = await source.read(0, Math.min(source.size, SECTOR_SIZE));
    const o = opts.cacheBytes === undefined ? {} : { cacheBytes: opts.cacheBytes };
    if (isSparseExtent(head)) return await SparseExtent.open(source, o);
    if (isCowdExtent(head)) return await CowdExtent.open(source, o);
    if (isSeSparseExtent(head)) return await SeSparseExtent.open(source, o);
    throw new CorruptStructureError('E_VMDK_EXTENT_MAGIC', `${source.path}: a ${type} extent that is neither a hosted sparse (KDMV), COWD nor SEsparse extent`, {
      path: source.path,
      type,
      magic: head.subarray(0, 4).toString('hex'),
    });
  } catch (err) {
    await source.close().catch(() => undefined);
    throw err;
  }
}

export class VmdkLayer implements DiskLayer {
  readonly size: number;
  private readonly starts: number[];

  private constructor(
    readonly descriptor: VmdkDescriptor,
    readonly extents: readonly PlacedExtent[],
  ) {
    this.size = descriptor.totalSectors * SECTOR_SIZE;
    this.starts = extents.map((e) => e.start);
  }

  /** Opens every extent file of `descriptor`; on any failure closes the ones already open. */
  static async open(descriptor: VmdkDescriptor, opts: VmdkLayerOptions): Promise<VmdkLayer> {
    if (descriptor.totalSectors === 0) {
      throw new CorruptStructureError('E_VMDK_DESCRIPTOR', `${descriptor.path}: the descriptor describes no extents (0 sectors)`, { path: descriptor.path, structure: 'VmdkDescriptor', field: 'extents' });
    }
    const placed: PlacedExtent[] = [];
    const sparseCount = descriptor.extents.filter((e) => e.type === 'SPARSE' || e.type === 'VMFSSPARSE' || e.type === 'SESPARSE').length;
    const cacheBytes = opts.cacheBytes === undefined || sparseCount === 0 ? undefined : Math.max(MIN_EXTENT_CACHE, Math.floor(opts.cacheBytes / sparseCount));
    let start = 0;
    try {
      for (const ext of descriptor.extents) {
        const size = ext.sectors * SECTOR_SIZE;
        if (ext.access === 'NOACCESS') {
          throw new UnsupportedError('E_VMDK_EXTENT_NOACCESS', `${descriptor.path}: descriptor line ${ext.line}: the extent is NOACCESS`, { path: descriptor.path, line: ext.line });
        }
        if (size === 0) continue; // contributes no sectors (qemu skips such lines too)
        if (ext.type === 'ZERO') {
          placed.push({ descriptor: ext, path: null, start, size, layer: null });
          start += size;
          continue;
        }
        // VMware writes extent names relative to the descriptor, in its directory. An absolute name
        // or one with '..' would let a descriptor on a datastore make the appliance serve any file
        // it can read (/etc/shadow as "disk data"), so it takes an explicit opt-in.
        if (!opts.allowExternalExtents && (isAbsolute(ext.fileName!) || ext.fileName!.split(/[\\/]/).includes('..'))) {
          throw new UnsupportedError('E_VMDK_EXTENT_PATH', `${descriptor.path}: descriptor line ${ext.line}: extent file "${ext.fileName}" lies outside the descriptor's directory (allow with --allow-external-extents)`, {
            path: descriptor.path,
            line: ext.line,
            fileName: ext.fileName!,
          });
        }
        const path = resolveBeside(descriptor.path, ext.fileName!);
        let source: ByteSource;
        try {
          source = await opts.opener(path);
        } catch (err) {
          const e = toSnapferryError(err);
          if (e.code === 'E_SOURCE_NOT_FOUND') {
            throw new SourceNotFoundError(path, `extent file of ${descriptor.path} (line ${ext.line}) not found`, { descriptor: descriptor.path, line: ext.line });
          }
          throw e;
        }
        let layer: DiskLayer;
        switch (ext.type) {
          case 'FLAT':
          case 'VMFS':
          case 'VMFSRAW':
          case 'VMFSRDM':
            // Bytes past the file's end read as zeros (RawLayer), as qemu reads a short -flat file.
            layer = new RawLayer(source, ext.offset * SECTOR_SIZE, size);
            break;
          default:
            layer = await openSparseExtent(source, ext.type, cacheBytes === undefined ? {} : { cacheBytes });
        }
        placed.push({ descriptor: ext, path, start, size, layer });
        start += size;
      }
    } catch (err) {
      for (const p of placed) await p.layer?.close().catch(() => undefined);
      throw err;
    }
    return new VmdkLayer(descriptor, placed);
  }

  /** Index of the extent holding byte `offset` (the last start <= offset). */
  private extentAt(offset: number): number {
    let lo = 0;
    let hi = this.starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.starts[mid]! <= offset) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  async readInto(out: Buffer, offset: number): Promise<ByteRange[]> {
    checkWithin('vmdk', offset, out.length, this.size, { path: this.descriptor.path });
    const holes: ByteRange[] = [];
    const end = offset + out.length;
    let pos = offset;
    for (let i = this.extentAt(offset); pos < end && i < this.extents.length; i++) {
      const ext = this.extents[i]!;
      const pieceEnd = Math.min(end, ext.start + ext.size);
      const piece = out.subarray(pos - offset, pieceEnd - offset);
      if (ext.layer === null) {
        piece.fill(0);
      } else {
        // A sparse extent smaller than its descriptor line holds nothing past its own capacity.
        const rel = pos - ext.start;
        const inLayer = Math.max(0, Math.min(piece.length, ext.layer.size - rel));
        if (inLayer > 0) {
          for (const h of await ext.layer.readInto(piece.subarray(0, inLayer), rel)) holes.push({ offset: h.offset + ext.start, length: h.length });
        }
        if (inLayer < piece.length) holes.push({ offset: pos + inLayer, length: piece.length - inLayer });
      }
      pos = pieceEnd;
    }
    return holes;
  }

  async allocation(offset: number, length: number): Promise<AllocRange[]> {
    checkWithin('vmdk', offset, length, this.size, { path: this.descriptor.path });
    const out: AllocRange[] = [];
    const end = offset + length;
    let pos = offset;
    for (let i = this.extentAt(offset); pos < end && i < this.extents.length; i++) {
      const ext = this.extents[i]!;
      const pieceEnd = Math.min(end, ext.start + ext.size);
      if (ext.layer === null) {
        out.push({ offset: pos, length: pieceEnd - pos, state: 'zero' });
      } else {
        const rel = pos - ext.start;
        const inLayer = Math.max(0, Math.min(pieceEnd - pos, ext.layer.size - rel));
        if (inLayer > 0) {
          for (const r of await ext.layer.allocation(rel, inLayer)) out.push({ offset: r.offset + ext.start, length: r.length, state: r.state });
        }
        if (pos + inLayer < pieceEnd) out.push({ offset: pos + inLayer, length: pieceEnd - pos - inLayer, state: 'unallocated' });
      }
      pos = pieceEnd;
    }
    return mergeRanges(out);
  }

  async close(): Promise<void> {
    let first: unknown = null;
    for (const e of this.extents) {
      try {
        await e.layer?.close();
      } catch (err) {
        first ??= err;
      }
    }
    if (first !== null) throw first;
  }
}
