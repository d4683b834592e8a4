/**
 * The filesystem contract, stated once. checkAgainstTree walks a FileSystem of ours and a real
 * mount of the same image (the kernel's ext4, ntfs-3g) side by side: names, types, sizes, modes,
 * owners, link counts, times, symlink targets, sha256 of every file, xattrs; and on the way it
 * checks the invariants every implementation owes its consumers (FUSE, backup): lookup agrees with
 * readdir, stat agrees with the entry type, reads past the end are clipped, extents are ordered.
 * Every filesystem's tests call it on images made by real tools.
 */
import type { Test } from 'tap';
import { createHash } from 'node:crypto';
import { createReadStream, lstatSync, readdirSync, readlinkSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import type { FileSystem, FileType, Stat } from '../../src/fs/types.js';
import { S_IFMT } from '../../src/fs/types.js';

export interface ConformanceOptions {
  /** Compare permission and type bits (default true). */
  mode?: boolean;
  /** Compare uid/gid (default true). */
  owner?: boolean;
  /** Compare link counts (default true). */
  nlink?: boolean;
  /** Compare our inode numbers with the mount's st_ino (default false: FUSE peers renumber). */
  inodes?: boolean;
  /** Compare atime/mtime/ctime at this precision (default 'ns'); false to skip. */
  times?: 'ns' | '100ns' | 'us' | 's' | false;
  /** Which times to compare (default mtime and ctime; atime of a read-only mount is stable too). */
  which?: ('atime' | 'mtime' | 'ctime')[];
  /** Compare xattrs (default true), or only those whose name passes the filter. */
  xattrs?: boolean | ((name: string) => boolean);
  /** Paths (relative, '/'-rooted) left out of the comparison, with the reason in the caller. */
  ignore?: (path: string) => boolean;
  /** Stop after this many mismatches (default 20). */
  maxMismatches?: number;
}

export interface ConformanceSummary {
  entries: number;
  files: number;
  dirs: number;
  symlinks: number;
  other: number;
  bytes: number;
  xattrs: number;
  mismatches: string[];
}

const NS_PER: Record<'ns' | '100ns' | 'us' | 's', bigint> = { ns: 1n, '100ns': 100n, us: 1000n, s: 1_000_000_000n };

function typeOf(st: { isFile(): boolean; isDirectory(): boolean; isSymbolicLink(): boolean; isBlockDevice(): boolean; isCharacterDevice(): boolean; isFIFO(): boolean; isSocket(): boolean }): FileType {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'dir';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isBlockDevice()) return 'blockdev';
  if (st.isCharacterDevice()) return 'chardev';
  if (st.isFIFO()) return 'fifo';
  return 'socket';
}

async function sha256OfFile(path: Buffer): Promise<string> {
  const h = createHash('sha256');
  for await (const c of createReadStream(path)) h.update(c as Buffer);
  return h.digest('hex');
}

async function sha256Ours(fs: FileSystem, ino: number, size: number): Promise<string> {
  const h = createHash('sha256');
  const chunk = 1 << 20;
  for (let off = 0; off < size; off += chunk) {
    const b = await fs.read(ino, off, Math.min(chunk, size - off));
    if (b.length !== Math.min(chunk, size - off)) throw new Error(`short read at ${off}: ${b.length}`);
    h.update(b);
  }
  return h.digest('hex');
}

/** All xattrs under root, from one `getfattr -R` run: path -> name -> hex value. */
function oracleXattrs(root: string): Map<string, Map<string, string>> {
  const r = spawnSync('getfattr', ['-R', '-h', '-P', '-d', '-m', '-', '-e', 'hex', '--absolute-names', root], { encoding: 'utf8', maxBuffer: 1 << 30 });
  if (r.error) throw new Error(`getfattr is needed for the xattr comparison (apt-get install attr): ${r.error.message}`);
  const out = new Map<string, Map<string, string>>();
  let current: Map<string, string> | null = null;
  for (const line of r.stdout.split('\n')) {
    if (line.startsWith('# file: ')) {
      // getfattr escapes unusual bytes in names as octal \ooo
      // Keyed by the path's bytes (as latin1): getfattr prints non-ASCII bytes as octal escapes.
      const p = Buffer.from(line.slice(8), 'utf8').toString('latin1').replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
      current = new Map();
      out.set(p, current);
    } else if (current && line.includes('=')) {
      const i = line.indexOf('=');
      current.set(line.slice(0, i), line.slice(i + 1).replace(/^0x/, '').toLowerCase());
    } else if (current && line.trim() !== '') {
      current.set(line.trim(), '');
    }
  }
  return out;
}

export async function checkAgainstTree(t: Test, fs: FileSystem, oracleRoot: string, opts: ConformanceOptions = {}): Promise<ConformanceSummary> {
  const o = { mode: true, owner: true, nlink: true, inodes: false, times: 'ns' as const, which: ['mtime', 'ctime'] as const, xattrs: true, maxMismatches: 20, ...opts };
  const summary: ConformanceSummary = { entries: 0, files: 0, dirs: 0, symlinks: 0, other: 0, bytes: 0, xattrs: 0, mismatches: [] };
  const bad = (path: string, what: string, ours: unknown, theirs: unknown) => {
    if (summary.mismatches.length < o.maxMismatches) summary.mismatches.push(`${path}: ${what}: ours=${String(ours)} oracle=${String(theirs)}`);
  };
  const xattrs = o.xattrs ? oracleXattrs(oracleRoot) : null;
  const xattrFilter = typeof o.xattrs === 'function' ? o.xattrs : () => true;

  const compareEntry = async (path: string, ino: number, st: Stat, real: Buffer) => {
    const ls = lstatSync(real, { bigint: true });
    const type = typeOf(ls);
    if (st.type !== type) return bad(path, 'type', st.type, type);
    if (o.mode && st.mode !== Number(ls.mode)) bad(path, 'mode', st.mode.toString(8), ls.mode.toString(8));
    if ((st.mode & S_IFMT) !== (Number(ls.mode) & S_IFMT)) bad(path, 'mode type bits', st.mode.toString(8), ls.mode.toString(8));
    if (o.owner && (st.uid !== Number(ls.uid) || st.gid !== Number(ls.gid))) bad(path, 'owner', `${st.uid}:${st.gid}`, `${ls.uid}:${ls.gid}`);
    if (o.nlink && type !== 'dir' && st.nlink !== Number(ls.nlink)) bad(path, 'nlink', st.nlink, ls.nlink);
    if (o.inodes && st.ino !== Number(ls.ino)) bad(path, 'ino', st.ino, ls.ino);
    if (o.times) {
      const unit = NS_PER[o.times];
      for (const w of o.which) {
        const ours = st[`${w}Ns`] / unit;
        const theirs = ls[`${w}Ns`] / unit;
        if (ours !== theirs) bad(path, w, st[`${w}Ns`], ls[`${w}Ns`]);
      }
    }
    if (type === 'file' || type === 'symlink') {
      if (st.size !== Number(ls.size)) bad(path, 'size', st.size, ls.size);
    }
    if (type === 'blockdev' || type === 'chardev') {
      if (st.rdev !== Number(ls.rdev)) bad(path, 'rdev', st.rdev, ls.rdev);
    }
    if (type === 'symlink') {
      summary.symlinks++;
      const ours = await fs.readlink(ino);
      const theirs = readlinkSync(real, { encoding: 'buffer' }).toString('utf8');
      if (ours !== theirs) bad(path, 'symlink target', ours, theirs);
    } else if (type === 'file') {
      summary.files++;
      summary.bytes += st.size;
      const [ours, theirs] = await Promise.all([sha256Ours(fs, ino, st.size), sha256OfFile(real)]);
      if (ours !== theirs) bad(path, 'sha256', ours, theirs);
      // Contract: reads at and past the end are clipped, not errors.
      const tail = await fs.read(ino, st.size, 16);
      if (tail.length !== 0) bad(path, 'read at EOF length', tail.length, 0);
      if (st.size > 0) {
        const last = await fs.read(ino, st.size - 1, 16);
        if (last.length !== 1) bad(path, 'read across EOF length', last.length, 1);
      }
      // Contract: extents are ordered, non-overlapping and within the file.
      let end = 0;
      for await (const e of fs.extents(ino)) {
        if (e.offset < end || e.length <= 0) {
          bad(path, 'extent order', `${e.offset}+${e.length}`, `>= ${end}`);
          break;
        }
        end = e.offset + e.length;
      }
      if (end > Math.max(st.size, st.allocatedSize) + 65536 * 16) bad(path, 'extents beyond the file', end, st.size);
    } else if (type === 'dir') {
      summary.dirs++;
    } else summary.other++;

    if (xattrs) {
      const theirs = new Map([...(xattrs.get(real.toString('latin1')) ?? new Map<string, string>())].filter(([n]) => xattrFilter(n)));
      const names = (await fs.listxattr(ino)).filter(xattrFilter).sort();
      const theirNames = [...theirs.keys()].sort();
      if (names.join('\n') !== theirNames.join('\n')) bad(path, 'xattr names', names.join(','), theirNames.join(','));
      else {
        for (const n of names) {
          summary.xattrs++;
          const v = (await fs.getxattr(ino, n)).toString('hex');
          if (v !== theirs.get(n)) bad(path, `xattr ${n}`, v.slice(0, 64), theirs.get(n)?.slice(0, 64));
        }
      }
    }
  };

  // Iterative walk: a hostile tree cannot blow the stack; a directory seen twice is a cycle.
  const seenDirs = new Set<number>();
  const rootReal = Buffer.from(oracleRoot);
  const stack: { path: string; ino: number; real: Buffer }[] = [{ path: '/', ino: fs.rootIno, real: rootReal }];
  const rootStat = await fs.stat(fs.rootIno);
  await compareEntry('/', fs.rootIno, rootStat, rootReal);
  while (stack.length && summary.mismatches.length < o.maxMismatches) {
    const dir = stack.pop()!;
    if (seenDirs.has(dir.ino)) {
      bad(dir.path, 'directory cycle', dir.ino, 'a tree');
      continue;
    }
    seenDirs.add(dir.ino);
    // Names compare as bytes (latin1 keys): an ext name need not be UTF-8 (DirEntry.rawName).
    const ours = new Map<string, { name: string; ino: number; type: FileType }>();
    for await (const e of fs.readdir(dir.ino)) {
      if (e.name === '.' || e.name === '..') bad(dir.path, 'readdir returned', e.name, 'no dot entries');
      const key = (e.rawName ?? Buffer.from(e.name, 'utf8')).toString('latin1');
      if (ours.has(key)) bad(`${dir.path}${e.name}`, 'duplicate name in readdir', e.name, 'unique');
      ours.set(key, { name: e.name, ino: e.ino, type: e.type });
    }
    const theirs = readdirSync(dir.real, { encoding: 'buffer' }).map((b) => b.toString('latin1'));
    const shown = (key: string) => Buffer.from(key, 'latin1').toString('utf8');
    const keep = (key: string) => !o.ignore?.(`${dir.path}${shown(key)}`);
    const ourKeys = [...ours.keys()].filter(keep).sort();
    const theirKeys = theirs.filter(keep).sort();
    if (ourKeys.join('\0') !== theirKeys.join('\0')) {
      const missing = theirKeys.filter((n) => !ours.has(n)).slice(0, 5).map(shown);
      const extra = ourKeys.filter((n) => !theirKeys.includes(n)).slice(0, 5).map(shown);
      bad(dir.path, 'names', `extra [${extra.join(', ')}]`, `missing [${missing.join(', ')}]`);
      continue;
    }
    for (const key of ourKeys) {
      const e = ours.get(key)!;
      const path = `${dir.path}${e.name}`;
      summary.entries++;
      const looked = await fs.lookup(dir.ino, e.name);
      if (looked !== e.ino) bad(path, 'lookup ino', looked, e.ino);
      const st = await fs.stat(e.ino);
      if (st.type !== e.type) bad(path, 'stat type vs readdir type', st.type, e.type);
      if (st.ino !== e.ino) bad(path, 'stat ino', st.ino, e.ino);
      const real = Buffer.concat([dir.real, Buffer.from('/'), Buffer.from(key, 'latin1')]);
      await compareEntry(path, e.ino, st, real);
      if (st.type === 'dir') stack.push({ path: `${path}/`, ino: e.ino, real });
    }
  }
  t.same(summary.mismatches, [], `the tree equals the oracle's: ${summary.entries} entries, ${summary.files} files (${summary.bytes} bytes), ${summary.dirs} dirs, ${summary.symlinks} symlinks, ${summary.xattrs} xattrs`);
  t.ok(summary.entries > 0, 'the walk saw entries (an empty walk proves nothing)');
  return summary;
}
