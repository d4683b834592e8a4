/**
 * How the snapferry process asks V8 to manage its heap. A walk or a backup allocates fast but keeps
 * little alive (~10-20 MiB live after each Mark-Compact), while V8's default heuristics grow the
 * young generation to 16 MiB semi-spaces and the old one to several times the live size: a backup of
 * bench/fs.sh's 50,110-file volumes peaked at 177-218 MiB, a walk at 175-187 MiB.
 *
 * The policy, set at startup (flags V8 reads at run time; the heap's sizes proper can only be given
 * on node's command line):
 *  - `--semi-space-growth-factor=1`: the young generation stays at its initial size instead of
 *    doubling up to 16 MiB semi-spaces;
 *  - `--heap-growing-percent=20`: after a Mark-Compact the old generation may grow by 20% of what
 *    is live before the next one, not by V8's dynamic factor (up to 4x).
 * Measured on the 50,110-file bench volumes, local backups (2-core VM under load, one run each):
 * ext4 7.45 s CPU / 121 MiB, NTFS 8.90 s / 113 MiB; with `--optimize-for-size` (the policy before,
 * which also trades JIT speed for size) 9.21 s / 123 MiB and 10.98 s / 116 MiB; V8's defaults
 * ~7.5 s / 177 MiB on ext4.
 *
 * Flags set at run time are undone when a worker thread starts (util/v8-flags.ts): every Worker
 * we start sets them again once online. (Before that was known, --optimize-for-size held only until
 * the first zstd worker started.)
 *
 * SNAPFERRY_V8=default keeps V8's own heuristics, SNAPFERRY_V8=size the old --optimize-for-size (for
 * measuring the difference). Called first thing by bin/snapferry.js and by the benchmarks.
 */
import { setV8Flags } from '../util/v8-flags.js';

export const V8_POLICY = ['--semi-space-growth-factor=1', '--heap-growing-percent=20'];

export function tuneRuntime(env: NodeJS.ProcessEnv = process.env): void {
  if (env.SNAPFERRY_V8 === 'default') return;
  setV8Flags(env.SNAPFERRY_V8 === 'size' ? ['--optimize-for-size'] : V8_POLICY);
}
