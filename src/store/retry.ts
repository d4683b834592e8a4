/**
 * Retries as a decorator (restic's backend/retry): RetryingStore wraps any Store and retries the
 * idempotent operations (list, stat, get, open and its reads, delete, the start of a put) when they
 * fail with a retryable StoreError — a dropped or refused connection — with bounded exponential
 * backoff. Nothing else is retried: a refused name, an existing object, a host key or an
 * authentication failure fail at once. A put in progress is not retried from here (its bytes are
 * gone once written); the SFTP store resumes it itself, with the same policy (withRetries).
 */
import { StoreError, isRetryable } from './errors.js';
import type { PutHandle, Store, StoreFile, StoreObject } from './types.js';

export interface RetryPolicy {
  /** Attempts after the first one. */
  retries: number;
  baseMs: number;
  maxMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = { retries: 5, baseMs: 100, maxMs: 3000 };

export function retryPolicy(retries?: number): RetryPolicy {
  return retries === undefined ? DEFAULT_RETRY : { ...DEFAULT_RETRY, retries: Math.max(0, Math.floor(retries)) };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Runs `op` until it succeeds, fails with a non-retryable error, or has failed retryably
 * `policy.retries + 1` times; then throws E_STORE_CONNECTION naming `what` and the last cause.
 */
export async function withRetries<T>(what: string, policy: RetryPolicy, op: (attempt: number) => Promise<T>): Promise<T> {
  let last: unknown;
  for (let attempt = 0; attempt <= policy.retries; attempt++) {
    if (attempt > 0) await sleep(Math.min(policy.maxMs, policy.baseMs * 2 ** (attempt - 1)));
    try {
      return await op(attempt);
    } catch (err) {
      if (!isRetryable(err)) throw err;
      last = err;
    }
  }
  const cause = last instanceof Error ? last.message : String(last);
  throw new StoreError('E_STORE_CONNECTION', `${what}: gave up after ${policy.retries + 1} attempts (${cause})`, { what, attempts: policy.retries + 1 }, { cause: last, retryable: false });
}

export class RetryingStore implements Store {
  constructor(
    readonly inner: Store,
    readonly policy: RetryPolicy = DEFAULT_RETRY,
  ) {}

  get url(): string {
    return this.inner.url;
  }

  private run<T>(what: string, op: () => Promise<T>): Promise<T> {
    return withRetries(`${this.inner.url}: ${what}`, this.policy, op);
  }

  list(prefix?: string): Promise<StoreObject[]> {
    return this.run('list', () => this.inner.list(prefix));
  }

  stat(name: string): Promise<StoreObject | null> {
    return this.run(`stat ${name}`, () => this.inner.stat(name));
  }

  get(name: string, offset: number, length: number): Promise<Buffer> {
    return this.run(`get ${name}`, () => this.inner.get(name, offset, length));
  }

  async open(name: string): Promise<StoreFile> {
    const file = await this.run(`open ${name}`, () => this.inner.open(name));
    return {
      size: file.size,
      read: (offset: number, length: number) => this.run(`read ${name}`, () => file.read(offset, length)),
      close: () => file.close(),
    };
  }

  delete(name: string): Promise<void> {
    return this.run(`delete ${name}`, () => this.inner.delete(name));
  }

  put(name: string): Promise<PutHandle> {
    return this.run(`put ${name}`, () => this.inner.put(name));
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
