/**
 * The replayed blocks, kept apart from the image: the ext reader asks the overlay before the disk
 * (BlockOverlay.get is synchronous), and nothing is ever written back to the source.
 *
 * Memory is bounded: blocks live in a Map up to `maxBytes`; past that they go to a spill file (one
 * slot per block, an in-memory index of block -> slot) read back with fs.readSync. The spill file is
 * unlinked as soon as it is opened, so it disappears with the descriptor even if close() is never
 * called (a crash, a killed process).
 */
import { closeSync, mkdtempSync, openSync, readSync, rmdirSync, unlinkSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SnapferryError } from '../../../util/errors.js';
import type { VolumeSource } from '../../types.js';

/** What the ext reader consults before reading a block from the volume (the ext reader's BlockOverlay). */
export interface BlockOverlayLike {
  /** The replayed content of filesystem block `block` (a private copy), or undefined. */
  get(block: number): Buffer | undefined;
}

export const DEFAULT_MAX_OVERLAY_BYTES = 64 * 1024 * 1024;

export class BlockOverlayStore implements BlockOverlayLike {
  private readonly memory = new Map<number, Buffer>();
  private readonly spilled = new Map<number, number>(); // block -> slot in the spill file
  private spillFd: number | null = null;
  private closed = false;
  private sorted: number[] | null = null;

  constructor(
    readonly blockSize: number,
    readonly maxBytes: number = DEFAULT_MAX_OVERLAY_BYTES,
    private readonly spillDir: string = tmpdir(),
  ) {}

  /** Number of distinct blocks held. */
  get size(): number {
    return this.memory.size + this.spilled.size;
  }

  /** Bytes held in memory (never above maxBytes). */
  get memoryBytes(): number {
    return this.memory.size * this.blockSize;
  }

  get spilledBlocks(): number {
    return this.spilled.size;
  }

  has(block: number): boolean {
    return this.memory.has(block) || this.spilled.has(block);
  }

  /** Sets (or replaces: a later transaction wins) the content of `block`. `data` is copied. */
  set(block: number, data: Buffer): void {
    this.assertOpen();
    this.sorted = null;
    if (data.length !== this.blockSize) throw new SnapferryError('E_INTERNAL', `overlay block of ${data.length} bytes, expected ${this.blockSize}`);
    const inMemory = this.memory.get(block);
    if (inMemory) {
      data.copy(inMemory);
      return;
    }
    const slot = this.spilled.get(block);
    if (slot !== undefined) {
      this.writeSlot(slot, data);
      return;
    }
    if (this.memoryBytes + this.blockSize <= this.maxBytes) {
      this.memory.set(block, Buffer.from(data));
      return;
    }
    const newSlot = this.spilled.size;
    this.writeSlot(newSlot, data);
    this.spilled.set(block, newSlot);
  }

  get(block: number): Buffer | undefined {
    this.assertOpen();
    const m = this.memory.get(block);
    if (m) return Buffer.from(m);
    const slot = this.spilled.get(block);
    if (slot === undefined) return undefined;
    const out = Buffer.allocUnsafe(this.blockSize);
    let done = 0;
    while (done < this.blockSize) {
      const n = readSync(this.spillFd!, out, done, this.blockSize - done, slot * this.blockSize + done);
      if (n === 0) throw new SnapferryError('E_OVERLAY_SPILL', `journal overlay spill file ended at slot ${slot}`);
      done += n;
    }
    return out;
  }

  /** Block numbers held, ascending (the array is shared: do not modify it). */
  blocks(): readonly number[] {
    this.sorted ??= [...this.memory.keys(), ...this.spilled.keys()].sort((a, b) => a - b);
    return this.sorted;
  }

  /** Index in blocks() of the first block >= `block`. */
  private lowerBound(block: number): number {
    const s = this.blocks();
    let lo = 0;
    let hi = s.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (s[mid]! < block) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Copies the overlay's blocks that intersect [offset, offset + out.length) of the volume into `out`. */
  patch(out: Buffer, offset: number): void {
    if (this.size === 0 || out.length === 0) return;
    const bs = this.blockSize;
    const s = this.blocks();
    const end = offset + out.length;
    for (let i = this.lowerBound(Math.floor(offset / bs)); i < s.length && s[i]! * bs < end; i++) {
      const block = s[i]!;
      const data = this.get(block)!;
      const from = Math.max(offset, block * bs);
      const to = Math.min(end, (block + 1) * bs);
      data.copy(out, from - offset, from - block * bs, to - block * bs);
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.memory.clear();
    this.spilled.clear();
    if (this.spillFd !== null) closeSync(this.spillFd);
    this.spillFd = null;
  }

  private writeSlot(slot: number, data: Buffer): void {
    if (this.spillFd === null) {
      const dir = mkdtempSync(join(this.spillDir, 'snapferry-journal-'));
      const path = join(dir, 'overlay.spill');
      this.spillFd = openSync(path, 'w+', 0o600);
      unlinkSync(path);
      rmdirSync(dir);
    }
    let done = 0;
    while (done < data.length) done += writeSync(this.spillFd, data, done, data.length - done, slot * this.blockSize + done);
  }

  private assertOpen(): void {
    if (this.closed) throw new SnapferryError('E_OVERLAY_CLOSED', 'the journal overlay was closed');
  }
}

/**
 * The volume as it is after replay: reads of the source with the overlay's blocks laid over them.
 * The ext reader opens this view, so the replayed superblock, group descriptors, inodes,
 * directories and data all come from the journal where it has them, and nothing else changes.
 */
export function overlayVolume(volume: VolumeSource, overlay: BlockOverlayStore): VolumeSource {
  return {
    size: volume.size,
    async readInto(out: Buffer, offset: number): Promise<void> {
      await volume.readInto(out, offset);
      overlay.patch(out, offset);
    },
    async read(offset: number, length: number): Promise<Buffer> {
      // Into a buffer of our own: the source may hand out buffers it shares (a cache).
      const out = Buffer.allocUnsafe(length);
      await volume.readInto(out, offset);
      overlay.patch(out, offset);
      return out;
    },
  };
}
