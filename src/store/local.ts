/**
 * A Store in a local directory. Atomic put: bytes go to `<name>.partial-<random>` (opened with
 * O_EXCL), end() fsyncs the file, then link(2)s it to the final name — link refuses an existing
 * target, so a name that appeared during the upload fails the put instead of being replaced, as
 * rename(2) would — then unlinks the partial and fsyncs the directory so the new entry survives
 * a crash.
 */
import { constants as fsc } from 'node:fs';
import { link, mkdir, open, readdir, stat, unlink, type FileHandle } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TruncatedError } from '../util/errors.js';
import { StoreError } from './errors.js';
import { checkName, checkPrefix, checkRange, isPartialName, partialName } from './names.js';
import type { PutHandle, Store, StoreFile, StoreObject } from './types.js';

export interface LocalStoreOptions {
  /** Create the directory (mkdir -p) if it does not exist; the backup command passes it. */
  create?: boolean;
}

function ioError(err: unknown, what: string, path: string): StoreError {
  const e = err as NodeJS.ErrnoException;
  return new StoreError('E_STORE_IO', `${what} ${path}: ${e.message}`, { path, errno: e.code ?? null }, { cause: err });
}

async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, fsc.O_RDONLY | fsc.O_DIRECTORY);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

export class LocalStore implements Store {
  private closed = false;

  private constructor(
    readonly url: string,
    readonly root: string,
  ) {}

  static async open(location: string, opts: LocalStoreOptions = {}): Promise<LocalStore> {
    const root = resolve(location.startsWith('file://') ? fileURLToPath(location) : location);
    const st = await stat(root).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw ioError(err, 'stat', root);
      return null;
    });
    if (st === null) {
      if (!opts.create) throw new StoreError('E_STORE_NOT_FOUND', `${root}: no store here (no such directory)`, { path: root });
      await mkdir(root, { recursive: true, mode: 0o700 }).catch((err) => {
        throw ioError(err, 'mkdir', root);
      });
    } else if (!st.isDirectory()) {
      throw new StoreError('E_STORE_NOT_FOUND', `${root}: not a directory`, { path: root });
    }
    // The absolute root, not the spelling given: backup keys its local state by store.url, so
    // `./repo` and `/srv/repo` must name one repository.
    return new LocalStore(root, root);
  }

  private path(name: string): string {
    return join(this.root, ...name.split('/'));
  }

  private live(): void {
    if (this.closed) throw new StoreError('E_STORE_STATE', `${this.url}: store is closed`);
  }

  async list(prefix = ''): Promise<StoreObject[]> {
    this.live();
    checkPrefix(prefix);
    const cut = prefix.lastIndexOf('/');
    const base = cut < 0 ? '' : prefix.slice(0, cut);
    const out: StoreObject[] = [];
    const walk = async (rel: string): Promise<void> => {
      const dir = rel === '' ? this.root : this.path(rel);
      let entries;
      try {
        entries = await readdir(dir, { withFileTypes: true });
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOENT' || code === 'ENOTDIR') return;
        throw ioError(err, 'readdir', dir);
      }
      for (const e of entries) {
        const name = rel === '' ? e.name : `${rel}/${e.name}`;
        if (e.isDirectory()) {
          if (name.startsWith(prefix) || prefix.startsWith(`${name}/`)) await walk(name);
        } else if (e.isFile() && !isPartialName(e.name) && name.startsWith(prefix)) {
          const st = await stat(join(dir, e.name)).catch(() => null);
          if (st) out.push({ name, size: st.size, mtimeMs: st.mtimeMs });
        }
      }
    };
    await walk(base);
    return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  async stat(name: string): Promise<StoreObject | null> {
    this.live();
    checkName(name);
    try {
      const st = await stat(this.path(name));
      return st.isFile() ? { name, size: st.size, mtimeMs: st.mtimeMs } : null;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw ioError(err, 'stat', this.path(name));
    }
  }

  private async openRead(name: string): Promise<FileHandle> {
    try {
      return await open(this.path(name), 'r');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new StoreError('E_STORE_NOT_FOUND', `${this.url}: no object ${name}`, { name });
      }
      throw ioError(err, 'open', this.path(name));
    }
  }

  private static async readExact(fh: FileHandle, name: string, size: number, offset: number, length: number): Promise<Buffer> {
    if (offset + length > size) throw new TruncatedError(name, offset, length, size);
    const buf = Buffer.allocUnsafe(length);
    let done = 0;
    while (done < length) {
      const { bytesRead } = await fh.read(buf, done, length - done, offset + done);
      if (bytesRead === 0) throw new TruncatedError(name, offset, length, offset + done);
      done += bytesRead;
    }
    return buf;
  }

  async get(name: string, offset: number, length: number): Promise<Buffer> {
    this.live();
    checkName(name);
    checkRange(name, offset, length);
    const fh = await this.openRead(name);
    try {
      const { size } = await fh.stat();
      return await LocalStore.readExact(fh, name, size, offset, length);
    } finally {
      await fh.close();
    }
  }

  /** One file handle for all reads; close() releases it (restore and verify close what they open). */
  async open(name: string): Promise<StoreFile> {
    this.live();
    checkName(name);
    const fh = await this.openRead(name);
    const { size } = await fh.stat().catch(async (err) => {
      await fh.close();
      throw ioError(err, 'fstat', this.path(name));
    });
    return {
      size,
      read: (offset: number, length: number) => {
        checkRange(name, offset, length);
        return LocalStore.readExact(fh, name, size, offset, length);
      },
      close: () => fh.close(),
    };
  }

  async delete(name: string): Promise<void> {
    this.live();
    checkName(name);
    await unlink(this.path(name)).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw ioError(err, 'unlink', this.path(name));
    });
  }

  async put(name: string): Promise<PutHandle> {
    this.live();
    checkName(name);
    if (await this.stat(name)) throw new StoreError('E_STORE_EXISTS', `${this.url}: ${name} exists (archives are immutable)`, { name });
    const final = this.path(name);
    const dir = dirname(final);
    await mkdir(dir, { recursive: true, mode: 0o700 }).catch((err) => {
      throw ioError(err, 'mkdir', dir);
    });
    const temp = join(dir, partialName(final.slice(dir.length + 1)));
    const fh = await open(temp, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL, 0o600).catch((err) => {
      throw ioError(err, 'create', temp);
    });
    return new LocalPut(this.url, name, fh, temp, final, dir);
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}

class LocalPut implements PutHandle {
  written = 0;
  private state: 'open' | 'ending' | 'done' | 'aborted' | 'failed' = 'open';

  constructor(
    private readonly url: string,
    private readonly name: string,
    private readonly fh: FileHandle,
    private readonly temp: string,
    private readonly final: string,
    private readonly dir: string,
  ) {}

  private check(): void {
    if (this.state !== 'open') throw new StoreError('E_STORE_STATE', `${this.url}: put ${this.name} is ${this.state}`, { name: this.name });
  }

  async write(chunk: Buffer): Promise<void> {
    this.check();
    let done = 0;
    try {
      while (done < chunk.length) {
        const { bytesWritten } = await this.fh.write(chunk, done, chunk.length - done, this.written + done);
        done += bytesWritten;
      }
    } catch (err) {
      await this.fail();
      throw ioError(err, 'write', this.temp);
    }
    this.written += chunk.length;
  }

  async end(): Promise<void> {
    this.check();
    this.state = 'ending';
    try {
      await this.fh.sync();
      await this.fh.close();
    } catch (err) {
      await this.fail();
      throw ioError(err, 'fsync', this.temp);
    }
    try {
      await link(this.temp, this.final);
    } catch (err) {
      this.state = 'failed';
      await unlink(this.temp).catch(() => undefined);
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
        throw new StoreError('E_STORE_EXISTS', `${this.url}: ${this.name} appeared during the upload; not replaced`, { name: this.name });
      }
      throw ioError(err, 'link', this.final);
    }
    await unlink(this.temp).catch(() => undefined);
    await fsyncDir(this.dir);
    this.state = 'done';
  }

  private async fail(): Promise<void> {
    this.state = 'failed';
    await this.fh.close().catch(() => undefined);
    await unlink(this.temp).catch(() => undefined);
  }

  async abort(): Promise<void> {
    if (this.state === 'done' || this.state === 'aborted') return;
    const wasOpen = this.state === 'open';
    this.state = 'aborted';
    if (wasOpen) await this.fh.close().catch(() => undefined);
    await unlink(this.temp).catch(() => undefined);
  }
}
