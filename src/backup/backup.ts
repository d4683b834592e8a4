/**
 * A file-level backup: walk a VM's tree (src/vfs) in tree order and stream one archive — PAX tar,
 * zstd frames, age — to a store, with its index beside it and the manifest last.
 *
 * Incrementals and differentials compare each entry with the local state (state.ts): a regular
 * file whose type, size, mtime and ctime are unchanged is not stored again; its index line points
 * at the archive that holds it. Directories, links and the like are always stored (a header each),
 * so extracting any one archive with stock tar recreates its tree. Every index lists every entry
 * present, so a restore point knows what was deleted.
 */
import { createHash, hash as oneShotHash } from 'node:crypto';
import type { VmTree, TreeNode, TreeVolume, TreeStat } from '../vfs/tree.js';
import { INFO_XATTR } from '../vfs/tree.js';
import type { FileSystem, FileType } from '../fs/types.js';
import type { Store } from '../store/types.js';
import { TarWriter, type TarAddResult, type TarEntry } from '../archive/tar/writer.js';
import { encodeIndexLine, indexEntryOf, type IndexEntry } from '../archive/index.js';
import { SnapferryError, toSnapferryError } from '../util/errors.js';
import { archiveName, ensureRepository, indexName, newArchiveId, openBackupObjects, readManifest, recipientFingerprint, writeManifest, type BackupKind, type Manifest } from './repo.js';
import { StateCursor, StateWriter, statePaths } from './state.js';
import type { Selector } from './select.js';
import { released } from '../util/reclaim.js';

/** Bytes read from a file per request. */
const READ_CHUNK = 1 << 20;
const SLASH = Buffer.from('/');
/**
 * Zeros for holes and for the rest of a file that failed mid-read: one buffer for the process, only
 * ever read (hashed and copied by the tar writer), never handed to anything that writes into it.
 * A zero-filled buffer per file cost a full backup of 50,050 files 450 MB of allocations.
 */
let zeroChunk: Buffer | undefined;
const zerosOf = (n: number): Buffer => (zeroChunk ??= Buffer.alloc(READ_CHUNK)).subarray(0, Math.min(n, READ_CHUNK));
/** Shared results for the common cases (never written into): no xattrs, an empty file, no holes. */
const NO_XATTRS: ReadonlyArray<[string, Buffer]> = Object.freeze([]);
const NO_BYTES = Promise.resolve(Buffer.alloc(0));
const NOT_SPARSE = Promise.resolve(null);
/** For promises started ahead and awaited later (or dropped once the entry fails): no unhandled rejection. */
const ignore = (): void => {};
/** Extended attributes of one entry stored in its PAX header at most (the rest is reported). */
export const MAX_XATTR_BYTES = 512 * 1024;
/** Extents of one file examined for holes at most (more: stored dense). */
const MAX_SPARSE_EXTENTS = 65536;
/** Entries whose metadata and first bytes are read ahead of the one being written. */
const PREFETCH = 16;
/** Bytes of each file read ahead (a small file whole; the rest of a big one streams). */
const PREFETCH_BYTES = 128 * 1024;
/** Hard-linked inodes remembered to link later paths to the first (past this: stored again). */
const MAX_LINKED_INODES = 1 << 20;

export interface BackupOptions {
  store: Store;
  vm: string;
  recipients: string[];
  kind: 'full' | 'incremental' | 'differential';
  /** Tree paths (<disk>/<volume>[/path]) to take; empty: everything. */
  includes: string[];
  selector: Selector;
  stateDir: string;
  frameSize?: number;
  version: string;
  onProgress?: (p: BackupProgress) => void;
  onWarning?: (w: { path: string; code: string; message: string }) => void;
}

export interface BackupProgress {
  /** Regular files present (hard links counted once per path). */
  files: number;
  /** Files whose data this archive stores. */
  stored: number;
  entries: number;
  bytesRead: number;
  bytesStored: number;
  unchanged: number;
  errors: number;
  path: string;
}

export interface BackupSummary extends BackupProgress {
  id: string;
  kind: BackupKind;
  parent?: string;
  archiveBytes: number;
  indexBytes: number;
  durationMs: number;
  notes: string[];
}

export class BackupError extends SnapferryError {}

interface Job {
  volume: TreeVolume & { fs: FileSystem };
  node: TreeNode & { kind: 'fs' };
  pathBytes: Buffer;
  rel: string;
  /** The local state's line for this path, when comparing. */
  prev: IndexEntry | null;
}

interface Prepared {
  st: TreeStat;
  /** A regular file the state has with the same size, mtime and ctime: not stored again. */
  unchanged: boolean;
  xattrs: Promise<ReadonlyArray<[string, Buffer]>>;
  target?: Promise<string>;
  first?: Promise<Buffer>;
  segments?: Promise<Array<{ offset: number; length: number }> | null>;
}

interface Linked {
  path: string;
  storedHere: boolean;
  loc: Pick<IndexEntry, 'archive' | 'header' | 'data' | 'sha256'>;
}

function tarType(t: FileType): TarEntry['type'] | null {
  switch (t) {
    case 'file':
    case 'dir':
    case 'symlink':
    case 'chardev':
    case 'blockdev':
    case 'fifo':
      return t;
    default:
      return null; // sockets: tar has no type for them (GNU tar skips them too)
  }
}

export async function runBackup(tree: VmTree, o: BackupOptions): Promise<BackupSummary> {
  const started = Date.now();
  const notes: string[] = [];
  await ensureRepository(o.store);

  // The state to compare with, and whether its archive is still in the repository.
  const paths = statePaths(o.stateDir, o.store.url, o.vm);
  let kind: BackupKind = o.kind;
  let cursor: StateCursor | null = null;
  if (kind !== 'full') {
    cursor = await StateCursor.open(kind === 'incremental' ? paths.last : paths.full);
    if (cursor?.header) {
      try {
        await readManifest(o.store, cursor.header.archive);
      } catch {
        notes.push(`the state's archive ${cursor.header.archive} is not in the repository: this backup is full`);
        cursor = null;
      }
    } else {
      notes.push(`no local state for ${o.vm} in ${o.store.url}: this backup is full`);
      cursor = null;
    }
    if (!cursor) kind = 'full';
  }
  const parent = cursor?.header?.archive;

  const id = newArchiveId();
  let state: StateWriter | null = null;
  const objects = await openBackupObjects(o.store, id, o);
  try {
    const { archive, index } = objects;
    const tar = new TarWriter(archive);
    state = await StateWriter.create(o.stateDir, { format: 'snapferry-state', version: 1, repo: o.store.url, vm: o.vm, archive: id, kind });

    const p: BackupProgress = { files: 0, stored: 0, entries: 0, bytesRead: 0, bytesStored: 0, unchanged: 0, errors: 0, path: '' };
    const needs = new Set<string>();
    /** Logical bytes of the files this archive stores (an incremental: the changed ones). */
    let storedLogical = 0;
    let presentLogical = 0;
    const linked = new Map<string, Linked>();
    /** The two buffers big files are read into, piece after piece (see readRange). */
    const readBuffers = [Buffer.allocUnsafe(READ_CHUNK), Buffer.allocUnsafe(READ_CHUNK)] as const;
    let lastReport = 0;
    const report = (path: string): void => {
      p.path = path;
      const now = Date.now();
      if (o.onProgress && now - lastReport >= 250) {
        lastReport = now;
        p.bytesStored = archive.stats().bytesOut;
        o.onProgress({ ...p });
      }
    };
    const warn = (path: string, err: unknown): { code: string; message: string } => {
      const e = toSnapferryError(err);
      p.errors++;
      o.onWarning?.({ path, code: e.code, message: e.message });
      return { code: e.code, message: e.message };
    };

    const record = async (e: IndexEntry): Promise<void> => {
      const line = encodeIndexLine(e);
      await index.write(line);
      await state!.addLine(line);
      p.entries++;
    };

    const storeEntry = async (job: Job, pre: Prepared): Promise<void> => {
      const { volume, node, pathBytes } = job;
      const st = pre.st;
      const base = indexEntryOf(pathBytes, st);
      const path = base.path;
      const tt = tarType(st.type);
      if (!tt) {
        base.error = { code: 'E_BACKUP_SOCKET', message: 'a socket has no place in a tar archive (GNU tar skips them too)' };
        return record(base);
      }
      const entry: TarEntry = { path: pathBytes, type: tt, mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, mtimeNs: st.mtimeNs, atimeNs: st.atimeNs, ctimeNs: st.ctimeNs };
      if (tt === 'chardev' || tt === 'blockdev') {
        entry.devMajor = base.devMajor ?? 0;
        entry.devMinor = base.devMinor ?? 0;
      }
      if (tt === 'symlink') {
        const target = await pre.target!;
        entry.linkTarget = target;
        base.target = target;
      }
      // xattrs (NTFS streams and attributes, ext xattrs), bounded per entry
      const names = await pre.xattrs;
      if (names.length) {
        const xattrs: Array<[string, Buffer]> = [];
        let total = 0;
        for (const [n, v] of names) {
          if (total + v.length > MAX_XATTR_BYTES) {
            warn(path, new BackupError('E_BACKUP_XATTR_SIZE', `${path}: extended attribute ${n} (${v.length} bytes) does not fit the ${MAX_XATTR_BYTES}-byte PAX budget; not stored`, { path, name: n }));
            continue;
          }
          total += v.length;
          xattrs.push([n, v]);
        }
        if (xattrs.length) {
          entry.xattrs = xattrs;
          base.xattrs = xattrs.map(([n]) => n);
        }
      }

      if (tt !== 'file') {
        const at = await tar.add(entry);
        base.header = at.headerOffset;
        base.data = at.dataOffset;
        return record(base);
      }

      p.files++;
      presentLogical += st.size;
      const inoKey = st.nlink > 1 ? `${volume.slot}:${node.ino}` : null;
      const prevLink = inoKey ? linked.get(inoKey) : undefined;
      if (prevLink) {
        // a later path of a hard-linked file: its index line points at the member with the data;
        // a tar hard link (for stock tar) when that member is in this archive
        base.link = prevLink.path;
        Object.assign(base, prevLink.loc);
        if (prevLink.storedHere) await tar.add({ ...entry, type: 'hardlink', linkTarget: prevLink.path, size: 0 });
        else if (prevLink.loc.archive) needs.add(prevLink.loc.archive);
        return record(base);
      }

      const prev = job.prev;
      if (pre.unchanged && prev) {
        const where = prev.archive ?? cursor!.header!.archive;
        needs.add(where);
        base.archive = where;
        base.header = prev.header;
        base.data = prev.data!;
        base.sha256 = prev.sha256;
        p.unchanged++;
        if (inoKey && linked.size < MAX_LINKED_INODES) linked.set(inoKey, { path, storedHere: false, loc: { archive: where, header: prev.header, data: prev.data!, sha256: prev.sha256 } });
        return record(base);
      }

      // the data: read before the header is written, so an unreadable file (EFS) is reported, not half-stored
      const size = st.size;
      let first: Buffer;
      let segments: Array<{ offset: number; length: number }> | null;
      try {
        first = await pre.first!;
        segments = await pre.segments!;
      } catch (err) {
        base.error = warn(path, err);
        return record(base);
      }
      if (segments) entry.sparse = segments;
      entry.size = size;
      // a file read whole by the prefetch (most files): hashed in one call, into tar as one buffer,
      // and no reader made for it
      const whole = !segments && first.length === size;
      const hash = whole ? null : createHash('sha256');
      let failure: { code: string; message: string } | undefined;
      let at: TarAddResult;
      if (whole) at = await tar.add(entry, first);
      else {
        const zeros = zerosOf(Math.max(1, size));
        const readRange = async function* (from: number, to: number): AsyncIterable<Buffer> {
          // One read ahead of the piece being hashed and written (the disk works while this thread
          // does), each into one of two buffers kept for the whole backup: piece k+1 is read into the
          // buffer piece k-1 had, which the tar writer is done with once the generator resumes.
          type Pending = { off: number; into: Buffer; read: Promise<number> };
          let next: Pending | null = null;
          let turn = 0;
          const readAt = (off: number): Pending => {
            const into = readBuffers[turn++ & 1]!.subarray(0, Math.min(READ_CHUNK, to - off));
            const read = tree.readInto(node, into, off);
            read.catch(() => {}); // awaited below, or dropped after a failure
            return { off, into, read };
          };
          try {
            for (let off = from; off < to; ) {
              let b: Buffer;
              if (off === 0 && first.length > 0) {
                // the prefetched head of the file serves the first piece
                b = first.length <= to ? first : first.subarray(0, to);
                if (b.length < to && !failure) next = readAt(b.length);
              } else if (failure) {
                b = zeros.subarray(0, Math.min(READ_CHUNK, to - off));
              } else {
                const cur: Pending = next !== null && next.off === off ? next : readAt(off);
                const want: number = cur.into.length;
                next = off + want < to ? readAt(off + want) : null;
                try {
                  const got = await cur.read;
                  if (got !== want) throw new BackupError('E_BACKUP_SHORT_READ', `${path}: ${got} bytes at ${off}, wanted ${want}`, { path, offset: off });
                  b = cur.into;
                } catch (err) {
                  // the header is out: fill with zeros to keep the archive whole, and say so
                  failure = warn(path, err);
                  b = zeros.subarray(0, want);
                }
              }
              const n = b.length;
              p.bytesRead += n;
              off += n;
              yield b;
              // the tar writer has copied it on: the prefetched head is garbage now (util/reclaim.ts)
              if (b.buffer === first.buffer) released(b.length);
            }
          } finally {
            // a read still in flight writes into a shared buffer: wait for it before anything reuses that
            if (next) await next.read.catch(() => 0);
          }
        };
        const body = async function* (): AsyncIterable<Buffer> {
          if (!segments) {
            for await (const b of readRange(0, size)) {
              hash!.update(b);
              yield b;
            }
            return;
          }
          let pos = 0;
          for (const s of segments) {
            for (let z = pos; z < s.offset; ) {
              const n = Math.min(zeros.length, s.offset - z);
              hash!.update(zeros.subarray(0, n));
              z += n;
            }
            for await (const b of readRange(s.offset, s.offset + s.length)) {
              hash!.update(b);
              yield b;
            }
            pos = s.offset + s.length;
          }
          for (let z = pos; z < size; ) {
            const n = Math.min(zeros.length, size - z);
            hash!.update(zeros.subarray(0, n));
            z += n;
          }
        };
        at = await tar.add(entry, body());
      }
      if (whole) {
        p.bytesRead += size;
        released(size);
      }
      p.stored++;
      storedLogical += size;
      base.header = at.headerOffset;
      base.data = at.dataOffset;
      if (failure) base.error = failure;
      else base.sha256 = hash ? hash.digest('hex') : oneShotHash('sha256', first, 'hex');
      if (inoKey && linked.size < MAX_LINKED_INODES) linked.set(inoKey, { path, storedHere: true, loc: { header: base.header, data: base.data, ...(base.sha256 ? { sha256: base.sha256 } : {}) } });
      report(path);
      return record(base);
    };

    // Includes: a path is taken whole when it lies in an include, walked through (alone) when an include lies below it.
    const incl = o.includes.map((s) => s.replace(/^\/+|\/+$/g, ''));
    const relation = (path: string): 'in' | 'above' | 'out' => {
      if (incl.length === 0) return 'in';
      if (incl.some((i) => path === i || path.startsWith(`${i}/`))) return 'in';
      if (incl.some((i) => i.startsWith(`${path}/`))) return 'above';
      return 'out';
    };

    /**
     * The entries to take, in tree order: a pre-order walk whose directories list their children
     * sorted by name bytes. Each comes with the state's line for it (the state is in the same order).
     * Iterative (a stack of listed directories): one generator for the whole walk, not one per
     * entry with every entry passed up through each level above it.
     */
    async function* jobs(volume: TreeVolume & { fs: FileSystem }): AsyncGenerator<Job> {
      type Child = { name: Buffer; ino: number; dir: boolean };
      const stack: { pathBytes: Buffer; rel: string; children: Child[]; next: number }[] = [];
      const visit = async function* (node: TreeNode & { kind: 'fs' }, pathBytes: Buffer, rel: string, isDir: boolean): AsyncGenerator<Job> {
        const path = pathBytes.toString('utf8');
        const how = relation(path);
        if (how === 'out' || o.selector.excluded(rel)) return;
        yield { volume, node, pathBytes, rel, prev: cursor ? await cursor.find(pathBytes) : null };
        if (!isDir) return;
        const children: Child[] = [];
        try {
          for await (const e of tree.readdir(node)) {
            if (e.node.kind !== 'fs') continue;
            children.push({ name: e.rawName ?? Buffer.from(e.name, 'utf8'), ino: e.node.ino, dir: e.type === 'dir' });
          }
        } catch (err) {
          warn(path, err);
        }
        children.sort((a, b) => Buffer.compare(a.name, b.name));
        stack.push({ pathBytes, rel, children, next: 0 });
      };
      yield* visit({ kind: 'fs', volume, ino: volume.fs.rootIno }, Buffer.from(`${volume.diskName}/${volume.name}`), '', true);
      while (stack.length > 0) {
        const top = stack[stack.length - 1]!;
        if (top.next === top.children.length) {
          stack.pop();
          continue;
        }
        const c = top.children[top.next++]!;
        const name = c.name.toString('utf8');
        yield* visit({ kind: 'fs', volume, ino: c.ino }, Buffer.concat([top.pathBytes, SLASH, c.name]), top.rel === '' ? name : `${top.rel}/${name}`, c.dir);
      }
    }

    /** An entry's extended attributes and their values (the tree's own info attribute left out). */
    const xattrsOf = async (node: TreeNode, names: string[]): Promise<ReadonlyArray<[string, Buffer]>> => {
      if (names.length === 0 || (names.length === 1 && names[0] === INFO_XATTR)) return NO_XATTRS;
      const out: Array<[string, Buffer]> = [];
      for (const n of names) if (n !== INFO_XATTR) out.push([n, await tree.getxattr(node, n)]);
      return out;
    };

    /** Starts reading a file's head and its hole map (most files: read whole here, and no holes). */
    const startData = (job: Job, pre: Prepared): void => {
      const { size, allocatedSize } = pre.st;
      if (size === 0) {
        pre.first = NO_BYTES;
        pre.segments = NOT_SPARSE;
        return;
      }
      pre.first = tree.read(job.node, 0, Math.min(PREFETCH_BYTES, size));
      pre.first.catch(ignore);
      if (allocatedSize >= size) pre.segments = NOT_SPARSE;
      else {
        pre.segments = sparseSegments(job.volume.fs, job.node.ino, size, allocatedSize);
        pre.segments.catch(ignore);
      }
    };

    /** Everything an entry needs read from the source, started ahead of the writer (PREFETCH entries). */
    const prepare = async (job: Job): Promise<Prepared | { error: unknown }> => {
      let st: TreeStat;
      try {
        st = await tree.stat(job.node);
      } catch (error) {
        return { error };
      }
      const pre: Prepared = { st, unchanged: false, xattrs: tree.listxattr(job.node).then((names) => xattrsOf(job.node, names)) };
      pre.xattrs.catch(ignore);
      if (st.type === 'symlink') {
        pre.target = tree.readlink(job.node);
        pre.target.catch(ignore);
      }
      if (st.type === 'file') {
        const prev = job.prev;
        pre.unchanged = !!prev && prev.type === 'file' && !prev.error && prev.size === st.size && prev.mtimeNs === String(st.mtimeNs) && prev.ctimeNs === String(st.ctimeNs) && prev.header !== undefined && !!prev.sha256;
        if (!pre.unchanged && st.nlink <= 1) startData(job, pre);
      }
      return pre;
    };

    const volumes = tree.volumes().filter((v): v is TreeVolume & { fs: FileSystem } => !!v.fs);
    // tree order: disks and volumes by name bytes, as everything else
    volumes.sort((a, b) => Buffer.compare(Buffer.from(`${a.diskName}/${a.name}`), Buffer.from(`${b.diskName}/${b.name}`)));
    for (const v of tree.volumes()) if (!v.fs) notes.push(`${v.diskName}/${v.name}: not backed up: ${v.error?.message ?? 'no readable filesystem'}`);
    const ahead: { job: Job; pre: Promise<Prepared | { error: unknown }> }[] = [];
    const drain = async (): Promise<void> => {
      const { job, pre } = ahead.shift()!;
      const got = await pre;
      if ('error' in got) {
        const path = job.pathBytes.toString('utf8');
        return record({ path, type: 'file', mode: 0, uid: 0, gid: 0, size: 0, nlink: 0, mtimeNs: '0', ctimeNs: '0', atimeNs: '0', error: warn(path, got.error) });
      }
      // hard-linked files read their data here, once the first of their paths is known
      if (got.st.type === 'file' && !got.unchanged && !got.first) startData(job, got);
      await storeEntry(job, got);
    };
    for (const v of volumes) {
      for await (const job of jobs(v)) {
        ahead.push({ job, pre: prepare(job) });
        if (ahead.length >= PREFETCH) await drain();
      }
    }
    while (ahead.length) await drain();

    await tar.finish();
    await index.end();
    const archiveBytes = archive.stats().bytesOut;
    const indexBytes = index.stats().bytesOut;
    const manifest: Manifest = {
      format: 'snapferry-manifest',
      version: 1,
      id,
      vm: o.vm,
      createdAt: new Date(started).toISOString(),
      kind,
      ...(parent ? { parent } : {}),
      needs: [...needs].sort(),
      recipients: o.recipients.map(recipientFingerprint),
      files: p.files,
      bytes: presentLogical,
      storedBytes: storedLogical,
      archive: { name: archiveName(id), size: archiveBytes },
      index: { name: indexName(id), size: indexBytes },
      errors: p.errors,
      durationMs: Date.now() - started,
      snapferry: o.version,
    };
    await writeManifest(o.store, manifest);
    await state.commit(...(kind === 'full' ? [paths.full, paths.last] : [paths.last]));
    state = null;
    p.bytesStored = archiveBytes;
    return { ...p, id, kind, ...(parent ? { parent } : {}), archiveBytes, indexBytes, durationMs: Date.now() - started, notes };
  } catch (err) {
    await objects.abort();
    await state?.discard();
    throw err;
  }
}

/**
 * A file's data segments when it has holes worth keeping (GNU sparse 1.0), else null. Read from
 * the filesystem's extent list; unwritten extents read as zeros and count as holes.
 */
async function sparseSegments(fs: FileSystem, ino: number, size: number, allocated: number): Promise<Array<{ offset: number; length: number }> | null> {
  if (size === 0 || allocated >= size) return null;
  const segs: Array<{ offset: number; length: number }> = [];
  let n = 0;
  for await (const e of fs.extents(ino)) {
    if (++n > MAX_SPARSE_EXTENTS) return null;
    if (e.state !== 'data') continue;
    const end = Math.min(size, e.offset + e.length);
    if (end <= e.offset) continue;
    const last = segs[segs.length - 1];
    if (last && last.offset + last.length === e.offset) last.length = end - last.offset;
    else segs.push({ offset: e.offset, length: end - e.offset });
  }
  const data = segs.reduce((s, x) => s + x.length, 0);
  if (data >= size) return null;
  // GNU tar ends a sparse map with the file's end
  return segs;
}

