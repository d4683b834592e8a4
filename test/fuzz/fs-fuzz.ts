/**
 * The filesystem mutation fuzzer. Seeds are small real NTFS and ext volumes (images/fs-fuzz-seeds.sh)
 * with the byte ranges of their metadata beside them (boot sector, MFT records, INDX blocks, $UpCase,
 * $MFTMirr / superblocks, group descriptors, bitmaps, inode tables, directory and htree blocks,
 * extent tree and indirect blocks, xattr blocks, journal blocks), located by independent tools. A case
 * patches a few bytes of one to three of those ranges (test/fuzz/mutate.ts, plus bit flips), opens the
 * volume through the real openers (openNtfs; openExtRecovered, so the jbd2 replay is fuzzed too) and
 * walks it with a bounded number of operations: readdir, lookup, stat, read, readlink, listxattr,
 * getxattr, extents, named streams. A case passes when everything ends in data or a SnapferryError;
 * any other exception, a case over the time bound (hang) or buffers left over the memory bound is a
 * finding, reported with the fuzz seed and case number that replay it.
 *
 * Cases run in a worker thread (test/fuzz/fs-worker.mjs) so that a synchronous loop can be stopped.
 */
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openNtfs } from '../../src/fs/ntfs/ntfs.js';
import { openExtRecovered } from '../../src/fs/ext/recover.js';
import type { FileSystem, VolumeSource } from '../../src/fs/types.js';
import { SnapferryError } from '../../src/util/errors.js';
import { MutatedSource, mutateFile, type FileMutation } from './mutate.js';
import { prng } from '../helpers/images.js';

export type FsKind = 'ntfs' | 'ext';

export interface FsSeed {
  name: string;
  fs: FsKind;
  image: string;
  regions: string;
}

/** [label, byte offset, byte length]: "mft-record:5", "indx:64", "inode-table", "journal" ... */
type Region = [string, number, number];

export interface FsFinding {
  fs: FsKind;
  caseNo: number;
  seed: string;
  kind: 'crash' | 'hang' | 'memory';
  /** What the case mutated: region labels. */
  target: string;
  detail: string;
}

export interface FsFuzzReport {
  fs: FsKind;
  cases: number;
  outcomes: { ok: number; typedError: number };
  /** Typed errors by code, at open and while walking. */
  errorCodes: Record<string, number>;
  /** Operations the walks made in all (a walk that stops early on a refused open makes none); listed-only entries do not count. */
  ops: number;
  findings: FsFinding[];
  maxCaseMs: number;
  peakArrayBuffersMiB: number;
  seconds: number;
  /** Set when the deadline stopped the batch before all cases ran. */
  stoppedEarly?: boolean;
}

export interface FsFuzzOptions {
  seedDir: string;
  fs: FsKind;
  cases: number;
  rngSeed?: number;
  /** First case number (replaying a range). */
  from?: number;
  caseTimeoutMs?: number;
  memoryLimitMiB?: number;
  /** Date.now() after which no further case starts: the report then says how many ran. */
  deadline?: number;
  onProgress?: (done: number, report: FsFuzzReport) => void;
}

/** Operations one walk may make: a mutated directory that lists itself forever stops here. */
export const MAX_OPS = 400;
/** Entries stat'ed (and read) per directory: the 220-entry directories would otherwise dominate a case. */
const PER_DIR = 24;
/** Entries listed in all: every directory is listed to its end (so later INDX and htree leaf blocks are parsed), up to this. */
export const MAX_LISTED = 1500;

type CaseResult = { outcome: 'ok' | 'typedError'; codes: string[]; ops: number; seed: string; target: string };
type WorkerMsg =
  | { t: 'start'; caseNo: number; seed: string; target: string }
  | { t: 'done'; caseNo: number; outcome: 'ok' | 'typedError'; codes: string[]; ops: number; ms: number; arrayBuffersMiB: number }
  | { t: 'crash'; caseNo: number; seed: string; target: string; detail: string }
  | { t: 'finished' };

export function loadSeeds(seedDir: string, fs: FsKind): FsSeed[] {
  return (JSON.parse(readFileSync(join(seedDir, 'seeds.json'), 'utf8')) as FsSeed[]).filter((s) => s.fs === fs);
}

/** Runs cases [from, from+cases) of the deterministic sequence in workers; the parent watches the time. */
export async function runFsFuzz(opts: FsFuzzOptions): Promise<FsFuzzReport> {
  const report: FsFuzzReport = { fs: opts.fs, cases: 0, outcomes: { ok: 0, typedError: 0 }, errorCodes: {}, ops: 0, findings: [], maxCaseMs: 0, peakArrayBuffersMiB: 0, seconds: 0 };
  const t0 = Date.now();
  const timeout = opts.caseTimeoutMs ?? 5000;
  const memLimit = opts.memoryLimitMiB ?? 256;
  const end = (opts.from ?? 0) + opts.cases;
  let next = opts.from ?? 0;
  while (next < end) {
    next = await new Promise<number>((resolve, reject) => {
      const worker = new Worker(fileURLToPath(new URL('./fs-worker.mjs', import.meta.url)), {
        workerData: { fsFuzz: true, seedDir: opts.seedDir, fs: opts.fs, from: next, to: end, rngSeed: opts.rngSeed ?? 1 },
        resourceLimits: { maxOldGenerationSizeMb: 1024 },
      });
      let current = { caseNo: next, seed: '?', target: '?' };
      let started = false;
      let timer: NodeJS.Timeout | undefined;
      const arm = () => {
        clearTimeout(timer);
        timer = setTimeout(() => {
          report.findings.push({ fs: opts.fs, ...current, kind: 'hang', detail: `no result within ${timeout} ms` });
          report.cases++;
          void worker.terminate();
          resolve(current.caseNo + 1);
        }, timeout);
      };
      worker.on('message', (m: WorkerMsg) => {
        if (m.t === 'start') {
          started = true;
          current = { caseNo: m.caseNo, seed: m.seed, target: m.target };
          arm();
        } else if (m.t === 'done') {
          report.cases++;
          report.outcomes[m.outcome]++;
          report.ops += m.ops;
          for (const c of m.codes) report.errorCodes[c] = (report.errorCodes[c] ?? 0) + 1;
          report.maxCaseMs = Math.max(report.maxCaseMs, m.ms);
          report.peakArrayBuffersMiB = Math.max(report.peakArrayBuffersMiB, m.arrayBuffersMiB);
          if (m.arrayBuffersMiB > memLimit) report.findings.push({ fs: opts.fs, ...current, kind: 'memory', detail: `${m.arrayBuffersMiB.toFixed(0)} MiB of buffers in use after the case` });
          if (report.cases % 500 === 0) opts.onProgress?.(report.cases, report);
          if (opts.deadline !== undefined && Date.now() > opts.deadline && m.caseNo + 1 < end) {
            report.stoppedEarly = true;
            clearTimeout(timer);
            void worker.terminate();
            resolve(end);
          }
        } else if (m.t === 'crash') {
          report.cases++;
          report.findings.push({ fs: opts.fs, caseNo: m.caseNo, seed: m.seed, target: m.target, kind: 'crash', detail: m.detail });
        } else if (m.t === 'finished') {
          clearTimeout(timer);
          void worker.terminate();
          resolve(end);
        }
      });
      worker.on('error', (err) => {
        clearTimeout(timer);
        if (!started) return reject(err);
        // An exception that escaped the case (an unawaited promise) or the isolate out of memory.
        const oom = /ERR_WORKER_OUT_OF_MEMORY|heap out of memory/.test(`${(err as NodeJS.ErrnoException).code} ${err.message}`);
        report.cases++;
        report.findings.push({ fs: opts.fs, ...current, kind: oom ? 'memory' : 'crash', detail: `worker died: ${err.stack?.split('\n').slice(0, 6).join('\n') ?? String(err)}` });
        resolve(current.caseNo + 1);
      });
      worker.on('exit', () => clearTimeout(timer));
    });
  }
  report.seconds = (Date.now() - t0) / 1000;
  return report;
}

/** A region label's family: what a case picks first, so 300 MFT records do not crowd out the boot sector. */
function family(label: string): string {
  const [kind, arg] = label.split(':');
  if (kind === 'mft-record') return Number(arg) < 24 ? 'mft-system' : 'mft-user';
  if (kind === 'blocks' || kind === 'tree' || kind === 'xattr-block') return `${kind}:${arg}`;
  return kind!;
}

interface SeedData {
  seed: FsSeed;
  image: Buffer;
  families: Region[][];
}

export function loadSeedData(seedDir: string, fs: FsKind): SeedData[] {
  return loadSeeds(seedDir, fs).map((seed) => {
    const image = readFileSync(join(seedDir, seed.image));
    const regions = (JSON.parse(readFileSync(join(seedDir, seed.regions), 'utf8')) as Region[]).filter(([, o, l]) => o >= 0 && l > 0 && o + l <= image.length);
    const byFamily = new Map<string, Region[]>();
    for (const r of regions) {
      const f = family(r[0]);
      byFamily.set(f, [...(byFamily.get(f) ?? []), r]);
    }
    return { seed, image, families: [...byFamily.values()] };
  });
}

/** The case's mutation: deterministic in (rngSeed, fs, caseNo). */
export function caseMutation(data: SeedData[], fs: FsKind, caseNo: number, rngSeed: number): { d: SeedData; mutation: FileMutation; target: string; rand: () => number } {
  const rand = prng((Math.imul(rngSeed, 0x9e3779b1) ^ Math.imul(caseNo + 1, 0x85ebca6b) ^ (fs === 'ntfs' ? 0x5eed : 0xe47)) >>> 0);
  for (let i = 0; i < 4; i++) rand(); // xorshift's first outputs follow its seed closely
  const d = data[caseNo % data.length]!;
  const picked: Region[] = [];
  const n = 1 + Math.floor(rand() * rand() * 3);
  for (let i = 0; i < n; i++) {
    const fam = d.families[Math.floor(rand() * d.families.length)]!;
    picked.push(fam[Math.floor(rand() * fam.length)]!);
  }
  const mutation = mutateFile(rand, d.image.length, picked.map(([, offset, length]) => ({ offset, length })), false);
  // Bit flips: the small changes that keep a structure almost valid and get deepest.
  if (rand() < 0.5) {
    const flips = 1 + Math.floor(rand() * 8);
    for (let i = 0; i < flips; i++) {
      const [, o, l] = picked[Math.floor(rand() * picked.length)]!;
      const at = o + Math.floor(rand() * l);
      mutation.patches.push({ offset: at, bytes: Buffer.from([d.image[at]! ^ (1 << Math.floor(rand() * 8))]) });
    }
  }
  if (mutation.truncateTo !== undefined && rand() < 0.7) delete mutation.truncateTo; // truncation is cheap to refuse: keep it rare
  return { d, mutation, target: picked.map((r) => r[0]).join(','), rand };
}

function volumeOf(src: MutatedSource): VolumeSource {
  return {
    size: src.size,
    read: (offset, length) => src.read(offset, length),
    readInto: (out, offset) => src.readInto(out, 0, out.length, offset),
  };
}

/** Walks `fs` breadth-first with at most MAX_OPS operations and MAX_LISTED entries; typed errors are counted, not thrown. */
async function walk(fs: FileSystem, kind: FsKind, rand: () => number, codes: string[]): Promise<number> {
  let ops = 0;
  let listed = 0;
  class Budget extends Error {}
  const tick = () => {
    if (++ops > MAX_OPS) throw new Budget();
  };
  const soft = async (f: () => Promise<unknown>) => {
    try {
      await f();
    } catch (e) {
      if (e instanceof Budget) throw e;
      if (!(e instanceof SnapferryError)) throw e;
      codes.push(e.code);
    }
  };
  const queue = [fs.rootIno];
  const seen = new Set<number>();
  try {
    while (queue.length) {
      const dir = queue.shift()!;
      if (seen.has(dir)) continue;
      seen.add(dir);
      tick();
      await soft(async () => {
        let k = 0;
        for await (const e of fs.readdir(dir)) {
          if (++listed > MAX_LISTED) throw new Budget();
          if (++k > PER_DIR) continue;
          tick();
          await soft(async () => {
            if (rand() < 0.15) {
              tick();
              await fs.lookup(dir, rand() < 0.5 ? e.name.toUpperCase() : e.name);
            }
            tick();
            const st = await fs.stat(e.ino);
            if (st.type === 'dir') queue.push(e.ino);
            else if (st.type === 'symlink') {
              tick();
              await fs.readlink(e.ino);
            } else if (st.type === 'file') {
              tick();
              await fs.read(e.ino, 0, 65536);
              if (st.size > 65536) {
                tick();
                await fs.read(e.ino, Math.max(0, st.size - 5000) + Math.floor(rand() * 4096), 10000);
              }
              for await (const x of fs.extents(e.ino)) {
                tick();
                void x;
              }
            }
            tick();
            for (const name of await fs.listxattr(e.ino)) {
              tick();
              await soft(() => fs.getxattr(e.ino, name));
            }
            if (kind === 'ntfs') {
              for (const s of st.ntfs?.streams ?? []) {
                tick();
                await soft(() => fs.read(e.ino, 0, 4096, s));
                for await (const x of fs.extents(e.ino, s)) {
                  tick();
                  void x;
                }
              }
            }
          });
        }
      });
    }
  } catch (e) {
    if (!(e instanceof Budget)) throw e;
  }
  return ops;
}

/** One case: mutate, open, walk, close. Exported so a finding can be replayed (bench/fuzz-fs.ts --case). */
export async function runFsCase(data: SeedData[], kind: FsKind, caseNo: number, rngSeed: number, onStart?: (seed: string, target: string) => void): Promise<CaseResult> {
  const { d, mutation, target, rand } = caseMutation(data, kind, caseNo, rngSeed);
  onStart?.(d.seed.name, target);
  const codes: string[] = [];
  const volume = volumeOf(new MutatedSource(d.seed.image, d.image, mutation));
  try {
    const fs = kind === 'ntfs' ? await openNtfs(volume, { cacheBytes: 2 << 20 }) : (await openExtRecovered(volume, { cacheBytes: 2 << 20 })).fs;
    let ops = 0;
    try {
      ops = await walk(fs, kind, rand, codes);
    } finally {
      await fs.close();
    }
    return { outcome: codes.length ? 'typedError' : 'ok', codes, ops, seed: d.seed.name, target };
  } catch (err) {
    if (err instanceof SnapferryError) return { outcome: 'typedError', codes: [...codes, err.code], ops: 0, seed: d.seed.name, target };
    throw Object.assign(err instanceof Error ? err : new Error(String(err)), { seedName: d.seed.name, target });
  }
}

if (!isMainThread && workerData && (workerData as { fsFuzz?: boolean }).fsFuzz) {
  const { seedDir, fs, from, to, rngSeed } = workerData as { seedDir: string; fs: FsKind; from: number; to: number; rngSeed: number };
  const data = loadSeedData(seedDir, fs);
  const post = (m: WorkerMsg) => parentPort!.postMessage(m);
  for (let caseNo = from; caseNo < to; caseNo++) {
    const t0 = performance.now();
    let where = { seed: '?', target: '?' };
    try {
      const r = await runFsCase(data, fs, caseNo, rngSeed, (seed, target) => {
        where = { seed, target };
        post({ t: 'start', caseNo, seed, target });
      });
      post({ t: 'done', caseNo, outcome: r.outcome, codes: r.codes, ops: r.ops, ms: performance.now() - t0, arrayBuffersMiB: process.memoryUsage().arrayBuffers / 2 ** 20 });
    } catch (err) {
      const e = err as Error;
      post({ t: 'crash', caseNo, ...where, detail: `${e.name}: ${e.message}\n${(e.stack ?? '').split('\n').slice(1, 7).join('\n')}` });
    }
  }
  post({ t: 'finished' });
}
