/**
 * A store in a local directory (or a mounted NFS/CIFS share). A put writes `<name>.partial-<rand>`,
 * fsyncs it, links it to its final name (link(2) fails if the name exists: no object is ever
 * replaced) and fsyncs the directory, so a crash leaves a complete object or none under the name.
 */
import { randomBytes } from 'node:crypto';
import { constants as F } from 'node:fs';
import { link, mkdir, open, readdir, rm, stat, unlink, type FileHandle } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { ExitCode, SnapferryError, TruncatedError } from '../util/errors.js';
import type { PutHandle, Store, StoreFile, StoreObject } from './types.js';

export class StoreError extends SnapferryError {}

export const PARTIAL_MARK = '.partial-';
/** Objects a list() returns at most (a repository holds a few per backup). */
export const MAX_LIST = 1_000_000;

/** Refuses names that could leave the store or alias another: '..', '.', empty components, NUL, a leading '/'. */
export function checkName(name: string): void {
  const bad = name === '' || name.startsWith('/') || name.includes('\0') || name.split('/').some((c) => c === '' || c === '.' || c === '..') || name.includes(PARTIAL_MARK);
  if (bad) throw new StoreError('E_STORE_NAME', `refusing the object name '${name}'`, { name }, ExitCode.usage);
}

async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

export class LocalStore implements Store {
  private constructor(
    readonly url: string,
    private readonly root: string,
  ) {}

  static async open(path: string, opts: { create?: boolean } = {}): Promise<LocalStore> {
    const root = resolve(path);
    try {
      const st = await stat(root);
      if (!st.isDirectory()) throw new StoreError('E_STORE_NOT_DIR', `${root} is not a directory`, { path: root }, ExitCode.usage);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      if (!opts.create) throw new StoreError('E_STORE_NOT_FOUND', `${root}: no such repository directory`, { path: root }, ExitCode.notFound);
      await mkdir(root, { recursive: true, mode: 0o700 });
    }
    return new LocalStore(root, root);
  }

  private abs(name: string): string {
    checkName(name);
    return join(this.root, name);
  }

  async list(prefix = ''): Promise<StoreObject[]> {
    const out: StoreObject[] = [];
    const walk = async (rel: string): Promise<void> => {
      let names;
      try {
        names = await readdir(join(this.root, rel), { withFileTypes: true });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
        throw err;
      }
      for (const d of names) {
        const name = rel ? `${rel}/${d.name}` : d.name;
        if (d.isDirectory()) {
          if (prefix.startsWith(`${name}/`) || name.startsWith(prefix) || prefix === '') await walk(name);
        } else if (d.isFile() && !d.name.includes(PARTIAL_MARK) && name.startsWith(prefix)) {
          const st = await stat(join(this.root, name));
          out.push({ name, size: st.size, mtimeMs: st.mtimeMs });
          if (out.length > MAX_LIST) throw new StoreError('E_STORE_LIST', `${this.url}: more than ${MAX_LIST} objects`, {}, ExitCode.failure);
        }
      }
    };
    await walk('');
    return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  async stat(name: string): Promise<StoreObject | null> {
    try {
      const st = await stat(this.abs(name));
      return st.isFile() ? { name, size: st.size, mtimeMs: st.mtimeMs } : null;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
  }

  async put(name: string): Promise<PutHandle> {
    const final = this.abs(name);
    if (await this.stat(name)) throw new StoreError('E_STORE_EXISTS', `${name} exists in ${this.url} (archives are immutable)`, { name }, ExitCode.failure);
    await mkdir(dirname(final), { recursive: true, mode: 0o700 });
    const tmp = `${final}${PARTIAL_MARK}${randomBytes(6).toString('hex')}`;
    const fh: FileHandle = await open(tmp, F.O_WRONLY | F.O_CREAT | F.O_EXCL, 0o600);
    let written = 0;
    let done = false;
    const abort = async (): Promise<void> => {
      if (done) return;
      done = true;
      await fh.close().catch(() => {});
      await rm(tmp, { force: true });
    };
    return {
      get written() {
        return written;
      },
      write: async (chunk: Buffer) => {
        if (done) throw new StoreError('E_STORE_CLOSED', `${name}: write after end or abort`, { name }, ExitCode.failure);
        let off = 0;
        while (off < chunk.length) {
          const { bytesWritten } = await fh.write(chunk, off, chunk.length - off, written);
          off += bytesWritten;
          written += bytesWritten;
        }
      },
      end: async () => {
        if (done) throw new StoreError('E_STORE_CLOSED', `${name}: end after end or abort`, { name }, ExitCode.failure);
        try {
          await fh.sync();
          await fh.close();
          done = true;
          // link, not rename: it fails when the name appeared meanwhile, and then nothing is replaced
          await link(tmp, final);
          await unlink(tmp);
          await fsyncDir(dirname(final));
        } catch (err) {
          done = true;
          await rm(tmp, { force: true });
          if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new StoreError('E_STORE_EXISTS', `${name} appeared in ${this.url} during the upload; not replaced`, { name }, ExitCode.failure);
          throw err;
        }
      },
      abort,
    };
  }

  async get(name: string, offset: number, length: number): Promise<Buffer> {
    const fh = await open(this.abs(name), 'r');
    try {
      return await readExact(fh, name, offset, length, (await fh.stat()).size);
    } finally {
      await fh.close();
    }
  }

  async open(name: string): Promise<StoreFile> {
    const fh = await open(this.abs(name), 'r');
    const size = (await fh.stat()).size;
    return { size, read: (offset, length) => readExact(fh, name, offset, length, size), close: () => fh.close() };
  }

  async delete(name: string): Promise<void> {
    await rm(this.abs(name), { force: true });
  }

  async close(): Promise<void> {}
}

async function readExact(fh: FileHandle, name: string, offset: number, length: number, size: number): Promise<Buffer> {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > size) throw new TruncatedError(name, offset, length, size);
  const out = Buffer.allocUnsafe(length);
  let got = 0;
  while (got < length) {
    const { bytesRead } = await fh.read(out, got, length - got, offset + got);
    if (bytesRead === 0) throw new TruncatedError(name, offset, length, offset + got);
    got += bytesRead;
  }
  return out;
}
