/**
 * An SFTP store run on the process's helper thread (util/helper-thread.ts): the SftpStore itself —
 * ssh2's packets, its encryption and the socket's writes, the put's resume and commit protocol —
 * works there, and the event loop that walks, reads and archives only posts requests.
 *
 * Why: over SFTP on loopback, ssh2's work was ~40% of a file backup's main thread (CPU profile of
 * bench/backup.sh's ext4 volume: socket writes 1.8 s, packet padding 0.6 s, packet encryption and
 * copies, and the collections of the buffers they drop), while the helper thread (zstd) sat idle
 * 90% of the time. This is the same store, behind the same contract, moved.
 *
 * The wire between the threads: each request carries an id and gets one answer, a value or an error
 * (rebuilt as the same StoreError code, data and retryable flag). A put's bytes go through a slot
 * both threads share (ThreadPut); ranges read come back as buffers that move (transferred, not
 * cloned).
 */
import { openChannel, type Channel } from '../util/helper-thread.js';
import { SnapferryError, type ErrorData, type ExitCodeValue } from '../util/errors.js';
import { StoreError, type StoreErrorCode } from './errors.js';
import type { OpenStoreOptions, PutHandle, Store, StoreFile, StoreObject } from './types.js';

/**
 * The thread's side, as source text (helper-thread.ts compiles it there). It imports sftp.ts as a
 * module: from dist, the compiled sftp.js; from the TypeScript sources (tests, tsx), through tsx's
 * loader, which the main thread has and an eval'd worker does not.
 */
const STORE_JOB = `
const loaded = (data.tsx ? import('tsx/esm/api').then((t) => t.register()) : Promise.resolve())
  .then(() => import(data.reclaim))
  .then((r) => r.setReclaimBytes(data.reclaimBytes))
  .then(() => (data.randomPool ? import(data.randomPool).then((m) => m.poolSmallRandomFills()) : undefined))
  .then(() => import(data.module));
let store = null;
const puts = new Map();
const files = new Map();
const errorOf = (e) => ({
  name: (e && e.name) || 'Error',
  code: e && typeof e.code === 'string' ? e.code : undefined,
  message: String((e && e.message) || e),
  data: (e && e.data) || {},
  exitCode: e && typeof e.exitCode === 'number' ? e.exitCode : undefined,
  retryable: !!(e && e.retryable),
});
// A Buffer to an exact-size ArrayBuffer that can move (a pool slice cannot: it would take the pool along).
const movable = (b) => {
  if (b.byteOffset === 0 && b.byteLength === b.buffer.byteLength && !(b.buffer instanceof SharedArrayBuffer)) return b.buffer;
  const own = new ArrayBuffer(b.length);
  new Uint8Array(own).set(b);
  return own;
};
const stateError = (what) => Object.assign(new Error(what), { name: 'StoreError', code: 'E_STORE_STATE' });
const putOf = (m) => {
  const p = puts.get(m.put);
  if (!p) throw stateError(data.url + ': the put is ended or aborted');
  return p;
};
const answer = (id, p) =>
  p.then(
    (v) => {
      if (Buffer.isBuffer(v)) {
        const ab = movable(v);
        post({ id, bytes: ab }, [ab]);
      } else post({ id, value: v });
    },
    (e) => post({ id, error: errorOf(e) }),
  );
const ops = {
  open: async (m) => {
    const { SftpStore } = await loaded;
    store = await SftpStore.open(m.url, m.opts);
  },
  list: (m) => store.list(m.prefix),
  stat: (m) => store.stat(m.name),
  get: (m) => store.get(m.name, m.offset, m.length),
  delete: (m) => store.delete(m.name),
  close: async () => {
    if (store) await store.close();
  },
  put: async (m) => {
    puts.set(m.put, { handle: await store.put(m.name), slot: Buffer.from(m.slot), chain: Promise.resolve() });
  },
  write: (m) => {
    const p = putOf(m);
    p.chain = p.chain.then(() => p.handle.write(p.slot.subarray(0, m.length)));
    return p.chain;
  },
  end: (m) => {
    const p = putOf(m);
    return p.chain.then(() => p.handle.end()).finally(() => puts.delete(m.put));
  },
  abort: (m) => {
    const p = puts.get(m.put);
    puts.delete(m.put);
    return p ? p.handle.abort() : Promise.resolve();
  },
  fopen: async (m) => {
    const f = await store.open(m.name);
    files.set(m.file, f);
    return f.size;
  },
  read: (m) => {
    const f = files.get(m.file);
    if (!f) throw stateError(data.url + ': read of a closed object');
    return f.read(m.offset, m.length);
  },
  fclose: (m) => {
    const f = files.get(m.file);
    files.delete(m.file);
    return f ? f.close() : Promise.resolve();
  },
};
return (m) => answer(m.id, Promise.resolve().then(() => ops[m.op](m)));
`;

/**
 * The thread's util/reclaim.ts step: a minor GC there every 4 MiB of ssh2's dropped packet copies.
 * Every 1 MiB was ~2,300 forced scavenges per backup of the ext4 bench volume (~0.8 s of the
 * thread's time by --trace-gc); alternating runs with 4 MiB: ext4 11.09-11.38 s against
 * 11.42-11.49 s, NTFS 12.33-13.39 against 12.94-13.32, the same peak RSS (131-135 MB).
 */
const THREAD_RECLAIM_BYTES = 4 * 1024 * 1024;

/**
 * Bytes a put's shared slot carries to the thread per write message. Each message and its answer
 * cost both threads (structured clone, wake-up, event dispatch): ext4 bench volume over SFTP,
 * alternating runs, 256 KiB slots 12.18-12.60 s, 1 MiB slots 11.45-11.61 s, 2-4 MB more RSS.
 */
const SLOT_BYTES = 1024 * 1024;

interface Answer {
  id: number;
  value?: unknown;
  bytes?: ArrayBuffer;
  error?: { name: string; code?: string; message: string; data: ErrorData; exitCode?: number; retryable: boolean };
}

interface Waiter {
  resolve(v: unknown): void;
  reject(e: Error): void;
}

function rebuild(e: NonNullable<Answer['error']>): Error {
  if (e.name === 'StoreError' && e.code) return new StoreError(e.code as StoreErrorCode, e.message, e.data, { retryable: e.retryable });
  if (e.code) return new SnapferryError(e.code, e.message, e.data, e.exitCode as ExitCodeValue | undefined);
  return new StoreError('E_STORE_IO', e.message, e.data);
}

export class ThreadStore implements Store {
  private readonly waiters = new Map<number, Waiter>();
  private next = 0;
  private nextHandle = 0;
  private dead: Error | null = null;
  private readonly channel: Channel;

  private constructor(readonly url: string) {
    const tsx = import.meta.url.endsWith('.ts');
    this.channel = openChannel(
      STORE_JOB,
      {
        module: new URL(tsx ? './sftp.ts' : './sftp.js', import.meta.url).href,
        reclaim: new URL(tsx ? '../util/reclaim.ts' : '../util/reclaim.js', import.meta.url).href,
        reclaimBytes: THREAD_RECLAIM_BYTES,
        // ssh2's per-packet padding from a pool (random-pool.ts), before ssh2 loads on the thread:
        // ext4 bench volume over SFTP, alternating runs, 10.77-11.62 s against 11.10-12.77 s
        randomPool: new URL(tsx ? './random-pool.ts' : './random-pool.js', import.meta.url).href,
        tsx,
        url,
      },
      (msg) => this.onAnswer(msg as Answer),
      (err) => {
        this.dead = new StoreError('E_STORE_IO', `${url}: the store's thread stopped: ${err.message}`, {}, { cause: err });
        for (const w of this.waiters.values()) w.reject(this.dead);
        this.waiters.clear();
      },
    );
  }

  /** Opens (and with `create`, makes) the SFTP repository at `url` on the helper thread. */
  static async open(url: string, opts: OpenStoreOptions = {}): Promise<ThreadStore> {
    const s = new ThreadStore(url);
    try {
      await s.request({ op: 'open', url, opts });
    } catch (err) {
      await s.channel.close();
      throw err;
    }
    return s;
  }

  private onAnswer(a: Answer): void {
    const w = this.waiters.get(a.id);
    if (!w) return;
    this.waiters.delete(a.id);
    if (this.waiters.size === 0) this.channel.busy(false);
    if (a.error) w.reject(rebuild(a.error));
    else if (a.bytes) w.resolve(Buffer.from(a.bytes));
    else w.resolve(a.value);
  }

  /** One request to the thread; the process stays up while any is unanswered. */
  request<T = void>(msg: Record<string, unknown>): Promise<T> {
    if (this.dead) return Promise.reject(this.dead);
    const id = this.next++;
    return new Promise<T>((resolve, reject) => {
      this.waiters.set(id, { resolve: resolve as (v: unknown) => void, reject });
      if (this.waiters.size === 1) this.channel.busy(true);
      this.channel.post({ ...msg, id });
    });
  }

  list(prefix?: string): Promise<StoreObject[]> {
    return this.request({ op: 'list', prefix });
  }

  stat(name: string): Promise<StoreObject | null> {
    return this.request({ op: 'stat', name });
  }

  get(name: string, offset: number, length: number): Promise<Buffer> {
    return this.request({ op: 'get', name, offset, length });
  }

  delete(name: string): Promise<void> {
    return this.request({ op: 'delete', name });
  }

  async open(name: string): Promise<StoreFile> {
    const file = this.nextHandle++;
    const size = await this.request<number>({ op: 'fopen', name, file });
    return {
      size,
      read: (offset, length) => this.request<Buffer>({ op: 'read', file, offset, length }),
      close: () => this.request({ op: 'fclose', file }),
    };
  }

  async put(name: string): Promise<PutHandle> {
    const put = this.nextHandle++;
    const slot = new SharedArrayBuffer(SLOT_BYTES);
    await this.request({ op: 'put', name, put, slot });
    return new ThreadPut(this, put, Buffer.from(slot));
  }

  async close(): Promise<void> {
    if (!this.dead) await this.request({ op: 'close' }).catch(() => undefined);
    await this.channel.close();
  }
}

/**
 * A put whose SftpPut lives on the thread. Its writes pass through one shared slot (a
 * SharedArrayBuffer both threads see): a piece is copied in, the thread's write copies it into the
 * put's ring, and write() resolves when the thread's write has — so the backpressure is exactly the
 * SftpPut's (PUT_BUFFER_BYTES unacknowledged at most), and no buffer is allocated per write on
 * either side.
 */
class ThreadPut implements PutHandle {
  written = 0;

  constructor(
    private readonly store: ThreadStore,
    private readonly put: number,
    private readonly slot: Buffer,
  ) {}

  async write(chunk: Buffer): Promise<void> {
    for (let at = 0; at < chunk.length; ) {
      const n = chunk.copy(this.slot, 0, at, Math.min(chunk.length, at + this.slot.length));
      await this.store.request({ op: 'write', put: this.put, length: n });
      this.written += n;
      at += n;
    }
  }

  async end(): Promise<void> {
    await this.store.request({ op: 'end', put: this.put });
  }

  async abort(): Promise<void> {
    await this.store.request({ op: 'abort', put: this.put });
  }
}
