/**
 * File-level backup, end to end through the built CLI: the sample VM (GPT, ext4 + NTFS behind a
 * 3-deep delta chain) backed up to a local repository, then restored twice — by the stock `age`,
 * `zstd` and GNU `tar`, and by snapferry — and both compared, entry for entry, with `ls -R --json
 * --sha256` of the live source. Also: single-file restore to stdout, incrementals (changed files
 * only, deletions known), verify naming damage, and hostile indexes that try to leave the target.
 */
import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, writeFileSync, openSync, readSync, writeSync, closeSync, statSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { image, requireTool } from '../helpers/images.js';
import { snapferry } from '../helpers/cli.js';
import { startSshd } from '../helpers/sshd.js';
import { mountLoop } from '../helpers/mounts.js';

requireTool('age', 'age-keygen', 'zstd', 'tar', 'debugfs', 'ssh-keygen', 'getfattr');

/** Every extended attribute below `root`, as getfattr dumps them (hex values, symlinks not followed), one stanza per entry in path order. */
function xattrDump(root: string): string {
  const dump = execFileSync('getfattr', ['-R', '-h', '-d', '-m', '-', '-e', 'hex', '.'], { cwd: root, encoding: 'utf8', maxBuffer: 1 << 26 });
  return dump.split('\n\n').filter((s) => s.trim()).sort().join('\n\n') + '\n';
}

const vm = image('sample-vm');
const vmx = join(vm, 'sample.vmx');
const work = mkdtempSync(join(tmpdir(), 'sf-backup-'));
const key = join(work, 'key.txt');
execFileSync('age-keygen', ['-o', key], { stdio: 'ignore' });
const recipient = execFileSync('age-keygen', ['-y', key], { encoding: 'utf8' }).trim();

interface Row {
  path: string;
  type: string;
  size: number;
  mode: number;
  uid: number;
  gid: number;
  mtime: string;
  target?: string;
  sha256?: string;
  devMajor?: number;
  devMinor?: number;
}

function lsTree(source: string, volume: string): Map<string, Row> {
  const r = snapferry(['ls', '-R', '--json', '--sha256', source, volume]);
  if (r.status !== 0) throw new Error(`ls failed: ${r.stderr}`);
  const out = new Map<string, Row>();
  for (const l of r.stdout.trim().split('\n')) {
    const row = JSON.parse(l) as Row;
    out.set(row.path, row);
  }
  return out;
}

function sha256(p: Buffer): string {
  return createHash('sha256').update(readFileSync(p)).digest('hex');
}

/** What a restored directory holds, in ls --json's terms (mtime to the microsecond restore keeps). */
function seeRestored(root: string): Map<string, Row> {
  const out = new Map<string, Row>();
  const visit = (rel: string, abs: Buffer): void => {
    const st = lstatSync(abs, { bigint: true });
    const type = st.isFile() ? 'file' : st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : st.isFIFO() ? 'fifo' : st.isCharacterDevice() ? 'chardev' : st.isBlockDevice() ? 'blockdev' : 'other';
    const row: Row = { path: `/${rel}`, type, size: Number(st.size), mode: Number(st.mode), uid: Number(st.uid), gid: Number(st.gid), mtime: String(st.mtimeNs) };
    if (type === 'chardev' || type === 'blockdev') {
      // glibc's gnu_dev_major / gnu_dev_minor
      row.devMajor = Number(((st.rdev >> 8n) & 0xfffn) | ((st.rdev >> 32n) & ~0xfffn));
      row.devMinor = Number((st.rdev & 0xffn) | ((st.rdev >> 12n) & ~0xffn));
    }
    if (type === 'file') row.sha256 = sha256(abs);
    if (type === 'symlink') row.target = readlinkSync(abs, 'utf8');
    if (rel) out.set(row.path, row);
    // names as bytes (ext allows any); keyed by their UTF-8 decoding, as ls --json's path is
    if (type === 'dir') for (const n of readdirSync(abs, { encoding: 'buffer' })) visit(rel ? `${rel}/${n.toString('utf8')}` : n.toString('utf8'), Buffer.concat([abs, Buffer.from('/'), n]));
  };
  visit('', Buffer.from(root));
  return out;
}

function nsOf(iso: string): bigint {
  const m = /^(.*)\.(\d{9})Z$/.exec(iso)!;
  return BigInt(Date.parse(`${m[1]}Z`)) * 1_000_000n + BigInt(m[2]!);
}

/** Every source entry is in the restore with its type, size, mode, owner, target, sha256 and mtime (µs). */
function compare(source: Map<string, Row>, restored: Map<string, Row>, usec: boolean): string[] {
  const bad: string[] = [];
  for (const [p, s] of source) {
    const r = restored.get(p);
    if (!r) {
      bad.push(`${p}: missing`);
      continue;
    }
    if (r.type !== s.type) bad.push(`${p}: type ${r.type} vs ${s.type}`);
    if (s.type === 'file' && (r.size !== s.size || r.sha256 !== s.sha256)) bad.push(`${p}: content differs`);
    if (s.type === 'symlink' && r.target !== s.target) bad.push(`${p}: target ${r.target} vs ${s.target}`);
    if (r.devMajor !== s.devMajor || r.devMinor !== s.devMinor) bad.push(`${p}: device ${r.devMajor}:${r.devMinor} vs ${s.devMajor}:${s.devMinor}`);
    if ((r.mode & 0o7777) !== (s.mode & 0o7777)) bad.push(`${p}: mode ${(r.mode & 0o7777).toString(8)} vs ${(s.mode & 0o7777).toString(8)}`);
    if (r.uid !== s.uid || r.gid !== s.gid) bad.push(`${p}: owner ${r.uid}:${r.gid} vs ${s.uid}:${s.gid}`);
    const want = nsOf(s.mtime);
    const got = BigInt(r.mtime);
    const d = got > want ? got - want : want - got;
    // snapferry sets times through Node's utimes: seconds as a double, so within a microsecond or two
    if (s.type !== 'symlink' && (usec ? d > 2000n : got !== want)) bad.push(`${p}: mtime ${got} vs ${want}`);
  }
  for (const p of restored.keys()) if (!source.has(p)) bad.push(`${p}: not in the source`);
  return bad.slice(0, 20);
}

const repo = join(work, 'repo');
const state = join(work, 'state');
let fullId = '';

t.test('a full backup of the sample VM restores with stock age | zstd | tar and with snapferry, equal to the live source', async (t) => {
  const r = snapferry(['backup', '--json', vmx, '--repo', repo, '--recipient', recipient, '--state-dir', state]);
  t.equal(r.status, 0, `backup exits 0: ${r.stderr}`);
  const summary = JSON.parse(r.stdout.trim().split('\n').pop()!) as { id: string; kind: string; files: number; archiveBytes: number };
  fullId = summary.id;
  t.equal(summary.kind, 'full', 'the first backup is full');
  t.ok(summary.files > 40, `${summary.files} files`);

  const snaps = snapferry(['snapshots', '--json', '--repo', repo]);
  t.equal(snaps.status, 0, 'snapshots lists');
  const list = snaps.stdout.trim().split('\n').map((l) => JSON.parse(l) as { id: string; kind: string; recipients: string[] });
  t.same(list.map((m) => m.id), [fullId], 'snapshots shows the backup with its id');
  const manifest = readFileSync(join(repo, 'archives', `${fullId}.manifest.json`), 'utf8');
  t.notMatch(manifest, /hostname|data-1|alice/, 'the plaintext manifest names no guest file');

  const sources = { p1: lsTree(vmx, 'p1'), p2: lsTree(vmx, 'p2') };
  const stock = join(work, 'stock');
  mkdirSync(stock);
  const pipe = spawnSync('sh', ['-c', `age -d -i '${key}' '${join(repo, 'archives', `${fullId}.tar.zst.age`)}' | zstd -d | tar --xattrs --xattrs-include='*' -xpf - -C '${stock}'`], { encoding: 'utf8' });
  t.equal(pipe.status, 0, `stock age | zstd | tar extracts: ${pipe.stderr}`);
  for (const v of ['p1', 'p2'] as const) t.same(compare(sources[v], seeRestored(join(stock, 'scsi0:0', v)), false), [], `stock tools: ${v} equals the source (${sources[v].size} entries, mtimes to the ns)`);

  const ours = join(work, 'ours');
  const rr = snapferry(['restore', '--repo', repo, fullId, '--identity', key, '--target', ours]);
  t.equal(rr.status, 0, `snapferry restore exits 0: ${rr.stderr}`);
  for (const v of ['p1', 'p2'] as const) t.same(compare(sources[v], seeRestored(join(ours, 'scsi0:0', v)), true), [], `snapferry restore: ${v} equals the source (mtimes to 2 µs)`);

  const again = snapferry(['restore', '--repo', repo, fullId, 'scsi0:0/p1/etc', '--identity', key, '--target', ours]);
  t.equal(again.status, 1, 'restoring over existing files without --overwrite fails');
  t.match(again.stderr, /E_RESTORE_EXISTS/, 'E_RESTORE_EXISTS');

  const one = spawnSync('node', [join(process.cwd(), 'bin', 'snapferry.js'), 'restore', '--repo', repo, 'latest', 'scsi0:0/p2/data-1.bin', '--identity', key, '--target', '-'], { maxBuffer: 1 << 26 });
  t.equal(one.status, 0, 'restore of one file to stdout');
  const cat = spawnSync('node', [join(process.cwd(), 'bin', 'snapferry.js'), 'cat', vmx, 'p2/data-1.bin'], { maxBuffer: 1 << 26 });
  t.ok(one.stdout.equals(cat.stdout) && one.stdout.length === 300000, 'its bytes equal snapferry cat of the source');
});

t.test('incremental backups store only changed files and know what was deleted', async (t) => {
  // an ext4 image we can change between backups (debugfs -w on a copy)
  const img = join(work, 'ext4.img');
  copyFileSync(join(image('ext'), 'ext4.img'), img);
  const base = ['--repo', repo, '--recipient', recipient, '--state-dir', state, '--vm', 'ext4-vm', '--json'];
  const full = snapferry(['backup', img, ...base]);
  t.equal(full.status, 0, `full: ${full.stderr}`);
  const f = JSON.parse(full.stdout.trim().split('\n').pop()!) as { id: string; files: number; bytesRead: number };
  const newFile = join(work, 'new.txt');
  writeFileSync(newFile, 'a file written after the full backup\n');
  execFileSync('debugfs', ['-w', '-R', `write ${newFile} new.txt`, img], { stdio: 'ignore' });
  execFileSync('debugfs', ['-w', '-R', 'rm hello.txt', img], { stdio: 'ignore' });
  const inc = snapferry(['backup', img, ...base, '--incremental']);
  t.equal(inc.status, 0, `incremental: ${inc.stderr}`);
  const i = JSON.parse(inc.stdout.trim().split('\n').pop()!) as { id: string; kind: string; parent: string; files: number; stored: number; unchanged: number; bytesRead: number };
  t.equal(i.kind, 'incremental', 'kind incremental');
  t.equal(i.parent, f.id, 'on the full backup');
  t.equal(i.stored, 1, `one file stored (${i.files} present, ${i.unchanged} unchanged)`);
  t.ok(i.bytesRead < 1000, `only its bytes were read (${i.bytesRead})`);

  const out = join(work, 'inc-restore');
  // as root (CI is), --devices makes the device nodes too
  const rr = snapferry(['restore', '--repo', repo, i.id, '--identity', key, '--target', out, '--devices']);
  t.equal(rr.status, 0, `restore of the incremental point: ${rr.stderr}`);
  const src = lsTree(img, 'whole');
  const got = seeRestored(join(out, 'ext4', 'whole'));
  const sockets = [...src.values()].filter((r) => r.type === 'socket').map((r) => r.path);
  for (const p of sockets) src.delete(p); // a socket has no place in a tar archive (GNU tar skips them too)
  const specials = [...src.values()].filter((r) => ['fifo', 'chardev', 'blockdev'].includes(r.type));
  t.ok(specials.length >= 3 && specials.some((r) => r.devMajor === 300 && r.devMinor === 70000), `the source has a fifo and device nodes, one of them 300:70000 (${specials.map((r) => r.path).join(' ')})`);
  t.same(compare(src, got, true), [], `the restored point equals the changed source (${src.size} entries, ${specials.length} of them fifos and device nodes; ${sockets.length} socket not archived)`);
  t.ok(existsSync(join(out, 'ext4', 'whole', 'new.txt')) && !existsSync(join(out, 'ext4', 'whole', 'hello.txt')), 'the new file is there, the deleted one is not');
  // extended attributes: the kernel's view of the changed image is the oracle
  const kernel = xattrDump(mountLoop(t, img, 'ro,noload'));
  t.match(kernel, /# file: xattr\/ns\nsecurity\.s=0x[0-9a-f]+\ntrusted\.t=0x[0-9a-f]+\nuser\.empty=0x\n/, 'the source has security., trusted. and empty xattrs');
  t.equal(xattrDump(join(out, 'ext4', 'whole')), kernel, `the restored xattrs equal the kernel's (getfattr -R -d -m -: ${kernel.split('# file:').length - 1} entries)`);
});

t.test('verify passes a sound backup and names the entry of a flipped bit', async (t) => {
  const ok = snapferry(['verify', '--repo', repo, fullId, '--identity', key]);
  t.equal(ok.status, 0, `verify of a sound backup: ${ok.stderr}${ok.stdout}`);
  const damaged = join(work, 'damaged-repo');
  execFileSync('cp', ['-a', repo, damaged]);
  const file = join(damaged, 'archives', `${fullId}.tar.zst.age`);
  const size = statSync(file).size;
  const fd = openSync(file, 'r+');
  const at = Math.floor(size / 2);
  const b = Buffer.alloc(1);
  readSync(fd, b, 0, 1, at);
  b[0]! ^= 0x10;
  writeSync(fd, b, 0, 1, at);
  closeSync(fd);
  const bad = snapferry(['verify', '--json', '--repo', damaged, fullId, '--identity', key]);
  t.equal(bad.status, 4, 'verify of a damaged archive exits 4');
  const v = JSON.parse(bad.stdout.trim().split('\n').pop()!) as { ok: boolean; damage: { archive: string; path?: string; code: string }[] };
  t.notOk(v.ok, 'not ok');
  t.ok(v.damage.some((d) => d.code === 'E_AGE_CHUNK' && d.archive === fullId), 'names the archive and the damaged chunk');
  t.ok(v.damage.some((d) => d.path && d.path.startsWith('scsi0:0/')), `and the entry it hit (${v.damage.find((d) => d.path)?.path})`);
});

t.test('over SFTP to a real sshd: backup, snapshots, restore of a subtree, equal to the source', async (t) => {
  const sshd = await startSshd();
  t.teardown(() => sshd.stop());
  const url = `sftp://root@127.0.0.1:${sshd.port}${join(sshd.dir, 'repo')}`;
  const ssh = ['--ssh-key', sshd.clientKey, '--known-hosts', sshd.knownHosts];
  const b = snapferry(['backup', '--json', vmx, '--repo', url, ...ssh, '--recipient', recipient, '--state-dir', join(work, 'state-sftp')]);
  t.equal(b.status, 0, `backup over SFTP: ${b.stderr}`);
  const id = (JSON.parse(b.stdout.trim().split('\n').pop()!) as { id: string }).id;
  const snaps = snapferry(['snapshots', '--json', '--repo', url, ...ssh]);
  t.same(snaps.stdout.trim().split('\n').map((l) => (JSON.parse(l) as { id: string }).id), [id], 'snapshots over SFTP');
  const out = join(work, 'sftp-restore');
  const r = snapferry(['restore', '--repo', url, ...ssh, id, 'scsi0:0/p1/home', '--identity', key, '--target', out]);
  t.equal(r.status, 0, `restore of a subtree over SFTP: ${r.stderr}`);
  const src = new Map([...lsTree(vmx, 'p1')].filter(([p]) => p === '/home' || p.startsWith('/home/')));
  t.same(compare(src, seeRestored(join(out, 'scsi0:0', 'p1')), true), [], `${src.size} entries of /home equal the source`);
  const plainSsh = spawnSync('sh', ['-c', `ls '${join(sshd.dir, 'repo', 'archives')}'`], { encoding: 'utf8' });
  t.notMatch(plainSsh.stdout, /partial/, 'no partial upload left on the server');
});

t.test('wrong keys and missing archives are typed errors', async (t) => {
  const other = join(work, 'other.txt');
  execFileSync('age-keygen', ['-o', other], { stdio: 'ignore' });
  const r = snapferry(['restore', '--json', '--repo', repo, 'latest', '--identity', other, '--target', join(work, 'nope')]);
  t.not(r.status, 0, 'a key that is not a recipient fails');
  t.match(r.stdout, /E_AGE_NO_IDENTITY/, 'E_AGE_NO_IDENTITY');
  const m = snapferry(['restore', '--json', '--repo', repo, '19990101T000000Z-abcdef', '--identity', key, '--target', join(work, 'nope')]);
  t.equal(m.status, 3, 'an unknown archive: exit 3');
  t.match(m.stdout, /E_ARCHIVE_NOT_FOUND/, 'E_ARCHIVE_NOT_FOUND');
  const nb = snapferry(['backup', vmx, '--repo', repo]);
  t.equal(nb.status, 2, 'a backup without a recipient is a usage error');
});
