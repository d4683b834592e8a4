/**
 * The tar writer against the oracle a user has: stock GNU tar 1.34. We write an archive holding
 * every kind of entry and awkward value, extract it with `tar --xattrs -xpSf` as root and compare
 * lstat, link targets, hard-link inodes, xattr bytes and file bytes; `tar -tvf --full-time` must
 * list what we wrote. The other way round, our reader parses what GNU tar writes (pax format,
 * sparse 1.0, long names, xattrs) and readEntryAt at each offset agrees with the streaming reader.
 */
import t from 'tap';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { closeSync, createReadStream, lstatSync, mkdirSync, mkdtempSync, openSync, readFileSync, readSync, readlinkSync, rmSync, symlinkSync, linkSync, writeFileSync, writeSync, fstatSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TarWriter, type TarEntry } from '../../src/archive/tar/writer.js';
import { readEntryAt, readMemberRange, readTar } from '../../src/archive/tar/reader.js';
import type { ByteSink, RandomAccess } from '../../src/archive/types.js';
import { requireTool } from '../helpers/images.js';

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

/** A ByteSink onto a file, counting writes (the writer batches headers). */
class FileSink implements ByteSink {
  writes = 0;
  private constructor(private readonly fh: FileHandle) {}
  static async open(path: string): Promise<FileSink> {
    return new FileSink(await open(path, 'w'));
  }
  async write(chunk: Buffer): Promise<void> {
    this.writes++;
    await this.fh.write(chunk);
  }
  async end(): Promise<void> {
    await this.fh.close();
  }
}

function fileRA(path: string): RandomAccess & { close(): void } {
  const fd = openSync(path, 'r');
  const size = fstatSync(fd).size;
  return {
    size,
    async read(offset: number, length: number) {
      const b = Buffer.alloc(length);
      let got = 0;
      while (got < length) {
        const n = readSync(fd, b, got, length - got, offset + got);
        if (n === 0) throw new Error(`short read at ${offset + got}`);
        got += n;
      }
      return b;
    },
    close: () => closeSync(fd),
  };
}

function pattern(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    b[i] = x & 0xff;
  }
  return b;
}

async function* chunked(b: Buffer, size: number): AsyncIterable<Buffer> {
  for (let i = 0; i < b.length; i += size) yield b.subarray(i, i + size);
}

/** getfattr's view of every xattr of a path: name -> hex bytes. */
function xattrsOf(path: string): Map<string, string> {
  const out = execFileSync('getfattr', ['-h', '-d', '-m', '-', '-e', 'hex', '--absolute-names', path], { encoding: 'latin1' });
  const m = new Map<string, string>();
  for (const line of out.split('\n')) {
    const eq = line.lastIndexOf('=0x') >= 0 ? line.lastIndexOf('=0x') : line.indexOf('=');
    if (line.startsWith('#') || eq < 0) continue;
    // getfattr writes '=' and other specials in names as \ooo octal escapes.
    const name = line.slice(0, eq).replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
    m.set(name, line.slice(eq + 1).replace(/^0x/, ''));
  }
  return m;
}

const sec = 1_000_000_000n;
const longDirs = Array.from({ length: 6 }, (_, i) => `level-${i}-${'d'.repeat(40)}`).join('/');
const data1000 = pattern(1000, 1);
const data200k = pattern(200 * 1024 + 7, 2);
const sparseSegs = [
  { offset: 0, length: 4096 },
  { offset: 1 * GiB + 123, length: 1000 },
  { offset: 5 * GiB - 100, length: 100 },
];
const sparseBytes = sparseSegs.map((s, i) => pattern(s.length, 10 + i));
const holeEndSegs = [{ offset: 1 * MiB, length: 3000 }];
const holeEndBytes = [pattern(3000, 20)];
const nonUtf8 = Buffer.concat([Buffer.from('d/bad-'), Buffer.from([0xff, 0xfe]), Buffer.from('.bin')]);
const binXattr = Buffer.from([0x00, 0x01, 0xff, 0x00, 0x0a, 0x3d, 0x00]);

interface Case {
  entry: TarEntry;
  data?: Buffer | (() => AsyncIterable<Buffer>);
  content?: Buffer;
}

const base = { uid: 1000, gid: 1000, mtimeNs: 1_700_000_000n * sec };
const cases: Case[] = [
  { entry: { ...base, path: 'd', type: 'dir', mode: 0o755 } },
  { entry: { ...base, path: `d/${'a'.repeat(150)}.txt`, type: 'file', mode: 0o644, size: 1000 }, data: data1000, content: data1000 },
  { entry: { ...base, path: `d/${longDirs}/${'f'.repeat(90)}`, type: 'file', mode: 0o600, size: 5 }, data: Buffer.from('long\n'), content: Buffer.from('long\n') },
  { entry: { ...base, path: 'd/日本語-файл-ελληνικά.txt', type: 'file', mode: 0o644, size: 3 }, data: Buffer.from('utf'), content: Buffer.from('utf') },
  { entry: { ...base, path: nonUtf8, type: 'file', mode: 0o644, size: 4 }, data: Buffer.from('ffe\n'), content: Buffer.from('ffe\n') },
  { entry: { ...base, path: 'd/back\\slash', type: 'file', mode: 0o644, size: 1 }, data: Buffer.from('\\'), content: Buffer.from('\\') },
  { entry: { ...base, path: 'd/x:colon', type: 'file', mode: 0o644, size: 1 }, data: Buffer.from('x'), content: Buffer.from('x') },
  { entry: { ...base, path: 'd/ends:', type: 'file', mode: 0o644, size: 1 }, data: Buffer.from(':'), content: Buffer.from(':') },
  { entry: { ...base, path: 'd/mode0000', type: 'file', mode: 0o0000, size: 0 }, content: Buffer.alloc(0) },
  { entry: { ...base, path: 'd/setuid', type: 'file', mode: 0o4755, size: 2 }, data: Buffer.from('su'), content: Buffer.from('su') },
  { entry: { ...base, path: 'd/setgid-sticky', type: 'file', mode: 0o3751, size: 0 }, content: Buffer.alloc(0) },
  { entry: { ...base, path: 'd/bigids', type: 'file', mode: 0o640, uid: 3_000_000_000, gid: 2_097_152, size: 0 }, content: Buffer.alloc(0) },
  { entry: { ...base, path: 'd/owner-names', type: 'file', mode: 0o640, uname: 'a-very-long-user-name-that-does-not-fit-32', gname: 'grüppe', size: 0 }, content: Buffer.alloc(0) },
  { entry: { ...base, path: 'd/ns', type: 'file', mode: 0o644, mtimeNs: 1_700_000_000_123_456_789n, atimeNs: 1_600_000_000_987_654_321n, size: 0 }, content: Buffer.alloc(0) },
  { entry: { ...base, path: 'd/pre1970', type: 'file', mode: 0o644, mtimeNs: -31_536_000n * sec - 500_000_000n, size: 0 }, content: Buffer.alloc(0) },
  { entry: { ...base, path: 'd/pre1970-whole', type: 'file', mode: 0o644, mtimeNs: -1n * sec, size: 0 }, content: Buffer.alloc(0) },
  { entry: { ...base, path: 'd/past2038', type: 'file', mode: 0o644, mtimeNs: 4_102_444_800n * sec + 999_999_999n, size: 0 }, content: Buffer.alloc(0) },
  { entry: { ...base, path: 'd/past-octal', type: 'file', mode: 0o644, mtimeNs: 9_000_000_000n * sec, size: 0 }, content: Buffer.alloc(0) },
  { entry: { ...base, path: 'd/empty', type: 'file', mode: 0o644, size: 0 }, data: Buffer.alloc(0), content: Buffer.alloc(0) },
  { entry: { ...base, path: 'd/chunked-200k', type: 'file', mode: 0o644, size: data200k.length }, data: () => chunked(data200k, 777), content: data200k },
  { entry: { ...base, path: 'd/chunked-big', type: 'file', mode: 0o644, size: data200k.length }, data: () => chunked(data200k, 150_000), content: data200k },
  { entry: { ...base, path: 'd/link-short', type: 'symlink', mode: 0o777, linkTarget: 'x:colon' } },
  { entry: { ...base, path: 'd/link-long', type: 'symlink', mode: 0o777, linkTarget: `../${'t'.repeat(300)}/target` } },
  { entry: { ...base, path: 'd/link-nonutf8', type: 'symlink', mode: 0o777, linkTarget: Buffer.from([0x62, 0xff, 0x61]) } },
  { entry: { ...base, path: 'd/hard', type: 'hardlink', mode: 0o644, linkTarget: `d/${'a'.repeat(150)}.txt` } },
  { entry: { ...base, path: 'd/fifo', type: 'fifo', mode: 0o620 } },
  { entry: { ...base, path: 'd/null-ish', type: 'chardev', mode: 0o666, devMajor: 1, devMinor: 3 } },
  { entry: { ...base, path: 'd/loop-ish', type: 'blockdev', mode: 0o660, devMajor: 7, devMinor: 200 } },
  {
    entry: { ...base, path: 'd/xattrs', type: 'file', mode: 0o644, size: 2, xattrs: [['user.bin', binXattr], ['user.text', Buffer.from('hello')], ['user.a=b%c', Buffer.from('eq')], ['user.empty', Buffer.alloc(0)]] },
    data: Buffer.from('xa'),
    content: Buffer.from('xa'),
  },
  { entry: { ...base, path: 'd/dosattrs', type: 'file', mode: 0o644, size: 0, pax: [['SNAPFERRY.ntfs.attributes', '0x00000021']] }, content: Buffer.alloc(0) },
  {
    entry: { ...base, path: 'd/sparse-5g', type: 'file', mode: 0o644, size: 5 * GiB, sparse: sparseSegs },
    data: () => (async function* () { for (const b of sparseBytes) yield* chunked(b, 1500); })(),
  },
  { entry: { ...base, path: 'd/sparse-hole-end', type: 'file', mode: 0o644, size: 10 * MiB, sparse: holeEndSegs }, data: holeEndBytes[0] },
  { entry: { ...base, path: 'd/sparse-all-hole', type: 'file', mode: 0o644, size: 3 * MiB, sparse: [] } },
];

function sparseContentAt(segs: { offset: number; length: number }[], bytes: Buffer[], offset: number, length: number): Buffer {
  const out = Buffer.alloc(length);
  segs.forEach((s, i) => {
    const from = Math.max(s.offset, offset);
    const to = Math.min(s.offset + s.length, offset + length);
    if (to > from) bytes[i]!.copy(out, from - offset, from - s.offset, to - s.offset);
  });
  return out;
}

const work = mkdtempSync(join(tmpdir(), 'snapferry-tar-'));
t.teardown(() => rmSync(work, { recursive: true, force: true }));

t.test('our archive, extracted by stock GNU tar 1.34, restores every entry byte for byte', async (t) => {
  requireTool('tar', 'getfattr');
  t.match(execFileSync('tar', ['--version'], { encoding: 'utf8' }), /GNU tar\) 1\.34/, 'the oracle is GNU tar 1.34');
  const archive = join(work, 'ours.tar');
  const sink = await FileSink.open(archive);
  const w = new TarWriter(sink);
  const results = [];
  for (const c of cases) {
    const data = typeof c.data === 'function' ? c.data() : c.data;
    results.push(await w.add(c.entry, data));
  }
  const { size } = await w.finish();
  t.equal(size, lstatSync(archive).size, 'finish() reports the bytes written');
  t.equal(size % 512, 0, 'whole blocks');
  t.ok(sink.writes < cases.length, `headers and small data batched: ${sink.writes} sink writes for ${cases.length} entries`);
  for (let i = 1; i < results.length; i++) t.ok(results[i]!.headerOffset >= results[i - 1]!.dataOffset + results[i - 1]!.storedSize && results[i]!.dataOffset > results[i]!.headerOffset, 'offsets increase');

  const out = join(work, 'x');
  mkdirSync(out);
  // GNU tar 1.34 knows neither hdrcharset (it takes the raw bytes anyway: the non-UTF-8 names below
  // come back exact) nor our SNAPFERRY.* records: it extracts and warns, exit 0. Its timestamp
  // warnings are about the data (1968, 2100). Each warning class is silenced by name; with those
  // flags nothing at all may be reported, and without them nothing but those classes.
  const x = spawnSync('tar', ['--xattrs', '--xattrs-include=*', '--numeric-owner', '--warning=no-unknown-keyword', '--warning=no-timestamp', '-xpSf', archive, '-C', out], { encoding: 'latin1' });
  t.equal(x.status, 0, `tar -x exits 0 (stderr: ${x.stderr})`);
  t.equal(x.stderr, '', 'tar -x prints nothing with the two warning classes off');
  const loud = spawnSync('tar', ['--xattrs', '-xpSf', archive, '-C', mkdtempSync(join(work, 'loud-'))], { encoding: 'latin1' });
  t.equal(loud.status, 0, 'tar -x without flags exits 0 too');
  const lines = loud.stderr.split('\n').filter(Boolean);
  t.ok(lines.some((l) => l.includes("keyword 'hdrcharset'")) && lines.some((l) => l.includes("keyword 'SNAPFERRY.ntfs.attributes'")), 'the unknown-keyword warnings are there');
  for (const l of lines) t.match(l, /^tar: (Ignoring unknown extended header keyword '(hdrcharset|SNAPFERRY\.[^']+)'|.*implausibly old time stamp|.*in the future)/, `only a known warning class: ${l.slice(0, 80)}`);

  for (const c of cases) {
    const e = c.entry;
    const rel = Buffer.isBuffer(e.path) ? e.path : Buffer.from(e.path);
    const p = Buffer.concat([Buffer.from(out + '/'), rel]);
    const name = rel.toString('latin1');
    const st = lstatSync(p, { bigint: true });
    const kinds = { file: st.isFile(), dir: st.isDirectory(), symlink: st.isSymbolicLink(), hardlink: st.isFile(), chardev: st.isCharacterDevice(), blockdev: st.isBlockDevice(), fifo: st.isFIFO() };
    t.ok(kinds[e.type], `${name}: is a ${e.type}`);
    if (e.type === 'symlink') {
      const target = readlinkSync(p, { encoding: 'buffer' });
      t.same(target, Buffer.isBuffer(e.linkTarget) ? e.linkTarget : Buffer.from(e.linkTarget!), `${name}: symlink target`);
      t.equal(st.mtimeNs, e.mtimeNs, `${name}: symlink mtime`);
      continue;
    }
    if (e.type === 'hardlink') {
      const target = lstatSync(Buffer.concat([Buffer.from(out + '/'), Buffer.from(e.linkTarget as string)]), { bigint: true });
      t.equal(st.ino, target.ino, `${name}: same inode as its target`);
      t.equal(st.nlink, 2n, `${name}: nlink 2`);
      continue;
    }
    t.equal(Number(st.mode & 0o7777n).toString(8), e.mode.toString(8), `${name}: mode ${e.mode.toString(8)}`);
    t.equal(Number(st.uid), e.uid, `${name}: uid`);
    t.equal(Number(st.gid), e.gid, `${name}: gid`);
    if (e.type !== 'dir') t.equal(st.mtimeNs, e.mtimeNs, `${name}: mtime to the nanosecond`);
    if (e.type === 'chardev' || e.type === 'blockdev') {
      t.equal(Number(st.rdev >> 8n) & 0xfff, e.devMajor, `${name}: major`);
      t.equal(Number((st.rdev & 0xffn) | ((st.rdev >> 12n) & 0xfff00n)), e.devMinor, `${name}: minor`);
    }
    if (e.type === 'file') {
      t.equal(Number(st.size), e.size, `${name}: size`);
      if (c.content) t.same(readFileSync(p), c.content, `${name}: bytes`);
    }
    if (e.xattrs) {
      const got = xattrsOf(p.toString('latin1'));
      for (const [k, v] of e.xattrs) t.equal(got.get(k) ?? (v.length === 0 && !got.has(k) ? 'missing' : undefined), v.length === 0 ? '' : v.toString('hex'), `${name}: xattr ${k}`);
    }
  }
  // The directory's mtime (set after its contents by tar).
  t.equal(lstatSync(join(out, 'd'), { bigint: true }).mtimeNs, cases[0]!.entry.mtimeNs, 'd: directory mtime');

  // Sparse files: small on disk, the right bytes at the segments, zeros elsewhere.
  const sp = join(out, 'd/sparse-5g');
  const sst = lstatSync(sp);
  t.equal(sst.size, 5 * GiB, 'sparse-5g: 5 GiB logical');
  t.ok(sst.blocks * 512 < 1 * MiB, `sparse-5g: ${sst.blocks * 512} bytes allocated`);
  const fd = openSync(sp, 'r');
  for (const [off, len] of [[0, 8192], [GiB + 123 - 50, 1100], [5 * GiB - 4096, 4096], [3 * GiB, 4096]] as const) {
    const b = Buffer.alloc(len);
    readSync(fd, b, 0, len, off);
    t.same(b, sparseContentAt(sparseSegs, sparseBytes, off, len), `sparse-5g: bytes at ${off}+${len}`);
  }
  closeSync(fd);
  const he = readFileSync(join(out, 'd/sparse-hole-end'));
  t.equal(he.length, 10 * MiB, 'sparse-hole-end: truncated to its size (final hole)');
  t.same(he, sparseContentAt(holeEndSegs, holeEndBytes, 0, 10 * MiB), 'sparse-hole-end: bytes');
  t.same(readFileSync(join(out, 'd/sparse-all-hole')), Buffer.alloc(3 * MiB), 'sparse-all-hole: zeros');

  const list = execFileSync('tar', ['--full-time', '--numeric-owner', '-tvf', archive], { encoding: 'latin1' });
  const line = (name: string) => list.split('\n').find((l) => l.endsWith(` ${name}`) || l.includes(` ${name} -> `) || l.includes(` ${name} link to `)) ?? '';
  t.match(line('d/sparse-5g'), / 5368709120 /, 'tar -tv lists the sparse file with its real size');
  t.match(line('d/mode0000'), /^---------- 1000\/1000/, 'tar -tv: mode 0000');
  t.match(line('d/setuid'), /^-rwsr-xr-x /, 'tar -tv: setuid');
  t.match(line('d/bigids'), / 3000000000\/2097152 /, 'tar -tv: big ids');
  t.match(line('d/ns'), / 2023-11-14 22:13:20\.123456789 /, 'tar -tv: nanoseconds');
  // (GNU tar 1.34 lists -31536000.5 as "1969-01-01 00:00:00.5" -- a quirk of its listing of negative
  // fractional times; the extracted mtime above is exact. The whole-second case lists plainly.)
  t.match(line('d/pre1970-whole'), / 1969-12-31 23:59:59 /, 'tar -tv: before 1970');
  t.match(line('d/past2038'), / 2100-01-01 00:00:00\.999999999 /, 'tar -tv: past 2038');
  t.match(line('d/'), /^drwxr-xr-x /, 'tar -tv: the directory with a trailing slash');
  t.match(line('d/link-long'), new RegExp(`-> \\.\\./t{300}/target$`), 'tar -tv: long symlink target');
  t.match(list, / d\/hard link to d\/a{150}\.txt/, 'tar -tv: hard link');
  t.match(line('d/fifo'), /^prw--w---- /, 'tar -tv: fifo');
  const named = execFileSync('tar', ['-tvf', archive], { encoding: 'utf8' }).split('\n').find((l) => l.endsWith(' d/owner-names')) ?? '';
  t.match(named, / a-very-long-user-name-that-does-not-fit-32\/grüppe /, 'tar -tv: a 42-byte uname and a UTF-8 gname (PAX uname/gname)');
  t.match(line('d/null-ish'), /^crw-rw-rw- 1000\/1000 +1,3 /, 'tar -tv: char device');

  // Our reader over our archive: the entries we wrote, at the offsets add() returned.
  let i = 0;
  const ra = fileRA(archive);
  for await (const m of readTar(createReadStream(archive, { highWaterMark: 4096 + 17 }))) {
    const c = cases[i]!;
    const r = results[i]!;
    const e = c.entry;
    const want = Buffer.isBuffer(e.path) ? e.path : Buffer.from(e.path);
    t.same(m.entry.path, want, `reader: path of ${want.toString('latin1').slice(0, 40)}`);
    t.equal(m.headerOffset, r.headerOffset, 'reader: headerOffset as add() said');
    t.equal(m.dataOffset, r.dataOffset, 'reader: dataOffset as add() said');
    t.equal(m.entry.type, e.type);
    t.equal(m.entry.mode, e.mode);
    t.equal(m.entry.uid, e.uid);
    t.equal(m.entry.mtimeNs, e.mtimeNs);
    if (e.xattrs) t.same(m.entry.xattrs, e.xattrs, 'reader: xattrs');
    if (e.uname !== undefined) t.same(m.entry.uname, Buffer.from(e.uname), 'reader: uname');
    if (e.gname !== undefined) t.same(m.entry.gname, Buffer.from(e.gname), 'reader: gname');
    if (e.pax) t.same(m.entry.pax, e.pax.map(([k, v]) => [k, Buffer.from(v)]), 'reader: extra records');
    if (e.type === 'file') {
      t.equal(m.entry.size, e.size, 'reader: logical size');
      const chunks: Buffer[] = [];
      let next = 0;
      for await (const ch of m.data) {
        if (!e.sparse) t.equal(ch.offset, next, 'contiguous');
        next = ch.offset + ch.bytes.length;
        chunks.push(Buffer.from(ch.bytes));
      }
      const got = Buffer.concat(chunks);
      if (c.content) t.same(got, c.content, 'reader: data');
      else if (e.sparse) t.same(got, Buffer.concat(c.data === undefined ? [] : e.path === 'd/sparse-5g' ? sparseBytes : holeEndBytes), 'reader: sparse segment bytes');
      const at = await readEntryAt(ra, r.headerOffset);
      t.same(at.entry, m.entry, 'readEntryAt: the same entry');
      if (e.sparse) {
        for (const [off, len] of [[0, 5000], [GiB + 100, 2000], [(e.size ?? 0) - 777, 777]] as const) {
          if (off < 0 || off + len > e.size!) continue;
          const segs = e.path === 'd/sparse-5g' ? sparseSegs : e.path === 'd/sparse-hole-end' ? holeEndSegs : [];
          const bytes = e.path === 'd/sparse-5g' ? sparseBytes : holeEndBytes;
          t.same(await readMemberRange(ra, at, off, len), sparseContentAt(segs, bytes, off, len), `readMemberRange ${e.path} ${off}+${len}`);
        }
      } else if (c.content && c.content.length > 10) {
        t.same(await readMemberRange(ra, at, 3, c.content.length - 10), c.content.subarray(3, c.content.length - 7), 'readMemberRange: a middle range');
      }
    }
    i++;
  }
  ra.close();
  t.equal(i, cases.length, 'reader: every entry');
});

t.test('GNU tar --format=pax -cS archives read back: entries, bytes, readEntryAt agree', async (t) => {
  requireTool('tar', 'setfattr');
  const src = join(work, 'gnu-src');
  mkdirSync(src);
  const longName = `${'n'.repeat(120)}/${'m'.repeat(120)}/${'o'.repeat(120)}.dat`;
  mkdirSync(join(src, 'n'.repeat(120), 'm'.repeat(120)), { recursive: true });
  const files: Record<string, Buffer> = {
    'small.txt': Buffer.from('hello\n'),
    [longName]: pattern(5000, 3),
    'ελληνικά.txt': pattern(513, 4),
  };
  for (const [n, b] of Object.entries(files)) writeFileSync(join(src, n), b);
  // Sparse: data, a hole, data, a final hole (GNU writes a (size,0) terminator).
  const sparsePath = join(src, 'sparse.img');
  const sfd = openSync(sparsePath, 'w');
  writeSync(sfd, pattern(8192, 5), 0, 8192, 0);
  writeSync(sfd, pattern(4096, 6), 0, 4096, 40 * MiB);
  closeSync(sfd);
  execFileSync('truncate', ['-s', String(64 * MiB), sparsePath]);
  symlinkSync('small.txt', join(src, 'sym'));
  linkSync(join(src, 'small.txt'), join(src, 'hard'));
  execFileSync('setfattr', ['-n', 'user.bin', '-v', '0x00ff00', join(src, 'small.txt')]);
  const archive = join(work, 'gnu.tar');
  execFileSync('tar', ['--format=pax', '--xattrs', '-cSf', archive, '-C', src, '.']);

  const ra = fileRA(archive);
  let count = 0;
  const seen = new Set<string>();
  for await (const m of readTar(createReadStream(archive, { highWaterMark: 1000 }))) {
    count++;
    const rel = m.entry.path.toString('utf8').replace(/^\.\/?/, '');
    const label = rel.slice(0, 40);
    t.comment(`member ${label}`);
    seen.add(rel);
    const p = join(src, rel);
    const st = lstatSync(p, { bigint: true });
    t.equal(m.entry.mode, Number(st.mode & 0o7777n), `${rel}: mode`);
    t.equal(m.entry.mtimeNs, st.mtimeNs, `${rel}: mtime ns`);
    t.equal(m.entry.uid, Number(st.uid), `${rel}: uid`);
    if (m.entry.type === 'symlink') t.same(m.entry.linkTarget, Buffer.from('small.txt'), 'symlink target');
    if (m.entry.type === 'file') {
      t.equal(m.entry.size, Number(st.size), `${rel}: size`);
      const whole = readFileSync(p);
      const got = Buffer.alloc(m.entry.size);
      for await (const ch of m.data) ch.bytes.copy(got, ch.offset);
      t.ok(got.equals(whole), `${rel}: bytes`);
      if (rel === 'sparse.img') {
        t.ok(m.entry.sparse && m.entry.sparse.length >= 2, `sparse.img read as sparse 1.0 (${m.entry.sparse?.length} segments)`);
        t.ok(m.storedSize < 1 * MiB, 'sparse.img: stored small');
      }
      const at = await readEntryAt(ra, m.headerOffset);
      t.same(at.entry, m.entry, `${rel}: readEntryAt agrees`);
      const off = Math.floor(m.entry.size / 3);
      const len = Math.min(70_000, m.entry.size - off);
      t.ok((await readMemberRange(ra, at, off, len)).equals(whole.subarray(off, off + len)), `${rel}: readMemberRange`);
    }
    if (rel === 'small.txt' || rel === 'hard') {
      if (m.entry.type === 'file') t.same(m.entry.xattrs, [['user.bin', Buffer.from([0, 0xff, 0])]], 'xattr from GNU tar');
      else t.equal(m.entry.type, 'hardlink', 'the second name is a hard link');
    }
  }
  ra.close();
  for (const n of [...Object.keys(files), 'sparse.img', 'sym', 'hard']) t.ok(seen.has(n), `listed ${n.slice(0, 40)}`);
  t.ok(count >= 9, `${count} members`);
});

t.test('a file of 8 GiB + 1 (past the octal size field): PAX size, listed by GNU tar from a pipe', async (t) => {
  const size = 8 * GiB + 1;
  const tar = spawn('tar', ['-tvf', '-'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  tar.stdout.on('data', (b: Buffer) => (out += b.toString('latin1')));
  tar.stderr.on('data', (b: Buffer) => (err += b.toString('latin1')));
  const head: Buffer[] = [];
  const sink: ByteSink = {
    write: (chunk) =>
      new Promise((resolve, reject) => {
        if (head.length < 4) head.push(Buffer.from(chunk.subarray(0, 4096)));
        tar.stdin.write(chunk, (e) => (e ? reject(e) : resolve()));
      }),
    end: () => new Promise((resolve) => tar.stdin.end(resolve)),
  };
  const w = new TarWriter(sink);
  const mib = Buffer.alloc(MiB, 0x5a);
  const r = await w.add({ path: 'big.img', type: 'file', mode: 0o600, uid: 0, gid: 0, mtimeNs: 1_700_000_000n * sec, size }, (async function* () {
    for (let left = size; left > 0; left -= Math.min(left, MiB)) yield mib.subarray(0, Math.min(left, MiB));
  })());
  await w.finish();
  const code = await new Promise<number | null>((resolve) => tar.on('close', resolve));
  t.equal(code, 0, `tar -tv exits 0 (${err})`);
  t.match(out, / 8589934593 2023-11-14 22:13 big\.img/, 'GNU tar lists 8589934593 bytes');
  const first = Buffer.concat(head);
  t.match(first.toString('latin1', 512, 1024), /\d+ size=8589934593\n/, 'the size is a PAX record');
  t.equal(first.toString('latin1', r.dataOffset - 512 + 124, r.dataOffset - 512 + 136), '00000000000\0', 'the ustar size field holds 0');
});
