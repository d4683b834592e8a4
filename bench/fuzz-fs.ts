/**
 * The big batch of the filesystem fuzzer (test/fuzz/fs-fuzz.ts) over small NTFS and ext seeds
 * (images/fs-fuzz-seeds.sh):
 *   npx tsx bench/fuzz-fs.ts --fs ntfs|ext|all --cases N --seed S  [--jobs 2] [--timeout MS] [--max-seconds T] [--json]
 *   npx tsx bench/fuzz-fs.ts --fs ntfs --seed S --case C     replays one case in-process, with its stack
 * --cases is per filesystem; --max-seconds T starts no case after T s (the summary says how many ran); --jobs 2 runs the NTFS and ext batches side by side (--fs all).
 * Prints cases/s, ok vs typed-error counts, the commonest error codes, the slowest case, peak memory
 * and every finding with the command that replays it. Exit 0: no finding; 1: findings; 2: usage.
 */
import { parseArgs } from 'node:util';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { loadSeedData, runFsCase, runFsFuzz, type FsFuzzReport, type FsKind } from '../test/fuzz/fs-fuzz.js';
import { ROOT } from '../test/helpers/images.js';

const { values } = parseArgs({
  options: {
    fs: { type: 'string', default: 'all' },
    cases: { type: 'string', default: '100000' },
    seed: { type: 'string', default: '1' },
    timeout: { type: 'string', default: '5000' },
    jobs: { type: 'string', default: '1' },
    'max-seconds': { type: 'string' },
    case: { type: 'string' },
    json: { type: 'boolean', default: false },
  },
});
const kinds: FsKind[] = values.fs === 'all' ? ['ntfs', 'ext'] : values.fs === 'ntfs' || values.fs === 'ext' ? [values.fs] : [];
if (!kinds.length) {
  console.error('usage: fuzz-fs.ts --fs ntfs|ext|all --cases N --seed S [--jobs 2] [--timeout MS] [--case C] [--json]');
  process.exit(2);
}
const rngSeed = Number(values.seed);
execFileSync('bash', [join(ROOT, 'images', 'fs-fuzz-seeds.sh')], { stdio: 'inherit' });
const seedDir = join(ROOT, 'images', 'cache', 'fs-fuzz-seeds');

if (values.case !== undefined) {
  // Replay: the same mutation, in this thread, so the stack (or a debugger) shows where it goes wrong.
  for (const fs of kinds) {
    const caseNo = Number(values.case);
    const t0 = performance.now();
    try {
      const r = await runFsCase(loadSeedData(seedDir, fs), fs, caseNo, rngSeed, (seed, target) => console.log(`${fs} case ${caseNo}: seed image ${seed}, mutated ${target}`));
      console.log(`${r.outcome} after ${r.ops} ops in ${(performance.now() - t0).toFixed(0)} ms; typed errors: ${r.codes.join(' ') || 'none'}`);
    } catch (err) {
      console.log((err as Error).stack);
      process.exitCode = 1;
    }
  }
  process.exit(process.exitCode ?? 0);
}

const started = Date.now();
const progress = (done: number, r: FsFuzzReport) => {
  if (done % 5000 === 0) process.stderr.write(`fuzz-fs ${r.fs}: ${done} cases, ${r.findings.length} findings, ${((Date.now() - started) / 1000).toFixed(0)} s\n`);
};
const deadline = values['max-seconds'] !== undefined ? started + Number(values['max-seconds']) * 1000 : undefined;
const run = (fs: FsKind) => runFsFuzz({ seedDir, fs, cases: Number(values.cases), rngSeed, caseTimeoutMs: Number(values.timeout), onProgress: progress, ...(deadline !== undefined ? { deadline } : {}) });
const reports: FsFuzzReport[] = [];
if (Number(values.jobs) > 1) reports.push(...(await Promise.all(kinds.map(run))));
else for (const fs of kinds) reports.push(await run(fs));
const peakRssMiB = process.resourceUsage().maxRSS / 1024;

if (values.json) console.log(JSON.stringify({ reports, peakRssMiB }, null, 2));
else {
  for (const r of reports) {
    const top = Object.entries(r.errorCodes).sort((a, b) => b[1] - a[1]).slice(0, 8).map(([c, n]) => `${c} ${n}`).join(', ');
    console.log(`${r.fs}: ${r.cases} cases in ${r.seconds.toFixed(1)} s = ${(r.cases / r.seconds).toFixed(0)} cases/s; ok ${r.outcomes.ok}, typed errors ${r.outcomes.typedError}, findings ${r.findings.length}; ${(r.ops / Math.max(1, r.cases)).toFixed(0)} ops/case; max case ${r.maxCaseMs.toFixed(0)} ms; peak buffers ${r.peakArrayBuffersMiB.toFixed(1)} MiB`);
    if (r.stoppedEarly) console.log(`  stopped by --max-seconds after ${r.cases} of ${values.cases} cases`);
    console.log(`  commonest typed errors: ${top || 'none'}`);
  }
  console.log(`peak RSS of the process (all workers): ${peakRssMiB.toFixed(0)} MiB; wall ${((Date.now() - started) / 1000).toFixed(1)} s`);
  // Every finding, grouped by its first line and top frame so one bug does not hide another.
  const groups = new Map<string, FsFuzzReport['findings']>();
  for (const f of reports.flatMap((r) => r.findings)) {
    const lines = f.detail.split('\n');
    const key = `${f.fs} ${f.kind}: ${lines[0]!.replace(/\d+/g, 'N')} ${lines.find((l) => l.includes('/src/'))?.trim() ?? lines[1]?.trim() ?? ''}`;
    groups.set(key, [...(groups.get(key) ?? []), f]);
  }
  for (const [key, fs] of groups) {
    console.log(`\nFINDING x${fs.length}: ${key}\n  ${fs[0]!.detail.split('\n').join('\n  ')}`);
    for (const f of fs) console.log(`  replay: npx tsx bench/fuzz-fs.ts --fs ${f.fs} --seed ${rngSeed} --case ${f.caseNo}   (${f.seed}: ${f.target})`);
  }
}
process.exitCode = reports.some((r) => r.findings.length) ? 1 : 0;
