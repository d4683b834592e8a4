/**
 * What every grain-directory/grain-table extent shares (COWD, SEsparse): walking a byte range grain
 * by grain through the grain tables, joining grains that are adjacent both in the disk and in the
 * file into one segment (one read), and turning segments into reads and allocation ranges. A format
 * supplies only how to fetch a grain table and how to decode one grain table entry.
 */
import type { ByteSource } from '../file.js';
import type { AllocRange, AllocState, ByteRange, DiskLayer } from '../types.js';
import { checkWithin } from '../../util/bounded.js';
import { ByteLru } from '../../util/lru.js';

/** A run of the extent in one state; for data, `file` is the byte offset in the extent file. */
export interface Segment {
  state: AllocState;
  offset: number;
  length: number;
  file: number;
}

/** One grain table entry, decoded: for data, `file` is where the grain starts in the extent file. */
export interface GrainEntry {
  state: AllocState;
  file: number;
}

export abstract class GrainedExtent implements DiskLayer {
  protected readonly cache: ByteLru<number, Buffer>;

  protected constructor(
    protected readonly source: ByteSource,
    readonly size: number,
    protected readonly grainBytes: number,
    protected readonly gtesPerGt: number,
    cacheBytes: number,
  ) {
    this.cache = new ByteLru(cacheBytes, (b) => b.length);
  }

  /** The grain table covering grain-directory slot `index`, or null when none is allocated. */
  protected abstract grainTable(index: number): Promise<Buffer | null>;
  /** Decodes the entry of `grain` (its index in the disk) from its table; throws typed errors for corrupt entries. */
  protected abstract grainEntry(gt: Buffer, grain: number, grainStart: number): GrainEntry;

  /** The extent's ranges in [offset, offset+length), contiguous data grains joined into one segment. */
  protected async segments(offset: number, length: number): Promise<Segment[]> {
    const segs: Segment[] = [];
    let last: Segment | undefined;
    const push = (state: AllocState, pos: number, len: number, file: number): void => {
      if (last && last.state === state && (state !== 'data' || last.file + last.length === file)) {
        last.length += len;
        return;
      }
      last = { state, offset: pos, length: len, file };
      segs.push(last);
    };
    const gtCoverageBytes = this.grainBytes * this.gtesPerGt;
    const end = offset + length;
    let pos = offset;
    while (pos < end) {
      const gdIndex = Math.floor(pos / gtCoverageBytes);
      const gtEnd = Math.min(end, (gdIndex + 1) * gtCoverageBytes);
      const gt = await this.grainTable(gdIndex);
      if (!gt) {
        push('unallocated', pos, gtEnd - pos, 0);
        pos = gtEnd;
        continue;
      }
      while (pos < gtEnd) {
        const grain = Math.floor(pos / this.grainBytes);
        const grainStart = grain * this.grainBytes;
        const n = Math.min(gtEnd, grainStart + this.grainBytes) - pos;
        const e = this.grainEntry(gt, grain, grainStart);
        push(e.state, pos, n, e.state === 'data' ? e.file + (pos - grainStart) : 0);
        pos += n;
      }
    }
    return segs;
  }

  async readInto(out: Buffer, offset: number): Promise<ByteRange[]> {
    checkWithin(this.source.path, offset, out.length, this.size);
    const holes: ByteRange[] = [];
    const reads: Promise<void>[] = [];
    for (const s of await this.segments(offset, out.length)) {
      if (s.state === 'data') reads.push(this.source.readInto(out, s.offset - offset, s.length, s.file));
      else if (s.state === 'zero') out.fill(0, s.offset - offset, s.offset - offset + s.length);
      else holes.push({ offset: s.offset, length: s.length });
    }
    await Promise.all(reads);
    return holes;
  }

  async allocation(offset: number, length: number): Promise<AllocRange[]> {
    checkWithin(this.source.path, offset, length, this.size);
    const out: AllocRange[] = [];
    for (const s of await this.segments(offset, length)) {
      const prev = out[out.length - 1];
      if (prev && prev.state === s.state) prev.length += s.length; // data runs split only by file layout
      else out.push({ offset: s.offset, length: s.length, state: s.state });
    }
    return out;
  }

  async close(): Promise<void> {
    this.cache.clear();
    await this.source.close();
  }
}
