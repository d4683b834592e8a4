/**
 * Read-only access to a file or a block device. Nothing in snapferry opens a source any other way:
 * the flag is O_RDONLY, there is no write path, and tests prove sources keep their sha256.
 */
import { read as fsRead } from 'node:fs';
import { open, readFile, type FileHandle } from 'node:fs/promises';
import { constants } from 'node:fs';
import { SourceNotFoundError, SnapferryError, ExitCode } from '../util/errors.js';
import { TruncatedError } from '../util/errors.js';

export interface ByteSource {
  readonly path: string;
  readonly size: number;
  readonly isBlockDevice: boolean;
  /** Reads exactly `length` bytes at `position` into out[outOffset...]; a short read is E_TRUNCATED. */
  readInto(out: Buffer, outOffset: number, length: number, position: number): Promise<void>;
  read(position: number, length: number): Promise<Buffer>;
  close(): Promise<void>;
}

/**
 * Read-ahead for runs of small reads. A backup or `ls -R --sha256` of a volume reads tens of
 * thousands of small files whose blocks lie mostly in ascending order on the disk. The kernel's
 * page-cache readahead keeps the device busy either way; what costs is the syscall: on the
 * hypervisors we run on (and under any VM whose syscalls and futex wake-ups trap), an awaited pread
 * through libuv's pool measured ~40-80 µs of main-thread time, and a backup of 50,050 ext4 files
 * made 53,934 of them. Once two reads in a row move forward by less than a window, reads are served
 * from aligned windows of WINDOW bytes read whole (the kernel's own readahead state machine, in
 * miniature), and the window after the one serving is read meanwhile, so a run does not wait for
 * each window in turn; reads that jump about (a mount's random 4 KiB reads) go straight to the
 * file, so no window is read for them. At most MAX_WINDOWS windows are kept (a byte budget of 4 MiB
 * per source).
 */
export const READAHEAD = {
  /** Bytes read per window. */
  window: 512 * 1024,
  /** Windows kept per source (oldest dropped first). */
  maxWindows: 8,
  /** Reads at least this long go straight to the file (they are already few and large). */
  maxServedRead: 128 * 1024,
  /** Forward steps in a row before windows are read. */
  sequentialAfter: 2,
} as const;

interface Window {
  start: number;
  end: number;
  bytes: Promise<Buffer>;
}

/**
 * pread(2) through fs.read's callback form on the FileHandle's descriptor: FileHandle.read costs
 * more per call (50,000 16 KiB reads from the page cache: 0.53-0.61 s of user CPU against
 * 0.62-0.90 s), and a backup makes one read per small file.
 */
function readAt(fd: number, out: Buffer, offset: number, length: number, position: number): Promise<number> {
  return new Promise((resolve, reject) => fsRead(fd, out, offset, length, position, (err, n) => (err ? reject(err) : resolve(n))));
}

class FileSource implements ByteSource {
  private windows: Window[] = [];
  /** Where the last small read ended, and how many small reads in a row moved forward by less than a window. */
  private lastEnd = -1;
  private forward = 0;
  /** Reads served from windows, and windows read (for tests and benchmarks). */
  readonly readahead = { served: 0, windows: 0 };

  constructor(
    readonly path: string,
    readonly size: number,
    readonly isBlockDevice: boolean,
    private readonly fh: FileHandle,
  ) {}

  async readInto(out: Buffer, outOffset: number, length: number, position: number): Promise<void> {
    if (position < 0 || length < 0 || position + length > this.size) throw new TruncatedError(this.path, position, length, this.size);
    if (length === 0) return;
    if (length < READAHEAD.maxServedRead) {
      const end = position + length;
      const step = position - this.lastEnd;
      this.forward = this.lastEnd >= 0 && step >= -READAHEAD.window && step < READAHEAD.window ? this.forward + 1 : 0;
      this.lastEnd = end;
      let w = this.windows.find((x) => x.start <= position && position < x.end);
      // a read that runs past its window's end continues in the next one, when that one is there
      const rest = w && end > w.end ? this.windows.find((x) => x.start === w!.end && end <= x.end) : undefined;
      if (w && end > w.end && !rest) w = undefined;
      if (!w && this.forward >= READAHEAD.sequentialAfter) w = this.readWindow(position);
      // in a forward run, the window after the one serving is read meanwhile (double buffering)
      const last = rest ?? w;
      if (last && this.forward >= READAHEAD.sequentialAfter && last.end < this.size && !this.windows.some((x) => x.start === last.end)) this.readWindow(last.end);
      if (w) {
        const bytes = await w.bytes.catch(() => null);
        const more = rest ? await rest.bytes.catch(() => null) : null;
        const split = rest ? w.end : end;
        if (bytes && split <= w.start + bytes.length && (!rest || (more && end <= rest.start + more.length))) {
          bytes.copy(out, outOffset, position - w.start, split - w.start);
          if (rest) more!.copy(out, outOffset + (split - position), 0, end - rest.start);
          this.readahead.served++;
          return;
        }
      }
    }
    await this.readDirect(out, outOffset, length, position);
  }

  /** A window that starts at `position`'s 4 KiB boundary (block-aligned reads stay aligned). */
  private readWindow(position: number): Window {
    const start = position - (position % 4096);
    const end = Math.min(this.size, start + READAHEAD.window);
    const w: Window = { start, end, bytes: Promise.resolve(Buffer.alloc(0)) };
    w.bytes = (async () => {
      const b = Buffer.allocUnsafe(end - start);
      try {
        await this.readDirect(b, 0, b.length, start);
        return b;
      } catch (err) {
        this.windows = this.windows.filter((x) => x !== w);
        throw err;
      }
    })();
    this.windows.push(w);
    if (this.windows.length > READAHEAD.maxWindows) this.windows.shift();
    this.readahead.windows++;
    return w;
  }

  private async readDirect(out: Buffer, outOffset: number, length: number, position: number): Promise<void> {
    let done = 0;
    while (done < length) {
      const bytesRead = await readAt(this.fh.fd, out, outOffset + done, length - done, position + done);
      if (bytesRead === 0) throw new TruncatedError(this.path, position, length, position + done);
      done += bytesRead;
    }
  }

  async read(position: number, length: number): Promise<Buffer> {
    const out = Buffer.allocUnsafe(length);
    await this.readInto(out, 0, length, position);
    return out;
  }

  async close(): Promise<void> {
    this.windows = [];
    await this.fh.close();
  }
}

/** Size of a block device from sysfs (fstat reports 0 for devices); the unit is always 512 bytes. */
async function blockDeviceSize(rdev: number, path: string): Promise<number> {
  const major = Math.floor(rdev / 256) & 0xfff;
  const minor = (rdev & 0xff) | ((Math.floor(rdev / 4096) & 0xfff00));
  try {
    const text = await readFile(`/sys/dev/block/${major}:${minor}/size`, 'utf8');
    return Number(text.trim()) * 512;
  } catch {
    throw new SnapferryError('E_BLOCKDEV_SIZE', `${path}: cannot read the size of block device ${major}:${minor} from sysfs`, { path }, ExitCode.failure);
  }
}

/** Opens a file or block device read-only (O_RDONLY; never O_RDWR, never O_CREAT). */
export async function openReadOnly(path: string): Promise<ByteSource> {
  let fh: FileHandle;
  try {
    fh = await open(path, constants.O_RDONLY);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'ENOENT') throw new SourceNotFoundError(path, 'no such file');
    if (e.code === 'EACCES') throw new SourceNotFoundError(path, 'permission denied', { errno: e.code });
    throw err;
  }
  try {
    const st = await fh.stat();
    if (st.isDirectory()) throw new SourceNotFoundError(path, 'is a directory, not a disk image');
    const isBlockDevice = st.isBlockDevice();
    const size = isBlockDevice ? await blockDeviceSize(st.rdev, path) : st.size;
    return new FileSource(path, size, isBlockDevice, fh);
  } catch (err) {
    await fh.close();
    throw err;
  }
}

/** A ByteSource over a Buffer: parsers and fuzzers run on memory. */
export class BufferSource implements ByteSource {
  readonly isBlockDevice = false;
  constructor(
    readonly buf: Buffer,
    readonly path = '<buffer>',
  ) {}
  get size(): number {
    return this.buf.length;
  }
  async readInto(out: Buffer, outOffset: number, length: number, position: number): Promise<void> {
    if (position < 0 || length < 0 || position + length > this.buf.length) throw new TruncatedError(this.path, position, length, this.buf.length);
    this.buf.copy(out, outOffset, position, position + length);
  }
  async read(position: number, length: number): Promise<Buffer> {
    const out = Buffer.allocUnsafe(length);
    await this.readInto(out, 0, length, position);
    return out;
  }
  async close(): Promise<void> {}
}
