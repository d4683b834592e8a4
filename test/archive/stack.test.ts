import t from 'tap';
import { execFileSync, execSync } from 'node:child_process';
import { createCipheriv } from 'node:crypto';
import { mkdirSync, mkdtempSync, openSync, readFileSync, readSync, closeSync, rmSync, writeFileSync, statSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openArchiveReader, openArchiveSink } from '../../src/archive/stack.js';
import type { ByteSink, RandomAccess } from '../../src/archive/types.js';
import { SnapferryError } from '../../src/util/errors.js';
import { prng, requireTool } from '../helpers/images.js';

requireTool('age', 'age-keygen', 'zstd', 'tar');
const dir = mkdtempSync(join(tmpdir(), 'snapferry-stack-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const keyFile = join(dir, 'key.txt');
execFileSync('age-keygen', ['-o', keyFile], { stdio: 'ignore' });
const identity = readFileSync(keyFile, 'utf8').split('\n').find((l) => l.startsWith('AGE-SECRET-KEY-1'))!;
const recipient = execFileSync('age-keygen', ['-y', keyFile], { encoding: 'utf8' }).trim();

/** Seeded pseudo-random bytes at cipher speed (AES-CTR keystream). */
function randomStream(size: number, seed: number): Buffer {
  const key = Buffer.alloc(16);
  key.writeUInt32LE(seed >>> 0, 0);
  return createCipheriv('aes-128-ctr', key, Buffer.alloc(16)).update(Buffer.alloc(size));
}

function textLike(size: number, seed: number): Buffer {
  const r = prng(seed);
  const words = ['restic', 'dissect', 'qemu', 'vmdk', 'grain', 'extent', 'ntfs', 'MFT', '\n', ' ', '/var/log/', 'snapshot-'];
  const b = Buffer.allocUnsafe(size);
  for (let p = 0; p < size; ) {
    const w = words[Math.floor(r() * words.length)]!;
    p += b.write(w, p, Math.min(w.length, size - p), 'latin1');
  }
  return b;
}

async function fileSink(path: string): Promise<ByteSink> {
  const fh = await open(path, 'w');
  return {
    async write(c) {
      await fh.write(c);
    },
    async end() {
      await fh.close();
    },
  };
}

function fileSource(path: string): RandomAccess & { close(): void } {
  const fd = openSync(path, 'r');
  return {
    size: statSync(path).size,
    async read(offset, length) {
      const b = Buffer.allocUnsafe(length);
      let n = 0;
      while (n < length) {
        const k = readSync(fd, b, n, length - n, offset + n);
        if (k === 0) throw new Error(`short read at ${offset + n}`);
        n += k;
      }
      return b;
    },
    close: () => closeSync(fd),
  };
}

async function writeArchive(path: string, input: Buffer, frameSize?: number): Promise<ReturnType<typeof openArchiveSink>> {
  const sink = openArchiveSink(await fileSink(path), { recipients: [recipient], frameSize });
  const r = prng(input.length);
  for (let p = 0; p < input.length; ) {
    const n = 1 + Math.floor(r() * 512 * 1024);
    await sink.write(input.subarray(p, p + n));
    p += n;
  }
  await sink.end();
  return sink;
}

t.test('age -d | zstd -d restores openArchiveSink output; openArchiveReader reads random ranges', async (t) => {
  for (const size of [0, 1, 3 * 1024 * 1024 + 17]) {
    const input = Buffer.concat([textLike(size >> 1, 1), randomStream(size - (size >> 1), 2)]);
    const path = join(dir, `a${size}.tar.zst.age`);
    const sink = await writeArchive(path, input, 256 * 1024);
    const stats = sink.stats();
    t.equal(stats.bytesIn, size);
    t.equal(stats.bytesOut, statSync(path).size, 'stats count the bytes written');
    t.equal(stats.frames, Math.ceil(size / (256 * 1024)));
    const restored = execSync(`age -d -i ${keyFile} ${path} | zstd -d -q`, { maxBuffer: 64 << 20 });
    t.ok(restored.equals(input), `size ${size}: age -d | zstd -d gives the input`);
    const src = fileSource(path);
    const reader = await openArchiveReader(src, [identity]);
    t.equal(reader.size, size);
    t.equal(reader.frames, stats.frames);
    const r = prng(size + 3);
    let bad = 0;
    for (let i = 0; i < 1000 && size > 0; i++) {
      const offset = Math.floor(r() * size);
      const length = Math.min(size - offset, Math.floor(r() * (r() < 0.7 ? 4096 : 700_000)));
      if (!(await reader.read(offset, length)).equals(input.subarray(offset, offset + length))) bad++;
    }
    t.equal(bad, 0, `size ${size}: 1000 random ranges`);
    src.close();
  }
});

t.test('stock age | zstd | tar -x restores a PAX tar archived through the stack', async (t) => {
  const tree = join(dir, 'tree');
  mkdirSync(join(tree, 'sub'), { recursive: true });
  writeFileSync(join(tree, 'a.txt'), textLike(300_000, 4));
  writeFileSync(join(tree, 'sub', 'b.bin'), randomStream(2_000_000, 5));
  writeFileSync(join(tree, 'sub', `long-${'n'.repeat(150)}.txt`), 'pax long name\n');
  const tarBytes = execFileSync('tar', ['--format=pax', '-C', tree, '-cf', '-', '.'], { maxBuffer: 64 << 20 });
  const path = join(dir, 'tree.tar.zst.age');
  await writeArchive(path, tarBytes);
  const out = join(dir, 'restored');
  mkdirSync(out);
  execSync(`age -d -i ${keyFile} ${path} | zstd -d -q | tar -x -C ${out}`);
  for (const f of ['a.txt', 'sub/b.bin', `sub/long-${'n'.repeat(150)}.txt`]) {
    t.ok(readFileSync(join(out, f)).equals(readFileSync(join(tree, f))), `${f} restored byte-identically`);
  }
  const src = fileSource(path);
  const reader = await openArchiveReader(src, [identity]);
  t.ok((await reader.read(0, reader.size)).equals(tarBytes), 'the reader gives the tar back');
  src.close();
});

t.test('a 1 KiB read from a >= 64 MiB archive fetches < 1% of it', async (t) => {
  const size = 72 << 20;
  const input = Buffer.concat([randomStream(size - (8 << 20), 6), textLike(8 << 20, 7)]);
  const path = join(dir, 'big.age');
  await writeArchive(path, input, 256 * 1024);
  const fileSize = statSync(path).size;
  t.ok(fileSize >= 64 << 20, `archive is ${fileSize} bytes`);
  const src = fileSource(path);
  const reader = await openArchiveReader(src, [identity]);
  const offset = 40_000_123;
  t.ok((await reader.read(offset, 1024)).equals(input.subarray(offset, offset + 1024)), 'the bytes are right');
  const { bytesFetched, reads } = reader.stats();
  t.ok(bytesFetched < fileSize / 100, `fetched ${bytesFetched} bytes in ${reads} reads: ${((100 * bytesFetched) / fileSize).toFixed(3)}% of ${fileSize}`);
  src.close();
  // With the default 1 MiB frames the same read costs one ~1 MiB frame: report it, the bound above is for 256 KiB frames.
  const path2 = join(dir, 'big-default.age');
  await writeArchive(path2, input);
  const src2 = fileSource(path2);
  const reader2 = await openArchiveReader(src2, [identity]);
  t.ok((await reader2.read(offset, 1024)).equals(input.subarray(offset, offset + 1024)));
  const fetched2 = reader2.stats().bytesFetched;
  t.ok(fetched2 < statSync(path2).size / 50, `default frames: fetched ${fetched2} bytes, ${((100 * fetched2) / statSync(path2).size).toFixed(3)}%`);
  src2.close();
});

t.test('a wrong identity and a damaged archive are typed errors', async (t) => {
  const input = textLike(500_000, 8);
  const path = join(dir, 'dmg.age');
  await writeArchive(path, input, 65536);
  execFileSync('age-keygen', ['-o', join(dir, 'other.txt')], { stdio: 'ignore' });
  const otherId = readFileSync(join(dir, 'other.txt'), 'utf8').split('\n').find((l) => l.startsWith('AGE-SECRET-KEY-1'))!;
  await t.rejects(openArchiveReader(fileSource(path), [otherId]), { code: 'E_AGE_NO_IDENTITY' });
  const b = readFileSync(path);
  const cut = join(dir, 'cut.age');
  writeFileSync(cut, b.subarray(0, b.length - 100));
  const cutError = await openArchiveReader(fileSource(cut), [identity]).then(
    () => null,
    (e: unknown) => e,
  );
  t.ok(cutError instanceof SnapferryError && ['E_AGE_CHUNK', 'E_AGE_TRUNCATED'].includes(cutError.code), `a cut archive is refused at open (the seek table is in the last chunk): ${String(cutError)}`);
  const flip = Buffer.from(b);
  flip[Math.floor(b.length / 2)]! ^= 4;
  const flipped = join(dir, 'flip.age');
  writeFileSync(flipped, flip);
  const reader = await openArchiveReader(fileSource(flipped), [identity]);
  await t.rejects(reader.read(0, reader.size), { code: 'E_AGE_CHUNK' }, 'a flipped bit in the middle is found when read');
});
