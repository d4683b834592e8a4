/**
 * How the snapferry process asks V8 to manage its heap. A walk or a bulk read allocates fast but
 * keeps little alive (measured on bench/fs.sh's 50,050-file volumes: ~18 MiB live after each
 * Mark-Compact, while V8's default growth heuristics committed ~92 MiB of heap for it, and peak RSS
 * reached 175-187 MiB). `--optimize-for-size` makes V8 collect before growing: the same runs peak at
 * 86-101 MiB, for ~10% more time. An appliance that mounts and backs up many VMs at once wants the
 * bounded footprint; SNAPFERRY_V8=default keeps V8's own heuristics (for measuring the difference).
 *
 * Called first thing by bin/snapferry.js and by the benchmarks, before the readers allocate.
 */
import v8 from 'node:v8';

export function tuneRuntime(env: NodeJS.ProcessEnv = process.env): void {
  if (env.SNAPFERRY_V8 === 'default') return;
  v8.setFlagsFromString('--optimize-for-size');
}
