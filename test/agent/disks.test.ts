/**
 * snapferry disks with real block devices (root: loop devices). The sample VM's disk, exported raw,
 * is attached read-write as a loop device (so a write would land), listed under strace: the
 * partition table found must be sfdisk's, every open of a device must be O_RDONLY, and the image's
 * sha256 must not change. The disk holding the root filesystem is left out (a whole-disk ext4 loop
 * device mounted read-only stands in for the appliance's root), and so are loop devices unless --all.
 */
import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { image, requireTool, ROOT, sha256File } from '../helpers/images.js';
import { snapferry } from '../helpers/cli.js';
import { listBlockDevices } from '../../src/agent/disks.js';
import { checkDiskArg } from '../../src/agent/sources.js';
import type { SnapferryError } from '../../src/util/errors.js';

requireTool('losetup', 'strace', 'sfdisk', 'mkfs.ext4', 'mount', 'umount');
if (process.getuid?.() !== 0) throw new Error('disks.test.ts needs root (loop devices); it does not skip');

const vm = image('sample-vm');
const work = mkdtempSync(join(tmpdir(), 'sf-disks-'));
const raw = join(work, 'sample.raw');
t.equal(snapferry(['export', join(vm, 'sample-000002.vmdk'), raw]).status, 0, 'the sample disk exported raw');
const loops: string[] = [];
const mounts: string[] = [];
function attach(file: string): string {
  const dev = execFileSync('losetup', ['-f', '--show', file], { encoding: 'utf8' }).trim();
  loops.push(dev);
  return dev;
}
t.teardown(() => {
  for (const m of mounts) spawnSync('umount', [m]);
  for (const l of loops) spawnSync('losetup', ['-d', l]);
});

interface Row {
  name: string;
  path: string;
  size: number;
  plumbing: boolean;
  volumes?: { scheme: string; volumes: { name: string; start: number; size: number; filesystem: { kind: string } }[] };
  error?: { code: string };
}

t.test('an attached disk: its volumes as sfdisk sees them, opened O_RDONLY only, unchanged', async (t) => {
  const dev = attach(raw); // read-write: a write by us would reach the file
  const before = await sha256File(raw);
  const trace = join(work, 'strace.log');
  const r = spawnSync('strace', ['-f', '-qq', '-e', 'trace=open,openat,openat2', '-o', trace, process.execPath, join(ROOT, 'bin', 'snapferry.js'), 'disks', '--all', '--json'], { encoding: 'utf8', maxBuffer: 64 << 20 });
  t.equal(r.status, 0, `disks --all --json exits 0 ${r.stderr}`);
  const rows = (JSON.parse(r.stdout) as { disks: Row[] }).disks;
  const row = rows.find((d) => d.path === dev);
  t.ok(row, `${dev} is listed`);
  t.equal(row!.size, 256 * 1024 * 1024, 'with its size');
  t.equal(row!.plumbing, true, 'marked as plumbing (a loop device)');
  const sf = JSON.parse(execFileSync('sfdisk', ['--json', dev], { encoding: 'utf8' })) as { partitiontable: { label: string; partitions: { start: number; size: number }[] } };
  t.equal(row!.volumes!.scheme, sf.partitiontable.label, `the table is ${sf.partitiontable.label}, as sfdisk says`);
  t.same(
    row!.volumes!.volumes.map((v) => [v.start, v.size]),
    sf.partitiontable.partitions.map((p) => [p.start * 512, p.size * 512]),
    "every partition's start and size are sfdisk's",
  );
  t.same(row!.volumes!.volumes.map((v) => v.filesystem.kind), ['ext4', 'ntfs'], 'the filesystems in them');
  const opens = readFileSync(trace, 'utf8').split('\n').filter((l) => l.includes(`"${dev}"`));
  t.ok(opens.length >= 1, `strace saw ${opens.length} open(s) of ${dev}`);
  for (const l of opens) t.match(l, /O_RDONLY/, `O_RDONLY: ${l.slice(0, 140)}`);
  const writers = readFileSync(trace, 'utf8').split('\n').filter((l) => /"\/dev\/[^"]+"/.test(l) && /O_WRONLY|O_RDWR/.test(l) && !/"\/dev\/(null|tty|pts\/\d+)"/.test(l));
  t.same(writers, [], 'no device is ever opened for writing');
  t.equal(await sha256File(raw), before, "the disk's sha256 is unchanged");
  const plain = snapferry(['disks', '--json']);
  t.equal(plain.status, 0);
  t.notOk((JSON.parse(plain.stdout) as { disks: Row[] }).disks.some((d) => d.path === dev), 'without --all, loop devices are left out');
  const text = snapferry(['disks', '--all']);
  t.match(text.stdout, new RegExp(`${dev}\\s+256 MiB`), 'the text listing names it with its size');
});

t.test("the disk holding the root filesystem is left out", async (t) => {
  const img = join(work, 'root.ext4');
  writeFileSync(img, '');
  truncateSync(img, 16 * 1024 * 1024);
  execFileSync('mkfs.ext4', ['-q', '-F', img]);
  const dev = attach(img);
  const mnt = join(work, 'mnt');
  mkdirSync(mnt);
  execFileSync('mount', ['-o', 'ro', dev, mnt]);
  mounts.push(mnt);
  const name = basename(dev);
  t.ok(listBlockDevices({ all: true }).some((d) => d.name === name), `${name} is listed while / is elsewhere`);
  t.notOk(listBlockDevices({ all: true, rootPath: mnt }).some((d) => d.name === name), `${name} is left out when it holds the root filesystem`);
  let code: string | undefined;
  try {
    checkDiskArg(dev, { datastores: [], rootPath: mnt });
  } catch (e) {
    code = (e as SnapferryError).code;
  }
  t.equal(code, 'E_AGENT_SOURCE', `and naming ${dev} as a DISK over SSH is refused then`);
  t.doesNotThrow(() => checkDiskArg(dev, { datastores: [] }), 'while an attached disk that is not the root disk is accepted');
});

t.test('--help teaches, with examples', async (t) => {
  const r = snapferry(['disks', '--help']);
  t.equal(r.status, 0);
  t.match(r.stdout, /Examples:/);
  t.match(r.stdout, /O_RDONLY/);
});
