/**
 * The agent driven over plain OpenSSH, as an administrator drives the appliance: a real sshd on
 * 127.0.0.1 whose authorized_keys force `snapferry agent --role=...` with `restrict`, the stock `ssh`
 * client, and a real jobd. Proves: refusals (role, allow-list, metacharacters, sh -c, no command,
 * no role) are JSON errors with codes and logged, and no shell ever runs; `restrict` refuses a PTY
 * and port forwarding (and the same probes succeed against a key without it, so they can fail); a
 * backup queued over SSH completes after the session is dropped; two backups of one VM serialize;
 * cancel works; the concurrency limit holds; a restore key given on stdin restores a file equal to
 * the source and leaves no trace in the state dir, the logs or the repository.
 */
import t from 'tap';
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { createServer, connect, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { image, requireTool, ROOT } from '../helpers/images.js';
import { snapferry } from '../helpers/cli.js';
import { startSshd, type Sshd } from '../helpers/sshd.js';

requireTool('ssh', 'ssh-keygen', 'sftp', 'age-keygen', 'mkfifo', 'ss');

const vm = image('sample-vm');
const vmx = join(vm, 'sample.vmx');
const work = mkdtempSync(join(tmpdir(), 'sf-agent-ssh-'));
const state = join(work, 'state');
const repo = join(work, 'repo');
const configFile = join(work, 'config');
const ageKey = join(work, 'age.txt');
execFileSync('age-keygen', ['-o', ageKey], { stdio: 'ignore' });
const recipient = execFileSync('age-keygen', ['-y', ageKey], { encoding: 'utf8' }).trim();
const secretLine = readFileSync(ageKey, 'utf8')
  .split('\n')
  .find((l) => l.startsWith('AGE-SECRET-KEY-1'))!;

function writeConfig(concurrency: number): void {
  writeFileSync(configFile, [`concurrency = ${concurrency}`, `datastore = ${work}`, '', '[repository local]', `url = ${repo}`, `recipient = ${recipient}`, '', '[vm sample]', `source = ${vmx}`, 'repository = local', ''].join('\n'));
}
writeConfig(2);

t.ok(snapferry(['--version']).status === 0, 'the CLI is built');

let sshd: Sshd;
let jobd: ChildProcess | null = null;
let jobdLog = '';
const keys: Record<string, string> = {};

function keygen(name: string): string {
  const p = join(work, `key-${name}`);
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', name, '-f', p]);
  keys[name] = p;
  return readFileSync(`${p}.pub`, 'utf8').trim();
}

function forced(role: string | null): string {
  const env = `SNAPFERRY_STATE_DIR=${state} SNAPFERRY_CONFIG=${configFile}`;
  return `${env} ${process.execPath} ${join(ROOT, 'bin', 'snapferry.js')} agent${role ? ` --role=${role}` : ''}`;
}

function sshArgs(key: string, extra: string[] = []): string[] {
  return ['-F', '/dev/null', '-p', String(sshd.port), '-i', keys[key]!, '-o', 'IdentitiesOnly=yes', '-o', `UserKnownHostsFile=${sshd.knownHosts}`, '-o', 'StrictHostKeyChecking=yes', '-o', 'BatchMode=yes', '-o', 'LogLevel=ERROR', ...extra, `${sshd.user}@127.0.0.1`];
}

interface Run {
  status: number;
  stdout: string;
  stderr: string;
}

function ssh(key: string, command: string | null, o: { input?: string | Buffer; extra?: string[] } = {}): Run {
  const r = spawnSync('ssh', [...sshArgs(key, o.extra ?? ['-T']), ...(command === null ? [] : [command])], { input: o.input ?? '', encoding: 'utf8', timeout: 120_000, maxBuffer: 64 << 20 });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

function sshBytes(key: string, command: string, input: string): { status: number; stdout: Buffer; stderr: string } {
  const r = spawnSync('ssh', [...sshArgs(key, ['-T']), command], { input, timeout: 120_000, maxBuffer: 64 << 20 });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr.toString() };
}

function errorCode(r: Run): string | undefined {
  try {
    return (JSON.parse(r.stdout.trim().split('\n')[0]!) as { error?: { code: string } }).error?.code;
  } catch {
    return undefined;
  }
}

function agentLog(): { event: string; code?: string; command?: string[]; role?: string }[] {
  const p = join(state, 'agent.log');
  return existsSync(p) ? readFileSync(p, 'utf8').trim().split('\n').map((l) => JSON.parse(l)) : [];
}

async function waitFor<T>(what: string, f: () => T | undefined | false, ms = 60_000): Promise<T> {
  const until = Date.now() + ms;
  for (;;) {
    const v = f();
    if (v) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}; jobd said: ${jobdLog.slice(-2000)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

interface Status {
  state: string;
  pid?: number;
  startedAt?: string;
  endedAt?: string;
  exitCode?: number;
}
function status(id: string): Status {
  const p = join(state, 'jobs', id, 'status.json');
  return existsSync(p) ? (JSON.parse(readFileSync(p, 'utf8')) as Status) : { state: 'queued' };
}

function jobIdOf(r: Run): string {
  const line = r.stdout.trim().split('\n')[0]!;
  const j = JSON.parse(line) as { job?: string };
  if (!j.job) throw new Error(`no job id in ${r.stdout} ${r.stderr}`);
  return j.job;
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function startJobd(): void {
  jobd = spawn(process.execPath, [join(ROOT, 'bin', 'snapferry.js'), 'jobd', '--config', configFile], { env: { ...process.env, SNAPFERRY_STATE_DIR: state }, stdio: ['ignore', 'ignore', 'pipe'] });
  jobd.stderr!.on('data', (d: Buffer) => (jobdLog += d.toString()));
}

async function stopJobd(): Promise<void> {
  if (!jobd || jobd.exitCode !== null) return;
  const j = jobd;
  const exited = new Promise((r) => j.once('exit', r));
  j.kill('SIGTERM');
  await exited;
}

t.before(async () => {
  sshd = await startSshd();
  const lines = [
    `command="${forced('operator')}",restrict ${keygen('operator')}`,
    `command="${forced('restore')}",restrict ${keygen('restore')}`,
    `command="${forced('read-only')}",restrict ${keygen('readonly')}`,
    `command="${forced(null)}",restrict ${keygen('norole')}`,
    // the same forced command WITHOUT restrict: the probes below must see PTYs and forwarding granted here
    `command="${forced('read-only')}" ${keygen('unrestricted')}`,
  ];
  writeFileSync(join(sshd.dir, 'authorized_keys'), lines.join('\n') + '\n');
  mkdirSync(state, { recursive: true });
  startJobd();
});

t.teardown(async () => {
  await stopJobd();
  await sshd?.stop();
});

t.test('refusals are JSON errors with codes, logged, and no shell runs', async (t) => {
  const marker = join(work, 'pwned');
  const cases: [string, string | null, string][] = [
    ['readonly', 'backup sample --json', 'E_AGENT_ROLE'],
    ['restore', 'backup sample --json', 'E_AGENT_ROLE'],
    ['readonly', `restore --repo local latest --identity - --target -`, 'E_AGENT_ROLE'],
    ['operator', `sh -c 'touch ${marker}'`, 'E_AGENT_COMMAND'],
    ['operator', `touch ${marker}`, 'E_AGENT_COMMAND'],
    ['operator', `jobs; touch ${marker}`, 'E_AGENT_SYNTAX'],
    ['operator', `jobs && touch ${marker}`, 'E_AGENT_SYNTAX'],
    ['operator', `jobs | touch ${marker}`, 'E_AGENT_SYNTAX'],
    ['operator', `jobs $(touch ${marker})`, 'E_AGENT_SYNTAX'],
    ['operator', `jobs \`touch ${marker}\``, 'E_AGENT_SYNTAX'],
    ['operator', `jobs > ${marker}`, 'E_AGENT_SYNTAX'],
    ['operator', `jobs\ntouch ${marker}`, 'E_AGENT_SYNTAX'],
    ['operator', 'backup sample --state-dir /tmp', 'E_AGENT_OPTION'],
    ['operator', 'mount /dev/sda /mnt', 'E_AGENT_COMMAND'],
    ['norole', 'jobs', 'E_AGENT_ROLE'],
    ['operator', null, 'E_AGENT_INTERACTIVE'],
  ];
  for (const [key, command, code] of cases) {
    const before = agentLog().length;
    const r = ssh(key, command);
    t.equal(r.status, 2, `${key}: ${JSON.stringify(command)} exits 2`);
    t.equal(errorCode(r), code, `${key}: ${JSON.stringify(command)} answers ${code} as JSON`);
    const logged = agentLog().slice(before);
    t.ok(logged.some((l) => l.event === 'refused' && l.code === code), `and it is logged in agent.log`);
    t.match(r.stderr, new RegExp(`snapferry-agent\\[\\d+\\]: refused ${code}`), 'and a syslog-style line on stderr');
  }
  t.notOk(existsSync(marker), 'no command of the client ever ran');
  const sftp = spawnSync('sftp', ['-F', '/dev/null', '-P', String(sshd.port), '-i', keys.operator!, '-o', 'IdentitiesOnly=yes', '-o', `UserKnownHostsFile=${sshd.knownHosts}`, '-o', 'BatchMode=yes', '-b', '-', `${sshd.user}@127.0.0.1`], { input: 'ls /\n', encoding: 'utf8', timeout: 30_000 });
  t.not(sftp.status, 0, 'the sftp subsystem gets the agent, which refuses it');
  t.ok(agentLog().some((l) => l.event === 'refused' && l.code === 'E_AGENT_COMMAND' && l.command?.[0]?.includes('sftp')), 'logged as a refused command');
  const ok = ssh('readonly', 'help --json');
  t.equal(ok.status, 0, 'help works for a read-only key');
  t.same((JSON.parse(ok.stdout) as { commands: { command: string }[] }).commands.map((c) => c.command).includes('backup'), false, 'and does not list backup');
  t.ok(agentLog().some((l) => l.event === 'accepted' && l.role === 'read-only' && l.command?.[0] === 'help'), 'accepted requests are logged too');
});

t.test('restrict refuses a PTY; the same probe gets one without restrict', async (t) => {
  const probe = (key: string): boolean => {
    const r = ssh(key, 'help', { extra: ['-tt'] });
    return !/PTY allocation request failed/.test(r.stderr);
  };
  t.equal(probe('readonly'), false, 'ssh -tt with a restrict key: PTY allocation request failed');
  t.equal(probe('unrestricted'), true, 'ssh -tt with a key without restrict gets a PTY (the probe can fail)');
});

t.test('restrict refuses port forwarding; the same probe forwards without restrict', async (t) => {
  const echo: Server = createServer((s) => s.pipe(s));
  await new Promise<void>((r) => echo.listen(0, '127.0.0.1', () => r()));
  const echoPort = (echo.address() as { port: number }).port;
  const probe = async (key: string): Promise<boolean> => {
    const local = await new Promise<number>((r) => {
      const s = createServer();
      s.listen(0, '127.0.0.1', () => {
        const p = (s.address() as { port: number }).port;
        s.close(() => r(p));
      });
    });
    const fwd = spawn('ssh', [...sshArgs(key, ['-N', '-o', 'ExitOnForwardFailure=yes', '-L', `${local}:127.0.0.1:${echoPort}`])], { stdio: 'ignore' });
    try {
      await waitFor('the forward to listen', () => ssProbe(local), 15_000);
      return await new Promise<boolean>((res) => {
        const c = connect(local, '127.0.0.1');
        let got = '';
        c.on('connect', () => c.write('ping'));
        c.on('data', (d) => {
          got += d.toString();
          if (got === 'ping') {
            c.destroy();
            res(true);
          }
        });
        c.on('error', () => res(false));
        c.on('close', () => res(got === 'ping'));
        setTimeout(() => {
          c.destroy();
          res(false);
        }, 5000);
      });
    } finally {
      fwd.kill('SIGTERM');
    }
  };
  t.equal(await probe('readonly'), false, 'ssh -L with a restrict key: the channel is refused, nothing comes back');
  t.equal(await probe('unrestricted'), true, 'ssh -L with a key without restrict carries the bytes (the probe can fail)');
  echo.close();
});

/** Whether something listens on 127.0.0.1:port (ss, from iproute2). */
function ssProbe(port: number): boolean {
  const r = spawnSync('ss', ['-Hltn', `sport = :${port}`], { encoding: 'utf8' });
  return r.status === 0 && r.stdout.trim() !== '';
}

t.test('a backup queued over SSH completes after the session is dropped', async (t) => {
  const client = spawn('ssh', [...sshArgs('operator', ['-T']), 'backup sample --follow --json'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  client.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  const id = await waitFor('the job id', () => /"job":"([^"]+)"/.exec(out)?.[1]);
  await waitFor('the job to start', () => status(id).state !== 'queued' && status(id).state);
  client.kill('SIGKILL'); // the administrator's laptop goes away mid-backup
  await new Promise((r) => client.once('exit', r));
  t.pass(`ssh session of job ${id} killed while the job was ${status(id).state}`);
  const follow = ssh('readonly', `job ${id} --follow`);
  t.equal(follow.status, 0, 'job --follow (another session, a read-only key) ends with exit 0');
  const events = follow.stdout.trim().split('\n').map((l) => JSON.parse(l) as { event: string; state?: string; id?: string });
  t.equal(events[0]!.event, 'queued', 'the log starts with queued');
  t.ok(events.some((e) => e.event === 'progress'), 'it holds progress lines');
  const summary = events.find((e) => e.event === 'summary');
  t.ok(summary, 'and the backup summary');
  t.same(events.at(-1), { ...events.at(-1), event: 'end', state: 'done' }, 'and ends with end/done');
  const snaps = ssh('readonly', 'snapshots --repo local --json');
  t.equal(snaps.status, 0, 'snapshots over SSH');
  t.ok(snaps.stdout.includes(summary!.id!), 'the repository holds the backup the job made');
  const list = JSON.parse(ssh('readonly', 'jobs --json').stdout) as { jobs: { id: string; state: string }[] };
  t.same(list.jobs.find((j) => j.id === id)?.state, 'done', 'jobs --json lists it as done');
});

t.test('a restore key on stdin: the file equals the source, and the key is nowhere on disk', async (t) => {
  const want = execFileSync(process.execPath, [join(ROOT, 'bin', 'snapferry.js'), 'cat', vmx, 'scsi0:0/p1/home/alice/docs/added-in-snapshot-2.bin']);
  const r = sshBytes('restore', 'restore --repo local latest scsi0:0/p1/home/alice/docs/added-in-snapshot-2.bin --identity - --target -', readFileSync(ageKey, 'utf8'));
  t.equal(r.status, 0, `restore over SSH exits 0 ${r.stderr}`);
  t.equal(createHash('sha256').update(r.stdout).digest('hex'), createHash('sha256').update(want).digest('hex'), `the restored file (${r.stdout.length} bytes) equals the source's`);
  const bad = sshBytes('restore', 'restore --repo local latest scsi0:0/p1/etc/hostname --identity - --target -', 'AGE-SECRET-KEY-1QQQQ\n');
  t.not(bad.status, 0, 'a bad key on stdin fails');
  const payload = secretLine.slice('AGE-SECRET-KEY-1'.length, -6);
  const hits: string[] = [];
  const walk = (d: string): void => {
    for (const n of readdirSync(d)) {
      const p = join(d, n);
      if (statSync(p).isDirectory()) walk(p);
      else {
        const text = readFileSync(p).toString('latin1');
        if (text.includes(payload) || text.toLowerCase().includes(payload.toLowerCase())) hits.push(p);
      }
    }
  };
  walk(state);
  walk(repo);
  walk(sshd.dir);
  t.same(hits, [], 'the secret key is in no file of the state dir (agent.log, job logs), the repository or the sshd dir');
  t.notOk(jobdLog.toLowerCase().includes(payload.toLowerCase()), "nor in jobd's log");
  t.ok(agentLog().some((l) => l.event === 'accepted' && l.command?.includes('--identity') && l.command?.includes('-')), "the audit log has the request, with '-' for the identity");
});

/** A FIFO as a disk: a backup of it blocks opening it, so a job stays running until it is cancelled. */
function fifo(name: string): string {
  const p = join(work, name);
  execFileSync('mkfifo', [p]);
  return p;
}

function queue(key: string, cmd: string): string {
  const r = ssh(key, cmd);
  if (r.status !== 0) throw new Error(`${cmd}: ${r.stdout} ${r.stderr}`);
  return jobIdOf(r);
}

t.test('one job per VM at a time; cancel stops a running and a queued job', async (t) => {
  const slow = fifo('slow.raw');
  const a = queue('operator', `backup ${slow} --vm slowvm --repo local --json`);
  const b = queue('operator', `backup ${slow} --vm slowvm --repo local --json`);
  const pa = (await waitFor('job a to run', () => status(a).state === 'running' && status(a))).pid!;
  t.ok(pidAlive(pa), `job a runs (pid ${pa})`);
  t.equal(readFileSync(join(state, 'locks', 'slowvm.lock'), 'utf8').trim(), String(jobd!.pid), "the VM's lock holds jobd's pid");
  await new Promise((r) => setTimeout(r, 1500));
  t.equal(status(b).state, 'queued', 'job b of the same VM waits while a runs (1.5 s later)');
  t.equal(errorCode(ssh('readonly', `cancel ${a}`)), 'E_AGENT_ROLE', 'a read-only key cannot cancel');
  const c = ssh('operator', `cancel ${a} --json`);
  t.equal(c.status, 0, 'cancel over SSH');
  t.same(JSON.parse(c.stdout), { job: a, state: 'cancelled' }, 'answers cancelled');
  await waitFor('job a to be gone', () => !pidAlive(pa));
  t.pass('job a is no longer running');
  const pb = (await waitFor('job b to run once a ended', () => status(b).state === 'running' && status(b))).pid!;
  t.ok(Date.parse(status(b).startedAt!) >= Date.parse(status(a).endedAt!), 'b started after a ended');
  t.same(JSON.parse(ssh('operator', `cancel ${b} --json`).stdout), { job: b, state: 'cancelled' }, 'b cancelled');
  await waitFor('job b to be gone', () => !pidAlive(pb));
  const logB = readFileSync(join(state, 'jobs', b, 'log.jsonl'), 'utf8');
  t.match(logB, /"event":"cancelling"/, "b's log records the cancel");
  t.match(logB, /"event":"end","state":"cancelled"/, 'and its end');
  t.equal(errorCode(ssh('operator', `cancel ${b}`)), 'E_JOB_ENDED', 'cancelling an ended job is a typed error');
  t.equal(errorCode(ssh('operator', 'cancel ../../etc')), 'E_JOB_ID', 'a job id that is a path is refused');
});

t.test('two real backups of the same VM serialize', async (t) => {
  const a = queue('operator', 'backup sample --incremental --json');
  const b = queue('operator', 'backup sample --incremental --json');
  await waitFor('both jobs to end', () => ['done', 'failed'].includes(status(a).state) && ['done', 'failed'].includes(status(b).state), 120_000);
  t.equal(status(a).state, 'done', 'a done');
  t.equal(status(b).state, 'done', 'b done');
  t.ok(Date.parse(status(b).startedAt!) >= Date.parse(status(a).endedAt!), `b started (${status(b).startedAt}) after a ended (${status(a).endedAt})`);
});

t.test('the concurrency limit holds', async (t) => {
  const ids = ['c1', 'c2', 'c3'].map((n) => queue('operator', `backup ${fifo(`${n}.raw`)} --vm ${n} --repo local --json`));
  await waitFor('two jobs to run', () => ids.filter((id) => status(id).state === 'running').length === 2);
  await new Promise((r) => setTimeout(r, 1500));
  t.equal(ids.filter((id) => status(id).state === 'running').length, 2, 'with concurrency = 2, two of three jobs of different VMs run');
  const waiting = ids.find((id) => status(id).state === 'queued')!;
  t.ok(waiting, 'the third is queued 1.5 s later');
  const first = ids.find((id) => status(id).state === 'running')!;
  ssh('operator', `cancel ${first}`);
  await waitFor('the queued job to start once one ended', () => status(waiting).state === 'running');
  t.pass('the queued job started when a slot freed');
  t.equal(ids.filter((id) => status(id).state === 'running').length, 2, 'still two at once');
  for (const id of ids) if (status(id).state === 'running' || status(id).state === 'queued') ssh('operator', `cancel ${id}`);
  await waitFor('all to end', () => ids.every((id) => status(id).state === 'cancelled'));
});
