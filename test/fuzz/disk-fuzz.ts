/**
 * The disk and volume mutation fuzzer. Seeds are small real images (images/fuzz-seeds.sh: sparse,
 * streamOptimized, chains, flat and split descriptors, COWD, SEsparse, GPT, MBR); each case mutates
 * one or two of a seed's files (headers, grain directories and tables, descriptors, markers,
 * footers, partition tables) and then opens, inspects and reads the disk through the real entry
 * points. A case passes when it ends in data or a typed SnapferryError; anything else (a RangeError,
 * a TypeError, a hang past the time bound, memory past the bound) is a finding, reported with its
 * seed and case number so it can be replayed.
 *
 * Cases run in a worker thread so that a hang (a synchronous loop) can be stopped from outside.
 */
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openDisk } from '../../src/disk/open.js';
import { readVolumes } from '../../src/volume/index.js';
import { SnapferryError, SourceNotFoundError } from '../../src/util/errors.js';
import { MutatedSource, mutateFile, type FileMutation } from './mutate.js';
import { prng } from '../helpers/images.js';

export interface SeedFile {
  path: string;
  text: boolean;
}
export interface Seed {
  name: string;
  top: string;
  files: SeedFile[];
}

export interface Finding {
  caseNo: number;
  seed: string;
  kind: 'crash' | 'hang' | 'memory';
  detail: string;
}

export interface FuzzReport {
  cases: number;
  outcomes: { data: number; typedError: number };
  errorCodes: Record<string, number>;
  findings: Finding[];
  maxCaseMs: number;
  peakArrayBuffersMiB: number;
  seconds: number;
}

export interface FuzzOptions {
  seedDir: string;
  cases: number;
  rngSeed?: number;
  /** A case that runs longer than this is a hang. */
  caseTimeoutMs?: number;
  /** External (Buffer) memory a case may leave in use. */
  memoryLimitMiB?: number;
  onProgress?: (done: number, report: FuzzReport) => void;
}

const VROOT = '/fuzz';

type WorkerMsg =
  | { t: 'start'; caseNo: number }
  | { t: 'done'; caseNo: number; outcome: 'data' | 'typedError'; code?: string; ms: number; arrayBuffersMiB: number }
  | { t: 'crash'; caseNo: number; seed: string; detail: string }
  | { t: 'finished' };

/** Runs cases [from, to) of the deterministic sequence in a worker; the parent watches the time. */
export async function runDiskFuzz(opts: FuzzOptions): Promise<FuzzReport> {
  const seeds = JSON.parse(readFileSync(join(opts.seedDir, 'seeds.json'), 'utf8')) as Seed[];
  const report: FuzzReport = { cases: 0, outcomes: { data: 0, typedError: 0 }, errorCodes: {}, findings: [], maxCaseMs: 0, peakArrayBuffersMiB: 0, seconds: 0 };
  const started = Date.now();
  const timeout = opts.caseTimeoutMs ?? 5000;
  const memLimit = opts.memoryLimitMiB ?? 512;
  let next = 0;
  while (next < opts.cases) {
    next = await new Promise<number>((resolve, reject) => {
      const worker = new Worker(fileURLToPath(new URL('./worker.mjs', import.meta.url)), {
        workerData: { seedDir: opts.seedDir, seeds, from: next, to: opts.cases, rngSeed: opts.rngSeed ?? 1 },
        resourceLimits: { maxOldGenerationSizeMb: 1024 },
      });
      let current = next;
      let started = false;
      let timer: NodeJS.Timeout | undefined;
      const arm = () => {
        clearTimeout(timer);
        timer = setTimeout(() => {
          report.findings.push({ caseNo: current, seed: '?', kind: 'hang', detail: `no result within ${timeout} ms` });
          report.cases++;
          void worker.terminate();
          resolve(current + 1);
        }, timeout);
      };
      worker.on('message', (m: WorkerMsg) => {
        if (m.t === 'start') {
          started = true;
          current = m.caseNo;
          arm();
        } else if (m.t === 'done') {
          report.cases++;
          report.outcomes[m.outcome]++;
          if (m.code) report.errorCodes[m.code] = (report.errorCodes[m.code] ?? 0) + 1;
          report.maxCaseMs = Math.max(report.maxCaseMs, m.ms);
          report.peakArrayBuffersMiB = Math.max(report.peakArrayBuffersMiB, m.arrayBuffersMiB);
          if (m.arrayBuffersMiB > memLimit) report.findings.push({ caseNo: m.caseNo, seed: '?', kind: 'memory', detail: `${m.arrayBuffersMiB.toFixed(0)} MiB of buffers in use after the case` });
          if (report.cases % 500 === 0) opts.onProgress?.(report.cases, report);
        } else if (m.t === 'crash') {
          report.cases++;
          report.findings.push({ caseNo: m.caseNo, seed: m.seed, kind: 'crash', detail: m.detail });
        } else if (m.t === 'finished') {
          clearTimeout(timer);
          void worker.terminate();
          resolve(opts.cases);
        }
      });
      worker.on('error', (err) => {
        clearTimeout(timer);
        // A worker that never started a case is broken, not a finding.
        if (!started) return reject(err);
        // The worker itself died (out of memory in the isolate): that case is a memory finding.
        report.cases++;
        report.findings.push({ caseNo: current, seed: '?', kind: 'memory', detail: String(err) });
        resolve(current + 1);
      });
      worker.on('exit', () => clearTimeout(timer));
    });
  }
  report.seconds = (Date.now() - started) / 1000;
  return report;
}

/** One case: mutate, open, inspect, read. Exported so a finding can be replayed in a debugger. */
export async function runCase(seedDir: string, seeds: Seed[], caseNo: number, rngSeed: number, contents: Map<string, Buffer>): Promise<{ outcome: 'data' | 'typedError'; code?: string; seed: string }> {
  const rand = prng((rngSeed * 2654435761 + caseNo * 40503 + 1) >>> 0);
  const seed = seeds[caseNo % seeds.length]!;
  const mutations = new Map<string, FileMutation>();
  const nFiles = seed.files.length > 1 && rand() < 0.3 ? 2 : 1;
  for (let i = 0; i < nFiles; i++) {
    const f = seed.files[Math.floor(rand() * seed.files.length)]!;
    const buf = contents.get(join(seedDir, seed.name, f.path))!;
    const hot = f.text ? [{ offset: 0, length: buf.length }] : [{ offset: 0, length: Math.min(buf.length, 65536) }, { offset: Math.max(0, buf.length - 4096), length: Math.min(4096, buf.length) }];
    mutations.set(f.path, mutateFile(rand, buf.length, hot, f.text));
  }
  const opener = async (p: string) => {
    const rel = p.startsWith(`${VROOT}/${seed.name}/`) ? p.slice(VROOT.length + seed.name.length + 2) : null;
    const file = rel !== null ? seed.files.find((f) => f.path === rel) : undefined;
    if (!file) throw new SourceNotFoundError(p, 'no such file');
    return new MutatedSource(p, contents.get(join(seedDir, seed.name, file.path))!, mutations.get(file.path));
  };
  try {
    const disk = await openDisk(`${VROOT}/${seed.name}/${seed.top}`, { opener, cacheBytes: 1 << 20, maxChainDepth: 8 });
    try {
      await disk.allocation();
      await readVolumes(disk);
      const span = Math.min(disk.size, 1 << 20);
      if (span > 0) {
        await disk.read(0, Math.min(span, 65536));
        await disk.read(disk.size - Math.min(span, 65536), Math.min(span, 65536));
        for (let i = 0; i < 4; i++) {
          const len = 1 + Math.floor(rand() * span);
          await disk.read(Math.floor(rand() * (disk.size - len + 1)), len);
        }
      }
    } finally {
      await disk.close();
    }
    return { outcome: 'data', seed: seed.name };
  } catch (err) {
    if (err instanceof SnapferryError) return { outcome: 'typedError', code: err.code, seed: seed.name };
    throw Object.assign(err instanceof Error ? err : new Error(String(err)), { seedName: seed.name });
  }
}

if (!isMainThread && workerData && (workerData as { seeds?: unknown }).seeds) {
  const { seedDir, seeds, from, to, rngSeed } = workerData as { seedDir: string; seeds: Seed[]; from: number; to: number; rngSeed: number };
  const contents = new Map<string, Buffer>();
  for (const s of seeds) for (const f of s.files) contents.set(join(seedDir, s.name, f.path), readFileSync(join(seedDir, s.name, f.path)));
  const post = (m: WorkerMsg) => parentPort!.postMessage(m);
  for (let caseNo = from; caseNo < to; caseNo++) {
    post({ t: 'start', caseNo });
    const t0 = performance.now();
    try {
      const r = await runCase(seedDir, seeds, caseNo, rngSeed, contents);
      post({ t: 'done', caseNo, outcome: r.outcome, ...(r.code ? { code: r.code } : {}), ms: performance.now() - t0, arrayBuffersMiB: process.memoryUsage().arrayBuffers / 2 ** 20 });
    } catch (err) {
      const e = err as Error & { seedName?: string };
      post({ t: 'crash', caseNo, seed: e.seedName ?? '?', detail: `${e.name}: ${e.message}\n${(e.stack ?? '').split('\n').slice(1, 6).join('\n')}` });
    }
  }
  post({ t: 'finished' });
}
