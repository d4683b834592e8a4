/**
 * The appliance's privilege path, as appliance/README.md ("agent") writes it down, for real: a
 * `snapferry` login whose key forces `/usr/local/bin/snapferry agent --role=ROLE`, and the sudoers
 * rule copied verbatim from the README. Over a real sshd the agent starts unprivileged, re-runs
 * itself through `sudo -n`, and the request is served as root (the audit line says uid 0, from
 * sudo user snapferry), stdin included (a restore key); a forced command with other arguments does
 * not match the rule. Needs root, sudo and useradd; it creates the user, the rule and the
 * /usr/local/bin/snapferry link only when they are absent, and removes what it created.
 */
import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, lstatSync, mkdtempSync, readFileSync, readlinkSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { image, requireTool, ROOT } from '../helpers/images.js';
import { snapferry } from '../helpers/cli.js';
import { startSshd, type Sshd } from '../helpers/sshd.js';

requireTool('sudo', 'visudo', 'useradd', 'userdel', 'ssh', 'ssh-keygen', 'age-keygen');
if (process.getuid?.() !== 0) throw new Error('sudo.test.ts needs root (a user, a sudoers rule); it does not skip');
t.equal(snapferry(['--version']).status, 0, 'the CLI is built');

const LINK = '/usr/local/bin/snapferry';
const SUDOERS = '/etc/sudoers.d/snapferry';
const STATE = '/var/lib/snapferry'; // sudo keeps no SNAPFERRY_* variable: root uses the defaults
const work = mkdtempSync(join(tmpdir(), 'sf-sudo-'));
const created: (() => void)[] = [];
let sshd: Sshd;

function rule(): string {
  const readme = readFileSync(join(ROOT, 'appliance', 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('## agent'));
  const m = /```\n(# snapferry's SSH agent[^`]*?)```/.exec(section);
  if (!m) throw new Error("appliance/README.md's agent section has no sudoers block");
  return m[1]!;
}

t.before(async () => {
  if (spawnSync('id', ['snapferry'], { stdio: 'ignore' }).status !== 0) {
    execFileSync('useradd', ['--system', '--no-create-home', '--home-dir', '/nonexistent', '--shell', '/bin/sh', 'snapferry']);
    execFileSync('usermod', ['-p', '*', 'snapferry']); // no password, but not locked (sshd without PAM refuses locked accounts)
    created.push(() => execFileSync('userdel', ['snapferry']));
  }
  if (!existsSync(SUDOERS)) {
    writeFileSync(SUDOERS, rule(), { mode: 0o440 });
    created.push(() => unlinkSync(SUDOERS));
  }
  let linked = false;
  try {
    linked = lstatSync(LINK).isSymbolicLink();
  } catch {
    symlinkSync(join(ROOT, 'bin', 'snapferry.js'), LINK);
    created.push(() => unlinkSync(LINK));
    linked = true;
  }
  if (!linked) throw new Error(`${LINK} exists and is not a link; not touching it`);
  if (!existsSync(STATE)) created.push(() => rmSync(STATE, { recursive: true, force: true }));
  sshd = await startSshd();
  chmodSync(sshd.dir, 0o755); // sshd reads authorized_keys as the login user
});

t.teardown(async () => {
  await sshd?.stop();
  for (const undo of created.reverse()) undo();
});

function key(name: string, forced: string): string {
  const p = join(work, name);
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', p]);
  return `command="${forced}",restrict ${readFileSync(`${p}.pub`, 'utf8').trim()}`;
}

function ssh(name: string, command: string, input = ''): { status: number; stdout: string; stderr: string } {
  const r = spawnSync('ssh', ['-F', '/dev/null', '-p', String(sshd.port), '-i', join(work, name), '-o', 'IdentitiesOnly=yes', '-o', `UserKnownHostsFile=${sshd.knownHosts}`, '-o', 'BatchMode=yes', '-o', 'LogLevel=ERROR', '-T', 'snapferry@127.0.0.1', command], { input, encoding: 'utf8', timeout: 60_000 });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

t.test("the README's sudoers rule, over a real sshd", async (t) => {
  t.equal(spawnSync('visudo', ['-cf', SUDOERS], { encoding: 'utf8' }).status, 0, 'visudo -cf accepts the rule');
  writeFileSync(join(sshd.dir, 'authorized_keys'), [key('ro', `${LINK} agent --role=read-only`), key('rs', `${LINK} agent --role=restore`), key('cfg', `${LINK} agent --role=read-only --config /tmp/x`)].join('\n') + '\n', { mode: 0o644 });
  const who = ssh('ro', 'help --json');
  t.equal(who.status, 0, `help as the snapferry user through sudo ${who.stderr}`);
  t.equal((JSON.parse(who.stdout) as { role: string }).role, 'read-only');
  const last = readFileSync(join(STATE, 'agent.log'), 'utf8').trim().split('\n').at(-1)!;
  t.match(JSON.parse(last), { event: 'accepted', role: 'read-only', uid: 0, sudoUser: 'snapferry', command: ['help', '--json'] }, 'served as root, re-run by sudo from the snapferry login');
  const refused = ssh('ro', 'backup vm1');
  t.equal((JSON.parse(refused.stdout) as { error: { code: string } }).error.code, 'E_AGENT_ROLE', 'the role still holds after sudo');
  const other = ssh('cfg', 'help');
  t.not(other.status, 0, 'a forced command with other arguments does not match the rule');
  t.match(other.stderr, /sudo/, 'sudo says so');

  // a restore key on stdin passes through sudo to the root agent
  const vmx = join(image('sample-vm'), 'sample.vmx');
  const ageKey = join(work, 'age.txt');
  execFileSync('age-keygen', ['-o', ageKey], { stdio: 'ignore' });
  const recipient = execFileSync('age-keygen', ['-y', ageKey], { encoding: 'utf8' }).trim();
  const repo = join(work, 'repo');
  t.equal(snapferry(['backup', vmx, '--repo', repo, '--recipient', recipient, '--state-dir', join(work, 'inc')]).status, 0, 'a backup to restore from');
  const r = ssh('rs', `restore --repo ${repo} latest scsi0:0/p1/etc/hostname --identity - --target -`, readFileSync(ageKey, 'utf8'));
  t.equal(r.status, 0, `restore through sudo ${r.stderr}`);
  t.equal(r.stdout, snapferry(['cat', vmx, 'scsi0:0/p1/etc/hostname']).stdout, "the restored file is the source's");
});

t.test('where the link points', async (t) => {
  t.equal(readlinkSync(LINK).endsWith('bin/snapferry.js'), true, `${LINK} -> ${readlinkSync(LINK)}`);
});
