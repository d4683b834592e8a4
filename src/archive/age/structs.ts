/**
 * The age v1 file format (C2SP age.md), declared once with the spec's names.
 *
 *   header  = "age-encryption.org/v1" LF
 *             1*stanza
 *             "---" SP 43base64char LF          ; the header MAC
 *   stanza  = "->" 1*(SP argument) LF body       ; argument: 1*VCHAR
 *   body    = *(64base64char LF) 0-63base64char LF   ; always ends with a line shorter than 64
 *   payload = nonce (16 bytes) 1*chunk
 *   chunk   = ChaCha20-Poly1305(payload key, 11-byte BE counter || last flag, <= 64 KiB) ; 16-byte tag
 *
 * Base64 is the standard alphabet without padding, and canonical: we re-encode what we decode and
 * refuse anything that does not round-trip (age.md: "strict" base64).
 */
import { CorruptStructureError, type ErrorData } from '../../util/errors.js';
import { KiB } from '../../util/bounded.js';

export const VERSION_LINE = 'age-encryption.org/v1';
export const STANZA_PREFIX = '->';
export const MAC_PREFIX = '---';
/** Body lines are wrapped at 64 columns; the last one is shorter (possibly empty). */
export const COLUMNS_PER_LINE = 64;

/** The payload: 64 KiB plaintext chunks, each sealed with a 16-byte Poly1305 tag. */
export const CHUNK_SIZE = 64 * KiB;
export const TAG_SIZE = 16;
export const ENCRYPTED_CHUNK_SIZE = CHUNK_SIZE + TAG_SIZE;
/** The payload nonce that salts the payload key's HKDF. */
export const PAYLOAD_NONCE_SIZE = 16;
/** ChaCha20-Poly1305 nonce: 11-byte big-endian chunk counter, then the last-chunk flag byte. */
export const CHUNK_NONCE_SIZE = 12;
export const LAST_CHUNK_FLAG = 0x01;

export const FILE_KEY_SIZE = 16;
export const HEADER_MAC_SIZE = 32;

/** The X25519 recipient stanza: "-> X25519 <ephemeral share>" with a 32-byte body (wrapped file key + tag). */
export const X25519_STANZA_TYPE = 'X25519';
export const X25519_SHARE_SIZE = 32;
export const X25519_BODY_SIZE = FILE_KEY_SIZE + TAG_SIZE;
export const X25519_INFO = 'age-encryption.org/v1/X25519';
export const HEADER_INFO = 'header';
export const PAYLOAD_INFO = 'payload';

/** Our bounds on a hostile header (age itself has none that small; ours hold every real header). */
export const MAX_HEADER_SIZE = 64 * KiB;
export const MAX_STANZAS = 64;
export const MAX_STANZA_ARGS = 16;

export interface Stanza {
  readonly type: string;
  readonly args: readonly string[];
  readonly body: Buffer;
}

export interface AgeHeader {
  readonly stanzas: readonly Stanza[];
  /** Bytes the MAC covers: everything up to and including "---" (not the space). */
  readonly macInput: Buffer;
  readonly mac: Buffer;
  /** Bytes of the header including the MAC line's LF: where the payload nonce begins. */
  readonly length: number;
}

export function headerError(field: string, message: string, data: ErrorData = {}): CorruptStructureError {
  return new CorruptStructureError('E_AGE_HEADER', `age header: ${field}: ${message}`, { structure: 'age_header', field, ...data });
}

const BASE64_CHARS = /^[A-Za-z0-9+/]*$/;

/** Standard base64 without padding. */
export function encodeBase64(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('base64').replace(/=+$/, '');
}

/** Strict decoding: alphabet, no padding, canonical trailing bits (the encoding must round-trip). */
export function decodeBase64Strict(s: string, field: string): Buffer {
  if (!BASE64_CHARS.test(s) || s.length % 4 === 1) throw headerError(field, 'not canonical unpadded base64');
  const b = Buffer.from(s, 'base64');
  if (encodeBase64(b) !== s) throw headerError(field, 'not canonical unpadded base64');
  return b;
}

function isArgument(s: string): boolean {
  if (s.length === 0) return false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x21 || c > 0x7e) return false;
  }
  return true;
}

/** Serialises the stanzas and the "---" mark: the bytes the header MAC covers. */
export function encodeHeaderWithoutMac(stanzas: readonly Stanza[]): Buffer {
  let s = `${VERSION_LINE}\n`;
  for (const st of stanzas) {
    s += `${STANZA_PREFIX} ${[st.type, ...st.args].join(' ')}\n`;
    const body = encodeBase64(st.body);
    for (let i = 0; i + COLUMNS_PER_LINE <= body.length; i += COLUMNS_PER_LINE) s += `${body.slice(i, i + COLUMNS_PER_LINE)}\n`;
    s += `${body.slice(body.length - (body.length % COLUMNS_PER_LINE))}\n`;
  }
  s += MAC_PREFIX;
  return Buffer.from(s, 'latin1');
}

/** The whole header: what encodeHeaderWithoutMac gave, then " <mac>" LF. */
export function encodeHeader(macInput: Buffer, mac: Buffer): Buffer {
  return Buffer.concat([macInput, Buffer.from(` ${encodeBase64(mac)}\n`, 'latin1')]);
}

/**
 * Parses an age header from the first bytes of a file. `complete` says `buf` holds the whole file
 * (so a header running off its end is truncated, not merely unread). Returns null when the header
 * may continue past `buf` and `buf` is still under MAX_HEADER_SIZE: the caller reads more.
 */
export function parseHeader(buf: Buffer, complete = true): AgeHeader | null {
  let pos = 0;
  const line = (field: string): string | null => {
    const limit = Math.min(buf.length, MAX_HEADER_SIZE);
    const nl = buf.indexOf(0x0a, pos);
    if (nl < 0 || nl >= limit) {
      if (!complete && buf.length < MAX_HEADER_SIZE) return null;
      if (buf.length >= MAX_HEADER_SIZE) throw headerError(field, `the header is longer than ${MAX_HEADER_SIZE} bytes`, { limit: MAX_HEADER_SIZE });
      throw headerError(field, `truncated at byte ${pos}: no end of line`, { offset: pos });
    }
    const text = buf.toString('latin1', pos, nl);
    pos = nl + 1;
    return text;
  };
  const version = line('version');
  if (version === null) return null;
  if (version !== VERSION_LINE) throw headerError('version', `the first line is not "${VERSION_LINE}"`);
  const stanzas: Stanza[] = [];
  for (;;) {
    const lineStart = pos;
    const l = line('stanza');
    if (l === null) return null;
    if (l.startsWith(`${MAC_PREFIX} `) || l === MAC_PREFIX) {
      if (stanzas.length === 0) throw headerError('stanza', 'no recipient stanza before the MAC');
      if (!l.startsWith(`${MAC_PREFIX} `)) throw headerError('mac', 'missing MAC');
      const mac = decodeBase64Strict(l.slice(MAC_PREFIX.length + 1), 'mac');
      if (mac.length !== HEADER_MAC_SIZE) throw headerError('mac', `${mac.length} bytes, not ${HEADER_MAC_SIZE}`);
      return { stanzas, macInput: buf.subarray(0, lineStart + MAC_PREFIX.length), mac, length: pos };
    }
    if (!l.startsWith(`${STANZA_PREFIX} `)) throw headerError('stanza', `line at byte ${lineStart} is neither a stanza nor the MAC`, { offset: lineStart });
    if (stanzas.length >= MAX_STANZAS) throw headerError('stanza', `more than ${MAX_STANZAS} stanzas`, { limit: MAX_STANZAS });
    const words = l.slice(STANZA_PREFIX.length + 1).split(' ');
    if (words.length > MAX_STANZA_ARGS + 1) throw headerError('stanza', `more than ${MAX_STANZA_ARGS} arguments`, { offset: lineStart });
    if (!words.every(isArgument)) throw headerError('stanza', `stanza at byte ${lineStart} has an empty or non-printable argument`, { offset: lineStart });
    const bodyLines: string[] = [];
    for (;;) {
      const b = line('body');
      if (b === null) return null;
      if (b.length > COLUMNS_PER_LINE) throw headerError('body', `a body line is longer than ${COLUMNS_PER_LINE} columns`);
      bodyLines.push(b);
      if (b.length < COLUMNS_PER_LINE) break;
    }
    stanzas.push({ type: words[0]!, args: words.slice(1), body: decodeBase64Strict(bodyLines.join(''), 'body') });
  }
}

/** The ChaCha20-Poly1305 nonce of payload chunk `counter`. */
export function chunkNonce(counter: number, last: boolean): Buffer {
  const n = Buffer.alloc(CHUNK_NONCE_SIZE);
  n.writeUIntBE(counter, 5, 6); // bytes 0-4 of the 11-byte counter stay zero below 2^48 chunks
  n[CHUNK_NONCE_SIZE - 1] = last ? LAST_CHUNK_FLAG : 0;
  return n;
}
