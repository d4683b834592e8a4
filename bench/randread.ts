/**
 * Random 4 KiB reads of one file through whatever is mounted (bench/mount.sh runs it on snapferry,
 * ntfs-3g and the kernel's ext4): COUNT reads at seeded 4 KiB-aligned offsets, CONCURRENCY in
 * flight, each a pread(2) through Node's thread pool. Prints {reads, seconds, iops}.
 *
 *   node dist/bench/randread.js FILE [COUNT=20000] [CONCURRENCY=4] [SEED=1]
 */
import { open } from 'node:fs/promises';

async function main(): Promise<void> {
  const [file, countArg, concArg, seedArg] = process.argv.slice(2);
  if (!file) throw new Error('usage: node dist/bench/randread.js FILE [COUNT] [CONCURRENCY] [SEED]');
  const count = Number(countArg ?? 20000);
  const conc = Number(concArg ?? 4);
  let s = Number(seedArg ?? 1) >>> 0 || 1;
  const next = (): number => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s;
  };
  const fh = await open(file, 'r');
  const blocks = Math.floor((await fh.stat()).size / 4096);
  let issued = 0;
  const t0 = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: conc }, async () => {
      const buf = Buffer.alloc(4096);
      while (issued < count) {
        issued++;
        const { bytesRead } = await fh.read(buf, 0, 4096, (next() % blocks) * 4096);
        if (bytesRead !== 4096) throw new Error(`short read: ${bytesRead}`);
      }
    }),
  );
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  await fh.close();
  process.stdout.write(`${JSON.stringify({ reads: count, seconds: Number(seconds.toFixed(3)), iops: Math.round(count / seconds) })}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).message}\n`);
  process.exit(1);
});
