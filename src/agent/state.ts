/**
 * The appliance's state directory (/var/lib/snapferry, or SNAPFERRY_STATE_DIR): the job queue, each
 * job's log, the per-VM locks, the agent's audit log and the backups' incremental state.
 *
 *   jobs/ID/job.json      what to run (written once by the agent; the directory appears by rename)
 *   jobs/ID/status.json   queued | running | done | failed | cancelled (written by jobd, by rename)
 *   jobs/ID/log.jsonl     the job's JSON-lines log (rotated to log.jsonl.1 past its byte bound)
 *   jobs/ID/cancel        a cancel request (the agent drops it; jobd acts on it)
 *   locks/VM.lock         the pid of the jobd running a job of VM
 *   agent.log             one JSON line per agent request: accepted or refused (rotated to .1)
 *   incremental/          backup --state-dir of the jobs
 *
 * Everything read back from here is bounded: a job id has a fixed shape (it names a directory, so
 * '..' can never reach one), a record is at most MAX_RECORD_BYTES.
 */
import { randomBytes } from 'node:crypto';
import { appendFileSync, closeSync, existsSync, fstatSync, mkdirSync, openSync, readSync, readdirSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ExitCode } from '../util/errors.js';
import { JobError } from './errors.js';

export const DEFAULT_STATE_DIR = '/var/lib/snapferry';
export const MAX_RECORD_BYTES = 256 * 1024;
export const AGENT_LOG_MAX_BYTES = 4 * 1024 * 1024;
/** Job directories at most (queued, running and kept): a client cannot fill the disk with a queue. */
export const MAX_JOBS = 2000;

export function stateDir(): string {
  return process.env.SNAPFERRY_STATE_DIR || DEFAULT_STATE_DIR;
}

export type JobState = 'queued' | 'running' | 'done' | 'failed' | 'cancelled';
export const TERMINAL: readonly JobState[] = ['done', 'failed', 'cancelled'];

export interface JobSpec {
  id: string;
  kind: 'backup';
  /** The VM the job works on: one job per VM runs at a time. */
  vm: string;
  /** snapferry's own arguments (no shell; the runner execs bin/snapferry.js with them). */
  argv: string[];
  submittedAt: string;
  role: string;
  /** SSH_CONNECTION's client address and port, when the job came over SSH. */
  client?: string;
}

export interface JobStatus {
  state: JobState;
  updatedAt: string;
  pid?: number;
  startedAt?: string;
  endedAt?: string;
  exitCode?: number;
  error?: { code: string; message: string };
}

const ID_RE = /^\d{8}T\d{6}Z-[0-9a-f]{8}$/;

export function newJobId(now = new Date()): string {
  const stamp = now.toISOString().replace(/[-:]/g, '').replace(/\.\d{3}Z$/, 'Z');
  return `${stamp}-${randomBytes(4).toString('hex')}`;
}

export function checkJobId(id: string): string {
  if (!ID_RE.test(id)) throw new JobError('E_JOB_ID', `'${id.slice(0, 64)}' is not a job id (like 20261205T103700Z-1a2b3c4d)`, { id: id.slice(0, 64) }, ExitCode.usage);
  return id;
}

/** VM names become lock file names. */
export const VM_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export class StateDir {
  readonly jobs: string;
  readonly locks: string;
  readonly incremental: string;
  readonly agentLog: string;
  /** jobd's pid while it runs: the agent tells a client whose job would wait for nobody. */
  readonly jobdPid: string;

  constructor(readonly root: string = stateDir()) {
    this.jobs = join(root, 'jobs');
    this.locks = join(root, 'locks');
    this.incremental = join(root, 'incremental');
    this.agentLog = join(root, 'agent.log');
    this.jobdPid = join(root, 'jobd.pid');
  }

  ensure(): void {
    for (const d of [this.root, this.jobs, this.locks, this.incremental]) mkdirSync(d, { recursive: true, mode: 0o750 });
  }

  jobDir(id: string): string {
    return join(this.jobs, checkJobId(id));
  }

  /** Writes job.json and a first log line, then makes the job visible with one rename. */
  submit(spec: JobSpec): void {
    this.ensure();
    const n = this.list().length;
    if (n >= MAX_JOBS) throw new JobError('E_JOB_QUEUE_FULL', `${n} jobs are queued or kept, the limit is ${MAX_JOBS}: cancel some or wait`, { structure: 'jobs', field: 'count', value: n, limit: MAX_JOBS });
    const tmp = join(this.jobs, `.new-${spec.id}`);
    mkdirSync(tmp, { mode: 0o750 });
    writeFileSync(join(tmp, 'job.json'), JSON.stringify(spec) + '\n', { mode: 0o640 });
    writeFileSync(join(tmp, 'log.jsonl'), JSON.stringify({ time: spec.submittedAt, event: 'queued', job: spec.id, vm: spec.vm }) + '\n', { mode: 0o640 });
    renameSync(tmp, join(this.jobs, spec.id));
  }

  /** Job ids, oldest first (ids start with their submission time). */
  list(): string[] {
    if (!existsSync(this.jobs)) return [];
    return readdirSync(this.jobs)
      .filter((n) => ID_RE.test(n))
      .sort();
  }

  exists(id: string): boolean {
    return existsSync(join(this.jobDir(id), 'job.json'));
  }

  spec(id: string): JobSpec {
    const p = join(this.jobDir(id), 'job.json');
    if (!existsSync(p)) throw new JobError('E_JOB_NOT_FOUND', `no job ${id}`, { id }, ExitCode.notFound);
    return JSON.parse(readBounded(p)) as JobSpec;
  }

  status(id: string): JobStatus {
    const p = join(this.jobDir(id), 'status.json');
    if (!existsSync(p)) return { state: 'queued', updatedAt: this.spec(id).submittedAt };
    return JSON.parse(readBounded(p)) as JobStatus;
  }

  setStatus(id: string, s: JobStatus): void {
    const p = join(this.jobDir(id), 'status.json');
    writeFileSync(`${p}.tmp`, JSON.stringify(s) + '\n', { mode: 0o640 });
    renameSync(`${p}.tmp`, p);
  }

  logPath(id: string): string {
    return join(this.jobDir(id), 'log.jsonl');
  }

  requestCancel(id: string): void {
    writeFileSync(join(this.jobDir(id), 'cancel'), new Date().toISOString() + '\n');
  }

  cancelRequested(id: string): boolean {
    return existsSync(join(this.jobDir(id), 'cancel'));
  }

  /** Whether a jobd runs for this state dir (its pid file names a live process). */
  jobdRunning(): boolean {
    try {
      const pid = Number(readBounded(this.jobdPid, 64).trim());
      if (!Number.isInteger(pid) || pid <= 0) return false;
      process.kill(pid, 0);
      return true;
    } catch (e) {
      return (e as NodeJS.ErrnoException).code === 'EPERM';
    }
  }

  /** One audit line per agent request; the log is rotated to agent.log.1 past AGENT_LOG_MAX_BYTES. */
  audit(record: Record<string, unknown>): void {
    try {
      mkdirSync(this.root, { recursive: true, mode: 0o750 });
      rotateIfOver(this.agentLog, AGENT_LOG_MAX_BYTES);
      appendFileSync(this.agentLog, JSON.stringify({ time: new Date().toISOString(), ...record }) + '\n', { mode: 0o640 });
    } catch {
      // An unwritable state dir must not turn a refusal into a crash; stderr still carries it.
    }
  }
}

export function rotateIfOver(path: string, maxBytes: number): void {
  try {
    if (statSync(path).size >= maxBytes) renameSync(path, `${path}.1`);
  } catch {
    // no file yet
  }
}

/** A small state file, refused past MAX_RECORD_BYTES (nothing in the state dir is trusted blindly). */
export function readBounded(path: string, max = MAX_RECORD_BYTES): string {
  const fd = openSync(path, 'r');
  try {
    const size = fstatSync(fd).size;
    if (size > max) throw new JobError('E_BOUND', `${path}: ${size} bytes exceeds the limit of ${max}`, { structure: 'state file', field: 'size', value: size, limit: max, file: path }, ExitCode.corrupt);
    const buf = Buffer.alloc(size);
    let got = 0;
    while (got < size) {
      const n = readSync(fd, buf, got, size - got, got);
      if (n === 0) break;
      got += n;
    }
    return buf.subarray(0, got).toString('utf8');
  } finally {
    closeSync(fd);
  }
}
