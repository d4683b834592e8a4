/**
 * Reading age v1 files: the header (bounded, strict), the file key unwrapped with an X25519
 * identity, the header MAC, and AgeReader, a RandomAccess over the plaintext that fetches and
 * authenticates only the 64 KiB chunks a read touches.
 *
 * The chunk count follows from the file size: every chunk but the last is exactly 64 KiB + 16, and
 * the last is 16..64 KiB + 16 bytes, empty only when the whole payload is (age.md, "Payload").
 */
import { createDecipheriv, createHmac, timingSafeEqual } from 'node:crypto';
import type { RandomAccess } from '../types.js';
import { CorruptStructureError } from '../../util/errors.js';
import { checkWithin, KiB } from '../../util/bounded.js';
import { ByteLru } from '../../util/lru.js';
import { hkdf, noIdentityError, parseIdentity, unwrapFileKey, type X25519Identity } from './keys.js';
import {
  CHUNK_SIZE,
  chunkNonce,
  ENCRYPTED_CHUNK_SIZE,
  HEADER_INFO,
  MAX_HEADER_SIZE,
  PAYLOAD_INFO,
  PAYLOAD_NONCE_SIZE,
  parseHeader,
  TAG_SIZE,
  type AgeHeader,
} from './structs.js';

/** First read of a header; real headers (a few stanzas) fit, a larger one is read to MAX_HEADER_SIZE. */
const FIRST_HEADER_READ = 4 * KiB;

export async function readHeader(ra: RandomAccess): Promise<AgeHeader> {
  let n = Math.min(ra.size, FIRST_HEADER_READ);
  let buf = await ra.read(0, n);
  let header = parseHeader(buf, n === ra.size);
  if (!header) {
    n = Math.min(ra.size, MAX_HEADER_SIZE);
    buf = await ra.read(0, n);
    header = parseHeader(buf, true);
  }
  return header!;
}

/** Unwraps the file key with the first identity that opens a stanza, then checks the header MAC. */
export function unlockHeader(header: AgeHeader, identities: readonly X25519Identity[]): Buffer {
  let fileKey: Buffer | null = null;
  for (const stanza of header.stanzas) {
    for (const id of identities) {
      fileKey = unwrapFileKey(stanza, id);
      if (fileKey) break;
    }
    if (fileKey) break;
  }
  if (!fileKey) throw noIdentityError(header.stanzas.length);
  const hmacKey = hkdf(fileKey, Buffer.alloc(0), HEADER_INFO);
  const mac = createHmac('sha256', hmacKey).update(header.macInput).digest();
  hmacKey.fill(0);
  if (!timingSafeEqual(mac, header.mac)) {
    fileKey.fill(0);
    throw new CorruptStructureError('E_AGE_HEADER_MAC', 'age header: the MAC does not match (the header was altered)', { structure: 'age_header', field: 'mac' });
  }
  return fileKey;
}

export interface AgeReaderOptions {
  /** Byte budget of decrypted chunks kept (1 MiB = 16 chunks). */
  cacheBytes?: number;
}

export interface AgeReaderStats {
  chunksDecrypted: number;
  ciphertextBytesFetched: number;
}

export class AgeReader implements RandomAccess {
  readonly size: number;
  readonly chunks: number;
  readonly payloadOffset: number;
  private readonly cache: ByteLru<number, Buffer>;
  private readonly counters: AgeReaderStats = { chunksDecrypted: 0, ciphertextBytesFetched: 0 };

  private constructor(
    private readonly source: RandomAccess,
    private readonly payloadKey: Buffer,
    header: AgeHeader,
    opts: AgeReaderOptions,
  ) {
    this.payloadOffset = header.length + PAYLOAD_NONCE_SIZE;
    const payload = source.size - this.payloadOffset;
    if (payload < TAG_SIZE) {
      throw new CorruptStructureError('E_AGE_TRUNCATED', `age payload: ${Math.max(0, payload)} bytes after the header, less than one chunk`, { structure: 'age_payload', field: 'chunk', size: source.size });
    }
    this.chunks = Math.ceil(payload / ENCRYPTED_CHUNK_SIZE);
    const lastLength = payload - (this.chunks - 1) * ENCRYPTED_CHUNK_SIZE;
    if (lastLength < TAG_SIZE || (this.chunks > 1 && lastLength === TAG_SIZE)) {
      throw new CorruptStructureError('E_AGE_TRUNCATED', `age payload: final chunk ${this.chunks - 1} is ${lastLength} bytes, too short (truncated or padded file)`, {
        structure: 'age_payload',
        field: 'chunk',
        chunk: this.chunks - 1,
        size: source.size,
      });
    }
    this.size = payload - this.chunks * TAG_SIZE;
    this.cache = new ByteLru<number, Buffer>(opts.cacheBytes ?? 16 * CHUNK_SIZE, (b) => b.length);
  }

  /** Opens `source` with the identities (AGE-SECRET-KEY-1... strings or parsed ones). */
  static async open(source: RandomAccess, identities: readonly (string | X25519Identity)[], opts: AgeReaderOptions = {}): Promise<AgeReader> {
    const ids = identities.map((i) => (typeof i === 'string' ? parseIdentity(i) : i));
    const header = await readHeader(source);
    if (source.size < header.length + PAYLOAD_NONCE_SIZE) {
      throw new CorruptStructureError('E_AGE_TRUNCATED', 'age file ends inside the payload nonce', { structure: 'age_payload', field: 'nonce', size: source.size });
    }
    const fileKey = unlockHeader(header, ids);
    try {
      const nonce = await source.read(header.length, PAYLOAD_NONCE_SIZE);
      return new AgeReader(source, hkdf(fileKey, nonce, PAYLOAD_INFO), header, opts);
    } finally {
      fileKey.fill(0);
    }
  }

  stats(): AgeReaderStats {
    return { ...this.counters };
  }

  async read(offset: number, length: number): Promise<Buffer> {
    checkWithin('age plaintext', offset, length, this.size);
    if (length === 0) return Buffer.alloc(0);
    const first = Math.floor(offset / CHUNK_SIZE);
    const last = Math.floor((offset + length - 1) / CHUNK_SIZE);
    const plain = await this.chunkRange(first, last);
    if (first === last) {
      const start = offset - first * CHUNK_SIZE;
      return plain[0]!.subarray(start, start + length);
    }
    const out = Buffer.allocUnsafe(length);
    let o = 0;
    for (let i = first; i <= last; i++) {
      const c = plain[i - first]!;
      const from = i === first ? offset - first * CHUNK_SIZE : 0;
      const to = i === last ? offset + length - last * CHUNK_SIZE : c.length;
      o += c.copy(out, o, from, to);
    }
    return out;
  }

  /** The whole plaintext, chunk by chunk, every chunk authenticated (verify without holding the file). */
  async *plaintextChunks(): AsyncGenerator<Buffer> {
    for (let i = 0; i < this.chunks; i += 16) {
      const last = Math.min(this.chunks - 1, i + 15);
      for (const c of await this.fetchAndOpen(i, last)) yield c;
    }
  }

  /** Decrypted chunks first..last; fetches one ciphertext span covering those not cached. */
  private async chunkRange(first: number, last: number): Promise<Buffer[]> {
    const out: (Buffer | undefined)[] = [];
    let missFirst = -1;
    let missLast = -1;
    for (let i = first; i <= last; i++) {
      const c = this.cache.get(i);
      out.push(c);
      if (!c) {
        if (missFirst < 0) missFirst = i;
        missLast = i;
      }
    }
    if (missFirst >= 0) {
      const opened = await this.fetchAndOpen(missFirst, missLast);
      for (let i = missFirst; i <= missLast; i++) {
        const c = opened[i - missFirst]!;
        this.cache.set(i, c);
        out[i - first] = c;
      }
    }
    return out as Buffer[];
  }

  private async fetchAndOpen(first: number, last: number): Promise<Buffer[]> {
    const start = this.payloadOffset + first * ENCRYPTED_CHUNK_SIZE;
    const end = Math.min(this.source.size, this.payloadOffset + (last + 1) * ENCRYPTED_CHUNK_SIZE);
    const ct = await this.source.read(start, end - start);
    this.counters.ciphertextBytesFetched += ct.length;
    const out: Buffer[] = [];
    for (let i = first; i <= last; i++) {
      const o = (i - first) * ENCRYPTED_CHUNK_SIZE;
      out.push(this.open(i, ct.subarray(o, Math.min(ct.length, o + ENCRYPTED_CHUNK_SIZE)), start + o));
    }
    return out;
  }

  /** Authenticates and decrypts chunk `index` (found at `fileOffset`). */
  private open(index: number, sealed: Buffer, fileOffset: number): Buffer {
    const last = index === this.chunks - 1;
    const plain = tryOpen(this.payloadKey, index, last, sealed);
    if (plain) {
      this.counters.chunksDecrypted++;
      return plain;
    }
    // Which flag would open it tells a cut or extended file from a damaged chunk.
    if (tryOpen(this.payloadKey, index, !last, sealed)) {
      throw new CorruptStructureError(
        'E_AGE_TRUNCATED',
        last
          ? `age payload: final chunk ${index} at offset ${fileOffset} is not marked last: the file was truncated at a chunk boundary`
          : `age payload: chunk ${index} at offset ${fileOffset} is marked last but more chunks follow`,
        { structure: 'age_payload', field: 'last_flag', chunk: index, offset: fileOffset },
      );
    }
    throw new CorruptStructureError('E_AGE_CHUNK', `age payload: chunk ${index} at offset ${fileOffset} fails authentication`, {
      structure: 'age_payload',
      field: 'tag',
      chunk: index,
      offset: fileOffset,
    });
  }
}

function tryOpen(key: Buffer, index: number, last: boolean, sealed: Buffer): Buffer | null {
  const d = createDecipheriv('chacha20-poly1305', key, chunkNonce(index, last), { authTagLength: TAG_SIZE });
  d.setAuthTag(sealed.subarray(sealed.length - TAG_SIZE));
  const plain = d.update(sealed.subarray(0, sealed.length - TAG_SIZE));
  try {
    d.final();
    return plain;
  } catch {
    return null;
  }
}

