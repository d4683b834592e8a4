import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Decrypter, Encrypter } from 'age-encryption';
import { AgeSink } from '../../src/archive/age/writer.js';
import { AgeReader } from '../../src/archive/age/reader.js';
import { parseIdentity, parseIdentityFile, parseRecipient } from '../../src/archive/age/keys.js';
import { ENCRYPTED_CHUNK_SIZE } from '../../src/archive/age/structs.js';
import type { RandomAccess } from '../../src/archive/types.js';
import { SnapferryError } from '../../src/util/errors.js';
import { prng, requireTool } from '../helpers/images.js';
import { bufferSource, memorySink } from '../helpers/bytes.js';

requireTool('age', 'age-keygen');
const dir = mkdtempSync(join(tmpdir(), 'snapferry-age-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

function keygen(name: string): { file: string; identity: string; recipient: string } {
  const file = join(dir, name);
  execFileSync('age-keygen', ['-o', file], { stdio: 'ignore' });
  const identity = readFileSync(file, 'utf8').split('\n').find((l) => l.startsWith('AGE-SECRET-KEY-1'))!;
  const recipient = execFileSync('age-keygen', ['-y', file], { encoding: 'utf8' }).trim();
  return { file, identity, recipient };
}
const k1 = keygen('k1.txt');
const k2 = keygen('k2.txt');
const k3 = keygen('k3.txt');

function randomData(size: number, seed: number): Buffer {
  const r = prng(seed);
  const b = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i++) b[i] = (r() * 256) | 0;
  return b;
}

async function encrypt(input: Buffer, recipients: string[], seed = 1): Promise<Buffer> {
  const sink = memorySink();
  const age = new AgeSink(sink, recipients);
  const r = prng(seed);
  for (let p = 0; p < input.length; ) {
    const n = 1 + Math.floor(r() * 200_000);
    await age.write(input.subarray(p, p + n));
    p += n;
  }
  await age.end();
  if (!sink.ended) throw new Error('AgeSink.end did not end the sink below');
  return sink.bytes();
}

function stockDecrypt(file: string, key: string): Buffer {
  return execFileSync('age', ['-d', '-i', key, file], { maxBuffer: 64 * 1024 * 1024 });
}

async function expectCode(p: Promise<unknown>, codes: string[], what: string): Promise<SnapferryError | null> {
  try {
    await p;
  } catch (e) {
    if (e instanceof SnapferryError && codes.includes(e.code)) return e;
    t.fail(`${what}: expected ${codes.join('|')}, got ${e instanceof SnapferryError ? e.code : String(e)}`);
    return null;
  }
  t.fail(`${what}: expected ${codes.join('|')}, but it succeeded`);
  return null;
}

async function readRanges(reader: RandomAccess, input: Buffer, n: number, seed: number): Promise<number> {
  const r = prng(seed);
  let bad = 0;
  for (let i = 0; i < n; i++) {
    const offset = Math.floor(r() * (input.length + 1));
    const length = Math.floor(r() * Math.min(input.length - offset, r() < 0.5 ? 300 : 200_000) + 0.5);
    const got = await reader.read(offset, Math.min(length, input.length - offset));
    if (!got.equals(input.subarray(offset, offset + got.length)) || got.length !== Math.min(length, input.length - offset)) bad++;
  }
  return bad;
}

const SIZES = [0, 1, 65535, 65536, 65537, 3 * 65536, 5_000_003];

t.test('AgeSink output decrypts with stock age -d byte-identically, and AgeReader reads it', async (t) => {
  for (const size of SIZES) {
    const input = randomData(size, size + 7);
    const enc = await encrypt(input, [k1.recipient], size);
    const file = join(dir, `ours-${size}.age`);
    writeFileSync(file, enc);
    t.ok(stockDecrypt(file, k1.file).equals(input), `size ${size}: age -d gives the input`);
    const reader = await AgeReader.open(bufferSource(enc), [k1.identity]);
    t.equal(reader.size, size, `size ${size}: plaintext size derived from the file size`);
    t.ok((await reader.read(0, size)).equals(input), `size ${size}: whole read`);
    t.equal(await readRanges(reader, input, 200, size), 0, `size ${size}: 200 random ranges`);
  }
});

t.test('writes of whole chunks (sealed in place) and of one piece: the last chunk is still sealed as the last', async (t) => {
  for (const size of [65536, 131072, 3 * 65536, 3 * 65536 + 1, 2 * 65536 - 1]) {
    for (const piece of [size, 65536, 131073]) {
      const input = randomData(size, size + piece);
      const sink = memorySink();
      const age = new AgeSink(sink, [k1.recipient]);
      for (let p = 0; p < size; p += piece) await age.write(input.subarray(p, p + piece));
      await age.end();
      const file = join(dir, `whole-${size}-${piece}.age`);
      writeFileSync(file, sink.bytes());
      t.ok(stockDecrypt(file, k1.file).equals(input), `${size} bytes in writes of ${piece}: age -d gives the input`);
    }
  }
});

t.test('AgeReader reads random ranges of files encrypted by stock age -r', async (t) => {
  for (const size of SIZES) {
    const input = randomData(size, size + 11);
    const plain = join(dir, `stock-${size}.in`);
    const file = join(dir, `stock-${size}.age`);
    writeFileSync(plain, input);
    execFileSync('age', ['-r', k1.recipient, '-r', k2.recipient, '-o', file, plain]);
    const enc = readFileSync(file);
    for (const k of [k1, k2]) {
      const src = bufferSource(enc);
      const reader = await AgeReader.open(src, parseIdentityFile(readFileSync(k.file, 'utf8')));
      t.equal(reader.size, size, `stock ${size}: size`);
      t.equal(await readRanges(reader, input, 300, size + 1), 0, `stock ${size}: 300 random ranges`);
      const chunks: Buffer[] = [];
      for await (const c of reader.plaintextChunks()) chunks.push(c);
      t.ok(Buffer.concat(chunks).equals(input), `stock ${size}: streaming verify yields the input`);
    }
  }
});

t.test('a small ranged read fetches only the chunks it touches', async (t) => {
  const input = randomData(4_000_000, 5);
  const enc = await encrypt(input, [k1.recipient]);
  const src = bufferSource(enc);
  const reader = await AgeReader.open(src, [k1.identity]);
  const before = src.fetched;
  t.ok((await reader.read(1_000_000, 100)).equals(input.subarray(1_000_000, 1_000_100)));
  t.equal(src.fetched - before, ENCRYPTED_CHUNK_SIZE, 'one chunk fetched for a 100-byte read inside it');
  t.ok(before <= 4096 + 16, `opening read ${before} bytes (header and nonce)`);
});

t.test('multiple recipients each decrypt; a wrong identity is E_AGE_NO_IDENTITY', async (t) => {
  const input = randomData(200_000, 9);
  const enc = await encrypt(input, [k1.recipient, k2.recipient]);
  const file = join(dir, 'multi.age');
  writeFileSync(file, enc);
  for (const k of [k1, k2]) {
    t.ok(stockDecrypt(file, k.file).equals(input), `age -d with ${k.file}`);
    t.ok((await (await AgeReader.open(bufferSource(enc), [k.identity])).read(0, input.length)).equals(input), `AgeReader with ${k.file}`);
  }
  const e = await expectCode(AgeReader.open(bufferSource(enc), [k3.identity]), ['E_AGE_NO_IDENTITY'], 'wrong identity');
  t.equal(e?.data.stanzas, 2);
  t.not(spawnSync('age', ['-d', '-i', k3.file, file]).status, 0, 'stock age refuses the wrong identity too');
  t.ok((await (await AgeReader.open(bufferSource(enc), [k3.identity, k2.identity])).read(0, 10)).equals(input.subarray(0, 10)), 'any matching identity of several');
});

t.test('age-encryption (the reference TS implementation) agrees both ways', async (t) => {
  const input = randomData(150_001, 3);
  const d = new Decrypter();
  d.addIdentity(k2.identity);
  t.ok(Buffer.from(await d.decrypt(await encrypt(input, [k2.recipient]))).equals(input), 'age-encryption decrypts ours');
  const e = new Encrypter();
  e.addRecipient(k1.recipient);
  const theirs = Buffer.from(await e.encrypt(input));
  t.ok((await (await AgeReader.open(bufferSource(theirs), [k1.identity])).read(0, input.length)).equals(input), 'we decrypt age-encryption');
});

t.test('keys: malformed recipients and identities are E_AGE_KEY', async (t) => {
  const flipped = k1.recipient.slice(0, 10) + (k1.recipient[10] === 'q' ? 'p' : 'q') + k1.recipient.slice(11);
  for (const bad of [flipped, 'age1', '', 'ssh-ed25519 AAAA', k1.recipient.toUpperCase().slice(0, 20) + k1.recipient.slice(20), 'age1pq1' + k1.recipient.slice(4)]) {
    t.throws(() => parseRecipient(bad), { code: 'E_AGE_KEY' }, `recipient ${JSON.stringify(bad.slice(0, 24))}`);
  }
  t.throws(() => new AgeSink(memorySink(), []), { code: 'E_AGE_KEY' }, 'no recipient');
  t.throws(() => parseIdentity(k1.recipient), { code: 'E_AGE_KEY' }, 'a recipient is not an identity');
  t.throws(() => parseIdentity(k1.identity.slice(0, -1) + (k1.identity.endsWith('Q') ? 'P' : 'Q')), { code: 'E_AGE_KEY' }, 'identity checksum');
  t.equal(parseRecipient(k1.recipient).raw.length, 32);
  t.throws(() => parseIdentityFile('# only a comment\n'), { code: 'E_AGE_KEY' });
});

t.test('every single flipped bit of the header (and payload nonce) is refused with a typed error', async (t) => {
  const input = randomData(70_000, 21);
  const enc = await encrypt(input, [k1.recipient, k2.recipient]);
  const headerEnd = enc.indexOf('\n---') + 1;
  const macEnd = enc.indexOf(0x0a, headerEnd) + 1;
  const end = macEnd + 16;
  const codes = new Map<string, number>();
  let passed = 0;
  for (let bit = 0; bit < end * 8; bit++) {
    const m = Buffer.from(enc);
    m[bit >> 3]! ^= 1 << (bit & 7);
    try {
      const reader = await AgeReader.open(bufferSource(m), [k1.identity]);
      await reader.read(0, reader.size);
      passed++;
    } catch (e) {
      const code = e instanceof SnapferryError ? e.code : `untyped:${String(e)}`;
      codes.set(code, (codes.get(code) ?? 0) + 1);
    }
  }
  t.equal(passed, 0, `none of ${end * 8} flips is accepted`);
  t.same(
    [...codes.keys()].filter((c) => !['E_AGE_HEADER', 'E_AGE_HEADER_MAC', 'E_AGE_NO_IDENTITY', 'E_AGE_CHUNK', 'E_AGE_TRUNCATED'].includes(c)),
    [],
    `only typed age errors: ${JSON.stringify(Object.fromEntries(codes))}`,
  );
  t.ok((codes.get('E_AGE_HEADER_MAC') ?? 0) > 0 && (codes.get('E_AGE_CHUNK') ?? 0) > 0, 'MAC and chunk failures both seen');
});

t.test('flipped payload bits are E_AGE_CHUNK naming the chunk and its file offset', async (t) => {
  const input = randomData(5 * 65536 + 1234, 22);
  const enc = await encrypt(input, [k1.recipient]);
  const payloadOffset = (await AgeReader.open(bufferSource(enc), [k1.identity])).payloadOffset;
  const r = prng(99);
  let wrong = 0;
  const N = 2000;
  for (let i = 0; i < N; i++) {
    const pos = payloadOffset + Math.floor(r() * (enc.length - payloadOffset));
    const m = Buffer.from(enc);
    m[pos]! ^= 1 << Math.floor(r() * 8);
    const reader = await AgeReader.open(bufferSource(m), [k1.identity]);
    const chunk = Math.floor((pos - payloadOffset) / ENCRYPTED_CHUNK_SIZE);
    try {
      await reader.read(0, reader.size);
      wrong++;
    } catch (e) {
      if (!(e instanceof SnapferryError && e.code === 'E_AGE_CHUNK' && e.data.chunk === chunk && e.data.offset === payloadOffset + chunk * ENCRYPTED_CHUNK_SIZE)) wrong++;
    }
  }
  t.equal(wrong, 0, `${N} payload flips each name their chunk`);
});

t.test('truncation and reordering are detected', async (t) => {
  const input = randomData(4 * 65536 + 500, 23);
  const enc = await encrypt(input, [k1.recipient]);
  const payloadOffset = (await AgeReader.open(bufferSource(enc), [k1.identity])).payloadOffset;
  const readAll = async (b: Buffer): Promise<void> => {
    const reader = await AgeReader.open(bufferSource(b), [k1.identity]);
    await reader.read(0, reader.size);
  };
  const atBoundary = await expectCode(readAll(enc.subarray(0, payloadOffset + 2 * ENCRYPTED_CHUNK_SIZE)), ['E_AGE_TRUNCATED'], 'cut at a chunk boundary');
  t.equal(atBoundary?.data.chunk, 1, 'names the now-final chunk');
  await expectCode(readAll(enc.subarray(0, payloadOffset + 2 * ENCRYPTED_CHUNK_SIZE + 10)), ['E_AGE_TRUNCATED'], 'cut leaving a stub shorter than a tag');
  await expectCode(readAll(enc.subarray(0, payloadOffset + 2 * ENCRYPTED_CHUNK_SIZE + 1000)), ['E_AGE_CHUNK'], 'cut inside a chunk');
  await expectCode(readAll(enc.subarray(0, payloadOffset + 2 * ENCRYPTED_CHUNK_SIZE + 16)), ['E_AGE_TRUNCATED'], 'cut leaving an empty chunk after a full one');
  await expectCode(readAll(enc.subarray(0, payloadOffset)), ['E_AGE_TRUNCATED'], 'no payload');
  await expectCode(readAll(enc.subarray(0, payloadOffset - 5)), ['E_AGE_TRUNCATED'], 'cut in the nonce');
  await expectCode(readAll(enc.subarray(0, 60)), ['E_AGE_HEADER'], 'cut in the header');
  const extended = Buffer.concat([enc, Buffer.from(enc.subarray(payloadOffset, payloadOffset + ENCRYPTED_CHUNK_SIZE))]);
  await expectCode(readAll(extended), ['E_AGE_TRUNCATED', 'E_AGE_CHUNK'], 'a chunk appended after the last');
  const swapped = Buffer.from(enc);
  enc.copy(swapped, payloadOffset, payloadOffset + ENCRYPTED_CHUNK_SIZE, payloadOffset + 2 * ENCRYPTED_CHUNK_SIZE);
  enc.copy(swapped, payloadOffset + ENCRYPTED_CHUNK_SIZE, payloadOffset, payloadOffset + ENCRYPTED_CHUNK_SIZE);
  const e = await expectCode(readAll(swapped), ['E_AGE_CHUNK'], 'two chunks swapped');
  t.equal(e?.data.chunk, 0);
  const file = join(dir, 'trunc.age');
  writeFileSync(file, enc.subarray(0, payloadOffset + 2 * ENCRYPTED_CHUNK_SIZE));
  t.not(spawnSync('age', ['-d', '-i', k1.file, file]).status, 0, 'stock age also refuses the boundary cut');
});

t.test('reads past the end are refused', async (t) => {
  const enc = await encrypt(randomData(1000, 1), [k1.recipient]);
  const reader = await AgeReader.open(bufferSource(enc), [k1.identity]);
  await expectCode(reader.read(990, 11), ['E_TRUNCATED'], 'read past the end');
  t.equal((await reader.read(1000, 0)).length, 0);
});
