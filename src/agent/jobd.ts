/**
 * The job runner (`snapferry jobd`, the root systemd service snapferry-jobd): takes queued jobs from
 * the state dir, runs at most `concurrency` at once and never two of one VM, and writes each job's
 * JSON-lines log. Jobs are separate processes (bin/snapferry.js with the job's argv, no shell), so
 * an SSH session that queued one can go away, and a cancel is a signal to the job's process group.
 *
 * The queue is the directory itself: the agent renames a complete job directory into jobs/, jobd
 * scans it every POLL_MS. Only jobd writes status.json, so there is one writer per job state.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, readdirSync, rmSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Config } from './config.js';
import { StateDir, TERMINAL, rotateIfOver, type JobSpec } from './state.js';

export const POLL_MS = 250;
/** A child's output line longer than this is cut (a log line is one JSON record, not a dump). */
export const MAX_LOG_LINE = 64 * 1024;
/** Time a cancelled job gets between SIGTERM and SIGKILL. */
export const CANCEL_GRACE_MS = 5000;

export interface JobdOptions {
  state: StateDir;
  config: () => Config;
  /** node and bin/snapferry.js: what a job runs. */
  node: string;
  bin: string;
  /** syslog-style lines on stderr (systemd's journal reads the <N> priority prefix). */
  log?: (priority: number, message: string) => void;
}

interface Running {
  id: string;
  vm: string;
  child: ChildProcess;
  cancelling: boolean;
  killTimer?: NodeJS.Timeout;
}

function now(): string {
  return new Date().toISOString();
}

/** Appends one JSON line to a job's log, rotating it past the configured byte bound. */
export function appendJobLog(state: StateDir, id: string, record: Record<string, unknown>, maxBytes: number): void {
  const p = state.logPath(id);
  rotateIfOver(p, maxBytes);
  const fd = openSync(p, 'a', 0o640);
  try {
    writeSync(fd, JSON.stringify({ time: now(), ...record }) + '\n');
  } finally {
    closeSync(fd);
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export class Jobd {
  private readonly running = new Map<string, Running>();
  /** Jobs seen ended: their status is not read again every poll (keep-jobs of them may be kept). */
  private readonly ended = new Set<string>();
  private timer: NodeJS.Timeout | null = null;
  private stopping = false;
  private readonly log: (priority: number, message: string) => void;

  constructor(private readonly o: JobdOptions) {
    this.log = o.log ?? ((p, m) => process.stderr.write(`<${p}>${m}\n`));
  }

  /** Recovers from a previous jobd that died (its running jobs failed; its locks freed), then polls. */
  start(): void {
    this.o.state.ensure();
    for (const id of this.o.state.list()) {
      const s = this.o.state.status(id);
      if (s.state === 'running' && !(s.pid && pidAlive(s.pid))) {
        this.finish(id, 'failed', null, { code: 'E_JOB_LOST', message: 'the job runner stopped while this job ran' });
      }
    }
    for (const f of existsSync(this.o.state.locks) ? readdirLocks(this.o.state.locks) : []) {
      const pid = Number(readFileSync(f, 'utf8').trim());
      if (!pid || !pidAlive(pid) || pid === process.pid) unlinkSync(f);
    }
    writeFileSync(this.o.state.jobdPid, `${process.pid}\n`, { mode: 0o644 });
    this.log(6, `jobd: state ${this.o.state.root}, concurrency ${this.o.config().concurrency}`);
    this.tick();
  }

  /** Stops taking jobs; running ones are cancelled (systemd stop) and awaited. */
  async stop(): Promise<void> {
    this.stopping = true;
    if (this.timer) clearTimeout(this.timer);
    const waits = [...this.running.values()].map((r) => new Promise<void>((res) => (r.child.exitCode !== null || r.child.signalCode !== null ? res() : r.child.once('exit', () => res()))));
    for (const r of this.running.values()) this.signal(r, 'SIGTERM');
    await Promise.all(waits);
    try {
      if (readFileSync(this.o.state.jobdPid, 'utf8').trim() === String(process.pid)) unlinkSync(this.o.state.jobdPid);
    } catch {}
  }

  private tick(): void {
    try {
      this.scan();
    } catch (e) {
      this.log(3, `jobd: scan failed: ${(e as Error).message}`);
    }
    if (!this.stopping) this.timer = setTimeout(() => this.tick(), POLL_MS);
  }

  private scan(): void {
    const cfg = this.o.config();
    const state = this.o.state;
    const ids = state.list();
    const finished: string[] = [];
    for (const id of ids) {
      const r = this.running.get(id);
      if (r) {
        if (!r.cancelling && state.cancelRequested(id)) {
          r.cancelling = true;
          appendJobLog(state, id, { event: 'cancelling' }, cfg.jobLogMaxBytes);
          this.signal(r, 'SIGTERM');
          r.killTimer = setTimeout(() => this.signal(r, 'SIGKILL'), CANCEL_GRACE_MS);
        }
        continue;
      }
      if (this.ended.has(id)) {
        finished.push(id);
        continue;
      }
      let s;
      try {
        s = state.status(id);
      } catch {
        continue; // a job directory being removed, or a damaged record: not ours to run
      }
      if (TERMINAL.includes(s.state)) {
        this.ended.add(id);
        finished.push(id);
        continue;
      }
      if (s.state !== 'queued') continue;
      if (state.cancelRequested(id)) {
        this.finish(id, 'cancelled', null);
        continue;
      }
      if (this.stopping || this.running.size >= cfg.concurrency) continue;
      let spec: JobSpec;
      try {
        spec = state.spec(id);
      } catch (e) {
        this.finish(id, 'failed', null, { code: 'E_JOB_SPEC', message: (e as Error).message });
        continue;
      }
      if ([...this.running.values()].some((x) => x.vm === spec.vm)) continue; // one job per VM: wait
      if (!this.lock(spec.vm)) continue; // another runner holds it
      this.run(spec);
    }
    // keep the newest keepJobs finished jobs
    const excess = finished.length - cfg.keepJobs;
    for (let i = 0; i < excess; i++) {
      rmSync(state.jobDir(finished[i]!), { recursive: true, force: true });
      this.ended.delete(finished[i]!);
    }
  }

  private lockPath(vm: string): string {
    return join(this.o.state.locks, `${vm}.lock`);
  }

  /** O_EXCL lock file holding our pid: a second jobd (or a stale one's leftovers) is told apart by pid. */
  private lock(vm: string): boolean {
    const p = this.lockPath(vm);
    try {
      writeFileSync(p, `${process.pid}\n`, { flag: 'wx', mode: 0o640 });
      return true;
    } catch {
      const pid = Number(readFileSync(p, 'utf8').trim());
      if (pid && pid !== process.pid && pidAlive(pid)) return false;
      unlinkSync(p);
      return this.lock(vm);
    }
  }

  private run(spec: JobSpec): void {
    const cfg = this.o.config();
    const state = this.o.state;
    const child = spawn(this.o.node, [this.o.bin, ...spec.argv], {
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true, // its own process group: cancel signals the job and anything it started
      env: { ...process.env, SNAPFERRY_JOB_ID: spec.id },
    });
    const r: Running = { id: spec.id, vm: spec.vm, child, cancelling: false };
    this.running.set(spec.id, r);
    const startedAt = now();
    state.setStatus(spec.id, { state: 'running', updatedAt: startedAt, startedAt, ...(child.pid ? { pid: child.pid } : {}) });
    appendJobLog(state, spec.id, { event: 'started', pid: child.pid, argv: spec.argv }, cfg.jobLogMaxBytes);
    this.log(6, `jobd: job ${spec.id} (${spec.vm}) started, pid ${child.pid}`);
    const lines = (stream: NodeJS.ReadableStream, from: 'stdout' | 'stderr'): Promise<void> =>
      new Promise((res) => {
        const rl = createInterface({ input: stream, crlfDelay: Infinity });
        rl.on('line', (line) => {
          const cut = line.length > MAX_LOG_LINE ? line.slice(0, MAX_LOG_LINE) : line;
          let rec: Record<string, unknown>;
          try {
            const v = JSON.parse(cut) as unknown;
            rec = v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : { event: 'output', line: cut };
          } catch {
            rec = { event: from === 'stderr' ? 'stderr' : 'output', line: cut };
          }
          appendJobLog(state, spec.id, rec, this.o.config().jobLogMaxBytes);
        });
        rl.on('close', () => res());
      });
    const drained = Promise.all([lines(child.stdout!, 'stdout'), lines(child.stderr!, 'stderr')]);
    let spawnError: Error | null = null;
    child.once('error', (e) => (spawnError = e));
    child.once('close', (code, signal) => {
      void drained.then(() => {
        if (r.killTimer) clearTimeout(r.killTimer);
        this.running.delete(spec.id);
        try {
          unlinkSync(this.lockPath(spec.vm));
        } catch {}
        const exitCode = code ?? (signal ? 128 + (signal === 'SIGKILL' ? 9 : 15) : 1);
        if (r.cancelling) this.finish(spec.id, 'cancelled', exitCode);
        else if (spawnError) this.finish(spec.id, 'failed', exitCode, { code: 'E_JOB_SPAWN', message: (spawnError as Error).message });
        else this.finish(spec.id, code === 0 ? 'done' : 'failed', exitCode, code === 0 ? undefined : { code: 'E_JOB_EXIT', message: signal ? `the job was killed by ${signal}` : `the job exited with ${code}` });
      });
    });
  }

  private signal(r: Running, sig: NodeJS.Signals): void {
    if (!r.child.pid) return;
    try {
      process.kill(-r.child.pid, sig);
    } catch {
      // already gone
    }
  }

  private finish(id: string, stateName: 'done' | 'failed' | 'cancelled', exitCode: number | null, error?: { code: string; message: string }): void {
    const t = now();
    const prev = this.o.state.status(id);
    // the log's last line first: `job --follow` stops once the status is terminal, and must find it
    appendJobLog(this.o.state, id, { event: 'end', state: stateName, ...(exitCode !== null ? { exitCode } : {}), ...(error ? { error } : {}) }, this.o.config().jobLogMaxBytes);
    this.o.state.setStatus(id, { ...prev, state: stateName, updatedAt: t, endedAt: t, ...(exitCode !== null ? { exitCode } : {}), ...(error ? { error } : {}) });
    this.log(stateName === 'done' ? 6 : 4, `jobd: job ${id} ${stateName}${exitCode !== null ? ` (exit ${exitCode})` : ''}`);
  }
}

function readdirLocks(dir: string): string[] {
  return readdirSync(dir)
    .filter((n) => n.endsWith('.lock'))
    .map((n) => join(dir, n));
}
