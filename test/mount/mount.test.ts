/**
 * `snapferry mount`, really mounted (FUSE, through the built CLI), compared entry for entry with
 * real mounts of the same bytes: the kernel's ext4 and ntfs-3g, each reading qemu-img's raw
 * conversion of the chain (or the image itself). Also: read-only for real (EROFS, sources
 * byte-identical), a damaged file answers EIO and is logged with its code and path, a mount left
 * by `kill -9` is cleared by the next mount, umount, unreadable volumes listed with their reason.
 * Needs root and /dev/fuse (snapferry speaks the kernel protocol itself): without them it fails, it never skips.
 */
import t, { type Test } from 'tap';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { closeSync, copyFileSync, existsSync, mkdtempSync, openSync, readFileSync, readdirSync, rmdirSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT, fingerprint, image, qemuRaw, requireTool } from '../helpers/images.js';
import { snapferry } from '../helpers/cli.js';
import { loopDevice, mountLoop, mountNtfs3g, partitions } from '../helpers/mounts.js';
import { diffTrees, seeTree } from '../helpers/treediff.js';
import { mountAt } from '../../src/mount/mountinfo.js';

requireTool('qemu-img', 'sfdisk', 'mount', 'umount', 'losetup', 'getfattr', 'ntfs-3g', 'fusermount');
if (process.getuid?.() !== 0) throw new Error('mount tests need root (FUSE and loop mounts); this test does not skip');
if (!existsSync('/dev/fuse')) throw new Error('mount tests need /dev/fuse; this test does not skip');

const vm = image('sample-vm');
const top = join(vm, 'sample-000002.vmdk');
const vmx = join(vm, 'sample.vmx');
const ntfsImg = join(image('ntfs'), 'ntfs-4k.img');
const extImg = join(image('ext'), 'ext4.img');
const mbrImg = join(image('volumes'), 'mbr.raw');

interface Mounted {
  dir: string;
  log: string;
  pid: number;
}

/** snapferry mount (background, the default) on a fresh directory; unmounted in teardown. */
function mountSnapferry(t: Test, sources: string[], extra: string[] = []): Mounted {
  const dir = mkdtempSync(join(tmpdir(), 'sf-mnt-'));
  const log = join(mkdtempSync(join(tmpdir(), 'sf-log-')), 'mount.log');
  const r = snapferry(['mount', '--json', '--log', log, ...extra, ...sources, dir]);
  if (r.status !== 0) throw new Error(`snapferry mount failed (${r.status}): ${r.stderr}${r.stdout}`);
  const info = JSON.parse(r.stdout) as { pid: number; mountPoint: string };
  t.teardown(() => {
    if (mountAt(dir)) snapferry(['umount', dir]);
    if (mountAt(dir)) spawnSync('umount', ['-l', dir]);
    rmdirSync(dir);
  });
  return { dir, log, pid: info.pid };
}

const sourcesBefore = fingerprint([top, join(vm, 'sample-000001.vmdk'), join(vm, 'sample.vmdk'), vmx, ntfsImg, extImg]);

t.test('the sample VM (GPT, ext4 + NTFS, 3-deep delta chain) equals the kernel and ntfs-3g on qemu-img raw, entry for entry', async (t) => {
  const m = mountSnapferry(t, [vmx]);
  t.same(readdirSync(m.dir), ['scsi0:0'], 'one directory per disk, named by its .vmx id');
  t.same(readdirSync(join(m.dir, 'scsi0:0')).sort(), ['info', 'p1', 'p2'], 'the disk directory: its info file and its volumes');
  const info = JSON.parse(readFileSync(join(m.dir, 'scsi0:0', 'info'), 'utf8')) as { chain: unknown[]; volumes: { volume: string; filesystem?: string }[] };
  t.equal(info.chain.length, 3, 'info shows the 3-file chain');
  t.same(info.volumes.map((v) => `${v.volume}:${v.filesystem}`), ['p1:ext4', 'p2:ntfs'], 'info names each volume and its filesystem');

  const raw = qemuRaw(top);
  const [p1, p2] = partitions(raw);
  const ext = mountLoop(t, raw, `ro,noload,offset=${p1!.start},sizelimit=${p1!.size}`);
  const ntfs = mountNtfs3g(t, loopDevice(t, raw, p2!.start, p2!.size));
  for (const [vol, oracle, name] of [
    ['p1', ext, 'the kernel'],
    ['p2', ntfs, 'ntfs-3g'],
  ] as const) {
    const ours = await seeTree(join(m.dir, 'scsi0:0', vol), { dropXattrs: ['user.snapferry.info'] });
    const theirs = await seeTree(oracle);
    const d = diffTrees(ours, theirs);
    t.same(d, [], `${vol}: ${ours.entries.size} entries equal ${name}'s (type, mode, owner, size, links, mtime/ctime in ns, sha256, xattrs)`);
    t.ok(ours.entries.size > (vol === 'p1' ? 40 : 2), `${vol} has its files (${ours.entries.size})`);
  }
});

t.test('feature-rich NTFS and ext4 images, mounted together, equal ntfs-3g and the kernel', async (t) => {
  const m = mountSnapferry(t, [ntfsImg, extImg]);
  t.same(readdirSync(m.dir).sort(), ['ext4', 'ntfs-4k'], 'disks named after their files');

  // NTFS: ntfs-3g without its plugin shows the WOF stub as a link to "unsupported reparse tag"; we
  // show the file and answer EIO on reading it (it has no WofCompressedData stream): checked below.
  const wof = '/links/wof-stub.bin';
  const ours = await seeTree(join(m.dir, 'ntfs-4k', 'whole'), { dropXattrs: ['user.snapferry.info'], skip: (p) => p === wof });
  const theirs = await seeTree(mountNtfs3g(t, ntfsImg), { skip: (p) => p === wof });
  t.same(diffTrees(ours, theirs), [], `NTFS: ${ours.entries.size} entries equal ntfs-3g's (hard links, symlinks, junctions, ADS as xattrs, compressed, sparse)`);
  t.ok([...ours.entries.values()].some((e) => e.nlink > 1 && e.type === 'file'), 'the NTFS image has hard links (same inode number checked)');

  const ours2 = await seeTree(join(m.dir, 'ext4', 'whole'), { dropXattrs: ['user.snapferry.info'] });
  const theirs2 = await seeTree(mountLoop(t, extImg, 'ro,noload'));
  t.same(diffTrees(ours2, theirs2), [], `ext4: ${ours2.entries.size} entries equal the kernel's (devices, fifos, symlinks of all lengths, xattrs, sparse, htree, times in ns)`);
  const old = [...theirs2.entries].filter(([, e]) => BigInt(e.mtimeNs) < 0n).map(([rel]) => rel);
  t.ok(old.length > 0, `times before 1970 are among those compared (${old.join(', ')})`);
  t.ok(theirs2.nonUtf8.length > 0 && ours2.nonUtf8.length === theirs2.nonUtf8.length, `names that are not UTF-8 are compared byte for byte (${theirs2.nonUtf8.join(', ')})`);

  const st = statSync(join(m.dir, 'ntfs-4k', 'whole', wof.slice(1)));
  t.ok(st.isFile(), 'the WOF stub (a reparse point without its compressed stream) is listed as a file');
});

t.test('seekdir to a telldir position lists exactly the entries after it (no repeated . and ..)', async (t) => {
  const m = mountSnapferry(t, [ntfsImg, extImg]);
  // perl's telldir/seekdir are glibc's: a seek makes the kernel ask for that offset, which restarts
  // our listing of the directory handle
  const script = 'opendir(D, $ARGV[0]) or die; my (@all, @pos); while (defined(my $e = readdir(D))) { push @pos, telldir(D); push @all, $e } for my $k (0, 1, 2, 5) { seekdir(D, $pos[$k]); my @rest; while (defined(my $e = readdir(D))) { push @rest, $e } print join("/", @rest), "\\n" } print join("/", @all), "\\n"';
  for (const dir of [join(m.dir, 'ntfs-4k', 'whole'), join(m.dir, 'ext4', 'whole')]) {
    const lines = execFileSync('perl', ['-e', script, dir], { encoding: 'utf8' }).trim().split('\n');
    const all = lines.pop()!.split('/');
    t.ok(all.length > 8 && all[0] === '.' && all[1] === '..', `${dir}: ${all.length} entries, '.' and '..' first`);
    [0, 1, 2, 5].forEach((k, i) => t.same(lines[i]!.split('/'), all.slice(k + 1), `${dir}: after a seek past entry ${k}, the rest of the listing`));
  }
});

t.test('a damaged file answers EIO, is logged with its code and path, and the rest stays readable', async (t) => {
  // A copy of ext4.img whose /hello.txt (inode 22: block group 0, inode table block 42, offset
  // 0x500, as debugfs's imap says) has its extent header's magic zeroed.
  const imap = execFileSync('debugfs', ['-R', 'imap /hello.txt', extImg], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  const loc = /located at block (\d+), offset 0x([0-9a-f]+)/.exec(imap);
  if (!loc) throw new Error(`debugfs imap: ${imap}`);
  const copy = join(mkdtempSync(join(tmpdir(), 'sf-damaged-')), 'damaged.img');
  copyFileSync(extImg, copy);
  const fd = openSync(copy, 'r+');
  writeSync(fd, Buffer.alloc(2), 0, 2, Number(loc[1]) * 4096 + parseInt(loc[2]!, 16) + 0x28); // i_block: ext4_extent_header.eh_magic
  closeSync(fd);
  const m = mountSnapferry(t, [copy]);
  const root = join(m.dir, 'damaged', 'whole');
  const r = spawnSync('cat', [join(root, 'hello.txt')], { encoding: 'utf8' });
  t.not(r.status, 0, 'reading the damaged file fails');
  t.match(r.stderr, /Input\/output error/, 'with EIO');
  const log = readFileSync(m.log, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as { level: string; path?: string; code?: string });
  const hit = log.find((l) => l.level === 'error' && l.path === '/damaged/whole/hello.txt');
  t.ok(hit, 'the error is logged with its path');
  t.match(hit?.code ?? '', /^E_EXT/, `and its code (${hit?.code})`);
  t.ok(readdirSync(root).includes('a'), 'the rest of the tree stays readable');
  const want = execFileSync('debugfs', ['-R', 'cat /a/hard3', copy], { stdio: ['ignore', 'pipe', 'ignore'], maxBuffer: 1 << 24 });
  t.ok(want.length > 0 && readFileSync(join(root, 'a', 'hard3')).equals(want), 'another file reads as debugfs reads it');
});

t.test('read-only for real: writes answer EROFS, the sources stay byte-identical', async (t) => {
  const m = mountSnapferry(t, [vmx]);
  const p1 = join(m.dir, 'scsi0:0', 'p1');
  const attempts: [string, string[]][] = [
    ['touch', [join(p1, 'new-file')]],
    ['mkdir', [join(p1, 'new-dir')]],
    ['sh', ['-c', `echo x >> '${join(p1, 'etc', 'hostname')}'`]],
    ['truncate', ['-s', '0', join(p1, 'etc', 'hostname')]],
    ['chmod', ['777', join(p1, 'etc', 'hostname')]],
    ['rm', ['-f', join(p1, 'etc', 'hostname')]],
    ['mv', [join(p1, 'etc', 'hostname'), join(p1, 'etc', 'h2')]],
    ['ln', ['-s', 'x', join(p1, 'etc', 'link')]],
    ['setfattr', ['-n', 'user.x', '-v', '1', join(p1, 'etc', 'hostname')]],
  ];
  for (const [cmd, args] of attempts) {
    const r = spawnSync(cmd, args, { encoding: 'utf8' });
    t.not(r.status, 0, `${cmd} fails`);
    t.match(r.stderr, /Read-only file system/, `${cmd}: EROFS`);
  }
  t.match(readFileSync('/proc/self/mountinfo', 'utf8').split('\n').find((l) => l.includes(` ${m.dir} `)) ?? '', / ro,/, 'the kernel has the mount as ro');
  t.same(await fingerprint([top, join(vm, 'sample-000001.vmdk'), join(vm, 'sample.vmdk'), vmx, ntfsImg, extImg]), await sourcesBefore, 'every source is byte-identical');
});

t.test('volumes without a readable filesystem are listed with the reason', async (t) => {
  const m = mountSnapferry(t, [mbrImg]);
  const disk = join(m.dir, 'mbr');
  const info = JSON.parse(readFileSync(join(disk, 'info'), 'utf8')) as { volumes: { volume: string; detected: string; filesystem?: string; error?: { code: string; message: string } }[] };
  const names = readdirSync(disk).filter((n) => n !== 'info').sort();
  t.same(names, info.volumes.map((v) => v.volume).sort(), 'every volume is a directory');
  const unreadable = info.volumes.filter((v) => v.error);
  t.ok(unreadable.some((v) => v.detected === 'swap') && unreadable.some((v) => v.detected === 'fat32'), 'swap and FAT are among the unreadable');
  for (const v of unreadable) {
    t.same(readdirSync(join(disk, v.volume)), [], `${v.volume} (${v.detected}) is an empty directory`);
    t.match(v.error!.message, /snapferry reads files on/, `${v.volume}: the reason`);
    const x = execFileSync('getfattr', ['--only-values', '-n', 'user.snapferry.info', join(disk, v.volume)], { encoding: 'utf8' });
    t.match(x, new RegExp(v.error!.code), `${v.volume}: the reason is in its xattr too`);
  }
  t.ok(info.volumes.some((v) => v.filesystem === 'ext2') && readdirSync(join(disk, info.volumes.find((v) => v.filesystem === 'ext2')!.volume)).includes('lost+found'), 'readable volumes beside them are mounted');
});

t.test('kill -9 leaves a stale mount that the next mount clears; umount and errors', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sf-stale-'));
  t.teardown(() => {
    if (mountAt(dir)) spawnSync('umount', ['-l', dir]);
    rmdirSync(dir);
  });
  const first = snapferry(['mount', '--json', ntfsImg, dir]);
  t.equal(first.status, 0, `first mount: ${first.stderr}`);
  const pid = (JSON.parse(first.stdout) as { pid: number }).pid;
  const busy = snapferry(['mount', '--json', ntfsImg, dir]);
  t.equal(busy.status, 1, 'a second mount on a live mount fails');
  t.match(busy.stdout, /E_MOUNT_BUSY/, 'E_MOUNT_BUSY');
  process.kill(pid, 'SIGKILL');
  for (let i = 0; i < 100 && existsSync(`/proc/${pid}`); i++) await new Promise((r) => setTimeout(r, 50));
  const stale = spawnSync('ls', [dir], { encoding: 'utf8' });
  t.match(stale.stderr, /Transport endpoint is not connected/, 'the killed mount is stale');
  const again = snapferry(['mount', ntfsImg, dir]);
  t.equal(again.status, 0, `mount on the stale path works: ${again.stderr}`);
  t.match(again.stderr, /cleared a stale/, 'and says it cleared the stale mount');
  t.ok(readdirSync(join(dir, 'ntfs-4k', 'whole')).length > 3, 'the new mount serves files');
  const u = snapferry(['umount', dir]);
  t.equal(u.status, 0, `umount: ${u.stderr}`);
  t.notOk(mountAt(dir), 'unmounted');
  const u2 = snapferry(['umount', '--json', dir]);
  t.equal(u2.status, 3, 'umount of what is not mounted: exit 3');
  t.match(u2.stdout, /E_NOT_MOUNTED/, 'E_NOT_MOUNTED');
  const missing = snapferry(['mount', '--json', ntfsImg, join(dir, 'nope')]);
  t.equal(missing.status, 3, 'a missing mount point: exit 3');
  t.match(missing.stdout, /E_MOUNT_POINT/, 'E_MOUNT_POINT');
  const bad = snapferry(['mount', '--json', join(dir, 'no-such.vmdk'), dir]);
  t.not(bad.status, 0, 'a missing source fails the mount');
  t.notOk(mountAt(dir), 'and leaves nothing mounted');
});

t.test('--foreground serves until SIGTERM, then unmounts cleanly', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sf-fg-'));
  t.teardown(() => {
    if (mountAt(dir)) spawnSync('umount', ['-l', dir]);
    rmdirSync(dir);
  });
  const child = spawn('node', [join(ROOT, 'bin', 'snapferry.js'), 'mount', '--foreground', '--json', extImg, dir], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  for (let i = 0; i < 600 && !out.includes('\n'); i++) await new Promise((r) => setTimeout(r, 50));
  t.match(out, /"mountPoint"/, 'it reports the mount on stdout');
  t.ok(mountAt(dir), 'mounted');
  t.ok(readdirSync(join(dir, 'ext4', 'whole')).includes('lost+found'), 'serving');
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  child.kill('SIGTERM');
  t.equal(await exited, 0, 'exits 0 on SIGTERM');
  t.notOk(mountAt(dir), 'and has unmounted');
});

t.test('8 parallel readers of random ranges agree with the oracle byte for byte', async (t) => {
  const seconds = Number(process.env.SNAPFERRY_READERS_SECONDS ?? 60);
  const m = mountSnapferry(t, [vmx, ntfsImg, extImg]);
  const raw = qemuRaw(top);
  const [p1, p2] = partitions(raw);
  const pairs: { ours: string; oracle: string }[] = [];
  const ext = mountLoop(t, raw, `ro,noload,offset=${p1!.start},sizelimit=${p1!.size}`);
  const ntfs = mountNtfs3g(t, loopDevice(t, raw, p2!.start, p2!.size));
  const extBig = mountLoop(t, extImg, 'ro,noload');
  const ntfsBig = mountNtfs3g(t, ntfsImg);
  for (const [ours, oracle] of [
    [join(m.dir, 'scsi0:0', 'p1'), ext],
    [join(m.dir, 'scsi0:0', 'p2'), ntfs],
    [join(m.dir, 'ext4', 'whole'), extBig],
    [join(m.dir, 'ntfs-4k', 'whole'), ntfsBig],
  ] as const) {
    const list = execFileSync('find', [oracle, '-type', 'f', '-size', '+0', '!', '-name', 'wof-stub.bin'], { encoding: 'utf8' }).split('\n').filter(Boolean);
    for (const f of list) pairs.push({ ours: ours + f.slice(oracle.length), oracle: f });
  }
  const listFile = join(mkdtempSync(join(tmpdir(), 'sf-pairs-')), 'pairs.json');
  writeFileSync(listFile, JSON.stringify(pairs));
  const workers = Array.from({ length: 8 }, (_, i) =>
    new Promise<{ reads: number; bytes: number; mismatches: string[] }>((resolve, reject) => {
      const c = spawn('node', [join(ROOT, 'test', 'mount', 'reader.mjs'), listFile, String(seconds), String(i + 1)], { stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      c.stdout.on('data', (b: Buffer) => (out += b.toString()));
      c.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out) as { reads: number; bytes: number; mismatches: string[] }) : reject(new Error(`reader ${i} exited ${code}: ${out}`))));
    }),
  );
  const results = await Promise.all(workers);
  const reads = results.reduce((n, r) => n + r.reads, 0);
  t.same(results.flatMap((r) => r.mismatches).slice(0, 10), [], `8 readers, ${seconds} s, ${reads} random reads over ${pairs.length} files: no mismatch`);
  t.ok(results.every((r) => r.reads > 100), 'every reader made progress');
});

t.test('the sources are byte-identical after all of it', async (t) => {
  t.same(await fingerprint([top, join(vm, 'sample-000001.vmdk'), join(vm, 'sample.vmdk'), vmx, ntfsImg, extImg]), await sourcesBefore);
});
