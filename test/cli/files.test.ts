/**
 * ls, cat and stat end to end (the built CLI), each compared with a real oracle on images real
 * tools made: the kernel's ext4 (loop mounts of qemu-img's raw output of the sample VM's chain, of
 * images/ext.sh's feature-rich image, and of a journal the kernel itself recovers), ntfs-3g for
 * NTFS, coreutils (find, stat, sha256sum) to read the mounts. Errors carry their codes and exit
 * codes, output streams with backpressure, and no command changes a byte of any source.
 */
import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { Writable } from 'node:stream';
import { ROOT, fingerprint, image, qemuRaw, requireTool } from '../helpers/images.js';
import { snapferry } from '../helpers/cli.js';
import { S_IF, S_IFMT, type DirEntry, type FileSystem, type FileType, type Stat } from '../../src/fs/types.js';
import { MAX_WALK_DEPTH, walk, type LsRecord as LsJson, type WalkEntry, type WalkSkip } from '../../src/cli/ls.js';
import { CorruptStructureError } from '../../src/util/errors.js';
import { Sink } from '../../src/cli/cat.js';
import { parseTarget, splitStream } from '../../src/cli/target.js';
import { mountLoop, mountNtfs3g, mountRecovered } from '../helpers/mounts.js';

requireTool('qemu-img', 'sfdisk', 'mount', 'umount', 'losetup', 'find', 'stat', 'sha256sum', 'getfattr', 'ntfs-3g', 'bash', 'head');
if (process.getuid?.() !== 0) throw new Error('the kernel and ntfs-3g oracles need root for loop and FUSE mounts; this test does not skip');
if (!existsSync('/dev/fuse')) throw new Error('the ntfs-3g oracle needs /dev/fuse; this test does not skip');

const vm = image('sample-vm');
const top = join(vm, 'sample-000002.vmdk');
const vmx = join(vm, 'sample.vmx');
const extImg = join(image('ext'), 'ext4.img');
const journalImg = join(image('ext-journal'), 'ext4-64.img');
const ntfsImg = join(image('ntfs'), 'ntfs-4k.img');
const sources = [...readdirSync(vm).filter((f) => /\.(vmdk|vmx)$/.test(f)).map((f) => join(vm, f)), extImg, journalImg, ntfsImg];
const tmp = mkdtempSync(join(tmpdir(), 'snapferry-files-'));
t.teardown(() => rmSync(tmp, { recursive: true, force: true }));

let before: Record<string, string>;
t.before(async () => {
  before = await fingerprint(sources);
  snapferry(['--version']); // builds dist/ when src/ is newer
});

const BIN = join(ROOT, 'bin', 'snapferry.js');
/** The CLI with stdout as bytes (cat's output is binary). */
function snapferryBytes(args: string[]): { status: number; stdout: Buffer; stderr: string } {
  const r = spawnSync('node', [BIN, ...args], { maxBuffer: 256 << 20 });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr.toString('utf8') };
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

// ---- oracles ------------------------------------------------------------------------------------

function sh(script: string, cwd: string): Buffer {
  return execFileSync('bash', ['-c', `set -euo pipefail; ${script}`], { cwd, maxBuffer: 256 << 20, env: { ...process.env, TZ: 'UTC', LC_ALL: 'C' } });
}

interface Row {
  type: FileType;
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  size: number;
  ino: number;
  mtime: string;
  target?: string;
  sha256?: string;
}

const TYPE_OF_MODE = new Map<number, FileType>(Object.entries(S_IF).map(([k, v]) => [v, k as FileType]));

/** stat's "%y" with TZ=UTC ("2001-02-03 04:05:06.123456789 +0000") as ISO 8601: coreutils formats, we only re-punctuate. */
function isoOfStatTime(y: string): string {
  const m = /^(-?\d+-\d\d-\d\d) (\d\d:\d\d:\d\d\.\d{9}) \+0000$/.exec(y);
  if (!m) throw new Error(`unexpected stat time '${y}'`);
  return `${m[1]}T${m[2]}Z`;
}

/** Every entry below `mnt` as find + stat + sha256sum see it, keyed by its path's bytes ('/a/b', as latin1). */
function kernelView(mnt: string): Map<string, Row> {
  const rows = new Map<string, Row>();
  const key = (p: Buffer) => p.subarray(1).toString('latin1'); // './a/b' -> '/a/b'
  const records = (b: Buffer) => {
    const out: Buffer[] = [];
    let s = 0;
    for (let i = 0; i < b.length; i++) if (b[i] === 0) (out.push(b.subarray(s, i)), (s = i + 1));
    return out;
  };
  for (const rec of records(sh(`find . -mindepth 1 -print0 | xargs -0 -r stat --printf '%n\\t%f\\t%h\\t%u\\t%g\\t%s\\t%i\\t%y\\0'`, mnt))) {
    // No name in these images holds a tab: the first tab ends the path.
    const tab = rec.indexOf(9);
    const name = rec.subarray(0, tab);
    const [mode, nlink, uid, gid, size, ino, y] = rec.subarray(tab + 1).toString('latin1').split('\t');
    const m = parseInt(mode!, 16);
    rows.set(key(name), { type: TYPE_OF_MODE.get(m & S_IFMT)!, mode: m, nlink: +nlink!, uid: +uid!, gid: +gid!, size: +size!, ino: +ino!, mtime: isoOfStatTime(y!) });
  }
  for (const rec of records(sh(`find . -mindepth 1 -type l -printf '%p\\t%l\\0'`, mnt))) {
    const tab = rec.indexOf(9);
    rows.get(key(rec.subarray(0, tab)))!.target = rec.subarray(tab + 1).toString('utf8');
  }
  for (const rec of records(sh(`find . -mindepth 1 -type f -print0 | xargs -0 -r sha256sum -z`, mnt))) {
    rows.get(key(rec.subarray(66)))!.sha256 = rec.subarray(0, 64).toString('latin1');
  }
  return rows;
}

function jsonLines<T>(out: string): T[] {
  return out
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as T);
}

const keyOf = (e: LsJson) => (e.pathHex ? Buffer.from(e.pathHex, 'hex') : Buffer.from(e.path, 'utf8')).toString('latin1');

interface CompareOptions {
  /** Paths (as in the manifest) left out, each with its reason at the call. */
  ignore?: Set<string>;
  /** Compare directories' sizes and link counts (ntfs-3g makes its own up). */
  dirSizes?: boolean;
  /** Turns the oracle's symlink target into ours (ntfs-3g prefixes absolute targets with its mount point). */
  target?: (t: string) => string;
}

/** `ls -R --json --sha256` against the kernel's (or ntfs-3g's) view, entry for entry; returns the mismatches. */
function compareManifest(ours: LsJson[], theirs: Map<string, Row>, o: CompareOptions = {}): string[] {
  const bad: string[] = [];
  const seen = new Set<string>();
  for (const e of ours) {
    const k = keyOf(e);
    seen.add(k);
    if (o.ignore?.has(e.path)) continue;
    const r = theirs.get(k);
    if (!r) {
      bad.push(`${e.path}: listed by snapferry only`);
      continue;
    }
    const want: Partial<Row> = { type: r.type, mode: r.mode, uid: r.uid, gid: r.gid, ino: r.ino, mtime: r.mtime };
    const got: Partial<Row> = { type: e.type, mode: e.mode, uid: e.uid, gid: e.gid, ino: e.ino, mtime: e.mtime };
    if (r.type !== 'dir' || o.dirSizes !== false) Object.assign(want, { size: r.size, nlink: r.nlink }), Object.assign(got, { size: e.size, nlink: e.nlink });
    if (r.target !== undefined) {
      want.target = o.target ? o.target(r.target) : r.target;
      got.target = e.target;
      // A link's size is its target's length: the target as we render it.
      want.size = Buffer.byteLength(want.target);
    }
    if (r.sha256 !== undefined) (want.sha256 = r.sha256), (got.sha256 = e.sha256);
    for (const f of Object.keys(want) as (keyof Row)[]) if (want[f] !== got[f]) bad.push(`${e.path}: ${f}: snapferry ${String(got[f])}, oracle ${String(want[f])}`);
  }
  for (const k of theirs.keys()) if (!seen.has(k) && !o.ignore?.has(Buffer.from(k, 'latin1').toString('utf8'))) bad.push(`${Buffer.from(k, 'latin1').toString('utf8')}: listed by the oracle only`);
  return bad.slice(0, 30);
}

/** Pre-order: every entry's parent directory came before it (the walk streams a directory's contents right after it). */
function preOrderViolations(entries: LsJson[], root: string): string[] {
  const seen = new Set<string>([root]);
  const bad: string[] = [];
  for (const e of entries) {
    const k = keyOf(e);
    const parent = k.slice(0, k.lastIndexOf('/')) || '/';
    if (!seen.has(parent)) bad.push(e.path);
    seen.add(k);
  }
  return bad;
}

// ---- volumes ------------------------------------------------------------------------------------

t.test('ls without VOLUME lists the volumes with the partitions sfdisk reads from qemu-img raw output', async (t) => {
  const sf = JSON.parse(execFileSync('sfdisk', ['--json', qemuRaw(top)], { encoding: 'utf8' })).partitiontable.partitions as { start: number; size: number }[];
  const r = snapferry(['ls', '--json', top]);
  t.equal(r.status, 0, r.stderr);
  const vols = jsonLines<{ volume: string; start: number; size: number; filesystem: { kind: string; label?: string } }>(r.stdout);
  t.same(vols.map((v) => v.volume), ['p1', 'p2']);
  t.same(vols.map((v) => [v.start, v.size]), sf.map((p) => [p.start * 512, p.size * 512]));
  t.same(vols.map((v) => v.filesystem.kind), ['ext4', 'ntfs']);
  const text = snapferry(['ls', vmx]);
  t.equal(text.status, 0, text.stderr);
  t.match(text.stdout, /^scsi0:0\/p1\s+160 MiB\s+ext4\s+guestroot$/m, 'a .vmx shows each volume with its disk id');
  t.equal(snapferry(['ls', vmx, 'scsi0:0']).stdout, text.stdout, 'naming only the disk id lists its volumes');
});

// ---- ext: the sample VM -------------------------------------------------------------------------

t.test('ls -R --json --sha256 of the sample p1 equals the kernel mount of qemu-img raw output, entry for entry', async (t) => {
  const raw = qemuRaw(top);
  const vols = jsonLines<{ volume: string; start: number; size: number }>(snapferry(['ls', '--json', top]).stdout);
  const p1 = vols.find((v) => v.volume === 'p1')!;
  const mnt = mountLoop(t, raw, `ro,noload,offset=${p1.start},sizelimit=${p1.size}`);
  const r = snapferry(['ls', '-R', '--json', '--sha256', top, 'p1']);
  t.equal(r.status, 0, r.stderr);
  t.equal(r.stderr, '', 'nothing on stderr: the journal is clean');
  const ours = jsonLines<LsJson>(r.stdout);
  const theirs = kernelView(mnt);
  t.ok(theirs.size >= 50, `${theirs.size} entries in the kernel's view`);
  t.same(compareManifest(ours, theirs), [], 'every entry: type, mode, nlink, uid, gid, size, ino, mtime (ns), sha256');
  t.same(preOrderViolations(ours, '/'), [], 'pre-order: directories before their contents');
  t.ok(ours.some((e) => e.path === '/home/alice/docs/added-in-snapshot-2.bin'), 'the newest snapshot is what is read');
  t.notOk(ours.some((e) => e.path === '/home/alice/docs/report.bin'), 'a file deleted in a later snapshot is gone');

  // The same through the .vmx, with and without the disk id.
  const viaVmx = snapferry(['ls', '-R', '--json', '--sha256', vmx, 'p1']);
  t.equal(viaVmx.stdout, r.stdout, 'VOLUME through the .vmx');
  t.equal(snapferry(['ls', '-R', '--json', '--sha256', vmx, 'scsi0:0/p1']).stdout, r.stdout, 'DISKID/VOLUME through the .vmx');

  // A subdirectory lists its own entries only; a file lists itself.
  const docs = jsonLines<LsJson>(snapferry(['ls', '--json', top, 'p1/home/alice/docs']).stdout);
  t.same(docs.map((e) => e.path).sort(), readdirSync(join(mnt, 'home/alice/docs')).map((n) => `/home/alice/docs/${n}`).sort());
  const one = jsonLines<LsJson>(snapferry(['ls', '--json', top, 'p1/etc/hostname']).stdout);
  t.same(one.map((e) => e.path), ['/etc/hostname']);
});

t.test('cat of the sample p1 files equals the bytes the kernel reads from the mount', async (t) => {
  const raw = qemuRaw(top);
  const vols = jsonLines<{ volume: string; start: number; size: number }>(snapferry(['ls', '--json', top]).stdout);
  const p1 = vols.find((v) => v.volume === 'p1')!;
  const mnt = mountLoop(t, raw, `ro,noload,offset=${p1.start},sizelimit=${p1.size}`);
  for (const p of ['etc/hostname', 'var/log/messages', 'home/alice/docs/added-in-snapshot-1.bin', 'home/alice/docs/added-in-snapshot-2.bin', 'home/alice/docs/note-40.txt']) {
    const r = snapferryBytes(['cat', vmx, `p1/${p}`]);
    t.equal(r.status, 0, r.stderr);
    t.ok(r.stdout.equals(readFileSync(join(mnt, p))), `${p}: ${r.stdout.length} bytes equal the mount's`);
  }
});

// ---- ext: every feature images/ext.sh puts in ext4.img ------------------------------------------

t.test('ls -R --json --sha256 of ext4.img (symlinks, devices, non-UTF-8 names, 1960 and 2100 times, sparse, 3,000-entry htree) equals the kernel', async (t) => {
  const mnt = mountLoop(t, extImg, 'ro,noload');
  const r = snapferry(['ls', '-R', '--json', '--sha256', extImg, 'whole']);
  t.equal(r.status, 0, r.stderr);
  const ours = jsonLines<LsJson>(r.stdout);
  const theirs = kernelView(mnt);
  t.ok(theirs.size > 3000, `${theirs.size} entries in the kernel's view`);
  t.same(compareManifest(ours, theirs), [], 'every entry equals the kernel view');
  t.same(preOrderViolations(ours, '/'), [], 'pre-order');
  t.ok(ours.some((e) => e.pathHex !== undefined), 'a name that is not UTF-8 carries its bytes in pathHex');
  t.ok(ours.some((e) => e.mtime.startsWith('1960-06-01T12:00:00.5')), 'a time before 1970');

  // Text mode: the mode column is what coreutils' stat %A prints, and one entry is one line.
  const text = snapferry(['ls', '-R', extImg, 'whole']);
  t.equal(text.status, 0, text.stderr);
  const lines = text.stdout.split('\n').filter((l) => l !== '');
  t.equal(lines.length, ours.length, 'one line per entry (names with odd bytes escaped)');
  const modes = new Map<string, string>();
  for (const rec of sh(`find . -mindepth 1 -printf '%P\\0' | xargs -0 -r stat --printf '%A %n\\0'`, mnt).toString('latin1').split('\0')) {
    if (rec) modes.set(rec.slice(rec.indexOf(' ') + 1), rec.slice(0, rec.indexOf(' ')));
  }
  const wrong = ours.filter((e, i) => !e.pathHex && modes.get(Buffer.from(e.path.slice(1), 'utf8').toString('latin1')) !== lines[i]!.split(' ')[0]);
  t.same(wrong.map((e) => e.path), [], 'mode strings equal stat %A');
  t.match(text.stdout, /\/links\/rel -> \.\.\/hello\.txt$/m, "symlinks end in '-> target'");
  t.match(text.stdout, /\/names\/latin1-\\xe9t\\xe9-\\xff\\xfe$/m, 'bytes that are not UTF-8 print as \\xNN');
});

t.test('cat of ext4.img files equals the mount (a 10 MiB sparse file over several 1 MiB chunks, a fragmented file)', async (t) => {
  const mnt = mountLoop(t, extImg, 'ro,noload');
  for (const p of ['data/sparse', 'data/fragmented', 'data/seeded-300k.bin', 'hello.txt', 'empty-file', 'names/日本語-ünïcödé-Ω']) {
    const r = snapferryBytes(['cat', extImg, `whole/${p}`]);
    t.equal(r.status, 0, r.stderr);
    const want = readFileSync(join(mnt, p));
    t.equal(r.stdout.length, want.length, `${p}: ${want.length} bytes`);
    t.equal(sha256(r.stdout), sha256(want), `${p}: the same bytes`);
  }
});

t.test('stat --json equals coreutils stat on the mount: times at ns, inode, blocks, device numbers, xattr names, link target', async (t) => {
  const mnt = mountLoop(t, extImg, 'ro,noload');
  for (const p of ['hello.txt', 'times/ns', 'times/1960', 'times/2100', 'special/chr-big', 'special/blk', 'links/sym-200', 'xattr/big', 'xattr/ns', 'setuid', 'sticky', 'data/sparse', 'owner-70000']) {
    const r = snapferry(['stat', '--json', extImg, `whole/${p}`]);
    t.equal(r.status, 0, r.stderr);
    const s = JSON.parse(r.stdout);
    const [ino, mode, nlink, uid, gid, size, blocks, blksize, major, minor, x, y, z, w] = sh(`stat --printf '%i|%f|%h|%u|%g|%s|%b|%B|%Hr|%Lr|%x|%y|%z|%w' ${JSON.stringify(p)}`, mnt).toString('utf8').split('|');
    t.same(
      { ino: s.ino, mode: s.mode, nlink: s.nlink, uid: s.uid, gid: s.gid, size: s.size, allocated: s.allocatedSize, atime: s.atime, mtime: s.mtime, ctime: s.ctime, birthtime: s.birthtime },
      { ino: +ino!, mode: parseInt(mode!, 16), nlink: +nlink!, uid: +uid!, gid: +gid!, size: +size!, allocated: +blocks! * +blksize!, atime: isoOfStatTime(x!), mtime: isoOfStatTime(y!), ctime: isoOfStatTime(z!), birthtime: isoOfStatTime(w!) },
      `${p}: equals stat`,
    );
    t.equal(BigInt(s.mtimeNs), BigInt(sh(`stat --printf '%.9Y' ${JSON.stringify(p)}`, mnt).toString().replace('.', '')), `${p}: mtimeNs exact`);
    if (s.type === 'chardev' || s.type === 'blockdev') t.same([s.rdev.major, s.rdev.minor], [+major!, +minor!], `${p}: device ${major}:${minor}`);
    if (s.type === 'symlink') t.equal(s.target, sh(`readlink ${JSON.stringify(p)}`, mnt).toString().trimEnd(), `${p}: target`);
    const names = sh(`getfattr --absolute-names -h -m - ${JSON.stringify(p)} | grep -v '^#' | grep . || true`, mnt).toString().split('\n').filter(Boolean).sort();
    t.same([...s.xattrs].sort(), names, `${p}: xattr names equal getfattr`);
    if (s.type === 'file') t.equal(s.extents.bytes.data + s.extents.bytes.hole + s.extents.bytes.unwritten >= s.size || s.size === 0, true, `${p}: extents cover the file`);
  }
  const text = snapferry(['stat', extImg, 'whole/times/ns']);
  t.match(text.stdout, /^modify\s+2001-02-03T04:05:06\.123456789Z \(981173106123456789 ns\)$/m, 'text shows the ISO time and the exact ns');
  t.match(text.stdout, /^path\s+whole\/times\/ns$/m);
});

// ---- ext: journal replay ------------------------------------------------------------------------

t.test('an ext4 journal is replayed by default (the kernel recovery is the oracle), --no-replay reads it as it is; notes go to stderr only', async (t) => {
  const recovered = mountRecovered(t, journalImg);
  const asIs = mountLoop(t, journalImg, 'ro,noload');

  const r = snapferry(['ls', '-R', '--json', '--sha256', journalImg, 'whole']);
  t.equal(r.status, 0, r.stderr);
  t.same(compareManifest(jsonLines(r.stdout), kernelView(recovered)), [], 'replayed: the kernel view after its own recovery');
  const n = snapferry(['ls', '-R', '--json', '--sha256', '--no-replay', journalImg, 'whole']);
  t.equal(n.status, 0, n.stderr);
  t.same(compareManifest(jsonLines(n.stdout), kernelView(asIs)), [], '--no-replay: the kernel view with noload');
  t.not(r.stdout, n.stdout, 'the two views differ');

  const text = snapferry(['ls', '-R', journalImg, 'whole/home/bob']);
  t.match(text.stderr, /^whole: journal replayed: \d+ transactions, \d+ blocks$/m, 'text mode notes the replay on stderr');
  t.notMatch(text.stdout, /journal/, 'never on stdout');
  const plain = snapferry(['ls', '--no-replay', journalImg, 'whole']);
  t.match(plain.stderr, /^whole: journal needs recovery; not replayed$/m);
  const cat = snapferryBytes(['cat', journalImg, 'whole/home/bob/newdir/new2.txt']);
  t.equal(cat.status, 0, cat.stderr);
  t.ok(cat.stdout.equals(readFileSync(join(recovered, 'home/bob/newdir/new2.txt'))), 'cat reads a file only the journal holds');
  t.match(cat.stderr, /journal replayed/);
  t.equal(snapferry(['cat', '--no-replay', journalImg, 'whole/home/bob/newdir/new2.txt']).status, 3, 'without replay that file does not exist');
});

// ---- NTFS ---------------------------------------------------------------------------------------

t.test('ls -R --json --sha256 of an NTFS volume equals ntfs-3g (read-only, streams as xattrs)', async (t) => {
  const mnt = mountNtfs3g(t, ntfsImg);
  const r = snapferry(['ls', '-R', '--json', '--sha256', ntfsImg, 'whole']);
  const ours = jsonLines<LsJson>(r.stdout);
  // ntfs-3g without its WOF plugin shows a Windows "compact" file as a link to "unsupported reparse
  // tag 0x80000017"; the reader decompresses WOF, but this stub has no WofCompressedData stream, so
  // it says E_NTFS_WOF.
  const ignore = new Set(['/links/wof-stub.bin']);
  const unread = ours.filter((e) => e.error);
  t.same(unread.filter((e) => !ignore.has(e.path)).map((e) => `${e.path}: ${e.error!.code}`), [], 'every entry outside the WOF stub was read');
  t.equal(r.status, unread.length > 0 ? 1 : 0, 'exit code 1 exactly when an entry carries an error');
  const theirs = kernelView(mnt);
  t.ok(theirs.size > 2000, `${theirs.size} entries in ntfs-3g's view`);
  // ntfs-3g renders absolute link targets under its mount point; ours are volume-rooted.
  t.same(compareManifest(ours, theirs, { ignore, dirSizes: false, target: (x) => (x.startsWith(mnt) ? x.slice(mnt.length) : x) }), [], 'every entry equals ntfs-3g');
  t.same(preOrderViolations(ours, '/'), [], 'pre-order');
});

t.test('cat of NTFS files and :STREAM named streams equals ntfs-3g (streams through user.* xattrs)', async (t) => {
  const mnt = mountNtfs3g(t, ntfsImg);
  const big = snapferryBytes(['cat', ntfsImg, 'whole/big.bin']);
  t.equal(big.status, 0, big.stderr);
  t.equal(sha256(big.stdout), sha256(readFileSync(join(mnt, 'big.bin'))), `big.bin: ${big.stdout.length} bytes (several 1 MiB chunks)`);
  const streams = sh(`getfattr --absolute-names -m '^user\\.' ads.txt | grep '^user\\.' || true`, mnt).toString().split('\n').filter(Boolean);
  t.ok(streams.length >= 2, `ads.txt has streams ${streams.join(', ')}`);
  for (const x of streams) {
    const name = x.slice('user.'.length);
    const want = sh(`getfattr --absolute-names --only-values -n ${JSON.stringify(x)} ads.txt`, mnt);
    const r = snapferryBytes(['cat', ntfsImg, `whole/ads.txt:${name}`]);
    t.equal(r.status, 0, r.stderr);
    t.equal(sha256(r.stdout), sha256(want), `ads.txt:${name}: ${want.length} bytes equal ntfs-3g's`);
    t.ok(snapferryBytes(['cat', ntfsImg, `whole/ads.txt:${name}:$DATA`]).stdout.equals(want), `ads.txt:${name}:$DATA is the same stream`);
  }
  t.ok(snapferryBytes(['cat', ntfsImg, 'whole/ads.txt::$DATA']).stdout.equals(readFileSync(join(mnt, 'ads.txt'))), '::$DATA is the unnamed stream');
  const none = snapferry(['cat', '--json', ntfsImg, 'whole/ads.txt:no-such-stream']);
  t.equal(none.status, 3);
  t.equal(JSON.parse(none.stdout).error.code, 'E_FS_NO_STREAM');
  const st = JSON.parse(snapferry(['stat', '--json', ntfsImg, 'whole/ads.txt']).stdout);
  t.same([...st.ntfs.streams].sort(), streams.map((x) => x.slice(5)).sort(), 'stat lists the streams');
  t.same([...st.xattrs].sort(), [...streams].sort(), 'and the xattr names ntfs-3g shows');
  t.equal(snapferry(['cat', extImg, 'whole/hello.txt:x']).status, 3, ':STREAM is not recognised on ext');
});

t.test('the sample VM p2 (NTFS in a GPT partition) equals ntfs-3g on a loop device at its offset', async (t) => {
  const raw = qemuRaw(top);
  const vols = jsonLines<{ volume: string; start: number; size: number }>(snapferry(['ls', '--json', top]).stdout);
  const p2 = vols.find((v) => v.volume === 'p2')!;
  const loop = execFileSync('losetup', ['-o', String(p2.start), '-r', '-f', '--show', raw], { encoding: 'utf8' }).trim();
  t.teardown(() => void spawnSync('losetup', ['-d', loop]));
  const mnt = mountNtfs3g(t, loop);
  const r = snapferry(['ls', '-R', '--json', '--sha256', top, 'p2']);
  t.equal(r.status, 0, r.stderr);
  t.same(compareManifest(jsonLines(r.stdout), kernelView(mnt), { dirSizes: false }), []);
  for (const f of ['data-1.bin', 'data-2.bin']) t.ok(snapferryBytes(['cat', vmx, `p2/${f}`]).stdout.equals(readFileSync(join(mnt, f))), `cat ${f}`);
});

// ---- targets and errors -------------------------------------------------------------------------

t.test('a .vmx with two disks needs the disk id; unknown ids and volumes list what there is', async (t) => {
  const two = join(tmp, 'two.vmx');
  writeFileSync(two, `.encoding = "UTF-8"\nscsi0:0.present = "TRUE"\nscsi0:0.fileName = "${top}"\nscsi0:1.present = "TRUE"\nscsi0:1.fileName = "${extImg}"\n`);
  const vols = snapferry(['ls', two]);
  t.equal(vols.status, 0, vols.stderr);
  t.match(vols.stdout, /^scsi0:0\/p1 /m);
  t.match(vols.stdout, /^scsi0:1\/whole /m);
  const hello = snapferryBytes(['cat', two, 'scsi0:1/whole/hello.txt']);
  t.equal(hello.status, 0, hello.stderr);
  t.equal(hello.stdout.toString(), 'hello ext 10\n');
  t.equal(snapferryBytes(['cat', two, 'scsi0:0/p1/etc/hostname']).stdout.toString(), 'sample-vm-1\n', 'as images/sample-vm.sh wrote it');
  for (const target of ['p1/etc/hostname', 'scsi9:9/p1/etc']) {
    const r = snapferry(['cat', '--json', two, target]);
    t.equal(r.status, 3, target);
    const e = JSON.parse(r.stdout).error;
    t.equal(e.code, 'E_DISK_NOT_FOUND');
    t.same(e.data.available, ['scsi0:0', 'scsi0:1']);
  }
  const nv = snapferry(['ls', '--json', two, 'scsi0:1/p1']);
  t.equal(nv.status, 3);
  t.same(JSON.parse(nv.stdout).error.data, { volume: 'p1', available: ['whole'], disk: 'scsi0:1' });
});

t.test('errors carry their codes and exit codes: unknown volume, missing path, cat of a directory, a symlink, a device', async (t) => {
  const unknown = snapferry(['ls', '--json', top, 'p9/etc']);
  t.equal(unknown.status, 3);
  t.same(JSON.parse(unknown.stdout).error, { code: 'E_VOLUME_NOT_FOUND', message: "no volume 'p9'; there are p1, p2", data: { volume: 'p9', available: ['p1', 'p2'] } });
  t.match(snapferry(['ls', top, 'p9']).stderr, /^snapferry: E_VOLUME_NOT_FOUND: no volume 'p9'; there are p1, p2$/m, 'as text on stderr');

  const missing = snapferry(['cat', '--json', top, 'p1/etc/nope']);
  t.equal(missing.status, 3);
  t.equal(JSON.parse(missing.stdout).error.code, 'E_FS_NOT_FOUND');
  t.match(JSON.parse(missing.stdout).error.message, /^p1\/etc\/nope: /, 'the error names the path as typed');
  t.equal(snapferry(['stat', top, 'p1/etc/hostname/x']).status, 1, 'a file used as a directory: E_FS_NOT_DIR');

  const dir = snapferry(['cat', top, 'p1/etc']);
  t.equal(dir.status, 1);
  t.match(dir.stderr, /E_FS_IS_DIR/);
  t.equal(dir.stdout, '', 'nothing written');

  const mnt = mountLoop(t, extImg, 'ro,noload');
  const link = snapferry(['cat', '--json', extImg, 'whole/links/rel']);
  t.equal(link.status, 1);
  const le = JSON.parse(link.stdout).error;
  t.equal(le.code, 'E_FS_IS_SYMLINK');
  t.equal(le.data.target, execFileSync('readlink', [join(mnt, 'links/rel')], { encoding: 'utf8' }).trim(), 'it names the link target');
  t.equal(JSON.parse(snapferry(['cat', '--json', extImg, 'whole/special/fifo']).stdout).error.code, 'E_FS_NOT_FILE');

  const p2 = snapferry(['ls', '--json', join(tmp, 'nope.vmdk'), 'p1']);
  t.equal(p2.status, 3);
  t.equal(snapferry(['ls', top, 'p1', 'extra']).status, 2, 'too many arguments: usage');
  t.equal(snapferry(['cat', top]).status, 2);
  t.equal(snapferry(['cat', top, 'p1']).status, 1, 'cat of a volume root is cat of a directory');
  t.match(snapferry(['--help']).stdout, /snapferry ls DISK .*\n(.*\n)*.*snapferry cat DISK VOLUME\/PATH\[:STREAM\]/);
});

t.test('ls stops quietly when its reader goes away (ls -R | head)', async (t) => {
  const r = spawnSync('bash', ['-c', `node '${BIN}' ls -R --json '${extImg}' whole | head -n 2`], { encoding: 'utf8' });
  t.equal(r.stdout.split('\n').filter(Boolean).length, 2);
  t.equal(r.stderr, '', 'no error printed for a closed pipe');
});

// ---- the walk, in process -----------------------------------------------------------------------

/** A FileSystem of directories whose listings come from `children` on demand (nothing precomputed). */
function fakeFs(children: (ino: number) => AsyncIterable<DirEntry>, types: (ino: number) => FileType): FileSystem {
  const stat = async (ino: number): Promise<Stat> => {
    const type = types(ino);
    return { ino, type, mode: S_IF[type] | 0o755, nlink: 1, uid: 0, gid: 0, size: 0, allocatedSize: 0, atimeNs: 0n, mtimeNs: 0n, ctimeNs: 0n };
  };
  const none = async () => {
    throw new Error('not used');
  };
  return {
    info: { kind: 'ext4', blockSize: 4096, totalBlocks: 0, freeBlocks: 0, notes: [] },
    rootIno: 1,
    lookup: none,
    stat,
    readdir: children,
    read: async () => Buffer.alloc(0),
    readlink: none,
    listxattr: async () => [],
    getxattr: none,
    extents: async function* () {},
    close: async () => {},
  };
}

t.test('-R detects a directory that contains itself (by ino) and does not loop', async (t) => {
  // 1 -> a(2) -> b(3) -> back(1) and loop(3): both are cycles; x(4) is a file.
  const tree: Record<number, DirEntry[]> = {
    1: [{ name: 'a', ino: 2, type: 'dir' }],
    2: [{ name: 'b', ino: 3, type: 'dir' }, { name: 'x', ino: 4, type: 'file' }],
    3: [{ name: 'back', ino: 1, type: 'dir' }, { name: 'loop', ino: 3, type: 'dir' }],
  };
  const fs = fakeFs(async function* (ino) {
    yield* tree[ino] ?? [];
  }, (ino) => (ino === 4 ? 'file' : 'dir'));
  const items: (WalkEntry | WalkSkip)[] = [];
  for await (const i of walk(fs, 1, '/', true)) items.push(i);
  t.same(items.map((i) => (i.kind === 'entry' ? i.path : i.error.code)), ['/a', '/a/b', '/a/b/back', 'E_FS_DIR_CYCLE', '/a/b/loop', 'E_FS_DIR_CYCLE', '/a/x']);
  t.same(items.filter((i): i is WalkSkip => i.kind === 'skip').map((i) => i.error.data.ino), [1, 3]);
});

t.test(`-R stops descending at MAX_WALK_DEPTH (${MAX_WALK_DEPTH}) with E_FS_TOO_DEEP, on an endless chain of distinct directories`, async (t) => {
  // Directory n holds one directory n+1, forever: no ino repeats, so only the depth bound ends it.
  const fs = fakeFs(async function* (ino) {
    yield { name: 'd', ino: ino + 1, type: 'dir' };
  }, () => 'dir');
  let entries = 0;
  const skips: WalkSkip[] = [];
  for await (const i of walk(fs, 1, '/', true)) i.kind === 'entry' ? entries++ : skips.push(i);
  t.equal(entries, MAX_WALK_DEPTH, 'every level up to the bound is listed');
  t.same(skips.map((s) => [s.error.code, s.error.data.limit]), [['E_FS_TOO_DEEP', MAX_WALK_DEPTH]]);
});

t.test('an entry whose stat fails is reported and the walk goes on', async (t) => {
  const fs = fakeFs(async function* (ino) {
    if (ino === 1) yield* [{ name: 'bad', ino: 66, type: 'file' as const }, { name: 'good', ino: 2, type: 'file' as const }];
  }, (ino) => (ino === 1 ? 'dir' : 'file'));
  const stat = fs.stat.bind(fs);
  fs.stat = async (ino) => {
    if (ino === 66) throw new CorruptStructureError('E_NTFS_FIXUP', 'MFT record 66: update sequence mismatch', { record: 66 });
    return stat(ino);
  };
  const items: (WalkEntry | WalkSkip)[] = [];
  for await (const i of walk(fs, 1, '/', false)) items.push(i);
  t.same(items.map((i) => (i.kind === 'entry' ? i.path : `${i.error.code} ${i.error.data.path}`)), ['E_NTFS_FIXUP /bad', '/good']);
});

t.test('a 200,000-entry directory streams: the listing runs only a little ahead of a slow stdout (backpressure)', async (t) => {
  const N = 200_000;
  let produced = 0;
  let consumed = 0;
  let maxAhead = 0;
  const fs = fakeFs(async function* (ino) {
    if (ino !== 1) return;
    for (let i = 0; i < N; i++) {
      produced++;
      yield { name: `entry-${i}`, ino: 10 + i, type: 'file' };
    }
  }, (ino) => (ino === 1 ? 'dir' : 'file'));
  const slow = new Writable({
    highWaterMark: 4096,
    write(chunk: Buffer, _enc, cb) {
      consumed += chunk.toString().split('\n').length - 1;
      maxAhead = Math.max(maxAhead, produced - consumed);
      if (consumed % 1000 === 0) setTimeout(cb, 0);
      else setImmediate(cb);
    },
  });
  const sink = new Sink(slow);
  for await (const item of walk(fs, 1, '/', true)) if (item.kind === 'entry') await sink.write(item.path + '\n');
  await new Promise<void>((resolve) => slow.end(resolve));
  t.equal(consumed, N, 'every entry written');
  t.ok(maxAhead < 1000, `at most ${maxAhead} entries were listed before stdout took them`);
});

t.test('target parsing: disk ids, volumes, streams', async (t) => {
  t.same(parseTarget('p1/etc/hostname', []), { volume: 'p1', path: '/etc/hostname' });
  t.same(parseTarget('p1', []), { volume: 'p1', path: '/' });
  t.same(parseTarget(undefined, []), { path: '/' });
  t.same(parseTarget('scsi0:0/p2/a', ['scsi0:0']), { diskId: 'scsi0:0', volume: 'p2', path: '/a' });
  t.same(parseTarget('p2/a', ['scsi0:0']), { volume: 'p2', path: '/a' }, 'one disk: the id may be left out');
  t.throws(() => parseTarget('p2/a', ['scsi0:0', 'scsi0:1']), { code: 'E_DISK_NOT_FOUND' });
  t.throws(() => parseTarget('scsi9:9/p2/a', ['scsi0:0']), { code: 'E_DISK_NOT_FOUND', data: { disk: 'scsi9:9', available: ['scsi0:0'] } }, 'a wrong disk id, even on a one-disk VM');
  t.same(splitStream('/dir/file.txt:Zone.Identifier'), { path: '/dir/file.txt', stream: 'Zone.Identifier' });
  t.same(splitStream('/f:s:$DATA'), { path: '/f', stream: 's' });
  t.same(splitStream('/f::$DATA'), { path: '/f', stream: '' });
  t.equal(splitStream('/dir:x/file'), null, 'only the last component names a stream');
  t.equal(splitStream('/:x'), null);
});

// Subtests run in order: this one runs after every command above.
t.test('no command changed a byte of any source file', async (t) => {
  t.same(await fingerprint(sources), before, 'every source file kept its sha256');
});
