/**
 * The FUSE frontend: a VmTree (src/vfs) as a read-only mounted directory, through fuse-native
 * (libfuse 2's high-level, path-based API, with its bundled prebuilt addon).
 *
 * Read-only three times over: the mount is `ro` (the kernel answers EROFS before asking us), every
 * writing operation we register answers EROFS anyway, and nothing below this layer can write.
 *
 * What fuse-native 2.2.6 cannot carry, and so this mount cannot show (the readers know them; `stat
 * --json` and the backup engine get them):
 *  - timestamps finer than a millisecond (its stat array holds milliseconds);
 *  - inode numbers over 32 bits (the tree packs a volume slot and the filesystem's inode into 32);
 *  - names that are not UTF-8 (paths cross as JS strings);
 *  - readdir with offsets: a directory's names are handed over in one array per opendir, so a
 *    200,000-entry directory costs its names' memory (~10 MB) for the time of that one call.
 */
import Fuse, { type FuseOps, type FuseStat, type FuseStatfs } from 'fuse-native';
import { constants as C } from 'node:os';
import { constants as F } from 'node:fs';
import type { VmTree, TreeNode } from '../vfs/tree.js';
import { ExitCode, SnapferryError, toSnapferryError } from '../util/errors.js';

const E = C.errno;
/** Open file handles at most (each is a small object; a runaway client gets EMFILE). */
export const MAX_OPEN_HANDLES = 1 << 20;
/** Distinct (code, path) errors logged in full; past this only counted. */
export const MAX_LOGGED_ERRORS = 10_000;
/** Seconds the kernel may cache names and attributes: nothing here ever changes. */
export const CACHE_TIMEOUT_S = 60;
/** An operation that takes longer than this answers EIO (fuse-native's own timer). */
export const OP_TIMEOUT_MS = 120_000;

export interface MountOptions {
  allowOther?: boolean;
  /** Called with one JSON-able record per event worth a log line. */
  log?: (record: Record<string, unknown>) => void;
  /** libfuse's debug output. */
  debug?: boolean;
}

/** Errors to errno, negative, as libfuse wants them. Everything not listed is EIO (and logged). */
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

function ms(ns: bigint): number {
  const v = Number(ns / 1_000_000n);
  return v > 0 ? v : 0;
}

/** fuse-native's statfs fields are 32-bit: grow the fragment size until the block counts fit. */
export function fuseStatfs(s: { blockSize: number; totalBlocks: number; freeBlocks: number; totalInodes: number; freeInodes: number; nameMax: number }): FuseStatfs {
  let frsize = s.blockSize;
  let blocks = s.totalBlocks;
  let bfree = s.freeBlocks;
  while (blocks > 0xffffffff) {
    frsize *= 2;
    blocks = Math.ceil(blocks / 2);
    bfree = Math.floor(bfree / 2);
  }
  const files = Math.min(s.totalInodes, 0xffffffff);
  const ffree = Math.min(s.freeInodes, 0xffffffff);
  // ST_RDONLY = 1
  return { bsize: frsize, frsize, blocks, bfree, bavail: bfree, files, ffree, favail: ffree, fsid: 0, flag: 1, namemax: s.nameMax };
}

/** libfuse options beyond what fuse-native's constructor knows: ro, use_ino, the source name. */
class SnapferryFuse extends Fuse {
  constructor(
    mnt: string,
    ops: FuseOps,
    private readonly extra: string[],
  ) {
    super(mnt, ops, { timeout: OP_TIMEOUT_MS });
  }

  // fuse-native builds its `-o` string here; its constructor options have no `ro` or `use_ino`.
  _fuseOptions(): string {
    return '-o' + this.extra.join(',');
  }

  // fuse-native's own getxattr never answers ERANGE and ignores the caller's buffer size.
  _op_getxattr(signal: (res: number, buf?: ArrayBuffer) => void, path: string, name: string, valueBuf: Buffer): void {
    const ops = (this as unknown as { ops: { getxattr(path: string, name: string, cb: (err: number, v?: Buffer) => void): void } }).ops;
    ops.getxattr(path, name, (err, value) => {
      if (err || !value) return signal(err || -E.ENODATA, valueBuf.buffer as ArrayBuffer);
      if (valueBuf.length === 0) return signal(value.length, valueBuf.buffer as ArrayBuffer);
      if (value.length > valueBuf.length) return signal(-E.ERANGE, valueBuf.buffer as ArrayBuffer);
      value.copy(valueBuf);
      return signal(value.length, valueBuf.buffer as ArrayBuffer);
    });
  }
}

export interface Mounted {
  readonly mountPoint: string;
  /** Unmounts (fusermount -u) and stops serving. */
  unmount(): Promise<void>;
  /** Errors answered so far, by code. */
  readonly errorCounts: Map<string, number>;
}

/**
 * Mounts `tree` at `mountPoint` (an existing, empty, unmounted directory). Resolves once the kernel
 * has the mount (libfuse's init ran), rejects with E_MOUNT_FAILED otherwise.
 */
export async function mountTree(tree: VmTree, mountPoint: string, opts: MountOptions = {}): Promise<Mounted> {
  const log = opts.log ?? (() => {});
  const handles = new Map<number, TreeNode>();
  let nextFh = 1;
  const errorCounts = new Map<string, number>();
  const logged = new Set<string>();

  /** Answers an operation's failure: the errno, and a log line for what is not a plain "no such". */
  const fail = (op: string, path: string, err: unknown): number => {
    const e = toSnapferryError(err);
    const errno = errnoOf(e);
    if (errno === -E.EIO) {
      errorCounts.set(e.code, (errorCounts.get(e.code) ?? 0) + 1);
      const key = `${e.code}\0${path}`;
      if (!logged.has(key) && logged.size < MAX_LOGGED_ERRORS) {
        logged.add(key);
        log({ level: 'error', op, path, code: e.code, message: e.message });
      }
    }
    return errno;
  };

  const statOf = async (node: TreeNode): Promise<FuseStat> => {
    const st = await tree.stat(node);
    return {
      mode: st.mode,
      uid: st.uid,
      gid: st.gid,
      size: st.size,
      nlink: st.nlink,
      ino: st.ino,
      rdev: st.rdev ?? 0,
      blksize: 4096,
      blocks: Math.ceil(st.allocatedSize / 512),
      atime: ms(st.atimeNs),
      mtime: ms(st.mtimeNs),
      ctime: ms(st.ctimeNs),
    };
  };

  const erofs = (...args: unknown[]): void => {
    const cb = args[args.length - 1] as (err: number) => void;
    cb(-E.EROFS);
  };

  const ops: FuseOps = {
    getattr(path, cb) {
      tree.resolve(path).then(statOf).then(
        (st) => cb(0, st),
        (err) => cb(fail('getattr', path, err)),
      );
    },
    readdir(path, cb) {
      (async () => {
        const dir = await tree.resolve(path);
        const names = ['.', '..'];
        const prefix = path === '/' ? '/' : `${path}/`;
        for await (const e of tree.readdir(dir)) {
          names.push(e.name);
          tree.remember(prefix + e.name, e.node);
        }
        return names;
      })().then(
        (names) => cb(0, names),
        (err) => cb(fail('readdir', path, err)),
      );
    },
    open(path, flags, cb) {
      if ((flags & 3) !== F.O_RDONLY || flags & (F.O_TRUNC | F.O_CREAT)) return cb(-E.EROFS);
      if (handles.size >= MAX_OPEN_HANDLES) return cb(-E.EMFILE);
      tree.resolve(path).then(
        (node) => {
          const fh = nextFh++;
          if (nextFh > 0x7fffffff) nextFh = 1;
          handles.set(fh, node);
          cb(0, fh);
        },
        (err) => cb(fail('open', path, err)),
      );
    },
    release(_path, fd, cb) {
      handles.delete(fd);
      cb(0);
    },
    read(path, fd, buf, len, pos, cb) {
      const node = handles.get(fd);
      (node ? Promise.resolve(node) : tree.resolve(path))
        .then((n) => tree.read(n, pos, len))
        .then(
          (data) => {
            data.copy(buf);
            cb(data.length);
          },
          (err) => cb(fail('read', path, err)),
        );
    },
    readlink(path, cb) {
      tree.resolve(path).then((n) => tree.readlink(n)).then(
        (target) => cb(0, target),
        (err) => cb(fail('readlink', path, err)),
      );
    },
    listxattr(path, cb) {
      tree.resolve(path).then((n) => tree.listxattr(n)).then(
        (names) => cb(0, names),
        (err) => cb(fail('listxattr', path, err)),
      );
    },
    getxattr(path, name, cb: unknown) {
      // called by SnapferryFuse._op_getxattr as (path, name, cb)
      const done = cb as (err: number, v?: Buffer) => void;
      tree.resolve(path).then((n) => tree.getxattr(n, name)).then(
        (v) => done(0, v),
        (err) => done(fail('getxattr', path, err)),
      );
    },
    statfs(path, cb) {
      tree.resolve(path).then(
        (n) => cb(0, fuseStatfs(tree.statfs(n))),
        (err) => cb(fail('statfs', path, err)),
      );
    },
    access(path, mode, cb) {
      if (mode & F.W_OK) return cb(-E.EROFS);
      tree.resolve(path).then(
        () => cb(0),
        (err) => cb(fail('access', path, err)),
      );
    },
    // Never reached on a ro mount; answered anyway, so that no write can ever be half-served.
    write: erofs,
    create: erofs,
    truncate: erofs,
    ftruncate: erofs,
    chmod: erofs,
    chown: erofs,
    utimens: erofs,
    mknod: erofs,
    mkdir: erofs,
    unlink: erofs,
    rmdir: erofs,
    rename: erofs,
    link: erofs,
    symlink: erofs,
    setxattr: erofs,
    removexattr: erofs,
  };

  const options = ['ro', 'use_ino', 'default_permissions', `fsname=snapferry:${process.pid}`, 'subtype=snapferry', 'kernel_cache', `entry_timeout=${CACHE_TIMEOUT_S}`, `attr_timeout=${CACHE_TIMEOUT_S}`];
  if (opts.allowOther) options.push('allow_other');
  if (opts.debug) options.push('debug');
  const fuse = new SnapferryFuse(mountPoint, ops, options);
  await new Promise<void>((resolve, reject) => {
    fuse.mount((err) => {
      if (err) reject(new SnapferryError('E_MOUNT_FAILED', `cannot mount at ${mountPoint}: ${err.message}`, { mountPoint }, ExitCode.failure));
      else resolve();
    });
  });
  let unmounted: Promise<void> | undefined;
  return {
    mountPoint: fuse.mnt,
    errorCounts,
    unmount() {
      unmounted ??= new Promise<void>((resolve, reject) => {
        fuse.unmount((err) => (err ? reject(new SnapferryError('E_UMOUNT_FAILED', `cannot unmount ${fuse.mnt}: ${err.message}`, { mountPoint: fuse.mnt }, ExitCode.failure)) : resolve()));
      });
      return unmounted;
    },
  };
}
