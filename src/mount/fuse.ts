/**
 * The FUSE frontend: a VmTree (src/vfs) as a read-only mounted directory, speaking the kernel's
 * FUSE protocol directly (kernel/session.ts says why not libfuse).
 *
 * Node ids are the tree's inode numbers (VmTree.ino / nodeOf), so nothing here keeps a table of
 * nodes: a FORGET needs no bookkeeping, hard links share a node id and an inode number.
 *
 * Read-only three times over: the mount is `ro` (the kernel answers EROFS before asking us), every
 * writing request answers EROFS anyway, and nothing below this layer can write.
 *
 * Directory listings stream: a directory handle keeps an iterator of the reader's streamed readdir
 * and the offset it has reached; READDIR(PLUS) continues it, or restarts it on a seek. READDIRPLUS
 * hands the kernel each entry's attributes with its name, so a walk (`find`, rsync, a backup agent)
 * needs no LOOKUP per entry. Attributes and names are cached by the kernel for ATTR_VALID_S: a
 * snapshot never changes.
 */
import { constants as C } from 'node:os';
import { constants as F, writeFileSync } from 'node:fs';
import { mountAt } from './mountinfo.js';
import type { VmTree, TreeNode, TreeEntry } from '../vfs/tree.js';
import { S_IF } from '../fs/types.js';
import { ExitCode, SnapferryError, toSnapferryError } from '../util/errors.js';
import { FuseSession } from './kernel/session.js';
import {
  FOPEN_CACHE_DIR,
  FOPEN_KEEP_CACHE,
  FUSE_INIT_FLAG,
  FUSE_KERNEL_MINOR_VERSION,
  FUSE_KERNEL_VERSION,
  FUSE_NAME_OFFSET,
  FUSE_NAME_OFFSET_DIRENTPLUS,
  FUSE_OPCODE as OP,
  direntAlign,
  fuse_attr_out,
  fuse_entry_out,
  fuse_getxattr_out,
  fuse_init_out,
  fuse_open_out,
  fuse_statfs_out,
  parseGetxattrIn,
  parseInitIn,
  parseOpenIn,
  parseReadIn,
  parseReleaseIn,
  writeAttrOut,
  writeDirent,
  writeEntryOut,
  writeInitOut,
  writeOpenOut,
  writeStatfsOut,
  type FuseAttr,
  type FuseInHeader,
} from './kernel/structs.js';

const E = C.errno;
/** Open file and directory handles at most (a runaway client gets EMFILE). */
export const MAX_OPEN_HANDLES = 1 << 20;
/** Distinct (code, node) errors logged in full; past this only counted. */
export const MAX_LOGGED_ERRORS = 10_000;
/** Node names remembered to put paths in log lines (best effort: older ones are dropped). */
export const MAX_REMEMBERED_NAMES = 1 << 16;
/** Seconds the kernel may keep names and attributes: a snapshot never changes. */
export const ATTR_VALID_S = 3600;
/**
 * Entries of a directory listed and stat'ed ahead of the kernel's next READDIRPLUS: when a handle is
 * opened and after each reply, the next ones are prepared while the kernel and the walker (find,
 * rsync) take the last reply, so a request finds its entries ready instead of waiting for their
 * MFT records to be parsed. About one reply of a walker's 32 KiB getdents buffer.
 */
export const READDIR_LOOKAHEAD = 256;
/** Entries taken from a listing at a time (by a request, or by the look-ahead between requests). */
export const READDIR_STEP = 32;
/** Entries held ahead over all open directory handles at most (a client opening many directories gets no look-ahead). */
export const READDIR_LOOKAHEAD_TOTAL = 8192;
/** Pages of one READ at most (max_pages): 1 MiB requests. */
const MAX_PAGES = 256;
/**
 * READ replies are read into buffers kept for the next ones: a fresh 1 MiB buffer per request
 * made a dd of a 1 GiB file cost the mount process ~21,000 page faults (ntfs-3g: 74), each
 * expensive under a hypervisor. At most READ_BUFFERS are kept (the kernel's readahead keeps a
 * few READs in flight).
 */
const READ_BUFFER = MAX_PAGES * 4096;
const READ_BUFFERS = 8;

export interface MountOptions {
  allowOther?: boolean;
  /** Called with one JSON-able record per event worth a log line. */
  log?: (record: Record<string, unknown>) => void;
}

/** Errors to negative errno. Everything not listed is EIO (and logged). */
export function errnoOf(err: SnapferryError): number {
  switch (err.code) {
    case 'E_FS_NOT_FOUND':
    case 'E_VOLUME_NOT_FOUND':
      return -E.ENOENT;
    case 'E_FS_NOT_DIR':
      return -E.ENOTDIR;
    case 'E_FS_NOT_FILE':
      return -E.EISDIR;
    case 'E_FS_NOT_LINK':
      return -E.EINVAL;
    case 'E_FS_NO_XATTR':
    case 'E_NTFS_NO_XATTR':
    case 'E_FS_NO_STREAM':
      return -E.ENODATA;
    case 'E_FS_PATH':
      return -E.ENAMETOOLONG;
    default:
      return -E.EIO;
  }
}

export interface Mounted {
  readonly mountPoint: string;
  /** Unmounts and stops serving. */
  unmount(): Promise<void>;
  /** Resolves when the mount is gone, whoever unmounted it. */
  readonly closed: Promise<void>;
  /** Errors answered so far, by code. */
  readonly errorCounts: Map<string, number>;
}

/** An entry taken from a listing and not yet replied: its name's bytes, and its attributes on the way. */
interface AheadEntry {
  e: TreeEntry;
  name: Buffer | string;
  length: number;
  attr: Promise<FuseAttr | null> | null;
}

interface DirHandle {
  node: TreeNode;
  /** The offset the next entry has (entries are numbered from 1; '.' is 1 and '..' is 2). */
  next: number;
  iter: AsyncIterator<TreeEntry> | null;
  /** Entries taken from the iterator, in order, the first of them numbered `next` once '.' and '..' are out. */
  ahead: AheadEntry[];
  /** The iterator has ended (or failed: `error`). */
  done: boolean;
  error: unknown;
  released: boolean;
  busy: Promise<void>;
}

const DOT = Buffer.from('.');
const DOTDOT = Buffer.from('..');

/**
 * Mounts `tree` at `mountPoint` (an existing directory that is not a mount point). Resolves once
 * the kernel has the mount, rejects with E_MOUNT_FAILED otherwise.
 */
export async function mountTree(tree: VmTree, mountPoint: string, opts: MountOptions = {}): Promise<Mounted> {
  const log = opts.log ?? (() => {});
  const files = new Map<number, TreeNode>();
  const dirs = new Map<number, DirHandle>();
  const readBuffers: Buffer[] = [];
  /** Entries held ahead over all directory handles (READDIR_LOOKAHEAD_TOTAL). */
  let aheadTotal = 0;
  /** The kernel sends READDIRPLUS (INIT granted it): look-ahead stats entries too. */
  let readdirPlus = true;
  let nextFh = 1;
  const errorCounts = new Map<string, number>();
  const logged = new Set<string>();
  // Two generations of names: when the young one is full it becomes the old one and the old one is
  // dropped. A walk remembers every entry it lists, so this must cost no more than a Map.set.
  let names = new Map<number, { parent: number; name: string }>();
  let oldNames = new Map<number, { parent: number; name: string }>();
  const remember = (parent: number, name: string, id: number): void => {
    if (names.size >= MAX_REMEMBERED_NAMES / 2) {
      oldNames = names;
      names = new Map();
    }
    names.set(id, { parent, name });
  };
  /** The path of a node for a log line, as far as the names seen tell it. */
  const pathOf = (id: number): string => {
    const parts: string[] = [];
    for (let cur = id, n = 0; cur !== 1 && n < 4096; n++) {
      const e = names.get(cur) ?? oldNames.get(cur);
      if (!e) return `(inode ${cur})/${parts.reverse().join('/')}`;
      parts.push(e.name);
      cur = e.parent;
    }
    return `/${parts.reverse().join('/')}`;
  };

  const fail = (op: string, id: number, err: unknown): number => {
    const e = toSnapferryError(err);
    const errno = errnoOf(e);
    if (errno === -E.EIO) {
      errorCounts.set(e.code, (errorCounts.get(e.code) ?? 0) + 1);
      const key = `${e.code}\0${id}`;
      if (!logged.has(key) && logged.size < MAX_LOGGED_ERRORS) {
        logged.add(key);
        log({ level: 'error', op, path: pathOf(id), ino: id, code: e.code, message: e.message });
      }
    }
    return errno;
  };

  const attrOf = async (node: TreeNode): Promise<FuseAttr> => {
    const st = await tree.stat(node, 'posix');
    return {
      ino: st.ino,
      size: st.size,
      blocks: Math.ceil(st.allocatedSize / 512),
      atimeNs: st.atimeNs,
      mtimeNs: st.mtimeNs,
      ctimeNs: st.ctimeNs,
      mode: st.mode,
      nlink: st.nlink,
      uid: st.uid,
      gid: st.gid,
      rdev: st.rdev ?? 0,
      blksize: 4096,
    };
  };

  const nodeOrThrow = (id: number): TreeNode => {
    const n = tree.nodeOf(id);
    if (!n) throw new SnapferryError('E_FS_NOT_FOUND', `no node ${id}`, { ino: id }, ExitCode.notFound);
    return n;
  };

  let session: FuseSession;
  let initDone: () => void;
  const initialised = new Promise<void>((r) => (initDone = r));

  const handlers: Partial<Record<number, (h: FuseInHeader, body: Buffer) => Promise<Buffer[] | null>>> = {
    async [OP.INIT](_h, body) {
      const init = parseInitIn(body);
      if (init.major !== FUSE_KERNEL_VERSION) throw new SnapferryError('E_FUSE_PROTOCOL', `kernel FUSE protocol ${init.major}.${init.minor}; snapferry speaks ${FUSE_KERNEL_VERSION}.x`, {}, ExitCode.unsupported);
      // READDIRPLUS always, not READDIRPLUS_AUTO: with AUTO the kernel falls back to READDIR plus
      // a LOOKUP per entry, and a cold `find` of 50,050 files took 4.86 s instead of 3.2 s
      const want = FUSE_INIT_FLAG.ASYNC_READ | FUSE_INIT_FLAG.DO_READDIRPLUS | FUSE_INIT_FLAG.PARALLEL_DIROPS | FUSE_INIT_FLAG.MAX_PAGES | FUSE_INIT_FLAG.CACHE_SYMLINKS | FUSE_INIT_FLAG.BIG_WRITES;
      readdirPlus = (init.flags & FUSE_INIT_FLAG.DO_READDIRPLUS) !== 0;
      const out = Buffer.alloc(fuse_init_out.SIZE);
      writeInitOut(out, 0, {
        major: FUSE_KERNEL_VERSION,
        minor: Math.min(init.minor, FUSE_KERNEL_MINOR_VERSION),
        maxReadahead: init.maxReadahead,
        flags: init.flags & want,
        maxBackground: 64,
        congestionThreshold: 48,
        maxWrite: 128 * 1024,
        timeGran: 1,
        maxPages: MAX_PAGES,
      });
      setImmediate(() => initDone());
      return [out];
    },
    async [OP.LOOKUP](h, body) {
      const parent = nodeOrThrow(h.nodeid);
      const end = body.indexOf(0);
      const name = body.subarray(0, end < 0 ? body.length : end).toString('utf8');
      const child = await tree.lookup(parent, name);
      const out = Buffer.alloc(fuse_entry_out.SIZE);
      if (!child) {
        // A negative entry the kernel may cache: the name will not appear later.
        writeEntryOut(out, 0, 0, ATTR_VALID_S, null);
        return [out];
      }
      const id = tree.ino(child);
      remember(h.nodeid, name, id);
      writeEntryOut(out, 0, id, ATTR_VALID_S, await attrOf(child));
      return [out];
    },
    async [OP.GETATTR](h) {
      const out = Buffer.alloc(fuse_attr_out.SIZE);
      writeAttrOut(out, 0, ATTR_VALID_S, await attrOf(nodeOrThrow(h.nodeid)));
      return [out];
    },
    async [OP.READLINK](h) {
      return [Buffer.from(await tree.readlink(nodeOrThrow(h.nodeid)))];
    },
    async [OP.OPEN](h, body) {
      const { flags } = parseOpenIn(body);
      if ((flags & 3) !== F.O_RDONLY || flags & F.O_TRUNC) throw new SnapferryError('E_FS_READ_ONLY', 'read-only', {}, ExitCode.failure);
      const node = nodeOrThrow(h.nodeid);
      if (files.size + dirs.size >= MAX_OPEN_HANDLES) throw new SnapferryError('E_TOO_MANY_OPEN', 'too many open handles', {}, ExitCode.failure);
      const fh = nextFh++;
      files.set(fh, node);
      const out = Buffer.alloc(fuse_open_out.SIZE);
      writeOpenOut(out, 0, fh, FOPEN_KEEP_CACHE);
      return [out];
    },
    async [OP.READ](h, body) {
      const r = parseReadIn(body);
      const node = files.get(r.fh) ?? nodeOrThrow(h.nodeid);
      const buf = readBuffers.pop() ?? Buffer.allocUnsafeSlow(Math.max(r.size, READ_BUFFER));
      const target = r.size <= buf.length ? buf.subarray(0, r.size) : Buffer.allocUnsafe(r.size);
      const n = await tree.readInto(node, target, r.offset);
      // replied here (the write copies the bytes to the kernel), so the buffer is free again after
      session.reply(h.unique, 0, target.subarray(0, n));
      // a read that failed may leave a disk read writing into its buffer: only a good one is reused
      if (readBuffers.length < READ_BUFFERS && buf.length === READ_BUFFER) readBuffers.push(buf);
      return null;
    },
    async [OP.RELEASE](_h, body) {
      files.delete(parseReleaseIn(body).fh);
      return [];
    },
    async [OP.OPENDIR](h) {
      const node = nodeOrThrow(h.nodeid);
      if (files.size + dirs.size >= MAX_OPEN_HANDLES) throw new SnapferryError('E_TOO_MANY_OPEN', 'too many open handles', {}, ExitCode.failure);
      const fh = nextFh++;
      const d: DirHandle = { node, next: 1, iter: null, ahead: [], done: false, error: null, released: false, busy: Promise.resolve() };
      dirs.set(fh, d);
      lookAhead(d, readdirPlus);
      const out = Buffer.alloc(fuse_open_out.SIZE);
      writeOpenOut(out, 0, fh, FOPEN_CACHE_DIR | FOPEN_KEEP_CACHE);
      return [out];
    },
    async [OP.READDIR](h, body) {
      return [await readdir(h, body, false)];
    },
    async [OP.READDIRPLUS](h, body) {
      return [await readdir(h, body, true)];
    },
    async [OP.RELEASEDIR](_h, body) {
      const d = dirs.get(parseReleaseIn(body).fh);
      dirs.delete(parseReleaseIn(body).fh);
      if (d) {
        d.released = true;
        restart(d);
      }
      return [];
    },
    async [OP.STATFS](h) {
      const node = tree.nodeOf(h.nodeid) ?? ({ kind: 'root' } as TreeNode);
      const s = tree.statfs(node);
      const out = Buffer.alloc(fuse_statfs_out.SIZE);
      writeStatfsOut(out, 0, { blocks: s.totalBlocks, bfree: s.freeBlocks, bavail: s.freeBlocks, files: s.totalInodes, ffree: s.freeInodes, bsize: s.blockSize, namelen: s.nameMax, frsize: s.blockSize });
      return [out];
    },
    async [OP.GETXATTR](h, body) {
      const { size, name } = parseGetxattrIn(body);
      const value = await tree.getxattr(nodeOrThrow(h.nodeid), name.toString('utf8'));
      return sized(value, size);
    },
    async [OP.LISTXATTR](h, body) {
      const { size } = parseGetxattrIn(body);
      const list = await tree.listxattr(nodeOrThrow(h.nodeid));
      return sized(Buffer.concat(list.map((n) => Buffer.from(`${n}\0`))), size);
    },
    async [OP.ACCESS](_h, body) {
      if (body.readUInt32LE(0) & F.W_OK) throw new SnapferryError('E_FS_READ_ONLY', 'read-only', {}, ExitCode.failure);
      return [];
    },
    async [OP.FLUSH]() {
      return [];
    },
    async [OP.FSYNC]() {
      return [];
    },
    async [OP.FSYNCDIR]() {
      return [];
    },
    async [OP.DESTROY]() {
      return [];
    },
  };

  /** A getxattr/listxattr answer: the size when asked for it (size 0), ERANGE when it does not fit. */
  function sized(value: Buffer, size: number): Buffer[] {
    if (size === 0) {
      const out = Buffer.alloc(fuse_getxattr_out.SIZE);
      out.writeUInt32LE(value.length, 0);
      return [out];
    }
    if (value.length > size) throw new SnapferryError('E_RANGE', 'xattr larger than the buffer', {}, ExitCode.failure);
    return [value];
  }

  /** Runs `fn` alone on the handle: its iterator and look-ahead are shared by requests and look-ahead. */
  async function locked<T>(d: DirHandle, fn: () => Promise<T>): Promise<T> {
    const prev = d.busy;
    let release!: () => void;
    d.busy = new Promise((res) => (release = res));
    await prev;
    try {
      return await fn();
    } finally {
      release();
    }
  }

  /** Drops the handle's iterator and look-ahead: the listing starts again from its first entry. */
  function restart(d: DirHandle): void {
    void d.iter?.return?.();
    d.iter = null;
    aheadTotal -= d.ahead.length;
    d.ahead = [];
    d.done = false;
    d.error = null;
    d.next = 1;
  }

  /**
   * Takes entries from the handle's iterator until `count` are ahead (or the listing ends), and
   * starts their stats when `plus`. A failing iterator ends the listing with its error, which the
   * request that reaches it answers. In the background (`spare`), only while the total look-ahead
   * allows.
   */
  async function fill(d: DirHandle, count: number, plus: boolean, spare: boolean): Promise<void> {
    d.iter ??= tree.readdir(d.node)[Symbol.asyncIterator]();
    while (d.ahead.length < count && !d.done && !d.released) {
      if (spare && aheadTotal >= READDIR_LOOKAHEAD_TOTAL) return;
      let n: IteratorResult<TreeEntry>;
      try {
        n = await d.iter.next();
      } catch (err) {
        d.done = true;
        d.error = err;
        return;
      }
      if (n.done) {
        d.done = true;
        return;
      }
      const e = n.value;
      const name = e.rawName ?? e.name;
      d.ahead.push({ e, name, length: typeof name === 'string' ? Buffer.byteLength(name) : name.length, attr: plus ? attrOf(e.node).catch(() => null) : null });
      aheadTotal++;
    }
  }

  /**
   * Prepares the handle's next entries once the current request has been answered, READDIR_STEP
   * at a time: a request that arrives meanwhile waits for one step, not for the whole look-ahead
   * (holding the handle for all of it made READDIRPLUS requests wait 0.7 of their 1.1 s in a walk).
   */
  function lookAhead(d: DirHandle, plus: boolean): void {
    const step = (): void => {
      if (d.done || d.released || d.ahead.length >= READDIR_LOOKAHEAD) return;
      locked(d, () => fill(d, Math.min(READDIR_LOOKAHEAD, d.ahead.length + READDIR_STEP), plus, true)).then(
        () => setImmediate(step),
        () => {},
      );
    };
    setImmediate(step);
  }

  /**
   * One READDIR(PLUS) reply: entries from the handle's offset on, as many as fit `size` bytes. A
   * request for another offset than the handle's next one (seekdir, rewinddir) restarts the
   * listing and skips to it.
   */
  async function readdir(h: FuseInHeader, body: Buffer, plus: boolean): Promise<Buffer> {
    const r = parseReadIn(body);
    const d = dirs.get(r.fh);
    if (!d) throw new SnapferryError('E_FS_BAD_HANDLE', `no directory handle ${r.fh}`, {}, ExitCode.failure);
    const reply = await locked(d, () => readdirLocked(d, h.nodeid, r.offset, r.size, plus));
    lookAhead(d, plus);
    return reply;
  }

  async function readdirLocked(d: DirHandle, dirId: number, offset: number, size: number, plus: boolean): Promise<Buffer> {
    const out = Buffer.alloc(Math.min(size, 1 << 20));
    let used = 0;
    const want = offset + 1; // the offset names the last entry read; the next one is offset+1
    if (want !== d.next) restart(d);
    const recSize = (nameLen: number): number => direntAlign((plus ? FUSE_NAME_OFFSET_DIRENTPLUS : FUSE_NAME_OFFSET) + nameLen);
    // '.' and '..' first (entries 1 and 2)
    for (const [pos, name] of [
      [1, DOT],
      [2, DOTDOT],
    ] as const) {
      if (d.next !== pos) continue;
      if (pos < want) {
        d.next++; // a seek past it (after a restart): not listed again
        continue;
      }
      const need = recSize(name.length);
      if (used + need > out.length) return out.subarray(0, used);
      if (plus) {
        writeEntryOut(out, used, 0, 0, null); // nodeid 0: the kernel does not instantiate it
        used += fuse_entry_out.SIZE;
        used += writeDirent(out, used, dirId, pos, S_IF.dir >> 12, name);
      } else used += writeDirent(out, used, dirId, pos, S_IF.dir >> 12, name);
      d.next++;
    }
    // skip to the wanted offset after a seek
    while (d.next < want) {
      if (d.ahead.length === 0) await fill(d, 1, false, false);
      if (d.ahead.length === 0) break;
      d.ahead.shift();
      aheadTotal--;
      d.next++;
    }
    for (;;) {
      if (d.ahead.length === 0) await fill(d, READDIR_STEP, plus, false);
      const a = d.ahead[0];
      if (!a) {
        // the end of the listing, or its error (answered once what came before it is out)
        if (d.error && used === 0) throw d.error;
        return out.subarray(0, used);
      }
      const need = recSize(a.length);
      if (used + need > out.length) return out.subarray(0, used);
      if (plus) a.attr ??= attrOf(a.e.node).catch(() => null);
      const attr = plus ? await a.attr : null;
      d.ahead.shift();
      aheadTotal--;
      const id = tree.ino(a.e.node);
      remember(dirId, a.e.name, id);
      d.next++;
      if (plus) {
        // an entry whose stat failed goes without attributes: its LOOKUP then answers the error
        writeEntryOut(out, used, attr ? id : 0, ATTR_VALID_S, attr);
        used += fuse_entry_out.SIZE;
      }
      used += writeDirent(out, used, id, d.next - 1, S_IF[a.e.type] >> 12, a.name, a.length);
    }
  }

  const writes = new Set<number>([OP.SETATTR, OP.SYMLINK, OP.MKNOD, OP.MKDIR, OP.UNLINK, OP.RMDIR, OP.RENAME, OP.LINK, OP.WRITE, OP.SETXATTR, OP.REMOVEXATTR, OP.CREATE, OP.FALLOCATE, OP.RENAME2, OP.TMPFILE, OP.COPY_FILE_RANGE]);

  const onRequest = (h: FuseInHeader, body: Buffer): void => {
    // no reply is expected to these
    if (h.opcode === OP.FORGET || h.opcode === OP.BATCH_FORGET || h.opcode === OP.INTERRUPT) return;
    if (writes.has(h.opcode)) return session.reply(h.unique, -E.EROFS);
    const fn = handlers[h.opcode];
    if (!fn) return session.reply(h.unique, -E.ENOSYS);
    fn(h, body).then(
      (payload) => {
        if (payload) session.reply(h.unique, 0, ...payload);
      },
      (err) => {
        const e = toSnapferryError(err);
        if (e.code === 'E_FS_READ_ONLY') return session.reply(h.unique, -E.EROFS);
        if (e.code === 'E_RANGE') return session.reply(h.unique, -E.ERANGE);
        if (e.code === 'E_TOO_MANY_OPEN') return session.reply(h.unique, -E.EMFILE);
        session.reply(h.unique, fail(opName(h.opcode), h.nodeid, e));
      },
    );
  };

  session = await FuseSession.mount(mountPoint, { fsname: `snapferry:${process.pid}`, subtype: 'snapferry', allowOther: opts.allowOther === true }, onRequest);
  await Promise.race([initialised, session.closed]);
  raiseReadahead(mountPoint, log);
  return {
    mountPoint,
    errorCounts,
    closed: session.closed,
    unmount: () => session.unmount(),
  };
}

/**
 * The kernel reads ahead of a sequential reader at most its bdi's read_ahead_kb, 128 KiB for a new
 * FUSE mount (and INIT can only lower it): 128 KiB per request, one request's round trip at a time.
 * Raised after INIT to READAHEAD_KB, a dd of a 1 GiB NTFS file through the mount took 0.76 s instead
 * of 2.15 s. Random reads are unaffected (the kernel grows its window only for sequential access).
 * Needs root (sysfs); without it the mount works at the default and the log says so.
 */
const READAHEAD_KB = 1024;
function raiseReadahead(mountPoint: string, log: (e: Record<string, unknown>) => void): void {
  const m = mountAt(mountPoint);
  if (!m || !/^\d+:\d+$/.test(m.device)) return;
  try {
    writeFileSync(`/sys/class/bdi/${m.device}/read_ahead_kb`, `${READAHEAD_KB}\n`);
  } catch (err) {
    log({ level: 'warn', op: 'init', message: `read-ahead stays at the kernel's default: ${(err as Error).message}` });
  }
}

function opName(op: number): string {
  for (const [k, v] of Object.entries(OP)) if (v === op) return k.toLowerCase();
  return `op${op}`;
}
