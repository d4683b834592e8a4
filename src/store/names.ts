/**
 * Object names. Why so strict: a name becomes a path under the store's root (local dir, SFTP
 * path), so `..`, a leading '/' or a NUL would let a caller (or a catalog read back from the
 * store) escape the root or truncate a path on the server — node-tar's lesson. A name shaped
 * like our temp names would let a caller forge or hide a partial upload.
 */
import { randomBytes } from 'node:crypto';
import { StoreError } from './errors.js';

/** `<name>.partial-<16 hex>` is the temp name of an upload in progress; anything holding the mark is never listed. */
export const PARTIAL_MARK = '.partial-';
const MAX_NAME = 1024;

export function isPartialName(name: string): boolean {
  return name.includes(PARTIAL_MARK);
}

export function partialName(name: string): string {
  return `${name}${PARTIAL_MARK}${randomBytes(8).toString('hex')}`;
}

/** Throws E_STORE_NAME unless `name` is a clean relative key. */
export function checkName(name: string): void {
  const refuse = (why: string): never => {
    throw new StoreError('E_STORE_NAME', `object name ${JSON.stringify(name)} refused: ${why}`, { name, why });
  };
  if (typeof name !== 'string' || name.length === 0) refuse('empty');
  if (name.length > MAX_NAME) refuse(`longer than ${MAX_NAME} characters`);
  if (name.includes('\0')) refuse('contains NUL');
  if (name.includes('\\')) refuse('contains a backslash');
  if (name.startsWith('/')) refuse('absolute (leading /)');
  for (const part of name.split('/')) {
    if (part === '') refuse('empty path component');
    if (part === '..' || part === '.') refuse(`"${part}" path component`);
  }
  if (isPartialName(name)) refuse(`holds "${PARTIAL_MARK}", the mark of a partial upload`);
}

/** The prefix of list(): same characters refused, but it may end in '/' or be empty. */
export function checkPrefix(prefix: string): void {
  if (prefix === '') return;
  checkName(prefix.endsWith('/') ? prefix.slice(0, -1) : prefix);
}

export function checkRange(name: string, offset: number, length: number): void {
  if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < 0) {
    throw new StoreError('E_STORE_RANGE', `${name}: bad range offset=${offset} length=${length}`, { name, offset, length });
  }
}
