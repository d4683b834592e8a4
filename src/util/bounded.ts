/**
 * Bounded reads of on-disk fields (qemu's habit: every count or size is checked against a limit
 * before it is used, and the error names the field). Parsers read little-endian fields through
 * these so that a 64-bit value past 2^53 is an error, not a silently wrong number.
 */
import { BoundExceededError, CorruptStructureError, TruncatedError, type ErrorData } from './errors.js';

/** Throws BoundExceededError unless 0 <= value <= limit. */
export function checkBound(structure: string, field: string, value: number | bigint, limit: number | bigint, extra?: ErrorData): void {
  if (value < 0 || value > limit) throw new BoundExceededError(structure, field, value, limit, extra);
}

/** Throws unless [offset, offset+length) lies within a container of `size` bytes. */
export function checkWithin(what: string, offset: number, length: number, size: number, extra?: ErrorData): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > size) {
    throw new TruncatedError(what, offset, length, size, extra);
  }
}

/** Reads an unsigned 64-bit little-endian field as a number; past 2^53 - 1 it is corrupt for us. */
export function readU64(buf: Buffer, offset: number, structure: string, field: string): number {
  const v = buf.readBigUInt64LE(offset);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new BoundExceededError(structure, field, v, Number.MAX_SAFE_INTEGER);
  return Number(v);
}

/** Reads a signed 64-bit little-endian field as a number, with the same 2^53 bound on its magnitude. */
export function readI64(buf: Buffer, offset: number, structure: string, field: string): number {
  const v = buf.readBigInt64LE(offset);
  const max = BigInt(Number.MAX_SAFE_INTEGER);
  if (v > max || v < -max) throw new BoundExceededError(structure, field, v, Number.MAX_SAFE_INTEGER);
  return Number(v);
}

/** a * b, refusing a product past 2^53 - 1 (sector counts times sector sizes, grain counts ...). */
export function safeMul(a: number, b: number, structure: string, field: string): number {
  const p = a * b;
  if (!Number.isSafeInteger(p)) throw new BoundExceededError(structure, field, BigInt(a) * BigInt(b), Number.MAX_SAFE_INTEGER);
  return p;
}

/** Asserts a structural fact, naming the structure and field on failure. */
export function expectField(ok: boolean, code: string, structure: string, field: string, message: string, data: ErrorData = {}): asserts ok {
  if (!ok) throw new CorruptStructureError(code, `${structure}.${field}: ${message}`, { structure, field, ...data });
}

export const KiB = 1024;
export const MiB = 1024 * KiB;
export const GiB = 1024 * MiB;
export const TiB = 1024 * GiB;
