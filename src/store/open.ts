/** A repository URL to its store: a path (or file://...) is a local directory; sftp://user@host[:port]/path is SFTP. */
import { fileURLToPath } from 'node:url';
import { ExitCode, SnapferryError } from '../util/errors.js';
import { LocalStore } from './local.js';
import type { OpenStoreOptions, Store } from './types.js';

export async function openStore(url: string, opts: OpenStoreOptions = {}): Promise<Store> {
  if (url.startsWith('sftp://')) {
    const { SftpStore } = await import('./sftp.js');
    return SftpStore.open(url, opts);
  }
  if (url.startsWith('file://')) return LocalStore.open(fileURLToPath(url), opts);
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(url)) throw new SnapferryError('E_STORE_URL', `${url}: snapferry stores archives in a directory or at sftp://user@host[:port]/path`, { url }, ExitCode.usage);
  return LocalStore.open(url, opts);
}
