/**
 * A raw image or block device as a disk layer: every byte is data. The allocation map comes from
 * the filesystem's holes (SEEK_DATA/SEEK_HOLE are not reachable from Node, so a raw file reports
 * itself fully allocated; export still writes holes for all-zero blocks).
 */
import type { ByteSource } from './file.js';
import type { AllocRange, ByteRange, DiskLayer } from './types.js';

export class RawLayer implements DiskLayer {
  constructor(
    readonly source: ByteSource,
    /** Bytes of the source that the disk starts at (a FLAT extent's start offset). */
    private readonly start = 0,
    readonly size = source.size - start,
  ) {}

  async readInto(out: Buffer, offset: number): Promise<ByteRange[]> {
    // A FLAT extent may be shorter than the descriptor claims (a truncated -flat file). Bytes past
    // the file's end read as zeros, as qemu does, rather than failing the whole disk.
    const avail = Math.max(0, Math.min(out.length, this.source.size - this.start - offset));
    if (avail > 0) await this.source.readInto(out, 0, avail, this.start + offset);
    if (avail < out.length) out.fill(0, avail);
    return [];
  }

  async allocation(offset: number, length: number): Promise<AllocRange[]> {
    return [{ offset, length, state: 'data' }];
  }

  async close(): Promise<void> {
    await this.source.close();
  }
}
