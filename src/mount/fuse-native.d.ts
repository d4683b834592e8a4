// The slice of fuse-native 2.2.6 (CommonJS, untyped) that src/mount uses. Callbacks take a negative
// errno (or 0) first, as fuse-native passes them to libfuse.
declare module 'fuse-native' {
  type Cb<T extends unknown[] = []> = (err: number, ...rest: T) => void;
  export interface FuseStat {
    mode: number;
    uid: number;
    gid: number;
    size: number;
    dev?: number;
    nlink: number;
    ino: number;
    rdev?: number;
    blksize?: number;
    blocks?: number;
    atime: number;
    mtime: number;
    ctime: number;
  }
  export interface FuseStatfs {
    bsize: number;
    frsize: number;
    blocks: number;
    bfree: number;
    bavail: number;
    files: number;
    ffree: number;
    favail: number;
    fsid: number;
    flag: number;
    namemax: number;
  }
  export interface FuseOps {
    init?(cb: Cb): void;
    getattr?(path: string, cb: Cb<[FuseStat?]>): void;
    readdir?(path: string, cb: Cb<[string[]?]>): void;
    open?(path: string, flags: number, cb: Cb<[number?]>): void;
    release?(path: string, fd: number, cb: Cb): void;
    read?(path: string, fd: number, buf: Buffer, len: number, pos: number, cb: (bytesOrErr: number) => void): void;
    readlink?(path: string, cb: Cb<[string?]>): void;
    listxattr?(path: string, cb: Cb<[string[]?]>): void;
    getxattr?(path: string, name: string, position: number, cb: Cb<[Buffer?]>): void;
    statfs?(path: string, cb: Cb<[FuseStatfs?]>): void;
    access?(path: string, mode: number, cb: Cb): void;
    [op: string]: unknown;
  }
  export interface FuseOptions {
    timeout?: number | false;
    force?: boolean;
    mkdir?: boolean;
    [opt: string]: unknown;
  }
  export default class Fuse {
    constructor(mnt: string, ops: FuseOps, opts?: FuseOptions);
    readonly mnt: string;
    mount(cb: (err: Error | null) => void): void;
    unmount(cb: (err: Error | null) => void): void;
    static unmount(mnt: string, cb: (err: Error | null) => void): void;
    static readonly EROFS: number;
  }
}
