/**
 * The CI-sized batch of the disk/volume mutation fuzzer (bench/fuzz-disk.ts runs >= 100,000).
 * Zero findings allowed: every case ends in data or a typed error, in bounded time and memory.
 */
import t from 'tap';
import { image } from '../helpers/images.js';
import { runDiskFuzz } from '../fuzz/disk-fuzz.js';

t.test('10,000 mutated images end in data or a typed error, none hangs or crashes', async (t) => {
  const seedDir = image('fuzz-seeds');
  const report = await runDiskFuzz({ seedDir, cases: 10_000, rngSeed: 20261125, caseTimeoutMs: 5000 });
  t.equal(report.cases, 10_000, 'every case ran');
  t.same(report.findings, [], 'no crash, hang or memory finding');
  // The fuzzer must actually reach the parsers: both outcomes occur, and several error codes.
  t.ok(report.outcomes.data > 100, `${report.outcomes.data} cases gave data`);
  t.ok(report.outcomes.typedError > 100, `${report.outcomes.typedError} cases gave typed errors`);
  t.ok(Object.keys(report.errorCodes).length >= 5, `distinct error codes: ${JSON.stringify(report.errorCodes)}`);
  t.ok(report.peakArrayBuffersMiB < 256, `peak buffer memory ${report.peakArrayBuffersMiB.toFixed(1)} MiB`);
});
