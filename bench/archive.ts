/**
 * Archive stack throughput against the stock tools, same run, same data:
 *   ours:  openArchiveSink (zstd-seekable level 3 in one worker → age X25519 on node:crypto) → file
 *   stock: zstd -3 -T1 -c input | age -r <recipient> -o output
 * Data: ~256 MiB, alternating 4 MiB stretches of text-like words and pseudo-random bytes.
 * Run: npx tsx bench/archive.ts [MiB]
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { createCipheriv } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openArchiveSink } from '../src/archive/stack.js';
import { openArchiveReader } from '../src/archive/stack.js';
import { prng } from '../test/helpers/images.js';

const MiB = 1 << 20;
const totalMiB = Number(process.argv[2] ?? 256);
const dir = mkdtempSync(join(tmpdir(), 'snapferry-bench-archive-'));
try {
  execFileSync('age-keygen', ['-o', join(dir, 'key.txt')], { stdio: 'ignore' });
  const recipient = execFileSync('age-keygen', ['-y', join(dir, 'key.txt')], { encoding: 'utf8' }).trim();
  const identity = readFileSync(join(dir, 'key.txt'), 'utf8').split('\n').find((l) => l.startsWith('AGE-SECRET-KEY-1'))!;

  const r = prng(2024);
  const words = ['restic', 'dissect', 'qemu', 'vmdk', 'grain', 'extent', 'ntfs', 'MFT', '\n', ' ', '/var/log/', 'snapshot-', 'Jan 12 03:14:15 ', 'kernel: ', 'ok', '0x7f3a'];
  const input = Buffer.allocUnsafe(totalMiB * MiB);
  for (let block = 0; block * 4 * MiB < input.length; block++) {
    const start = block * 4 * MiB;
    const end = Math.min(input.length, start + 4 * MiB);
    if (block % 2 === 1) {
      const key = Buffer.alloc(16);
      key.writeUInt32LE(block, 0);
      createCipheriv('aes-128-ctr', key, Buffer.alloc(16)).update(Buffer.alloc(end - start)).copy(input, start);
    } else {
      for (let p = start; p < end; ) {
        const w = words[Math.floor(r() * words.length)]!;
        p += input.write(w, p, Math.min(w.length, end - p), 'latin1');
      }
    }
  }
  const inputPath = join(dir, 'input.tar');
  writeFileSync(inputPath, input);

  async function ours(): Promise<{ seconds: number; bytes: number }> {
    const outPath = join(dir, 'ours.age');
    const fh = await open(outPath, 'w');
    const t0 = performance.now();
    const sink = openArchiveSink({ write: async (c) => void (await fh.write(c)), end: () => fh.close() }, { recipients: [recipient] });
    for (let p = 0; p < input.length; p += MiB) await sink.write(input.subarray(p, p + MiB));
    await sink.end();
    return { seconds: (performance.now() - t0) / 1000, bytes: statSync(outPath).size };
  }

  function stock(): { seconds: number; bytes: number } {
    const outPath = join(dir, 'stock.age');
    const t0 = performance.now();
    const res = spawnSync('sh', ['-c', `zstd -3 -T1 -q -c "${inputPath}" | age -r ${recipient} -o "${outPath}"`], { stdio: 'inherit' });
    if (res.status !== 0) throw new Error(`stock pipeline failed: ${res.status}`);
    return { seconds: (performance.now() - t0) / 1000, bytes: statSync(outPath).size };
  }

  const runs = 3;
  let bestOurs = { seconds: Infinity, bytes: 0 };
  let bestStock = { seconds: Infinity, bytes: 0 };
  for (let i = 0; i < runs; i++) {
    const s = stock();
    const o = await ours();
    if (s.seconds < bestStock.seconds) bestStock = s;
    if (o.seconds < bestOurs.seconds) bestOurs = o;
  }
  const mbps = (s: number): string => (input.length / MiB / s).toFixed(1);
  console.log(`input ${totalMiB} MiB (text-like and random in 4 MiB stretches), best of ${runs}`);
  console.log(`ours  (openArchiveSink, zstd -3 in a worker, 1 MiB frames): ${bestOurs.seconds.toFixed(3)} s  ${mbps(bestOurs.seconds)} MiB/s  -> ${bestOurs.bytes} bytes`);
  console.log(`stock (zstd -3 -T1 | age -r):                               ${bestStock.seconds.toFixed(3)} s  ${mbps(bestStock.seconds)} MiB/s  -> ${bestStock.bytes} bytes`);
  console.log(`throughput ratio ours/stock: ${(bestStock.seconds / bestOurs.seconds).toFixed(2)}x; size ratio ours/stock: ${(bestOurs.bytes / bestStock.bytes).toFixed(4)}`);

  // Check, not timed: the archive we just wrote opens and restores with the stock tools.
  const restored = spawnSync('sh', ['-c', `age -d -i "${join(dir, 'key.txt')}" "${join(dir, 'ours.age')}" | zstd -d -q | cmp - "${inputPath}"`], { stdio: 'inherit' });
  console.log(`stock age -d | zstd -d of ours equals the input: ${restored.status === 0}`);
  const fh = await open(join(dir, 'ours.age'), 'r');
  const size = statSync(join(dir, 'ours.age')).size;
  const reader = await openArchiveReader({ size, read: async (o, l) => { const b = Buffer.allocUnsafe(l); await fh.read(b, 0, l, o); return b; } }, [identity]);
  const t1 = performance.now();
  const rr = prng(7);
  for (let i = 0; i < 1000; i++) {
    const o = Math.floor(rr() * (reader.size - 4096));
    await reader.read(o, 4096);
  }
  console.log(`1000 random 4 KiB reads through openArchiveReader: ${(performance.now() - t1).toFixed(0)} ms, fetched ${(reader.stats().bytesFetched / MiB).toFixed(1)} MiB`);
  await fh.close();
} finally {
  rmSync(dir, { recursive: true, force: true });
}
