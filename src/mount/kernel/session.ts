/**
 * One FUSE connection, spoken directly to the kernel: /dev/fuse opened by this process, mounted by
 * mount(8) with `fd=N` (the way libfuse does it as root), requests read by blocking reads in a few
 * worker threads of our own (never libuv's pool: reads that block for the mount's life would starve
 * the disk reads that answer them), replies written synchronously from the main thread (a
 * /dev/fuse write only copies into the waiting request).
 *
 * Why not libfuse (through fuse-native): measured here, fuse-native's own round trip is ~55 us per
 * request (a do-nothing filesystem lists 50,000 names with `find` in 2.76 s, while ntfs-3g walks a
 * real 50,050-file volume in 2.9 s), and its API cannot carry nanosecond times, 64-bit inode
 * numbers, names that are not UTF-8, readdir offsets or READDIRPLUS. The protocol itself is small.
 *
 * Needs root (mount(2) of a FUSE filesystem without the setuid fusermount, which would hand the
 * device over a unix socket that Node cannot receive descriptors from).
 */
import { spawn } from 'node:child_process';
import { closeSync, openSync, writevSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { ExitCode, SnapferryError } from '../../util/errors.js';
import { reapplyV8Flags } from '../../util/v8-flags.js';
import { FUSE_MIN_READ_BUFFER, fuse_in_header, fuse_out_header, parseInHeader, writeOutHeader, type FuseInHeader } from './structs.js';

/**
 * Worker threads blocked in a read of /dev/fuse. A reader hands a request over and reads the next
 * at once (it never waits for the reply), so few are needed. Measured on bench/mount.sh's images:
 * the 50,050-entry find took 2.76-2.85 s with 1, 2 or 4 readers; the 1 GiB dd took 2.56 s with one,
 * 1.41 s with two, 1.62 s with four; each reader costs ~7.5 MiB of RSS (its own V8 isolate).
 * SNAPFERRY_FUSE_READERS overrides it (1-16), for measuring.
 */
export const FUSE_READERS = readerCount(process.env.SNAPFERRY_FUSE_READERS);

function readerCount(raw: string | undefined): number {
  const n = Number(raw ?? 2);
  return Number.isInteger(n) && n >= 1 && n <= 16 ? n : 2;
}

/**
 * A reader thread: read(2) a request into its one buffer, hand a copy of the request's bytes to
 * the main thread (transferred), read the next. ENOENT: the request was interrupted before we read it; EINTR/EAGAIN: try again;
 * ENODEV (unmounted) or anything else ends the thread, and the session with the last of them.
 */
const READER_SOURCE = `
const { readSync } = require('node:fs');
const { parentPort, workerData } = require('node:worker_threads');
const { fd, size } = workerData;
// one buffer for every read: what is handed over is a copy of the request's own bytes
const buf = Buffer.allocUnsafeSlow(size);
for (;;) {
  let n;
  try { n = readSync(fd, buf, 0, size, null); }
  catch (err) {
    if (err.code === 'ENOENT' || err.code === 'EINTR' || err.code === 'EAGAIN') continue;
    parentPort.postMessage({ end: err.code || String(err) });
    break;
  }
  const ab = buf.buffer.slice(buf.byteOffset, buf.byteOffset + n);
  parentPort.postMessage(ab, [ab]);
}
`;
/** Largest request we accept (we announce max_write = 128 KiB; the kernel adds its headers). */
export const FUSE_REQUEST_BUFFER = 128 * 1024 + 4096;

export interface SessionOptions {
  /** The mount's source, as /proc/mounts shows it. */
  fsname: string;
  subtype: string;
  allowOther?: boolean;
}

export class FuseSessionError extends SnapferryError {}

function run(cmd: string, args: string[], extraFd?: number): Promise<{ status: number; stderr: string }> {
  return new Promise((resolve) => {
    const c = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe', ...(extraFd !== undefined ? [extraFd] : [])] });
    let stderr = '';
    c.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    c.on('error', (err) => resolve({ status: 127, stderr: err.message }));
    c.on('close', (code) => resolve({ status: code ?? 1, stderr: stderr.trim() }));
  });
}

export type RequestHandler = (h: FuseInHeader, body: Buffer) => void;

export class FuseSession {
  private stopped = false;
  private readonly done: Promise<void>;
  private finish!: () => void;

  private constructor(
    readonly fd: number,
    readonly mountPoint: string,
    private handler: RequestHandler,
  ) {
    this.done = new Promise((r) => (this.finish = r));
  }

  /** Opens /dev/fuse and mounts it read-only at `mountPoint`; requests go to `handler` from then on. */
  static async mount(mountPoint: string, opts: SessionOptions, handler: RequestHandler): Promise<FuseSession> {
    let fd: number;
    try {
      fd = openSync('/dev/fuse', 'r+');
    } catch (err) {
      throw new FuseSessionError('E_MOUNT_NO_FUSE', `cannot open /dev/fuse: ${(err as Error).message}`, {}, ExitCode.failure);
    }
    const uid = process.getuid?.() ?? 0;
    const gid = process.getgid?.() ?? 0;
    const o = [`fd=3`, `rootmode=40000`, `user_id=${uid}`, `group_id=${gid}`, 'default_permissions', 'ro', 'nosuid', 'nodev', 'noatime'];
    if (opts.allowOther) o.push('allow_other');
    const s = new FuseSession(fd, mountPoint, handler);
    const r = await run('mount', ['-i', '-t', `fuse.${opts.subtype}`, '-o', o.join(','), opts.fsname, mountPoint], fd);
    if (r.status !== 0) {
      s.stopped = true;
      closeSync(fd);
      const hint = uid !== 0 ? ' (snapferry mount needs root)' : '';
      throw new FuseSessionError('E_MOUNT_FAILED', `cannot mount at ${mountPoint}: ${r.stderr || `mount exited ${r.status}`}${hint}`, { mountPoint }, ExitCode.failure);
    }
    // Reading before the mount exists fails (EPERM); the kernel has queued INIT by now.
    for (let i = 0; i < FUSE_READERS; i++) s.startReader();
    return s;
  }

  /** Resolves when the kernel ends the connection (unmounted, or aborted). */
  get closed(): Promise<void> {
    return this.done;
  }

  private readers = 0;

  private startReader(): void {
    const w = new Worker(READER_SOURCE, { eval: true, workerData: { fd: this.fd, size: Math.max(FUSE_REQUEST_BUFFER, FUSE_MIN_READ_BUFFER) }, 
      // a reader keeps nothing alive (the buffers it fills are transferred): a small young
      // generation saves ~2.5 MiB of RSS per reader; the old-generation cap is far above its needs
      resourceLimits: { maxYoungGenerationSizeMb: 1, maxOldGenerationSizeMb: 16 },
    });
    this.readers++;
    // Node undoes V8 flags set at run time when a worker starts (util/v8-flags.ts)
    w.once('online', reapplyV8Flags);
    w.on('message', (m: ArrayBuffer | { end: string }) => {
      if (!(m instanceof ArrayBuffer)) return;
      const buf = Buffer.from(m);
      if (buf.length < fuse_in_header.SIZE || this.stopped) return;
      const h = parseInHeader(buf);
      this.handler(h, buf.subarray(fuse_in_header.SIZE, Math.min(buf.length, h.len)));
    });
    w.on('exit', () => {
      if (--this.readers === 0) this.stop();
    });
    w.on('error', () => {});
  }

  private stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.close();
  }

  private close(): void {
    try {
      closeSync(this.fd);
    } catch {}
    this.finish();
  }

  /** Replies to request `unique`: error 0 and the payload, or a negative errno and nothing. */
  reply(unique: bigint, error: number, ...payload: Buffer[]): void {
    if (this.stopped) return;
    const len = fuse_out_header.SIZE + payload.reduce((n, b) => n + b.length, 0);
    const hdr = Buffer.allocUnsafe(fuse_out_header.SIZE);
    writeOutHeader(hdr, len, error, unique);
    try {
      writevSync(this.fd, [hdr, ...payload]);
    } catch (err) {
      // ENOENT: the request was interrupted meanwhile; the kernel no longer waits for it
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }

  /** Asks the kernel to unmount (umount(8)); `closed` resolves when it has. */
  async unmount(): Promise<void> {
    if (this.stopped) return this.done;
    const r = await run('umount', [this.mountPoint]);
    if (r.status !== 0) throw new FuseSessionError('E_UMOUNT_FAILED', `cannot unmount ${this.mountPoint}: ${r.stderr}`, { mountPoint: this.mountPoint }, ExitCode.failure);
    return this.done;
  }
}
