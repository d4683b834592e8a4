/**
 * mount --repo: an image backup on a real sshd, mounted with FUSE as the VM's tree, compared entry
 * for entry (lstat with ns times, readlink, sha256, getfattr) with the kernel's ext4 and ntfs-3g
 * mounting qemu-img's raw conversion of the source. Needs root, /dev/fuse, sshd: without them it
 * fails, it never skips.
 */
import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { image, qemuRaw, requireTool } from '../helpers/images.js';
import { snapferry } from '../helpers/cli.js';
import { startSshd } from '../helpers/sshd.js';
import { loopDevice, mountLoop, mountNtfs3g, partitions } from '../helpers/mounts.js';
import { diffTrees, seeTree } from '../helpers/treediff.js';
import { mountAt } from '../../src/mount/mountinfo.js';

requireTool('age-keygen', 'qemu-img', 'sfdisk', 'mount', 'umount', 'losetup', 'getfattr', 'ntfs-3g');
if (process.getuid?.() !== 0) throw new Error('mount --repo needs root (FUSE and loop mounts); this test does not skip');
if (!existsSync('/dev/fuse')) throw new Error('mount --repo needs /dev/fuse; this test does not skip');

const vm = image('sample-vm');
const vmx = join(vm, 'sample.vmx');
const top = join(vm, 'sample-000002.vmdk');
const work = mkdtempSync(join(tmpdir(), 'sf-image-mount-'));
const key = join(work, 'key.txt');
execFileSync('age-keygen', ['-o', key], { stdio: 'ignore' });
const recipient = execFileSync('age-keygen', ['-y', key], { encoding: 'utf8' }).trim();

t.test('mount --repo of an image backup over SFTP equals the kernel and ntfs-3g on qemu-img raw of the source', async (t) => {
  const sshd = await startSshd();
  t.teardown(() => sshd.stop());
  const url = `sftp://root@127.0.0.1:${sshd.port}${join(sshd.dir, 'repo')}`;
  const ssh = ['--ssh-key', sshd.clientKey, '--known-hosts', sshd.knownHosts];
  const b = snapferry(['backup', '--image', '--json', vmx, '--repo', url, ...ssh, '--recipient', recipient, '--state-dir', join(work, 'state')]);
  t.equal(b.status, 0, `image backup over SFTP: ${b.stderr}`);
  const id = (JSON.parse(b.stdout.trim().split('\n').pop()!) as { id: string }).id;

  const dir = mkdtempSync(join(tmpdir(), 'sf-mnt-'));
  const m = snapferry(['mount', '--json', '--repo', url, ...ssh, '--identity', key, '--log', join(work, 'mount.log'), id, dir]);
  t.equal(m.status, 0, `mount --repo: ${m.stderr}${m.stdout}`);
  t.teardown(() => {
    if (mountAt(dir)) snapferry(['umount', dir]);
    if (mountAt(dir)) spawnSync('umount', ['-l', dir]);
    rmdirSync(dir);
  });
  t.same(readdirSync(dir), ['scsi0:0'], 'the disk, named as in the live tree');
  const info = JSON.parse(readFileSync(join(dir, 'scsi0:0', 'info'), 'utf8')) as { chain: { path: string; kind: string }[] };
  t.same(info.chain.map((c) => c.kind), ['image-full'], 'info shows the archive the disk is read from');

  const raw = qemuRaw(top);
  const [p1, p2] = partitions(raw);
  const ext = mountLoop(t, raw, `ro,noload,offset=${p1!.start},sizelimit=${p1!.size}`);
  const ntfs = mountNtfs3g(t, loopDevice(t, raw, p2!.start, p2!.size));
  for (const [vol, oracle, name] of [
    ['p1', ext, 'the kernel'],
    ['p2', ntfs, 'ntfs-3g'],
  ] as const) {
    const ours = await seeTree(join(dir, 'scsi0:0', vol), { dropXattrs: ['user.snapferry.info'] });
    const theirs = await seeTree(oracle);
    t.same(diffTrees(ours, theirs), [], `${vol}: ${ours.entries.size} entries equal ${name}'s (type, mode, owner, size, links, ns times, sha256, xattrs)`);
    t.ok(ours.entries.size > (vol === 'p1' ? 40 : 2), `${vol} has its files (${ours.entries.size})`);
  }
  const u = snapferry(['umount', dir]);
  t.equal(u.status, 0, 'umount');
  t.notOk(mountAt(dir), 'unmounted');
});

t.test('mount --repo refuses an identity on stdin in the background (the serving process could not read it)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sf-mnt-'));
  t.teardown(() => rmdirSync(dir));
  const r = snapferry(['mount', '--json', '--repo', join(work, 'nothing'), '--identity', '-', 'latest', dir]);
  t.equal(r.status, 2, 'usage error');
  t.match(r.stdout, /E_USAGE/, 'E_USAGE');
});
