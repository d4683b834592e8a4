/**
 * One timed pass over a bare filesystem image (volume 'whole') through snapferry's own layers, the
 * way `snapferry ls -R` and `snapferry cat` do it: the CLI's walk (streamed readdir, a stat of every
 * entry, one open listing per level) and, in mode `read`, every regular file streamed through the
 * CLI's readChunks (1 MiB reads, one file at a time).
 *
 *   node dist/bench/fs-walk.js IMAGE walk|read     (built by `npm run build`; bench/fs.sh runs it so)
 *
 * It runs as the product does: compiled, with bin/snapferry.js's heap settings (src/cli/runtime.ts).
 *
 * Prints one JSON line: {files, dirs, other, bytes, seconds, peakRssMiB, skipped}. Exits 1 if the
 * walk skipped any entry (an unreadable inode is a bench failure, not a number).
 */
import { openDisk } from '../src/disk/open.js';
import { readVolumes } from '../src/volume/index.js';
import { openFilesystem } from '../src/fs/open.js';
import { walk } from '../src/cli/ls.js';
import { readChunks } from '../src/cli/cat.js';
import { tuneRuntime } from '../src/cli/runtime.js';

async function main(): Promise<number> {
  tuneRuntime();
  const [image, mode] = process.argv.slice(2);
  if (!image || (mode !== 'walk' && mode !== 'read')) {
    process.stderr.write('usage: node dist/bench/fs-walk.js IMAGE walk|read\n');
    return 2;
  }
  const t0 = process.hrtime.bigint();
  const disk = await openDisk(image);
  let files = 0;
  let dirs = 0;
  let other = 0;
  let bytes = 0;
  const skipped: string[] = [];
  try {
    const table = await readVolumes(disk);
    const volume = table.volumes.find((v) => v.name === 'whole') ?? table.volumes[0];
    if (!volume) throw new Error(`${image}: no volume`);
    const fs = await openFilesystem(disk, volume);
    try {
      for await (const item of walk(fs, fs.rootIno, '/', true)) {
        if (item.kind === 'skip') {
          skipped.push(`${item.error.code}: ${item.error.message}`);
          continue;
        }
        const type = item.stat.type;
        if (type === 'dir') dirs++;
        else if (type === 'file') {
          files++;
          if (mode === 'read') bytes += await readChunks(fs, item.ino, undefined, () => {});
          else bytes += item.stat.size;
        } else other++;
      }
    } finally {
      await fs.close();
    }
  } finally {
    await disk.close();
  }
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  // maxRSS is in KiB (getrusage ru_maxrss on Linux).
  const peakRssMiB = Math.round(process.resourceUsage().maxRSS / 1024);
  if (process.env.FS_WALK_MEM) process.stderr.write(`${JSON.stringify(process.memoryUsage())}\n`);
  process.stdout.write(`${JSON.stringify({ files, dirs, other, bytes, seconds: Number(seconds.toFixed(3)), peakRssMiB, skipped: skipped.length })}\n`);
  for (const s of skipped.slice(0, 10)) process.stderr.write(`fs-walk: skipped ${s}\n`);
  return skipped.length > 0 ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`fs-walk: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
