/**
 * Where archives live: one small contract (restic's backend habit), passed by every store through
 * one conformance suite (test/conformance/store.ts).
 *
 * - Names are relative keys with '/' separators; `..`, a leading '/', NUL and empty components are
 *   refused (E_STORE_NAME).
 * - Objects are immutable: put() of an existing name fails (E_STORE_EXISTS).
 * - put() streams and is atomic: the bytes go to a temporary name that list() never shows, renamed
 *   to `name` only when end() resolves. abort() (or a failed put) leaves nothing listed.
 * - get() is ranged; a range past the end is a typed error, never a short buffer.
 * - A PutHandle's write() resolves when the store has room: that is the backpressure. An SFTP put
 *   keeps at most 2 MiB of written-but-unacknowledged bytes; a local put, one chunk.
 * - put() also fails, without replacing anything, if the name appeared while the upload ran.
 * - A missing object is E_STORE_NOT_FOUND for get/open, null for stat, and a no-op for delete (so a
 *   delete retried after a dropped reply is not an error).
 * - Errors a retry may cure are StoreErrors with `retryable` (E_STORE_CONNECTION); retry.ts wraps
 *   a store with bounded backoff for the idempotent operations; an SFTP put resumes by itself.
 */
import type { ByteSink, RandomAccess } from '../archive/types.js';

export interface StoreObject {
  name: string;
  size: number;
  mtimeMs: number;
}

export interface PutHandle extends ByteSink {
  abort(): Promise<void>;
  readonly written: number;
}

/** An object opened for ranged reads; close() releases its handle. */
export interface StoreFile extends RandomAccess {
  close(): Promise<void>;
}

export interface Store {
  /** As the user gave it, without secrets. */
  readonly url: string;
  list(prefix?: string): Promise<StoreObject[]>;
  put(name: string): Promise<PutHandle>;
  get(name: string, offset: number, length: number): Promise<Buffer>;
  open(name: string): Promise<StoreFile>;
  stat(name: string): Promise<StoreObject | null>;
  delete(name: string): Promise<void>;
  close(): Promise<void>;
}

export interface OpenStoreOptions {
  /** Create the location when it holds nothing yet (backup does; restore does not). */
  create?: boolean;
  sshKey?: string;
  knownHostsFile?: string;
  acceptNewHostKey?: boolean;
  /** Reconnect attempts per operation (and per resume of a put) before it fails; default 5. */
  retries?: number;
  /** Time allowed for TCP connect + SSH handshake + authentication; default 20 s. */
  connectTimeoutMs?: number;
}
