/**
 * age X25519 keys and the X25519 recipient stanza (C2SP age.md, "The X25519 recipient type"), on
 * node:crypto only: keys are raw 32-byte values encoded in Bech32 (BIP 173, not Bech32m) with the
 * HRP "age" (recipients) or "AGE-SECRET-KEY-" (identities, printed upper-case).
 *
 * Key material stays in KeyObjects or short-lived Buffers that are zeroed after use; no error
 * message carries a key.
 */
import { createCipheriv, createDecipheriv, createPrivateKey, createPublicKey, diffieHellman, generateKeyPairSync, hkdfSync, type KeyObject } from 'node:crypto';
import { ExitCode, SnapferryError } from '../../util/errors.js';
import { encodeBase64, decodeBase64Strict, headerError, X25519_BODY_SIZE, X25519_INFO, X25519_SHARE_SIZE, X25519_STANZA_TYPE, FILE_KEY_SIZE, type Stanza } from './structs.js';

/** A recipient or identity string we cannot use (the user's input, so a usage error). */
export class AgeKeyError extends SnapferryError {
  constructor(message: string, data: Record<string, string | number> = {}) {
    super('E_AGE_KEY', message, data, ExitCode.usage);
  }
}

const CHARSET = 'qpzry9x8gf2tvdw0s3jn54khce6mua7l';
const GENERATOR = [0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3];

function polymod(values: number[]): number {
  let chk = 1;
  for (const v of values) {
    const top = chk >>> 25;
    chk = ((chk & 0x1ffffff) << 5) ^ v;
    for (let i = 0; i < 5; i++) if ((top >>> i) & 1) chk ^= GENERATOR[i]!;
  }
  return chk >>> 0;
}

function hrpExpand(hrp: string): number[] {
  const out: number[] = [];
  for (let i = 0; i < hrp.length; i++) out.push(hrp.charCodeAt(i) >>> 5);
  out.push(0);
  for (let i = 0; i < hrp.length; i++) out.push(hrp.charCodeAt(i) & 31);
  return out;
}

/** Bech32 decoding (BIP 173) without its 90-character limit, which age does not apply. */
export function bech32Decode(s: string, what: string): { hrp: string; data: Buffer } {
  if (s !== s.toLowerCase() && s !== s.toUpperCase()) throw new AgeKeyError(`${what}: mixed-case Bech32`);
  const lower = s.toLowerCase();
  const sep = lower.lastIndexOf('1');
  if (sep < 1 || sep + 7 > lower.length) throw new AgeKeyError(`${what}: not Bech32`);
  const hrp = lower.slice(0, sep);
  for (let i = 0; i < hrp.length; i++) {
    const c = hrp.charCodeAt(i);
    if (c < 33 || c > 126) throw new AgeKeyError(`${what}: not Bech32`);
  }
  const values: number[] = [];
  for (const ch of lower.slice(sep + 1)) {
    const v = CHARSET.indexOf(ch);
    if (v < 0) throw new AgeKeyError(`${what}: invalid Bech32 character`);
    values.push(v);
  }
  if (polymod([...hrpExpand(hrp), ...values]) !== 1) throw new AgeKeyError(`${what}: Bech32 checksum mismatch`);
  const words = values.slice(0, -6);
  const bytes: number[] = [];
  let acc = 0;
  let bits = 0;
  for (const w of words) {
    acc = (acc << 5) | w;
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      bytes.push((acc >>> bits) & 0xff);
    }
  }
  if (bits >= 5 || (acc & ((1 << bits) - 1)) !== 0) throw new AgeKeyError(`${what}: invalid Bech32 padding`);
  return { hrp, data: Buffer.from(bytes) };
}

export function bech32Encode(hrp: string, data: Uint8Array): string {
  const words: number[] = [];
  let acc = 0;
  let bits = 0;
  for (const b of data) {
    acc = ((acc << 8) | b) & 0xffff;
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      words.push((acc >>> bits) & 31);
    }
  }
  if (bits > 0) words.push((acc << (5 - bits)) & 31);
  const mod = polymod([...hrpExpand(hrp), ...words, 0, 0, 0, 0, 0, 0]) ^ 1;
  for (let i = 0; i < 6; i++) words.push((mod >>> (5 * (5 - i))) & 31);
  return `${hrp}1${words.map((w) => CHARSET[w]).join('')}`;
}

const PKCS8_X25519_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex');
const SPKI_X25519_PREFIX = Buffer.from('302a300506032b656e032100', 'hex');

function publicKeyFromRaw(raw: Buffer): KeyObject {
  return createPublicKey({ key: Buffer.concat([SPKI_X25519_PREFIX, raw]), format: 'der', type: 'spki' });
}

function rawPublicKey(key: KeyObject): Buffer {
  return key.export({ format: 'der', type: 'spki' }).subarray(SPKI_X25519_PREFIX.length);
}

export interface X25519Recipient {
  readonly publicKey: KeyObject;
  readonly raw: Buffer;
}

export interface X25519Identity {
  readonly privateKey: KeyObject;
  /** The identity's own recipient, for the HKDF salt. */
  readonly publicRaw: Buffer;
}

/** Parses "age1..." (an X25519 recipient). */
export function parseRecipient(s: string): X25519Recipient {
  const { hrp, data } = bech32Decode(s.trim(), 'recipient');
  if (hrp !== 'age') throw new AgeKeyError(`recipient: unsupported type "${hrp}" (only age1... X25519 recipients)`, { hrp });
  if (data.length !== X25519_SHARE_SIZE) throw new AgeKeyError(`recipient: ${data.length} bytes, not 32`);
  return { publicKey: publicKeyFromRaw(data), raw: data };
}

/** Parses "AGE-SECRET-KEY-1..." (an X25519 identity). */
export function parseIdentity(s: string): X25519Identity {
  const { hrp, data } = bech32Decode(s.trim(), 'identity');
  if (hrp !== 'age-secret-key-') throw new AgeKeyError('identity: not an AGE-SECRET-KEY-1... X25519 identity');
  if (data.length !== 32) throw new AgeKeyError(`identity: ${data.length} bytes, not 32`);
  const der = Buffer.concat([PKCS8_X25519_PREFIX, data]);
  data.fill(0);
  const privateKey = createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
  der.fill(0);
  return { privateKey, publicRaw: rawPublicKey(createPublicKey(privateKey)) };
}

/** The identities of an age-keygen key file: one AGE-SECRET-KEY-1 per line, '#' comments, blank lines. */
export function parseIdentityFile(text: string): X25519Identity[] {
  const ids = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map(parseIdentity);
  if (ids.length === 0) throw new AgeKeyError('identity file: no identity');
  return ids;
}

export function hkdf(ikm: Uint8Array, salt: Uint8Array, info: string, length = 32): Buffer {
  return Buffer.from(hkdfSync('sha256', ikm, salt, info, length));
}

const ZERO_NONCE = Buffer.alloc(12);

function sharedSecret(privateKey: KeyObject, publicKey: KeyObject): Buffer {
  let shared: Buffer;
  try {
    shared = diffieHellman({ privateKey, publicKey });
  } catch {
    throw headerError('X25519', 'the ephemeral share is a low-order point');
  }
  if (shared.every((b) => b === 0)) throw headerError('X25519', 'the ephemeral share is a low-order point');
  return shared;
}

/** Wraps the file key for one recipient: "-> X25519 <share>" and the sealed file key. */
export function wrapFileKey(fileKey: Buffer, recipient: X25519Recipient): Stanza {
  const ephemeral = generateKeyPairSync('x25519');
  const share = rawPublicKey(ephemeral.publicKey);
  const shared = sharedSecret(ephemeral.privateKey, recipient.publicKey);
  const wrapKey = hkdf(shared, Buffer.concat([share, recipient.raw]), X25519_INFO);
  shared.fill(0);
  const c = createCipheriv('chacha20-poly1305', wrapKey, ZERO_NONCE, { authTagLength: 16 });
  const body = Buffer.concat([c.update(fileKey), c.final(), c.getAuthTag()]);
  wrapKey.fill(0);
  return { type: X25519_STANZA_TYPE, args: [encodeBase64(share)], body };
}

/**
 * The file key if `stanza` is an X25519 stanza for `identity`, else null (a stanza for someone
 * else fails its tag: that is "not ours", not an error). A malformed X25519 stanza is an error.
 */
export function unwrapFileKey(stanza: Stanza, identity: X25519Identity): Buffer | null {
  if (stanza.type !== X25519_STANZA_TYPE) return null;
  if (stanza.args.length !== 1) throw headerError('X25519', `${stanza.args.length} arguments, not 1`);
  const share = decodeBase64Strict(stanza.args[0]!, 'X25519.share');
  if (share.length !== X25519_SHARE_SIZE) throw headerError('X25519.share', `${share.length} bytes, not ${X25519_SHARE_SIZE}`);
  if (stanza.body.length !== X25519_BODY_SIZE) throw headerError('X25519.body', `${stanza.body.length} bytes, not ${X25519_BODY_SIZE}`);
  const shared = sharedSecret(identity.privateKey, publicKeyFromRaw(share));
  const wrapKey = hkdf(shared, Buffer.concat([share, identity.publicRaw]), X25519_INFO);
  shared.fill(0);
  const d = createDecipheriv('chacha20-poly1305', wrapKey, ZERO_NONCE, { authTagLength: 16 });
  d.setAuthTag(stanza.body.subarray(FILE_KEY_SIZE));
  const fileKey = d.update(stanza.body.subarray(0, FILE_KEY_SIZE));
  try {
    d.final();
    return fileKey;
  } catch {
    fileKey.fill(0);
    return null;
  } finally {
    wrapKey.fill(0);
  }
}

export function noIdentityError(stanzas: number): SnapferryError {
  return new SnapferryError('E_AGE_NO_IDENTITY', `none of the identities opens any of the ${stanzas} recipient stanzas`, { stanzas });
}
