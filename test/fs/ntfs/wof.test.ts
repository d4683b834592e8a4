/**
 * Windows "compact" (WOF) files. The oracle is wimlib, an independent XPRESS/LZX compressor
 * (images/gen-wof.py through ctypes): (1) the decoders round-trip buffers wimlib compressed at
 * several levels; (2) on the volume images/ntfs-wof.sh made with mkntfs + ntfs-3g, every WOF file's
 * size, sha256 and random sub-ranges equal the originals; (3) hostile streams and chunks (cut,
 * bad chunk tables, thousands of mutated chunks) end in a result or a typed SnapferryError.
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openNtfs } from '../../../src/fs/ntfs/ntfs.js';
import { resolvePath } from '../../../src/fs/path.js';
import { SnapferryError } from '../../../src/util/errors.js';
import { XpressDecoder } from '../../../src/fs/ntfs/wof/xpress.js';
import { LzxDecoder } from '../../../src/fs/ntfs/wof/lzx.js';
import { WofReader, parseWofReparse, type WofStoredStream } from '../../../src/fs/ntfs/wof/wof.js';
import { image, prng, requireTool, ROOT } from '../../helpers/images.js';
import { volumeOf } from './helpers.js';

requireTool('python3', 'mkntfs', 'ntfs-3g', 'setfattr');
const GEN = join(ROOT, 'images', 'gen-wof.py');
const ALGS = [
  { name: 'xpress4k', chunk: 4096, levels: [0, 100] },
  { name: 'xpress8k', chunk: 8192, levels: [0] },
  { name: 'xpress16k', chunk: 16384, levels: [0, 100] },
  { name: 'lzx', chunk: 32768, levels: [0, 20, 100] },
] as const;

const work = mkdtempSync(join(tmpdir(), 'snapferry-wof-'));
t.teardown(() => rmSync(work, { recursive: true, force: true }));

/** Test buffers of one chunk or less: random, text, runs, a small alphabet, x86-like calls, 16-byte records, text with long repeats. */
function vectors(seed: number, chunk: number, count: number): Buffer[] {
  const rand = prng(seed);
  const out: Buffer[] = [];
  const sizes = [1, 2, 3, 7, 16, 100, chunk - 1, chunk];
  for (let i = 0; i < count; i++) {
    const n = i < sizes.length ? sizes[i]! : 1 + Math.floor(rand() * chunk);
    const b = Buffer.alloc(n);
    const kind = i % 7;
    // 16-byte records drawn from a few dozen: matches at multiples of 8, what LZX's aligned-offset blocks are for
    const records = Array.from({ length: 40 }, () => {
      const r = Buffer.alloc(16);
      r.writeUInt32LE(Math.floor(rand() * 1000), 0);
      r.writeUInt32LE([0, 1, 2, 0xffffffff][Math.floor(rand() * 4)]!, 4);
      r.writeUInt32LE(Math.floor(rand() * 50) * 8, 8);
      return r;
    });
    const words = ['the ', 'quick ', 'brown ', 'fox ', 'jumps ', 'over ', 'lazy ', 'dog\n', 'snapferry ', 'WofCompressedData '];
    let p = 0;
    while (p < n) {
      switch (kind) {
        case 0: b[p++] = Math.floor(rand() * 256); break;
        case 1: p += b.write(words[Math.floor(rand() * words.length)]!, p); break;
        case 2: { const v = Math.floor(rand() * 256), len = 1 + Math.floor(rand() * 600); b.fill(v, p, Math.min(n, p + len)); p += len; break; }
        case 3: b[p++] = 0x61 + Math.floor(rand() * 4); break;
        case 4: {
          if (rand() < 0.3 && p + 5 <= n) { b[p] = 0xe8; b.writeInt32LE(Math.floor((rand() - 0.5) * 80000), p + 1); p += 5; }
          else b[p++] = [0x55, 0x89, 0xe5, 0x8b, 0x45, 0xc3, 0x90, 0x00][Math.floor(rand() * 8)]!;
          break;
        }
        case 5: {
          p += records[Math.floor(rand() * records.length)]!.copy(b, p);
          if (rand() < 0.2 && p + 4 <= n) { b.writeUInt32LE(Math.floor(rand() * 2 ** 32), p); p += 4; }
          break;
        }
        default: {
          // text with long-range repeats and the odd random byte
          if (p > 64 && rand() < 0.2) { const off = 1 + Math.floor(rand() * Math.min(p, 30000)); const len = 3 + Math.floor(rand() * 300); for (let k = 0; k < len && p < n; k++, p++) b[p] = b[p - off]!; }
          else if (rand() < 0.05) b[p++] = Math.floor(rand() * 256);
          else p += b.write(words[Math.floor(rand() * words.length)]!, p);
        }
      }
    }
    out.push(b.subarray(0, n));
  }
  return out;
}

/** Compresses every buffer with wimlib (one chunk each); undefined where it did not compress. */
function wimlibCompress(alg: string, level: number, bufs: Buffer[]): (Buffer | undefined)[] {
  const dir = mkdtempSync(join(work, `${alg}-${level}-`));
  bufs.forEach((b, i) => writeFileSync(join(dir, `${String(i).padStart(5, '0')}.in`), b));
  execFileSync('python3', [GEN, 'raw', alg, String(level), dir], { stdio: ['ignore', 'inherit', 'inherit'] });
  return bufs.map((_, i) => {
    const c = readFileSync(join(dir, `${String(i).padStart(5, '0')}.out`));
    return c.length ? c : undefined;
  });
}

const decoderFor = (alg: string) => {
  if (alg === 'lzx') {
    const d = new LzxDecoder();
    return (src: Uint8Array, n: number) => d.decompress(src, n);
  }
  const d = new XpressDecoder();
  return (src: Uint8Array, n: number) => d.decompress(src, n);
};

/** Valid compressed chunks per algorithm, kept for the mutation fuzzer. */
const corpus = new Map<string, { plain: Buffer; packed: Buffer }[]>();

t.test('decoders: buffers wimlib compressed decode to the same bytes', async (t) => {
  for (const alg of ALGS) {
    const pairs: { plain: Buffer; packed: Buffer }[] = [];
    for (const level of alg.levels) {
      const bufs = vectors(alg.chunk + level, alg.chunk, 150);
      const packed = wimlibCompress(alg.name, level, bufs);
      const decode = decoderFor(alg.name);
      let compared = 0, mismatches = 0, aligned = 0;
      for (let i = 0; i < bufs.length; i++) {
        const p = packed[i];
        if (!p) continue;
        compared++;
        if (alg.name === 'lzx' && p[1]! >>> 5 === 2) aligned++; // the first block's 3-bit type
        const got = Buffer.from(decode(p, bufs[i]!.length));
        if (!got.equals(bufs[i]!)) {
          mismatches++;
          if (mismatches < 3) t.fail(`${alg.name} level ${level}: vector ${i} (${bufs[i]!.length} bytes) decodes differently`);
        }
        pairs.push({ plain: bufs[i]!, packed: p });
      }
      t.ok(compared >= 90, `${alg.name} level ${level}: ${compared} compressed vectors`);
      t.equal(mismatches, 0, `${alg.name} level ${level}: every vector round-trips`);
      if (alg.name === 'lzx' && level === 100) t.ok(aligned > 0, `lzx level 100: aligned-offset blocks exercised (${aligned} chunks start with one)`);
    }
    corpus.set(alg.name, pairs);
  }
});

/** LZX bit writer (16-bit little-endian units, most significant bit first) for hand-made blocks. */
function lzxUncompressedBlock(data: Buffer, r: [number, number, number] = [1, 1, 1]): Buffer {
  // header: type 3 (3 bits), default-size flag 0 (1 bit), 16-bit size = 20 bits, then padding to 32
  const bits = (3 << 17) | (0 << 16) | data.length; // 20 bits
  const w = bits << 12; // left-justified in 32 bits
  const head = Buffer.alloc(4);
  head.writeUInt16LE((w >>> 16) & 0xffff, 0);
  head.writeUInt16LE(w & 0xffff, 2);
  const ro = Buffer.alloc(12);
  ro.writeUInt32LE(r[0], 0); ro.writeUInt32LE(r[1], 4); ro.writeUInt32LE(r[2], 8);
  return Buffer.concat([head, ro, data, data.length & 1 ? Buffer.alloc(1) : Buffer.alloc(0)]);
}

t.test('LZX: uncompressed blocks and the E8 call translation', async (t) => {
  const d = new LzxDecoder();
  const plain = Buffer.from('an uncompressed LZX block of odd length!');
  t.same(Buffer.from(d.decompress(lzxUncompressedBlock(plain), plain.length)), plain, 'raw bytes come back');
  // E8 at position 100 with absolute target 300 becomes relative 200
  const raw = Buffer.alloc(200, 0x90);
  raw[100] = 0xe8; raw.writeInt32LE(300, 101);
  raw[120] = 0xe8; raw.writeInt32LE(-50, 121); // -50 >= -120: compensating, becomes 12000000 - 50
  raw[140] = 0xe8; raw.writeInt32LE(12000001, 141); // past the file size: untouched
  raw[195] = 0xe8; raw.writeInt32LE(5, 196); // in the last 10 bytes: untouched
  const want = Buffer.from(raw);
  want.writeInt32LE(200, 101);
  want.writeInt32LE(12000000 - 50, 121);
  t.same(Buffer.from(d.decompress(lzxUncompressedBlock(raw), raw.length)), want, 'translated as WIM LZX does (file size 12000000, not in the last 10 bytes)');
  await t.rejects(async () => d.decompress(lzxUncompressedBlock(plain, [0, 1, 1]), plain.length), { code: 'E_LZX' }, 'a zero repeat offset is corrupt');
  await t.rejects(async () => d.decompress(lzxUncompressedBlock(plain).subarray(0, 20), plain.length), { code: 'E_LZX' }, 'a cut uncompressed block');
  await t.rejects(async () => d.decompress(lzxUncompressedBlock(plain), plain.length - 1), { code: 'E_LZX' }, 'a block larger than the output');
  await t.rejects(async () => d.decompress(Buffer.alloc(10), 40000), { code: 'E_LZX' }, 'an output larger than the window');
  await t.rejects(async () => new XpressDecoder().decompress(Buffer.alloc(300), 70000), { code: 'E_XPRESS' }, 'an XPRESS output larger than a block');
  await t.rejects(async () => new XpressDecoder().decompress(Buffer.alloc(255), 10), { code: 'E_XPRESS' }, 'no room for the length table');
  await t.rejects(async () => new XpressDecoder().decompress(Buffer.alloc(300), 10), { code: 'E_XPRESS' }, 'an empty code used to decode');
  await t.rejects(async () => new XpressDecoder().decompress(Buffer.alloc(300, 0x11), 10), { code: 'E_XPRESS' }, 'an over-subscribed code');
  const incomplete = Buffer.alloc(300);
  incomplete[0] = 0x21; // symbol 0 length 1, symbol 1 length 2: half the code space unused
  await t.rejects(async () => new XpressDecoder().decompress(incomplete, 10), { code: 'E_XPRESS' }, 'an incomplete code');
});

t.test('decoders: mutated and cut chunks end in bytes of the right size or a typed error', async (t) => {
  const rand = prng(20261125);
  let cases = 0, typed = 0, decoded = 0;
  const bad: string[] = [];
  for (const alg of ALGS) {
    const pairs = corpus.get(alg.name) ?? [];
    const decode = decoderFor(alg.name);
    for (let i = 0; i < 1500 && pairs.length; i++) {
      const { plain, packed } = pairs[Math.floor(rand() * pairs.length)]!;
      let m = Buffer.from(packed);
      const kind = i % 5;
      if (kind === 0) m = m.subarray(0, Math.floor(rand() * m.length));
      else if (kind === 1) for (let k = 0; k < 1 + rand() * 8; k++) m[Math.floor(rand() * m.length)] = Math.floor(rand() * 256);
      else if (kind === 2) m[Math.floor(rand() * m.length)]! ^= 1 << Math.floor(rand() * 8);
      else if (kind === 3) { const at = Math.floor(rand() * m.length); m = Buffer.concat([m.subarray(0, at), Buffer.from([Math.floor(rand() * 256)]), m.subarray(at)]); }
      else m = Buffer.from(Array.from({ length: Math.floor(rand() * 600) }, () => Math.floor(rand() * 256)));
      const outSize = kind === 4 ? 1 + Math.floor(rand() * alg.chunk) : plain.length;
      cases++;
      try {
        const out = decode(m, outSize);
        if (out.length !== outSize) bad.push(`${alg.name} case ${i}: ${out.length} bytes, not ${outSize}`);
        decoded++;
      } catch (err) {
        if (err instanceof SnapferryError) typed++;
        else bad.push(`${alg.name} case ${i}: ${(err as Error).stack}`);
      }
    }
  }
  t.same(bad.slice(0, 5), [], 'no untyped error and no output of the wrong size');
  t.equal(typed + decoded, cases, `${cases} cases: ${typed} typed errors, ${decoded} decoded to the right size`);
  t.ok(cases >= 5000, 'thousands of cases');
});

// ---- the image ------------------------------------------------------------------------------

const dir = image('ntfs-wof');
const manifest = readFileSync(join(dir, 'manifest.tsv'), 'utf8').trim().split('\n').map((l) => {
  const [path, size, sha256] = l.split('\t');
  return { path: path!, size: Number(size), sha256: sha256! };
});

t.test('ntfs-wof.img: every WOF file reads as its original', async (t) => {
  const vol = await volumeOf(join(dir, 'ntfs-wof.img'));
  const fs = await openNtfs(vol);
  t.teardown(async () => { await fs.close(); await vol.close(); });
  t.ok(manifest.length >= 32, `${manifest.length} files (8 per algorithm)`);
  const rand = prng(7);
  for (const f of manifest) {
    const ino = await resolvePath(fs, f.path);
    const st = await fs.stat(ino);
    t.equal(st.type, 'file', `${f.path}: a file`);
    t.equal(st.size, f.size, `${f.path}: stat size is the uncompressed size`);
    t.equal(st.ntfs!.reparseTag, 0x80000017, `${f.path}: flagged with IO_REPARSE_TAG_WOF`);
    const stored = (await fs.read(ino, 0, 1 << 30, 'WofCompressedData')).length;
    t.equal(st.allocatedSize, Math.ceil(stored / 512) * 512, `${f.path}: blocks are the compressed stream's (as ntfs-3g's plugin)`);
    const all = await fs.read(ino, 0, f.size + 4096);
    t.equal(createHash('sha256').update(all).digest('hex'), f.sha256, `${f.path}: sha256 of all ${f.size} bytes`);
    const orig = readFileSync(join(dir, 'orig', f.path));
    let bad = 0;
    for (let i = 0; i < 40 && f.size > 0; i++) {
      const off = Math.floor(rand() * f.size);
      const len = Math.floor(rand() * Math.min(f.size - off + 100, rand() < 0.5 ? 70000 : 300));
      const got = await fs.read(ino, off, len);
      if (!got.equals(orig.subarray(off, Math.min(f.size, off + len)))) bad++;
    }
    t.equal(bad, 0, `${f.path}: 40 random sub-range reads`);
    const ext: unknown[] = [];
    for await (const e of fs.extents(ino)) ext.push(e);
    t.same(ext, f.size ? [{ offset: 0, length: f.size, state: 'data' }] : [], `${f.path}: one data extent (never holes)`);
  }
  for (const [p, why] of [['/bad/unknown-algorithm.bin', /algorithm 7/], ['/bad/wimboot.bin', /WIMBoot/]] as const) {
    const ino = await resolvePath(fs, p);
    t.equal((await fs.stat(ino)).type, 'file', `${p}: still listed as a file`);
    await t.rejects(fs.read(ino, 0, 10), { code: 'E_NTFS_WOF', message: why }, `${p}: refused with E_NTFS_WOF`);
  }
});

// ---- hostile streams ----------------------------------------------------------------------

function bufferStream(b: Buffer): WofStoredStream {
  return { size: b.length, read: async (o, l) => Buffer.from(b.subarray(o, Math.min(b.length, o + l))) };
}

/** A WofCompressedData stream of `plain` made by wimlib, and its reparse point. */
function wofStream(alg: string, plain: Buffer): { stream: Buffer; reparse: Buffer } {
  const p = join(work, `plain-${alg}`);
  writeFileSync(p, plain);
  const rp = execFileSync('python3', [GEN, 'file', alg, p, `${p}.wof`], { encoding: 'utf8' }).trim();
  return { stream: readFileSync(`${p}.wof`), reparse: Buffer.from(rp, 'hex') };
}

t.test('hostile WofCompressedData streams end in E_NTFS_WOF_CORRUPT naming the record and chunk', async (t) => {
  const plain = Buffer.concat(vectors(99, 16384, 12)); // some chunks compress, some are random
  for (const alg of ALGS) {
    const { stream, reparse } = wofStream(alg.name, plain);
    const format = parseWofReparse(reparse, 77);
    t.equal(format.chunkSize, alg.chunk, `${alg.name}: the reparse point names the chunk size`);
    const good = new WofReader(77, format, plain.length, bufferStream(stream));
    t.ok((await good.read(0, plain.length)).equals(plain), `${alg.name}: the unmodified stream reads back`);
    const n = good.chunkCount;
    const table = (n - 1) * 4;

    // the table does not fit the stream (the uncompressed size claims far more chunks)
    t.throws(() => new WofReader(77, format, 2 ** 40, bufferStream(stream)), { code: 'E_NTFS_WOF_CORRUPT', data: { record: 77 } }, `${alg.name}: a chunk table larger than the stream`);
    // non-monotonic offsets
    const swapped = Buffer.from(stream);
    swapped.writeUInt32LE(stream.readUInt32LE(4), 0);
    swapped.writeUInt32LE(stream.readUInt32LE(0), 4);
    await t.rejects(new WofReader(77, format, plain.length, bufferStream(swapped)).read(0, plain.length), { code: 'E_NTFS_WOF_CORRUPT', data: { record: 77 } }, `${alg.name}: chunk offsets out of order`);
    // an offset beyond the stream
    const beyond = Buffer.from(stream);
    beyond.writeUInt32LE(stream.length * 2, 4 * (n - 2));
    await t.rejects(new WofReader(77, format, plain.length, bufferStream(beyond)).read(plain.length - 1, 1), { code: 'E_NTFS_WOF_CORRUPT', message: /starts at \d+, past/, data: { record: 77, chunk: n - 1 } }, `${alg.name}: the last chunk starting past the stream`);
    await t.rejects(new WofReader(77, format, plain.length, bufferStream(beyond)).read(0, plain.length), { code: 'E_NTFS_WOF_CORRUPT', message: /ends at \d+, past/, data: { record: 77, chunk: n - 2 } }, `${alg.name}: a chunk ending past the stream`);
    // a chunk stored in more bytes than it decompresses to
    const fat = Buffer.concat([stream, Buffer.alloc(alg.chunk)]);
    await t.rejects(new WofReader(77, format, plain.length, bufferStream(fat)).read(plain.length - 1, 1), { code: 'E_NTFS_WOF_CORRUPT', data: { chunk: n - 1 } }, `${alg.name}: a chunk larger than its uncompressed size`);
    // every cut of the stream: a result or a typed error; reads are bounded by the file
    const rand = prng(alg.chunk);
    let typed = 0, other = 0;
    for (let i = 0; i < 60; i++) {
      const cut = table + Math.floor(rand() * (stream.length - table));
      try {
        const got = await new WofReader(77, format, plain.length, bufferStream(stream.subarray(0, cut))).read(0, plain.length);
        if (got.length !== plain.length) other++;
      } catch (err) {
        if (err instanceof SnapferryError) typed++;
        else other++;
      }
    }
    t.equal(other, 0, `${alg.name}: cut streams give typed errors (${typed} of 60 refused)`);
    // garbage in the chunk payloads
    let garbageOther = 0;
    for (let i = 0; i < 200; i++) {
      const m = Buffer.from(stream);
      for (let k = 0; k < 1 + rand() * 20; k++) m[table + Math.floor(rand() * (m.length - table))] = Math.floor(rand() * 256);
      try {
        const r = new WofReader(77, format, plain.length, bufferStream(m));
        const off = Math.floor(rand() * plain.length);
        const got = await r.read(off, 50000);
        if (got.length !== Math.min(50000, plain.length - off)) garbageOther++;
      } catch (err) {
        if (!(err instanceof SnapferryError) || (err.code !== 'E_NTFS_WOF_CORRUPT')) garbageOther++;
      }
    }
    t.equal(garbageOther, 0, `${alg.name}: 200 streams with garbage chunks give bytes or E_NTFS_WOF_CORRUPT`);
  }
  t.throws(() => parseWofReparse(Buffer.from('170000801000000002000000020000000100000000000000', 'hex'), 5), { code: 'E_NTFS_WOF' }, 'WOF_EXTERNAL_INFO version 2');
  t.throws(() => parseWofReparse(Buffer.from('1700008010000000010000000200000002000000', 'hex'), 5), { code: 'E_NTFS_WOF' }, 'a reparse point too short for FILE_PROVIDER_EXTERNAL_INFO_V1');
  t.throws(() => parseWofReparse(Buffer.from('170000801000000001000000020000000200000000000000', 'hex'), 5), { code: 'E_NTFS_WOF' }, 'FILE_PROVIDER_EXTERNAL_INFO_V1 version 2');
});
