/** jobs, job, cancel, jobd, and queueing a backup as a job: argument handling and printing over src/agent. */
import { basename } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { closeSync, existsSync, openSync, readSync, statSync } from 'node:fs';
import { ExitCode, UsageError } from '../util/errors.js';
import { AgentRefusal, JobError } from '../agent/errors.js';
import { loadConfig, type Config } from '../agent/config.js';
import { Jobd } from '../agent/jobd.js';
import type { AgentRequest } from '../agent/policy.js';
import { checkDiskArg } from '../agent/sources.js';
import { StateDir, TERMINAL, VM_NAME_RE, checkJobId, newJobId, type JobSpec, type JobStatus } from '../agent/state.js';
import { table } from './output.js';

export const JOBS_HELP = `snapferry jobs [--json]          the jobs, oldest first: id, VM, state, times, exit code
snapferry job ID [--follow] [--json]  one job's JSON-lines log; --follow streams it until the job ends
snapferry cancel ID [--json]      stop a queued or running job (SIGTERM to its process group, then SIGKILL)
snapferry jobd [--config FILE]    the job runner (systemd: snapferry-jobd.service)

Jobs live in the state dir (/var/lib/snapferry, or SNAPFERRY_STATE_DIR): jobs/ID/job.json,
status.json and log.jsonl. A backup asked for over SSH (snapferry agent) is queued there and answered
at once with its id; jobd runs at most 'concurrency' jobs (config; default 2) and one per VM at a
time, and keeps the newest 'keep-jobs' finished jobs (default 100), each log rotated past
'job-log-max-kib' (default 4096). A job's log lines are JSON: {"time","event":"queued"|"started"|
"progress"|"warning"|"summary"|"cancelling"|"end",...}; the last is {"event":"end","state":
"done"|"failed"|"cancelled","exitCode":N}.

Exit codes: 0 success (job --follow: the job is done)  1 the job failed  2 usage error (a bad id)
  3 no such job  130 the job was cancelled (job --follow)

Examples:
  snapferry jobs
  snapferry job 20261205T103700Z-1a2b3c4d --follow
  ssh snapferry@appliance job 20261205T103700Z-1a2b3c4d --follow
  snapferry cancel 20261205T103700Z-1a2b3c4d
`;

function emit(json: boolean, record: unknown, text: string): void {
  process.stdout.write(json ? `${JSON.stringify(record)}\n` : `${text}\n`);
}

function client(): string | undefined {
  const c = process.env.SSH_CONNECTION?.split(' ');
  return c && c.length >= 2 ? `${c[0]}:${c[1]}` : undefined;
}

/** Turns an agent's backup request into a job: the VM from the config, or DISK... as given. */
export function backupJob(req: AgentRequest, cfg: Config, state: StateDir, role: string): JobSpec {
  const opt = (n: string): string | undefined => {
    const v = req.options.get(n);
    return typeof v === 'string' ? v : undefined;
  };
  const many = (n: string): string[] => {
    const v = req.options.get(n);
    return Array.isArray(v) ? v : [];
  };
  const vmConf = req.positionals.length === 1 ? cfg.vms.get(req.positionals[0]!) : undefined;
  const sources = vmConf ? vmConf.sources : req.positionals;
  // a configured VM's sources are the administrator's; DISKs named over SSH are checked
  if (!vmConf) for (const d of sources) checkDiskArg(d, { datastores: cfg.datastores });
  const vm = vmConf ? vmConf.name : (opt('vm') ?? basename(sources[0]!).replace(/\.(vmx|vmdk|raw|img)$/i, ''));
  if (!VM_NAME_RE.test(vm)) throw new AgentRefusal('E_AGENT_OPTION', `the VM name '${vm.slice(0, 64)}' is not usable as a job's VM (letters, digits, . _ -): give --vm NAME`, { command: 'backup', option: 'vm' });
  const repoName = opt('repo') ?? vmConf?.repository;
  if (!repoName) throw new AgentRefusal('E_AGENT_OPTION', `backup needs --repo (a repository name from ${cfg.file}, or a URL)`, { command: 'backup', option: 'repo' });
  const repo = cfg.repositories.get(repoName);
  const recipients = many('recipient').length ? many('recipient') : (repo?.recipients ?? []);
  if (recipients.length === 0) throw new AgentRefusal('E_AGENT_OPTION', 'backup needs --recipient age1... (or a configured repository with recipients)', { command: 'backup', option: 'recipient' });
  const kinds = (['full', 'incremental', 'differential'] as const).filter((k) => req.options.has(k));
  if (kinds.length > 1) throw new AgentRefusal('E_AGENT_OPTION', '--full, --incremental and --differential exclude each other', { command: 'backup', option: kinds.join(',') });
  const kind = kinds[0] ?? vmConf?.kind ?? 'full';
  const argv = ['backup', ...sources, '--repo', repo ? repo.url : repoName];
  for (const r of recipients) argv.push('--recipient', r);
  if (repo?.sshKey) argv.push('--ssh-key', repo.sshKey);
  if (repo?.knownHosts) argv.push('--known-hosts', repo.knownHosts);
  argv.push('--state-dir', state.incremental, '--vm', vm, `--${kind}`);
  for (const i of many('include')) argv.push('--include', i);
  for (const e of [...cfg.excludes, ...(vmConf?.excludes ?? []), ...many('exclude')]) argv.push('--exclude', e);
  for (const f of ['no-default-excludes', 'no-replay', 'ignore-cid-mismatch', 'image']) if (req.options.has(f)) argv.push(`--${f}`);
  for (const v of ['cache-mib', 'max-chain-depth']) if (opt(v)) argv.push(`--${v}`, opt(v)!);
  argv.push('--json');
  const c = client();
  return { id: newJobId(), kind: 'backup', vm, argv, submittedAt: new Date().toISOString(), role, ...(c ? { client: c } : {}) };
}

export function queueJob(spec: JobSpec, state: StateDir, json: boolean): void {
  state.submit(spec);
  const idle = state.jobdRunning() ? undefined : 'no job runner is running: the job waits until snapferry-jobd starts (systemctl start snapferry-jobd)';
  emit(json, { job: spec.id, state: 'queued', vm: spec.vm, ...(idle ? { warning: { code: 'W_JOBD_NOT_RUNNING', message: idle } } : {}) }, `job ${spec.id} queued (${spec.vm}); follow it with: job ${spec.id} --follow${idle ? `\nwarning: ${idle}` : ''}`);
}

interface JobRow {
  id: string;
  vm: string;
  kind: string;
  state: JobStatus['state'];
  submittedAt: string;
  startedAt?: string;
  endedAt?: string;
  exitCode?: number;
  error?: { code: string; message: string };
}

function row(state: StateDir, id: string): JobRow {
  const spec = state.spec(id);
  const s = state.status(id);
  return { id, vm: spec.vm, kind: spec.kind, state: s.state, submittedAt: spec.submittedAt, ...(s.startedAt ? { startedAt: s.startedAt } : {}), ...(s.endedAt ? { endedAt: s.endedAt } : {}), ...(s.exitCode !== undefined ? { exitCode: s.exitCode } : {}), ...(s.error ? { error: s.error } : {}) };
}

export function jobsCommand(json: boolean, state = new StateDir()): number {
  const rows: JobRow[] = [];
  for (const id of state.list()) {
    try {
      rows.push(row(state, id));
    } catch {
      // removed by jobd's rotation while we listed
    }
  }
  if (json) process.stdout.write(JSON.stringify({ jobs: rows }) + '\n');
  else if (rows.length === 0) process.stderr.write(`${state.jobs}: no jobs\n`);
  else process.stdout.write(table([['ID', 'VM', 'KIND', 'STATE', 'SUBMITTED', 'EXIT'], ...rows.map((r) => [r.id, r.vm, r.kind, r.state, r.submittedAt, r.exitCode === undefined ? '' : String(r.exitCode)])], '') + '\n');
  return ExitCode.ok;
}

function exitFor(s: JobStatus): number {
  return s.state === 'done' ? ExitCode.ok : s.state === 'cancelled' ? ExitCode.interrupted : ExitCode.failure;
}

/** Prints a job's log; with follow, keeps reading until the job has ended and its log is drained. */
export async function jobCommand(id: string, o: { follow: boolean; json: boolean }, state = new StateDir()): Promise<number> {
  checkJobId(id);
  if (!state.exists(id)) throw new JobError('E_JOB_NOT_FOUND', `no job ${id}`, { id }, ExitCode.notFound);
  if (!o.follow && !o.json) {
    const r = row(state, id);
    emit(false, r, `${r.id}  ${r.vm}  ${r.kind}  ${r.state}${r.exitCode !== undefined ? `  exit ${r.exitCode}` : ''}${r.error ? `  ${r.error.code}: ${r.error.message}` : ''}`);
  }
  const path = state.logPath(id);
  let offset = 0;
  let pending = Buffer.alloc(0);
  const chunk = Buffer.alloc(64 * 1024);
  const drain = async (): Promise<void> => {
    if (!existsSync(path)) return;
    if (statSync(path).size < offset) offset = 0; // rotated under us: start the new file
    const fd = openSync(path, 'r');
    try {
      for (;;) {
        const n = readSync(fd, chunk, 0, chunk.length, offset);
        if (n === 0) break;
        offset += n;
        pending = Buffer.concat([pending, chunk.subarray(0, n)]);
        const nl = pending.lastIndexOf(0x0a);
        if (nl >= 0) {
          const out = pending.subarray(0, nl + 1);
          pending = Buffer.from(pending.subarray(nl + 1));
          if (o.json || o.follow) await new Promise<void>((res, rej) => process.stdout.write(out, (e) => (e ? rej(e) : res())));
        }
      }
    } finally {
      closeSync(fd);
    }
  };
  if (!o.follow) {
    if (o.json) await drain();
    return ExitCode.ok;
  }
  for (;;) {
    const s = state.status(id);
    await drain();
    if (TERMINAL.includes(s.state)) {
      await drain();
      return exitFor(s);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

export async function cancelCommand(id: string, json: boolean, state = new StateDir()): Promise<number> {
  checkJobId(id);
  if (!state.exists(id)) throw new JobError('E_JOB_NOT_FOUND', `no job ${id}`, { id }, ExitCode.notFound);
  const before = state.status(id);
  if (TERMINAL.includes(before.state)) throw new JobError('E_JOB_ENDED', `job ${id} has already ended (${before.state})`, { id, state: before.state });
  state.requestCancel(id);
  // jobd acts within its poll interval plus the job's grace time; answer with what we see by then
  const until = Date.now() + 15_000;
  let s = state.status(id);
  while (!TERMINAL.includes(s.state) && Date.now() < until) {
    await new Promise((r) => setTimeout(r, 100));
    s = state.status(id);
  }
  emit(json, { job: id, state: TERMINAL.includes(s.state) ? s.state : 'cancelling' }, `job ${id}: ${TERMINAL.includes(s.state) ? s.state : 'cancel requested (jobd has not acted yet)'}`);
  return ExitCode.ok;
}

export async function jobdCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, options: { config: { type: 'string' }, help: { type: 'boolean', short: 'h' } }, allowPositionals: true, strict: true });
  if (values.help) {
    process.stdout.write(JOBS_HELP);
    return ExitCode.ok;
  }
  if (positionals.length) throw new UsageError('jobd takes no arguments');
  let cfg = loadConfig(values.config);
  const bin = fileURLToPath(new URL('../../../bin/snapferry.js', import.meta.url));
  const d = new Jobd({ state: new StateDir(), config: () => cfg, node: process.execPath, bin });
  d.start();
  process.on('SIGHUP', () => {
    try {
      cfg = loadConfig(values.config);
      process.stderr.write(`<6>jobd: configuration reloaded, concurrency ${cfg.concurrency}\n`);
    } catch (e) {
      process.stderr.write(`<3>jobd: configuration not reloaded: ${(e as Error).message}\n`);
    }
  });
  await new Promise<void>((res) => {
    const stop = (): void => void d.stop().then(res);
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
  return ExitCode.ok;
}
