/**
 * Cold lookups in a big ext directory: a fresh ExtFileSystem, then `count` seeded-random names of
 * DIR looked up one after another (names from debugfs `ls -p`, outside the timing).
 *
 *   npx tsx bench/ext-lookup.ts IMAGE [DIR=/big] [MODE=htree|linear] [COUNT=1000]
 *
 * MODE htree is ExtFileSystem.lookup as it stands (the htree descent for indexed directories).
 * MODE linear is what lookup did before it: read the whole directory once into a name -> inode
 * Map (through readdir, the same rawEntries scan and displayName) and answer from the Map. Run each
 * mode in its own process so RSS is its own.
 *
 * Prints one JSON line: {mode, names, seconds, reads, readBytes, rssDeltaMiB, maxRssMiB, heapDeltaMiB}.
 */
import { execFileSync } from 'node:child_process';
import { openExt } from '../src/fs/ext/ext.js';
import { openReadOnly } from '../src/disk/file.js';
import { LayeredDisk } from '../src/disk/layered.js';
import { RawLayer } from '../src/disk/raw.js';
import { resolvePath } from '../src/fs/path.js';
import type { VolumeSource } from '../src/fs/types.js';

function seeded(seed: number): () => number {
  let x = seed >>> 0;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 0x100000000;
  };
}

async function main(): Promise<number> {
  const [image, dir = '/big', mode = 'htree', countArg = '1000'] = process.argv.slice(2);
  if (!image || (mode !== 'htree' && mode !== 'linear')) {
    process.stderr.write('usage: npx tsx bench/ext-lookup.ts IMAGE [DIR] [htree|linear] [COUNT]\n');
    return 2;
  }
  const all: string[] = [];
  for (const line of execFileSync('debugfs', ['-R', `ls -p ${dir}`, image], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], maxBuffer: 1 << 28 }).split('\n')) {
    const m = /^\/(\d+)\/\d+\/\d+\/\d+\/(.*)\/\d*\/$/.exec(line);
    if (m && m[1] !== '0' && m[2] !== '.' && m[2] !== '..') all.push(m[2]!);
  }
  const rand = seeded(0x1005);
  const names = Array.from({ length: Number(countArg) }, () => all[Math.floor(rand() * all.length)]!);

  const disk = new LayeredDisk([new RawLayer(await openReadOnly(image))], []);
  let reads = 0;
  let readBytes = 0;
  const volume: VolumeSource = {
    size: disk.size,
    read: (o, l) => {
      reads++;
      readBytes += l;
      return disk.read(o, l);
    },
    readInto: (b, o) => {
      reads++;
      readBytes += b.length;
      return disk.readInto(b, o);
    },
  };
  global.gc?.();
  const rss0 = process.memoryUsage().rss;
  const heap0 = process.memoryUsage().heapUsed;
  const t0 = process.hrtime.bigint();
  const fs = await openExt(volume);
  const dirIno = await resolvePath(fs, dir);
  let found = 0;
  if (mode === 'htree') {
    for (const n of names) if ((await fs.lookup(dirIno, n)) !== null) found++;
  } else {
    const index = new Map<string, number>();
    for await (const e of fs.readdir(dirIno)) if (!index.has(e.name)) index.set(e.name, e.ino);
    for (const n of names) if (index.has(n)) found++;
    (globalThis as { keep?: unknown }).keep = index; // held as the old dirIndex cache held it
  }
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const mem = process.memoryUsage();
  process.stdout.write(
    JSON.stringify({
      mode,
      names: names.length,
      found,
      seconds: Number(seconds.toFixed(3)),
      reads,
      readBytes,
      rssDeltaMiB: Number(((mem.rss - rss0) / 2 ** 20).toFixed(1)),
      heapDeltaMiB: Number(((mem.heapUsed - heap0) / 2 ** 20).toFixed(1)),
      maxRssMiB: Number((process.resourceUsage().maxRSS / 1024).toFixed(1)),
    }) + '\n',
  );
  await fs.close();
  await disk.close();
  return found === names.length ? 0 : 1;
}

main().then((code) => process.exit(code), (err) => {
  process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
