/**
 * The one read-only filesystem interface. NTFS and ext implement it; the unified tree (vfs/), the
 * FUSE mount and the backup engine consume it. A filesystem reads through a VolumeSource (a byte
 * range of a Disk) and never opens files itself, so every reader runs on a Buffer and can be fuzzed.
 *
 * Nodes are named by a stable inode number: the ext inode number, the NTFS MFT record number.
 * Timestamps are bigint nanoseconds since the Unix epoch (negative before 1970), which holds NTFS's
 * 100 ns ticks and ext's nanoseconds with the extra epoch bits exactly.
 */

export type FileType = 'file' | 'dir' | 'symlink' | 'blockdev' | 'chardev' | 'fifo' | 'socket';

/** st_mode type bits, as POSIX and Linux's stat(2) define them. */
export const S_IFMT = 0o170000;
export const S_IF: Record<FileType, number> = {
  socket: 0o140000,
  symlink: 0o120000,
  file: 0o100000,
  blockdev: 0o060000,
  dir: 0o040000,
  chardev: 0o020000,
  fifo: 0o010000,
};

/** The bytes a filesystem lives in: a volume of a disk (offset already applied). */
export interface VolumeSource {
  readonly size: number;
  readInto(out: Buffer, offset: number): Promise<void>;
  read(offset: number, length: number): Promise<Buffer>;
}

export interface Stat {
  ino: number;
  type: FileType;
  /** Full st_mode: type bits | permission bits (NTFS: synthesised as ntfs-3g does by default). */
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  /** Logical size in bytes (a symlink: its target's length). */
  size: number;
  /** Bytes the filesystem allocated for the data (st_blocks * 512). */
  allocatedSize: number;
  atimeNs: bigint;
  mtimeNs: bigint;
  /** Inode/MFT change time. */
  ctimeNs: bigint;
  birthtimeNs?: bigint;
  /** Device number for block and character devices (Linux encoding). */
  rdev?: number;
  /** Filesystem-specific facts: NTFS owner SID and DOS attributes, ext inode flags, ... */
  ntfs?: { ownerSid?: string; dosAttributes: number; reparseTag?: number; encrypted: boolean; compressed: boolean; sparse: boolean; streams: string[] };
  ext?: { flags: number; encrypted: boolean; casefolded: boolean; generation: number };
}

/** Linux's major/minor of a dev_t (glibc gnu_dev_major / gnu_dev_minor). */
export function devNumbers(rdev: number): { major: number; minor: number } {
  const dev = BigInt(rdev);
  const major = Number(((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn));
  const minor = Number((dev & 0xffn) | ((dev >> 12n) & ~0xffn));
  return { major, minor };
}

/** How much of a Stat to fill in: 'full' (the default) or only the POSIX fields. */
export type StatDetail = 'full' | 'posix';

export interface DirEntry {
  /** The name as the filesystem stores it, decoded (UTF-8 for ext, UTF-16 for NTFS). */
  name: string;
  /** ext names are bytes, not necessarily UTF-8: the exact bytes, for names that do not decode. */
  rawName?: Buffer;
  ino: number;
  type: FileType;
}

export type ExtentState = 'data' | 'hole' | 'unwritten';

/** A range of a file's data: `data` is stored (at `physical`, bytes into the volume, when not compressed/resident), `hole` and `unwritten` read as zeros. */
export interface FileExtent {
  offset: number;
  length: number;
  state: ExtentState;
  physical?: number;
}

export interface FsInfo {
  kind: 'ntfs' | 'ext2' | 'ext3' | 'ext4';
  label?: string;
  uuid?: string;
  blockSize: number;
  totalBlocks: number;
  freeBlocks: number;
  totalInodes?: number;
  freeInodes?: number;
  /** Things a user should know: "dirty", "hibernated", "journal replayed: 3 transactions, 41 blocks" ... */
  notes: string[];
}

export interface FileSystem {
  readonly info: FsInfo;
  readonly rootIno: number;
  /** The child named `name` of directory `dirIno` (NTFS: case-insensitive through $UpCase), or null. */
  lookup(dirIno: number, name: string): Promise<number | null>;
  /**
   * Everything the filesystem records of a node. With `'posix'` only the POSIX fields are promised
   * (`ntfs` and `ext` may be left out): what a mount's or a backup's walk needs, without the lookups
   * the rest can cost per file (NTFS: the owner's SID in $Secure, the stream names). The Stat is a
   * new object each call: the caller may change it.
   */
  stat(ino: number, detail?: StatDetail): Promise<Stat>;
  /** Entries of a directory, streamed (no "." and ".."); large directories never built whole. */
  readdir(dirIno: number): AsyncIterable<DirEntry>;
  /** Bytes [offset, offset+length) of a file (or of a named NTFS stream), clipped at its end. */
  read(ino: number, offset: number, length: number, stream?: string): Promise<Buffer>;
  /**
   * read() into the caller's buffer: bytes [offset, offset+out.length), clipped at the end; returns
   * how many. For callers that reuse their buffers (the mount's READ: a fresh 1 MiB buffer per
   * request cost ~20 page faults per MiB). Optional: without it callers read() and copy.
   */
  readInto?(ino: number, out: Buffer, offset: number, stream?: string): Promise<number>;
  readlink(ino: number): Promise<string>;
  listxattr(ino: number): Promise<string[]>;
  getxattr(ino: number, name: string): Promise<Buffer>;
  extents(ino: number, stream?: string): AsyncIterable<FileExtent>;
  close(): Promise<void>;
}
