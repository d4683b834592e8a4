/**
 * The big batch of the disk/volume fuzzer: `npm run fuzz -- --cases 100000 [--seed N]`.
 * Prints progress, then the outcome counts, error codes and any findings (with replayable case numbers).
 */
import { parseArgs } from 'node:util';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { runDiskFuzz } from '../test/fuzz/disk-fuzz.js';
import { ROOT } from '../test/helpers/images.js';

const { values } = parseArgs({ options: { cases: { type: 'string', default: '100000' }, seed: { type: 'string', default: '1' }, timeout: { type: 'string', default: '5000' } } });
execFileSync('bash', [join(ROOT, 'images', 'fuzz-seeds.sh')], { stdio: 'inherit' });
const seedDir = join(ROOT, 'images', 'cache', 'fuzz-seeds');
const report = await runDiskFuzz({
  seedDir,
  cases: Number(values.cases),
  rngSeed: Number(values.seed),
  caseTimeoutMs: Number(values.timeout),
  onProgress: (done, r) => {
    if (done % 5000 === 0) process.stderr.write(`fuzz: ${done} cases, ${r.findings.length} findings\n`);
  },
});
console.log(JSON.stringify(report, null, 2));
process.exitCode = report.findings.length === 0 ? 0 : 1;
