/**
 * Reading Windows "compact" files (WOF, the Windows Overlay Filter's FILE provider; ntfs-3g's
 * system-compression plugin reads them the same way). Such a file has
 *   - a reparse point IO_REPARSE_TAG_WOF whose data is WOF_EXTERNAL_INFO {Version 1, Provider 2 =
 *     FILE} then FILE_PROVIDER_EXTERNAL_INFO_V1 {Version 1, Algorithm};
 *   - an unnamed $DATA stream that is all hole, whose data_size is the uncompressed size;
 *   - a named $DATA stream "WofCompressedData": a chunk offset table, then the chunks.
 * The file is cut into chunks of 4/8/16 KiB (XPRESS) or 32 KiB (LZX), the last one shorter. The
 * table has one entry per chunk but the first (u32, or u64 when the uncompressed size is 4 GiB or
 * more): where that chunk starts, counted from the end of the table; a chunk ends where the next
 * starts, the last one at the end of the stream. A chunk whose stored size equals its
 * uncompressed size is stored raw.
 *
 * Nothing read from disk is trusted: the chunk count comes from the uncompressed size, the table
 * must fit in the stream, offsets must increase and stay inside it, a chunk may not be stored in
 * more bytes than it decompresses to, and a decoder must produce exactly the chunk's size;
 * otherwise E_NTFS_WOF_CORRUPT names the MFT record and the chunk.
 */
import { CorruptStructureError, SnapferryError, UnsupportedError } from '../../../util/errors.js';
import { ByteLru } from '../../../util/lru.js';
import { KiB, MiB } from '../../../util/bounded.js';
import {
  IO_REPARSE_TAG_WOF, REPARSE_POINT, WOF_EXTERNAL_INFO, WOF_CURRENT_VERSION, WOF_PROVIDER_FILE, WOF_PROVIDER_WIM,
  FILE_PROVIDER_EXTERNAL_INFO_V1, FILE_PROVIDER_CURRENT_VERSION, FILE_PROVIDER_COMPRESSION, WOF_COMPRESSED_DATA_STREAM,
} from '../structs.js';
import { XpressDecoder } from './xpress.js';
import { LzxDecoder } from './lzx.js';

export { WOF_COMPRESSED_DATA_STREAM };

export type WofAlgorithm = 'XPRESS4K' | 'LZX' | 'XPRESS8K' | 'XPRESS16K';

export interface WofFormat {
  algorithm: WofAlgorithm;
  /** FILE_PROVIDER_EXTERNAL_INFO_V1.Algorithm as stored. */
  algorithmId: number;
  chunkSize: number;
}

/** What the reader needs of the WofCompressedData stream (an AttrStream, or a Buffer in tests). */
export interface WofStoredStream {
  readonly size: number;
  read(offset: number, length: number): Promise<Buffer>;
}

const FORMATS: Record<number, WofFormat> = {
  [FILE_PROVIDER_COMPRESSION.XPRESS4K]: { algorithm: 'XPRESS4K', algorithmId: FILE_PROVIDER_COMPRESSION.XPRESS4K, chunkSize: 4 * KiB },
  [FILE_PROVIDER_COMPRESSION.LZX]: { algorithm: 'LZX', algorithmId: FILE_PROVIDER_COMPRESSION.LZX, chunkSize: 32 * KiB },
  [FILE_PROVIDER_COMPRESSION.XPRESS8K]: { algorithm: 'XPRESS8K', algorithmId: FILE_PROVIDER_COMPRESSION.XPRESS8K, chunkSize: 8 * KiB },
  [FILE_PROVIDER_COMPRESSION.XPRESS16K]: { algorithm: 'XPRESS16K', algorithmId: FILE_PROVIDER_COMPRESSION.XPRESS16K, chunkSize: 16 * KiB },
};

/** Parses a WOF reparse point ($REPARSE_POINT value); anything but a FILE provider v1 with a known algorithm is E_NTFS_WOF. */
export function parseWofReparse(v: Buffer, record: number): WofFormat {
  const unsupported = (why: string, data: Record<string, number> = {}) =>
    new UnsupportedError('E_NTFS_WOF', `MFT record ${record} is WOF-compressed (Windows "compact") but ${why}`, { record, reparseTag: IO_REPARSE_TAG_WOF, ...data });
  const need = REPARSE_POINT.reparse_data + WOF_EXTERNAL_INFO.SIZE + FILE_PROVIDER_EXTERNAL_INFO_V1.SIZE;
  if (v.length < REPARSE_POINT.SIZE || v.readUInt32LE(REPARSE_POINT.reparse_tag) !== IO_REPARSE_TAG_WOF) throw unsupported('its reparse point is not IO_REPARSE_TAG_WOF');
  if (v.length < REPARSE_POINT.reparse_data + WOF_EXTERNAL_INFO.SIZE) throw unsupported(`its reparse data is ${v.length} bytes, too short for WOF_EXTERNAL_INFO`, { length: v.length });
  const wof = REPARSE_POINT.reparse_data;
  const version = v.readUInt32LE(wof + WOF_EXTERNAL_INFO.Version);
  const provider = v.readUInt32LE(wof + WOF_EXTERNAL_INFO.Provider);
  if (version !== WOF_CURRENT_VERSION) throw unsupported(`WOF_EXTERNAL_INFO.Version ${version} is not ${WOF_CURRENT_VERSION}`, { version });
  if (provider === WOF_PROVIDER_WIM) throw unsupported('its data lives in a WIM file (WIMBoot, provider 1), not in the volume', { provider });
  if (provider !== WOF_PROVIDER_FILE) throw unsupported(`WOF_EXTERNAL_INFO.Provider ${provider} is not the FILE provider (2)`, { provider });
  if (v.length < need) throw unsupported(`its reparse data is ${v.length} bytes, too short for FILE_PROVIDER_EXTERNAL_INFO_V1`, { length: v.length });
  const file = wof + WOF_EXTERNAL_INFO.SIZE;
  const fversion = v.readUInt32LE(file + FILE_PROVIDER_EXTERNAL_INFO_V1.Version);
  const algorithm = v.readUInt32LE(file + FILE_PROVIDER_EXTERNAL_INFO_V1.Algorithm);
  if (fversion !== FILE_PROVIDER_CURRENT_VERSION) throw unsupported(`FILE_PROVIDER_EXTERNAL_INFO_V1.Version ${fversion} is not ${FILE_PROVIDER_CURRENT_VERSION}`, { version: fversion });
  const format = FORMATS[algorithm];
  if (!format) throw unsupported(`its algorithm ${algorithm} is none of XPRESS4K (0), LZX (1), XPRESS8K (2), XPRESS16K (3)`, { algorithm });
  return format;
}

/** Decompressed chunks kept per file: a sequential reader of small pieces decodes each chunk once. */
export const WOF_CHUNK_CACHE_BYTES = 1 * MiB;
/** Chunks fetched from disk in one stream read (bounds the stored bytes held at once to 2 MiB). */
const CHUNKS_PER_BATCH = 64;

let xpress: XpressDecoder | undefined;
let lzx: LzxDecoder | undefined;

export class WofReader {
  readonly chunkCount: number;
  /** Bytes of one chunk offset table entry: 4, or 8 when the file is 4 GiB or more. */
  readonly entrySize: number;
  readonly tableSize: number;
  private readonly cache: ByteLru<number, Buffer>;

  constructor(
    readonly record: number,
    readonly format: WofFormat,
    /** The unnamed $DATA stream's data_size. */
    readonly size: number,
    private readonly stored: WofStoredStream,
    cacheBytes = WOF_CHUNK_CACHE_BYTES,
  ) {
    this.chunkCount = Math.ceil(size / format.chunkSize);
    this.entrySize = size >= 2 ** 32 ? 8 : 4;
    this.tableSize = Math.max(0, this.chunkCount - 1) * this.entrySize;
    if (this.tableSize > stored.size) {
      throw this.corrupt(0, `its chunk table (${this.chunkCount - 1} entries of ${this.entrySize} bytes for ${size} bytes) does not fit the ${stored.size}-byte stream`, { field: 'chunk table', value: this.tableSize, limit: stored.size });
    }
    this.cache = new ByteLru(cacheBytes, (b) => b.length + 64);
  }

  /** The stored (compressed) bytes: what ntfs-3g's plugin reports as the file's blocks. */
  get storedSize(): number {
    return this.stored.size;
  }

  private corrupt(chunk: number, msg: string, data: Record<string, string | number> = {}, cause?: unknown): CorruptStructureError {
    const e = new CorruptStructureError('E_NTFS_WOF_CORRUPT', `MFT record ${this.record} ${WOF_COMPRESSED_DATA_STREAM} chunk ${chunk}: ${msg}`, {
      record: this.record, chunk, structure: WOF_COMPRESSED_DATA_STREAM, algorithm: this.format.algorithm, ...data,
    });
    if (cause !== undefined) (e as { cause?: unknown }).cause = cause;
    return e;
  }

  private chunkLength(i: number): number {
    return i === this.chunkCount - 1 ? this.size - i * this.format.chunkSize : this.format.chunkSize;
  }

  /** Bytes [offset, offset+length) of the uncompressed file, clipped at its end. */
  async read(offset: number, length: number): Promise<Buffer> {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
      throw new CorruptStructureError('E_NTFS_READ', `MFT record ${this.record}: bad range ${offset}+${length}`, { record: this.record });
    }
    const end = Math.min(this.size, offset + length);
    if (end <= offset) return Buffer.alloc(0);
    const cs = this.format.chunkSize;
    const out = Buffer.alloc(end - offset);
    const first = Math.floor(offset / cs);
    const last = Math.floor((end - 1) / cs);
    for (let batch = first; batch <= last; batch += CHUNKS_PER_BATCH) {
      const batchLast = Math.min(last, batch + CHUNKS_PER_BATCH - 1);
      const chunks = await this.chunks(batch, batchLast);
      for (let i = batch; i <= batchLast; i++) {
        const data = chunks[i - batch]!;
        const s = Math.max(offset, i * cs);
        const e = Math.min(end, i * cs + data.length);
        data.copy(out, s - offset, s - i * cs, e - i * cs);
      }
    }
    return out;
  }

  /** Decompressed chunks first..last, from the cache or one read of their stored bytes. */
  private async chunks(first: number, last: number): Promise<Buffer[]> {
    const result: (Buffer | undefined)[] = [];
    let missFirst = -1, missLast = -1;
    for (let i = first; i <= last; i++) {
      const c = this.cache.get(i);
      result.push(c);
      if (!c) {
        if (missFirst < 0) missFirst = i;
        missLast = i;
      }
    }
    if (missFirst < 0) return result as Buffer[];
    const bounds = await this.chunkBounds(missFirst, missLast);
    const base = bounds[0]!;
    const stored = await this.stored.read(this.tableSize + base, bounds[bounds.length - 1]! - base);
    if (stored.length !== bounds[bounds.length - 1]! - base) throw this.corrupt(missFirst, `the stream gave ${stored.length} of ${bounds[bounds.length - 1]! - base} stored bytes`);
    for (let i = missFirst; i <= missLast; i++) {
      if (result[i - first]) continue;
      const k = i - missFirst;
      const data = this.decode(i, stored.subarray(bounds[k]! - base, bounds[k + 1]! - base));
      this.cache.set(i, data);
      result[i - first] = data;
    }
    return result as Buffer[];
  }

  /**
   * Where chunks first..last lie, relative to the end of the table: bounds[k] is the start of chunk
   * first+k and bounds[k+1] its end. Every bound is checked: increasing, inside the stream, and no
   * chunk stored in more bytes than it decompresses to.
   */
  private async chunkBounds(first: number, last: number): Promise<number[]> {
    const dataSize = this.stored.size - this.tableSize;
    const bounds: number[] = [];
    // entries first-1 .. last (entry j is the start of chunk j+1); chunk 0 starts at 0, the last chunk ends at dataSize
    const e0 = Math.max(0, first - 1);
    const e1 = Math.min(last, this.chunkCount - 2);
    let entries: Buffer = Buffer.alloc(0);
    if (e1 >= e0) {
      entries = await this.stored.read(e0 * this.entrySize, (e1 - e0 + 1) * this.entrySize);
      if (entries.length !== (e1 - e0 + 1) * this.entrySize) throw this.corrupt(first, 'the chunk table is cut short');
    }
    const entry = (j: number): number => {
      const at = (j - e0) * this.entrySize;
      if (this.entrySize === 4) return entries.readUInt32LE(at);
      const v = entries.readBigUInt64LE(at);
      if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw this.corrupt(j + 1, `chunk table entry ${j} = ${v} is past 2^53`);
      return Number(v);
    };
    for (let i = first; i <= last + 1; i++) bounds.push(i === 0 ? 0 : i === this.chunkCount ? dataSize : entry(i - 1));
    for (let i = first; i <= last; i++) {
      const s = bounds[i - first]!, e = bounds[i - first + 1]!;
      const want = this.chunkLength(i);
      if (s > dataSize) throw this.corrupt(i, `starts at ${s}, past the ${dataSize} bytes after the chunk table`, { field: 'chunk offset', value: s, limit: dataSize });
      if (e > dataSize) throw this.corrupt(i, `ends at ${e}, past the ${dataSize} bytes after the chunk table`, { field: 'chunk offset', value: e, limit: dataSize });
      if (e <= s) throw this.corrupt(i, `chunk offsets are not increasing (${s} then ${e})`, { field: 'chunk offset', value: e });
      if (e - s > want) throw this.corrupt(i, `is stored in ${e - s} bytes, more than its ${want} uncompressed bytes`, { field: 'stored size', value: e - s, limit: want });
    }
    return bounds;
  }

  private decode(i: number, stored: Buffer): Buffer {
    const want = this.chunkLength(i);
    if (stored.length === want) return Buffer.from(stored); // stored raw (did not compress)
    const out = Buffer.alloc(want);
    let got: Uint8Array;
    try {
      if (this.format.algorithm === 'LZX') got = (lzx ??= new LzxDecoder()).decompress(stored, want, out);
      else got = (xpress ??= new XpressDecoder()).decompress(stored, want, out);
    } catch (err) {
      if (err instanceof SnapferryError) throw this.corrupt(i, err.message, { reason: err.code }, err);
      throw err;
    }
    if (got.length !== want) throw this.corrupt(i, `decompressed to ${got.length} bytes, not ${want}`, { value: got.length, limit: want });
    return out;
  }
}
