import t from 'tap';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Compressor } from 'zstd-napi';
import { parseSeekTable, ZstdSeekableReader, ZstdSeekableSink } from '../../src/archive/zstd/seekable.js';
import { MAX_FRAME_DECOMPRESSED_SIZE, Seek_Table_Footer, SKIPPABLE_HEADER_SIZE } from '../../src/archive/zstd/structs.js';
import type { ByteSink } from '../../src/archive/types.js';
import { SnapferryError } from '../../src/util/errors.js';
import { prng, requireTool } from '../helpers/images.js';
import { bufferSource, memorySink } from '../helpers/bytes.js';

requireTool('zstd');
const dir = mkdtempSync(join(tmpdir(), 'snapferry-zstd-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

/** Compressible data: runs of text-like words mixed with random stretches, seeded. */
function mixedData(size: number, seed: number): Buffer {
  const r = prng(seed);
  const words = ['snapshot', 'vmdk', 'extent', 'grain', 'ntfs', 'inode', ' ', '\n', 'backup', '0x', 'ferry', 'catalog'];
  const b = Buffer.allocUnsafe(size);
  let p = 0;
  while (p < size) {
    if (r() < 0.1) {
      const n = Math.min(size - p, Math.floor(r() * 2000));
      for (let i = 0; i < n; i++) b[p++] = (r() * 256) | 0;
    } else {
      const w = words[Math.floor(r() * words.length)]!;
      p += b.write(w, p, Math.min(w.length, size - p), 'latin1');
    }
  }
  return b;
}

async function compress(input: Buffer, frameSize: number, seed = 1): Promise<{ out: Buffer; sink: ZstdSeekableSink }> {
  const mem = memorySink();
  const sink = new ZstdSeekableSink(mem, { frameSize });
  const r = prng(seed);
  for (let p = 0; p < input.length; ) {
    const n = 1 + Math.floor(r() * frameSize * 1.5);
    await sink.write(input.subarray(p, p + n));
    p += n;
  }
  await sink.end();
  if (!mem.ended) throw new Error('ZstdSeekableSink.end did not end the sink below');
  return { out: mem.bytes(), sink };
}

function stockDecompress(b: Buffer, name: string): Buffer {
  const f = join(dir, name);
  writeFileSync(f, b);
  return execFileSync('zstd', ['-d', '-c', '-q', f], { maxBuffer: 256 * 1024 * 1024 });
}

async function expectCode(p: Promise<unknown>, code: string, field: string | null, what: string): Promise<void> {
  try {
    await p;
    t.fail(`${what}: expected ${code}, but it succeeded`);
  } catch (e) {
    t.ok(e instanceof SnapferryError && e.code === code && (field === null || e.data.field === field), `${what}: ${code}${field ? ` (${field})` : ''}, got ${e instanceof SnapferryError ? `${e.code} ${e.data.field}` : String(e)}`);
  }
}

t.test('ZstdSeekableSink output decompresses with stock zstd -d, and its seek table parses', async (t) => {
  for (const [size, frameSize] of [[0, 65536], [1, 65536], [65536 * 4, 65536], [3_000_001, 65536], [2_500_000, 1 << 20]] as const) {
    const input = mixedData(size, size + 1);
    const { out, sink } = await compress(input, frameSize, size);
    t.ok(stockDecompress(out, `s${size}.zst`).equals(input), `size ${size} frameSize ${frameSize}: zstd -d gives the input`);
    const table = await parseSeekTable(bufferSource(out));
    const frames = Math.ceil(size / frameSize);
    t.equal(table.frames.length, frames, `${frames} frames`);
    t.equal(table.decompressedSize, size);
    t.equal(table.checksumFlag, size > 0, 'checksums present (an empty table has none to carry)');
    t.same(table.frames, sink.frames(), 'the sink reports the same frames as the table');
    t.same(sink.stats(), { bytesIn: size, bytesOut: out.length, frames }, 'stats');
    t.ok(table.frames.every((f, i) => f.decompressedSize === (i < frames - 1 ? frameSize : size - (frames - 1) * frameSize)), 'every frame but the last is frameSize');
    if (size > 0) t.equal(sink.frameIndexOf(size - 1), frames - 1);
  }
});

t.test('ZstdSeekableReader: 10,000 random ranges of a multi-frame stream equal the input', async (t) => {
  const input = mixedData(3_000_001, 77);
  const { out } = await compress(input, 65536);
  const reader = await ZstdSeekableReader.open(bufferSource(out), { cacheBytes: 8 * 65536 });
  t.equal(reader.size, input.length);
  t.equal(reader.frames, 46);
  const r = prng(4242);
  let bad = 0;
  for (let i = 0; i < 10_000; i++) {
    const offset = Math.floor(r() * input.length);
    const max = input.length - offset;
    const length = Math.min(max, Math.floor(r() * (r() < 0.8 ? 1000 : 300_000)));
    const got = await reader.read(offset, length);
    if (got.length !== length || !got.equals(input.subarray(offset, offset + length))) bad++;
  }
  t.equal(bad, 0, '10,000 ranges');
  t.ok((await reader.read(0, input.length)).equals(input), 'whole stream');
  await expectCode(reader.read(input.length - 5, 6), 'E_TRUNCATED', null, 'read past the end');
  t.ok(reader.stats().cacheHits > 0, 'the LRU serves repeated frames');
});

t.test('a sequential reader gets the next frame decompressed ahead', async (t) => {
  const input = mixedData(10 * 65536, 5);
  const { out } = await compress(input, 65536);
  const src = bufferSource(out);
  const reader = await ZstdSeekableReader.open(src);
  await reader.read(0, 100);
  await reader.read(100, 100);
  await new Promise((res) => setImmediate(res));
  t.equal(reader.stats().framesDecoded, 2, 'frame 1 was read ahead');
  await reader.read(200, 65536 - 200);
  const fetched = src.fetched;
  t.ok((await reader.read(65536, 10)).equals(input.subarray(65536, 65546)));
  await new Promise((res) => setImmediate(res));
  t.equal(reader.stats().framesDecoded, 3, 'reading frame 1 used the read-ahead, frame 2 is the new read-ahead');
  t.ok(src.fetched > fetched && reader.stats().cacheHits >= 2, 'frame 1 came from the cache, only frame 2 was fetched');
  const random = await ZstdSeekableReader.open(bufferSource(out));
  await random.read(5 * 65536, 10);
  await new Promise((res) => setImmediate(res));
  t.equal(random.stats().framesDecoded, 1, 'no read-ahead for a random read');
});

t.test('corrupted seek tables are E_ZSTD_SEEKTABLE naming the field', async () => {
  const input = mixedData(8 * 65536 + 99, 8);
  const { out } = await compress(input, 65536);
  const table = await parseSeekTable(bufferSource(out));
  const tableStart = out.length - table.tableFrameSize;
  const footer = out.length - Seek_Table_Footer.size;
  const entry = (i: number) => tableStart + SKIPPABLE_HEADER_SIZE + 12 * i;
  const mutate = (f: (b: Buffer) => void): Buffer => {
    const b = Buffer.from(out);
    f(b);
    return b;
  };
  const cases: [string, string, Buffer][] = [
    ['Seekable_Magic_Number', 'seekable magic', mutate((b) => b.writeUInt32LE(0x8f92eab0, footer + 5))],
    ['Seek_Table_Descriptor', 'reserved bit', mutate((b) => (b[footer + 4] = 0x80 | 0x04))],
    ['Number_Of_Frames', 'frame count past the file', mutate((b) => b.writeUInt32LE(0x7fffff, footer))],
    ['Number_Of_Frames', 'frame count past the limit', mutate((b) => b.writeUInt32LE(0xffffffff, footer))],
    ['Skippable_Magic_Number', 'frame count one too small', mutate((b) => b.writeUInt32LE(8, footer))],
    ['Skippable_Magic_Number', 'skippable magic', mutate((b) => b.writeUInt32LE(0x184d2a5f, tableStart))],
    ['Frame_Size', 'frame size', mutate((b) => b.writeUInt32LE(b.readUInt32LE(tableStart + 4) + 1, tableStart + 4))],
    ['Compressed_Size', 'compressed sizes not summing to the file', mutate((b) => b.writeUInt32LE(b.readUInt32LE(entry(3)) - 1, entry(3)))],
    ['Compressed_Size', 'compressed size past the table', mutate((b) => b.writeUInt32LE(0xffffff, entry(0)))],
    ['Compressed_Size', 'zero compressed size', mutate((b) => b.writeUInt32LE(0, entry(2)))],
    ['Decompressed_Size', 'frame larger than our bound', mutate((b) => b.writeUInt32LE(MAX_FRAME_DECOMPRESSED_SIZE + 1, entry(1) + 4))],
    ['Seek_Table_Footer', 'stream shorter than a table', out.subarray(0, 10)],
    ['Seekable_Magic_Number', 'truncated stream', out.subarray(0, out.length - 1)],
  ];
  for (const [field, what, b] of cases) await expectCode(parseSeekTable(bufferSource(b)), 'E_ZSTD_SEEKTABLE', field, what);
});

t.test('a frame that disagrees with its seek table entry is E_ZSTD_FRAME', async (t) => {
  const input = mixedData(6 * 65536, 9);
  const { out } = await compress(input, 65536);
  const table = await parseSeekTable(bufferSource(out));
  const entry = (i: number) => out.length - table.tableFrameSize + SKIPPABLE_HEADER_SIZE + 12 * i;
  const frame1 = table.frames[1]!;
  const open = async (b: Buffer, offset: number): Promise<Buffer> => (await ZstdSeekableReader.open(bufferSource(b))).read(offset, 10);
  const lie = (delta: number) => {
    const b = Buffer.from(out);
    b.writeUInt32LE(frame1.decompressedSize + delta, entry(1) + 4);
    return b;
  };
  await expectCode(open(lie(1), frame1.decompressedOffset + 5), 'E_ZSTD_FRAME', 'Frame_Content_Size', 'decompressed size one more than the frame');
  await expectCode(open(lie(-1), frame1.decompressedOffset + 5), 'E_ZSTD_FRAME', 'Frame_Content_Size', 'decompressed size one less than the frame');
  const badSum = Buffer.from(out);
  badSum.writeUInt32LE((badSum.readUInt32LE(entry(2) + 8) ^ 1) >>> 0, entry(2) + 8);
  await expectCode(open(badSum, table.frames[2]!.decompressedOffset), 'E_ZSTD_FRAME', 'Checksum', 'seek table checksum differs from the frame');
  const flipped = Buffer.from(out);
  flipped[frame1.compressedOffset + Math.floor(frame1.compressedSize / 2)]! ^= 0x10;
  await expectCode(open(flipped, frame1.decompressedOffset), 'E_ZSTD_FRAME', null, 'a flipped bit inside a frame');
  const magic = Buffer.from(out);
  magic[frame1.compressedOffset]! ^= 1;
  await expectCode(open(magic, frame1.decompressedOffset), 'E_ZSTD_FRAME', 'Magic_Number', 'frame magic');
  // Shift the boundary between frames 1 and 2: both sizes lie, the sum still tiles the file.
  const shifted = Buffer.from(out);
  shifted.writeUInt32LE(frame1.compressedSize - 3, entry(1));
  shifted.writeUInt32LE(table.frames[2]!.compressedSize + 3, entry(2));
  await expectCode(open(shifted, frame1.decompressedOffset), 'E_ZSTD_FRAME', null, 'compressed size shorter than the frame');
  t.ok((await open(lie(1), 0)).equals(input.subarray(0, 10)), 'frames with true entries still read');
});

t.test('backpressure: at most framesInFlight frames wait below a stalled sink', async (t) => {
  const frameSize = 65536;
  let release!: () => void;
  const gate = new Promise<void>((res) => (release = res));
  const parts: Buffer[] = [];
  const slow: ByteSink = {
    async write(c) {
      await gate;
      parts.push(Buffer.from(c));
    },
    async end() {},
  };
  const sink = new ZstdSeekableSink(slow, { frameSize, framesInFlight: 3 });
  const input = mixedData(10 * frameSize, 3);
  let accepted = 0;
  const producer = (async () => {
    for (let i = 0; i < 10; i++) {
      await sink.write(input.subarray(i * frameSize, (i + 1) * frameSize));
      accepted++;
    }
    await sink.end();
  })();
  await new Promise((res) => setTimeout(res, 300));
  t.ok(accepted >= 1 && accepted <= 3, `the producer is held after ${accepted} frames`);
  release();
  await producer;
  t.equal(accepted, 10);
  t.ok(stockDecompress(Buffer.concat(parts), 'bp.zst').equals(input), 'the output is whole after the stall');
});

/** CPU time of this process's main thread so far, in ms (/proc: utime + stime, in clock ticks of 10 ms). */
function mainThreadCpuMs(): number {
  const stat = readFileSync(`/proc/self/task/${process.pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10; // fields 14 and 15 of proc(5), counted from field 3
}

t.test('compression runs off the event loop', async (t) => {
  // The main thread's CPU time, compared with the same compression done on it in the same run: on
  // a machine under load (a CI run with a guest VM booting beside it) wall-clock measures (a timer's
  // longest gap, the event loop's utilization) fail with or without the worker, CPU time does not.
  // 12 frames through a sink's 3 slots: the slots' first use (fresh pages) is a fixed cost, the rest is the steady state
  const input = mixedData(48 << 20, 12);
  const mem = memorySink();
  const sink = new ZstdSeekableSink(mem, { frameSize: 4 << 20, level: 9 });
  const before = mainThreadCpuMs();
  for (let p = 0; p < input.length; p += 4 << 20) await sink.write(input.subarray(p, p + (4 << 20)));
  await sink.end();
  const ours = mainThreadCpuMs() - before;
  t.equal(sink.stats().frames, 12);

  const here = new Compressor();
  here.setParameters({ compressionLevel: 9 });
  const start = mainThreadCpuMs();
  for (let p = 0; p < input.length; p += 4 << 20) here.compress(input.subarray(p, p + (4 << 20)));
  const inline = mainThreadCpuMs() - start;
  t.ok(ours < inline / 2, `main thread CPU ${ours} ms with the worker, ${inline} ms compressing the same 48 MiB on it (level 9, 4 MiB frames)`);
});

t.test('options are checked', async (t) => {
  t.throws(() => new ZstdSeekableSink(memorySink(), { frameSize: MAX_FRAME_DECOMPRESSED_SIZE + 1 }), { code: 'E_ZSTD_OPTIONS' });
  t.throws(() => new ZstdSeekableSink(memorySink(), { frameSize: 0 }), { code: 'E_ZSTD_OPTIONS' });
  const s = new ZstdSeekableSink(memorySink());
  await s.end();
  await t.rejects(s.write(Buffer.from('x')), { code: 'E_ZSTD_ENDED' });
});
