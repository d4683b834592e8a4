/**
 * The appliance, end to end: packer/build (appliance/build's debootstrap base disk, provisioned by
 * Packer under qemu) makes the image; it boots under qemu-system-x86_64 with software emulation, the
 * sample VM's disk attached read-only as a second virtio drive and SSH forwarded to 127.0.0.1; then
 * everything goes through plain OpenSSH `ssh` from the host, as an administrator or Ansible would:
 * inspect and ls the attached disk, a backup to a real sshd on the host's loopback (the guest reaches
 * it as 10.0.2.2, qemu's user-mode NAT: no traffic leaves the machine), the job followed to its end,
 * a file restored on the host with stock age | zstd | tar and through the agent, equal to the source.
 * Then the refusals: keys without a role, other commands, shell metacharacters, forwarding, a PTY,
 * passwords, a read-only key's backup; and the guest disk's sha256 unchanged after all of it.
 *
 * The appliance is configured the way a hypervisor administrator does it without a shell over SSH
 * (there is none): through the QEMU guest agent, writing /etc/snapferry/{authorized_keys,config}.
 *
 * Slow by nature (a Debian guest under TCG): a first run builds the image (minutes); a rerun with
 * nothing changed reuses images/cache/appliance. Every missing tool fails the test; it never skips.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { CACHE, ROOT, image, requireTool, sha256File } from '../helpers/images.js';
import { startSshd, type Sshd } from '../helpers/sshd.js';
import { boot, freePort, type Appliance } from './qemu.js';

// A first run builds the image (~10 min on a busy 2-core machine); CI's whole run must stay < 30 min.
t.setTimeout(25 * 60_000);

requireTool('qemu-system-x86_64', 'qemu-img', 'packer', 'debootstrap', 'ssh', 'ssh-keygen', 'age', 'age-keygen', 'zstd', 'tar', 'debugfs');

const work = mkdtempSync(join(tmpdir(), 'sf-appliance-'));
t.teardown(() => rmSync(work, { recursive: true, force: true }));

function run(cmd: string, args: string[], opts: { input?: string | Buffer; timeout?: number } = {}): { status: number; stdout: Buffer; stderr: string } {
  const r = spawnSync(cmd, args, { input: opts.input, timeout: opts.timeout ?? 300_000, maxBuffer: 256 << 20 });
  return { status: r.status ?? -1, stdout: r.stdout ?? Buffer.alloc(0), stderr: r.stderr?.toString() ?? String(r.error ?? '') };
}

// ---- the image --------------------------------------------------------------------------------
const buildStart = Date.now();
const built = run(join(ROOT, 'packer', 'build'), [], { timeout: 30 * 60_000 });
if (built.status !== 0) throw new Error(`packer/build failed (${built.status}):\n${built.stderr}`);
const buildSeconds = (Date.now() - buildStart) / 1000;
const imageDir = join(CACHE, 'appliance', 'packer');
const qcow2 = join(imageDir, 'snapferry-appliance.qcow2');
process.stderr.write(`# appliance image: ${buildSeconds.toFixed(0)} s (packer/build, cached when nothing changed)\n${built.stderr}`);

// ---- keys and the host-side repository ----------------------------------------------------------
function keygen(name: string): string {
  const p = join(work, name);
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', name, '-f', p]);
  return p;
}
const pub = (k: string): string => readFileSync(`${k}.pub`, 'utf8').trim();
const keys = { operator: keygen('operator'), restore: keygen('restore'), readonly: keygen('readonly'), norole: keygen('norole'), shell: keygen('shell'), stranger: keygen('stranger') };
const agentLine = (role: string, k: string): string => `command="/usr/local/bin/snapferry agent --role=${role}",restrict ${pub(k)}`;
const authorizedKeys = [
  agentLine('operator', keys.operator),
  agentLine('restore', keys.restore),
  agentLine('read-only', keys.readonly),
  // no role at all: a plain key line, which sshd alone would turn into a shell
  pub(keys.norole),
  // a role's options around another command
  `command="/bin/sh",restrict ${pub(keys.shell)}`,
].join('\n') + '\n';
const ageKey = join(work, 'age.txt');
execFileSync('age-keygen', ['-o', ageKey], { stdio: 'ignore' });
const recipient = execFileSync('age-keygen', ['-y', ageKey], { encoding: 'utf8' }).trim();

// ---- the guest disk: a flat copy of the sample VM's newest snapshot -----------------------------
const sample = image('sample-vm');
const guestDisk = join(work, 'sample.raw');
execFileSync('qemu-img', ['convert', '-f', 'vmdk', '-O', 'raw', join(sample, 'sample-000002.vmdk'), guestDisk]);
const guestSha = await sha256File(guestDisk);
// The oracle for restored files: the ext4 partition (p1: 1 MiB .. 161 MiB) read by debugfs.
const p1 = join(work, 'p1.img');
execFileSync('dd', [`if=${guestDisk}`, `of=${p1}`, 'bs=1M', 'skip=1', 'count=160', 'status=none']);
function debugfsCat(path: string): Buffer {
  const out = join(work, `oracle-${path.replace(/\//g, '_')}`);
  execFileSync('debugfs', ['-R', `dump ${path} ${out}`, p1], { stdio: 'ignore' });
  return readFileSync(out);
}
const SOURCE_FILE = '/home/alice/docs/added-in-snapshot-2.bin';
const sourceBytes = debugfsCat(SOURCE_FILE);

// ---- boot --------------------------------------------------------------------------------------
/** free -m's used memory and the biggest processes' RSS, read in the guest through its agent. */
async function footprint(): Promise<string> {
  const free = await vm.qga.exec('/usr/bin/free', ['-m']);
  const ps = await vm.qga.exec('/bin/ps', ['-eo', 'rss=,args=', '--sort=-rss']);
  const used = /Mem:\s+(\d+)\s+(\d+)/.exec(free.stdout);
  const top = ps.stdout.trim().split('\n').slice(0, 5).map((l) => l.trim().replace(/^(\d+)\s+(\S+(?:\s+\S+)?).*$/, '$1 KiB $2')).join('; ');
  return `${used?.[2]} MiB used of ${used?.[1]} MiB (free -m); RSS: ${top}`;
}
let idleAfterBoot = '';
let jobdState = '';
let repoSshd: Sshd;
let vm: Appliance;
const repoDir = join(work, 'repo');
mkdirSync(repoDir);

t.before(async () => {
  repoSshd = await startSshd();
  const overlay = join(work, 'appliance.qcow2');
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', qcow2, overlay]);
  // up to 10 min: a Debian boot under TCG took 50-125 s on a shared, loaded 2-core machine
  vm = await boot({ disk: overlay, guestDisks: [guestDisk], dir: work, memoryMiB: 256, cpus: 1 }, 600_000);
  process.stderr.write(`# boot to SSH banner: ${(vm.bootToSshMs / 1000).toFixed(1)} s (qemu -accel tcg, 1 vCPU, 256 MiB)\n`);
  // The administrator's part, from the hypervisor: keys, the repository and its login, the VM.
  const q = vm.qga;
  await q.writeFile('/etc/snapferry/authorized_keys', authorizedKeys, '644');
  await q.writeFile('/etc/snapferry/repo.key', readFileSync(repoSshd.clientKey), '600');
  await q.writeFile('/etc/snapferry/known_hosts', `[10.0.2.2]:${repoSshd.port} ${readFileSync(repoSshd.knownHosts, 'utf8').trim().split(' ').slice(1).join(' ')}\n`, '644');
  await q.writeFile(
    '/etc/snapferry/config',
    [
      '[repository host]',
      `url = sftp://root@10.0.2.2:${repoSshd.port}${repoDir}`,
      `recipient = ${recipient}`,
      'ssh-key = /etc/snapferry/repo.key',
      'known-hosts = /etc/snapferry/known_hosts',
      '',
      '[vm sample]',
      'source = /dev/vdb',
      'repository = host',
      '',
    ].join('\n'),
    '644',
  );
  // Idle means the services are up: the job runner is enabled by the image and started at boot.
  for (let i = 0; i < 60; i++) {
    jobdState = (await q.exec('/usr/bin/systemctl', ['is-active', 'snapferry-jobd.service'])).stdout.trim();
    if (jobdState === 'active') break;
    await new Promise((r) => setTimeout(r, 1000));
  }
  idleAfterBoot = await footprint();
  process.stderr.write(`# idle after boot: ${idleAfterBoot}\n`);
  // The appliance's own host key, read from the hypervisor side: the host checks it from here on.
  const hostKey = (await q.exec('/bin/cat', ['/etc/ssh/ssh_host_ed25519_key.pub'])).stdout.trim().split(' ');
  writeFileSync(join(work, 'known_hosts'), `[127.0.0.1]:${vm.sshPort} ${hostKey[0]} ${hostKey[1]}\n`);
});

t.teardown(async () => {
  await vm?.stop();
  await repoSshd?.stop();
});

/** Plain OpenSSH to the appliance with one key: no agent, no config file, the host key checked. */
function sshArgs(key: string, extra: string[] = []): string[] {
  return [
    '-F', '/dev/null', '-i', key, '-p', String(vm.sshPort),
    '-o', 'IdentitiesOnly=yes', '-o', 'IdentityAgent=none', '-o', 'BatchMode=yes',
    '-o', `UserKnownHostsFile=${join(work, 'known_hosts')}`, '-o', 'StrictHostKeyChecking=yes',
    '-o', 'ConnectTimeout=60', ...extra,
  ];
}
function ssh(key: string, command: string[], opts: { extra?: string[]; input?: string | Buffer; user?: string; timeout?: number } = {}): { status: number; stdout: Buffer; stderr: string } {
  return run('ssh', [...sshArgs(key, opts.extra), `${opts.user ?? 'snapferry'}@127.0.0.1`, '--', ...command], { input: opts.input ?? '', timeout: opts.timeout });
}
const text = (r: { stdout: Buffer }): string => r.stdout.toString();

t.test('the image: qcow2 for KVM, a streamOptimized VMDK with its OVF for ESXi, within 1 GB', async (t) => {
  const info = (f: string): { format: string; 'virtual-size': number; 'actual-size': number; 'format-specific'?: { data?: { 'create-type'?: string } } } =>
    JSON.parse(execFileSync('qemu-img', ['info', '--output=json', f], { encoding: 'utf8' }));
  const q = info(qcow2);
  const vmdk = join(imageDir, 'snapferry-appliance.vmdk');
  const v = info(vmdk);
  t.equal(q.format, 'qcow2');
  t.equal(v.format, 'vmdk');
  t.equal(v['format-specific']?.data?.['create-type'], 'streamOptimized', 'the VMDK is streamOptimized (what an OVF import takes)');
  t.ok(q['actual-size'] <= 1e9 && v['actual-size'] <= 1e9, `both at most 1 GB on disk (qcow2 ${q['actual-size']}, vmdk ${v['actual-size']} bytes)`);
  t.equal(run('qemu-img', ['compare', '-q', '-f', 'vmdk', '-F', 'qcow2', vmdk, qcow2]).status, 0, 'qemu reads the VMDK as the same disk as the qcow2');
  const ins = run('node', [join(ROOT, 'bin', 'snapferry.js'), 'inspect', '--json', vmdk]);
  t.equal(ins.status, 0, `snapferry reads its own appliance's VMDK: ${ins.stderr}`);
  t.match(ins.stdout.toString(), /snapferry-root/, 'and finds the root filesystem on it');
  // What the shipped image holds, read from its VMDK by snapferry itself (nothing booted, nothing mounted).
  const lsImage = (path: string): string => run('node', [join(ROOT, 'bin', 'snapferry.js'), 'ls', vmdk, path]).stdout.toString();
  const etcSsh = lsImage('p2/etc/ssh') + lsImage('p2/etc/ssh/sshd_config.d');
  t.match(etcSsh, /10-snapferry\.conf/, 'the hardened sshd drop-in is in the image');
  t.notMatch(etcSsh, /00-provision/, 'the build\'s provisioning drop-in is not');
  t.notMatch(etcSsh, /ssh_host_/, 'no host key: each appliance makes its own at first boot');
  t.notMatch(lsImage('p2/root'), /\.ssh/, 'root has no authorized keys');
  t.match(lsImage('p2/etc/machine-id'), /\s0\s+\S+\s+\/etc\/machine-id/, 'an empty machine id: each appliance gets its own');
  const ovf = readFileSync(join(imageDir, 'snapferry-appliance.ovf'), 'utf8');
  t.match(ovf, /ovf:href="snapferry-appliance\.vmdk" ovf:size="(\d+)"/, 'the OVF references the VMDK');
  t.equal(Number(/ovf:size="(\d+)"/.exec(ovf)?.[1]), statSync(vmdk).size, 'with its exact size');
  t.match(ovf, /<rasd:ResourceType>3<\/rasd:ResourceType>\s*<rasd:VirtualQuantity>1</, '1 vCPU');
  t.match(ovf, /<rasd:VirtualQuantity>512<\/rasd:VirtualQuantity>/, '512 MB');
  t.match(ovf, /VmxNet3/, 'a vmxnet3 NIC');
  const mf = readFileSync(join(imageDir, 'snapferry-appliance.mf'), 'utf8');
  t.match(mf, new RegExp(`SHA256\\(snapferry-appliance\\.vmdk\\)= ${await sha256File(vmdk)}`), 'the manifest holds the VMDK\'s sha256');
});

t.test('inspect and ls the attached guest disk over ssh', async (t) => {
  const ins = ssh(keys.readonly, ['inspect', '--json', '/dev/vdb']);
  t.equal(ins.status, 0, `inspect: ${ins.stderr}`);
  const info = JSON.parse(text(ins)) as unknown;
  t.match(JSON.stringify(info), /guestroot|ext4/, 'inspect names the ext4 partition');
  t.match(JSON.stringify(info), /ntfs/i, 'and the NTFS one');
  const ls = ssh(keys.readonly, ['ls', '/dev/vdb', 'p1/home/alice/docs']);
  t.equal(ls.status, 0, `ls: ${ls.stderr}`);
  t.match(text(ls), /added-in-snapshot-2\.bin/, 'ls lists the newest snapshot\'s file');
  t.notMatch(text(ls), /report\.bin/, 'and not the file that snapshot deleted');
});

let jobId = '';
t.test('a read-only key cannot start a backup', async (t) => {
  const r = ssh(keys.readonly, ['backup', 'sample', '--json']);
  t.not(r.status, 0, 'refused');
  t.match(r.stdout.toString() + r.stderr, /E_AGENT_\w+/, 'with a typed error');
});

t.test('backup to the host\'s sshd through qemu\'s NAT, followed to completion', async (t) => {
  const q = ssh(keys.operator, ['backup', 'sample', '--json']);
  t.equal(q.status, 0, `backup queued: ${q.stderr}`);
  const m = /"(?:id|job)"\s*:\s*"([^"]+)"/.exec(text(q));
  t.ok(m, `the agent answers with the job id: ${text(q)}`);
  jobId = m?.[1] ?? '';
  const f = ssh(keys.readonly, ['job', jobId, '--follow'], { timeout: 15 * 60_000 });
  if (f.status !== 0) t.comment(`job --follow: ${f.stderr}\n${text(f).slice(-2000)}`);
  t.equal(f.status, 0, 'job --follow ends with the job\'s success');
  t.match(text(f), /"event":"end","state":"done"/, 'its log ends with the job done');
  const st = ssh(keys.readonly, ['job', jobId, '--json']);
  t.match(text(st), /"done"/, 'the job is done');
  const archives = readdirSync(join(repoDir, 'archives'));
  t.ok(archives.some((a) => a.endsWith('.tar.zst.age')), 'an archive is in the host-side repository');
  t.ok(archives.some((a) => a.endsWith('.manifest.json')), 'with its manifest');
});

t.test('the backed-up file restored on the host with stock age | zstd | tar equals the source', async (t) => {
  const archive = readdirSync(join(repoDir, 'archives')).find((a) => a.endsWith('.tar.zst.age'));
  t.ok(archive, 'an archive');
  const out = join(work, 'stock');
  mkdirSync(out);
  execFileSync('sh', ['-c', `age -d -i "$1" "$2" | zstd -d | tar -C "$3" -xf -`, 'sh', ageKey, join(repoDir, 'archives', archive!), out]);
  const found = execFileSync('find', [out, '-path', `*${SOURCE_FILE}`], { encoding: 'utf8' }).trim().split('\n')[0]!;
  t.ok(found, `the file is in the archive: ${found}`);
  t.ok(readFileSync(found).equals(sourceBytes), 'byte-identical to the source (debugfs of the guest disk)');
});

t.test('restore through the agent: the identity on stdin, the file on stdout', async (t) => {
  const r = ssh(keys.restore, ['restore', '--repo', 'host', 'latest', `vdb/p1${SOURCE_FILE}`, '--identity', '-', '--target', '-'], { input: readFileSync(ageKey) });
  if (r.status !== 0) t.comment(r.stderr);
  t.equal(r.status, 0, `restore: ${r.stderr}`);
  t.ok(r.stdout.equals(sourceBytes), 'the restored bytes equal the source');
  const leftover = await vm.qga.exec('/usr/bin/grep', ['-rl', 'AGE-SECRET-KEY', '/etc', '/var/lib/snapferry', '/tmp', '/home']);
  t.equal(leftover.stdout, '', 'the identity was not stored on the appliance');
});

t.test('refusals', async (t) => {
  const denied = /Permission denied \(publickey\)/;
  const r1 = ssh(keys.norole, ['help']);
  t.equal(r1.status, 255, 'a key without a role cannot log in');
  t.match(r1.stderr, denied);
  const r2 = ssh(keys.shell, ['id']);
  t.equal(r2.status, 255, 'a key whose forced command is not the agent cannot log in');
  t.match(r2.stderr, denied);
  const r3 = ssh(keys.stranger, ['help']);
  t.equal(r3.status, 255, 'an unknown key cannot log in');
  const r4 = ssh(keys.operator, ['help'], { user: 'root' });
  t.equal(r4.status, 255, 'root cannot log in, even with an authorized key');
  const provision = join(CACHE, 'appliance', 'provision_ed25519');
  const r5 = ssh(provision, ['id'], { user: 'root' });
  t.equal(r5.status, 255, 'the key appliance/build gave Packer no longer opens root');
  t.match(r5.stderr, denied);

  const pw = run('ssh', [...sshArgs(keys.stranger, ['-o', 'PreferredAuthentications=password,keyboard-interactive', '-o', 'PubkeyAuthentication=no']), 'snapferry@127.0.0.1', 'help']);
  t.equal(pw.status, 255, 'no password login');
  t.match(pw.stderr, denied, 'the server offers public keys only');

  const outside = ssh(keys.operator, ['rm', '-rf', '/']);
  t.not(outside.status, 0, 'a command outside the list is refused');
  t.match(outside.stdout.toString() + outside.stderr, /E_AGENT_\w+/);
  // A few of each kind (the agent's own tests fuzz its splitter against /bin/sh): each one costs two
  // node start-ups under emulation.
  for (const cmd of ['inspect /dev/vdb; id', 'inspect $(id)', 'inspect /dev/vdb | id', 'inspect /dev/vdb > /tmp/x']) {
    const r = run('ssh', [...sshArgs(keys.operator), 'snapferry@127.0.0.1', cmd]);
    t.not(r.status, 0, `metacharacters refused: ${cmd}`);
    t.match(r.stdout.toString() + r.stderr, /E_AGENT_\w+/, `by the agent, with a typed error: ${cmd}`);
    t.notMatch(r.stdout.toString(), /uid=\d+/, `no shell ran: ${cmd}`);
  }
  const shc = run('ssh', [...sshArgs(keys.operator), 'snapferry@127.0.0.1', "sh -c 'id'"]);
  t.not(shc.status, 0, "sh -c '...' is refused");
  t.match(shc.stdout.toString() + shc.stderr, /E_AGENT_\w+/, 'by the agent\'s allow-list');
  t.notMatch(shc.stdout.toString(), /uid=\d+/);
  const x = await vm.qga.exec('/usr/bin/test', ['-e', '/tmp/x']);
  t.not(x.code, 0, 'no redirection happened');

  // A PTY request: sshd refuses it (PermitTTY no, restrict).
  const pty = ssh(keys.readonly, ['help'], { extra: ['-tt'] });
  t.match(pty.stderr, /PTY allocation request failed/, 'a PTY request is refused');
  // The server still runs the (allowed) command without a terminal; the client, told to force one,
  // gives up and shows nothing. That is why Ansible's raw module needs ansible_ssh_use_tty=false.
  t.equal(pty.status, 255, 'ssh -tt gives up when its PTY is refused');
  t.equal(pty.stdout.length, 0, 'and no terminal session was opened');

  // -L: the session comes up but every forwarded channel is refused by sshd.
  const lport = await freePort();
  const fwd = spawn('ssh', [...sshArgs(keys.operator, ['-N', '-L', `127.0.0.1:${lport}:127.0.0.1:22`]), 'snapferry@127.0.0.1'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let fwdErr = '';
  fwd.stderr.on('data', (d: Buffer) => (fwdErr += d.toString()));
  let banner = '';
  for (let i = 0; i < 60 && !/open failed/.test(fwdErr); i++) {
    await new Promise((r) => setTimeout(r, 1000));
    banner += await new Promise<string>((resolve) => {
      const c = connect(lport, '127.0.0.1');
      let got = '';
      c.on('data', (d: Buffer) => (got += d.toString()));
      c.on('error', () => resolve(got));
      c.on('close', () => resolve(got));
      setTimeout(() => c.destroy(), 3000);
    });
  }
  fwd.kill();
  t.match(fwdErr, /administratively prohibited|open failed/, '-L forwarding is refused by the server');
  t.notMatch(banner, /SSH-2\.0/, 'nothing came through the forward');
  const rfwd = ssh(keys.operator, ['help'], { extra: ['-o', 'ExitOnForwardFailure=yes', '-R', '127.0.0.1:0:127.0.0.1:22'] });
  t.equal(rfwd.status, 255, '-R forwarding is refused');
  t.match(rfwd.stderr, /remote port forwarding failed|forwarding failed/i);
});

t.test('the attached disk is read-only in the guest and unchanged', async (t) => {
  const ro = await vm.qga.exec('/usr/sbin/blockdev', ['--getro', '/dev/vdb']);
  t.equal(ro.stdout.trim(), '1', 'the guest disk is read-only in the block layer');
  const mounts = await vm.qga.exec('/bin/cat', ['/proc/self/mountinfo']);
  t.notMatch(mounts.stdout, /\/dev\/vdb|vdb\d/, 'nothing of it is mounted');
  const dm = await vm.qga.exec('/bin/ls', ['/sys/class/block']);
  t.notMatch(dm.stdout, /\bdm-|\bmd\d/, 'no device-mapper or md device was assembled from it');
  t.equal(await sha256File(guestDisk), guestSha, 'the guest disk\'s sha256 is unchanged after everything');
});

t.test('footprint', async (t) => {
  t.equal(jobdState, 'active', 'the job runner (appliance/systemd) runs from boot');
  t.comment(`after boot: ${idleAfterBoot}`);
  const after = await footprint();
  t.comment(`after the tests: ${after}`);
  process.stderr.write(`# after the tests: ${after}\n`);
  const used = Number(/^(\d+) MiB used/.exec(idleAfterBoot)?.[1]);
  t.ok(used > 0 && used < 256, `the idle appliance fits in 256 MiB (${used} MiB used after boot)`);
});
