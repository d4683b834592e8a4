import t from 'tap';
import { LayeredDisk, mergeRanges } from '../../src/disk/layered.js';
import { RawLayer } from '../../src/disk/raw.js';
import { BufferSource } from '../../src/disk/file.js';
import type { AllocRange, ByteRange, DiskLayer } from '../../src/disk/types.js';

/** A delta layer that holds only the given ranges, filled with one byte value. */
class PatchLayer implements DiskLayer {
  constructor(readonly size: number, private readonly held: ByteRange[], private readonly fill: number) {}
  async readInto(out: Buffer, offset: number): Promise<ByteRange[]> {
    const holes: ByteRange[] = [];
    let pos = offset;
    const end = offset + out.length;
    for (const h of this.held) {
      const s = Math.max(h.offset, offset), e = Math.min(h.offset + h.length, end);
      if (s >= e) continue;
      if (s > pos) holes.push({ offset: pos, length: s - pos });
      out.fill(this.fill, s - offset, e - offset);
      pos = e;
    }
    if (pos < end) holes.push({ offset: pos, length: end - pos });
    return holes;
  }
  async allocation(offset: number, length: number): Promise<AllocRange[]> {
    const out: AllocRange[] = [];
    const buf = Buffer.alloc(length);
    const holes = await this.readInto(buf, offset);
    let pos = offset;
    for (const h of holes) {
      if (h.offset > pos) out.push({ offset: pos, length: h.offset - pos, state: 'data' });
      out.push({ offset: h.offset, length: h.length, state: 'unallocated' });
      pos = h.offset + h.length;
    }
    if (pos < offset + length) out.push({ offset: pos, length: offset + length - pos, state: 'data' });
    return out;
  }
  async close(): Promise<void> {}
}

t.test('a read falls through the stack to the first layer that holds each byte', async (t) => {
  const base = new RawLayer(new BufferSource(Buffer.alloc(100, 1)));
  const mid = new PatchLayer(100, [{ offset: 10, length: 20 }], 2);
  const top = new PatchLayer(100, [{ offset: 25, length: 10 }], 3);
  const disk = new LayeredDisk([top, mid, base], []);
  const got = await disk.read(0, 100);
  const want = Buffer.alloc(100, 1);
  want.fill(2, 10, 25);
  want.fill(3, 25, 35);
  t.same([...got], [...want]);
  t.same([...(await disk.read(24, 3))], [2, 3, 3]);
});

t.test('what no layer holds reads as zeros and is reported unallocated', async (t) => {
  const top = new PatchLayer(64, [{ offset: 8, length: 8 }], 7);
  const disk = new LayeredDisk([top], []);
  const got = await disk.read(0, 24);
  t.same([...got.subarray(0, 8)], Array(8).fill(0));
  t.same([...got.subarray(8, 16)], Array(8).fill(7));
  t.same(await disk.allocation(), [
    { offset: 0, length: 8, state: 'unallocated' },
    { offset: 8, length: 8, state: 'data' },
    { offset: 16, length: 48, state: 'unallocated' },
  ]);
});

t.test('a parent smaller than its child contributes nothing past its end', async (t) => {
  const base = new RawLayer(new BufferSource(Buffer.alloc(10, 9)));
  const top = new PatchLayer(20, [], 0);
  const disk = new LayeredDisk([top, base], []);
  t.equal(disk.size, 20);
  t.same([...(await disk.read(5, 10))], [9, 9, 9, 9, 9, 0, 0, 0, 0, 0]);
});

t.test('reads outside the disk are typed errors', async (t) => {
  const disk = new LayeredDisk([new RawLayer(new BufferSource(Buffer.alloc(10)))], []);
  await t.rejects(disk.read(5, 10), { code: 'E_TRUNCATED' });
  await t.rejects(disk.read(-1, 1), { code: 'E_TRUNCATED' });
});

t.test('mergeRanges joins neighbours of one state and drops empty ranges', async (t) => {
  t.same(mergeRanges([
    { offset: 0, length: 5, state: 'data' },
    { offset: 5, length: 0, state: 'zero' },
    { offset: 5, length: 5, state: 'data' },
    { offset: 10, length: 5, state: 'zero' },
  ]), [{ offset: 0, length: 10, state: 'data' }, { offset: 10, length: 5, state: 'zero' }]);
});
