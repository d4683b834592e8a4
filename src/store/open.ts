/**
 * A repository URL to its store: a path (or file:///path) is a local directory;
 * sftp://user@host[:port]/path is SFTP, run on the helper thread (thread.ts) and wrapped in the retry
 * decorator (retry.ts).
 */
import { LocalStore } from './local.js';
import { StoreError } from './errors.js';
import { RetryingStore, retryPolicy } from './retry.js';
import type { OpenStoreOptions, Store } from './types.js';

export async function openStore(url: string, opts: OpenStoreOptions = {}): Promise<Store> {
  if (url.startsWith('sftp://')) {
    // SNAPFERRY_STORE_THREAD=0 keeps the SFTP work on the calling thread (for comparison).
    const inner = process.env.SNAPFERRY_STORE_THREAD === '0' ? await (await import('./sftp.js')).SftpStore.open(url, opts) : await (await import('./thread.js')).ThreadStore.open(url, opts);
    return new RetryingStore(inner, retryPolicy(opts.retries));
  }
  if (url.startsWith('file://')) return LocalStore.open(url, opts);
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(url)) throw new StoreError('E_STORE_URL', `${url}: snapferry stores archives in a directory or at sftp://user@host[:port]/path`, { url });
  return LocalStore.open(url, opts);
}
