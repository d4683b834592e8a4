/**
 * The digest of a whole logical disk, computed on the helper thread (util/helper-thread.ts): the block-hash list of
 * image-state.ts and the index's `blocksSha256` in one pass.
 *
 *   blocksSha256 = sha256( sha256(block 0) || sha256(block 1) || ... )   blocks of HASH_BLOCK_SIZE
 *                                                                         (1 MiB; the last one short)
 *
 * With stock tools: `split -b 1048576 --filter='sha256sum | cut -c1-64' disk.raw | xxd -r -p | sha256sum`.
 *
 * Why not the plain sha256 of the disk: a plain hash must read every byte of every hole. A 6 GiB disk
 * with 70% holes is 4.5 GB of zeros to hash (~4 s of CPU here), an empty 1 TB disk 15 minutes; an
 * all-zero block's hash is a constant, so here a hole costs nothing. The per-block hashes (8 bytes
 * of each kept) are the state a later incremental compares with when the chain cannot say what
 * changed. The main thread only copies data pieces to that thread; holes travel as a length.
 */
import { openChannel, type Channel } from '../util/helper-thread.js';
import { MiB } from '../util/bounded.js';
import { BLOCK_HASH_BYTES, HASH_BLOCK_SIZE } from './image-state.js';

/**
 * Data goes to the thread through SLOTS shared buffers of SLOT_BYTES, reused: the producer waits for
 * a free one. A fresh transferred buffer per piece (1.9 GB of them for the bench disk) was freed
 * only when the GC got round to it: ~90 MB of array buffers in flight at the peak.
 */
const SLOTS = 4;
const SLOT_BYTES = 1 * MiB;

/** The hashing job, run on the process's helper thread (util/helper-thread.ts), as source text. */
const HASH_JOB = `
const { createHash } = require('node:crypto');
const { size, blockSize, keep, slots } = data;
const views = slots.map((s) => new Uint8Array(s));
const blocks = Math.ceil(size / blockSize);
const list = Buffer.alloc(blocks * keep);
const outer = createHash('sha256');
const zeros = Buffer.alloc(Math.min(blockSize, 1 << 20));
const zeroBlock = (() => { const h = createHash('sha256'); for (let n = blockSize; n > 0; n -= zeros.length) h.update(zeros.subarray(0, Math.min(n, zeros.length))); return h.digest(); })();
let pos = 0;
let bh = null;
const closeBlock = () => {
  const d = bh.digest();
  bh = null;
  outer.update(d);
  d.copy(list, (Math.ceil(pos / blockSize) - 1) * keep, 0, keep);
};
const feed = (buf) => {
  for (let i = 0; i < buf.length; ) {
    if (!bh) bh = createHash('sha256');
    const n = Math.min(buf.length - i, blockSize - (pos % blockSize));
    bh.update(buf.subarray(i, i + n));
    i += n;
    pos += n;
    if (pos % blockSize === 0 || pos === size) closeBlock();
  }
};
return (m) => {
  if (m.type === 'data') {
    feed(views[m.slot].subarray(0, m.length));
    post({ type: 'ack', slot: m.slot });
  } else if (m.type === 'zeros') {
    for (let n = m.length; n > 0; ) {
      // a whole block of zeros: its hash is known
      if (!bh && pos % blockSize === 0 && n >= blockSize && pos + blockSize <= size) {
        outer.update(zeroBlock);
        zeroBlock.copy(list, (pos / blockSize) * keep, 0, keep);
        pos += blockSize;
        n -= blockSize;
        continue;
      }
      const k = Math.min(n, blockSize - (pos % blockSize), zeros.length);
      feed(zeros.subarray(0, k));
      n -= k;
    }
  } else if (m.type === 'end') {
    if (pos !== size) post({ type: 'error', message: 'hashed ' + pos + ' bytes of a ' + size + '-byte disk' });
    else post({ type: 'digest', hex: outer.digest('hex'), list: list.buffer }, [list.buffer]);
  }
};
`;

export interface DiskDigest {
  /** sha256 of the per-block sha256s (see above). */
  blocksSha256: string;
  /** BLOCK_HASH_BYTES of each block's sha256, in order: the local state's hash list. */
  blockHashes: Buffer;
}

export class DiskHasher {
  private readonly channel: Channel;
  private readonly slots = Array.from({ length: SLOTS }, () => new SharedArrayBuffer(SLOT_BYTES));
  private readonly free: number[] = Array.from({ length: SLOTS }, (_, i) => i);
  private waiters: (() => void)[] = [];
  private readonly digest: Promise<DiskDigest>;
  private failed: Error | null = null;

  constructor(size: number, blockSize = HASH_BLOCK_SIZE) {
    let resolveDigest!: (d: DiskDigest) => void;
    let rejectDigest!: (err: Error) => void;
    this.digest = new Promise((res, rej) => {
      resolveDigest = res;
      rejectDigest = rej;
    });
    this.digest.catch(() => {});
    const fail = (err: Error): void => {
      this.failed = err;
      rejectDigest(err);
      for (const w of this.waiters.splice(0)) w();
    };
    const onMessage = (msg: unknown): void => {
      const m = msg as { type: string; slot?: number; hex?: string; list?: ArrayBuffer; message?: string };
      if (m.type === 'ack') {
        this.free.push(m.slot!);
        this.waiters.shift()?.();
      } else if (m.type === 'digest') resolveDigest({ blocksSha256: m.hex!, blockHashes: Buffer.from(m.list!) });
      else if (m.type === 'error') fail(new Error(m.message));
    };
    this.channel = openChannel(HASH_JOB, { size, blockSize, keep: BLOCK_HASH_BYTES, slots: this.slots }, onMessage, fail);
    this.channel.busy(true);
  }

  /** Hashes `b`, the disk's next bytes, copied into a free slot (the caller may reuse it at once). */
  async update(b: Buffer): Promise<void> {
    for (let at = 0; at < b.length; at += SLOT_BYTES) {
      while (this.free.length === 0 && !this.failed) await new Promise<void>((res) => this.waiters.push(res));
      if (this.failed) throw this.failed;
      const slot = this.free.pop()!;
      const n = b.copy(new Uint8Array(this.slots[slot]!), 0, at, Math.min(b.length, at + SLOT_BYTES));
      this.channel.post({ type: 'data', slot, length: n });
    }
  }

  /** The disk's next `n` bytes are zeros. */
  zeros(n: number): void {
    if (n > 0) this.channel.post({ type: 'zeros', length: n });
  }

  async finish(): Promise<DiskDigest> {
    this.channel.post({ type: 'end' });
    try {
      return await this.digest;
    } finally {
      await this.channel.close();
    }
  }

  async close(): Promise<void> {
    await this.channel.close();
  }
}
