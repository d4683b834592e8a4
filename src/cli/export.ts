/** snapferry export: the resolved disk as a raw image. */
import { stat } from 'node:fs/promises';
import { exportRaw } from '../disk/export.js';
import { ExitCode, SnapferryError, UsageError } from '../util/errors.js';
import type { CommonOptions } from './main.js';
import { Progress, humanBytes } from './output.js';
import { withDisk } from './sources.js';
import type { Disk } from '../disk/types.js';

/** Refuses an OUT that is any file of the source (by device and inode): sources are never written. */
async function refuseSourceAsOutput(disk: Disk, out: string): Promise<void> {
  const o = await stat(out).catch(() => null);
  if (!o) return;
  for (const m of disk.chain) {
    for (const p of [m.path, ...m.extents.map((e) => e.path)]) {
      const s = await stat(p).catch(() => null);
      if (s && s.dev === o.dev && s.ino === o.ino) {
        throw new SnapferryError('E_EXPORT_IS_SOURCE', `${out} is ${p}, a file of the source disk; snapferry never writes to a source`, { out, source: p }, ExitCode.usage);
      }
    }
  }
}

export async function exportCommand(diskPath: string, out: string, o: CommonOptions & { force: boolean; progress: boolean }): Promise<number> {
  if (diskPath.toLowerCase().endsWith('.vmx')) throw new UsageError('export takes one disk; name the disk (inspect the .vmx to see them)');
  return withDisk(diskPath, o, async (disk) => {
    const toStdout = out === '-';
    if (!toStdout) await refuseSourceAsOutput(disk, out);
    const bar = new Progress('export', o.progress && !o.json);
    const abort = new AbortController();
    const onSignal = () => abort.abort();
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    const started = Date.now();
    try {
      const r = await exportRaw(disk, toStdout ? process.stdout : out, {
        overwrite: o.force,
        signal: abort.signal,
        onProgress: (p) => bar.update(p.done, p.total),
      });
      bar.end();
      const seconds = (Date.now() - started) / 1000;
      const summary = { source: diskPath, out, size: r.size, written: r.written, ranges: r.ranges, seconds };
      if (o.json && !toStdout) process.stdout.write(JSON.stringify(summary) + '\n');
      else if (!toStdout) {
        process.stderr.write(`exported ${humanBytes(r.size)} to ${out}: ${humanBytes(r.written)} written, the rest left as holes, in ${seconds.toFixed(1)} s\n`);
      }
      return ExitCode.ok;
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    }
  });
}
