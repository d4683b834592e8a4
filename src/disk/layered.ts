/**
 * A Disk made of a stack of layers, top first (a delta chain). Reads ask the top layer and pass
 * the ranges it does not hold down the stack; what no layer holds reads as zeros.
 */
import { checkWithin } from '../util/bounded.js';
import type { AllocRange, ByteRange, ChainMember, Disk, DiskLayer } from './types.js';

export class LayeredDisk implements Disk {
  readonly size: number;

  constructor(
    readonly layers: readonly DiskLayer[],
    readonly chain: readonly ChainMember[],
    size?: number,
  ) {
    this.size = size ?? layers[0]!.size;
  }

  async read(offset: number, length: number): Promise<Buffer> {
    const out = Buffer.allocUnsafe(length);
    await this.readInto(out, offset);
    return out;
  }

  async readInto(out: Buffer, offset: number): Promise<void> {
    checkWithin('disk', offset, out.length, this.size);
    let pending: ByteRange[] = [{ offset, length: out.length }];
    for (const layer of this.layers) {
      const next: ByteRange[] = [];
      for (const r of pending) {
        // A parent may be smaller than its child (a grown disk): beyond it, nothing is allocated.
        const inLayer = Math.max(0, Math.min(r.length, layer.size - r.offset));
        if (inLayer > 0) {
          const sub = out.subarray(r.offset - offset, r.offset - offset + inLayer);
          for (const hole of await layer.readInto(sub, r.offset)) next.push(hole);
        }
        if (inLayer < r.length) next.push({ offset: r.offset + inLayer, length: r.length - inLayer });
      }
      pending = next;
      if (pending.length === 0) return;
    }
    for (const r of pending) out.fill(0, r.offset - offset, r.offset - offset + r.length);
  }

  async allocation(offset = 0, length = this.size - offset): Promise<AllocRange[]> {
    checkWithin('disk', offset, length, this.size);
    let result: AllocRange[] = [{ offset, length, state: 'unallocated' }];
    for (const layer of this.layers) {
      const next: AllocRange[] = [];
      for (const r of result) {
        if (r.state !== 'unallocated') {
          next.push(r);
          continue;
        }
        const inLayer = Math.max(0, Math.min(r.length, layer.size - r.offset));
        if (inLayer > 0) next.push(...(await layer.allocation(r.offset, inLayer)));
        if (inLayer < r.length) next.push({ offset: r.offset + inLayer, length: r.length - inLayer, state: 'unallocated' });
      }
      result = next;
    }
    return mergeRanges(result);
  }

  async close(): Promise<void> {
    for (const layer of this.layers) await layer.close();
  }
}

/** Joins adjacent ranges of the same state. */
export function mergeRanges(ranges: AllocRange[]): AllocRange[] {
  const out: AllocRange[] = [];
  for (const r of ranges) {
    if (r.length === 0) continue;
    const last = out[out.length - 1];
    if (last && last.state === r.state && last.offset + last.length === r.offset) last.length += r.length;
    else out.push({ ...r });
  }
  return out;
}
