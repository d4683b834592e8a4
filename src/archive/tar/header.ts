/**
 * One ustar header block, encoded and decoded through the declaration in structs.ts.
 * Decoding distrusts the block: checksum first (the error names the offset), then every numeric
 * field is octal (or GNU base-256) and bounded.
 */
import { CorruptStructureError } from '../../util/errors.js';
import { BLOCK_SIZE, GNU_MAGIC, TMAGIC, TVERSION, USTAR_HEADER, type UstarField } from './structs.js';

export interface UstarFields {
  name: Buffer;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  /** Seconds; the octal field holds 0 .. 8^11-1, GNU base-256 more (read only). */
  mtime: number;
  typeflag: string;
  linkname: Buffer;
  uname: Buffer;
  gname: Buffer;
  devmajor: number;
  devminor: number;
  prefix: Buffer;
}

export interface DecodedHeader extends UstarFields {
  /** 'posix' ("ustar\0" "00") or 'gnu' ("ustar  \0": prefix holds GNU fields, not a prefix). */
  magic: 'posix' | 'gnu';
}

function writeOctal(block: Buffer, field: UstarField, value: number): void {
  const { offset, length } = USTAR_HEADER[field];
  if (value < 0 || !Number.isSafeInteger(value) || value >= 8 ** (length - 1)) throw new RangeError(`ustar ${field} ${value} does not fit ${length - 1} octal digits`);
  // the digits written from the right, then '0's up to the field's start (no strings made: two
  // headers per entry, seven numbers each)
  let v = value;
  let i = offset + length - 2;
  for (; i >= offset && v > 0; i--) {
    block[i] = 0x30 + (v % 8);
    v = v < 0x80000000 ? v >>> 3 : Math.floor(v / 8);
  }
  if (i >= offset) block.fill(0x30, offset, i + 1);
  block[offset + length - 1] = 0;
}

function writeBytes(block: Buffer, field: UstarField, value: Buffer): void {
  const { offset, length } = USTAR_HEADER[field];
  if (value.length > length) throw new RangeError(`ustar ${field} of ${value.length} bytes does not fit ${length}`);
  value.copy(block, offset);
}

/** The checksum: the unsigned byte sum with chksum read as 8 spaces. Also the signed sum (old writers). */
export function headerChecksums(block: Buffer): { unsigned: number; signed: number } {
  let unsigned = 0;
  let signed = 0;
  const { offset, length } = USTAR_HEADER.chksum;
  for (let i = 0; i < BLOCK_SIZE; i++) {
    const b = i >= offset && i < offset + length ? 0x20 : block[i]!;
    unsigned += b;
    signed += b > 127 ? b - 256 : b;
  }
  return { unsigned, signed };
}

/**
 * A POSIX ustar block; every field must already fit (the writer decides what goes to PAX). Into
 * `into` when given (cleared first: the writer encodes every header into one scratch block rather
 * than allocating 512 bytes per header, two per entry), else into a new block.
 */
export function encodeHeader(h: UstarFields, into?: Buffer): Buffer {
  const block = into ? into.fill(0, 0, BLOCK_SIZE).subarray(0, BLOCK_SIZE) : Buffer.alloc(BLOCK_SIZE);
  writeBytes(block, 'name', h.name);
  writeOctal(block, 'mode', h.mode);
  writeOctal(block, 'uid', h.uid);
  writeOctal(block, 'gid', h.gid);
  writeOctal(block, 'size', h.size);
  writeOctal(block, 'mtime', h.mtime);
  block.write(h.typeflag, USTAR_HEADER.typeflag.offset, 'latin1');
  writeBytes(block, 'linkname', h.linkname);
  TMAGIC.copy(block, USTAR_HEADER.magic.offset);
  TVERSION.copy(block, USTAR_HEADER.version.offset);
  writeBytes(block, 'uname', h.uname);
  writeBytes(block, 'gname', h.gname);
  writeOctal(block, 'devmajor', h.devmajor);
  writeOctal(block, 'devminor', h.devminor);
  writeBytes(block, 'prefix', h.prefix);
  // "%06o\0 " as GNU tar writes it (POSIX: octal, NUL or space terminated).
  // chksum is still zeros here: the byte sum with it read as 8 spaces is the plain sum + 8 * 0x20
  let sum = 8 * 0x20;
  for (let i = 0; i < BLOCK_SIZE; i++) sum += block[i]!;
  for (let i = USTAR_HEADER.chksum.offset + 5; i >= USTAR_HEADER.chksum.offset; i--, sum >>>= 3) block[i] = 0x30 + (sum & 7);
  block[USTAR_HEADER.chksum.offset + 6] = 0;
  block[USTAR_HEADER.chksum.offset + 7] = 0x20;
  return block;
}

export function isZeroBlock(block: Buffer): boolean {
  for (let i = 0; i < block.length; i++) if (block[i] !== 0) return false;
  return true;
}

function fieldError(field: UstarField, offset: number, message: string): CorruptStructureError {
  return new CorruptStructureError('E_TAR_FIELD', `ustar header at ${offset}: ${field} ${message}`, { structure: 'ustar header', field, offset });
}

/**
 * Octal digits, leading spaces allowed, ended by NUL, space or the field's end (GNU from_header);
 * or GNU base-256: first byte 0x80 (positive) / 0xff (negative, two's complement).
 */
function readNumber(block: Buffer, field: UstarField, headerOffset: number, allowNegative = false): number {
  const { offset, length } = USTAR_HEADER[field];
  const first = block[offset]!;
  if (first === 0x80 || first === 0xff) {
    if (first === 0xff && !allowNegative) throw fieldError(field, headerOffset, 'is negative (base-256)');
    let v = first === 0xff ? -1n : 0n;
    for (let i = 1; i < length; i++) v = (v << 8n) | BigInt(block[offset + i]!);
    if (first === 0xff) v = BigInt.asIntN((length - 1) * 8, v);
    if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < -BigInt(Number.MAX_SAFE_INTEGER)) throw fieldError(field, headerOffset, `base-256 value ${v} is past 2^53`);
    return Number(v);
  }
  let p = offset;
  const end = offset + length;
  while (p < end && block[p] === 0x20) p++;
  let v = 0;
  let digits = 0;
  while (p < end && block[p]! >= 0x30 && block[p]! <= 0x37) {
    v = v * 8 + (block[p]! - 0x30);
    p++;
    digits++;
  }
  if (p < end && block[p] !== 0 && block[p] !== 0x20) throw fieldError(field, headerOffset, `is not octal (byte 0x${block[p]!.toString(16)} at ${p - offset})`);
  if (digits === 0) return 0;
  return v; // at most 11 octal digits: < 2^33, always safe
}

/** The bytes of a string field up to its first NUL. */
function readString(block: Buffer, field: UstarField): Buffer {
  const { offset, length } = USTAR_HEADER[field];
  const raw = block.subarray(offset, offset + length);
  const nul = raw.indexOf(0);
  return Buffer.from(nul < 0 ? raw : raw.subarray(0, nul));
}

/**
 * Decodes a non-zero block at `headerOffset` (the offset names it in errors). Verifies the
 * checksum (E_TAR_CHECKSUM) and the magic (E_TAR_MAGIC: we read ustar, POSIX or GNU, not v7).
 */
export function decodeHeader(block: Buffer, headerOffset: number): DecodedHeader {
  const stored = readNumber(block, 'chksum', headerOffset);
  const { unsigned, signed } = headerChecksums(block);
  if (stored !== unsigned && stored !== signed) {
    throw new CorruptStructureError('E_TAR_CHECKSUM', `ustar header at ${headerOffset}: checksum ${stored} does not match the computed ${unsigned}`, {
      structure: 'ustar header',
      field: 'chksum',
      offset: headerOffset,
      stored,
      computed: unsigned,
    });
  }
  const m = USTAR_HEADER.magic.offset;
  let magic: 'posix' | 'gnu';
  if (block.subarray(m, m + 8).equals(GNU_MAGIC)) magic = 'gnu';
  else if (block.subarray(m, m + 6).equals(TMAGIC)) magic = 'posix';
  else {
    throw new CorruptStructureError('E_TAR_MAGIC', `ustar header at ${headerOffset}: magic is not "ustar"`, { structure: 'ustar header', field: 'magic', offset: headerOffset });
  }
  return {
    magic,
    name: readString(block, 'name'),
    mode: readNumber(block, 'mode', headerOffset),
    uid: readNumber(block, 'uid', headerOffset),
    gid: readNumber(block, 'gid', headerOffset),
    size: readNumber(block, 'size', headerOffset),
    mtime: readNumber(block, 'mtime', headerOffset, true),
    typeflag: String.fromCharCode(block[USTAR_HEADER.typeflag.offset]!),
    linkname: readString(block, 'linkname'),
    uname: readString(block, 'uname'),
    gname: readString(block, 'gname'),
    devmajor: readNumber(block, 'devmajor', headerOffset),
    devminor: readNumber(block, 'devminor', headerOffset),
    prefix: magic === 'posix' ? readString(block, 'prefix') : Buffer.alloc(0),
  };
}

