/**
 * One helper thread per process, shared by every job that must not block the event loop (zstd
 * compression, an image backup's block hashing). Each worker thread costs ~12 MiB of RSS by itself
 * (measured here: a bare `node` peaks at 40 MiB, with one idle worker at 52 MiB), and the appliance
 * runs its backups in 256 MiB: one thread for all jobs instead of one per job kind.
 *
 * A job opens a channel: the handler's source text (a function body that receives `require`, `post`
 * and `data` and returns the function that takes each message) is compiled in the thread once per
 * channel, so each channel keeps its own state (a zstd context, a hash state). Messages travel in
 * order in both directions; SharedArrayBuffers passed in `data` or messages are shared, not copied.
 * The sources are our own constant strings, never input.
 *
 * The thread keeps the process alive only while some channel is busy (`ref`), and stops when the last
 * channel closes. If it dies, every open channel fails with the reason.
 */
import { Worker } from 'node:worker_threads';
import { SnapferryError } from './errors.js';
import { reapplyV8Flags } from './v8-flags.js';

const BOOT = `
const { parentPort } = require('node:worker_threads');
const channels = new Map();
parentPort.on('message', (m) => {
  if (m.open !== undefined) {
    const post = (msg, transfer) => parentPort.postMessage({ channel: m.open, msg }, transfer);
    try {
      channels.set(m.open, new Function('require', 'post', 'data', m.source)(require, post, m.data));
    } catch (e) {
      parentPort.postMessage({ channel: m.open, failed: String((e && e.message) || e) });
    }
  } else if (m.close !== undefined) {
    channels.delete(m.close);
  } else {
    const h = channels.get(m.channel);
    if (h) h(m.msg);
  }
});
`;

export class HelperThreadError extends SnapferryError {}

/** One job's end of the helper thread. */
export interface Channel {
  /** Sends a message to the channel's handler. */
  post(msg: unknown): void;
  /** While any channel is busy the thread holds the process open. */
  busy(yes: boolean): void;
  /** Detaches the handler; the last close stops the thread. */
  close(): Promise<void>;
}

interface ChannelSink {
  onMessage(msg: unknown): void;
  onError(err: Error): void;
}

class HelperThread {
  private static current: HelperThread | null = null;
  private readonly worker: Worker;
  private readonly sinks = new Map<number, ChannelSink>();
  private readonly busyChannels = new Set<number>();
  private next = 0;
  private dead: Error | null = null;

  static get(): HelperThread {
    if (!HelperThread.current || HelperThread.current.dead) HelperThread.current = new HelperThread();
    return HelperThread.current;
  }

  private constructor() {
    this.worker = new Worker(BOOT, { eval: true });
    this.worker.once('online', reapplyV8Flags);
    this.worker.unref();
    this.worker.on('message', (m: { channel: number; msg?: unknown; failed?: string }) => {
      const sink = this.sinks.get(m.channel);
      if (!sink) return;
      if (m.failed !== undefined) sink.onError(new HelperThreadError('E_HELPER_THREAD', `helper thread: a job's handler did not compile: ${m.failed}`));
      else sink.onMessage(m.msg);
    });
    const fail = (e: Error): void => {
      this.dead ??= new HelperThreadError('E_HELPER_THREAD', `helper thread stopped: ${e.message}`, {}, undefined, { cause: e });
      if (HelperThread.current === this) HelperThread.current = null;
      for (const s of [...this.sinks.values()]) s.onError(this.dead);
      this.sinks.clear();
    };
    this.worker.on('error', fail);
    this.worker.on('exit', (code) => {
      if (this.sinks.size > 0) fail(new Error(`exit code ${code}`));
    });
  }

  open(source: string, data: unknown, sink: ChannelSink): Channel {
    if (this.dead) throw this.dead;
    const id = this.next++;
    this.sinks.set(id, sink);
    this.worker.postMessage({ open: id, source, data });
    let closed = false;
    return {
      post: (msg) => {
        if (this.dead) throw this.dead;
        this.worker.postMessage({ channel: id, msg });
      },
      busy: (yes) => {
        if (yes) this.busyChannels.add(id);
        else this.busyChannels.delete(id);
        if (this.busyChannels.size > 0) this.worker.ref();
        else this.worker.unref();
      },
      close: async () => {
        if (closed) return;
        closed = true;
        this.sinks.delete(id);
        this.busyChannels.delete(id);
        if (this.busyChannels.size === 0) this.worker.unref();
        if (this.dead) return;
        this.worker.postMessage({ close: id });
        if (this.sinks.size === 0) {
          if (HelperThread.current === this) HelperThread.current = null;
          await this.worker.terminate();
        }
      },
    };
  }
}

/**
 * Opens a channel on the process's helper thread. `source` is the body of a function of
 * (require, post, data) that returns the message handler; `onMessage` gets what the handler posts.
 */
export function openChannel(source: string, data: unknown, onMessage: (msg: unknown) => void, onError: (err: Error) => void): Channel {
  return HelperThread.get().open(source, data, { onMessage, onError });
}
