/**
 * What one tar member describes, shared by the writer (input) and the reader (output).
 */

export type TarEntryType = 'file' | 'dir' | 'symlink' | 'hardlink' | 'chardev' | 'blockdev' | 'fifo';

/** A data segment of a sparse file: `length` bytes at logical `offset`; the rest are holes. */
export interface SparseSegment {
  offset: number;
  length: number;
}

/** What the writer takes. Paths are bytes (a string is taken as UTF-8). */
export interface TarEntry {
  path: Buffer | string;
  type: TarEntryType;
  /** Permission bits (07777): setuid, setgid, sticky and rwx; 0000 is stored as 0000. */
  mode: number;
  uid: number;
  gid: number;
  uname?: Buffer | string;
  gname?: Buffer | string;
  mtimeNs: bigint;
  atimeNs?: bigint;
  ctimeNs?: bigint;
  /** file: the logical size (for a sparse file, including its holes). */
  size?: number;
  /** symlink: its target (any bytes); hardlink: the target's path in the archive. */
  linkTarget?: Buffer | string;
  devMajor?: number;
  devMinor?: number;
  /** xattr name (e.g. "user.foo", "security.capability") and its value as bytes. */
  xattrs?: Array<[string, Buffer]>;
  /** Data segments, sorted and disjoint: the file is stored GNU sparse 1.0. */
  sparse?: SparseSegment[];
  /** Extra PAX records written as given (our SNAPFERRY.* keys). */
  pax?: Array<[string, Buffer | string]>;
}

/** What the reader returns: the same facts, names as bytes, nothing optional left ambiguous. */
export interface TarReadEntry {
  /** As in the archive, trailing '/' removed (GNU writes "dir/"). */
  path: Buffer;
  type: TarEntryType;
  typeflag: string;
  mode: number;
  uid: number;
  gid: number;
  uname: Buffer;
  gname: Buffer;
  mtimeNs: bigint;
  atimeNs?: bigint;
  ctimeNs?: bigint;
  /** Logical size (realsize for a sparse file; 0 for links, dirs, devices unless data was stored). */
  size: number;
  linkTarget?: Buffer;
  devMajor: number;
  devMinor: number;
  xattrs: Array<[string, Buffer]>;
  sparse?: SparseSegment[];
  /** Records we do not interpret (SNAPFERRY.*, comment, ...), in archive order. */
  pax: Array<[string, Buffer]>;
}
