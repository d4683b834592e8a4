/**
 * The archive index: one JSON object per line, beside each archive, encrypted like it (zstd
 * frames inside age). It says, for every entry present at the backup's point in time, what it is
 * (type, size, times, owner, content hash) and where its bytes are: the archive that holds them
 * (this one, or an earlier one of an incremental chain) and the tar offsets of its header and data.
 * A tar offset leads to a zstd frame through the seek table and to age chunks by arithmetic, so a
 * restore of one file fetches only the chunks that hold it.
 *
 * The first line is an IndexHeader; entries follow in tree order (see compareTreePaths). Paths are
 * tree paths (<disk>/<volume>/<path in the volume>); a path whose bytes are not UTF-8 carries them
 * in `pathB64` (and `path` holds a display form).
 */
import { isUtf8 } from 'node:buffer';
import { CorruptStructureError } from '../util/errors.js';
import { devNumbers, type FileType, type Stat } from '../fs/types.js';

export const INDEX_FORMAT = 'snapferry-index';
export const INDEX_VERSION = 1;
/** Longest index line we accept: a path, a link target and a few numbers fit many times over. */
export const MAX_INDEX_LINE = 1 << 20;

export interface IndexHeader {
  format: typeof INDEX_FORMAT;
  version: number;
  archive: string;
}

export interface IndexEntry {
  path: string;
  pathB64?: string;
  type: FileType;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  nlink: number;
  /** Nanoseconds since the epoch, decimal. */
  mtimeNs: string;
  ctimeNs: string;
  atimeNs: string;
  target?: string;
  targetB64?: string;
  sha256?: string;
  /** An image backup's full disk member: sha256 of its 1 MiB blocks' sha256s (src/backup/image-hash.ts). */
  blocksSha256?: string;
  /** A device node's numbers, as its tar header carries them (absent in indexes written before them). */
  devMajor?: number;
  devMinor?: number;
  /** Extended attribute names stored with the entry (NTFS streams, DOS attributes; ext xattrs). */
  xattrs?: string[];
  /** A hard link: the tree path of the entry (in the same archive) that carries the data. */
  link?: string;
  /** The archive holding the entry's tar member (absent: the archive this index belongs to). */
  archive?: string;
  /** Tar offsets of the member's first header and of its data. */
  header?: number;
  data?: number;
  /** The entry could not be backed up (or only in part): why. */
  error?: { code: string; message: string };
}

/** An entry's index line as far as its stat says (what it is, owner, times); where its bytes are is the writer's to add. */
export function indexEntryOf(pathBytes: Buffer, st: Stat): IndexEntry {
  const e: IndexEntry = {
    path: pathBytes.toString('utf8'),
    type: st.type,
    mode: st.mode & 0o7777,
    uid: st.uid,
    gid: st.gid,
    size: st.type === 'dir' ? 0 : st.size,
    nlink: st.nlink,
    mtimeNs: String(st.mtimeNs),
    ctimeNs: String(st.ctimeNs),
    atimeNs: String(st.atimeNs),
  };
  if (!isUtf8(pathBytes)) e.pathB64 = pathBytes.toString('base64');
  if ((st.type === 'chardev' || st.type === 'blockdev') && st.rdev !== undefined) {
    const { major, minor } = devNumbers(st.rdev);
    e.devMajor = major;
    e.devMinor = minor;
  }
  return e;
}

export function encodeIndexLine(v: IndexHeader | IndexEntry): Buffer {
  return Buffer.from(`${JSON.stringify(v)}\n`);
}

const TYPES = new Set(['file', 'dir', 'symlink', 'blockdev', 'chardev', 'fifo', 'socket']);

function bad(field: string, line: number | string, why: string): CorruptStructureError {
  return new CorruptStructureError('E_INDEX_ENTRY', `index line ${line}: ${field} ${why}`, { structure: 'IndexEntry', field, line });
}

/** One line of an index, checked field by field: an index is as hostile as any input. `line`: its number, or where it is, for errors. */
export function parseIndexEntry(text: string, line: number | string): IndexEntry {
  if (text.length > MAX_INDEX_LINE) throw bad('line', line, `is ${text.length} bytes, over ${MAX_INDEX_LINE}`);
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw bad('line', line, 'is not JSON');
  }
  if (typeof v !== 'object' || v === null) throw bad('line', line, 'is not an object');
  const e = v as Record<string, unknown>;
  if (typeof e.path !== 'string' || e.path === '') throw bad('path', line, 'is missing');
  if (typeof e.type !== 'string' || !TYPES.has(e.type)) throw bad('type', line, `is not a file type`);
  for (const k of ['mode', 'uid', 'gid', 'size', 'nlink'] as const) if (!Number.isSafeInteger(e[k]) || (e[k] as number) < 0) throw bad(k, line, 'is not a non-negative integer');
  for (const k of ['mtimeNs', 'ctimeNs', 'atimeNs'] as const) if (typeof e[k] !== 'string' || !/^-?\d{1,25}$/.test(e[k] as string)) throw bad(k, line, 'is not a decimal nanosecond time');
  for (const k of ['header', 'data'] as const) if (e[k] !== undefined && (!Number.isSafeInteger(e[k]) || (e[k] as number) < 0)) throw bad(k, line, 'is not an offset');
  // the ustar devmajor/devminor fields: 7 octal digits
  for (const k of ['devMajor', 'devMinor'] as const) if (e[k] !== undefined && (!Number.isSafeInteger(e[k]) || (e[k] as number) < 0 || (e[k] as number) > 0o7777777)) throw bad(k, line, 'is not a device number');
  for (const k of ['pathB64', 'target', 'targetB64', 'sha256', 'link', 'archive'] as const) if (e[k] !== undefined && typeof e[k] !== 'string') throw bad(k, line, 'is not a string');
  if (e.sha256 !== undefined && !/^[0-9a-f]{64}$/.test(e.sha256 as string)) throw bad('sha256', line, 'is not a sha256');
  if (e.blocksSha256 !== undefined && (typeof e.blocksSha256 !== 'string' || !/^[0-9a-f]{64}$/.test(e.blocksSha256))) throw bad('blocksSha256', line, 'is not a sha256');
  if (e.archive !== undefined && !/^[0-9A-Za-z-]{1,64}$/.test(e.archive as string)) throw bad('archive', line, 'is not an archive id');
  if (e.xattrs !== undefined && (!Array.isArray(e.xattrs) || e.xattrs.length > 65536 || !e.xattrs.every((x) => typeof x === 'string'))) throw bad('xattrs', line, 'is not a list of names');
  return e as unknown as IndexEntry;
}

export function parseIndexHeader(text: string): IndexHeader {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    v = null;
  }
  const h = v as Partial<IndexHeader> | null;
  if (!h || h.format !== INDEX_FORMAT || typeof h.archive !== 'string') throw new CorruptStructureError('E_INDEX_HEADER', 'the index does not start with a snapferry index header', { structure: 'IndexHeader' });
  if (h.version !== INDEX_VERSION) throw new CorruptStructureError('E_INDEX_VERSION', `index version ${String(h.version)}; this snapferry reads version ${INDEX_VERSION}`, { structure: 'IndexHeader', field: 'version' });
  return h as IndexHeader;
}

/** The exact bytes of an entry's path. */
export function entryPathBytes(e: { path: string; pathB64?: string }): Buffer {
  return e.pathB64 !== undefined ? Buffer.from(e.pathB64, 'base64') : Buffer.from(e.path, 'utf8');
}

/**
 * Tree order: a directory, then everything below it, then its next sibling — the order of a
 * pre-order walk whose directories list their children sorted by bytes. It is byte order with '/'
 * taken as lower than every other byte.
 */
export function compareTreePaths(a: Buffer, b: Buffer): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a[i] === 0x2f ? -1 : a[i]!;
    const y = b[i] === 0x2f ? -1 : b[i]!;
    if (x !== y) return x - y;
  }
  return a.length - b.length;
}

/** Lines of a byte stream, bounded: a line longer than MAX_INDEX_LINE is corrupt, not a reason to buffer. */
export async function* lines(chunks: AsyncIterable<Buffer>, what: string): AsyncIterable<string> {
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  for await (const chunk of chunks) {
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(0x0a, start);
      if (nl < 0) break;
      const piece = chunk.subarray(start, nl);
      yield (pending.length ? Buffer.concat([...pending, piece]) : piece).toString('utf8');
      pending = [];
      pendingBytes = 0;
      start = nl + 1;
    }
    if (start < chunk.length) {
      pending.push(chunk.subarray(start));
      pendingBytes += chunk.length - start;
      if (pendingBytes > MAX_INDEX_LINE) throw new CorruptStructureError('E_INDEX_ENTRY', `${what}: a line longer than ${MAX_INDEX_LINE} bytes`, { structure: 'IndexEntry', field: 'line' });
    }
  }
  if (pendingBytes > 0) throw new CorruptStructureError('E_INDEX_TRUNCATED', `${what}: the last line has no end`, { structure: 'IndexEntry' });
}
