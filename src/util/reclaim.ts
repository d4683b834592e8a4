/**
 * Prompt freeing of short-lived native buffers.
 *
 * Some steps of a backup must take a fresh ArrayBuffer for every piece of data that passes: node:crypto's
 * `cipher.update` returns a new 64 KiB Buffer per age chunk (there is no update-into), and the SFTP
 * store keeps a copy of each write until the server acknowledges it. V8 frees such a buffer only at
 * its next scavenge, and a scavenge comes when the young generation fills with JS objects, which a
 * byte pump makes few of per MiB. Measured on bench/image.sh's 1.9 GB image backup: 18 MiB of array
 * buffers live, but 50-60 MiB held, the rest dead and waiting; the peak RSS was 147 MiB.
 *
 * A step that drops such buffers calls `released(bytes)`; every RECLAIM_BYTES a minor GC (a scavenge
 * of a small young generation: ~1 ms here) frees them. The `gc` function is V8's (`--expose-gc`, set
 * at run time, as jest's leak detector does); where it is unavailable this does nothing.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/** Dead native bytes allowed to wait for a collection. */
export const RECLAIM_BYTES = 8 * 1024 * 1024;

type GcFunction = (options?: { type?: 'major' | 'minor'; execution?: 'sync' | 'async' }) => void;

let gc: GcFunction | null | undefined;
let pending = 0;
let collections = 0;

function gcFunction(): GcFunction | null {
  if (gc === undefined) {
    try {
      setFlagsFromString('--expose-gc');
      const f: unknown = runInNewContext('typeof gc === "function" ? gc : null');
      gc = typeof f === 'function' ? (f as GcFunction) : null;
    } catch {
      gc = null;
    }
  }
  return gc;
}

let reclaimBytes = RECLAIM_BYTES;

/**
 * Sets this thread's RECLAIM_BYTES. The SFTP store's thread (store/thread.ts) collects more often:
 * its garbage is ssh2's packet copies, and what waits there for a collection also stays in that
 * thread's own malloc arena, which the rest of the process cannot reuse.
 */
export function setReclaimBytes(bytes: number): void {
  reclaimBytes = bytes;
}

/** `bytes` of native buffers just became garbage. */
export function released(bytes: number): void {
  pending += bytes;
  if (pending < reclaimBytes) return;
  pending = 0;
  const f = gcFunction();
  if (!f) return;
  f({ type: 'minor' });
  collections++;
}

/** Minor collections run so far (for tests and benchmarks). */
export function reclaimCollections(): number {
  return collections;
}
