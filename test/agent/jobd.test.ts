/**
 * jobd's bookkeeping, in process, with real jobs (bin/snapferry.js on the sample VM): a job's log is
 * rotated past its byte bound (at most two files, each about the bound), only the newest keep-jobs
 * finished jobs are kept, a runner that died mid-job leaves the job failed (E_JOB_LOST) and its lock
 * free for the next runner, state records past their bound and ids that are paths are typed errors.
 */
import t from 'tap';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Jobd, MAX_LOG_LINE } from '../../src/agent/jobd.js';
import { defaultConfig, type Config } from '../../src/agent/config.js';
import { AGENT_LOG_MAX_BYTES, MAX_JOBS, MAX_RECORD_BYTES, StateDir, checkJobId, newJobId, readBounded, type JobSpec } from '../../src/agent/state.js';
import { SnapferryError } from '../../src/util/errors.js';
import { image, ROOT } from '../helpers/images.js';
import { snapferry } from '../helpers/cli.js';

const vmx = join(image('sample-vm'), 'sample.vmx');
t.equal(snapferry(['--version']).status, 0, 'the CLI is built');

function setup(cfg: Partial<Config>): { state: StateDir; d: Jobd; logs: string[] } {
  const state = new StateDir(mkdtempSync(join(tmpdir(), 'sf-jobd-')));
  const config = { ...defaultConfig(), ...cfg };
  const logs: string[] = [];
  const d = new Jobd({ state, config: () => config, node: process.execPath, bin: join(ROOT, 'bin', 'snapferry.js'), log: (p, m) => logs.push(`<${p}>${m}`) });
  return { state, d, logs };
}

function job(vm: string, argv: string[]): JobSpec {
  return { id: newJobId(), kind: 'backup', vm, argv, submittedAt: new Date().toISOString(), role: 'operator' };
}

async function until(what: string, f: () => boolean, ms = 60_000): Promise<void> {
  const end = Date.now() + ms;
  while (!f()) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

t.test('a job log is rotated past its bound', async (t) => {
  const bound = 4096;
  const { state, d } = setup({ jobLogMaxBytes: bound });
  state.ensure();
  const spec = job('rot', ['ls', '-R', '--json', vmx, 'p1']); // ~60 JSON lines, well over 4 KiB
  state.submit(spec);
  t.notOk(state.jobdRunning(), 'no runner before start');
  d.start();
  t.ok(state.jobdRunning(), 'jobd.pid names a live runner once started');
  await until('the job to end', () => ['done', 'failed'].includes(state.status(spec.id).state));
  await d.stop();
  t.notOk(state.jobdRunning(), 'and is gone after stop');
  t.equal(state.status(spec.id).state, 'done', 'the job is done');
  const log = state.logPath(spec.id);
  t.ok(existsSync(`${log}.1`), 'the log was rotated to log.jsonl.1');
  t.ok(statSync(`${log}.1`).size < bound + 65536, `log.jsonl.1 is ${statSync(`${log}.1`).size} bytes (bound ${bound} + one line)`);
  t.ok(statSync(log).size < bound + 65536, `log.jsonl is ${statSync(log).size} bytes`);
  t.match(readFileSync(log, 'utf8').trim().split('\n').at(-1)!, /"event":"end","state":"done","exitCode":0/, 'the current log ends with the end record');
  for (const l of readFileSync(log, 'utf8').trim().split('\n')) JSON.parse(l);
  t.pass('every line of the log is JSON');
});

t.test('only the newest keep-jobs finished jobs are kept', async (t) => {
  const { state, d } = setup({ keepJobs: 2, concurrency: 4 });
  state.ensure();
  const ids: string[] = [];
  for (let i = 0; i < 5; i++) {
    const s = job(`v${i}`, ['--version']);
    ids.push(s.id);
    state.submit(s);
    await new Promise((r) => setTimeout(r, 1100)); // ids sort by their second
  }
  d.start();
  await until('jobs to end and be pruned', () => state.list().length === 2 && state.list().every((id) => state.status(id).state === 'done'));
  await d.stop();
  t.same(state.list(), ids.slice(-2), 'the two newest remain');
});

t.test('a runner that died mid-job: the job is failed E_JOB_LOST, its lock freed', async (t) => {
  const { state, d, logs } = setup({});
  state.ensure();
  const spec = job('lost', ['--version']);
  state.submit(spec);
  state.setStatus(spec.id, { state: 'running', updatedAt: new Date().toISOString(), pid: 2 ** 22 + 1 }); // no such pid
  writeFileSync(join(state.locks, 'lost.lock'), `${2 ** 22 + 1}\n`);
  const next = job('lost', ['--version']);
  state.submit(next);
  d.start();
  await until('the next job of the VM to end', () => state.status(next.id).state === 'done');
  await d.stop();
  t.equal(state.status(spec.id).state, 'failed');
  t.equal(state.status(spec.id).error?.code, 'E_JOB_LOST', 'the lost job says why');
  t.equal(state.status(next.id).state, 'done', "the stale lock did not block the VM's next job");
  t.ok(logs.some((l) => l.startsWith('<6>jobd: state')), 'jobd logs syslog-style lines');
});

t.test('state files and ids are bounded', async (t) => {
  const code = (f: () => unknown): string | undefined => {
    try {
      f();
      return undefined;
    } catch (e) {
      return (e as SnapferryError).code;
    }
  };
  for (const bad of ['../../etc', '..', '', 'x', '20261205T103700Z-1a2b3c4d/..', '20261205T103700Z-1A2B3C4D', `20261205T103700Z-1a2b3c4d${'0'.repeat(100)}`]) t.equal(code(() => checkJobId(bad)), 'E_JOB_ID', JSON.stringify(bad));
  t.equal(code(() => checkJobId(newJobId())), undefined, 'a fresh id is an id');
  const dir = mkdtempSync(join(tmpdir(), 'sf-jobd-b-'));
  writeFileSync(join(dir, 'big.json'), Buffer.alloc(MAX_RECORD_BYTES + 1, 0x20));
  t.equal(code(() => readBounded(join(dir, 'big.json'))), 'E_BOUND', `a record over ${MAX_RECORD_BYTES} bytes`);
  const state = new StateDir(dir);
  t.equal(code(() => state.spec(newJobId())), 'E_JOB_NOT_FOUND', 'a job that does not exist');
  state.ensure();
  for (let i = 0; i < MAX_JOBS; i++) mkdirSync(join(state.jobs, `20260101T000000Z-${i.toString(16).padStart(8, '0')}`));
  t.equal(code(() => state.submit(job('full', ['--version']))), 'E_JOB_QUEUE_FULL', `a queue of ${MAX_JOBS} job directories takes no more`);
});

t.test('a job output line is cut at MAX_LOG_LINE; the agent log is rotated past its bound', async (t) => {
  const { state, d } = setup({ jobLogMaxBytes: 64 * 1024 * 1024 });
  state.ensure();
  // export to stdout of a 256 KiB "disk" with no newline: one line four times the bound
  const disk = join(state.root, 'one-line.raw');
  writeFileSync(disk, Buffer.alloc(256 * 1024, 0x41));
  const spec = job('long', ['export', disk, '-']);
  state.submit(spec);
  d.start();
  await until('the job to end', () => ['done', 'failed'].includes(state.status(spec.id).state));
  await d.stop();
  const lines = readFileSync(state.logPath(spec.id), 'utf8').trim().split('\n');
  const longest = Math.max(...lines.map((l) => (JSON.parse(l) as { line?: string }).line?.length ?? 0));
  t.ok(longest === MAX_LOG_LINE, `the longest output line kept is ${longest} characters (bound ${MAX_LOG_LINE})`);
  writeFileSync(state.agentLog, Buffer.alloc(AGENT_LOG_MAX_BYTES, 0x0a));
  state.audit({ event: 'accepted', command: ['jobs'] });
  t.ok(existsSync(`${state.agentLog}.1`), `agent.log past ${AGENT_LOG_MAX_BYTES} bytes was rotated to agent.log.1`);
  t.equal(readFileSync(state.agentLog, 'utf8').trim().split('\n').length, 1, 'and the new agent.log holds the new line only');
});

t.test('a job\'s end record is in its log before its status turns terminal (what job --follow relies on)', async (t) => {
  const { state, d } = setup({});
  state.ensure();
  const spec = job('order', ['ls', '--json', vmx]);
  let seen: string | null = null;
  // every status write that ends the job looks at the log as `job --follow` would at that moment
  const setStatus = state.setStatus.bind(state);
  state.setStatus = (id, s) => {
    if (id === spec.id && ['done', 'failed', 'cancelled'].includes(s.state)) seen = readFileSync(state.logPath(id), 'utf8').trim().split('\n').at(-1)!;
    setStatus(id, s);
  };
  state.submit(spec);
  d.start();
  await until('the job to end', () => ['done', 'failed'].includes(state.status(spec.id).state));
  await d.stop();
  t.match(seen, /"event":"end","state":"done"/, 'the log already ended with the end record');
});
