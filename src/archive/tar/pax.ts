/**
 * PAX extended header records (POSIX.1-2001, pax "Extended Header Format"):
 *
 *   "%d %s=%s\n", <length>, <keyword>, <value>
 *
 * where <length> is the decimal byte count of the whole record, its own digits and the newline
 * included. Values are bytes here, never strings: a path that is not UTF-8 travels as raw bytes
 * with `hdrcharset=BINARY`, an xattr value may hold NUL bytes.
 *
 * Keys we write and read (the ones stock GNU tar 1.34 honours on extraction):
 *   path, linkpath, size, uid, gid, uname, gname, mtime, atime, ctime   (POSIX)
 *   hdrcharset=BINARY                                                   (POSIX)
 *   SCHILY.xattr.<name>                                                 (star / GNU tar --xattrs)
 *   GNU.sparse.major=1, GNU.sparse.minor=0, GNU.sparse.name, GNU.sparse.realsize  (GNU sparse 1.0)
 * Anything else (our SNAPFERRY.* keys) is carried through as an extra record.
 */
import { CorruptStructureError, type ErrorData } from '../../util/errors.js';
import { MiB } from '../../util/bounded.js';
import { isUtf8 } from 'node:buffer';

export const PAX_KEY = {
  path: 'path',
  linkpath: 'linkpath',
  size: 'size',
  uid: 'uid',
  gid: 'gid',
  uname: 'uname',
  gname: 'gname',
  mtime: 'mtime',
  atime: 'atime',
  ctime: 'ctime',
  hdrcharset: 'hdrcharset',
  xattrPrefix: 'SCHILY.xattr.',
  sparseMajor: 'GNU.sparse.major',
  sparseMinor: 'GNU.sparse.minor',
  sparseName: 'GNU.sparse.name',
  sparseRealsize: 'GNU.sparse.realsize',
  /** GNU sparse 0.x keys: recognised only to refuse them by name. */
  sparseMap01: 'GNU.sparse.map',
  sparseNumblocks00: 'GNU.sparse.numblocks',
  sparseSize0x: 'GNU.sparse.size',
} as const;

export const HDRCHARSET_BINARY = 'BINARY';

/**
 * Bounds applied to an extended header before anything is allocated from it. 1 MiB holds a
 * path of 64 KiB plus a few hundred xattrs of 2 KiB; GNU tar's own writer never gets close.
 */
export const PAX_LIMITS = {
  /** Bytes of one 'x' or 'g' header's data (its size field). */
  maxHeaderBytes: 1 * MiB,
  /** Records in one header. */
  maxRecords: 65_536,
  /** Digits of a record's length field (1 MiB has 7). */
  maxLengthDigits: 7,
  /** Characters of a time value ("-12345678901.123456789" and some slack for long fractions). */
  maxTimeChars: 64,
} as const;

export type PaxRecord = [key: string, value: Buffer];

function paxError(field: string, message: string, data: ErrorData = {}): CorruptStructureError {
  return new CorruptStructureError('E_TAR_PAX', `pax extended header.${field}: ${message}`, { structure: 'pax extended header', field, ...data });
}

/** True when `buf` is well-formed UTF-8 (what hdrcharset=BINARY must flag when false): overlongs, surrogates and truncated sequences are not. */
export function isValidUtf8(buf: Buffer): boolean {
  return isUtf8(buf);
}

/** One record; the length counts itself, so it is found by iterating to the fixed point. */
export function encodePaxRecord(key: string, value: Buffer | string): Buffer {
  return encodePaxRecords([[key, value]]);
}

/** The records' bytes, written straight into one buffer (an entry has 3-4 of them: no buffer per record). */
export function encodePaxRecords(records: ReadonlyArray<readonly [string, Buffer | string]>): Buffer {
  const lens: number[] = [];
  let total = 0;
  for (const [key, value] of records) {
    if (key.length === 0 || key.includes('=') || key.includes('\n') || key.includes('\0')) {
      throw new RangeError(`pax keyword ${JSON.stringify(key)} is empty or holds '=', NUL or a newline`);
    }
    const rest = 1 + Buffer.byteLength(key, 'utf8') + 1 + (typeof value === 'string' ? Buffer.byteLength(value, 'utf8') : value.length) + 1; // ' ' key '=' value '\n'
    let len = rest + 1;
    while (String(len).length + rest !== len) len = String(len).length + rest;
    lens.push(len);
    total += len;
  }
  const out = Buffer.allocUnsafe(total);
  let p = 0;
  for (let i = 0; i < records.length; i++) {
    const [key, value] = records[i]!;
    p += out.write(String(lens[i]), p, 'latin1');
    out[p++] = 0x20;
    p += out.write(key, p, 'utf8');
    out[p++] = 0x3d;
    p += typeof value === 'string' ? out.write(value, p, 'utf8') : value.copy(out, p);
    out[p++] = 0x0a;
  }
  return out;
}

/**
 * Parses the data of an 'x' or 'g' header. Bounded: the caller has checked its size against
 * PAX_LIMITS.maxHeaderBytes; each length is checked against what is left before it is used.
 * Values are subarrays of `data` (copy them to keep them past `data`'s life).
 */
export function parsePaxRecords(data: Buffer, headerOffset: number): PaxRecord[] {
  const records: PaxRecord[] = [];
  let pos = 0;
  while (pos < data.length) {
    // Trailing NUL padding inside the size is tolerated (some writers pad records).
    if (data[pos] === 0) {
      for (let i = pos; i < data.length; i++) if (data[i] !== 0) throw paxError('record', 'bytes after NUL padding', { offset: headerOffset, at: pos });
      break;
    }
    if (records.length >= PAX_LIMITS.maxRecords) {
      throw new CorruptStructureError('E_TAR_BOUND', `pax extended header: more than ${PAX_LIMITS.maxRecords} records`, { structure: 'pax extended header', field: 'records', limit: PAX_LIMITS.maxRecords, offset: headerOffset });
    }
    let len = 0;
    let digits = 0;
    let p = pos;
    while (p < data.length && data[p]! >= 0x30 && data[p]! <= 0x39) {
      len = len * 10 + (data[p]! - 0x30);
      p++;
      if (++digits > PAX_LIMITS.maxLengthDigits) throw paxError('length', `more than ${PAX_LIMITS.maxLengthDigits} digits`, { offset: headerOffset, at: pos });
    }
    if (digits === 0 || data[p] !== 0x20) throw paxError('length', 'not a decimal number followed by a space', { offset: headerOffset, at: pos });
    if (len > data.length - pos) throw paxError('length', `record of ${len} bytes runs past the header's ${data.length - pos} remaining bytes`, { offset: headerOffset, at: pos, value: len });
    const end = pos + len;
    if (len < digits + 4 || data[end - 1] !== 0x0a) throw paxError('length', `record of ${len} bytes does not end with a newline`, { offset: headerOffset, at: pos, value: len });
    const keyStart = p + 1;
    const eq = data.indexOf(0x3d, keyStart);
    if (eq < 0 || eq >= end - 1 || eq === keyStart) throw paxError('keyword', "no 'keyword=' in the record", { offset: headerOffset, at: pos });
    const key = data.toString('utf8', keyStart, eq);
    records.push([key, data.subarray(eq + 1, end - 1)]);
    pos = end;
  }
  return records;
}

/** Seconds with 9 fraction digits. Negative values are the exact decimal value, as GNU tar's code_timespec writes and decode_timespec reads them (-1.5 is 1.5 s before the epoch). */
export function formatPaxTime(ns: bigint): string {
  // from the decimal digits (BigInt division made several BigInts per time, three times per entry)
  const neg = ns < 0n;
  const digits = (neg ? -ns : ns).toString().padStart(10, '0');
  return `${neg ? '-' : ''}${digits.slice(0, -9)}.${digits.slice(-9)}`;
}

/** Parses "[-]digits[.digits]" into nanoseconds (fraction digits past 9 are truncated, as GNU tar does). */
export function parsePaxTime(value: Buffer, field: string, headerOffset: number): bigint {
  if (value.length === 0 || value.length > PAX_LIMITS.maxTimeChars) throw paxError(field, `time value of ${value.length} characters`, { offset: headerOffset });
  const s = value.toString('latin1');
  const m = /^(-?)(\d{1,20})(?:\.(\d+))?$/.exec(s);
  if (!m) throw paxError(field, `not a decimal time: ${JSON.stringify(s)}`, { offset: headerOffset });
  const frac = BigInt(((m[3] ?? '') + '000000000').slice(0, 9));
  const v = BigInt(m[2]!) * 1_000_000_000n + frac;
  return m[1] === '-' ? -v : v;
}

/** A non-negative decimal integer value, at most `max`. */
export function parsePaxInteger(value: Buffer, field: string, max: number, headerOffset: number): number {
  const s = value.toString('latin1');
  if (!/^\d{1,16}$/.test(s)) throw paxError(field, `not a decimal integer: ${JSON.stringify(s.slice(0, 40))}`, { offset: headerOffset });
  const n = Number(s);
  if (!Number.isSafeInteger(n) || n > max) {
    throw new CorruptStructureError('E_TAR_BOUND', `pax extended header.${field} = ${s} exceeds the limit of ${max}`, { structure: 'pax extended header', field, value: s, limit: max, offset: headerOffset });
  }
  return n;
}

/**
 * xattr names in SCHILY.xattr.<name> keywords: GNU tar (xheader.c, xattr_encode_keyword) writes
 * '%' as "%25" and '=' as "%3D" so the keyword ends at the first '='; we do the same both ways.
 */
export function encodeXattrKeyword(name: string): string {
  return PAX_KEY.xattrPrefix + name.replace(/%/g, '%25').replace(/=/g, '%3D');
}

export function decodeXattrName(keyword: string): string {
  return keyword.slice(PAX_KEY.xattrPrefix.length).replace(/%(25|3D)/g, (_, c: string) => (c === '25' ? '%' : '='));
}
