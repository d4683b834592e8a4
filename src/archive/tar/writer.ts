/**
 * The PAX tar writer. Hand-written on purpose: archiver/tar-stream rewrite names holding `\` or
 * `x:`, cannot store mode 0000 and have no binary xattr values or non-UTF-8 names; node-tar cannot
 * add our own PAX records. Here names are bytes, xattr values are bytes, a name that is not UTF-8
 * is written with hdrcharset=BINARY, and the output is what stock GNU tar 1.34 extracts byte for
 * byte (`tar --xattrs --xattrs-include='*' -xpSf`): the format is small enough to own.
 *
 * Each member: [PAX 'x' header + records, padded] ustar header [data, padded to 512]. The ustar
 * fields carry what fits (name/prefix split, octal numbers); PAX records carry the rest (long or
 * non-ASCII names, sizes >= 8 GiB, ids > 07777777, times with nanoseconds or outside the octal
 * range, uname/gname, xattrs, GNU sparse 1.0 keys, extra records).
 */
import { SnapferryError } from '../../util/errors.js';
import type { ByteSink } from '../types.js';
import type { SparseSegment, TarEntry, TarEntryType } from './entry.js';
import { encodeHeader, type UstarFields } from './header.js';
import { HDRCHARSET_BINARY, PAX_KEY, PAX_LIMITS, encodePaxRecords, encodeXattrKeyword, formatPaxTime, isValidUtf8 } from './pax.js';
import { encodeSparseMap, normalizeSparseSegments, padToBlock, storedBytes } from './sparse.js';
import { BLOCK_SIZE, END_OF_ARCHIVE_BLOCKS, MODE_BITS, OCTAL_MAX, TYPEFLAG, USTAR_HEADER } from './structs.js';

export type { TarEntry, TarEntryType, SparseSegment } from './entry.js';

export interface TarAddResult {
  /** Where the entry's first header (its PAX 'x' header if any) begins in the tar stream. */
  headerOffset: number;
  /** Where its data begins (for sparse 1.0: the map block(s)). */
  dataOffset: number;
  /** Bytes of data stored (sparse: map blocks + segment bytes), before padding. */
  storedSize: number;
}

/** Writer-side errors: the entry cannot be written as asked (nothing half-right is produced silently). */
function writeError(code: string, message: string, data: Record<string, string | number> = {}): SnapferryError {
  return new SnapferryError(code, message, data);
}

const TYPE_FLAGS: Record<TarEntryType, string> = {
  file: TYPEFLAG.REGTYPE,
  hardlink: TYPEFLAG.LNKTYPE,
  symlink: TYPEFLAG.SYMTYPE,
  chardev: TYPEFLAG.CHRTYPE,
  blockdev: TYPEFLAG.BLKTYPE,
  dir: TYPEFLAG.DIRTYPE,
  fifo: TYPEFLAG.FIFOTYPE,
};

const SLASH = 0x2f;

function toBytes(v: Buffer | string): Buffer {
  return typeof v === 'string' ? Buffer.from(v, 'utf8') : v;
}

function isAscii(b: Buffer): boolean {
  for (let i = 0; i < b.length; i++) if (b[i]! >= 0x80) return false;
  return true;
}

/**
 * Archive names are relative: no leading '/', no '..' component, no NUL, not empty. The restore
 * side refuses them too; refusing here means we never write an archive that would need it.
 */
export function checkArchivePath(path: Buffer, what = 'path'): void {
  const shown = path.toString('latin1').slice(0, 200);
  if (path.length === 0) throw writeError('E_TAR_PATH', `${what} is empty`);
  if (path.includes(0)) throw writeError('E_TAR_PATH', `${what} holds a NUL byte`, { path: shown });
  if (path[0] === SLASH) throw writeError('E_TAR_PATH', `${what} is absolute: ${shown}`, { path: shown });
  let start = 0;
  for (let i = 0; i <= path.length; i++) {
    if (i === path.length || path[i] === SLASH) {
      if (i - start === 2 && path[start] === 0x2e && path[start + 1] === 0x2e) throw writeError('E_TAR_PATH', `${what} has a '..' component: ${shown}`, { path: shown });
      start = i + 1;
    }
  }
}

/** ustar name/prefix split (POSIX: prefix + '/' + name), or null when the name does not fit. */
function splitUstarName(path: Buffer): { name: Buffer; prefix: Buffer } | null {
  const nameMax = USTAR_HEADER.name.length;
  const prefixMax = USTAR_HEADER.prefix.length;
  if (path.length <= nameMax) return { name: path, prefix: EMPTY };
  // The last '/' such that the prefix fits and the rest fits in name.
  for (let i = Math.min(prefixMax, path.length - 1); i > 0; i--) {
    if (path[i] === SLASH && path.length - i - 1 <= nameMax && path.length - i - 1 > 0) {
      return { prefix: path.subarray(0, i), name: path.subarray(i + 1) };
    }
  }
  return null;
}

/** A readable stand-in for a field whose real value is in a PAX record (what pre-PAX readers see). */
function placeholder(bytes: Buffer, max: number): Buffer {
  const out = Buffer.from(bytes.subarray(0, max));
  for (let i = 0; i < out.length; i++) if (out[i]! >= 0x80) out[i] = 0x5f; // '_'
  return out;
}

function basename(path: Buffer): Buffer {
  let end = path.length;
  while (end > 1 && path[end - 1] === SLASH) end--;
  const slash = path.lastIndexOf(SLASH, end - 1);
  return path.subarray(slash + 1, end);
}

function checkId(v: number, field: string): void {
  if (!Number.isSafeInteger(v) || v < 0 || v > 0xffffffff) throw writeError('E_TAR_FIELD', `${field} ${v} is not a 32-bit unsigned integer`, { field, value: String(v) });
}

/** Seconds for the ustar mtime field (floor), 0 when outside its octal range (the PAX record has it). */
function ustarSeconds(ns: bigint): { sec: number; inRange: boolean } {
  const sec = ns >= 0n ? ns / 1_000_000_000n : -((-ns + 999_999_999n) / 1_000_000_000n);
  const inRange = sec >= 0n && sec <= BigInt(OCTAL_MAX[12]);
  return { sec: inRange ? Number(sec) : 0, inRange };
}

/** An empty field (never written into). */
const EMPTY = Buffer.alloc(0);

/** Staging buffer size: headers and small chunks are gathered into one sink write. */
const STAGING_BYTES = 128 * 1024;

export class TarWriter {
  private offset = 0;
  private readonly staging = Buffer.allocUnsafe(STAGING_BYTES);
  /** Where each header is encoded before it is staged (stage() has copied it by the time it returns or resolves). */
  private readonly headerBlock = Buffer.alloc(BLOCK_SIZE);
  private staged = 0;
  private state: 'open' | 'busy' | 'failed' | 'finished' = 'open';

  constructor(private readonly sink: ByteSink) {}

  /** Bytes of tar stream produced so far (the next entry's headerOffset). */
  get position(): number {
    return this.offset;
  }

  /**
   * Writes one member. `data` must deliver exactly `size` bytes (sparse: exactly the sum of the
   * segment lengths, the segments' bytes in order); otherwise E_TAR_SIZE and the writer is
   * unusable (the archive so far is incomplete and must be discarded).
   */
  async add(entry: TarEntry, data?: AsyncIterable<Buffer> | Buffer): Promise<TarAddResult> {
    if (this.state !== 'open') throw writeError('E_TAR_STATE', `TarWriter.add on a writer that is ${this.state}`);
    this.state = 'busy';
    try {
      const result = await this.addEntry(entry, data);
      this.state = 'open';
      return result;
    } catch (err) {
      this.state = 'failed';
      throw err;
    }
  }

  /** Two zero blocks, then the sink is ended. */
  async finish(): Promise<{ size: number }> {
    if (this.state !== 'open') throw writeError('E_TAR_STATE', `TarWriter.finish on a writer that is ${this.state}`);
    this.state = 'finished';
    await this.stage(Buffer.alloc(END_OF_ARCHIVE_BLOCKS * BLOCK_SIZE));
    await this.flush();
    await this.sink.end();
    return { size: this.offset };
  }

  private async addEntry(entry: TarEntry, data?: AsyncIterable<Buffer> | Buffer): Promise<TarAddResult> {
    const typeflag = TYPE_FLAGS[entry.type];
    if (typeflag === undefined) throw writeError('E_TAR_FIELD', `unknown entry type ${String(entry.type)}`);
    let path = toBytes(entry.path);
    checkArchivePath(path);
    if (entry.type === 'dir' && path[path.length - 1] !== SLASH) path = Buffer.concat([path, Buffer.from('/')]);
    if (!Number.isInteger(entry.mode) || entry.mode < 0 || entry.mode > MODE_BITS) throw writeError('E_TAR_FIELD', `mode 0${entry.mode.toString(8)} is not within 07777`, { field: 'mode' });
    checkId(entry.uid, 'uid');
    checkId(entry.gid, 'gid');

    const records: Array<[string, Buffer | string]> = [];
    let binary = false;
    const addName = (key: string, bytes: Buffer): void => {
      if (!isValidUtf8(bytes)) binary = true;
      records.push([key, bytes]);
    };

    // Size and sparse map.
    const size = entry.type === 'file' ? entry.size ?? (Buffer.isBuffer(data) ? data.length : 0) : 0;
    if (!Number.isSafeInteger(size) || size < 0) throw writeError('E_TAR_SIZE', `size ${size} is not a non-negative safe integer`);
    let segments: SparseSegment[] | undefined;
    let map: Buffer | undefined;
    let dataBytes = size;
    if (entry.sparse) {
      if (entry.type !== 'file') throw writeError('E_TAR_SPARSE', `a ${entry.type} cannot be sparse`);
      const norm = normalizeSparseSegments(entry.sparse, size);
      if (typeof norm === 'string') throw writeError('E_TAR_SPARSE', norm);
      segments = norm;
      map = encodeSparseMap(segments);
      dataBytes = segments.reduce((a, s) => a + s.length, 0);
    } else if (entry.type !== 'file' && data !== undefined && !(Buffer.isBuffer(data) && data.length === 0)) {
      throw writeError('E_TAR_SIZE', `a ${entry.type} has no data`);
    }
    const storedSize = (map?.length ?? 0) + (segments ? storedBytes(segments) : dataBytes);

    // Name: ustar name/prefix when it fits and is ASCII, else a PAX record (GNU.sparse.name for sparse 1.0).
    let ustarName: { name: Buffer; prefix: Buffer };
    if (segments) {
      records.push([PAX_KEY.sparseMajor, '1'], [PAX_KEY.sparseMinor, '0']);
      addName(PAX_KEY.sparseName, path);
      records.push([PAX_KEY.sparseRealsize, String(size)]);
      // sparse.c: "%d/GNUSparseFile.%p/%f"; a pre-PAX reader extracts the stored form there.
      ustarName = { name: placeholder(Buffer.concat([Buffer.from('./GNUSparseFile.0/'), basename(path)]), USTAR_HEADER.name.length), prefix: EMPTY };
    } else {
      const split = isAscii(path) ? splitUstarName(path) : null;
      if (split) ustarName = split;
      else {
        addName(PAX_KEY.path, path);
        ustarName = { name: placeholder(path, USTAR_HEADER.name.length), prefix: EMPTY };
      }
    }

    // Link target.
    let linkname: Buffer = EMPTY;
    if (entry.type === 'symlink' || entry.type === 'hardlink') {
      if (entry.linkTarget === undefined) throw writeError('E_TAR_FIELD', `a ${entry.type} needs linkTarget`);
      const target = toBytes(entry.linkTarget);
      if (entry.type === 'hardlink') checkArchivePath(target, 'hard link target');
      else if (target.length === 0 || target.includes(0)) throw writeError('E_TAR_PATH', 'symlink target is empty or holds a NUL byte');
      if (target.length <= USTAR_HEADER.linkname.length && isAscii(target)) linkname = target;
      else {
        addName(PAX_KEY.linkpath, target);
        linkname = placeholder(target, USTAR_HEADER.linkname.length);
      }
    } else if (entry.linkTarget !== undefined) throw writeError('E_TAR_FIELD', `a ${entry.type} has no linkTarget`);

    let ustarSize = storedSize;
    if (storedSize > OCTAL_MAX[12]) {
      records.push([PAX_KEY.size, String(storedSize)]);
      ustarSize = 0;
    }
    const ids = { uid: entry.uid, gid: entry.gid };
    for (const k of ['uid', 'gid'] as const) {
      if (ids[k] > OCTAL_MAX[8]) {
        records.push([PAX_KEY[k], String(ids[k])]);
        ids[k] = 0;
      }
    }
    const owner: { uname: Buffer; gname: Buffer } = { uname: EMPTY, gname: EMPTY };
    for (const k of ['uname', 'gname'] as const) {
      const v = entry[k];
      if (v === undefined) continue;
      const b = toBytes(v);
      if (b.includes(0)) throw writeError('E_TAR_FIELD', `${k} holds a NUL byte`);
      if (b.length < USTAR_HEADER[k].length && isAscii(b)) owner[k] = b;
      else {
        addName(PAX_KEY[k], b);
        owner[k] = placeholder(b, USTAR_HEADER[k].length - 1);
      }
    }
    const mt = ustarSeconds(entry.mtimeNs);
    if (!mt.inRange || entry.mtimeNs % 1_000_000_000n !== 0n) records.push([PAX_KEY.mtime, formatPaxTime(entry.mtimeNs)]);
    if (entry.atimeNs !== undefined) records.push([PAX_KEY.atime, formatPaxTime(entry.atimeNs)]);
    if (entry.ctimeNs !== undefined) records.push([PAX_KEY.ctime, formatPaxTime(entry.ctimeNs)]);
    for (const [name, value] of entry.xattrs ?? []) {
      if (name.length === 0 || name.includes('\0') || name.includes('\n')) throw writeError('E_TAR_FIELD', `xattr name ${JSON.stringify(name)} is empty or holds NUL or a newline`);
      records.push([encodeXattrKeyword(name), value]);
    }
    for (const [key, value] of entry.pax ?? []) {
      if (key.length === 0 || key.includes('=') || key.includes('\n') || key.includes('\0')) throw writeError('E_TAR_FIELD', `pax keyword ${JSON.stringify(key)} is empty or holds '=', NUL or a newline`);
      records.push([key, value]);
    }
    if (binary) records.unshift([PAX_KEY.hdrcharset, HDRCHARSET_BINARY]);

    let devmajor = 0;
    let devminor = 0;
    if (entry.type === 'chardev' || entry.type === 'blockdev') {
      devmajor = entry.devMajor ?? 0;
      devminor = entry.devMinor ?? 0;
      for (const [f, v] of [['devMajor', devmajor], ['devMinor', devminor]] as const) {
        // GNU tar 1.34 has no PAX keyword for device numbers; the octal field is all there is.
        if (!Number.isInteger(v) || v < 0 || v > OCTAL_MAX[8]) throw writeError('E_TAR_FIELD', `${f} ${v} does not fit the ustar field (max 07777777)`, { field: f });
      }
    }

    const headerOffset = this.offset;
    if (records.length > 0) {
      const pax = encodePaxRecords(records);
      if (pax.length > PAX_LIMITS.maxHeaderBytes) throw writeError('E_TAR_FIELD', `extended header of ${pax.length} bytes exceeds the reader's limit of ${PAX_LIMITS.maxHeaderBytes}`);
      const xname = placeholder(Buffer.concat([PAX_HEADERS_DIR, basename(path)]), USTAR_HEADER.name.length);
      // a promise only when something had to be written (see stage): no await, no microtask, otherwise
      let w = this.stage(encodeHeader({ ...emptyFields(), name: xname, mode: 0o644, size: pax.length, mtime: mt.sec, typeflag: TYPEFLAG.XHDTYPE }, this.headerBlock));
      if (w) await w;
      w = this.stage(pax);
      if (w) await w;
      w = this.pad(pax.length);
      if (w) await w;
    }
    const header = this.stage(
      encodeHeader(
        {
          name: ustarName.name,
          prefix: ustarName.prefix,
          mode: entry.mode,
          uid: ids.uid,
          gid: ids.gid,
          size: ustarSize,
          mtime: mt.sec,
          typeflag: segments ? TYPEFLAG.REGTYPE : typeflag,
          linkname,
          uname: owner.uname,
          gname: owner.gname,
          devmajor,
          devminor,
        },
        this.headerBlock,
      ),
    );
    if (header) await header;
    const dataOffset = this.offset;
    const staged = map ? this.stage(map) : undefined;
    if (staged) await staged;
    if (entry.type === 'file') await this.copyData(data, dataBytes, path, segments);
    const padded = segments ? undefined : this.pad(storedSize);
    if (padded) await padded;
    return { headerOffset, dataOffset, storedSize };
  }

  /** Copies exactly `expected` bytes; for sparse, each segment's bytes are padded to a block. */
  private async copyData(data: AsyncIterable<Buffer> | Buffer | undefined, expected: number, path: Buffer, segments?: SparseSegment[]): Promise<void> {
    const wrong = (got: string): SnapferryError => {
      const shown = path.toString('latin1').slice(0, 200);
      return writeError('E_TAR_SIZE', `${shown}: data delivered ${got} bytes, the entry declares ${expected}`, { path: shown, expected });
    };
    if (data === undefined) {
      if (expected !== 0) throw wrong('0');
      return;
    }
    if (Buffer.isBuffer(data)) {
      if (data.length !== expected) throw wrong(String(data.length));
      if (!segments) {
        // the common case, a whole small file: no iteration
        const p = this.stage(data);
        if (p) await p;
        return;
      }
    }
    // Segment boundaries within the delivered bytes (one boundary at `expected` when not sparse).
    const ends: number[] = [];
    let acc = 0;
    for (const s of segments ?? [{ offset: 0, length: expected }]) {
      acc += s.length;
      ends.push(acc);
    }
    let seg = 0;
    let got = 0;
    const source: Iterable<Buffer> | AsyncIterable<Buffer> = Buffer.isBuffer(data) ? [data] : data;
    for await (const chunk of source) {
      if (got + chunk.length > expected) throw wrong(`more than ${expected}`);
      let p = 0;
      while (p < chunk.length) {
        while (ends[seg]! === got) seg++;
        const take = Math.min(chunk.length - p, ends[seg]! - got);
        const staged = this.stage(p === 0 && take === chunk.length ? chunk : chunk.subarray(p, p + take));
        if (staged) await staged;
        p += take;
        got += take;
        if (segments && got === ends[seg]) {
          const padded = this.pad(segments[seg]!.length);
          if (padded) await padded;
        }
      }
    }
    if (got !== expected) throw wrong(String(got));
  }

  /** Zeros up to the next block boundary after `n` bytes; a promise only when something had to be written. */
  private pad(n: number): Promise<void> | undefined {
    const rem = padToBlock(n) - n;
    return rem === 0 ? undefined : this.stage(ZERO_BLOCK.subarray(0, rem));
  }

  /**
   * Appends bytes to the stream: copied into the staging buffer when they fit (the caller may
   * reuse its chunk once we return), a large chunk written straight through after a flush. A
   * promise only when something had to be written (most calls just copy: no promise is made).
   */
  private stage(bytes: Buffer): Promise<void> | undefined {
    if (bytes.length <= STAGING_BYTES - this.staged) {
      this.offset += bytes.length;
      bytes.copy(this.staging, this.staged);
      this.staged += bytes.length;
      return this.staged === STAGING_BYTES ? this.flush() : undefined;
    }
    return this.stageLarge(bytes);
  }

  private async stageLarge(bytes: Buffer): Promise<void> {
    this.offset += bytes.length;
    await this.flush();
    if (bytes.length >= STAGING_BYTES / 2) {
      await this.sink.write(bytes);
      return;
    }
    bytes.copy(this.staging, 0);
    this.staged = bytes.length;
  }

  private async flush(): Promise<void> {
    if (this.staged === 0) return;
    const out = this.staging.subarray(0, this.staged);
    // The same staging buffer again once the write resolves: a ByteSink is done with a chunk by then
    // (archive/types.ts). A fresh one per flush was ~1 GB of garbage for a 1.1 GB backup of small files.
    this.staged = 0;
    await this.sink.write(out);
  }
}

const ZERO_BLOCK = Buffer.alloc(BLOCK_SIZE);
const PAX_HEADERS_DIR = Buffer.from('./PaxHeaders/');

function emptyFields(): UstarFields {
  const none = EMPTY;
  return { name: none, mode: 0, uid: 0, gid: 0, size: 0, mtime: 0, typeflag: TYPEFLAG.REGTYPE, linkname: none, uname: none, gname: none, devmajor: 0, devminor: 0, prefix: none };
}
