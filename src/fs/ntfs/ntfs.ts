/**
 * NTFS behind the read-only FileSystem contract (src/fs/types.ts), showing every file as ntfs-3g
 * (mounted read-only, streams_interface=xattr) shows it: the same names (DOS-only 8.3 aliases and
 * the $-metadata files hidden), types (Interix symlinks/devices/FIFOs, reparse points as symlinks),
 * sizes, link counts, times, symlink targets and xattrs (named streams as user.<name>). Inode numbers
 * are MFT record numbers. Nothing is written and nothing read is trusted: see the bounds in each
 * module. Layout references: Linux-NTFS layout.h, libyal's NTFS documentation, ntfs-3g.
 */
import { CorruptStructureError, SnapferryError, UnsupportedError, ExitCode } from '../../util/errors.js';
import { checkBound, MiB, KiB } from '../../util/bounded.js';
import { ByteLru } from '../../util/lru.js';
import { S_IF, type DirEntry, type FileExtent, type FileSystem, type FileType, type FsInfo, type Stat, type StatDetail, type VolumeSource } from '../types.js';
import { parseBootSector, type NtfsGeometry } from './boot.js';
import { Mft, Inode, DEFAULT_CACHE_BYTES } from './mft.js';
import type { AttrStream } from './attribute.js';
import { DirectoryIndex, I30, type IndexNode } from './index.js';
import { UpCase, toUnits } from './upcase.js';
import { renderLinkTarget, unsupportedTarget, type ReparseResolver } from './reparse.js';
import { ownerSidOf } from './security.js';
import { parseWofReparse, WofReader, WOF_COMPRESSED_DATA_STREAM } from './wof/wof.js';
import {
  AT, FILE_ATTR, FILE_NAME_DOS, FILE_root, FILE_UpCase, FILE_Volume, FILE_Bitmap, FILE_first_user, FILE_MFT,
  IO_REPARSE_TAG_WOF, VOLUME_INFORMATION, VOLUME_IS_DIRTY, INTX_FILE, INTX_SYMBOLIC_LINK, INTX_CHARACTER_DEVICE, INTX_BLOCK_DEVICE,
} from './structs.js';

export interface NtfsOptions {
  /** Byte budget of the MFT record and index block caches (default 32 MiB). */
  cacheBytes?: number;
  /**
   * The path ntfs-3g would be mounted at: ntfs-3g renders junctions and absolute symlinks as
   * MOUNT/path. Default '' gives volume-rooted targets ("/dir/x", "/.NTFS-3G/D:/x").
   */
  mountPoint?: string;
}

export interface NtfsVolumeInfo {
  majorVersion: number;
  minorVersion: number;
  flags: number;
  serialNumber: bigint;
  geometry: NtfsGeometry;
}

/** Interix and ntfs-3g keep symlink targets up to PATH_MAX UTF-16 units in a system file. */
const PATH_MAX = 4096;
/** A reparse point's data is at most 16 KiB ([MS-FSCC] 2.1.2). */
const MAX_REPARSE_BYTES = 16 * KiB + 24;
/** Largest named stream getxattr returns whole (Linux caps xattr values at 64 KiB; ntfs-3g reads streams whole). */
export const MAX_XATTR_BYTES = 64 * MiB;

/** What ntfs-3g makes of a file (see kind()), kept on its Inode. */
export interface InodeKind {
  type: FileType;
  target?: string;
  rdev?: number;
  reparseTag?: number;
  wof?: boolean;
}

const FILE_KIND: InodeKind = { type: 'file' };
const DIR_KIND: InodeKind = { type: 'dir' };

/** Bytes a stream occupies, as ntfs-3g counts st_blocks: a resident value in 8-byte units rounded to sectors. */
function allocOf(s: AttrStream): number {
  return s.resident ? Math.ceil(((s.size + 7) & ~7) / 512) * 512 : s.compressedSize ?? s.allocatedSize;
}

/** The kind of a file that is neither a reparse point nor a system file (nearly every one), which kind() would find without reading anything. */
function plainKind(inode: Inode): InodeKind | undefined {
  const attrs = inode.si.fileAttributes;
  if (attrs & FILE_ATTR.REPARSE_POINT) return undefined;
  if (inode.isDirectory) return DIR_KIND;
  return attrs & FILE_ATTR.SYSTEM ? undefined : FILE_KIND;
}

export class NtfsFsError extends SnapferryError {
  constructor(code: string, message: string, data: Record<string, string | number> = {}, exit: (typeof ExitCode)[keyof typeof ExitCode] = ExitCode.failure) {
    super(code, message, data, exit);
  }
}

/** Linux makedev (glibc encoding). */
function makedev(major: number, minor: number): number {
  return ((major & 0xfff) << 8) + (minor & 0xff) + (minor & ~0xff) * 4096 + (major & ~0xfff) * 2 ** 32;
}

export class NtfsFileSystem implements FileSystem {
  readonly rootIno = FILE_root;
  /** Owner SID by security_id (ownerSidOf): stat of every file would otherwise search $SII each time. */
  private readonly ownerSids = new Map<number, string | undefined>();
  private readonly mountPoint: string;

  private constructor(
    readonly volume: VolumeSource,
    readonly geometry: NtfsGeometry,
    private readonly mft: Mft,
    private readonly upcase: UpCase,
    private readonly blockCache: ByteLru<string, IndexNode>,
    readonly info: FsInfo,
    readonly ntfs: NtfsVolumeInfo,
    opts: NtfsOptions,
  ) {
    this.mountPoint = opts.mountPoint ?? '';
  }

  static async open(volume: VolumeSource, opts: NtfsOptions = {}): Promise<NtfsFileSystem> {
    const budget = opts.cacheBytes ?? DEFAULT_CACHE_BYTES;
    const geo = parseBootSector(await volume.read(0, 512), volume.size);
    const mft = await Mft.open(volume, geo, Math.floor(budget / 2));
    const upInode = await mft.inode(FILE_UpCase);
    const upData = upInode.stream(AT.DATA);
    if (!upData) throw new CorruptStructureError('E_NTFS_UPCASE', '$UpCase has no data', { record: FILE_UpCase });
    checkBound('$UpCase', 'data_size', upData.size, 0x20000);
    const upcase = UpCase.fromBuffer(await upData.read(0, upData.size));
    // A parsed index block: the block plus an entry object, a FILE_NAME and its name per entry.
    const blockCache = new ByteLru<string, IndexNode>(Math.floor(budget / 2), () => geo.indexBlockSize * 3 + 1024);

    const vol = await mft.inode(FILE_Volume);
    const nameAttr = vol.attrs.find((a) => a.type === AT.VOLUME_NAME && a.resident);
    const infoAttr = vol.attrs.find((a) => a.type === AT.VOLUME_INFORMATION && a.resident);
    let majorVersion = 0, minorVersion = 0, flags = 0;
    if (infoAttr && infoAttr.value!.length >= VOLUME_INFORMATION.SIZE) {
      majorVersion = infoAttr.value!.readUInt8(VOLUME_INFORMATION.major_ver);
      minorVersion = infoAttr.value!.readUInt8(VOLUME_INFORMATION.minor_ver);
      flags = infoAttr.value!.readUInt16LE(VOLUME_INFORMATION.flags);
    }
    const notes: string[] = [];
    if (flags & VOLUME_IS_DIRTY) notes.push('dirty');
    const info: FsInfo = {
      kind: 'ntfs',
      label: nameAttr ? nameAttr.value!.toString('utf16le') : '',
      // blkid's NTFS UUID: the volume serial number in upper-case hex
      uuid: geo.serialNumber.toString(16).toUpperCase().padStart(16, '0'),
      blockSize: geo.clusterSize,
      totalBlocks: geo.totalClusters,
      freeBlocks: 0,
      totalInodes: mft.recordCount,
      freeInodes: 0,
      notes,
    };
    const fs = new NtfsFileSystem(volume, geo, mft, upcase, blockCache, info, { majorVersion, minorVersion, flags, serialNumber: geo.serialNumber, geometry: geo }, opts);
    const root = await mft.inode(FILE_root);
    if (!root.isDirectory) throw new CorruptStructureError('E_NTFS_RECORD', 'MFT record 5 (the root) is not a directory', { record: FILE_root });
    const bitmap = (await mft.inode(FILE_Bitmap)).stream(AT.DATA);
    if (bitmap) info.freeBlocks = geo.totalClusters - (await countBits(bitmap, geo.totalClusters));
    const mftBitmap = mft.mftRecord.attrs.some((a) => a.type === AT.BITMAP) ? (await mft.inode(FILE_MFT)).stream(AT.BITMAP) : undefined;
    if (mftBitmap) info.freeInodes = mft.recordCount - (await countBits(mftBitmap, mft.recordCount));
    if (await fs.hibernated()) notes.push('hibernated');
    return fs;
  }

  /** Windows hibernated (or shut down with Fast Startup): hiberfil.sys starts with "hibr" (ntfs-3g's check). */
  private async hibernated(): Promise<boolean> {
    const ino = await this.lookup(FILE_root, 'hiberfil.sys');
    if (ino === null) return false;
    const data = (await this.mft.inode(ino)).stream(AT.DATA);
    if (!data || data.size < 4 || data.encrypted) return false;
    return (await data.read(0, 4)).toString('latin1').toLowerCase() === 'hibr';
  }

  private index(inode: Inode): DirectoryIndex {
    let ix = inode.index;
    if (!ix) {
      if (!inode.isDirectory) throw new NtfsFsError('E_NTFS_NOT_DIR', `MFT record ${inode.recordNo} is not a directory`, { record: inode.recordNo });
      ix = new DirectoryIndex(inode, this.geometry, this.upcase, this.blockCache);
      inode.index = ix;
    }
    return ix;
  }

  private readonly resolver: ReparseResolver = {
    rootIno: FILE_root,
    fixName: async (dir, units) => {
      const inode = await this.mft.inode(dir);
      if (!inode.isDirectory || !inode.has(AT.INDEX_ROOT, I30)) return null;
      const found = (await this.index(inode).findIgnoreCase(units))[0];
      return found ? { record: found.record, units: found.fileName.units } : null;
    },
    isDirectory: async (r) => (await this.mft.inode(r)).isDirectory,
    isReparse: async (r) => ((await this.mft.inode(r)).si.fileAttributes & FILE_ATTR.REPARSE_POINT) !== 0,
    parentOf: async (r) => {
      if (r === FILE_root) return null;
      const fn = (await this.mft.inode(r)).fileNames[0];
      return fn ? fn.parentRecord : null;
    },
  };

  /** ntfs_drive_letter: a "/.NTFS-3G/X:" entry on the volume means the user mapped drive X elsewhere. */
  private readonly driveDefined = async (letter: number): Promise<boolean> => {
    const dir = await this.lookup(FILE_root, '.NTFS-3G');
    if (dir === null || !(await this.mft.inode(dir)).isDirectory) return false;
    return (await this.lookup(dir, `${String.fromCharCode(letter).toUpperCase()}:`)) !== null;
  };

  /** What ntfs-3g makes of a file (ntfs_fuse_getstat): reparse point, directory, Interix special file, or file. */
  private async kind(inode: Inode): Promise<InodeKind> {
    const cached = inode.kind;
    if (cached) return cached;
    let k: InodeKind = { type: 'file' };
    const attrs = inode.si.fileAttributes;
    if (attrs & FILE_ATTR.REPARSE_POINT) {
      const rp = inode.stream(AT.REPARSE_POINT);
      const v = rp ? await rp.read(0, Math.min(rp.size, MAX_REPARSE_BYTES)) : Buffer.alloc(0);
      const tag = v.length >= 4 ? v.readUInt32LE(0) : 0;
      if (tag === IO_REPARSE_TAG_WOF && !inode.isDirectory) {
        // Windows "compact" files: the data is in the WofCompressedData stream (wof/wof.ts); the
        // file is listed as a file even when its format is one we cannot read (reads say why).
        k = { type: 'file', reparseTag: tag, wof: true };
      } else {
        const target = (await renderLinkTarget(v, inode.recordNo, inode.isDirectory, this.resolver, this.mountPoint, this.driveDefined)) ?? unsupportedTarget(tag);
        k = { type: 'symlink', target, reparseTag: tag };
      }
    } else if (inode.isDirectory) k = { type: 'dir' };
    else if (attrs & FILE_ATTR.SYSTEM) {
      const data = inode.stream(AT.DATA);
      if (data && !data.encrypted) {
        if (!(attrs & FILE_ATTR.HIDDEN) && data.size === 0) k = { type: 'fifo' };
        else if (!(attrs & FILE_ATTR.HIDDEN) && data.size === 1) k = { type: 'socket' };
        else if (data.size > 8 && data.size <= 8 + 2 * PATH_MAX) {
          const b = await data.read(0, data.size);
          const magic = b.subarray(0, 8);
          if (magic.equals(INTX_BLOCK_DEVICE) && b.length === INTX_FILE.device_end) k = { type: 'blockdev', rdev: makedev(Number(b.readBigUInt64LE(INTX_FILE.major) & 0xffffffffn), Number(b.readBigUInt64LE(INTX_FILE.minor) & 0xffffffffn)) };
          else if (magic.equals(INTX_CHARACTER_DEVICE) && b.length === INTX_FILE.device_end) k = { type: 'chardev', rdev: makedev(Number(b.readBigUInt64LE(INTX_FILE.major) & 0xffffffffn), Number(b.readBigUInt64LE(INTX_FILE.minor) & 0xffffffffn)) };
          else if (magic.equals(INTX_SYMBOLIC_LINK)) {
            let t = b.toString('utf16le', INTX_FILE.target, INTX_FILE.target + ((b.length - INTX_FILE.target) & ~1));
            const nul = t.indexOf('\0');
            if (nul >= 0) t = t.slice(0, nul);
            k = { type: 'symlink', target: t };
          }
        }
      }
    }
    inode.kind = k;
    return k;
  }

  async lookup(dirIno: number, name: string): Promise<number | null> {
    if (name === '' || name === '.' || name === '..' || name.includes('/') || name.length > 255) return null;
    const inode = await this.mft.inode(dirIno);
    if (!inode.isDirectory) throw new NtfsFsError('E_NTFS_NOT_DIR', `MFT record ${dirIno} is not a directory`, { record: dirIno });
    const e = await this.index(inode).lookup(toUnits(name));
    // Like ntfs-3g, the $-metadata files are hidden from listings but reachable by name.
    return e ? e.record : null;
  }

  async stat(ino: number, detail: StatDetail = 'full'): Promise<Stat> {
    const keep = detail === 'full';
    const inode = this.mft.inodeNow(ino, keep) ?? (await this.mft.inode(ino, keep));
    const k = inode.kind ?? plainKind(inode) ?? (await this.kind(inode));
    const si = inode.si;
    const data = inode.stream(AT.DATA);
    let size = 0;
    let allocatedSize = 0;
    if (k.type === 'symlink') size = Buffer.byteLength(k.target!);
    else if (k.type === 'dir') {
      const alloc = inode.stream(AT.INDEX_ALLOCATION, I30);
      if (alloc) {
        size = alloc.size;
        allocatedSize = alloc.allocatedSize;
      }
    } else if (data) {
      size = data.size;
      allocatedSize = allocOf(data);
    }
    if (k.type === 'symlink' && data) allocatedSize = allocOf(data);
    let mode = S_IF[k.type] | 0o777; // ntfs-3g's default: no permissions mapping, no umask
    if (k.wof) {
      // As ntfs-3g's system-compression plugin (compressed_getattr): st_size is the unnamed
      // stream's data_size, which is the uncompressed size; st_blocks count the WofCompressedData
      // stream; the mode is r-x (the file cannot be written in place). Without that stream the
      // file stays as NTFS describes it.
      const wofData = inode.stream(AT.DATA, WOF_COMPRESSED_DATA_STREAM);
      if (wofData) {
        allocatedSize = Math.ceil(wofData.size / 512) * 512;
        mode = S_IF.file | 0o555;
      }
    }
    const st: Stat = {
      ino,
      type: k.type,
      mode,
      nlink: k.type === 'dir' ? 1 : inode.base.linkCount,
      uid: 0,
      gid: 0,
      size,
      allocatedSize,
      atimeNs: si.accessNs,
      mtimeNs: si.dataChangeNs,
      ctimeNs: si.mftChangeNs,
    };
    if (k.rdev !== undefined) st.rdev = k.rdev;
    if (detail === 'posix') return st;
    st.birthtimeNs = si.creationNs;
    st.ntfs = {
      dosAttributes: si.fileAttributes,
      encrypted: (si.fileAttributes & FILE_ATTR.ENCRYPTED) !== 0 || (data?.encrypted ?? false),
      compressed: (si.fileAttributes & FILE_ATTR.COMPRESSED) !== 0 || (data?.compressed ?? false),
      sparse: (si.fileAttributes & FILE_ATTR.SPARSE_FILE) !== 0 || (data?.sparse ?? false),
      streams: inode.dataStreamNames(),
    };
    if (k.reparseTag !== undefined) st.ntfs.reparseTag = k.reparseTag;
    const sid = await ownerSidOf(inode, this.mft, this.upcase, this.ownerSids).catch(() => undefined);
    if (sid) st.ntfs.ownerSid = sid;
    return st;
  }

  async *readdir(dirIno: number): AsyncIterable<DirEntry> {
    const inode = await this.mft.inode(dirIno);
    for await (const e of this.index(inode).entries()) {
      // DOS-only 8.3 aliases and the system files (records below 16, the root's "." included) are hidden, as ntfs-3g's filler does.
      if (e.fileName.nameType === FILE_NAME_DOS || e.record < FILE_first_user) continue;
      const fa = e.fileName.fileAttributes;
      let type: FileType = fa & FILE_ATTR.DUP_FILE_NAME_INDEX_PRESENT ? 'dir' : 'file';
      if (fa & (FILE_ATTR.REPARSE_POINT | FILE_ATTR.SYSTEM)) {
        // Only these can be something else; their record says what.
        try {
          const child = await this.mft.inode(e.record);
          type = (child.kind ?? (await this.kind(child))).type;
        } catch {
          /* a broken child is reported by its own stat, not by the listing */
        }
      }
      yield { name: e.fileName.name, ino: e.record, type };
    }
  }

  /** The stream a read or extent walk targets: a named stream, or the unnamed $DATA of a file. */
  private async dataStream(ino: number, stream: string | undefined, op: string): Promise<{ inode: Inode; s: AttrStream | undefined; wof?: WofReader }> {
    const inode = await this.mft.inode(ino);
    if (stream) {
      const s = inode.stream(AT.DATA, stream);
      if (!s) throw new NtfsFsError('E_NTFS_NO_STREAM', `MFT record ${ino} has no stream '${stream}'`, { record: ino, stream }, ExitCode.notFound);
      return { inode, s };
    }
    const k = await this.kind(inode);
    if (k.type !== 'file') throw new NtfsFsError('E_NTFS_NOT_FILE', `MFT record ${ino} is a ${k.type}: cannot ${op} it`, { record: ino, type: k.type });
    if (k.wof) return { inode, s: inode.stream(AT.DATA), wof: await this.wofReader(inode) };
    return { inode, s: inode.stream(AT.DATA) };
  }

  /** The decompressing reader of a WOF file; E_NTFS_WOF when its provider, version or algorithm is unknown or its WofCompressedData stream is missing. */
  private async wofReader(inode: Inode): Promise<WofReader> {
    const cached = inode.wof;
    if (cached) return cached;
    const rp = inode.stream(AT.REPARSE_POINT);
    const format = parseWofReparse(rp ? await rp.read(0, Math.min(rp.size, MAX_REPARSE_BYTES)) : Buffer.alloc(0), inode.recordNo);
    const stored = inode.stream(AT.DATA, WOF_COMPRESSED_DATA_STREAM);
    if (!stored) {
      throw new UnsupportedError('E_NTFS_WOF', `MFT record ${inode.recordNo} is WOF-compressed (${format.algorithm}) but has no ${WOF_COMPRESSED_DATA_STREAM} stream to decompress`, { record: inode.recordNo, algorithm: format.algorithm });
    }
    if (stored.encrypted) throw new UnsupportedError('E_NTFS_ENCRYPTED', `MFT record ${inode.recordNo}: its ${WOF_COMPRESSED_DATA_STREAM} stream is EFS-encrypted`, { record: inode.recordNo });
    const reader = new WofReader(inode.recordNo, format, inode.stream(AT.DATA)?.size ?? 0, stored);
    inode.wof = reader;
    return reader;
  }

  async read(ino: number, offset: number, length: number, stream?: string): Promise<Buffer> {
    const { inode, s, wof } = await this.dataStream(ino, stream, 'read');
    if (wof) return wof.read(offset, length);
    if (!s) return Buffer.alloc(0);
    if (s.encrypted || (inode.si.fileAttributes & FILE_ATTR.ENCRYPTED && !s.resident)) {
      throw new UnsupportedError('E_NTFS_ENCRYPTED', `MFT record ${ino} is EFS-encrypted: its bytes are ciphertext`, { record: ino });
    }
    return s.read(offset, length);
  }

  async readInto(ino: number, out: Buffer, offset: number, stream?: string): Promise<number> {
    const { inode, s, wof } = await this.dataStream(ino, stream, 'read');
    // plain data straight into `out`; compressed, WOF, resident and encrypted data as read() has it
    if (!s || wof || s.resident || s.compressed || s.encrypted || inode.si.fileAttributes & FILE_ATTR.ENCRYPTED) {
      const b = await this.read(ino, offset, out.length, stream);
      b.copy(out);
      return b.length;
    }
    const n = Math.max(0, Math.min(out.length, s.size - offset));
    if (n > 0) await s.readInto(out.subarray(0, n), offset);
    return n;
  }

  async *extents(ino: number, stream?: string): AsyncIterable<FileExtent> {
    const { s, wof } = await this.dataStream(ino, stream, 'map');
    // A WOF file's unnamed stream is all hole; its bytes are data with no place on disk of their own.
    if (wof) {
      if (wof.size > 0) yield { offset: 0, length: wof.size, state: 'data' };
      return;
    }
    if (s) yield* s.extents();
  }

  async readlink(ino: number): Promise<string> {
    const k = await this.kind(await this.mft.inode(ino));
    if (k.type !== 'symlink') throw new NtfsFsError('E_NTFS_NOT_SYMLINK', `MFT record ${ino} is not a symlink`, { record: ino });
    return k.target!;
  }

  /** Named streams as user.<name>, as ntfs-3g's streams_interface=xattr lists them. */
  async listxattr(ino: number): Promise<string[]> {
    return (await this.mft.inode(ino)).dataStreamNames().map((n) => `user.${n}`);
  }

  async getxattr(ino: number, name: string): Promise<Buffer> {
    const inode = await this.mft.inode(ino);
    if (name.startsWith('user.')) {
      const s = inode.stream(AT.DATA, name.slice(5));
      if (s) {
        checkBound('xattr', 'stream size', s.size, MAX_XATTR_BYTES, { record: ino, name });
        return s.read(0, s.size);
      }
    }
    const attrib = inode.si.fileAttributes | (inode.isDirectory ? FILE_ATTR.DIRECTORY : 0);
    switch (name) {
      case 'system.ntfs_attrib': {
        const b = Buffer.alloc(4);
        b.writeUInt32LE(attrib >>> 0);
        return b;
      }
      case 'system.ntfs_attrib_be': {
        const b = Buffer.alloc(4);
        b.writeUInt32BE(attrib >>> 0);
        return b;
      }
      case 'system.ntfs_reparse_data': {
        const rp = inode.stream(AT.REPARSE_POINT);
        if (rp && inode.si.fileAttributes & FILE_ATTR.REPARSE_POINT) return rp.read(0, Math.min(rp.size, MAX_REPARSE_BYTES));
        break;
      }
    }
    throw new NtfsFsError('E_NTFS_NO_XATTR', `MFT record ${ino} has no extended attribute '${name}'`, { record: ino, name }, ExitCode.notFound);
  }

  async close(): Promise<void> {
    this.blockCache.clear();
  }
}

/** Set bits among the first `count` of a bitmap stream, read 1 MiB at a time. */
async function countBits(s: AttrStream, count: number): Promise<number> {
  let set = 0;
  const bytes = Math.min(s.size, Math.ceil(count / 8));
  for (let off = 0; off < bytes; off += MiB) {
    const chunk = await s.read(off, Math.min(MiB, bytes - off));
    for (let i = 0; i < chunk.length; i++) {
      let v = chunk[i]!;
      const bit0 = (off + i) * 8;
      if (bit0 + 8 > count) v &= (1 << (count - bit0)) - 1;
      while (v) {
        v &= v - 1;
        set++;
      }
    }
  }
  return set;
}

export async function openNtfs(volume: VolumeSource, opts?: NtfsOptions): Promise<NtfsFileSystem> {
  return NtfsFileSystem.open(volume, opts);
}
