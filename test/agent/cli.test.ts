/**
 * The agent's commands as the CLI runs them (src/cli/agent.ts, jobs.ts, config.ts, disks.ts): each
 * --help teaches with examples and exit codes; a request through the agent prints exactly what the
 * same snapferry command prints when run directly (the direct run is the oracle); --repo NAME is the
 * config's repository; verify with the key on stdin; usage errors of jobs/job/cancel.
 */
import t from 'tap';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { image, requireTool, ROOT } from '../helpers/images.js';
import { snapferry } from '../helpers/cli.js';

requireTool('age-keygen');
const vmx = join(image('sample-vm'), 'sample.vmx');
const work = mkdtempSync(join(tmpdir(), 'sf-agent-cli-'));
const state = join(work, 'state');
const config = join(work, 'config');
const repo = join(work, 'repo');
const ageKey = join(work, 'age.txt');
execFileSync('age-keygen', ['-o', ageKey], { stdio: 'ignore' });
const recipient = execFileSync('age-keygen', ['-y', ageKey], { encoding: 'utf8' }).trim();
writeFileSync(config, `datastore = ${dirname(vmx)}\ndatastore = ${work}/store\n[repository local]\nurl = ${repo}\nrecipient = ${recipient}\n`);

function agent(role: string, command: string, input = ''): { status: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [join(ROOT, 'bin', 'snapferry.js'), 'agent', `--role=${role}`], { input, encoding: 'utf8', maxBuffer: 64 << 20, env: { ...process.env, SSH_ORIGINAL_COMMAND: command, SNAPFERRY_STATE_DIR: state, SNAPFERRY_CONFIG: config } });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

t.test('every new command teaches: --help with examples and exit codes', async (t) => {
  for (const args of [['agent', '--help'], ['jobs', '--help'], ['job', '--help'], ['cancel', '--help'], ['jobd', '--help'], ['disks', '--help'], ['config', '--help']]) {
    const r = snapferry(args);
    t.equal(r.status, 0, `${args.join(' ')} exits 0`);
    t.match(r.stdout, /Examples:/, `${args[0]}: examples`);
    t.match(r.stdout, /Exit codes:/, `${args[0]}: exit codes`);
  }
  const main = snapferry(['--help']).stdout;
  for (const c of ['snapferry agent --role=ROLE', 'snapferry jobs', 'snapferry disks', 'snapferry config check|apply']) t.ok(main.includes(c), `snapferry --help lists ${c}`);
  t.match(snapferry(['agent', '--help']).stdout, /E_AGENT_ROLE/, 'agent --help lists the refusal codes');
});

t.test('through the agent, the same output as the command run directly', async (t) => {
  for (const [role, cmd, direct] of [
    ['read-only', `inspect --json ${vmx}`, ['inspect', '--json', vmx]],
    ['read-only', `ls -R --json --sha256 ${vmx} p1`, ['ls', '-R', '--json', '--sha256', vmx, 'p1']],
    ['read-only', `stat --json ${vmx} 'scsi0:0/p1/etc/hostname'`, ['stat', '--json', vmx, 'scsi0:0/p1/etc/hostname']],
    ['restore', `cat ${vmx} scsi0:0/p2/data-2.bin`, ['cat', vmx, 'scsi0:0/p2/data-2.bin']],
  ] as const) {
    const a = agent(role, cmd);
    const d = snapferry([...direct]);
    t.equal(a.status, d.status, `${cmd}: same exit code (${a.status})`);
    t.ok(a.stdout.length > 0 && a.stdout === d.stdout, `${cmd}: the same ${a.stdout.length} bytes on stdout`);
  }
});

t.test('--repo NAME is the configured repository; verify with the key on stdin', async (t) => {
  t.equal(snapferry(['backup', vmx, '--repo', repo, '--recipient', recipient, '--state-dir', join(work, 'inc')]).status, 0, 'a backup in the repository');
  const snaps = agent('read-only', 'snapshots --repo local --json');
  t.equal(snaps.status, 0, snaps.stderr);
  t.equal(snaps.stdout, snapferry(['snapshots', '--repo', repo, '--json']).stdout, 'snapshots --repo local lists the configured repository');
  const v = agent('read-only', 'verify --repo local --identity - --json', readFileSync(ageKey, 'utf8'));
  t.equal(v.status, 0, `verify with the key on stdin ${v.stderr}`);
  t.match(JSON.parse(v.stdout.trim().split('\n')[0]!), { event: 'verified', ok: true });
  const bad = agent('read-only', 'verify --repo local --identity -', 'AGE-SECRET-KEY-1QQQQ');
  t.equal((JSON.parse(bad.stdout) as { error: { code: string } }).error.code, 'E_AGE_KEY', 'a bad key is a typed error');
  const cfg = agent('read-only', 'config check --json');
  t.match(JSON.parse(cfg.stdout), { ok: true, repositories: ['local'] }, 'config check over the agent checks the configured file');
});

t.test('usage errors of the job commands', async (t) => {
  const env = { SNAPFERRY_STATE_DIR: state };
  t.equal(snapferry(['job'], { env }).status, 2, 'job needs an id');
  t.equal(snapferry(['job', 'nope'], { env }).status, 2, 'a malformed id is a usage error');
  t.equal(snapferry(['job', '20261205T103700Z-1a2b3c4d'], { env }).status, 3, 'an unknown job is exit 3');
  t.equal(snapferry(['cancel', '20261205T103700Z-1a2b3c4d', '--json'], { env }).status, 3, 'cancel of an unknown job is exit 3');
  t.equal(snapferry(['jobs', 'x'], { env }).status, 2, 'jobs takes no arguments');
  t.same(JSON.parse(snapferry(['jobs', '--json'], { env }).stdout), { jobs: [] }, 'no jobs yet');
});

t.test('DISK arguments: attached disks and datastore files only (E_AGENT_SOURCE)', async (t) => {
  mkdirSync(join(work, 'store'), { recursive: true });
  symlinkSync('/etc/passwd', join(work, 'store', 'escape.raw'));
  writeFileSync(join(work, 'store', 'ok.raw'), Buffer.alloc(1024 * 1024));
  for (const [role, cmd] of [
    ['read-only', 'inspect /etc/passwd'],
    ['read-only', `inspect ${vmx} /etc/passwd`],
    ['read-only', 'ls /etc/shadow'],
    ['restore', 'cat /root/.ssh/id_ed25519 whole/x'],
    ['read-only', `ls ${join(work, 'store', 'escape.raw')}`],
    ['read-only', `ls ${join(work, 'store', '..', 'config')}`],
    ['read-only', 'ls /nonexistent/disk.vmdk'],
    ['operator', `backup /etc/passwd --vm x --repo local`],
  ] as const) {
    const r = agent(role, cmd);
    t.equal((JSON.parse(r.stdout.trim().split('\n')[0]!) as { error?: { code: string } }).error?.code, 'E_AGENT_SOURCE', `${cmd}: E_AGENT_SOURCE`);
  }
  t.equal(agent('read-only', `inspect --json ${join(work, 'store', 'ok.raw')}`).status, 0, 'a file below a configured datastore is read');
});

t.test('a job queued while no jobd runs says so', async (t) => {
  const r = spawnSync(process.execPath, [join(ROOT, 'bin', 'snapferry.js'), 'agent', '--role=operator'], { encoding: 'utf8', env: { ...process.env, SSH_ORIGINAL_COMMAND: `backup ${vmx} --repo local --json`, SNAPFERRY_STATE_DIR: join(work, 'idle-state'), SNAPFERRY_CONFIG: config } });
  t.equal(r.status, 0);
  t.match(JSON.parse(r.stdout), { state: 'queued', warning: { code: 'W_JOBD_NOT_RUNNING' } }, 'the answer warns that nothing will run it yet');
});

t.test('an image backup (--image) queued through the agent runs as a job', async (t) => {
  const jobd = spawn(process.execPath, [join(ROOT, 'bin', 'snapferry.js'), 'jobd', '--config', config], { env: { ...process.env, SNAPFERRY_STATE_DIR: state }, stdio: 'ignore' });
  try {
    const r = agent('operator', `backup ${vmx} --image --repo local --follow`);
    t.equal(r.status, 0, `backup --image --follow exits 0 ${r.stderr}`);
    const events = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { event?: string; kind?: string; state?: string; job?: string });
    t.ok(events[0]!.job, 'the first line is the queued job');
    t.equal(events.find((e) => e.event === 'summary')?.kind, 'image', 'the summary is an image backup');
    t.match(events.at(-1), { event: 'end', state: 'done' }, 'the job ends done');
  } finally {
    jobd.kill('SIGTERM');
    await new Promise((r) => jobd.once('exit', r));
  }
});
