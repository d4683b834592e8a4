/**
 * zstd seekable streams (contrib/seekable_format, declared in ./structs.ts): a writer that cuts its
 * input into independent frames and ends with the seek table, a hostile-input parser of that table,
 * and a RandomAccess over the uncompressed stream that decompresses only the frames a read touches.
 *
 * Frames are written with Content_Checksum (the low 32 bits of XXH64 of the frame's content, which
 * zstd computes and verifies itself), so the seek table's Checksum costs nothing: it is the frame's
 * own last four bytes.
 */
import { createRequire } from 'node:module';
import type { ByteSink, RandomAccess } from '../types.js';
import { CorruptStructureError, SnapferryError, type ErrorData } from '../../util/errors.js';
import { checkWithin, expectField, MiB } from '../../util/bounded.js';
import { ByteLru } from '../../util/lru.js';
import { openChannel, type Channel } from '../../util/helper-thread.js';
import {
  encodeSeekTable,
  MAX_FRAME_DECOMPRESSED_SIZE,
  MAX_NUMBER_OF_FRAMES,
  SEEKABLE_MAGIC_NUMBER,
  Seek_Table_Descriptor,
  Seek_Table_Entry,
  Seek_Table_Footer,
  SKIPPABLE_HEADER_SIZE,
  SKIPPABLE_MAGIC_NUMBER,
  ZSTD_FRAME_MAGIC_NUMBER,
  type SeekTable,
  type SeekTableFrame,
} from './structs.js';

const require = createRequire(import.meta.url);
type ZstdBinding = typeof import('zstd-napi/binding.js');
const binding = require('zstd-napi/binding') as ZstdBinding;

export const DEFAULT_FRAME_SIZE = 1 * MiB;
export const DEFAULT_LEVEL = 3;
/** Frames handed to the worker and not yet written below: bounds the sink's memory to ~(n+1) frames. */
export const DEFAULT_FRAMES_IN_FLIGHT = 3;

export interface ZstdSeekableSinkOptions {
  /** Uncompressed bytes per frame (1 MiB); at most MAX_FRAME_DECOMPRESSED_SIZE so our reader accepts it. */
  frameSize?: number;
  /** zstd compression level (3). */
  level?: number;
  framesInFlight?: number;
}

export interface ZstdSinkStats {
  bytesIn: number;
  bytesOut: number;
  frames: number;
}

/**
 * The compressing job, run on the process's helper thread (util/helper-thread.ts) as source text:
 * one zstd context (zstd-napi's binding, ZSTD_compress2), frames in, frames out, in order. Frames
 * travel through SharedArrayBuffer slots owned by the sink: the thread compresses a slot's input
 * straight into the slot's output and answers with the size, so no frame is allocated, copied or
 * collected on either side. (Compressor.compress allocated its result and the result was copied for
 * the transfer: 3 MiB of garbage per 1 MiB frame, which the worker's isolate, seeing little JS
 * allocation, collected late: ~40 MiB of a backup's RSS.)
 */
const COMPRESS_JOB = `
const { CCtx, CParameter } = require(data.bindingPath);
const cctx = new CCtx();
cctx.setParameter(CParameter.compressionLevel, data.level);
cctx.setParameter(CParameter.checksumFlag, 1);
cctx.setParameter(CParameter.contentSizeFlag, 1);
return (m) => {
  try {
    const written = cctx.compress2(new Uint8Array(m.output), new Uint8Array(m.input, 0, m.length));
    post({ seq: m.seq, written });
  } catch (e) {
    post({ seq: m.seq, error: String(e && e.message || e) });
  }
};
`;

/** A frame's place: its uncompressed bytes, and room for the largest frame zstd makes of them. */
interface FrameSlot {
  input: SharedArrayBuffer;
  output: SharedArrayBuffer;
}

interface Pending {
  resolve(written: number): void;
  reject(e: Error): void;
}

/**
 * One compressing context per level, shared by every sink of the process (a backup writes its
 * archive and its index at once), on the helper thread: compression keeps that thread busy, not
 * the event loop.
 */
class CompressWorker {
  private static readonly shared = new Map<number, CompressWorker>();
  private readonly channel: Channel;
  private readonly pending = new Map<number, Pending>();
  private seq = 0;
  private dead: Error | null = null;
  private users = 0;

  static acquire(level: number): CompressWorker {
    let w = CompressWorker.shared.get(level);
    if (!w || w.dead) {
      w = new CompressWorker(level);
      CompressWorker.shared.set(level, w);
    }
    w.users++;
    return w;
  }

  private constructor(private readonly level: number) {
    this.channel = openChannel(
      COMPRESS_JOB,
      { bindingPath: require.resolve('zstd-napi/binding'), level },
      (msg) => {
        const m = msg as { seq: number; written?: number; error?: string };
        const p = this.pending.get(m.seq);
        if (!p) return;
        this.pending.delete(m.seq);
        if (this.pending.size === 0) this.channel.busy(false);
        if (m.written !== undefined) p.resolve(m.written);
        else p.reject(new SnapferryError('E_ZSTD_COMPRESS', `zstd compression failed: ${m.error}`));
      },
      (e) => {
        this.dead = new SnapferryError('E_ZSTD_COMPRESS', `zstd worker stopped: ${e.message}`, {}, undefined, { cause: e });
        if (CompressWorker.shared.get(this.level) === this) CompressWorker.shared.delete(this.level);
        for (const p of this.pending.values()) p.reject(this.dead);
        this.pending.clear();
      },
    );
  }

  /** Compresses the first `length` bytes of the slot's input into one frame in its output; resolves with the frame's size. */
  compress(slot: FrameSlot, length: number): Promise<number> {
    if (this.dead) return Promise.reject(this.dead);
    const seq = this.seq++;
    return new Promise<number>((resolve, reject) => {
      this.pending.set(seq, { resolve, reject });
      this.channel.busy(true);
      this.channel.post({ seq, input: slot.input, output: slot.output, length });
    });
  }

  /** Gives the context up; the last user's release frees it. */
  async release(): Promise<void> {
    if (--this.users > 0) return;
    if (CompressWorker.shared.get(this.level) === this) CompressWorker.shared.delete(this.level);
    await this.channel.close();
  }
}

/**
 * ByteSink that writes a seekable zstd stream to `inner`: frames of at most `frameSize` uncompressed
 * bytes, compressed in one worker thread while the producer fills the next frame, then the seek table.
 */
export class ZstdSeekableSink implements ByteSink {
  readonly frameSize: number;
  readonly level: number;
  private readonly framesInFlight: number;
  private readonly worker: CompressWorker;
  private current: FrameSlot | null = null;
  /** Slots not in use: a frame's slot comes back once the layer below has taken its bytes. */
  private readonly freeSlots: FrameSlot[] = [];
  private currentLength = 0;
  private readonly inFlight: Promise<void>[] = [];
  private tail: Promise<void> = Promise.resolve();
  private failure: unknown = null;
  private ended = false;
  private readonly table: SeekTableFrame[] = [];
  private bytesIn = 0;
  private bytesOut = 0;

  constructor(
    private readonly inner: ByteSink,
    opts: ZstdSeekableSinkOptions = {},
  ) {
    this.frameSize = opts.frameSize ?? DEFAULT_FRAME_SIZE;
    this.level = opts.level ?? DEFAULT_LEVEL;
    this.framesInFlight = Math.max(1, opts.framesInFlight ?? DEFAULT_FRAMES_IN_FLIGHT);
    if (!Number.isSafeInteger(this.frameSize) || this.frameSize < 1 || this.frameSize > MAX_FRAME_DECOMPRESSED_SIZE) {
      throw new SnapferryError('E_ZSTD_OPTIONS', `frameSize ${this.frameSize} is not in 1..${MAX_FRAME_DECOMPRESSED_SIZE}`, { frameSize: this.frameSize });
    }
    this.worker = CompressWorker.acquire(this.level);
  }

  async write(chunk: Buffer): Promise<void> {
    this.check();
    let p = 0;
    while (p < chunk.length) {
      if (!this.current) {
        this.current = this.freeSlots.pop() ?? { input: new SharedArrayBuffer(this.frameSize), output: new SharedArrayBuffer(compressBound(this.frameSize)) };
        this.currentLength = 0;
      }
      const n = Math.min(this.frameSize - this.currentLength, chunk.length - p);
      chunk.copy(new Uint8Array(this.current.input), this.currentLength, p, p + n);
      this.currentLength += n;
      this.bytesIn += n;
      p += n;
      if (this.currentLength === this.frameSize) await this.submit();
    }
  }

  async end(): Promise<void> {
    this.check();
    this.ended = true;
    try {
      if (this.current && this.currentLength > 0) await this.submit();
      await Promise.all(this.inFlight.splice(0));
      await this.tail;
      if (this.failure) throw this.failure;
      const seekTable = encodeSeekTable(this.table);
      await this.inner.write(seekTable);
      this.bytesOut += seekTable.length;
      await this.inner.end();
    } finally {
      await this.worker.release();
    }
  }

  stats(): ZstdSinkStats {
    return { bytesIn: this.bytesIn, bytesOut: this.bytesOut, frames: this.table.length };
  }

  /** The frames written below so far, with their offsets in both streams. */
  frames(): readonly SeekTableFrame[] {
    return this.table;
  }

  /** Index of the frame (written or still buffered) that holds uncompressed byte `offset`. */
  frameIndexOf(offset: number): number {
    return Math.floor(offset / this.frameSize);
  }

  private check(): void {
    if (this.failure) throw this.failure;
    if (this.ended) throw new SnapferryError('E_ZSTD_ENDED', 'write or end after end() on a ZstdSeekableSink');
  }

  private async submit(): Promise<void> {
    const slot = this.current!;
    const length = this.currentLength;
    this.current = null;
    this.currentLength = 0;
    const compressed = this.worker.compress(slot, length);
    compressed.catch(() => undefined); // observed by the step below
    const step = this.tail.then(async () => {
      if (this.failure) return;
      const frame = Buffer.from(slot.output, 0, await compressed);
      const prev = this.table[this.table.length - 1];
      this.table.push({
        compressedOffset: prev ? prev.compressedOffset + prev.compressedSize : 0,
        compressedSize: frame.length,
        decompressedOffset: prev ? prev.decompressedOffset + prev.decompressedSize : 0,
        decompressedSize: length,
        checksum: frame.readUInt32LE(frame.length - 4),
      });
      this.bytesOut += frame.length;
      await this.inner.write(frame);
      // ByteSink: the write has resolved, so the layer below is done with the frame's bytes
      this.freeSlots.push(slot);
    });
    this.tail = step.catch((e: unknown) => {
      this.failure ??= e;
    });
    this.inFlight.push(this.tail);
    while (this.inFlight.length >= this.framesInFlight) await this.inFlight.shift();
    if (this.failure) throw this.failure;
  }
}

function tableError(field: string, message: string, data: ErrorData = {}): CorruptStructureError {
  return new CorruptStructureError('E_ZSTD_SEEKTABLE', `zstd seek table: ${field}: ${message}`, { structure: 'Seek_Table', field, ...data });
}

/** ZSTD_compressBound: the largest frame zstd emits for `n` bytes, plus room for header and checksum. */
function compressBound(n: number): number {
  return n + (n >>> 8) + (n < 128 * 1024 ? (128 * 1024 - n) >>> 11 : 0) + 32;
}

/**
 * Reads and checks the seek table at the end of `ra`. Hostile input: the frame count is bounded by
 * the file size before anything is allocated, every size is bounded, and the frames must tile the
 * file exactly up to the table.
 */
export async function parseSeekTable(ra: RandomAccess): Promise<SeekTable> {
  const minimum = SKIPPABLE_HEADER_SIZE + Seek_Table_Footer.size;
  if (ra.size < minimum) throw tableError('Seek_Table_Footer', `stream of ${ra.size} bytes is shorter than a seek table (${minimum})`, { size: ra.size });
  const footer = await ra.read(ra.size - Seek_Table_Footer.size, Seek_Table_Footer.size);
  const magic = footer.readUInt32LE(Seek_Table_Footer.Seekable_Magic_Number);
  if (magic !== SEEKABLE_MAGIC_NUMBER) throw tableError('Seekable_Magic_Number', `0x${magic.toString(16)} is not 0x${SEEKABLE_MAGIC_NUMBER.toString(16)}`, { value: magic });
  const descriptor = footer.readUInt8(Seek_Table_Footer.Seek_Table_Descriptor);
  if (descriptor & Seek_Table_Descriptor.Reserved_Bits) throw tableError('Seek_Table_Descriptor', `reserved bits set (0x${descriptor.toString(16)})`, { value: descriptor });
  const checksumFlag = (descriptor & Seek_Table_Descriptor.Checksum_Flag) !== 0;
  const entrySize = checksumFlag ? Seek_Table_Entry.sizeWithChecksum : Seek_Table_Entry.sizeWithoutChecksum;
  const count = footer.readUInt32LE(Seek_Table_Footer.Number_Of_Frames);
  if (count > MAX_NUMBER_OF_FRAMES) throw tableError('Number_Of_Frames', `${count} exceeds the limit of ${MAX_NUMBER_OF_FRAMES}`, { value: count, limit: MAX_NUMBER_OF_FRAMES });
  const tableFrameSize = SKIPPABLE_HEADER_SIZE + count * entrySize + Seek_Table_Footer.size;
  // Every frame but a skippable one (8 bytes at least) carries one byte or more; a count the file cannot hold is a lie.
  if (tableFrameSize > ra.size) throw tableError('Number_Of_Frames', `${count} entries need ${tableFrameSize} bytes, the stream has ${ra.size}`, { value: count, size: ra.size });
  const table = await ra.read(ra.size - tableFrameSize, tableFrameSize);
  const skippableMagic = table.readUInt32LE(0);
  if (skippableMagic !== SKIPPABLE_MAGIC_NUMBER) throw tableError('Skippable_Magic_Number', `0x${skippableMagic.toString(16)} is not 0x${SKIPPABLE_MAGIC_NUMBER.toString(16)}`, { value: skippableMagic });
  const frameSize = table.readUInt32LE(4);
  if (frameSize !== tableFrameSize - SKIPPABLE_HEADER_SIZE) throw tableError('Frame_Size', `${frameSize} does not match ${count} entries of ${entrySize} bytes plus the footer (${tableFrameSize - SKIPPABLE_HEADER_SIZE})`, { value: frameSize });
  const dataSize = ra.size - tableFrameSize;
  const frames: SeekTableFrame[] = new Array(count);
  let compressedOffset = 0;
  let decompressedOffset = 0;
  for (let i = 0, p = SKIPPABLE_HEADER_SIZE; i < count; i++, p += entrySize) {
    const compressedSize = table.readUInt32LE(p + Seek_Table_Entry.Compressed_Size);
    const decompressedSize = table.readUInt32LE(p + Seek_Table_Entry.Decompressed_Size);
    if (decompressedSize > MAX_FRAME_DECOMPRESSED_SIZE) throw tableError('Decompressed_Size', `frame ${i}: ${decompressedSize} exceeds the limit of ${MAX_FRAME_DECOMPRESSED_SIZE}`, { frame: i, value: decompressedSize, limit: MAX_FRAME_DECOMPRESSED_SIZE });
    if (compressedSize === 0) throw tableError('Compressed_Size', `frame ${i}: zero`, { frame: i });
    if (decompressedSize > 0 && compressedSize > compressBound(decompressedSize)) throw tableError('Compressed_Size', `frame ${i}: ${compressedSize} is more than zstd emits for ${decompressedSize} bytes`, { frame: i, value: compressedSize });
    if (compressedOffset + compressedSize > dataSize) throw tableError('Compressed_Size', `frame ${i}: ends at ${compressedOffset + compressedSize}, past the seek table at ${dataSize}`, { frame: i, value: compressedSize });
    frames[i] = {
      compressedOffset,
      compressedSize,
      decompressedOffset,
      decompressedSize,
      checksum: checksumFlag ? table.readUInt32LE(p + Seek_Table_Entry.Checksum) : null,
    };
    compressedOffset += compressedSize;
    decompressedOffset += decompressedSize;
  }
  if (compressedOffset !== dataSize) throw tableError('Compressed_Size', `the frames cover ${compressedOffset} bytes, the seek table begins at ${dataSize}`, { value: compressedOffset, size: dataSize });
  return { frames, checksumFlag, compressedSize: dataSize, decompressedSize: decompressedOffset, tableFrameSize };
}

function frameError(index: number, frame: SeekTableFrame, field: string, message: string, cause?: unknown): CorruptStructureError {
  const e = new CorruptStructureError('E_ZSTD_FRAME', `zstd frame ${index} at offset ${frame.compressedOffset}: ${field}: ${message}`, {
    structure: 'zstd_frame',
    field,
    frame: index,
    offset: frame.compressedOffset,
  });
  if (cause !== undefined) (e as { cause?: unknown }).cause = cause;
  return e;
}

/**
 * Decompresses one frame and checks it against its seek table entry: the decompressed size must be
 * the table's (the output buffer is exactly that big, so a frame that would grow past it is an error,
 * not an allocation), and with checksums the frame must carry the table's Content_Checksum.
 */
export function decodeFrame(index: number, frame: SeekTableFrame, compressed: Buffer): Buffer {
  if (frame.decompressedSize === 0 && compressed.length >= 4 && (compressed.readUInt32LE(0) & 0xfffffff0) === 0x184d2a50) {
    return Buffer.alloc(0); // a skippable frame listed in the table (the spec allows it)
  }
  if (compressed.length < 9 || compressed.readUInt32LE(0) !== ZSTD_FRAME_MAGIC_NUMBER) {
    throw frameError(index, frame, 'Magic_Number', 'not a zstd frame');
  }
  let frameLength: number;
  try {
    frameLength = binding.findFrameCompressedSize(compressed);
  } catch (e) {
    throw frameError(index, frame, 'Frame_Header', (e as Error).message, e);
  }
  if (frameLength !== compressed.length) throw frameError(index, frame, 'Compressed_Size', `the frame is ${frameLength} bytes, the seek table says ${compressed.length}`);
  let contentSize: number | null;
  try {
    contentSize = binding.getFrameContentSize(compressed);
  } catch (e) {
    throw frameError(index, frame, 'Frame_Header', (e as Error).message, e);
  }
  if (contentSize !== null && contentSize !== frame.decompressedSize) {
    throw frameError(index, frame, 'Frame_Content_Size', `${contentSize}, the seek table says ${frame.decompressedSize}`);
  }
  if (frame.checksum !== null) {
    const Content_Checksum_flag = 0x04; // Frame_Header_Descriptor bit 2
    if ((compressed[4]! & Content_Checksum_flag) === 0) throw frameError(index, frame, 'Content_Checksum', 'the frame carries no checksum to match the seek table');
    const own = compressed.readUInt32LE(compressed.length - 4);
    if (own !== frame.checksum) throw frameError(index, frame, 'Checksum', `0x${own.toString(16)}, the seek table says 0x${frame.checksum.toString(16)}`);
  }
  const out = Buffer.allocUnsafe(frame.decompressedSize);
  let n: number;
  try {
    n = binding.decompress(out, compressed);
  } catch (e) {
    throw frameError(index, frame, 'Decompressed_Size', `does not decompress into the ${frame.decompressedSize} bytes of the seek table: ${(e as Error).message}`, e);
  }
  if (n !== frame.decompressedSize) throw frameError(index, frame, 'Decompressed_Size', `${n} bytes, the seek table says ${frame.decompressedSize}`);
  return out;
}

export interface ZstdSeekableReaderOptions {
  /** Byte budget of decompressed frames kept (32 MiB). */
  cacheBytes?: number;
  /** Decompress the next frame ahead of a sequential reader (true). */
  readAhead?: boolean;
}

export interface ZstdReaderStats {
  framesDecoded: number;
  compressedBytesFetched: number;
  cacheHits: number;
}

/** RandomAccess over the uncompressed bytes of a seekable zstd stream. */
export class ZstdSeekableReader implements RandomAccess {
  readonly size: number;
  private readonly cache: ByteLru<number, Buffer>;
  private readonly loading = new Map<number, Promise<Buffer>>();
  private readonly readAhead: boolean;
  /** End of the previous read; a read starting there is sequential (a reader starting at 0 is too). */
  private lastEnd = 0;
  private readonly counters: ZstdReaderStats = { framesDecoded: 0, compressedBytesFetched: 0, cacheHits: 0 };

  private constructor(
    private readonly source: RandomAccess,
    readonly table: SeekTable,
    opts: ZstdSeekableReaderOptions,
  ) {
    this.size = table.decompressedSize;
    this.cache = new ByteLru<number, Buffer>(opts.cacheBytes ?? 32 * MiB, (b) => b.length);
    this.readAhead = opts.readAhead ?? true;
  }

  static async open(source: RandomAccess, opts: ZstdSeekableReaderOptions = {}): Promise<ZstdSeekableReader> {
    return new ZstdSeekableReader(source, await parseSeekTable(source), opts);
  }

  get frames(): number {
    return this.table.frames.length;
  }

  stats(): ZstdReaderStats {
    return { ...this.counters };
  }

  /** Index of the frame holding uncompressed byte `offset` (0 <= offset < size). */
  frameIndexOf(offset: number): number {
    const frames = this.table.frames;
    let lo = 0;
    let hi = frames.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (frames[mid]!.decompressedOffset <= offset) lo = mid;
      else hi = mid - 1;
    }
    // Skip empty frames that share the offset with the next one.
    while (lo < frames.length - 1 && frames[lo]!.decompressedSize === 0) lo++;
    return lo;
  }

  async read(offset: number, length: number): Promise<Buffer> {
    checkWithin('zstd seekable stream', offset, length, this.size);
    if (length === 0) return Buffer.alloc(0);
    const first = this.frameIndexOf(offset);
    const last = this.frameIndexOf(offset + length - 1);
    const parts: Promise<Buffer>[] = [];
    for (let i = first; i <= last; i++) parts.push(this.frame(i));
    const frames = await Promise.all(parts);
    const sequential = offset === this.lastEnd;
    this.lastEnd = offset + length;
    if (this.readAhead && sequential && last + 1 < this.table.frames.length) {
      this.frame(last + 1).catch(() => undefined); // a bad frame is reported when it is really read
    }
    const firstFrame = this.table.frames[first]!;
    if (first === last) {
      const start = offset - firstFrame.decompressedOffset;
      return frames[0]!.subarray(start, start + length);
    }
    const out = Buffer.allocUnsafe(length);
    let written = 0;
    for (let k = 0; k < frames.length; k++) {
      const f = this.table.frames[first + k]!;
      const from = Math.max(offset, f.decompressedOffset) - f.decompressedOffset;
      const to = Math.min(offset + length, f.decompressedOffset + f.decompressedSize) - f.decompressedOffset;
      if (to > from) written += frames[k]!.copy(out, written, from, to);
    }
    expectField(written === length, 'E_ZSTD_FRAME', 'zstd_frame', 'Decompressed_Size', `read assembled ${written} of ${length} bytes`);
    return out;
  }

  private frame(index: number): Promise<Buffer> {
    const cached = this.cache.get(index);
    if (cached) {
      this.counters.cacheHits++;
      return Promise.resolve(cached);
    }
    const inFlight = this.loading.get(index);
    if (inFlight) return inFlight;
    const f = this.table.frames[index]!;
    const p = (async () => {
      const compressed = await this.source.read(f.compressedOffset, f.compressedSize);
      this.counters.compressedBytesFetched += compressed.length;
      const out = decodeFrame(index, f, compressed);
      this.counters.framesDecoded++;
      this.cache.set(index, out);
      return out;
    })();
    this.loading.set(index, p);
    const done = (): void => {
      this.loading.delete(index);
    };
    p.then(done, done);
    return p;
  }
}
