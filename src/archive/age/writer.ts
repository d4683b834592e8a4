/**
 * AgeSink: encrypts a byte stream to age v1 for one or more X25519 recipients (C2SP age.md) with
 * node:crypto, so stock `age -d` opens it. A full 64 KiB chunk is held back until more input
 * arrives, because only the final chunk carries the last flag and a final chunk may be full.
 */
import { createCipheriv, createHmac, randomBytes } from 'node:crypto';
import type { ByteSink } from '../types.js';
import { SnapferryError } from '../../util/errors.js';
import { released } from '../../util/reclaim.js';
import { AgeKeyError, hkdf, parseRecipient, wrapFileKey } from './keys.js';
import { CHUNK_SIZE, chunkNonce, encodeHeader, encodeHeaderWithoutMac, ENCRYPTED_CHUNK_SIZE, FILE_KEY_SIZE, HEADER_INFO, PAYLOAD_INFO, PAYLOAD_NONCE_SIZE, TAG_SIZE } from './structs.js';

export interface AgeSinkStats {
  plaintextBytes: number;
  ciphertextBytes: number;
  chunks: number;
}

/** The reused output buffer does not grow past this by doubling (a bigger write gets its own size). */
const MAX_REUSED_OUT = 4 * 1024 * 1024;

export class AgeSink implements ByteSink {
  private prologue: Buffer | null;
  private readonly payloadKey: Buffer;
  private readonly chunk = Buffer.allocUnsafe(CHUNK_SIZE);
  /**
   * The ciphertext of a write, reused by the next one (a ByteSink's write has resolved, so the layer
   * below is done with it): a fresh buffer per write was 1.6 GB of allocations for a 1.9 GB image
   * backup. (What bounds the RSS is util/reclaim.ts; this only allocates less.)
   */
  private out = Buffer.alloc(0);
  private chunkLength = 0;
  private counter = 0;
  private ended = false;
  private plaintextBytes = 0;
  private ciphertextBytes = 0;

  constructor(
    private readonly inner: ByteSink,
    recipients: readonly string[],
  ) {
    if (recipients.length === 0) throw new AgeKeyError('no recipient');
    const parsed = recipients.map(parseRecipient);
    const fileKey = randomBytes(FILE_KEY_SIZE);
    try {
      const macInput = encodeHeaderWithoutMac(parsed.map((r) => wrapFileKey(fileKey, r)));
      const hmacKey = hkdf(fileKey, Buffer.alloc(0), HEADER_INFO);
      const mac = createHmac('sha256', hmacKey).update(macInput).digest();
      hmacKey.fill(0);
      const nonce = randomBytes(PAYLOAD_NONCE_SIZE);
      this.payloadKey = hkdf(fileKey, nonce, PAYLOAD_INFO);
      this.prologue = Buffer.concat([encodeHeader(macInput, mac), nonce]);
    } finally {
      fileKey.fill(0);
    }
  }

  async write(data: Buffer): Promise<void> {
    if (this.ended) throw new SnapferryError('E_AGE_ENDED', 'write after end() on an AgeSink');
    if (data.length === 0) return;
    // Chunks sealed by this write: all but the one left open (it may be the last).
    const sealable = Math.max(0, Math.ceil((this.chunkLength + data.length) / CHUNK_SIZE) - 1);
    const out = this.takePrologue(sealable * ENCRYPTED_CHUNK_SIZE);
    let o = out.length - sealable * ENCRYPTED_CHUNK_SIZE;
    let p = 0;
    while (p < data.length) {
      if (this.chunkLength === CHUNK_SIZE) o = this.seal(false, out, o);
      // a whole chunk with more bytes after it is sealed where it lies (it cannot be the last one)
      if (this.chunkLength === 0 && data.length - p > CHUNK_SIZE) {
        o = this.seal(false, out, o, data.subarray(p, p + CHUNK_SIZE));
        p += CHUNK_SIZE;
        continue;
      }
      const n = Math.min(CHUNK_SIZE - this.chunkLength, data.length - p);
      data.copy(this.chunk, this.chunkLength, p, p + n);
      this.chunkLength += n;
      p += n;
    }
    this.plaintextBytes += data.length;
    if (out.length > 0) await this.emit(out);
  }

  async end(): Promise<void> {
    if (this.ended) throw new SnapferryError('E_AGE_ENDED', 'end() twice on an AgeSink');
    this.ended = true;
    const out = this.takePrologue(this.chunkLength + TAG_SIZE);
    this.seal(true, out, out.length - this.chunkLength - TAG_SIZE);
    this.payloadKey.fill(0);
    await this.emit(out);
    await this.inner.end();
  }

  stats(): AgeSinkStats {
    return { plaintextBytes: this.plaintextBytes, ciphertextBytes: this.ciphertextBytes, chunks: this.counter };
  }

  private takePrologue(extra: number): Buffer {
    const pro = this.prologue;
    this.prologue = null;
    const n = (pro?.length ?? 0) + extra;
    if (this.out.length < n) this.out = Buffer.allocUnsafe(Math.max(n, Math.min(2 * this.out.length, MAX_REUSED_OUT)));
    const out = this.out.subarray(0, n);
    if (pro) pro.copy(out, 0);
    return out;
  }

  private async emit(out: Buffer): Promise<void> {
    this.ciphertextBytes += out.length;
    await this.inner.write(out);
  }

  /**
   * Seals the open chunk, or `whole` (a full chunk of a write, when none is open), into out[o..] as
   * chunk `counter`; returns the offset after it.
   */
  private seal(last: boolean, out: Buffer, o: number, whole?: Buffer): number {
    const c = createCipheriv('chacha20-poly1305', this.payloadKey, chunkNonce(this.counter, last), { authTagLength: TAG_SIZE });
    const body = c.update(whole ?? this.chunk.subarray(0, this.chunkLength));
    c.final();
    o += body.copy(out, o);
    o += c.getAuthTag().copy(out, o);
    released(body.length); // node:crypto has no update-into: each chunk's ciphertext is a fresh buffer
    this.counter++;
    this.chunkLength = 0;
    return o;
  }
}
