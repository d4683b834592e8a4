/**
 * A store on an SFTP server (ssh2), following OpenSSH's conventions:
 * - keys: --ssh-key FILE, else ssh-agent ($SSH_AUTH_SOCK), else ~/.ssh/id_ed25519, id_ecdsa, id_rsa,
 *   where ~ is the passwd home, as OpenSSH takes it (not $HOME);
 * - host keys: checked against ~/.ssh/known_hosts (plain and hashed `|1|salt|hash` names,
 *   `[host]:port` for other ports); an unknown host is refused unless acceptNewHostKey (then
 *   recorded, like StrictHostKeyChecking=accept-new); a changed key is always refused.
 * URL: sftp://user@host[:port]/absolute/path, or sftp://user@host/~/path relative to the login's home.
 *
 * Writes are pipelined (up to WRITE_WINDOW requests of WRITE_CHUNK bytes in flight). A put keeps
 * the bytes of its unacknowledged writes; when the connection drops it reconnects (bounded
 * backoff), reopens its partial file and writes them again — SFTP writes carry their offset, so
 * that is exact — and the upload goes on. A partial object lives under a name list() never shows
 * and gets its final name by hardlink@openssh.com (which fails if the name exists) or rename.
 */
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import { userInfo, homedir } from 'node:os';
import { join, posix } from 'node:path';
import ssh2 from 'ssh2';
import type { SFTPWrapper, ConnectConfig } from 'ssh2';
import { ExitCode, SnapferryError, TruncatedError } from '../util/errors.js';
import { PARTIAL_MARK, StoreError, checkName, MAX_LIST } from './local.js';
import type { OpenStoreOptions, PutHandle, Store, StoreFile, StoreObject } from './types.js';

const { Client } = ssh2;

export const WRITE_CHUNK = 32 * 1024;
export const WRITE_WINDOW = 64;
export const READ_CHUNK = 64 * 1024;
export const READ_WINDOW = 16;
/** Reconnects tried for one operation before it fails. */
export const RECONNECTS = 5;

function passwdHome(): string {
  try {
    return userInfo().homedir;
  } catch {
    return homedir();
  }
}

interface Target {
  user: string;
  host: string;
  port: number;
  path: string;
}

export function parseSftpUrl(url: string): Target {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new StoreError('E_STORE_URL', `${url}: not a URL (sftp://user@host[:port]/path)`, { url }, ExitCode.usage);
  }
  if (u.protocol !== 'sftp:' || !u.hostname || u.password) throw new StoreError('E_STORE_URL', `${url}: want sftp://user@host[:port]/path (no password: keys only)`, { url }, ExitCode.usage);
  const raw = decodeURIComponent(u.pathname);
  const path = raw.startsWith('/~/') ? raw.slice(3) : raw === '/~' ? '.' : raw;
  return { user: decodeURIComponent(u.username) || userInfo().username, host: u.hostname.replace(/^\[|\]$/g, ''), port: u.port ? Number(u.port) : 22, path: path || '/' };
}

function knownHostNames(host: string, port: number): string[] {
  return port === 22 ? [host] : [`[${host}]:${port}`];
}

/** The known_hosts verdict for a host key blob: known, changed (another key is recorded) or unknown. */
export function checkKnownHosts(text: string, host: string, port: number, keyType: string, blob: Buffer): 'known' | 'changed' | 'unknown' {
  const names = knownHostNames(host, port);
  const b64 = blob.toString('base64');
  let seen = false;
  for (const line of text.split('\n')) {
    const l = line.trim();
    if (!l || l.startsWith('#') || l.startsWith('@')) continue;
    const [hosts, type, key] = l.split(/\s+/);
    if (!hosts || !type || !key) continue;
    const match = hosts.split(',').some((h) => {
      if (h.startsWith('|1|')) {
        const [, , salt, hash] = h.split('|');
        if (!salt || !hash) return false;
        return names.some((n) => createHmac('sha1', Buffer.from(salt, 'base64')).update(n).digest('base64') === hash);
      }
      return names.includes(h);
    });
    if (!match) continue;
    if (type === keyType && key === b64) return 'known';
    if (type === keyType) seen = true;
  }
  return seen ? 'changed' : 'unknown';
}

function keyTypeOf(blob: Buffer): string {
  const n = blob.readUInt32BE(0);
  return blob.subarray(4, 4 + n).toString('latin1');
}

function sshError(err: unknown, t: Target): SnapferryError {
  if (err instanceof SnapferryError) return err;
  const e = err as Error & { level?: string; code?: string };
  if (e.level === 'client-authentication') return new StoreError('E_SSH_AUTH', `${t.user}@${t.host}:${t.port}: no key was accepted (${e.message})`, { host: t.host, port: t.port, user: t.user }, ExitCode.failure);
  return new StoreError('E_SSH', `${t.user}@${t.host}:${t.port}: ${e.message}`, { host: t.host, port: t.port, errno: e.code }, ExitCode.failure);
}

const cb =
  <T>(resolve: (v: T) => void, reject: (e: unknown) => void) =>
  (err: unknown, v?: T) =>
    err ? reject(err) : resolve(v as T);

/** SFTP status codes that mean "no such file" (ssh2 puts the code on the error). */
function isNoSuchFile(err: unknown): boolean {
  return (err as { code?: number }).code === 2;
}

interface Session {
  conn: InstanceType<typeof Client>;
  sftp: SFTPWrapper;
  closed: boolean;
}

export class SftpStore implements Store {
  private session: Session | null = null;
  private connecting: Promise<Session> | null = null;

  private constructor(
    readonly url: string,
    private readonly t: Target,
    private readonly opts: OpenStoreOptions,
  ) {}

  static async open(url: string, opts: OpenStoreOptions = {}): Promise<SftpStore> {
    const s = new SftpStore(url, parseSftpUrl(url), opts);
    const { sftp } = await s.connect();
    const st = await new Promise<unknown>((res) => sftp.stat(s.t.path, (err, v) => res(err ? err : v)));
    if (st instanceof Error) {
      if (!isNoSuchFile(st)) throw sshError(st, s.t);
      if (!opts.create) throw new StoreError('E_STORE_NOT_FOUND', `${url}: no such repository directory`, { url }, ExitCode.notFound);
      await s.mkdirs(sftp, s.t.path);
    }
    return s;
  }

  private authConfig(): Partial<ConnectConfig> {
    if (this.opts.sshKey) return { privateKey: readFileSync(this.opts.sshKey) };
    const cfg: Partial<ConnectConfig> = {};
    if (process.env.SSH_AUTH_SOCK) cfg.agent = process.env.SSH_AUTH_SOCK;
    for (const n of ['id_ed25519', 'id_ecdsa', 'id_rsa']) {
      const p = join(passwdHome(), '.ssh', n);
      if (existsSync(p)) {
        cfg.privateKey = readFileSync(p);
        break;
      }
    }
    return cfg;
  }

  private connect(): Promise<Session> {
    if (this.session && !this.session.closed) return Promise.resolve(this.session);
    this.connecting ??= new Promise<Session>((resolve, reject) => {
      const conn = new Client();
      const knownHosts = this.opts.knownHostsFile ?? join(passwdHome(), '.ssh', 'known_hosts');
      let hostError: SnapferryError | null = null;
      const s: Partial<Session> = { conn, closed: false };
      conn.on('ready', () => {
        conn.sftp((err, sftp) => {
          if (err) return reject(sshError(err, this.t));
          s.sftp = sftp;
          this.session = s as Session;
          resolve(this.session);
        });
      });
      conn.on('error', (err) => {
        s.closed = true;
        reject(hostError ?? sshError(err, this.t));
      });
      conn.on('close', () => {
        s.closed = true;
      });
      conn.connect({
        host: this.t.host,
        port: this.t.port,
        username: this.t.user,
        readyTimeout: 20_000,
        keepaliveInterval: 15_000,
        ...this.authConfig(),
        hostVerifier: (blob: Buffer) => {
          const type = keyTypeOf(blob);
          const text = existsSync(knownHosts) ? readFileSync(knownHosts, 'utf8') : '';
          const verdict = checkKnownHosts(text, this.t.host, this.t.port, type, blob);
          const fp = `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`;
          if (verdict === 'known') return true;
          if (verdict === 'changed') {
            hostError = new StoreError('E_SSH_HOSTKEY_CHANGED', `${this.t.host}:${this.t.port}: the host key (${type} ${fp}) differs from the one in ${knownHosts}: refusing (someone may be in the middle)`, { host: this.t.host, port: this.t.port, fingerprint: fp }, ExitCode.failure);
            return false;
          }
          if (!this.opts.acceptNewHostKey) {
            hostError = new StoreError('E_SSH_HOSTKEY_UNKNOWN', `${this.t.host}:${this.t.port}: unknown host key ${type} ${fp} (not in ${knownHosts}); check it and pass --accept-new-host-key, or add it with ssh-keyscan`, { host: this.t.host, port: this.t.port, fingerprint: fp }, ExitCode.failure);
            return false;
          }
          appendFileSync(knownHosts, `${knownHostNames(this.t.host, this.t.port)[0]} ${type} ${blob.toString('base64')}\n`, { mode: 0o600 });
          return true;
        },
      });
    }).finally(() => {
      this.connecting = null;
    });
    return this.connecting;
  }

  /** Runs an idempotent operation, reconnecting (with backoff) when the connection drops. */
  private async retry<T>(what: string, fn: (sftp: SFTPWrapper) => Promise<T>): Promise<T> {
    let last: unknown;
    for (let attempt = 0; attempt <= RECONNECTS; attempt++) {
      if (attempt) await new Promise((r) => setTimeout(r, Math.min(4000, 100 * 2 ** attempt)));
      let s: Session;
      try {
        s = await this.connect();
      } catch (err) {
        if (err instanceof StoreError && (err.code.startsWith('E_SSH_HOSTKEY') || err.code === 'E_SSH_AUTH')) throw err;
        last = err;
        continue;
      }
      try {
        return await fn(s.sftp);
      } catch (err) {
        if (!s.closed) throw err instanceof SnapferryError ? err : sshError(err, this.t);
        last = err;
      }
    }
    throw new StoreError('E_STORE_CONNECTION', `${this.url}: ${what}: the connection dropped ${RECONNECTS + 1} times (${(last as Error)?.message})`, { url: this.url }, ExitCode.failure);
  }

  private full(name: string): string {
    checkName(name);
    return posix.join(this.t.path, name);
  }

  private async mkdirs(sftp: SFTPWrapper, dir: string): Promise<void> {
    const parts = dir.split('/');
    let cur = dir.startsWith('/') ? '' : '.';
    for (const p of parts) {
      if (!p) continue;
      cur = cur === '' ? `/${p}` : `${cur}/${p}`;
      await new Promise<void>((res, rej) =>
        sftp.mkdir(cur, { mode: 0o700 }, (err) => {
          if (!err) return res();
          sftp.stat(cur, (e2, st) => (!e2 && st.isDirectory() ? res() : rej(sshError(err, this.t))));
        }),
      );
    }
  }

  async list(prefix = ''): Promise<StoreObject[]> {
    return this.retry('list', async (sftp) => {
      const out: StoreObject[] = [];
      const walk = async (rel: string): Promise<void> => {
        const dir = rel ? posix.join(this.t.path, rel) : this.t.path;
        const entries = await new Promise<{ filename: string; attrs: { size: number; mtime: number; mode: number } }[]>((res, rej) =>
          sftp.readdir(dir, (err, list) => (err ? (isNoSuchFile(err) ? res([]) : rej(err)) : res(list as never))),
        );
        for (const e of entries) {
          const name = rel ? `${rel}/${e.filename}` : e.filename;
          const type = e.attrs.mode & 0o170000;
          if (type === 0o040000) {
            if (prefix === '' || prefix.startsWith(`${name}/`) || name.startsWith(prefix)) await walk(name);
          } else if (type === 0o100000 && !e.filename.includes(PARTIAL_MARK) && name.startsWith(prefix)) {
            out.push({ name, size: e.attrs.size, mtimeMs: e.attrs.mtime * 1000 });
            if (out.length > MAX_LIST) throw new StoreError('E_STORE_LIST', `${this.url}: more than ${MAX_LIST} objects`, {}, ExitCode.failure);
          }
        }
      };
      await walk('');
      return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    });
  }

  async stat(name: string): Promise<StoreObject | null> {
    const p = this.full(name);
    return this.retry('stat', (sftp) => new Promise((res, rej) => sftp.stat(p, (err, st) => (err ? (isNoSuchFile(err) ? res(null) : rej(err)) : res(st.isFile() ? { name, size: st.size, mtimeMs: st.mtime * 1000 } : null)))));
  }

  async get(name: string, offset: number, length: number): Promise<Buffer> {
    const ra = await this.open(name);
    try {
      return await ra.read(offset, length);
    } finally {
      await ra.close();
    }
  }

  async open(name: string): Promise<StoreFile> {
    const p = this.full(name);
    const st = await this.stat(name);
    if (!st) throw new StoreError('E_STORE_NOT_FOUND', `${name}: not in ${this.url}`, { name }, ExitCode.notFound);
    const size = st.size;
    let handle: { s: Session; h: Buffer } | null = null;
    const handleFor = async (sftp: SFTPWrapper): Promise<Buffer> => {
      if (handle && !handle.s.closed && handle.s.sftp === sftp) return handle.h;
      const h = await new Promise<Buffer>((res, rej) => sftp.open(p, 'r', cb(res, rej)));
      handle = { s: this.session!, h };
      return h;
    };
    const readPiece = (sftp: SFTPWrapper, h: Buffer, out: Buffer, at: number, off: number, len: number): Promise<void> =>
      new Promise((res, rej) =>
        sftp.read(h, out, at, len, off, (err, n) => {
          if (err) return rej(err);
          if (n === 0) return rej(new TruncatedError(name, off, len, off));
          if (n < len) return readPiece(sftp, h, out, at + n, off + n, len - n).then(res, rej);
          res();
        }),
      );
    return {
      size,
      read: (offset: number, length: number) => {
        if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > size) return Promise.reject(new TruncatedError(name, offset, length, size));
        return this.retry(`read ${name}`, async (sftp) => {
          const h = await handleFor(sftp);
          const out = Buffer.allocUnsafe(length);
          const pieces: Promise<void>[] = [];
          for (let at = 0; at < length; at += READ_CHUNK) {
            pieces.push(readPiece(sftp, h, out, at, offset + at, Math.min(READ_CHUNK, length - at)));
            if (pieces.length >= READ_WINDOW) await pieces.shift();
          }
          await Promise.all(pieces);
          return out;
        });
      },
      close: async () => {
        const hd = handle as { s: Session; h: Buffer } | null;
        if (hd && !hd.s.closed) await new Promise<void>((res) => hd.s.sftp.close(hd.h, () => res()));
      },
    };
  }

  async put(name: string): Promise<PutHandle> {
    const final = this.full(name);
    if (await this.stat(name)) throw new StoreError('E_STORE_EXISTS', `${name} exists in ${this.url} (archives are immutable)`, { name }, ExitCode.failure);
    const tmp = `${final}${PARTIAL_MARK}${randomBytes(6).toString('hex')}`;
    await this.retry('mkdir', (sftp) => this.mkdirs(sftp, posix.dirname(final)));
    let h: { s: Session; h: Buffer } = await this.retry('open', async (sftp) => ({ s: this.session!, h: await new Promise<Buffer>((res, rej) => sftp.open(tmp, 'wx', { mode: 0o600 }, cb(res, rej))) }));
    /** Writes sent and not yet acknowledged: resent after a reconnect. */
    const unacked = new Map<number, Buffer>();
    const waiters: (() => void)[] = [];
    let written = 0;
    let failure: unknown = null;
    let done = false;
    let reconnecting: Promise<void> | null = null;

    const reopen = (): Promise<void> =>
      (reconnecting ??= this.retry('resume', async (sftp) => {
        const nh = await new Promise<Buffer>((res, rej) => sftp.open(tmp, 'r+', cb(res, rej)));
        h = { s: this.session!, h: nh };
        for (const [off, buf] of [...unacked].sort((a, b) => a[0] - b[0])) send(off, buf);
      }).finally(() => {
        reconnecting = null;
      }));

    const send = (off: number, buf: Buffer): void => {
      const cur = h;
      cur.s.sftp.write(cur.h, buf, 0, buf.length, off, (err) => {
        if (err) {
          if (cur.s.closed) {
            // the connection went: this write is resent once we are back
            reopen().catch((e) => {
              failure = e;
              for (const w of waiters.splice(0)) w();
            });
            return;
          }
          failure = sshError(err, this.t);
        } else unacked.delete(off);
        for (const w of waiters.splice(0)) w();
      });
    };
    const room = async (max: number): Promise<void> => {
      while (!failure && unacked.size > max) await new Promise<void>((r) => waiters.push(r));
      if (failure) throw failure;
    };
    const abort = async (): Promise<void> => {
      if (done) return;
      done = true;
      await this.retry('abort', (sftp) => new Promise<void>((res) => sftp.unlink(tmp, () => res()))).catch(() => {});
    };
    return {
      get written() {
        return written;
      },
      write: async (chunk: Buffer) => {
        if (done) throw new StoreError('E_STORE_CLOSED', `${name}: write after end or abort`, { name }, ExitCode.failure);
        for (let at = 0; at < chunk.length; at += WRITE_CHUNK) {
          await room(WRITE_WINDOW - 1);
          // copied: the caller may reuse its buffer once write resolves, and we may need to resend
          const piece = Buffer.from(chunk.subarray(at, Math.min(chunk.length, at + WRITE_CHUNK)));
          unacked.set(written, piece);
          if (!reconnecting) send(written, piece);
          written += piece.length;
        }
      },
      end: async () => {
        try {
          await room(0);
          if (reconnecting) await reconnecting;
          await room(0);
          await this.retry('finish', async (sftp) => {
            const st = await new Promise<{ size: number }>((res, rej) => sftp.stat(tmp, cb(res, rej)));
            if (st.size !== written) throw new StoreError('E_STORE_PARTIAL', `${name}: the server holds ${st.size} of ${written} bytes`, { name }, ExitCode.failure);
            if (h.s.sftp === sftp && !h.s.closed) await new Promise<void>((res) => sftp.close(h.h, () => res()));
            // hardlink fails when the final name exists: an object is never replaced
            await new Promise<void>((res, rej) =>
              sftp.ext_openssh_hardlink(tmp, final, (err) => {
                if (!err) return sftp.unlink(tmp, () => res());
                sftp.stat(final, (e2) => (e2 ? rej(err) : rej(new StoreError('E_STORE_EXISTS', `${name} appeared in ${this.url} during the upload; not replaced`, { name }, ExitCode.failure))));
              }),
            );
          });
          done = true;
        } catch (err) {
          await abort();
          throw err;
        }
      },
      abort,
    };
  }

  async delete(name: string): Promise<void> {
    const p = this.full(name);
    await this.retry('delete', (sftp) => new Promise<void>((res, rej) => sftp.unlink(p, (err) => (err && !isNoSuchFile(err) ? rej(err) : res()))));
  }

  async close(): Promise<void> {
    this.session?.conn.end();
    this.session = null;
  }
}
