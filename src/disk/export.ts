/**
 * Writes a Disk out as a raw image. To a regular file the output is sparse: ranges no layer holds,
 * known-zero ranges and all-zero blocks become holes (ftruncate sets the size). To a file, four pieces are in
 * flight at once; to a stream, the next piece is read while this one is written.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { constants } from 'node:fs';
import type { Writable } from 'node:stream';
import type { Disk } from './types.js';
import { MiB } from '../util/bounded.js';
import { SnapferryError, ExitCode } from '../util/errors.js';

export interface ExportProgress {
  done: number;
  total: number;
  written: number;
}

export interface ExportOptions {
  /** Bytes per read; a multiple of the zero-detection block. */
  chunkBytes?: number;
  onProgress?: (p: ExportProgress) => void;
  signal?: AbortSignal;
}

export interface ExportResult {
  size: number;
  /** Bytes actually written (the rest are holes). */
  written: number;
  ranges: { data: number; zero: number; unallocated: number };
}

const ZERO_BLOCK = 64 * 1024;
/** The allocation map is asked for one window at a time. */
const WINDOW = 1024 * MiB;
/** Pieces in flight when writing a file (libuv runs 4 I/O threads by default). */
const FILE_LANES = 4;
const zeros = Buffer.alloc(ZERO_BLOCK);

interface Sink {
  write(buf: Buffer, position: number): Promise<void>;
  /** For a stream sink, holes must be written as zeros. */
  readonly sparse: boolean;
  finish(size: number): Promise<void>;
}

function fileSink(fh: FileHandle, isRegular: boolean): Sink {
  return {
    sparse: isRegular,
    async write(buf, position) {
      let done = 0;
      while (done < buf.length) {
        const { bytesWritten } = await fh.write(buf, done, buf.length - done, position + done);
        done += bytesWritten;
      }
    },
    async finish(size) {
      if (isRegular) await fh.truncate(size);
      await fh.close();
    },
  };
}

function streamSink(stream: Writable): Sink {
  return {
    sparse: false,
    write(buf) {
      return new Promise((resolve, reject) => {
        stream.write(buf, (err) => (err ? reject(err) : resolve()));
      });
    },
    async finish() {},
  };
}

/** Exports to a path (created; must not exist unless `overwrite`) or to a writable stream. */
export async function exportRaw(disk: Disk, out: string | Writable, opts: ExportOptions & { overwrite?: boolean } = {}): Promise<ExportResult> {
  let sink: Sink;
  if (typeof out === 'string') {
    const flags = constants.O_WRONLY | constants.O_CREAT | (opts.overwrite ? 0 : constants.O_EXCL);
    let fh: FileHandle;
    try {
      fh = await open(out, flags, 0o644);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new SnapferryError('E_EXPORT_EXISTS', `${out} exists; pass --force to overwrite it`, { path: out }, ExitCode.usage);
      throw err;
    }
    const st = await fh.stat();
    // Only a file with bytes in it is truncated: ext4 (auto_da_alloc) flushes a file truncated to
    // zero when it is closed, which made closing a fresh 512 MiB export wait ~0.25 s for writeback.
    if (st.isFile() && st.size > 0) await fh.truncate(0);
    sink = fileSink(fh, st.isFile());
  } else {
    sink = streamSink(out);
  }

  const chunk = Math.max(ZERO_BLOCK, Math.floor((opts.chunkBytes ?? 4 * MiB) / ZERO_BLOCK) * ZERO_BLOCK);
  const result: ExportResult = { size: disk.size, written: 0, ranges: { data: 0, zero: 0, unallocated: 0 } };
  let done = 0;
  let lastProgress = 0;
  const report = (force = false) => {
    const now = Date.now();
    if (opts.onProgress && (force || now - lastProgress > 200)) {
      lastProgress = now;
      opts.onProgress({ done, total: disk.size, written: result.written });
    }
  };

  // The work list, one window of the disk at a time so that memory stays bounded whatever the
  // disk's size or fragmentation: data ranges cut into chunks; holes only matter to a stream sink.
  type Piece = { offset: number; length: number; hole: boolean };
  async function* pieces(): AsyncGenerator<Piece> {
    for (let w = 0; w < disk.size; w += WINDOW) {
      for (const r of await disk.allocation(w, Math.min(WINDOW, disk.size - w))) {
        result.ranges[r.state] += r.length;
        if (r.state !== 'data' && sink.sparse) {
          yield { offset: r.offset, length: r.length, hole: true };
          continue;
        }
        for (let o = r.offset; o < r.offset + r.length; o += chunk) {
          yield { offset: o, length: Math.min(chunk, r.offset + r.length - o), hole: r.state !== 'data' };
        }
      }
    }
  }

  const checkAbort = () => {
    if (opts.signal?.aborted) throw new SnapferryError('E_INTERRUPTED', 'export interrupted', {}, ExitCode.interrupted);
  };

  /** Writes the runs of non-zero 64 KiB blocks of `buf`; all-zero blocks become holes. */
  const writeNonZero = async (buf: Buffer, offset: number) => {
    let runStart = -1;
    for (let b = 0; b <= buf.length; b += ZERO_BLOCK) {
      const isZero = b < buf.length && buf.subarray(b, b + ZERO_BLOCK).equals(zeros.subarray(0, Math.min(ZERO_BLOCK, buf.length - b)));
      if (b < buf.length && !isZero) {
        if (runStart < 0) runStart = b;
        continue;
      }
      if (runStart >= 0) {
        const end = Math.min(b, buf.length);
        await sink.write(buf.subarray(runStart, end), offset + runStart);
        result.written += end - runStart;
        runStart = -1;
      }
    }
  };

  try {
    const it = pieces();
    if (sink.sparse) {
      // A file: several pieces in flight at once (each with its own buffer), written where they
      // belong in whatever order they finish; the async generator hands pieces out one at a time.
      const lane = async (buffer: Buffer) => {
        for (let n = await it.next(); !n.done; n = await it.next()) {
          checkAbort();
          const p = n.value;
          if (!p.hole) {
            const buf = buffer.subarray(0, p.length);
            await disk.readInto(buf, p.offset);
            await writeNonZero(buf, p.offset);
          }
          done += p.length;
          report();
        }
      };
      await Promise.all(Array.from({ length: FILE_LANES }, () => lane(Buffer.allocUnsafe(chunk))));
    } else {
      // A stream: bytes in order, the next piece read while this one is written.
      const buffers = [Buffer.allocUnsafe(chunk), Buffer.allocUnsafe(chunk)];
      let turn = 0;
      const readPiece = async (p: Piece): Promise<Buffer> => {
        const buf = buffers[turn++ % 2]!.subarray(0, p.length);
        if (p.hole) buf.fill(0);
        else await disk.readInto(buf, p.offset);
        return buf;
      };
      let n = await it.next();
      let pending = n.done ? null : readPiece(n.value);
      while (pending) {
        checkAbort();
        const buf = await pending;
        n = await it.next();
        pending = n.done ? null : readPiece(n.value);
        await sink.write(buf, 0);
        result.written += buf.length;
        done += buf.length;
        report();
      }
    }
    await sink.finish(disk.size);
  } catch (err) {
    await sink.finish(disk.size).catch(() => {});
    throw err;
  }
  report(true);
  return result;
}
