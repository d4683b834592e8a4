/**
 * Restore: entries of a backup's index, their bytes fetched as ranges of the archives that hold
 * them (an incremental's index points into earlier archives), written under a target directory.
 *
 * It never writes outside the target (node-tar's lessons): an index path that is absolute, has
 * `..`, `.` or empty components, or NUL, is refused (E_RESTORE_PATH); every directory on the way
 * is checked with lstat to be a real directory, never a symlink, so a restored symlink cannot
 * carry a later file out of the target (E_RESTORE_SYMLINK_ESCAPE); files are created with O_EXCL
 * under a temporary name and renamed, and an existing file is replaced only with `overwrite`.
 * Every file's bytes are checked against the index's sha256 before it gets its final name.
 * FIFOs are made, device nodes only with `devices` (as root); extended attributes go to one
 * setfattr process (xattr-restore.ts) once their entry has its final name.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { constants as F } from 'node:fs';
import { chmod, lchown, lstat, link, lutimes, mkdir, open, rename, rm, symlink, utimes } from 'node:fs/promises';
import type { Store } from '../store/types.js';
import type { X25519Identity } from '../archive/age/keys.js';
import { openArchiveReader, type ArchiveReader } from '../archive/stack.js';
import { compareTreePaths, entryPathBytes, lines, MAX_INDEX_LINE, parseIndexEntry, parseIndexHeader, type IndexEntry } from '../archive/index.js';
import type { RandomAccess } from '../archive/types.js';
import { readEntryAt, readMemberRange, type TarMemberLocation } from '../archive/tar/reader.js';
import { CorruptStructureError, ExitCode, SnapferryError, toSnapferryError } from '../util/errors.js';
import { archiveName, indexName, readManifest, requireRepository, type Manifest } from './repo.js';
import { XattrSetter } from './xattr-restore.js';

/** Unlocked age identities, or their AGE-SECRET-KEY-1 strings. */
export type Identities = readonly (string | X25519Identity)[];

export class RestoreError extends SnapferryError {}

const CHUNK = 1 << 20;

/** Plaintext of an encrypted object of the store, as a RandomAccess (only the chunks read are fetched). */
export async function openEncrypted(store: Store, name: string, identities: Identities, cacheBytes?: number): Promise<ArchiveReader & { close(): Promise<void> }> {
  const file = await store.open(name);
  try {
    const r = await openArchiveReader(file, identities, cacheBytes ? { cacheBytes } : {});
    return Object.assign(r, { close: () => file.close() });
  } catch (err) {
    await file.close();
    throw err;
  }
}

/** The bytes of `ra` from `from` on, in pieces that grow from `first` to CHUNK (a scan that may stop soon reads little). */
async function* sequential(ra: RandomAccess, from = 0, first = CHUNK): AsyncIterable<Buffer> {
  for (let off = from, n = first; off < ra.size; off += n, n = Math.min(CHUNK, 2 * n)) yield await ra.read(off, Math.min(n, ra.size - off));
}

/** Bytes read at a time while looking for a line's end. */
const LINE_WINDOW = 16 * 1024;
/** The bisection stops when the range left is this small (its last probes hit frames already decoded); a sequential scan finishes. */
const SEEK_SCAN_BYTES = 4 * 1024;

/** Where the first newline at or after `from` is (-1 when there is none); a line longer than MAX_INDEX_LINE is corrupt. */
async function newlineFrom(ra: RandomAccess, from: number, what: string): Promise<number> {
  for (let at = from; at < ra.size; ) {
    const b = await ra.read(at, Math.min(LINE_WINDOW, ra.size - at));
    const nl = b.indexOf(0x0a);
    if (nl >= 0) return at + nl;
    at += b.length;
    if (at - from > MAX_INDEX_LINE) throw new CorruptStructureError('E_INDEX_ENTRY', `${what}: a line longer than ${MAX_INDEX_LINE} bytes after byte ${from}`, { structure: 'IndexEntry', field: 'line' });
  }
  return -1;
}

/** The line that starts at `start` (without its newline), and where the next one starts. */
async function lineAt(ra: RandomAccess, start: number, what: string): Promise<{ text: string; next: number }> {
  const nl = await newlineFrom(ra, start, what);
  if (nl < 0) throw new CorruptStructureError('E_INDEX_TRUNCATED', `${what}: the last line has no end`, { structure: 'IndexEntry' });
  return { text: (await ra.read(start, nl - start)).toString('utf8'), next: nl + 1 };
}

/** Where the first line that starts at or after `off` starts (ra.size when none does). */
async function nextLineStart(ra: RandomAccess, off: number, what: string): Promise<number> {
  if (off === 0) return 0;
  const nl = await newlineFrom(ra, off - 1, what);
  return nl < 0 ? ra.size : nl + 1;
}

/**
 * A line start at or before the first line whose path is `target` or after it in tree order: the
 * index is in tree order, so a bisection of its bytes finds it in log2(size) probes, each fetching
 * and decompressing one frame (cached). With a hostile, unsorted index this finds a wrong place,
 * never loops: at most ~40 probes, each bounded.
 */
async function seekIndex(ra: RandomAccess, from: number, target: Buffer, what: string): Promise<number> {
  // lo: `from` or a line whose path sorts before target; the first line at or after target starts
  // at or before nextLineStart(hi)
  let lo = from;
  let hi = ra.size;
  while (hi - lo > SEEK_SCAN_BYTES) {
    const mid = lo + Math.floor((hi - lo) / 2);
    const start = await nextLineStart(ra, mid, what);
    if (start >= hi) {
      hi = mid;
      continue;
    }
    const { text } = await lineAt(ra, start, what);
    if (compareTreePaths(entryPathBytes(parseIndexEntry(text, `at byte ${start}`)), target) < 0) lo = start;
    else hi = mid;
  }
  return lo;
}

/** The subtrees `paths` name, in tree order, without any that lies inside another. */
export function subtreeRoots(paths: readonly string[]): Buffer[] {
  const roots = paths.map((p) => Buffer.from(p.replace(/^\/+|\/+$/g, ''), 'utf8')).sort(compareTreePaths);
  const out: Buffer[] = [];
  for (const r of roots) {
    const last = out[out.length - 1];
    if (last && (last.equals(r) || isBelow(r, last))) continue;
    out.push(r);
  }
  return out;
}

/** `p` lies strictly inside the subtree `root`. */
function isBelow(p: Buffer, root: Buffer): boolean {
  return p.length > root.length && p[root.length] === 0x2f && p.subarray(0, root.length).equals(root);
}

/**
 * Entries of a backup's index, in tree order. With `paths`, only those paths and what lies below
 * them: each subtree is found by bisecting the index (seekIndex), so restoring one file of a
 * million-entry backup fetches a few frames of its index, not all of it.
 */
export async function* indexEntries(store: Store, m: Manifest, identities: Identities, paths: readonly string[] = []): AsyncIterable<IndexEntry> {
  const what = indexName(m.id);
  const ra = await openEncrypted(store, what, identities);
  try {
    const header = await lineAt(ra, 0, what);
    const h = parseIndexHeader(header.text);
    if (h.archive !== m.id) throw new CorruptStructureError('E_INDEX_HEADER', `${what} is the index of ${h.archive}, not ${m.id}`, { id: m.id });
    if (paths.length === 0) {
      let n = 1;
      for await (const line of lines(sequential(ra, header.next), what)) yield parseIndexEntry(line, ++n);
      return;
    }
    for (const root of subtreeRoots(paths)) {
      const from = await seekIndex(ra, header.next, root, what);
      let n = 0;
      for await (const line of lines(sequential(ra, from, LINE_WINDOW), what)) {
        const e = parseIndexEntry(line, `${++n} after byte ${from}`);
        const p = entryPathBytes(e);
        const c = compareTreePaths(p, root);
        if (c < 0) continue;
        if (c === 0 || isBelow(p, root)) yield e;
        else break;
      }
    }
  } finally {
    await ra.close();
  }
}

/** Refuses what could leave the target: absolute paths, '..', '.', empty components, NUL. */
export function safeComponents(path: Buffer): Buffer[] {
  const s = path.toString('latin1');
  if (s.startsWith('/') || s.includes('\0')) throw new RestoreError('E_RESTORE_PATH', `refusing the absolute or NUL-bearing path '${path.toString('utf8')}'`, { path: path.toString('utf8') }, ExitCode.corrupt);
  const parts = s.split('/');
  for (const p of parts) if (p === '' || p === '.' || p === '..') throw new RestoreError('E_RESTORE_PATH', `refusing the path '${path.toString('utf8')}': it has a '${p}' component`, { path: path.toString('utf8') }, ExitCode.corrupt);
  return parts.map((p) => Buffer.from(p, 'latin1'));
}

export interface RestoreOptions {
  store: Store;
  id: string;
  identities: Identities;
  /** Tree paths to restore (an entry, or everything below it); empty: everything. */
  paths: string[];
  target: string;
  overwrite: boolean;
  /**
   * Create the device nodes an archive holds (as root). Off by default: a guest's archive should not
   * be able to give whoever reads the restore a door to one of the host's disks.
   */
  devices?: boolean;
  onProgress?: (p: { files: number; bytes: number; path: string }) => void;
  onWarning?: (w: { path: string; code: string; message: string }) => void;
}

export interface RestoreSummary {
  id: string;
  entries: number;
  files: number;
  bytes: number;
  bytesFetched: number;
  skipped: number;
  errors: number;
}

/** The readers of the archives an index points into, opened once each. */
class Archives {
  private readonly open = new Map<string, Promise<ArchiveReader & { close(): Promise<void> }>>();
  constructor(
    private readonly store: Store,
    private readonly identities: Identities,
  ) {}
  get(id: string): Promise<ArchiveReader> {
    let r = this.open.get(id);
    if (!r) {
      r = openEncrypted(this.store, archiveName(id), this.identities);
      this.open.set(id, r);
    }
    return r;
  }
  async close(): Promise<void> {
    for (const r of this.open.values()) await (await r.catch(() => null))?.close();
    this.open.clear();
  }
  async totalFetched(): Promise<number> {
    let n = 0;
    for (const r of this.open.values()) n += (await r).stats().bytesFetched;
    return n;
  }
}

export function selects(paths: string[], e: IndexEntry): boolean {
  if (paths.length === 0) return true;
  return paths.some((p) => {
    const q = p.replace(/^\/+|\/+$/g, '');
    return e.path === q || e.path.startsWith(`${q}/`);
  });
}

/** The tar member an index entry points at, checked to carry the entry's name. */
async function memberOf(archives: Archives, self: string, e: IndexEntry): Promise<{ ra: RandomAccess; member: TarMemberLocation; where: string }> {
  if (e.header === undefined) throw new RestoreError('E_RESTORE_NO_DATA', `${e.path}: the backup holds no data for it${e.error ? ` (${e.error.code}: ${e.error.message})` : ''}`, { path: e.path }, ExitCode.failure);
  const where = e.archive ?? self;
  const ra = await archives.get(where);
  const member = await readEntryAt(ra, e.header);
  const name = Buffer.isBuffer(member.entry.path) ? member.entry.path : Buffer.from(member.entry.path);
  const want = entryPathBytes(e.link ? { path: e.link } : e);
  // a hard-link index line points at the member that carries the data: its path is the link's
  if (!name.equals(want) && !name.equals(entryPathBytes(e))) {
    throw new CorruptStructureError('E_RESTORE_INDEX', `${e.path}: the index points at tar member '${name.toString('utf8')}' in ${where}`, { path: e.path, archive: where, header: e.header });
  }
  return { ra, member, where };
}

/** An entry's extended attributes (the index names them, its tar member's PAX records hold them). */
export async function entryXattrs(archives: Archives, self: string, e: IndexEntry): Promise<Array<[string, Buffer]>> {
  const named = new Set(e.xattrs ?? []);
  if (named.size === 0) return [];
  const { member } = await memberOf(archives, self, e);
  return (member.entry.xattrs ?? []).filter(([n]) => named.has(n));
}

/** A file's bytes, from the archive that holds them, checked against the index's sha256. */
export async function* entryData(archives: Archives, self: string, e: IndexEntry): AsyncIterable<Buffer> {
  const { ra, member, where } = await memberOf(archives, self, e);
  const hash = createHash('sha256');
  for (let off = 0; off < e.size; off += CHUNK) {
    const b = await readMemberRange(ra, member, off, Math.min(CHUNK, e.size - off));
    hash.update(b);
    yield b;
  }
  const got = hash.digest('hex');
  if (e.sha256 && got !== e.sha256) throw new CorruptStructureError('E_RESTORE_HASH', `${e.path}: restored bytes have sha256 ${got}, the index says ${e.sha256} (archive ${where})`, { path: e.path, archive: where });
}

async function isRealDir(p: Buffer): Promise<boolean | null> {
  try {
    const st = await lstat(p);
    return st.isDirectory() && !st.isSymbolicLink();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

/** The directory `parts` under root, created as needed, each step checked to be a real directory. */
async function ensureDirs(root: Buffer, parts: Buffer[]): Promise<Buffer> {
  let cur = root;
  for (const p of parts) {
    cur = Buffer.concat([cur, Buffer.from('/'), p]);
    const ok = await isRealDir(cur);
    if (ok === false) throw new RestoreError('E_RESTORE_SYMLINK_ESCAPE', `refusing to go through '${cur.toString('utf8')}': it is not a real directory (a symlink or a file)`, { path: cur.toString('utf8') }, ExitCode.corrupt);
    if (ok === null) await mkdir(cur, { mode: 0o700 });
  }
  return cur;
}

/**
 * utimes arguments: seconds as a float carry microseconds (Node has no nanosecond utimes), but Node
 * turns a negative number into "now": times before 1970 go as Dates (milliseconds).
 */
function times(e: IndexEntry): [number | Date, number | Date] {
  const one = (ns: string): number | Date => {
    const v = BigInt(ns);
    return v >= 0n ? Number(v / 1000n) / 1e6 : new Date(Number(v / 1_000_000n));
  };
  return [one(e.atimeNs), one(e.mtimeNs)];
}

/** Why a special file is not made (null: it is): a reason the warning can give. */
function specialRefusal(e: IndexEntry, devices: boolean, isRoot: boolean): string | null {
  if (e.type === 'fifo') return null;
  if (e.type === 'socket') return 'a socket is not in the archive (a listening program makes it)';
  if (!devices) return 'device nodes are made only with --devices (GNU tar, as root, makes them from the archive)';
  if (!isRoot) return 'making a device node needs root';
  if (e.devMajor === undefined || e.devMinor === undefined) return "the backup's index does not carry its device numbers (GNU tar restores it from the archive)";
  return null;
}

/** A fifo or device node at `path` (mode 0600 until chmod): coreutils' mkfifo and mknod, as Node has neither call. */
async function makeSpecial(path: string, e: IndexEntry): Promise<void> {
  const [cmd, args] = e.type === 'fifo' ? ['mkfifo', ['-m', '600', '--', path]] : ['mknod', ['-m', '600', '--', path, e.type === 'chardev' ? 'c' : 'b', String(e.devMajor), String(e.devMinor)]];
  await new Promise<void>((resolve, reject) =>
    execFile(cmd as string, args as string[], { timeout: 30_000 }, (err, _out, stderr) =>
      err ? reject(new RestoreError('E_RESTORE_SPECIAL', `${e.path}: ${cmd} failed: ${String(stderr).trim() || err.message}`, { path: e.path, command: cmd as string }, ExitCode.failure)) : resolve(),
    ),
  );
}

export async function runRestore(o: RestoreOptions): Promise<RestoreSummary> {
  await requireRepository(o.store);
  const m = await readManifest(o.store, o.id);
  // an image backup's files are read through its disks (image-restore.ts), then written here
  if (m.kind === 'image') return (await import('./image-restore.js')).restoreImageFiles(o);
  const archives = new Archives(o.store, o.identities);
  try {
    const s = await restoreEntries(o, m.id, indexEntries(o.store, m, o.identities, o.paths), (e) => entryData(archives, m.id, e), (e) => entryXattrs(archives, m.id, e));
    s.bytesFetched = await archives.totalFetched();
    return s;
  } finally {
    await archives.close();
  }
}

/**
 * Writes entries (in tree order, each directory before what is in it) under o.target, with the
 * rules above; `data` gives a regular file's bytes. Shared by file-level and image restores.
 */
export async function restoreEntries(
  o: Omit<RestoreOptions, 'store' | 'identities'>,
  id: string,
  entries: AsyncIterable<IndexEntry>,
  data: (e: IndexEntry) => AsyncIterable<Buffer>,
  xattrsOf?: (e: IndexEntry) => Promise<ReadonlyArray<readonly [string, Buffer]>>,
): Promise<RestoreSummary> {
  const root = Buffer.from(o.target);
  if ((await isRealDir(root)) === null) await mkdir(o.target, { recursive: true });
  else if (!(await isRealDir(root))) throw new RestoreError('E_RESTORE_TARGET', `${o.target} is not a directory`, { target: o.target }, ExitCode.usage);
  const s: RestoreSummary = { id, entries: 0, files: 0, bytes: 0, bytesFetched: 0, skipped: 0, errors: 0 };
  const restoredAt = new Map<string, Buffer>(); // hard links: tree path -> where it was restored
  const dirs: { path: Buffer; e: IndexEntry }[] = [];
  const isRoot = process.getuid?.() === 0;
  const warn = (path: string, err: unknown): void => {
    const e = toSnapferryError(err);
    s.errors++;
    o.onWarning?.({ path, code: e.code, message: e.message });
  };
  const xattrs = new XattrSetter(o.target);
  /** The entry's extended attributes, once it has its final name (a hard link shares its first name's). */
  const placed = async (e: IndexEntry, dest: Buffer): Promise<void> => {
    if (!xattrsOf || !e.xattrs?.length) return;
    await xattrs.add(dest.subarray(root.length + 1), await xattrsOf(e));
  };

  try {
    for await (const e of entries) {
      if (!selects(o.paths, e)) continue;
      s.entries++;
      const parts = safeComponents(entryPathBytes(e));
      const dir = await ensureDirs(root, parts.slice(0, -1));
      const dest = Buffer.concat([dir, Buffer.from('/'), parts[parts.length - 1]!]);
      try {
        const existing = await lstat(dest).catch(() => null);
        if (e.type === 'dir') {
          if (existing && !(existing.isDirectory() && !existing.isSymbolicLink())) {
            if (!o.overwrite) throw new RestoreError('E_RESTORE_EXISTS', `${dest.toString('utf8')} exists and is not a directory (--overwrite replaces it)`, { path: e.path }, ExitCode.failure);
            await rm(dest, { force: true });
          }
          if (!existing || !existing.isDirectory()) await mkdir(dest, { mode: 0o700 });
          dirs.push({ path: dest, e });
          await placed(e, dest);
          continue;
        }
        if (existing) {
          if (!o.overwrite) throw new RestoreError('E_RESTORE_EXISTS', `${dest.toString('utf8')} exists (--overwrite replaces it)`, { path: e.path }, ExitCode.failure);
          if (existing.isDirectory() && !existing.isSymbolicLink()) throw new RestoreError('E_RESTORE_EXISTS', `${dest.toString('utf8')} is a directory`, { path: e.path }, ExitCode.failure);
        }
        const tmp = Buffer.concat([dir, Buffer.from(`/.snapferry-restore-${process.pid}-${s.entries}`)]);
        if (e.type === 'symlink') {
          await symlink(e.targetB64 !== undefined ? Buffer.from(e.targetB64, 'base64') : Buffer.from(e.target ?? ''), tmp);
          if (isRoot) await lchown(tmp, e.uid, e.gid);
          await lutimes(tmp, ...times(e));
          await rename(tmp, dest);
          await placed(e, dest);
          continue;
        }
        if (e.type !== 'file') {
          const why = specialRefusal(e, o.devices === true, isRoot);
          if (why) {
            s.skipped++;
            o.onWarning?.({ path: e.path, code: 'W_RESTORE_SPECIAL', message: `${e.path}: a ${e.type} is not restored: ${why}` });
            continue;
          }
          // made under an ASCII name in the target (mknod and mkfifo take names as text; a guest's
          // may be any bytes), then given its owner, mode and times, and renamed into place
          const made = `${o.target}/.snapferry-restore-${process.pid}-${s.entries}`;
          await makeSpecial(made, e);
          try {
            if (isRoot) await lchown(made, e.uid, e.gid);
            await chmod(made, e.mode & 0o7777);
            await utimes(made, ...times(e));
            await rename(made, dest);
          } catch (err) {
            await rm(made, { force: true });
            throw err;
          }
          s.files++;
          await placed(e, dest);
          continue;
        }
        const first = e.link ? restoredAt.get(e.link) : undefined;
        if (first) {
          await link(first, tmp);
          await rename(tmp, dest);
          s.files++;
          continue;
        }
        // O_EXCL | O_NOFOLLOW: a name planted meanwhile is never written through
        const fh = await open(tmp, F.O_WRONLY | F.O_CREAT | F.O_EXCL | F.O_NOFOLLOW, 0o600);
        try {
          let off = 0;
          for await (const b of data(e)) {
            // all-zero pieces become holes: a sparse file stays sparse
            if (!b.every((x) => x === 0)) await fh.write(b, 0, b.length, off);
            off += b.length;
            s.bytes += b.length;
            o.onProgress?.({ files: s.files, bytes: s.bytes, path: e.path });
          }
          await fh.truncate(off);
        } catch (err) {
          await fh.close();
          await rm(tmp, { force: true });
          throw err;
        }
        await fh.close();
        if (isRoot) await lchown(tmp, e.uid, e.gid);
        await chmod(tmp, e.mode & 0o7777);
        await utimes(tmp, ...times(e));
        await rename(tmp, dest);
        restoredAt.set(e.path, dest);
        s.files++;
        await placed(e, dest);
      } catch (err) {
        warn(e.path, err);
      }
    }
  } catch (err) {
    await xattrs.close();
    throw err;
  }
  for (const w of await xattrs.close()) {
    s.errors++;
    o.onWarning?.(w);
  }
  // directories last, deepest first: their times and modes would change as their contents arrive
  for (const d of dirs.reverse()) {
    try {
      if (isRoot) await lchown(d.path, d.e.uid, d.e.gid);
      await chmod(d.path, d.e.mode & 0o7777);
      await utimes(d.path, ...times(d.e));
    } catch (err) {
      warn(d.e.path, err);
    }
  }
  return s;
}

/** One file's bytes to a stream (restore --target -). */
export async function restoreToStream(o: Omit<RestoreOptions, 'target' | 'overwrite'>, out: (b: Buffer) => Promise<void>): Promise<RestoreSummary> {
  await requireRepository(o.store);
  const m = await readManifest(o.store, o.id);
  if (m.kind === 'image') return (await import('./image-restore.js')).restoreImageFileToStream(o, out);
  const archives = new Archives(o.store, o.identities);
  if (o.paths.length !== 1) throw new RestoreError('E_USAGE', 'restore --target - takes exactly one PATH (a regular file)', {}, ExitCode.usage);
  const want = o.paths[0]!.replace(/^\/+|\/+$/g, '');
  for await (const e of indexEntries(o.store, m, o.identities, [want])) {
    if (e.path !== want) continue;
    if (e.type !== 'file') throw new RestoreError('E_RESTORE_NOT_FILE', `${e.path} is a ${e.type}; --target - writes one regular file`, { path: e.path }, ExitCode.usage);
    let bytes = 0;
    for await (const b of entryData(archives, m.id, e)) {
      await out(b);
      bytes += b.length;
    }
    const fetched = await archives.totalFetched();
    await archives.close();
    return { id: m.id, entries: 1, files: 1, bytes, bytesFetched: fetched, skipped: 0, errors: 0 };
  }
  throw new RestoreError('E_RESTORE_NOT_FOUND', `${want}: not in backup ${m.id}`, { path: want, id: m.id }, ExitCode.notFound);
}

export { Archives };
