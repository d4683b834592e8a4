/**
 * The unified tree of a VM: every disk, every volume, every file, as one read-only tree
 *
 *   /<disk>/info            a small JSON file: the disk's chain, capacity and every volume (kind,
 *                           label, notes, or why it cannot be read)
 *   /<disk>/<volume>/<path> a file of a volume's filesystem (volume names as `inspect` shows them)
 *
 * Each disk and volume directory also carries the xattr `user.snapferry.info` (the same facts as
 * JSON). A volume with no readable filesystem is an empty directory whose info says why: listed,
 * never hidden. This tree is the one object the FUSE mount (src/mount) and the backup engine consume;
 * it knows no FUSE and no archive.
 *
 * Inode numbers are unique across the tree: a volume's file keeps its filesystem's inode number in
 * the low VFS_INO_BITS bits (so hard links share one) and the volume's slot above them; the tree's
 * own directories and info files take slot 0 (root 1, then two per disk). nodeOf() turns a number
 * back into its node, so a consumer (the FUSE mount's node ids) needs no table of its own.
 */
import { basename } from 'node:path';
import { openDisk, type OpenDiskOptions } from '../disk/open.js';
import type { Disk } from '../disk/types.js';
import { readVolumes, type Volume, type VolumeTable } from '../volume/index.js';
import { openFilesystem } from '../fs/open.js';
import type { DirEntry, FileSystem, FileType, FsInfo, Stat, StatDetail } from '../fs/types.js';
import { S_IF } from '../fs/types.js';
import { ExitCode, SnapferryError, toSnapferryError } from '../util/errors.js';
import { PathNotFoundError, NotADirectoryError, MAX_PATH_COMPONENTS } from '../fs/path.js';

/** Bits of a tree inode number that carry the filesystem's own inode number (ext: 32; NTFS: 48, in practice far fewer). */
export const VFS_INO_BITS = 44;
/** Volume slots: slot * 2^44 + inode stays an exact JavaScript number (< 2^53). */
export const VFS_MAX_SLOTS = 511;
/** Disks a tree may hold (a VM has at most a few dozen). */
export const VFS_MAX_DISKS = 256;
/** Paths remembered (path → node) so that a walk does not resolve every path from the root. */
export const VFS_PATH_CACHE_ENTRIES = 65536;
/** The default byte budget shared by every disk's and filesystem's caches. */
export const VFS_DEFAULT_CACHE_BYTES = 96 * 1024 * 1024;
/** The xattr that carries a disk's or volume's facts. */
export const INFO_XATTR = 'user.snapferry.info';

export interface TreeSource {
  /** What the user named: a disk path (or the .vmx it came from). */
  path: string;
  /** The directory name in the tree; defaults to the file's basename without its extension. */
  name?: string;
  /**
   * A disk already open (an image backup's disk, src/backup/image-disk.ts): used instead of opening
   * `path`, which then only names it. The tree closes it with the rest.
   */
  disk?: Disk;
}

export interface TreeOptions {
  /** Byte budget of all caches together (disks and filesystems). */
  cacheBytes?: number;
  /** Passed to openDisk for each disk. */
  disk?: Omit<OpenDiskOptions, 'cacheBytes'>;
  /** ext3/4: replay a journal that needs recovery into memory (default true). */
  replayJournal?: boolean;
  /**
   * Where the tree's root appears (a mount point): NTFS junctions and absolute symlinks then point
   * to <linkRoot>/<disk>/<volume>/..., as ntfs-3g points them into its mount point. Without it they
   * are volume-rooted ('/a/b').
   */
  linkRoot?: string;
}

export interface TreeVolume {
  /** 1-based slot: the high bits of its files' tree inode numbers. */
  slot: number;
  name: string;
  /** The name of the disk it is on: the volume's directory is /<diskName>/<name>. */
  diskName: string;
  volume: Volume;
  fs?: FileSystem;
  /** Why the volume has no readable filesystem. */
  error?: { code: string; message: string };
  info: Record<string, unknown>;
}

export interface TreeDisk {
  name: string;
  path: string;
  disk: Disk;
  table: VolumeTable;
  volumes: TreeVolume[];
  infoJson: Buffer;
  /** Its tree inode numbers: the directory and its info file. */
  dirIno: number;
  infoIno: number;
}

export type TreeNode =
  | { kind: 'root' }
  | { kind: 'disk'; disk: TreeDisk }
  | { kind: 'info'; disk: TreeDisk }
  /** A file or directory of a volume's filesystem (its root included). */
  | { kind: 'fs'; volume: TreeVolume & { fs: FileSystem }; ino: number }
  /** The directory of a volume without a readable filesystem: empty, its info says why. */
  | { kind: 'unreadable'; volume: TreeVolume };

/** A filesystem Stat with the tree's own inode number (`ino`) and the filesystem's (`fsIno`). */
export interface TreeStat extends Stat {
  fsIno?: number;
}

export interface TreeEntry {
  name: string;
  /** The exact bytes of a name that is not UTF-8 (ext). */
  rawName?: Buffer;
  type: FileType;
  node: TreeNode;
}

export interface TreeStatfs {
  blockSize: number;
  totalBlocks: number;
  freeBlocks: number;
  totalInodes: number;
  freeInodes: number;
  nameMax: number;
}

export class TreeError extends SnapferryError {}

const SLOT = 2 ** VFS_INO_BITS;

function treeFsIno(slot: number, ino: number): number {
  if (!Number.isSafeInteger(ino) || ino < 0 || ino >= SLOT) throw new TreeError('E_VFS_INO', `inode number ${ino} does not fit the tree's ${VFS_INO_BITS} bits`, { ino, slot }, ExitCode.corrupt);
  return slot * SLOT + ino;
}

function nameOf(path: string): string {
  const b = basename(path);
  const dot = b.lastIndexOf('.');
  return dot > 0 ? b.slice(0, dot) : b;
}

function isValidName(name: string): boolean {
  return name !== '' && name !== '.' && name !== '..' && !name.includes('/') && !name.includes('\0');
}

export class VmTree {
  private readonly pathCache = new Map<string, TreeNode>();
  readonly openedAt = BigInt(Date.now()) * 1_000_000n;

  private readonly bySlot = new Map<number, TreeVolume>();

  private constructor(readonly disks: TreeDisk[]) {
    for (const d of disks) for (const v of d.volumes) this.bySlot.set(v.slot, v);
  }

  /**
   * Opens every disk and every volume's filesystem. A disk that cannot be opened fails the whole
   * tree (the user named it); a volume that cannot be read is kept, with its reason.
   */
  static async open(sources: TreeSource[], opts: TreeOptions = {}): Promise<VmTree> {
    if (sources.length === 0) throw new TreeError('E_VFS_NO_SOURCE', 'no disk to open', {}, ExitCode.usage);
    if (sources.length > VFS_MAX_DISKS) throw new TreeError('E_VFS_TOO_MANY', `${sources.length} disks; a tree holds at most ${VFS_MAX_DISKS}`, { disks: sources.length, limit: VFS_MAX_DISKS }, ExitCode.usage);
    const names = new Set<string>();
    const planned = sources.map((s) => {
      let name = s.name ?? nameOf(s.path);
      if (!isValidName(name)) name = 'disk';
      let unique = name;
      for (let i = 2; names.has(unique); i++) unique = `${name}-${i}`;
      names.add(unique);
      return { ...s, name: unique };
    });
    const budget = opts.cacheBytes ?? VFS_DEFAULT_CACHE_BYTES;
    // Half the budget for the disks' grain caches, half for the filesystems': split evenly.
    const diskCache = Math.max(1 << 20, Math.floor(budget / 2 / planned.length));
    const disks: TreeDisk[] = [];
    let slot = 0;
    try {
      const opened: { name: string; path: string; disk: Disk; table: VolumeTable }[] = [];
      for (const s of planned) {
        const disk = s.disk ?? (await openDisk(s.path, { ...opts.disk, cacheBytes: diskCache }));
        try {
          opened.push({ name: s.name, path: s.path, disk, table: await readVolumes(disk) });
        } catch (err) {
          await disk.close();
          throw err;
        }
      }
      const fsCount = Math.max(1, opened.reduce((n, d) => n + d.table.volumes.length, 0));
      const fsCache = Math.max(4 << 20, Math.floor(budget / 2 / fsCount));
      for (const [d, o] of opened.entries()) {
        const volumes: TreeVolume[] = [];
        for (const v of o.table.volumes) {
          slot++;
          const tv: TreeVolume = { slot, name: v.name, diskName: o.name, volume: v, info: {} };
          if (slot > VFS_MAX_SLOTS) {
            tv.error = { code: 'E_VFS_TOO_MANY', message: `more than ${VFS_MAX_SLOTS} volumes in one tree; mount fewer disks at once` };
          } else {
            try {
              tv.fs = await openFilesystem(o.disk, v, {
                cacheBytes: fsCache,
                ...(opts.replayJournal !== undefined ? { replayJournal: opts.replayJournal } : {}),
                ...(opts.linkRoot !== undefined ? { linkRoot: `${opts.linkRoot}/${o.name}/${v.name}` } : {}),
              });
            } catch (err) {
              const e = toSnapferryError(err);
              tv.error = { code: e.code, message: e.message };
            }
          }
          tv.info = volumeInfo(tv);
          volumes.push(tv);
        }
        const infoJson = Buffer.from(
          `${JSON.stringify(
            {
              disk: o.name,
              path: o.path,
              capacity: o.disk.size,
              chain: o.disk.chain.map((m) => ({ path: m.path, kind: m.kind, ...(m.cid ? { cid: m.cid } : {}) })),
              table: o.table.scheme,
              volumes: volumes.map((v) => v.info),
            },
            null,
            2,
          )}\n`,
        );
        disks.push({ name: o.name, path: o.path, disk: o.disk, table: o.table, volumes, infoJson, dirIno: 2 + 2 * d, infoIno: 3 + 2 * d });
      }
    } catch (err) {
      await new VmTree(disks).close();
      throw err;
    }
    return new VmTree(disks);
  }

  async close(): Promise<void> {
    for (const d of this.disks) {
      for (const v of d.volumes) await v.fs?.close().catch(() => {});
      await d.disk.close().catch(() => {});
    }
    this.pathCache.clear();
  }

  /** Every volume with its filesystem, in tree order. */
  volumes(): TreeVolume[] {
    return this.disks.flatMap((d) => d.volumes);
  }

  // ---- names ---------------------------------------------------------------------------------

  /** The child `name` of directory node `dir`, or null. */
  async lookup(dir: TreeNode, name: string): Promise<TreeNode | null> {
    switch (dir.kind) {
      case 'root': {
        const disk = this.disks.find((d) => d.name === name);
        return disk ? { kind: 'disk', disk } : null;
      }
      case 'disk': {
        if (name === 'info') return { kind: 'info', disk: dir.disk };
        const v = dir.disk.volumes.find((x) => x.name === name);
        if (!v) return null;
        return v.fs ? { kind: 'fs', volume: v as TreeVolume & { fs: FileSystem }, ino: v.fs.rootIno } : { kind: 'unreadable', volume: v };
      }
      case 'fs': {
        const ino = await dir.volume.fs.lookup(dir.ino, name);
        return ino === null ? null : { kind: 'fs', volume: dir.volume, ino };
      }
      case 'unreadable':
        return null;
      case 'info':
        throw new NotADirectoryError(name, 'info');
    }
  }

  /**
   * '/disk/volume/a/b' → its node. No symlink is followed (a guest's absolute link points into the
   * guest, not into this tree). Resolved paths are remembered, up to VFS_PATH_CACHE_ENTRIES.
   */
  async resolve(path: string): Promise<TreeNode> {
    const cached = this.pathCache.get(path);
    if (cached) return cached;
    const parts = path.split('/').filter((p) => p !== '');
    if (parts.length > MAX_PATH_COMPONENTS) throw new TreeError('E_FS_PATH', `${path}: more than ${MAX_PATH_COMPONENTS} components`, { path }, ExitCode.usage);
    // Start from the deepest cached ancestor.
    let node: TreeNode = { kind: 'root' };
    let i = 0;
    for (let j = parts.length - 1; j > 0; j--) {
      const hit = this.pathCache.get('/' + parts.slice(0, j).join('/'));
      if (hit) {
        node = hit;
        i = j;
        break;
      }
    }
    for (; i < parts.length; i++) {
      const name = parts[i]!;
      if (name === '.' || name === '..') throw new TreeError('E_FS_PATH', `${path}: '.' and '..' are resolved by the caller`, { path }, ExitCode.usage);
      if (node.kind === 'info' || (node.kind === 'fs' && (await this.stat(node)).type !== 'dir')) throw new NotADirectoryError(path, parts[i - 1] ?? '/');
      const next: TreeNode | null = await this.lookup(node, name);
      if (!next) throw new PathNotFoundError(path, name);
      node = next;
      this.remember('/' + parts.slice(0, i + 1).join('/'), node);
    }
    return node;
  }

  // ---- the FileSystem-like surface -----------------------------------------------------------

  ino(node: TreeNode): number {
    switch (node.kind) {
      case 'root':
        return 1;
      case 'disk':
        return node.disk.dirIno;
      case 'info':
        return node.disk.infoIno;
      case 'fs':
        return treeFsIno(node.volume.slot, node.ino);
      case 'unreadable':
        return treeFsIno(Math.min(node.volume.slot, VFS_MAX_SLOTS), 0);
    }
  }

  /** The node whose ino() is `id`, or null when no node has it. */
  nodeOf(id: number): TreeNode | null {
    if (!Number.isSafeInteger(id) || id < 1) return null;
    if (id < SLOT) {
      if (id === 1) return { kind: 'root' };
      const disk = this.disks[Math.floor((id - 2) / 2)];
      if (!disk) return null;
      return id % 2 === 0 ? { kind: 'disk', disk } : { kind: 'info', disk };
    }
    const slot = Math.floor(id / SLOT);
    const ino = id - slot * SLOT;
    const volume = this.bySlot.get(slot);
    if (!volume) return null;
    if (!volume.fs) return ino === 0 ? { kind: 'unreadable', volume } : null;
    return ino === 0 ? null : { kind: 'fs', volume: volume as TreeVolume & { fs: FileSystem }, ino };
  }

  /** A node's Stat with the tree's inode number; `detail` as FileSystem.stat takes it. */
  async stat(node: TreeNode, detail?: StatDetail): Promise<TreeStat> {
    if (node.kind === 'fs') {
      const st: TreeStat = await node.volume.fs.stat(node.ino, detail);
      // the filesystem's Stat is ours to change (a fresh object per call): no copy per entry of a walk
      st.fsIno = node.ino;
      st.ino = this.ino(node);
      return st;
    }
    const t = this.openedAt;
    const base = { uid: 0, gid: 0, atimeNs: t, mtimeNs: t, ctimeNs: t, ino: this.ino(node) };
    if (node.kind === 'info') return { ...base, type: 'file', mode: S_IF.file | 0o444, nlink: 1, size: node.disk.infoJson.length, allocatedSize: node.disk.infoJson.length };
    const children = node.kind === 'root' ? this.disks.length : node.kind === 'disk' ? node.disk.volumes.length + 1 : 0;
    const nlink = 2 + (node.kind === 'root' ? this.disks.length : node.kind === 'disk' ? node.disk.volumes.length : 0);
    return { ...base, type: 'dir', mode: S_IF.dir | 0o555, nlink, size: children, allocatedSize: 0 };
  }

  /** A directory's entries with their nodes, streamed (a filesystem directory is never built whole here). */
  readdir(node: TreeNode): AsyncIterable<TreeEntry> {
    if (node.kind !== 'fs') return this.ownEntries(node);
    // a filesystem's entries mapped one by one, without an async generator of our own in between
    // (each of its steps costs a few promises, per entry of a walk)
    const fs = node.volume.fs;
    const volume = node.volume;
    const ino = node.ino;
    return {
      [Symbol.asyncIterator](): AsyncIterator<TreeEntry> {
        const inner = fs.readdir(ino)[Symbol.asyncIterator]();
        const entry = (e: DirEntry): TreeEntry => {
          const t: TreeEntry = { name: e.name, type: e.type, node: { kind: 'fs', volume, ino: e.ino } };
          if (e.rawName) t.rawName = e.rawName;
          return t;
        };
        return {
          next: () => inner.next().then((r): IteratorResult<TreeEntry> => (r.done ? { done: true, value: undefined } : { done: false, value: entry(r.value) })),
          return: async (): Promise<IteratorResult<TreeEntry>> => {
            await inner.return?.();
            return { done: true, value: undefined };
          },
        };
      },
    };
  }

  private async *ownEntries(node: TreeNode): AsyncIterable<TreeEntry> {
    switch (node.kind) {
      case 'root':
        for (const disk of this.disks) yield { name: disk.name, type: 'dir', node: { kind: 'disk', disk } };
        return;
      case 'disk':
        yield { name: 'info', type: 'file', node: { kind: 'info', disk: node.disk } };
        for (const v of node.disk.volumes) yield { name: v.name, type: 'dir', node: v.fs ? { kind: 'fs', volume: v as TreeVolume & { fs: FileSystem }, ino: v.fs.rootIno } : { kind: 'unreadable', volume: v } };
        return;
      case 'fs':
        return;
      case 'unreadable':
        return;
      case 'info':
        throw new NotADirectoryError('info', 'info');
    }
  }

  /** Tells the path cache that `path` is `node` (a walker that just listed the parent knows it). */
  remember(path: string, node: TreeNode): void {
    if (this.pathCache.size >= VFS_PATH_CACHE_ENTRIES) {
      // Drop the oldest eighth at once: cheaper than strict LRU bookkeeping on every hit.
      let n = VFS_PATH_CACHE_ENTRIES >> 3;
      for (const k of this.pathCache.keys()) {
        this.pathCache.delete(k);
        if (--n === 0) break;
      }
    }
    this.pathCache.set(path, node);
  }

  async read(node: TreeNode, offset: number, length: number, stream?: string): Promise<Buffer> {
    if (node.kind === 'info') return node.disk.infoJson.subarray(Math.min(offset, node.disk.infoJson.length), Math.min(offset + length, node.disk.infoJson.length));
    if (node.kind !== 'fs') throw new TreeError('E_FS_NOT_FILE', 'a directory of the tree is not a file', {}, ExitCode.failure);
    return node.volume.fs.read(node.ino, offset, length, stream);
  }

  /** read() into `out` (bytes [offset, offset+out.length), clipped at the end); returns how many. */
  async readInto(node: TreeNode, out: Buffer, offset: number, stream?: string): Promise<number> {
    if (node.kind === 'fs' && node.volume.fs.readInto) return node.volume.fs.readInto(node.ino, out, offset, stream);
    const b = await this.read(node, offset, out.length, stream);
    b.copy(out);
    return b.length;
  }

  async readlink(node: TreeNode): Promise<string> {
    if (node.kind !== 'fs') throw new TreeError('E_FS_NOT_LINK', 'not a symbolic link', {}, ExitCode.failure);
    return node.volume.fs.readlink(node.ino);
  }

  async listxattr(node: TreeNode): Promise<string[]> {
    if (node.kind === 'fs') {
      const names = await node.volume.fs.listxattr(node.ino);
      return node.ino === node.volume.fs.rootIno ? [...names, INFO_XATTR] : names;
    }
    return node.kind === 'disk' || node.kind === 'unreadable' ? [INFO_XATTR] : [];
  }

  async getxattr(node: TreeNode, name: string): Promise<Buffer> {
    if (name === INFO_XATTR) {
      if (node.kind === 'disk') return node.disk.infoJson;
      if (node.kind === 'unreadable' || (node.kind === 'fs' && node.ino === node.volume.fs.rootIno)) return Buffer.from(JSON.stringify(node.volume.info));
    }
    if (node.kind === 'fs') return node.volume.fs.getxattr(node.ino, name);
    throw new TreeError('E_FS_NO_XATTR', `no extended attribute '${name}'`, { name }, ExitCode.notFound);
  }

  /** Totals of the volume a node lies in (the tree's own directories: the sum of all volumes). */
  statfs(node: TreeNode): TreeStatfs {
    const infos: FsInfo[] = node.kind === 'fs' ? [node.volume.fs.info] : this.volumes().flatMap((v) => (v.fs ? [v.fs.info] : []));
    if (infos.length === 1) {
      const i = infos[0]!;
      return { blockSize: i.blockSize, totalBlocks: i.totalBlocks, freeBlocks: i.freeBlocks, totalInodes: i.totalInodes ?? 0, freeInodes: i.freeInodes ?? 0, nameMax: 255 };
    }
    // Sum in bytes, expressed in 4 KiB units.
    const unit = 4096;
    let total = 0;
    let free = 0;
    let files = 0;
    let ffree = 0;
    for (const i of infos) {
      total += (i.totalBlocks * i.blockSize) / unit;
      free += (i.freeBlocks * i.blockSize) / unit;
      files += i.totalInodes ?? 0;
      ffree += i.freeInodes ?? 0;
    }
    return { blockSize: unit, totalBlocks: Math.floor(total), freeBlocks: Math.floor(free), totalInodes: files, freeInodes: ffree, nameMax: 255 };
  }
}

function volumeInfo(v: TreeVolume): Record<string, unknown> {
  const vol = v.volume;
  const out: Record<string, unknown> = {
    volume: v.name,
    start: vol.start,
    size: vol.size,
    type: vol.type.name,
    detected: vol.filesystem.kind,
  };
  if (vol.filesystem.label) out.label = vol.filesystem.label;
  if (vol.filesystem.uuid) out.uuid = vol.filesystem.uuid;
  if (v.fs) {
    out.filesystem = v.fs.info.kind;
    if (v.fs.info.label) out.label = v.fs.info.label;
    out.notes = v.fs.info.notes;
  }
  if (v.error) out.error = v.error;
  return out;
}
