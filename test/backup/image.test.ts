/**
 * Image backups, end to end through the built CLI, against real tools: the sample VM (GPT, ext4 +
 * NTFS behind a 3-deep delta chain) backed up whole; stock `age -d | zstd -d | tar -xS` must give a
 * sparse raw disk byte-identical to `qemu-img convert -O raw` of the source, and so must
 * `restore --image`; files read out of the image (ls -R --json --sha256, restore) must equal the
 * live source's; an incremental after a new delta written by qemu-io stores exactly the delta's
 * grains (qemu-img map says which) and restores to the new state; a raw source's incremental comes
 * from block hashes; over a real sshd the same holds. Hostile repositories (indexes, sparse maps,
 * manifest chains) give typed errors, one test per bound.
 */
import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { image, qemuRaw, requireTool, sha256File } from '../helpers/images.js';
import { snapferry } from '../helpers/cli.js';
import { startSshd } from '../helpers/sshd.js';
import { mountLoop } from '../helpers/mounts.js';
import { LocalStore } from '../../src/store/local.js';
import { openArchiveSink } from '../../src/archive/stack.js';
import { TarWriter } from '../../src/archive/tar/writer.js';
import { encodeIndexLine, INDEX_FORMAT, INDEX_VERSION, type IndexEntry } from '../../src/archive/index.js';
import { archiveName, ensureRepository, indexName, writeManifest, type Manifest } from '../../src/backup/repo.js';
import { parseIdentityFile } from '../../src/archive/age/keys.js';
import { MAX_IMAGE_CHAIN, MAX_IMAGE_DISKS, MAX_IMAGE_INDEX_ENTRIES, openImage } from '../../src/backup/image-disk.js';
import { MAX_DESCRIPTOR_BYTES, runImageBackup, toSegments } from '../../src/backup/image.js';
import { imageStatePath, MAX_IMAGE_STATE_BYTES } from '../../src/backup/image-state.js';
import { openDisk } from '../../src/disk/open.js';
import { SPARSE_LIMITS } from '../../src/archive/tar/sparse.js';

requireTool('age', 'age-keygen', 'zstd', 'tar', 'qemu-img', 'qemu-io', 'ssh-keygen', 'split', 'xxd', 'getfattr');

const vm = image('sample-vm');
const work = mkdtempSync(join(tmpdir(), 'sf-image-'));
const key = join(work, 'key.txt');
execFileSync('age-keygen', ['-o', key], { stdio: 'ignore' });
const recipient = execFileSync('age-keygen', ['-y', key], { encoding: 'utf8' }).trim();
const identities = parseIdentityFile(readFileSync(key, 'utf8'));

// The VM copied into the work directory: the incremental test adds a delta to its chain.
const vmDir = join(work, 'vm');
mkdirSync(vmDir);
for (const f of readdirSync(vm)) copyFileSync(join(vm, f), join(vmDir, f));
const vmx = join(vmDir, 'sample.vmx');
const top = join(vmDir, 'sample-000002.vmdk');

function json<T>(stdout: string): T {
  return JSON.parse(stdout.trim().split('\n').pop()!) as T;
}

interface Summary {
  id: string;
  incremental: boolean;
  parent?: string;
  disks: { id: string; size: number; storedBytes: number; how: string; blocksSha256?: string }[];
  notes: string[];
}

/** ls -R --json --sha256 of a volume, from a live DISK or (with repo args) an image backup. */
function lsLines(args: string[]): string[] {
  const r = snapferry(['ls', '-R', '--json', '--sha256', ...args]);
  if (r.status !== 0) throw new Error(`ls ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  return r.stdout.trim().split('\n');
}

/** Bytes a file occupies on disk: a sparse restore is smaller than its size. */
const onDisk = (p: string): number => statSync(p).blocks * 512;

const repo = join(work, 'repo');
const state = join(work, 'state');
let fullId = '';

t.test('a full image backup: stock age | zstd | tar -xS gives the raw disk, sparse and byte-identical to qemu-img convert -O raw', async (t) => {
  const r = snapferry(['backup', '--image', '--json', vmx, '--repo', repo, '--recipient', recipient, '--state-dir', state]);
  t.equal(r.status, 0, `backup --image exits 0: ${r.stderr}`);
  const s = json<Summary>(r.stdout);
  fullId = s.id;
  t.equal(s.incremental, false, 'the first image backup is full');
  t.same(s.disks.map((d) => d.id), ['scsi0:0'], 'the disk is named as the tree names it (the .vmx device id)');
  const oracle = qemuRaw(top);
  const want = await sha256File(oracle);
  // blocksSha256 with stock tools: sha256 of the 1 MiB blocks' sha256s (src/backup/image-hash.ts)
  const stockDigest = execFileSync('sh', ['-c', `split -b 1048576 --filter='sha256sum | cut -c1-64' '${oracle}' | xxd -r -p | sha256sum | cut -c1-64`], { encoding: 'utf8' }).trim();
  t.equal(s.disks[0]!.blocksSha256, stockDigest, "the index's blocksSha256 is what split | sha256sum | xxd | sha256sum computes on qemu-img's raw");

  const out = join(work, 'stock');
  mkdirSync(out);
  const x = spawnSync('sh', ['-c', `age -d -i '${key}' '${join(repo, archiveName(fullId))}' | zstd -d | tar -xSf - -C '${out}'`], { encoding: 'utf8' });
  t.equal(x.status, 0, `stock extraction: ${x.stderr}`);
  t.equal(x.stderr, '', 'GNU tar has nothing to warn about');
  const raw = join(out, 'disks', 'scsi0:0.raw');
  t.equal(statSync(raw).size, statSync(oracle).size, 'realsize is the capacity');
  t.equal(await sha256File(raw), want, 'byte-identical to qemu-img convert -O raw');
  t.ok(onDisk(raw) < statSync(raw).size / 4, `sparse: ${onDisk(raw)} bytes on disk for ${statSync(raw).size}`);
  t.equal(readFileSync(join(out, 'descriptors', 'sample.vmx'), 'utf8'), readFileSync(vmx, 'utf8'), 'the .vmx is stored as it is');
  const d = readFileSync(join(out, 'descriptors', 'scsi0:0', 'sample-000002.vmdk.txt'), 'utf8');
  t.match(d, /parentFileNameHint="sample-000001.vmdk"/, "the top delta's descriptor text is stored");
  t.ok(existsSync(join(out, 'descriptors', 'scsi0:0', 'sample.vmdk.txt')), "the base's embedded descriptor is extracted");
  const m = JSON.parse(readFileSync(join(repo, 'archives', `${fullId}.manifest.json`), 'utf8')) as Manifest;
  t.equal(m.kind, 'image', 'manifest kind image');
  t.notMatch(JSON.stringify(m), /hostname|alice|data-1/, 'the plaintext manifest names no guest file');
});

t.test('restore --image writes each disk back as a sparse raw file equal to the source', async (t) => {
  const out = join(work, 'restore-image');
  const r = snapferry(['restore', '--repo', repo, fullId, '--image', '--identity', key, '--target', out]);
  t.equal(r.status, 0, `restore --image: ${r.stderr}`);
  const raw = join(out, 'scsi0:0.raw');
  t.equal(await sha256File(raw), await sha256File(qemuRaw(top)), 'equal to qemu-img convert -O raw');
  t.ok(onDisk(raw) < statSync(raw).size / 4, `sparse: ${onDisk(raw)} of ${statSync(raw).size}`);
  const again = snapferry(['restore', '--repo', repo, fullId, '--image', '--identity', key, '--target', out]);
  t.not(again.status, 0, 'an existing file is not overwritten without --overwrite');
  // --vmdk: a monolithicSparse VMDK that qemu-img checks and finds identical to the source chain
  const vout = join(work, 'restore-vmdk');
  const v = snapferry(['restore', '--repo', repo, fullId, '--image', '--vmdk', '--identity', key, '--target', vout]);
  t.equal(v.status, 0, `restore --image --vmdk: ${v.stderr}`);
  const vmdk = join(vout, 'scsi0_0.vmdk');
  t.equal(spawnSync('qemu-img', ['check', vmdk]).status, 0, 'qemu-img check finds no errors');
  const cmp = spawnSync('qemu-img', ['compare', '-q', top, vmdk]);
  t.equal(cmp.status, 0, 'qemu-img compare: identical to the source chain');
  t.match(execFileSync('qemu-img', ['info', vmdk], { encoding: 'utf8' }), /create type: monolithicSparse/, 'create type monolithicSparse');
  t.ok(statSync(vmdk).size < 16 * 2 ** 20, `holes cost nothing: ${statSync(vmdk).size} bytes for a 256 MiB disk`);
  t.same(lsLines([vmdk, 'p1']), lsLines([vmx, 'p1']), 'snapferry reads the restored VMDK back: p1 equals the source');
  const missing = snapferry(['restore', '--json', '--repo', repo, fullId, 'scsi9:9', '--image', '--identity', key, '--target', join(work, 'nodisk')]);
  t.equal(missing.status, 3, 'a disk the image does not have: exit 3');
  t.match(missing.stdout, /E_RESTORE_NOT_FOUND/, 'E_RESTORE_NOT_FOUND');
});

t.test('files read out of the image equal the live source: ls -R --json --sha256, cat, stat and restore', async (t) => {
  for (const vol of ['p1', 'p2']) {
    const live = lsLines([vmx, vol]);
    const fromImage = lsLines(['--repo', repo, fullId, '--identity', key, vol]);
    t.ok(live.length >= 2, `${vol}: ${live.length} entries`);
    t.same(fromImage, live, `${vol}: every entry (type, mode, owner, times, size, sha256) equal to the live source's`);
  }
  const cat = spawnSync('node', [join(process.cwd(), 'bin', 'snapferry.js'), 'cat', '--repo', repo, fullId, 'p2/data-1.bin', '--identity', key]);
  const liveCat = spawnSync('node', [join(process.cwd(), 'bin', 'snapferry.js'), 'cat', vmx, 'p2/data-1.bin']);
  t.equal(cat.status, 0, 'cat from the image');
  t.ok(cat.stdout.length > 0 && cat.stdout.equals(liveCat.stdout), `cat of an NTFS file: ${cat.stdout.length} bytes equal`);
  const st = snapferry(['stat', '--json', '--repo', repo, fullId, 'p1/etc/hostname', '--identity', key]);
  const liveSt = snapferry(['stat', '--json', vmx, 'p1/etc/hostname']);
  t.same(JSON.parse(st.stdout), JSON.parse(liveSt.stdout), 'stat equal');

  // restore a subtree of each volume; compare with ls of the live source (type, size, mode, sha256)
  const out = join(work, 'restore-files');
  const r = snapferry(['restore', '--json', '--repo', repo, fullId, 'scsi0:0/p1/home', 'scsi0:0/p2', '--identity', key, '--target', out]);
  t.equal(r.status, 0, `restore of files from the image: ${r.stderr}`);
  const bad: string[] = [];
  let files = 0;
  for (const [vol, under] of [['p1', '/home'], ['p2', '']] as const) {
    for (const l of lsLines([vmx, vol])) {
      const e = JSON.parse(l) as { path: string; type: string; size: number; mode: number; sha256?: string; mtime: string };
      if (!e.path.startsWith(under)) continue;
      const p = join(out, 'scsi0:0', vol, e.path);
      const stt = lstatSync(p, { throwIfNoEntry: false });
      if (!stt) {
        bad.push(`${vol}${e.path}: missing`);
        continue;
      }
      if (e.type === 'file') {
        files++;
        if (stt.size !== e.size || createHash('sha256').update(readFileSync(p)).digest('hex') !== e.sha256) bad.push(`${vol}${e.path}: content`);
      }
      if (e.type === 'symlink' && readlinkSync(p) === '') bad.push(`${vol}${e.path}: link`);
      if ((stt.mode & 0o7777) !== (e.mode & 0o7777)) bad.push(`${vol}${e.path}: mode ${(stt.mode & 0o7777).toString(8)} vs ${(e.mode & 0o7777).toString(8)}`);
      if (e.type === 'file' && Math.abs(stt.mtimeMs - Date.parse(e.mtime)) > 1) bad.push(`${vol}${e.path}: mtime`);
    }
  }
  t.ok(files > 40, `${files} files compared`);
  t.same(bad.slice(0, 20), [], 'restored files equal the live source (content, mode, mtime)');
  const one = spawnSync('node', [join(process.cwd(), 'bin', 'snapferry.js'), 'restore', '--repo', repo, fullId, 'scsi0:0/p1/home/alice/docs/note-1.txt', '--identity', key, '--target', '-']);
  const liveOne = spawnSync('node', [join(process.cwd(), 'bin', 'snapferry.js'), 'cat', vmx, 'p1/home/alice/docs/note-1.txt']);
  t.ok(one.status === 0 && one.stdout.equals(liveOne.stdout), 'restore --target - of one file from an image');
});

t.test('an incremental after a new delta stores exactly its grains, and restores to the new state', async (t) => {
  // a new snapshot: a delta on top of the chain, written by qemu-io (data, an unaligned write, and
  // zeros over blocks that held data)
  const parentMap = JSON.parse(execFileSync('qemu-img', ['map', '--output=json', top], { encoding: 'utf8' })) as { start: number; length: number; data: boolean; depth: number }[];
  const had = parentMap.filter((m) => m.data && m.start >= 170 * 2 ** 20 && m.length >= 65536).pop();
  t.ok(had, 'the parent has a data block in the NTFS volume to overwrite with zeros');
  execFileSync('qemu-img', ['create', '-q', '-f', 'vmdk', '-b', 'sample-000002.vmdk', '-F', 'vmdk', 'sample-000003.vmdk'], { cwd: vmDir });
  execFileSync('qemu-io', ['-f', 'vmdk', '-c', 'write -q -P 0xab 250M 192k', '-c', 'write -q -P 0x5c 240000000 8192', '-c', `write -q -z ${had!.start} 65536`, 'sample-000003.vmdk'], { cwd: vmDir });
  writeFileSync(vmx, readFileSync(vmx, 'utf8').replace('sample-000002.vmdk', 'sample-000003.vmdk'));
  const newTop = join(vmDir, 'sample-000003.vmdk');
  const deltaMap = JSON.parse(execFileSync('qemu-img', ['map', '--output=json', newTop], { encoding: 'utf8' })) as { start: number; length: number; present: boolean; depth: number }[];
  const deltaBytes = deltaMap.filter((m) => m.depth === 0 && m.present).reduce((n, m) => n + m.length, 0);
  t.ok(deltaBytes >= 192 * 1024 + 65536, `the delta holds ${deltaBytes} bytes (qemu-img map, depth 0)`);

  const r = snapferry(['backup', '--image', '--incremental', '--json', vmx, '--repo', repo, '--recipient', recipient, '--state-dir', state]);
  t.equal(r.status, 0, `incremental image backup: ${r.stderr}`);
  const s = json<Summary>(r.stdout);
  t.equal(s.incremental, true, 'incremental');
  t.equal(s.parent, fullId, 'on the full');
  t.equal(s.disks[0]!.how, 'chain', 'changed blocks read from the chain (the deltas above the member backed up last)');
  t.equal(s.disks[0]!.storedBytes, deltaBytes, `stores exactly the delta's grains: ${s.disks[0]!.storedBytes} bytes = qemu-img map's ${deltaBytes}`);
  const m = JSON.parse(readFileSync(join(repo, 'archives', `${s.id}.manifest.json`), 'utf8')) as Manifest;
  t.same(m.needs, [fullId], 'the manifest needs the full');
  t.ok(m.archive.size < 64 * 1024, `the incremental archive is ${m.archive.size} bytes`);

  const out = join(work, 'restore-incr');
  const rr = snapferry(['restore', '--json', '--repo', repo, s.id, '--image', '--identity', key, '--target', out]);
  t.equal(rr.status, 0, `restore --image of the incremental: ${rr.stderr}`);
  t.equal(await sha256File(join(out, 'scsi0:0.raw')), await sha256File(qemuRaw(newTop)), 'the restore point (incremental over full) equals qemu-img convert -O raw of the new chain');
  for (const vol of ['p1', 'p2']) t.same(lsLines(['--repo', repo, s.id, '--identity', key, vol]), lsLines([vmx, vol]), `${vol} through the incremental equals the live new chain`);
  const vout = join(work, 'restore-incr-vmdk');
  t.equal(snapferry(['restore', '--repo', repo, s.id, '--image', '--vmdk', '--identity', key, '--target', vout]).status, 0, 'restore --image --vmdk of the incremental');
  t.equal(spawnSync('qemu-img', ['compare', '-q', newTop, join(vout, 'scsi0_0.vmdk')]).status, 0, 'qemu-img compare: the VMDK equals the new chain');
  const older = snapferry(['restore', '--repo', repo, fullId, '--image', '--identity', key, '--target', join(work, 'restore-older')]);
  t.equal(older.status, 0, 'the full still restores');
  t.equal(await sha256File(join(work, 'restore-older', 'scsi0:0.raw')), await sha256File(qemuRaw(top)), 'to the old state');

  // nothing changed since: an empty incremental
  const again = json<Summary>(snapferry(['backup', '--image', '--incremental', '--json', vmx, '--repo', repo, '--recipient', recipient, '--state-dir', state]).stdout);
  t.equal(again.disks[0]!.storedBytes, 0, 'an incremental with no new delta stores nothing');
  t.equal(again.parent, s.id, 'on the previous incremental');

  // the state lost: full, and it says so
  rmSync(imageStatePath(state, repo, 'sample'));
  const lost = snapferry(['backup', '--image', '--incremental', '--json', vmx, '--repo', repo, '--recipient', recipient, '--state-dir', state]);
  const ls = json<Summary>(lost.stdout);
  t.equal(ls.incremental, false, 'without the state the backup is full');
  t.match(ls.notes.join('\n'), /no local image state/, 'and says why');
});

t.test('files restored out of an image get their extended attributes, equal to the kernel ones', async (t) => {
  const img = join(work, 'ext4.img');
  copyFileSync(join(image('ext'), 'ext4.img'), img);
  const b = snapferry(['backup', '--image', '--json', img, '--repo', repo, '--recipient', recipient, '--state-dir', join(work, 'state-xattr')]);
  t.equal(b.status, 0, `image backup of the ext4 image: ${b.stderr}`);
  const out = join(work, 'restore-xattr');
  const r = snapferry(['restore', '--repo', repo, json<Summary>(b.stdout).id, 'ext4/whole/xattr', '--identity', key, '--target', out]);
  t.equal(r.status, 0, `restore of ext4/whole/xattr out of the image: ${r.stderr}`);
  const dump = (root: string): string =>
    execFileSync('getfattr', ['-R', '-h', '-d', '-m', '-', '-e', 'hex', '.'], { cwd: root, encoding: 'utf8' }).split('\n\n').filter((s) => s.trim()).sort().join('\n\n');
  const kernel = dump(join(mountLoop(t, img, 'ro,noload'), 'xattr'));
  t.match(kernel, /trusted\.t=0x/, 'the source directory has xattrs');
  t.equal(dump(join(out, 'ext4', 'whole', 'xattr')), kernel, 'the restored ones equal the kernel ones');
});

t.test('a raw source: the incremental comes from block hashes kept in the state', async (t) => {
  const raw = join(work, 'plain.raw');
  execFileSync('cp', ['--sparse=always', qemuRaw(join(vm, 'sample-000002.vmdk')), raw]);
  const st = join(work, 'state-raw');
  const r1 = json<Summary>(snapferry(['backup', '--image', '--json', raw, '--repo', repo, '--recipient', recipient, '--state-dir', st]).stdout);
  t.equal(r1.disks[0]!.id, 'plain', 'a plain disk is named by its base name');
  // a raw file says nothing of its allocation: its zero blocks are found by reading it, and stay holes
  t.ok(r1.disks[0]!.storedBytes < 16 * 2 ** 20, `the 256 MiB raw disk stores ${r1.disks[0]!.storedBytes} bytes (its non-zero 64 KiB blocks)`);
  const stockRaw = join(work, 'stock-raw');
  mkdirSync(stockRaw);
  execFileSync('sh', ['-c', `age -d -i '${key}' '${join(repo, archiveName(r1.id))}' | zstd -d | tar -xSf - -C '${stockRaw}'`]);
  const x = join(stockRaw, 'disks', 'plain.raw');
  t.equal(await sha256File(x), await sha256File(raw), 'stock extraction equals the raw disk');
  t.ok(onDisk(x) < statSync(x).size / 4, `and is sparse: ${onDisk(x)} bytes on disk`);
  // two blocks change: one in a hole, one zeroed where data was
  execFileSync('sh', ['-c', `head -c 4096 /dev/urandom | dd of='${raw}' bs=4096 seek=$((200 * 256 + 3)) conv=notrunc status=none && dd if=/dev/zero of='${raw}' bs=1M seek=1 count=1 conv=notrunc status=none`]);
  const r2 = snapferry(['backup', '--image', '--incremental', '--json', raw, '--repo', repo, '--recipient', recipient, '--state-dir', st]);
  t.equal(r2.status, 0, `incremental of a raw disk: ${r2.stderr}`);
  const s2 = json<Summary>(r2.stdout);
  t.equal(s2.disks[0]!.how, 'hashes', 'from block hashes');
  t.equal(s2.disks[0]!.storedBytes, 2 * 2 ** 20, 'two 1 MiB blocks stored (one became zeros: stored as data)');
  const out = join(work, 'restore-raw');
  t.equal(snapferry(['restore', '--repo', repo, s2.id, '--image', '--identity', key, '--target', out]).status, 0, 'restores');
  t.equal(await sha256File(join(out, 'plain.raw')), await sha256File(raw), 'to the changed raw disk exactly');
});

t.test('over SFTP to a real sshd: image backup, restore --image, and one file fetched without the rest of the archive', async (t) => {
  const sshd = await startSshd();
  t.teardown(() => sshd.stop());
  const url = `sftp://root@127.0.0.1:${sshd.port}${join(sshd.dir, 'repo')}`;
  const ssh = ['--ssh-key', sshd.clientKey, '--known-hosts', sshd.knownHosts];
  const b = snapferry(['backup', '--image', '--json', vmx, '--repo', url, ...ssh, '--recipient', recipient, '--state-dir', join(work, 'state-sftp')]);
  t.equal(b.status, 0, `image backup over SFTP: ${b.stderr}`);
  const id = json<Summary>(b.stdout).id;
  const out = join(work, 'sftp-restore');
  const r = snapferry(['restore', '--repo', url, ...ssh, id, '--image', '--identity', key, '--target', out]);
  t.equal(r.status, 0, `restore --image over SFTP: ${r.stderr}`);
  t.equal(await sha256File(join(out, 'scsi0:0.raw')), await sha256File(qemuRaw(join(vmDir, 'sample-000003.vmdk'))), 'equal to qemu-img convert -O raw');
  // one file out of an image holding ~100 MiB of data: the sample disk grown to 512 MiB with 96 MiB
  // of random bytes beyond its partitions (incompressible: the archive is as big as the data)
  const big = join(work, 'big.raw');
  execFileSync('cp', ['--sparse=always', qemuRaw(join(vm, 'sample-000002.vmdk')), big]);
  execFileSync('sh', ['-c', `truncate -s 512M '${big}' && head -c 100663296 /dev/urandom | dd of='${big}' bs=1M seek=320 conv=notrunc status=none`]);
  const bb = snapferry(['backup', '--image', '--json', big, '--repo', url, ...ssh, '--recipient', recipient, '--state-dir', join(work, 'state-sftp')]);
  t.equal(bb.status, 0, `image backup of a 512 MiB disk over SFTP: ${bb.stderr}`);
  const bigId = json<Summary>(bb.stdout).id;
  const size = statSync(join(sshd.dir, 'repo', 'archives', `${bigId}.tar.zst.age`)).size;
  for (const [path, vol] of [['home/alice/docs/note-7.txt', 'p1'], ['data-1.bin', 'p2']] as const) {
    const dest = join(work, `sftp-one-${vol}`);
    const one = snapferry(['restore', '--json', '--repo', url, ...ssh, bigId, `big/${vol}/${path}`, '--identity', key, '--target', dest]);
    t.equal(one.status, 0, `one file over SFTP: ${one.stderr}`);
    const sum = json<{ bytesFetched: number; files: number }>(one.stdout);
    t.equal(sum.files, 1, 'one file');
    t.ok(sum.bytesFetched < size / 10, `${vol}/${path}: fetched ${sum.bytesFetched} bytes of the archive's ${size}`);
    const live = spawnSync('node', [join(process.cwd(), 'bin', 'snapferry.js'), 'cat', big, `${vol}/${path}`]);
    t.ok(readFileSync(join(dest, 'big', vol, path)).equals(live.stdout), 'equal to the live file');
  }
  t.same(lsLines(['--repo', url, ...ssh, id, '--identity', key, 'p2']), lsLines([vmx, 'p2']), 'ls -R --sha256 over SFTP equals the live source');
});

// ---- hostile repositories ------------------------------------------------------------------

let n = 0;
const line = (path: string, extra: Partial<IndexEntry> = {}): IndexEntry => ({ path, type: 'file', mode: 0o644, uid: 0, gid: 0, size: 0, nlink: 1, mtimeNs: '0', ctimeNs: '0', atimeNs: '0', ...extra });

/**
 * A repository with image archives of our making: `tar` writes the archive's members through a real
 * TarWriter, `index` gives the index lines, `patch` may change the tar bytes before encryption.
 */
async function hostile(o: { tar?: (w: TarWriter) => Promise<Record<string, { header: number; data: number }>>; index: (at: Record<string, { header: number; data: number }>) => IndexEntry[]; patch?: (tar: Buffer) => void; parent?: string; id?: string; store?: LocalStore }): Promise<{ store: LocalStore; id: string }> {
  const store = o.store ?? (await LocalStore.open(join(work, `hostile-${++n}`), { create: true }));
  await ensureRepository(store);
  const id = o.id ?? `20260101T000000Z-${String(++n).padStart(6, '0')}`;
  const parts: Buffer[] = [];
  const tar = new TarWriter({ write: async (c) => void parts.push(Buffer.from(c)), end: async () => {} });
  const at = o.tar ? await o.tar(tar) : {};
  await tar.finish();
  const bytes = Buffer.concat(parts);
  o.patch?.(bytes);
  const a = openArchiveSink(await store.put(archiveName(id)), { recipients: [recipient] });
  await a.write(bytes);
  await a.end();
  const ix = openArchiveSink(await store.put(indexName(id)), { recipients: [recipient] });
  await ix.write(encodeIndexLine({ format: INDEX_FORMAT, version: INDEX_VERSION, archive: id }));
  for (const e of o.index(at)) await ix.write(encodeIndexLine(e));
  await ix.end();
  await writeManifest(store, { format: 'snapferry-manifest', version: 1, id, vm: 'evil', createdAt: new Date(0).toISOString(), kind: 'image', ...(o.parent ? { parent: o.parent } : {}), needs: o.parent ? [o.parent] : [], recipients: [], files: 1, bytes: 0, storedBytes: 0, archive: { name: archiveName(id), size: 0 }, index: { name: indexName(id), size: 0 }, errors: 0, durationMs: 0, snapferry: 'test' });
  return { store, id };
}

const SIZE = 1 << 20;
const diskMember = async (w: TarWriter, path = 'disks/d.raw'): Promise<Record<string, { header: number; data: number }>> => {
  const body = Buffer.alloc(4096, 0x61);
  const r = await w.add({ path, type: 'file', mode: 0o644, uid: 0, gid: 0, mtimeNs: 0n, size: SIZE, sparse: [{ offset: 65536, length: 4096 }] }, body);
  return { [path]: { header: r.headerOffset, data: r.dataOffset } };
};

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'no error';
  } catch (err) {
    return (err as { code?: string }).code ?? String(err);
  }
}

t.test('a well-formed hand-made image reads back (the hostile cases below differ from it in one thing each)', async (t) => {
  const h = await hostile({ tar: (w) => diskMember(w), index: (at) => [line('disks/d.raw', { size: SIZE, ...at['disks/d.raw']! })] });
  const img = await openImage(h.store, h.id, identities);
  const d = img.disks[0]!.disk;
  t.same([...(await d.read(65536 - 2, 6))], [0, 0, 0x61, 0x61, 0x61, 0x61], 'segment bytes, holes as zeros');
  t.same(await d.allocation(0, SIZE), [{ offset: 0, length: 65536, state: 'unallocated' }, { offset: 65536, length: 4096, state: 'data' }, { offset: 69632, length: SIZE - 69632, state: 'unallocated' }], 'allocation from the sparse map');
  await img.close();
});

t.test('verify recomputes a full disk member\'s blocksSha256 and names a mismatch', async (t) => {
  const ok = snapferry(['verify', '--json', '--repo', repo, fullId, '--identity', key]);
  t.equal(ok.status, 0, `verify of the full image: ${ok.stdout}${ok.stderr}`);
  const v = json<{ ok: boolean; files: number; bytes: number }>(ok.stdout);
  t.ok(v.ok && v.files >= 5 && v.bytes > 5 * 2 ** 20, `disk and descriptors checked: ${v.files} members, ${v.bytes} bytes`);
  const h = await hostile({ tar: (w) => diskMember(w), index: (at) => [line('disks/d.raw', { size: SIZE, blocksSha256: '0'.repeat(64), ...at['disks/d.raw']! })] });
  const bad = snapferry(['verify', '--json', '--repo', h.store.url, h.id, '--identity', key]);
  t.equal(bad.status, 4, 'a wrong blocksSha256: exit 4');
  t.match(bad.stdout, /E_RESTORE_HASH/, 'E_RESTORE_HASH names the member');
});

t.test('hostile image indexes are typed errors', async (t) => {
  const cases: [string, Parameters<typeof hostile>[0], string][] = [
    ['a disk id with ..', { tar: (w) => diskMember(w), index: (at) => [line('disks/../../x.raw', { size: SIZE, ...at['disks/d.raw']! })] }, 'E_IMAGE_INDEX'],
    ['a disk id with a slash', { tar: (w) => diskMember(w), index: (at) => [line('disks/a/b.raw', { size: SIZE, ...at['disks/d.raw']! })] }, 'E_IMAGE_INDEX'],
    ['a disk line without an offset', { tar: (w) => diskMember(w), index: () => [line('disks/d.raw', { size: SIZE })] }, 'E_IMAGE_INDEX'],
    ['a disk line pointing into another archive', { tar: (w) => diskMember(w), index: (at) => [line('disks/d.raw', { size: SIZE, archive: 'elsewhere', ...at['disks/d.raw']! })] }, 'E_IMAGE_INDEX'],
    ['a disk listed twice', { tar: (w) => diskMember(w), index: (at) => [line('disks/d.raw', { size: SIZE, ...at['disks/d.raw']! }), line('disks/d.raw', { size: SIZE, ...at['disks/d.raw']! })] }, 'E_IMAGE_INDEX'],
    ['a size that is not the member realsize', { tar: (w) => diskMember(w), index: (at) => [line('disks/d.raw', { size: SIZE * 2, ...at['disks/d.raw']! })] }, 'E_IMAGE_MEMBER'],
    ['an index naming one member but pointing at another', { tar: async (w) => ({ ...(await diskMember(w, 'disks/other.raw')) }), index: (at) => [line('disks/d.raw', { size: SIZE, ...at['disks/other.raw']! })] }, 'E_IMAGE_MEMBER'],
    ['an offset that is no header', { tar: (w) => diskMember(w), index: (at) => [line('disks/d.raw', { size: SIZE, header: at['disks/d.raw']!.data, data: at['disks/d.raw']!.data })] }, 'E_TAR_CHECKSUM'],
    ['an offset past the archive', { tar: (w) => diskMember(w), index: () => [line('disks/d.raw', { size: SIZE, header: 1 << 30, data: 1 << 30 })] }, 'E_BOUND'],
  ];
  for (const [what, o, want] of cases) {
    const h = await hostile(o);
    const got = await code(openImage(h.store, h.id, identities));
    t.ok(got === want || (want === 'E_BOUND' && /^E_(BOUND|TAR_TRUNCATED|AGE|ZSTD)/.test(got)), `${what}: ${got}`);
  }
});

t.test('hostile sparse maps are typed errors', async (t) => {
  // the map is the member's first data block: "2\n65536\n4096\n1048576\n0\n" — rewrite it
  const withMap = (text: string) => ({
    tar: (w: TarWriter) => diskMember(w),
    index: (at: Record<string, { header: number; data: number }>) => [line('disks/d.raw', { size: SIZE, ...at['disks/d.raw']! })],
    patch: (tar: Buffer) => {
      const at = tar.indexOf('2\n65536\n4096\n');
      tar.fill(0, at, at + 512 - (at % 512));
      tar.write(text, at, 'latin1');
    },
  });
  const cases: [string, string, string][] = [
    ['a segment past realsize', `2\n65536\n4096\n${SIZE * 4}\n0\n`, 'E_TAR_SPARSE'],
    ['overlapping segments', '2\n65536\n4096\n65540\n0\n', 'E_TAR_SPARSE'],
    ['more entries than the limit', `${SPARSE_LIMITS.maxEntries + 1}\n65536\n4096\n`, 'E_TAR_BOUND'],
    ['a number with too many digits', '2\n000000000000000000000065536\n4096\n1048576\n0\n', 'E_TAR_SPARSE'],
    ['a byte that is not a digit', '2\n65536\n40x6\n1048576\n0\n', 'E_TAR_SPARSE'],
    ['segments needing more bytes than stored', '2\n65536\n8192\n1048576\n0\n', 'E_TAR_SPARSE'],
  ];
  for (const [what, text, want] of cases) {
    const h = await hostile(withMap(text));
    t.equal(await code(openImage(h.store, h.id, identities)), want, what);
  }
});

t.test('bounds: image chain length and cycles, index entries, disks, descriptors, local state', async (t) => {
  // a manifest chain that loops
  const store = await LocalStore.open(join(work, 'hostile-chain'), { create: true });
  const a = await hostile({ store, id: '20260101T000000Z-aaaaaa', parent: '20260101T000000Z-bbbbbb', index: () => [] });
  await hostile({ store, id: '20260101T000000Z-bbbbbb', parent: '20260101T000000Z-aaaaaa', index: () => [] });
  t.equal(await code(openImage(store, a.id, identities)), 'E_IMAGE_CHAIN', 'a parent loop: E_IMAGE_CHAIN');
  // MAX_IMAGE_CHAIN + 1 manifests in a line (manifests only: the chain is refused before any index is read)
  const long = await LocalStore.open(join(work, 'hostile-long'), { create: true });
  await ensureRepository(long);
  const idOf = (i: number): string => `20260101T000000Z-${String(i).padStart(6, '0')}`;
  for (let i = 0; i <= MAX_IMAGE_CHAIN; i++) {
    await writeManifest(long, { format: 'snapferry-manifest', version: 1, id: idOf(i), vm: 'evil', createdAt: new Date(0).toISOString(), kind: 'image', ...(i > 0 ? { parent: idOf(i - 1) } : {}), needs: [], recipients: [], files: 0, bytes: 0, storedBytes: 0, archive: { name: archiveName(idOf(i)), size: 0 }, index: { name: indexName(idOf(i)), size: 0 }, errors: 0, durationMs: 0, snapferry: 'test' });
  }
  t.equal(await code(openImage(long, idOf(MAX_IMAGE_CHAIN), identities)), 'E_IMAGE_CHAIN', `${MAX_IMAGE_CHAIN + 1} archives in a chain: E_IMAGE_CHAIN`);
  // a file-level backup's parent inside an image chain
  const mixed = await LocalStore.open(join(work, 'hostile-mixed'), { create: true });
  await ensureRepository(mixed);
  await writeManifest(mixed, { format: 'snapferry-manifest', version: 1, id: idOf(1), vm: 'evil', createdAt: new Date(0).toISOString(), kind: 'full', needs: [], recipients: [], files: 0, bytes: 0, storedBytes: 0, archive: { name: archiveName(idOf(1)), size: 0 }, index: { name: indexName(idOf(1)), size: 0 }, errors: 0, durationMs: 0, snapferry: 'test' });
  t.equal(await code(openImage(mixed, idOf(1), identities)), 'E_IMAGE_NOT_IMAGE', 'a file-level backup opened as an image: E_IMAGE_NOT_IMAGE');
  const m2 = await hostile({ store: mixed, id: idOf(2), parent: idOf(1), index: () => [] });
  t.equal(await code(openImage(mixed, m2.id, identities)), 'E_IMAGE_CHAIN', 'an image whose parent is file-level: E_IMAGE_CHAIN');

  const many = await hostile({ index: () => Array.from({ length: MAX_IMAGE_INDEX_ENTRIES + 1 }, (_, i) => line(`descriptors/${i}`)) });
  t.equal(await code(openImage(many.store, many.id, identities)), 'E_IMAGE_INDEX', `${MAX_IMAGE_INDEX_ENTRIES + 1} index lines: E_IMAGE_INDEX`);
  const disks = await hostile({ tar: (w) => diskMember(w), index: (at) => Array.from({ length: MAX_IMAGE_DISKS + 1 }, (_, i) => line(`disks/d${i}.raw`, { size: SIZE, ...at['disks/d.raw']! })) });
  t.equal(await code(openImage(disks.store, disks.id, identities)), 'E_IMAGE_INDEX', `${MAX_IMAGE_DISKS + 1} disks: E_IMAGE_INDEX`);

  // the writer's bounds: a descriptor over MAX_DESCRIPTOR_BYTES is not copied; a map over the reader's limit is coarsened
  const bigVmx = join(work, 'big.vmx');
  writeFileSync(bigVmx, Buffer.alloc(MAX_DESCRIPTOR_BYTES + 1, 0x61));
  const disk = await openDisk(join(vm, 'sample.vmdk'));
  const st = await LocalStore.open(join(work, 'desc-repo'), { create: true });
  t.equal(await code(runImageBackup([{ id: 'd', path: 'x', disk }], { store: st, vm: 'v', recipients: [recipient], incremental: false, stateDir: join(work, 'state-desc'), vmx: bigVmx, version: 't' })), 'E_IMAGE_DESCRIPTOR', `a .vmx over ${MAX_DESCRIPTOR_BYTES} bytes: E_IMAGE_DESCRIPTOR`);
  await disk.close();
  const ranges = Array.from({ length: 1000 }, (_, i) => ({ offset: i * 131072, length: 65536 }));
  const coarse = toSegments(ranges, 100);
  t.ok(coarse.length <= 100, `1000 ranges into at most 100 segments: ${coarse.length}`);
  t.ok(ranges.every((r) => coarse.some((s) => s.offset <= r.offset && s.offset + s.length >= r.offset + r.length)), 'every data range still covered');

  // a local state over MAX_IMAGE_STATE_BYTES is not read: full, said so
  const sdir = join(work, 'state-big');
  const sdisk = await openDisk(join(vm, 'sample.vmdk'));
  const srepo = await LocalStore.open(join(work, 'state-repo'), { create: true });
  const first = await runImageBackup([{ id: 'd', path: 'x', disk: sdisk }], { store: srepo, vm: 'v', recipients: [recipient], incremental: false, stateDir: sdir, version: 't' });
  t.equal(first.incremental, false, 'a first backup');
  const sp = imageStatePath(sdir, srepo.url, 'v');
  execFileSync('truncate', ['-s', String(MAX_IMAGE_STATE_BYTES + 1), sp]);
  const second = await runImageBackup([{ id: 'd', path: 'x', disk: sdisk }], { store: srepo, vm: 'v', recipients: [recipient], incremental: true, stateDir: sdir, version: 't' });
  t.equal(second.incremental, false, 'an oversized state: full');
  t.match(second.notes.join('\n'), /over 268435456/, 'and the note says why');
  writeFileSync(sp, '{"format":"snapferry-image-state","version":1,"repo":"elsewhere"}');
  const third = await runImageBackup([{ id: 'd', path: 'x', disk: sdisk }], { store: srepo, vm: 'v', recipients: [recipient], incremental: true, stateDir: sdir, version: 't' });
  t.equal(third.incremental, false, 'a state for another repository: full');
  await sdisk.close();
});
