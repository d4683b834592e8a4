/** Byte-source doubles and qemu map oracles shared by the extent readers' tests. */
import { execFileSync } from 'node:child_process';
import type { ByteSource } from '../../src/disk/file.js';
import { mergeRanges } from '../../src/disk/layered.js';
import type { AllocRange } from '../../src/disk/types.js';
import { requireTool } from './images.js';

/** Counts the reads a layer makes of its file (to prove coalescing and grain-table caching). */
export class CountingSource implements ByteSource {
  reads: { position: number; length: number }[] = [];
  constructor(private readonly inner: ByteSource) {}
  get path(): string {
    return this.inner.path;
  }
  get size(): number {
    return this.inner.size;
  }
  get isBlockDevice(): boolean {
    return this.inner.isBlockDevice;
  }
  async readInto(out: Buffer, outOffset: number, length: number, position: number): Promise<void> {
    this.reads.push({ position, length });
    await this.inner.readInto(out, outOffset, length, position);
  }
  async read(position: number, length: number): Promise<Buffer> {
    const out = Buffer.alloc(length);
    await this.readInto(out, 0, length, position);
    return out;
  }
  async close(): Promise<void> {
    await this.inner.close();
  }
}

/**
 * qemu's view of what one delta holds itself (depth 0 of `qemu-img map`) as allocation ranges:
 * data, zero (zeroed/unmapped grains), or unallocated (a parent's). Throws unless the map covers `size`.
 */
export function qemuLayerMap(descriptor: string, size: number): AllocRange[] {
  requireTool('qemu-img');
  const map = JSON.parse(execFileSync('qemu-img', ['map', '--output=json', descriptor], { encoding: 'utf8' })) as { start: number; length: number; depth: number; zero: boolean; data: boolean }[];
  const ranges: AllocRange[] = map.map((m) => ({ offset: m.start, length: m.length, state: m.depth > 0 ? 'unallocated' : m.data ? 'data' : 'zero' }));
  const covered = ranges.reduce((n, r) => n + r.length, 0);
  if (covered !== size) throw new Error(`qemu-img map of ${descriptor} covers ${covered} bytes, not ${size}`);
  return mergeRanges(ranges);
}
