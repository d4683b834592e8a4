/**
 * The PAX tar reader: a streaming pass (`readTar`, for a whole-archive restore or verify) and a
 * random-access one (`readEntryAt` + `readMemberRange`, for a restore of single files through the
 * archive index). Input is hostile: every header's checksum is verified, every size and count is
 * bounded before it is allocated or looped on, and a stream that ends early is an error
 * (E_TAR_TRUNCATED), including one that ends without the two zero blocks: a backup archive cut at
 * a member boundary is still a truncated backup.
 *
 * Errors (CorruptStructureError unless noted; `data.offset` is the header's byte offset):
 *   E_TAR_CHECKSUM   header checksum mismatch
 *   E_TAR_MAGIC      not a ustar (POSIX or GNU) header
 *   E_TAR_FIELD      a numeric ustar field is not octal/base-256
 *   E_TAR_PAX        a malformed PAX record, or a bad value for a key we interpret
 *   E_TAR_BOUND      past a limit: PAX header > 1 MiB, > 65536 records, GNU long name > 1 MiB,
 *                    > 8 extension headers before one member, sparse map > 2^20 entries
 *   E_TAR_SPARSE     an inconsistent GNU sparse 1.0 map
 *   E_TAR_TRUNCATED  the bytes end inside a header, a member's data or before the end blocks
 *   E_TAR_TYPEFLAG   (UnsupportedError) a typeflag or sparse version we do not read
 *   E_TAR_STATE      (SnapferryError) a member's data iterated twice or after the reader moved on
 *   E_TAR_RANGE      (SnapferryError) readMemberRange outside the member or above 64 MiB
 */
import { CorruptStructureError, SnapferryError, UnsupportedError } from '../../util/errors.js';
import { MiB } from '../../util/bounded.js';
import type { RandomAccess } from '../types.js';
import type { SparseSegment, TarEntryType, TarReadEntry } from './entry.js';
import { decodeHeader, isZeroBlock, type DecodedHeader } from './header.js';
import { PAX_KEY, PAX_LIMITS, decodeXattrName, parsePaxInteger, parsePaxRecords, parsePaxTime, type PaxRecord } from './pax.js';
import { padToBlock, parseSparseMap } from './sparse.js';
import { BLOCK_SIZE, TYPEFLAG } from './structs.js';

export type { TarReadEntry, SparseSegment } from './entry.js';

export const READER_LIMITS = {
  /** 'x', 'g', 'L', 'K' headers in a row before one member. */
  maxExtensionHeaders: 8,
  /** A GNU 'L'/'K' long name's data. */
  maxLongNameBytes: 1 * MiB,
  /** One readMemberRange call. */
  maxRangeBytes: 64 * MiB,
} as const;

/** A piece of a member's logical data: `bytes` at logical `offset` (contiguous unless sparse). */
export interface TarChunk {
  offset: number;
  bytes: Buffer;
}

/** Where a member lies in the archive. */
export interface TarMemberLocation {
  entry: TarReadEntry;
  /** The member's first header (its first 'x'/'L'/'K' header if any). */
  headerOffset: number;
  /** The member's data (for sparse 1.0: the map block(s)). */
  dataOffset: number;
  /** Bytes stored after the ustar header, before padding (sparse: map + segments). */
  storedSize: number;
  /** The next member's header. */
  nextHeaderOffset: number;
  /** Sparse only: each segment with where its bytes are stored. */
  storedSegments?: Array<SparseSegment & { storedOffset: number }>;
}

export interface TarMember extends TarMemberLocation {
  /**
   * The member's data, once, before the next member is asked for: the whole logical content for
   * a non-sparse file, the stored segments at their logical offsets for a sparse one (holes are
   * not yielded; a restore writes each chunk at its offset and truncates to entry.size). Chunks
   * may be views of the input's buffers. Data not read is skipped.
   */
  data: AsyncIterable<TarChunk>;
}

const truncated = (what: string, offset: number, want: number, got: number): CorruptStructureError =>
  new CorruptStructureError('E_TAR_TRUNCATED', `tar: ${what} at ${offset}: the archive ends after ${got} of ${want} bytes`, { structure: 'tar', what, offset, want, got });

const bound = (field: string, value: number, limit: number, offset: number): CorruptStructureError =>
  new CorruptStructureError('E_TAR_BOUND', `tar header at ${offset}: ${field} = ${value} exceeds the limit of ${limit}`, { structure: 'tar', field, value, limit, offset });

/** What header parsing needs from its source: exact reads at a moving offset. */
interface ByteCursor {
  readonly offset: number;
  /** Exactly n bytes, or E_TAR_TRUNCATED naming `what`. */
  readExact(n: number, what: string): Promise<Buffer>;
  /** n bytes, or null when the source ends before the first of them (0 bytes left). */
  readBlockOrEnd(what: string): Promise<Buffer | null>;
}

class StreamCursor implements ByteCursor {
  offset = 0;
  private cur: Buffer = Buffer.alloc(0);
  private pos = 0;
  private done = false;
  constructor(private readonly it: AsyncIterator<Buffer>) {}

  private async more(): Promise<boolean> {
    while (!this.done) {
      const r = await this.it.next();
      if (r.done) {
        this.done = true;
        return false;
      }
      if (r.value.length > 0) {
        this.cur = r.value;
        this.pos = 0;
        return true;
      }
    }
    return false;
  }

  /** Up to n bytes of what is buffered (refilling once when empty); empty at the end. */
  async readSome(n: number): Promise<Buffer> {
    if (this.pos >= this.cur.length && !(await this.more())) return Buffer.alloc(0);
    const take = Math.min(n, this.cur.length - this.pos);
    const out = this.cur.subarray(this.pos, this.pos + take);
    this.pos += take;
    this.offset += take;
    return out;
  }

  async readExact(n: number, what: string): Promise<Buffer> {
    const start = this.offset;
    const first = await this.readSome(n);
    if (first.length === n) return first;
    const parts = [first];
    let got = first.length;
    while (got < n) {
      const b = await this.readSome(n - got);
      if (b.length === 0) throw truncated(what, start, n, got);
      parts.push(b);
      got += b.length;
    }
    return Buffer.concat(parts, n);
  }

  async readBlockOrEnd(what: string): Promise<Buffer | null> {
    if (this.pos >= this.cur.length && !(await this.more())) return null;
    return this.readExact(BLOCK_SIZE, what);
  }

  async skip(n: number, what: string): Promise<void> {
    const start = this.offset;
    let left = n;
    while (left > 0) {
      const b = await this.readSome(left);
      if (b.length === 0) throw truncated(what, start, n, n - left);
      left -= b.length;
    }
  }
}

class RandomCursor implements ByteCursor {
  constructor(
    private readonly ra: RandomAccess,
    public offset: number,
  ) {}
  async readExact(n: number, what: string): Promise<Buffer> {
    if (this.offset + n > this.ra.size) throw truncated(what, this.offset, n, Math.max(0, this.ra.size - this.offset));
    const b = await this.ra.read(this.offset, n);
    this.offset += n;
    return b;
  }
  async readBlockOrEnd(what: string): Promise<Buffer | null> {
    if (this.offset >= this.ra.size) return null;
    return this.readExact(BLOCK_SIZE, what);
  }
}

interface ParsedHeader {
  entry: TarReadEntry;
  headerOffset: number;
  /** Offset just after the ustar header. */
  dataOffset: number;
  storedSize: number;
  sparseMajor: boolean;
}

function typeOf(h: DecodedHeader, headerOffset: number): TarEntryType {
  switch (h.typeflag) {
    case TYPEFLAG.REGTYPE:
    case TYPEFLAG.CONTTYPE:
      return 'file';
    case TYPEFLAG.AREGTYPE:
      return h.name[h.name.length - 1] === 0x2f ? 'dir' : 'file';
    case TYPEFLAG.LNKTYPE:
      return 'hardlink';
    case TYPEFLAG.SYMTYPE:
      return 'symlink';
    case TYPEFLAG.CHRTYPE:
      return 'chardev';
    case TYPEFLAG.BLKTYPE:
      return 'blockdev';
    case TYPEFLAG.DIRTYPE:
      return 'dir';
    case TYPEFLAG.FIFOTYPE:
      return 'fifo';
    default:
      throw new UnsupportedError('E_TAR_TYPEFLAG', `tar header at ${headerOffset}: typeflag 0x${h.typeflag.charCodeAt(0).toString(16)} is not one we read`, { offset: headerOffset, typeflag: h.typeflag });
  }
}

function stripSlashes(p: Buffer): Buffer {
  let end = p.length;
  while (end > 1 && p[end - 1] === 0x2f) end--;
  return p.subarray(0, end);
}

/**
 * Reads extension headers and the ustar header of one member; null at the end-of-archive blocks.
 * `globals` collects 'g' records (applied to every later member, overridden by 'x').
 */
async function readHeader(cur: ByteCursor, globals: Map<string, Buffer>): Promise<ParsedHeader | null> {
  const headerOffset = cur.offset;
  const local = new Map<string, Buffer>();
  const extra: PaxRecord[] = [];
  const xattrs = new Map<string, Buffer>();
  let longName: Buffer | undefined;
  let longLink: Buffer | undefined;
  for (let n = 0; ; n++) {
    const at = cur.offset;
    const block = await cur.readBlockOrEnd('ustar header');
    if (block === null) throw truncated('end-of-archive blocks', at, 2 * BLOCK_SIZE, 0);
    if (isZeroBlock(block)) {
      if (n > 0) throw new CorruptStructureError('E_TAR_TRUNCATED', `tar: extension header at ${headerOffset} is followed by the end of the archive`, { offset: headerOffset });
      const second = await cur.readExact(BLOCK_SIZE, 'second end-of-archive block');
      if (!isZeroBlock(second)) throw new CorruptStructureError('E_TAR_TRUNCATED', `tar: a lone zero block at ${at} followed by data`, { offset: at });
      return null;
    }
    const h = decodeHeader(block, at);
    const isExt = h.typeflag === TYPEFLAG.XHDTYPE || h.typeflag === TYPEFLAG.XGLTYPE || h.typeflag === TYPEFLAG.GNUTYPE_LONGNAME || h.typeflag === TYPEFLAG.GNUTYPE_LONGLINK;
    if (isExt) {
      if (n >= READER_LIMITS.maxExtensionHeaders) throw bound('extension headers', n + 1, READER_LIMITS.maxExtensionHeaders, headerOffset);
      const isPax = h.typeflag === TYPEFLAG.XHDTYPE || h.typeflag === TYPEFLAG.XGLTYPE;
      const limit = isPax ? PAX_LIMITS.maxHeaderBytes : READER_LIMITS.maxLongNameBytes;
      if (h.size > limit) throw bound(isPax ? 'pax header size' : 'long name size', h.size, limit, at);
      const body = await cur.readExact(padToBlock(h.size), 'extension header data');
      const data = Buffer.from(body.subarray(0, h.size));
      if (isPax) {
        const records = parsePaxRecords(data, at);
        const into = h.typeflag === TYPEFLAG.XGLTYPE ? globals : local;
        for (const [k, v] of records) into.set(k, v);
        if (h.typeflag === TYPEFLAG.XHDTYPE) {
          for (const [k, v] of records) {
            if (k.startsWith(PAX_KEY.xattrPrefix)) xattrs.set(decodeXattrName(k), v);
            else if (!KNOWN_KEYS.has(k)) extra.push([k, v]);
          }
        }
      } else {
        const nul = data.indexOf(0);
        const name = nul < 0 ? data : data.subarray(0, nul);
        if (h.typeflag === TYPEFLAG.GNUTYPE_LONGNAME) longName = name;
        else longLink = name;
      }
      continue;
    }
    const type = typeOf(h, at);
    const get = (k: string): Buffer | undefined => local.get(k) ?? globals.get(k);
    const num = (k: string, max: number, fallback: number): number => {
      const v = get(k);
      return v === undefined ? fallback : parsePaxInteger(v, k, max, at);
    };
    const time = (k: string): bigint | undefined => {
      const v = get(k);
      return v === undefined ? undefined : parsePaxTime(v, k, at);
    };
    const ustarPath = h.prefix.length > 0 ? Buffer.concat([h.prefix, Buffer.from('/'), h.name]) : h.name;
    let path = get(PAX_KEY.path) ?? longName ?? ustarPath;
    const storedSize = num(PAX_KEY.size, Number.MAX_SAFE_INTEGER, h.size);
    let size = type === 'file' ? storedSize : 0;
    const major = get(PAX_KEY.sparseMajor);
    let sparseMajor = false;
    if (major !== undefined || get(PAX_KEY.sparseMap01) !== undefined || get(PAX_KEY.sparseNumblocks00) !== undefined) {
      const minor = get(PAX_KEY.sparseMinor);
      if (major?.toString('latin1') !== '1' || minor?.toString('latin1') !== '0') {
        throw new UnsupportedError('E_TAR_TYPEFLAG', `tar header at ${at}: GNU sparse format ${major ?? '0'}.${minor ?? '?'} (we read 1.0)`, { offset: at });
      }
      if (type !== 'file') throw new CorruptStructureError('E_TAR_SPARSE', `tar header at ${at}: a sparse ${type}`, { offset: at });
      const name = get(PAX_KEY.sparseName);
      if (name !== undefined) path = name;
      size = num(PAX_KEY.sparseRealsize, Number.MAX_SAFE_INTEGER, -1);
      if (size < 0) throw new CorruptStructureError('E_TAR_SPARSE', `tar header at ${at}: GNU sparse 1.0 without GNU.sparse.realsize`, { offset: at });
      sparseMajor = true;
    }
    const linkTarget = type === 'symlink' || type === 'hardlink' ? Buffer.from(get(PAX_KEY.linkpath) ?? longLink ?? h.linkname) : undefined;
    const entry: TarReadEntry = {
      path: Buffer.from(stripSlashes(path)),
      type,
      typeflag: h.typeflag,
      mode: h.mode & 0o7777,
      uid: num(PAX_KEY.uid, 0xffffffff, h.uid),
      gid: num(PAX_KEY.gid, 0xffffffff, h.gid),
      uname: Buffer.from(get(PAX_KEY.uname) ?? h.uname),
      gname: Buffer.from(get(PAX_KEY.gname) ?? h.gname),
      mtimeNs: time(PAX_KEY.mtime) ?? BigInt(h.mtime) * 1_000_000_000n,
      size,
      devMajor: h.devmajor,
      devMinor: h.devminor,
      xattrs: [...xattrs].map(([k, v]) => [k, Buffer.from(v)]),
      pax: extra.map(([k, v]) => [k, Buffer.from(v)]),
    };
    const atime = time(PAX_KEY.atime);
    const ctime = time(PAX_KEY.ctime);
    if (atime !== undefined) entry.atimeNs = atime;
    if (ctime !== undefined) entry.ctimeNs = ctime;
    if (linkTarget) entry.linkTarget = linkTarget;
    return { entry, headerOffset, dataOffset: cur.offset, storedSize, sparseMajor };
  }
}

const KNOWN_KEYS = new Set<string>([
  PAX_KEY.path,
  PAX_KEY.linkpath,
  PAX_KEY.size,
  PAX_KEY.uid,
  PAX_KEY.gid,
  PAX_KEY.uname,
  PAX_KEY.gname,
  PAX_KEY.mtime,
  PAX_KEY.atime,
  PAX_KEY.ctime,
  PAX_KEY.hdrcharset,
  PAX_KEY.sparseMajor,
  PAX_KEY.sparseMinor,
  PAX_KEY.sparseName,
  PAX_KEY.sparseRealsize,
]);

/** Each segment's bytes start on a block boundary (GNU sparse_extract_region reads whole blocks). */
function withStoredOffsets(segments: SparseSegment[], start: number): Array<SparseSegment & { storedOffset: number }> {
  let at = start;
  return segments.map((s) => {
    const r = { ...s, storedOffset: at };
    at += padToBlock(s.length);
    return r;
  });
}

/**
 * Streams the members of an archive. Each member's `data` must be consumed (or abandoned) before
 * asking for the next member; the reader then skips what is left, padding included.
 */
export async function* readTar(chunks: AsyncIterable<Buffer>): AsyncGenerator<TarMember> {
  const cur = new StreamCursor(chunks[Symbol.asyncIterator]());
  const globals = new Map<string, Buffer>();
  for (;;) {
    const h = await readHeader(cur, globals);
    if (h === null) return;
    const end = h.dataOffset + padToBlock(h.storedSize);
    let storedSegments: Array<SparseSegment & { storedOffset: number }> | undefined;
    if (h.sparseMajor) {
      const map = await parseSparseMap(() => cur.readExact(BLOCK_SIZE, 'sparse map'), h.storedSize, h.entry.size, h.dataOffset);
      h.entry.sparse = map.segments;
      storedSegments = withStoredOffsets(map.segments, h.dataOffset + map.mapBytes);
    }
    let state: 'fresh' | 'reading' | 'gone' = 'fresh';
    const entryData = async function* (): AsyncGenerator<TarChunk> {
      if (state !== 'fresh') throw new SnapferryError('E_TAR_STATE', `tar member at ${h.headerOffset}: data read twice or after the reader moved on`, { offset: h.headerOffset });
      state = 'reading';
      const pieces = storedSegments ?? [{ offset: 0, length: h.storedSize, storedOffset: h.dataOffset }];
      for (const s of pieces) {
        if (s.length > 0 && s.storedOffset > cur.offset) await cur.skip(s.storedOffset - cur.offset, 'sparse segment padding');
        let done = 0;
        while (done < s.length) {
          if (state !== 'reading') throw new SnapferryError('E_TAR_STATE', `tar member at ${h.headerOffset}: data read after the reader moved on`, { offset: h.headerOffset });
          const b = await cur.readSome(s.length - done);
          if (b.length === 0) throw truncated('member data', s.storedOffset, s.length, done);
          yield { offset: s.offset + done, bytes: b };
          done += b.length;
        }
      }
    };
    yield {
      entry: h.entry,
      headerOffset: h.headerOffset,
      dataOffset: h.dataOffset,
      storedSize: h.storedSize,
      nextHeaderOffset: end,
      ...(storedSegments ? { storedSegments } : {}),
      data: { [Symbol.asyncIterator]: entryData },
    };
    state = 'gone';
    if (cur.offset > end) throw new SnapferryError('E_INTERNAL', `tar reader past member end at ${cur.offset}`);
    await cur.skip(end - cur.offset, 'member data');
  }
}

/**
 * The member whose first header is at `headerOffset` (an index's offset). Global 'g' headers
 * before it are not seen (our writer writes none). Its data must lie within `ra`.
 */
export async function readEntryAt(ra: RandomAccess, headerOffset: number): Promise<TarMemberLocation> {
  if (!Number.isSafeInteger(headerOffset) || headerOffset < 0 || headerOffset % BLOCK_SIZE !== 0) {
    throw new CorruptStructureError('E_TAR_FIELD', `tar: header offset ${headerOffset} is not a block boundary`, { offset: headerOffset });
  }
  const cur = new RandomCursor(ra, headerOffset);
  const h = await readHeader(cur, new Map());
  if (h === null) throw new CorruptStructureError('E_TAR_TRUNCATED', `tar: end-of-archive blocks at ${headerOffset}, not a member`, { offset: headerOffset });
  const end = h.dataOffset + padToBlock(h.storedSize);
  if (end > ra.size) throw truncated('member data', h.dataOffset, padToBlock(h.storedSize), Math.max(0, ra.size - h.dataOffset));
  const loc: TarMemberLocation = { entry: h.entry, headerOffset, dataOffset: h.dataOffset, storedSize: h.storedSize, nextHeaderOffset: end };
  if (h.sparseMajor) {
    const map = await parseSparseMap(() => cur.readExact(BLOCK_SIZE, 'sparse map'), h.storedSize, h.entry.size, h.dataOffset);
    h.entry.sparse = map.segments;
    loc.storedSegments = withStoredOffsets(map.segments, h.dataOffset + map.mapBytes);
  }
  return loc;
}

/** `length` logical bytes at `offset` of a file member (holes of a sparse one read as zeros). */
export async function readMemberRange(ra: RandomAccess, member: TarMemberLocation, offset: number, length: number): Promise<Buffer> {
  const size = member.entry.size;
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > size || length > READER_LIMITS.maxRangeBytes) {
    throw new SnapferryError('E_TAR_RANGE', `tar member at ${member.headerOffset}: range ${offset}+${length} is outside its ${size} bytes or above ${READER_LIMITS.maxRangeBytes}`, { offset, length, size });
  }
  if (length === 0) return Buffer.alloc(0);
  const segs = member.storedSegments;
  if (!segs) return ra.read(member.dataOffset + offset, length);
  const out = Buffer.alloc(length);
  // First segment ending after offset (binary search: maps can hold 2^20 entries).
  let lo = 0;
  let hi = segs.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (segs[mid]!.offset + segs[mid]!.length <= offset) lo = mid + 1;
    else hi = mid;
  }
  for (let i = lo; i < segs.length && segs[i]!.offset < offset + length; i++) {
    const s = segs[i]!;
    const from = Math.max(s.offset, offset);
    const to = Math.min(s.offset + s.length, offset + length);
    if (to <= from) continue;
    const b = await ra.read(s.storedOffset + (from - s.offset), to - from);
    b.copy(out, from - offset);
  }
  return out;
}
