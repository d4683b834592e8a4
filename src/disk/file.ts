/**
 * Read-only access to a file or a block device. Nothing in snapferry opens a source any other way:
 * the flag is O_RDONLY, there is no write path, and tests prove sources keep their sha256.
 */
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

class FileSource implements ByteSource {
  constructor(
    readonly path: string,
    readonly size: number,
    readonly isBlockDevice: boolean,
    private readonly fh: FileHandle,
  ) {}

  async readInto(out: Buffer, outOffset: number, length: number, position: number): Promise<void> {
    if (position < 0 || length < 0 || position + length > this.size) throw new TruncatedError(this.path, position, length, this.size);
    let done = 0;
    while (done < length) {
      const { bytesRead } = await this.fh.read(out, outOffset + done, length - done, position + done);
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
