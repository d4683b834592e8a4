/**
 * Restore identities arrive on the SSH session's stdin for one command and never rest on the
 * appliance: they are read into a Buffer (never a JavaScript string, which cannot be wiped and may
 * be copied by the engine), decoded byte by byte, turned into node:crypto KeyObjects, and every
 * Buffer that held key material is zeroed before the command goes on. Nothing here writes, logs or
 * puts a key in an error message.
 *
 * The KeyObject's copy lives in OpenSSL's memory and is freed (OpenSSL clears X25519 private keys
 * when it frees them) when the object is collected; that copy is what decryption needs.
 */
import { createPrivateKey, createPublicKey } from 'node:crypto';
import { readSync } from 'node:fs';
import { AgeKeyError, type X25519Identity } from '../archive/age/keys.js';
import { BoundExceededError } from '../util/errors.js';

/** An age-keygen file is ~190 bytes per key; 64 KiB is hundreds of keys. */
export const MAX_IDENTITY_BYTES = 64 * 1024;

/** RFC 8410 PKCS#8 prefix for a raw X25519 private key (as keys.ts uses). */
const PKCS8_X25519_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex');
const CHARSET = 'qpzry9x8gf2tvdw0s3jn54khce6mua7l';
const GENERATOR = [0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3];
const HRP = 'age-secret-key-';

/** Reads all of fd (stdin) into one Buffer, at most `max` bytes; intermediate buffers are zeroed. */
export function readSecret(fd = 0, max = MAX_IDENTITY_BYTES): Buffer {
  const out = Buffer.alloc(max + 1);
  let got = 0;
  for (;;) {
    let n: number;
    try {
      n = readSync(fd, out, got, out.length - got, null);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EAGAIN') continue;
      if ((e as NodeJS.ErrnoException).code === 'EOF') break;
      out.fill(0);
      throw e;
    }
    if (n === 0) break;
    got += n;
    if (got > max) {
      out.fill(0);
      throw new BoundExceededError('identity', 'bytes', got, max, { source: 'stdin' });
    }
  }
  // the caller zeroes this view, which is the same memory as `out`
  return out.subarray(0, got);
}

function polymodStep(chk: number, v: number): number {
  const top = chk >>> 25;
  chk = ((chk & 0x1ffffff) << 5) ^ v;
  for (let i = 0; i < 5; i++) if ((top >>> i) & 1) chk ^= GENERATOR[i]!;
  return chk >>> 0;
}

/** Decodes one "AGE-SECRET-KEY-1..." line (bytes) into its 32-byte key; the result must be zeroed. */
function decodeSecretKeyLine(line: Buffer): Buffer {
  if (line.length < HRP.length + 1 + 6 || line.length > 1024) throw new AgeKeyError('identity: not an AGE-SECRET-KEY-1... line');
  const lower = (c: number): number => (c >= 0x41 && c <= 0x5a ? c + 32 : c);
  let upper = false;
  let low = false;
  for (const c of line) {
    if (c >= 0x41 && c <= 0x5a) upper = true;
    if (c >= 0x61 && c <= 0x7a) low = true;
  }
  if (upper && low) throw new AgeKeyError('identity: mixed-case Bech32');
  for (let i = 0; i < HRP.length; i++) if (lower(line[i]!) !== HRP.charCodeAt(i)) throw new AgeKeyError('identity: not an AGE-SECRET-KEY-1... X25519 identity');
  if (line[HRP.length] !== 0x31) throw new AgeKeyError('identity: not Bech32');
  let chk = 1;
  for (let i = 0; i < HRP.length; i++) chk = polymodStep(chk, HRP.charCodeAt(i) >>> 5);
  chk = polymodStep(chk, 0);
  for (let i = 0; i < HRP.length; i++) chk = polymodStep(chk, HRP.charCodeAt(i) & 31);
  const nData = line.length - HRP.length - 1;
  const values = new Uint8Array(nData);
  try {
    for (let i = 0; i < nData; i++) {
      const v = CHARSET.indexOf(String.fromCharCode(lower(line[HRP.length + 1 + i]!)));
      if (v < 0) throw new AgeKeyError('identity: invalid Bech32 character');
      values[i] = v;
      chk = polymodStep(chk, v);
    }
    if (chk !== 1) throw new AgeKeyError('identity: Bech32 checksum mismatch');
    const words = nData - 6;
    const key = Buffer.alloc(Math.floor((words * 5) / 8));
    let acc = 0;
    let bits = 0;
    let k = 0;
    for (let i = 0; i < words; i++) {
      acc = ((acc << 5) | values[i]!) & 0xfff;
      bits += 5;
      if (bits >= 8) {
        bits -= 8;
        key[k++] = (acc >>> bits) & 0xff;
      }
    }
    acc = 0;
    if (bits >= 5 || key.length !== 32) {
      key.fill(0);
      throw new AgeKeyError(`identity: ${key.length} bytes, not 32`);
    }
    return key;
  } finally {
    values.fill(0);
  }
}

/**
 * The identities of an age-keygen file held in `secret` (one AGE-SECRET-KEY-1 per line, '#'
 * comments, blank lines). `secret` is zeroed before this returns, whatever happens.
 */
export function identitiesFromSecret(secret: Buffer): X25519Identity[] {
  const ids: X25519Identity[] = [];
  try {
    let start = 0;
    while (start <= secret.length) {
      let end = secret.indexOf(0x0a, start);
      if (end < 0) end = secret.length;
      let a = start;
      let b = end;
      while (a < b && (secret[a] === 0x20 || secret[a] === 0x09 || secret[a] === 0x0d)) a++;
      while (b > a && (secret[b - 1] === 0x20 || secret[b - 1] === 0x09 || secret[b - 1] === 0x0d)) b--;
      if (b > a && secret[a] !== 0x23) {
        const key = decodeSecretKeyLine(secret.subarray(a, b));
        const der = Buffer.alloc(PKCS8_X25519_PREFIX.length + 32);
        PKCS8_X25519_PREFIX.copy(der);
        key.copy(der, PKCS8_X25519_PREFIX.length);
        key.fill(0);
        try {
          const privateKey = createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
          const spki = createPublicKey(privateKey).export({ format: 'der', type: 'spki' });
          ids.push({ privateKey, publicRaw: spki.subarray(spki.length - 32) });
        } finally {
          der.fill(0);
        }
      }
      start = end + 1;
    }
  } finally {
    secret.fill(0);
  }
  if (ids.length === 0) throw new AgeKeyError('identity (stdin): no AGE-SECRET-KEY-1 line');
  return ids;
}
