/**
 * The FUSE kernel protocol (linux/fuse.h, protocol 7.x), the part a read-only filesystem speaks.
 * Names are the header's. Every request starts with fuse_in_header and every reply with
 * fuse_out_header; all integers are little-endian on the machines we run on (the kernel writes
 * host order; x86-64 and arm64 are little-endian).
 */

export const FUSE_KERNEL_VERSION = 7;
/** The minor version we speak: fuse_attr.flags, max_pages, flags2 (7.36) are known. */
export const FUSE_KERNEL_MINOR_VERSION = 36;
export const FUSE_ROOT_ID = 1;
export const FUSE_MIN_READ_BUFFER = 8192;

export const FUSE_OPCODE = {
  LOOKUP: 1,
  FORGET: 2,
  GETATTR: 3,
  SETATTR: 4,
  READLINK: 5,
  SYMLINK: 6,
  MKNOD: 8,
  MKDIR: 9,
  UNLINK: 10,
  RMDIR: 11,
  RENAME: 12,
  LINK: 13,
  OPEN: 14,
  READ: 15,
  WRITE: 16,
  STATFS: 17,
  RELEASE: 18,
  FSYNC: 20,
  SETXATTR: 21,
  GETXATTR: 22,
  LISTXATTR: 23,
  REMOVEXATTR: 24,
  FLUSH: 25,
  INIT: 26,
  OPENDIR: 27,
  READDIR: 28,
  RELEASEDIR: 29,
  FSYNCDIR: 30,
  GETLK: 31,
  SETLK: 32,
  SETLKW: 33,
  ACCESS: 34,
  CREATE: 35,
  INTERRUPT: 36,
  BMAP: 37,
  DESTROY: 38,
  IOCTL: 39,
  POLL: 40,
  BATCH_FORGET: 42,
  FALLOCATE: 43,
  READDIRPLUS: 44,
  RENAME2: 45,
  LSEEK: 46,
  COPY_FILE_RANGE: 47,
  SYNCFS: 50,
  TMPFILE: 51,
} as const;

/** fuse_init_in/out flags (the low 32 bits; flags2 holds the high ones). */
export const FUSE_INIT_FLAG = {
  ASYNC_READ: 1 << 0,
  EXPORT_SUPPORT: 1 << 4,
  BIG_WRITES: 1 << 5,
  DO_READDIRPLUS: 1 << 13,
  READDIRPLUS_AUTO: 1 << 14,
  PARALLEL_DIROPS: 1 << 18,
  MAX_PAGES: 1 << 22,
  CACHE_SYMLINKS: 1 << 23,
  INIT_EXT: 1 << 30,
} as const;

/** fuse_open_out.open_flags */
export const FOPEN_KEEP_CACHE = 1 << 1;
export const FOPEN_CACHE_DIR = 1 << 3;

/** struct fuse_in_header: len, opcode, unique, nodeid, uid, gid, pid, total_extlen, padding (40 bytes). */
export const fuse_in_header = { SIZE: 40 } as const;
export interface FuseInHeader {
  len: number;
  opcode: number;
  unique: bigint;
  nodeid: number;
  uid: number;
  gid: number;
  pid: number;
}
export function parseInHeader(b: Buffer): FuseInHeader {
  return {
    len: b.readUInt32LE(0),
    opcode: b.readUInt32LE(4),
    unique: b.readBigUInt64LE(8),
    nodeid: Number(b.readBigUInt64LE(16)),
    uid: b.readUInt32LE(24),
    gid: b.readUInt32LE(28),
    pid: b.readUInt32LE(32),
  };
}

/** struct fuse_out_header: len, error (negative errno), unique (16 bytes). */
export const fuse_out_header = { SIZE: 16 } as const;
export function writeOutHeader(b: Buffer, len: number, error: number, unique: bigint): void {
  b.writeUInt32LE(len, 0);
  b.writeInt32LE(error, 4);
  b.writeBigUInt64LE(unique, 8);
}

/** What a reader knows of a node, in the units fuse_attr wants. */
export interface FuseAttr {
  ino: number;
  size: number;
  blocks: number;
  atimeNs: bigint;
  mtimeNs: bigint;
  ctimeNs: bigint;
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  rdev: number;
  blksize: number;
}

/** struct fuse_attr (88 bytes): ino size blocks atime mtime ctime (u64), atimensec mtimensec ctimensec mode nlink uid gid rdev blksize flags (u32). */
export const fuse_attr = { SIZE: 88 } as const;
const NS = 1_000_000_000n;
function splitNs(ns: bigint): [bigint, number] {
  // seconds may be negative (before 1970): the kernel reads the u64 as a signed time64_t
  let s = ns / NS;
  let n = ns % NS;
  if (n < 0n) {
    n += NS;
    s -= 1n;
  }
  return [BigInt.asUintN(64, s), Number(n)];
}
/** A u64 from a non-negative safe integer, without a BigInt (a READDIRPLUS reply writes ~10 per entry). */
export function writeU64(b: Buffer, o: number, n: number): void {
  b.writeUInt32LE(n % 0x100000000, o);
  b.writeUInt32LE(Math.floor(n / 0x100000000), o + 4);
}
export function writeAttr(b: Buffer, o: number, a: FuseAttr): void {
  writeU64(b, o, a.ino);
  writeU64(b, o + 8, a.size);
  writeU64(b, o + 16, a.blocks);
  const [as, an] = splitNs(a.atimeNs);
  const [ms, mn] = splitNs(a.mtimeNs);
  const [cs, cn] = splitNs(a.ctimeNs);
  b.writeBigUInt64LE(as, o + 24);
  b.writeBigUInt64LE(ms, o + 32);
  b.writeBigUInt64LE(cs, o + 40);
  b.writeUInt32LE(an, o + 48);
  b.writeUInt32LE(mn, o + 52);
  b.writeUInt32LE(cn, o + 56);
  b.writeUInt32LE(a.mode >>> 0, o + 60);
  b.writeUInt32LE(Math.min(a.nlink, 0xffffffff), o + 64);
  b.writeUInt32LE(a.uid >>> 0, o + 68);
  b.writeUInt32LE(a.gid >>> 0, o + 72);
  b.writeUInt32LE(a.rdev >>> 0, o + 76);
  b.writeUInt32LE(a.blksize, o + 80);
  b.writeUInt32LE(0, o + 84);
}

/** struct fuse_entry_out (128 bytes): nodeid generation entry_valid attr_valid (u64), entry_valid_nsec attr_valid_nsec (u32), fuse_attr. */
export const fuse_entry_out = { SIZE: 128 } as const;
export function writeEntryOut(b: Buffer, o: number, nodeid: number, validSeconds: number, a: FuseAttr | null): void {
  b.fill(0, o, o + fuse_entry_out.SIZE);
  writeU64(b, o, nodeid);
  writeU64(b, o + 16, validSeconds);
  writeU64(b, o + 24, validSeconds);
  if (a) writeAttr(b, o + 40, a);
}

/** struct fuse_attr_out (104 bytes): attr_valid (u64), attr_valid_nsec dummy (u32), fuse_attr. */
export const fuse_attr_out = { SIZE: 104 } as const;
export function writeAttrOut(b: Buffer, o: number, validSeconds: number, a: FuseAttr): void {
  writeU64(b, o, validSeconds);
  b.writeUInt32LE(0, o + 8);
  b.writeUInt32LE(0, o + 12);
  writeAttr(b, o + 16, a);
}

/** struct fuse_init_in: major minor max_readahead flags flags2 unused[11] (the first 16 bytes before 7.36). */
export interface FuseInitIn {
  major: number;
  minor: number;
  maxReadahead: number;
  flags: number;
  flags2: number;
}
export function parseInitIn(b: Buffer): FuseInitIn {
  return { major: b.readUInt32LE(0), minor: b.readUInt32LE(4), maxReadahead: b.readUInt32LE(8), flags: b.readUInt32LE(12), flags2: b.length >= 20 ? b.readUInt32LE(16) : 0 };
}

/** struct fuse_init_out (64 bytes). */
export const fuse_init_out = { SIZE: 64 } as const;
export function writeInitOut(b: Buffer, o: number, v: { major: number; minor: number; maxReadahead: number; flags: number; maxBackground: number; congestionThreshold: number; maxWrite: number; timeGran: number; maxPages: number }): void {
  b.fill(0, o, o + fuse_init_out.SIZE);
  b.writeUInt32LE(v.major, o);
  b.writeUInt32LE(v.minor, o + 4);
  b.writeUInt32LE(v.maxReadahead, o + 8);
  b.writeUInt32LE(v.flags >>> 0, o + 12);
  b.writeUInt16LE(v.maxBackground, o + 16);
  b.writeUInt16LE(v.congestionThreshold, o + 18);
  b.writeUInt32LE(v.maxWrite, o + 20);
  b.writeUInt32LE(v.timeGran, o + 24);
  b.writeUInt16LE(v.maxPages, o + 28);
}

/** struct fuse_open_in: flags, open_flags. */
export function parseOpenIn(b: Buffer): { flags: number } {
  return { flags: b.readUInt32LE(0) };
}
/** struct fuse_open_out (16 bytes): fh (u64), open_flags, backing_id. */
export const fuse_open_out = { SIZE: 16 } as const;
export function writeOpenOut(b: Buffer, o: number, fh: number, openFlags: number): void {
  b.writeBigUInt64LE(BigInt(fh), o);
  b.writeUInt32LE(openFlags, o + 8);
  b.writeUInt32LE(0, o + 12);
}

/** struct fuse_read_in: fh offset (u64), size read_flags (u32), lock_owner (u64), flags padding (u32). */
export function parseReadIn(b: Buffer): { fh: number; offset: number; size: number } {
  return { fh: Number(b.readBigUInt64LE(0)), offset: Number(b.readBigUInt64LE(8)), size: b.readUInt32LE(16) };
}

/** struct fuse_release_in: fh (u64), flags release_flags (u32), lock_owner (u64). */
export function parseReleaseIn(b: Buffer): { fh: number } {
  return { fh: Number(b.readBigUInt64LE(0)) };
}

/** struct fuse_getxattr_in: size padding (u32), then the name, NUL-terminated (also LISTXATTR's input, without a name). */
export function parseGetxattrIn(b: Buffer): { size: number; name: Buffer } {
  const end = b.indexOf(0, 8);
  return { size: b.readUInt32LE(0), name: b.subarray(8, end < 0 ? b.length : end) };
}
/** struct fuse_getxattr_out (8 bytes): size padding. The reply to a size query (size 0). */
export const fuse_getxattr_out = { SIZE: 8 } as const;

/** struct fuse_kstatfs (80 bytes): blocks bfree bavail files ffree (u64), bsize namelen frsize padding spare[6] (u32). */
export const fuse_statfs_out = { SIZE: 80 } as const;
export function writeStatfsOut(b: Buffer, o: number, v: { blocks: number; bfree: number; bavail: number; files: number; ffree: number; bsize: number; namelen: number; frsize: number }): void {
  b.fill(0, o, o + fuse_statfs_out.SIZE);
  b.writeBigUInt64LE(BigInt(v.blocks), o);
  b.writeBigUInt64LE(BigInt(v.bfree), o + 8);
  b.writeBigUInt64LE(BigInt(v.bavail), o + 16);
  b.writeBigUInt64LE(BigInt(v.files), o + 24);
  b.writeBigUInt64LE(BigInt(v.ffree), o + 32);
  b.writeUInt32LE(v.bsize, o + 40);
  b.writeUInt32LE(v.namelen, o + 44);
  b.writeUInt32LE(v.frsize, o + 48);
}

/** struct fuse_dirent: ino off (u64), namelen type (u32), name; each record padded to 8 bytes. */
export const FUSE_NAME_OFFSET = 24;
export const FUSE_NAME_OFFSET_DIRENTPLUS = fuse_entry_out.SIZE + FUSE_NAME_OFFSET;
export function direntAlign(n: number): number {
  return (n + 7) & ~7;
}
/** Writes one fuse_dirent; `name` is bytes, or a string written as UTF-8 (`nameLength` bytes long, which the caller has measured to check the room). Returns its padded length. */
export function writeDirent(b: Buffer, o: number, ino: number, off: number, type: number, name: Buffer | string, nameLength = typeof name === 'string' ? Buffer.byteLength(name) : name.length): number {
  writeU64(b, o, ino);
  writeU64(b, o + 8, off);
  b.writeUInt32LE(nameLength, o + 16);
  b.writeUInt32LE(type, o + 20);
  if (typeof name === 'string') b.write(name, o + FUSE_NAME_OFFSET, nameLength, 'utf8');
  else name.copy(b, o + FUSE_NAME_OFFSET);
  const end = direntAlign(FUSE_NAME_OFFSET + nameLength);
  b.fill(0, o + FUSE_NAME_OFFSET + nameLength, o + end);
  return end;
}

/** struct fuse_forget_in: nlookup; fuse_batch_forget_in: count dummy, then fuse_forget_one { nodeid nlookup }[count]. */
export function parseBatchForget(b: Buffer): { nodeid: number; nlookup: number }[] {
  const count = Math.min(b.readUInt32LE(0), Math.floor((b.length - 8) / 16));
  const out: { nodeid: number; nlookup: number }[] = [];
  for (let i = 0; i < count; i++) out.push({ nodeid: Number(b.readBigUInt64LE(8 + i * 16)), nlookup: Number(b.readBigUInt64LE(16 + i * 16)) });
  return out;
}
