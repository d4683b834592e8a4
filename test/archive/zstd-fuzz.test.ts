/** Mutation fuzzer of the seek table parser and the frame checks: every case ends in data or a SnapferryError. */
import t from 'tap';
import { parseSeekTable, ZstdSeekableReader, ZstdSeekableSink } from '../../src/archive/zstd/seekable.js';
import type { RandomAccess } from '../../src/archive/types.js';
import { SnapferryError } from '../../src/util/errors.js';
import { prng } from '../helpers/images.js';

const r = prng(0x5eed2a5e);
const input = Buffer.alloc(20 * 4096 + 123);
for (let i = 0; i < input.length; i++) input[i] = r() < 0.7 ? 0x61 + (i % 7) : (r() * 256) | 0;
const parts: Buffer[] = [];
const sink = new ZstdSeekableSink({ async write(c) { parts.push(Buffer.from(c)); }, async end() {} }, { frameSize: 4096 });
await sink.write(input);
await sink.end();
const seed = Buffer.concat(parts);
const tableSize = (await parseSeekTable(source(seed))).tableFrameSize;

function source(b: Buffer): RandomAccess {
  return {
    size: b.length,
    async read(offset, length) {
      if (offset < 0 || length < 0 || offset + length > b.length) throw new Error(`fuzz source: read past end ${offset}+${length}`);
      return b.subarray(offset, offset + length);
    },
  };
}

const INTERESTING = [0, 1, 8, 9, 12, 0x7f, 0x80, 0xff, 0x7fffffff, 0xffffffff, 0x800000, 0x800001, 4096, 4095, 4097];

function mutate(b: Buffer): Buffer {
  let m = Buffer.from(b);
  const n = 1 + Math.floor(r() * 4);
  for (let k = 0; k < n; k++) {
    // Mostly the seek table; sometimes anywhere (frames too).
    const pos = r() < 0.8 ? m.length - 1 - Math.floor(r() * Math.min(m.length, tableSize)) : Math.floor(r() * m.length);
    switch (Math.floor(r() * 6)) {
      case 0:
        m[pos]! ^= 1 << Math.floor(r() * 8);
        break;
      case 1:
        m[pos] = (r() * 256) | 0;
        break;
      case 2:
        if (pos + 4 <= m.length) m.writeUInt32LE(INTERESTING[Math.floor(r() * INTERESTING.length)]! >>> 0, pos);
        break;
      case 3:
        m = m.subarray(0, Math.floor(r() * m.length));
        break;
      case 4:
        m = Buffer.concat([m.subarray(0, pos), Buffer.from([(r() * 256) | 0]), m.subarray(pos)]);
        break;
      default:
        m = Buffer.concat([m.subarray(0, pos), m.subarray(pos + 1 + Math.floor(r() * 16))]);
    }
  }
  return m;
}

t.test('2000 mutated seekable streams end in data or a SnapferryError', async (t) => {
  const N = 2000;
  let data = 0;
  let typed = 0;
  const wrongData: number[] = [];
  const untyped: string[] = [];
  const codes: Record<string, number> = {};
  for (let i = 0; i < N; i++) {
    const m = mutate(seed);
    try {
      const reader = await ZstdSeekableReader.open(source(m));
      const all = await reader.read(0, reader.size);
      // Accepted data must be the input (or the table was edited consistently); checksummed frames make a silent change unlikely.
      if (reader.size === input.length && !all.equals(input)) wrongData.push(i);
      data++;
    } catch (e) {
      if (e instanceof SnapferryError) {
        typed++;
        codes[e.code] = (codes[e.code] ?? 0) + 1;
      } else untyped.push(`${i}: ${String(e)}`);
    }
  }
  t.same(untyped, [], 'no untyped error');
  t.same(wrongData, [], 'no accepted case returns different bytes of the same size');
  t.equal(data + typed, N);
  t.ok(typed > N / 2, `${typed} refused (${JSON.stringify(codes)}), ${data} read`);
});
