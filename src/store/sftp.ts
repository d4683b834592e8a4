/**
 * A store on an SFTP server, over ssh2, with OpenSSH's conventions:
 *
 * - URL `sftp://user@host[:port]/abs/path`: the path is absolute; `sftp://user@host/~/path` is
 *   relative to the login directory (restic writes `sftp:user@host:/abs/path`; we take the URL
 *   form, where a path always starts with '/', so `/~/` is the explicit "home" spelling). No
 *   password in the URL: keys only. `user` defaults to the local login name.
 * - Keys: `sshKey` (--ssh-key FILE) alone if given; else the ssh-agent at $SSH_AUTH_SOCK, then
 *   ~/.ssh/id_ed25519, id_ecdsa, id_rsa — where ~ is the passwd home (os.userInfo().homedir), as
 *   OpenSSH takes it, not $HOME. Encrypted key files need the agent.
 * - Host keys: known-hosts.ts against `knownHostsFile` (default ~/.ssh/known_hosts); unknown is
 *   E_SSH_HOSTKEY_UNKNOWN unless `acceptNewHostKey` (then appended, StrictHostKeyChecking=accept-new);
 *   changed (or revoked) is E_SSH_HOSTKEY_CHANGED, always. Key types known for the host are
 *   preferred in the key exchange, as OpenSSH orders HostKeyAlgorithms.
 *
 * Writes are pipelined: WRITE_CHUNK-byte SFTP WRITEs, up to WRITE_WINDOW in flight, and write()
 * resolves only while at most WRITE_WINDOW * WRITE_CHUNK bytes are unacknowledged (backpressure).
 * Those bytes are kept; when the connection drops, the put reconnects (bounded backoff, retry.ts),
 * reopens its partial file, checks that the server holds at least the acknowledged prefix, and
 * sends the unacknowledged writes again — SFTP writes carry their offset, so a write the old
 * connection did deliver is rewritten with the same bytes. If it cannot, the put fails with
 * E_STORE_RESUME and the partial is deleted. Reads of big ranges are pipelined the same way.
 *
 * Commit: the partial (`<name>.partial-<hex>`, never listed) must hold exactly `written` bytes,
 * is fsynced (fsync@openssh.com), then hardlink@openssh.com'ed to the final name — link(2) fails
 * if the name exists, so nothing is ever replaced (posix-rename@openssh.com would replace it) —
 * and unlinked. Without the extension we use plain SFTP RENAME, which OpenSSH's sftp-server
 * implements as link+unlink (it refuses an existing target too; other servers may not). If the
 * reply to the link is lost with the connection, the retry finds the name taken: it then reads the
 * object back and accepts it only if its SHA-256 equals that of the bytes we wrote.
 */
import { createHash } from 'node:crypto';
import { appendFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { homedir, userInfo } from 'node:os';
import type { Socket } from 'node:net';
import { dirname, join, posix } from 'node:path';
import ssh2 from 'ssh2';
import type { AnyAuthMethod, AuthenticationType, ConnectConfig, NextAuthHandler, SFTPWrapper, Stats } from 'ssh2';
import { SnapferryError, TruncatedError } from '../util/errors.js';
import { StoreError } from './errors.js';
import { checkKnownHosts, knownHostsLine, knownKeyTypes } from './known-hosts.js';
import { checkName, checkPrefix, checkRange, isPartialName, partialName } from './names.js';
import { retryPolicy, withRetries, type RetryPolicy } from './retry.js';
import type { OpenStoreOptions, PutHandle, Store, StoreFile, StoreObject } from './types.js';
import { released } from '../util/reclaim.js';

const { Client } = ssh2;
type Client = InstanceType<typeof Client>;

/**
 * Bytes per SFTP WRITE. OpenSSH's sftp-server takes up to 255 KiB (limits@openssh.com, which ssh2
 * reads); 128 KiB writes are a quarter of the requests and replies of 32 KiB ones (ext4 bench
 * volume over SFTP on loopback: 13.4-15.2 s -> 12.4-13.3 s). Against a server with a smaller limit
 * ssh2 sends a write in pieces, one after the other, from the same buffer.
 */
export const WRITE_CHUNK = 128 * 1024;
/** Bytes kept of an upload's start and of its end, to recognise it after a lost commit reply. */
const SAMPLE_BYTES = 64 * 1024;
/**
 * WRITEs in flight per put: 8 x 128 KiB = 1 MiB unacknowledged. On loopback to OpenSSH's
 * sftp-server, `node dist/bench/store.js 512` (best of 3, alternating): 8 in flight 237-274 MB/s,
 * 16 in flight 186-198 MB/s, 48 in flight 150-160 MB/s; and a backup's peak RSS 5-6 MiB lower (each
 * unacknowledged byte is held three times: the ring below and ssh2's two packet copies). The cost
 * is on long paths: a put moves at most 1 MiB per round trip (100 MB/s at 10 ms).
 */
export const WRITE_WINDOW = 8;
/** The most bytes a put holds unacknowledged (and so the most it resends after a reconnect). */
export const PUT_BUFFER_BYTES = WRITE_CHUNK * WRITE_WINDOW;
export const READ_CHUNK = 64 * 1024;
export const READ_WINDOW = 32;
/** Objects a list() returns at most (a repository holds a few per backup). */
export const MAX_LIST = 1_000_000;

/** SFTP status codes (draft-ietf-secsh-filexfer-02 §7), as ssh2 puts them on `err.code`. */
const SSH_FX_NO_SUCH_FILE = 2;

const DEFAULT_HOST_KEY_ALGS = ['ssh-ed25519', 'ecdsa-sha2-nistp256', 'ecdsa-sha2-nistp384', 'ecdsa-sha2-nistp521', 'rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'];

function passwdHome(): string {
  try {
    return userInfo().homedir;
  } catch {
    return homedir();
  }
}

export interface SftpTarget {
  user: string;
  host: string;
  port: number;
  /** Absolute, or relative to the login directory ('.' for the login directory itself). */
  path: string;
}

export function parseSftpUrl(url: string): SftpTarget {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new StoreError('E_STORE_URL', `${url}: not a URL (sftp://user@host[:port]/path)`, { url });
  }
  if (u.protocol !== 'sftp:' || !u.hostname) throw new StoreError('E_STORE_URL', `${url}: want sftp://user@host[:port]/path`, { url });
  if (u.password) throw new StoreError('E_STORE_URL', 'sftp URL with a password: snapferry authenticates with keys only', { url: redact(u) });
  if (u.search || u.hash) throw new StoreError('E_STORE_URL', `${url}: no query or fragment in an sftp URL`, { url });
  const raw = decodeURIComponent(u.pathname);
  if (raw.includes('\0')) throw new StoreError('E_STORE_URL', 'NUL in an sftp path', { url });
  const path = raw === '/~' || raw === '/~/' ? '.' : raw.startsWith('/~/') ? raw.slice(3).replace(/\/+$/, '') : raw.replace(/(.)\/+$/, '$1') || '/';
  return { user: decodeURIComponent(u.username) || userInfo().username, host: u.hostname.replace(/^\[|\]$/g, ''), port: u.port ? Number(u.port) : 22, path };
}

function redact(u: URL): string {
  const c = new URL(u.href);
  c.password = '';
  return c.href;
}

function keyTypeOf(blob: Buffer): string {
  const n = blob.readUInt32BE(0);
  return blob.subarray(4, 4 + n).toString('latin1');
}

interface Session {
  conn: Client;
  sftp: SFTPWrapper;
  closed: boolean;
  /**
   * Rejects when the connection goes. ssh2 fails the requests outstanding at that moment, but a
   * request sent on a dead channel is never answered: every operation races this promise.
   */
  lost: Promise<never>;
}

const call = <T>(fn: (cb: (err: Error | null | undefined, v?: T) => void) => void): Promise<T> =>
  new Promise((res, rej) => fn((err, v) => (err ? rej(err) : res(v as T))));

function sftpCode(err: unknown): number | undefined {
  const c = (err as { code?: unknown }).code;
  return typeof c === 'number' ? c : undefined;
}

const isNoSuchFile = (err: unknown): boolean => sftpCode(err) === SSH_FX_NO_SUCH_FILE;

export class SftpStore implements Store {
  private session: Session | null = null;
  private connecting: Promise<Session> | null = null;
  private closed = false;
  readonly policy: RetryPolicy;

  private constructor(
    readonly url: string,
    readonly target: SftpTarget,
    private readonly opts: OpenStoreOptions,
  ) {
    this.policy = retryPolicy(opts.retries);
  }

  /**
   * Connects (with retries on network errors), checks the location and creates it (mkdir -p)
   * when `create` is set; a missing location without it is E_STORE_NOT_FOUND.
   */
  static async open(url: string, opts: OpenStoreOptions = {}): Promise<SftpStore> {
    const s = new SftpStore(url, parseSftpUrl(url), opts);
    try {
      await withRetries(`${url}: open`, s.policy, () =>
        s.op('stat', async (sftp) => {
          try {
            const st = await call<Stats>((cb) => sftp.stat(s.target.path, cb));
            if (!st.isDirectory()) throw new StoreError('E_STORE_NOT_FOUND', `${url}: not a directory`, { url });
          } catch (err) {
            if (!isNoSuchFile(err)) throw err;
            if (!opts.create) throw new StoreError('E_STORE_NOT_FOUND', `${url}: no such repository directory`, { url });
            await s.mkdirs(sftp, s.target.path);
          }
        }),
      );
    } catch (err) {
      await s.close();
      throw err;
    }
    return s;
  }

  private authHandler(): ConnectConfig['authHandler'] {
    const user = this.target.user;
    const methods: AnyAuthMethod[] = [];
    const keyFile = (path: string): void => {
      let key: Buffer;
      try {
        key = readFileSync(path);
      } catch (err) {
        throw new StoreError('E_SSH_KEY', `${path}: cannot read the private key (${(err as Error).message})`, { path });
      }
      const parsed = ssh2.utils.parseKey(key);
      if (parsed instanceof Error) {
        if (this.opts.sshKey) throw new StoreError('E_SSH_KEY', `${path}: ${parsed.message} (an encrypted key needs ssh-agent)`, { path });
        return; // a default key we cannot use: OpenSSH would prompt; we go on to the next
      }
      methods.push({ type: 'publickey', username: user, key });
    };
    if (this.opts.sshKey) keyFile(this.opts.sshKey);
    else {
      if (process.env.SSH_AUTH_SOCK) methods.push({ type: 'agent', username: user, agent: process.env.SSH_AUTH_SOCK });
      for (const n of ['id_ed25519', 'id_ecdsa', 'id_rsa']) {
        const p = join(passwdHome(), '.ssh', n);
        if (existsSync(p)) keyFile(p);
      }
    }
    if (methods.length === 0) throw new StoreError('E_SSH_KEY', `no SSH key: pass --ssh-key, run ssh-agent, or create ${join(passwdHome(), '.ssh', 'id_ed25519')}`, {});
    return (_left: AuthenticationType[], _partial: boolean, next: NextAuthHandler) => {
      const m = methods.shift();
      next(m ?? (false as unknown as AnyAuthMethod));
    };
  }

  private hostError(code: 'E_SSH_HOSTKEY_UNKNOWN' | 'E_SSH_HOSTKEY_CHANGED', type: string, blob: Buffer, file: string, why: string): StoreError {
    const fp = `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`;
    const { host, port } = this.target;
    return new StoreError(code, `${host}:${port}: host key ${type} ${fp} ${why} (${file})`, { host, port, keyType: type, fingerprint: fp, knownHosts: file });
  }

  /** The live session, connecting once if there is none (concurrent callers share the attempt). */
  private connect(): Promise<Session> {
    if (this.closed) return Promise.reject(new StoreError('E_STORE_STATE', `${this.url}: store is closed`));
    if (this.session && !this.session.closed) return Promise.resolve(this.session);
    this.connecting ??= new Promise<Session>((resolve, reject) => {
      const { host, port, user } = this.target;
      const knownHosts = this.opts.knownHostsFile ?? join(passwdHome(), '.ssh', 'known_hosts');
      const khText = existsSync(knownHosts) ? readFileSync(knownHosts, 'utf8') : '';
      const preferred = knownKeyTypes(khText, host, port).flatMap((t) => (t === 'ssh-rsa' ? ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'] : [t]));
      const hostKeyAlgs = [...new Set([...preferred.filter((a) => DEFAULT_HOST_KEY_ALGS.includes(a)), ...DEFAULT_HOST_KEY_ALGS])];
      let refused: StoreError | null = null;
      let settled = false;
      const conn = new Client();
      let markLost: (err: Error) => void = () => undefined;
      const lost = new Promise<never>((_, rej) => (markLost = rej));
      lost.catch(() => undefined);
      const s: Session = { conn, sftp: null as unknown as SFTPWrapper, closed: false, lost };
      const fail = (err: unknown): void => {
        s.closed = true;
        markLost(new Error(`connection lost: ${(err as Error).message}`));
        if (settled) return;
        settled = true;
        conn.end();
        reject(refused ?? this.connError(err));
      };
      conn.on('ready', () => {
        conn.sftp((err, sftp) => {
          if (err) return fail(err);
          s.sftp = sftp;
          sftp.on('close', () => {
            s.closed = true;
            markLost(new Error('sftp channel closed'));
          });
          settled = true;
          this.session = s;
          resolve(s);
        });
      });
      conn.on('error', fail);
      conn.on('close', () => fail(new Error('connection closed during the handshake')));
      let authHandler: ConnectConfig['authHandler'];
      try {
        authHandler = this.authHandler();
      } catch (err) {
        settled = true;
        reject(err);
        return;
      }
      conn.connect({
        host,
        port,
        username: user,
        readyTimeout: this.opts.connectTimeoutMs ?? 20_000,
        keepaliveInterval: 15_000,
        keepaliveCountMax: 3,
        authHandler,
        algorithms: { serverHostKey: hostKeyAlgs as NonNullable<ConnectConfig['algorithms']>['serverHostKey'] },
        hostVerifier: (blob: Buffer): boolean => {
          const type = keyTypeOf(blob);
          const text = existsSync(knownHosts) ? readFileSync(knownHosts, 'utf8') : '';
          const verdict = checkKnownHosts(text, host, port, type, blob);
          if (verdict === 'known') return true;
          if (verdict === 'revoked') refused = this.hostError('E_SSH_HOSTKEY_CHANGED', type, blob, knownHosts, 'is marked @revoked');
          else if (verdict === 'changed') refused = this.hostError('E_SSH_HOSTKEY_CHANGED', type, blob, knownHosts, 'differs from the recorded one: refusing (someone may be in the middle)');
          else if (!this.opts.acceptNewHostKey) refused = this.hostError('E_SSH_HOSTKEY_UNKNOWN', type, blob, knownHosts, 'is not known; check it and pass --accept-new-host-key, or add it with ssh-keyscan');
          if (refused) return false;
          mkdirSync(dirname(knownHosts), { recursive: true, mode: 0o700 });
          const sep = text.length > 0 && !text.endsWith('\n') ? '\n' : '';
          appendFileSync(knownHosts, sep + knownHostsLine(host, port, type, blob), { mode: 0o600 });
          return true;
        },
      });
    }).finally(() => {
      this.connecting = null;
    });
    return this.connecting;
  }

  /** A connection-level error: authentication failure is final, anything else may be retried. */
  private connError(err: unknown): StoreError {
    if (err instanceof StoreError) return err;
    const e = err as Error & { level?: string; code?: string };
    const { host, port, user } = this.target;
    if (e.level === 'client-authentication') return new StoreError('E_SSH_AUTH', `${user}@${host}:${port}: no key was accepted`, { host, port, user }, { cause: err });
    return new StoreError('E_STORE_CONNECTION', `${user}@${host}:${port}: ${e.message}`, { host, port, errno: e.code ?? null }, { cause: err });
  }

  /** An error of an operation on `s`: a dropped connection is retryable, an SFTP status is not. */
  private opError(err: unknown, s: Session, what: string): SnapferryError {
    if (err instanceof SnapferryError) return err;
    if (s.closed) return new StoreError('E_STORE_CONNECTION', `${this.url}: ${what}: connection lost (${(err as Error).message})`, { what }, { cause: err });
    return new StoreError('E_STORE_IO', `${this.url}: ${what}: ${(err as Error).message}`, { what, status: sftpCode(err) ?? null }, { cause: err });
  }

  /** Runs `fn` on the live session (connecting if needed), typing its errors. Not retried here. */
  async op<T>(what: string, fn: (sftp: SFTPWrapper, s: Session) => Promise<T>): Promise<T> {
    const s = await this.connect();
    try {
      return await Promise.race([fn(s.sftp, s), s.lost]);
    } catch (err) {
      throw this.opError(err, s, what);
    }
  }

  private retried<T>(what: string, fn: (sftp: SFTPWrapper, s: Session) => Promise<T>): Promise<T> {
    return withRetries(`${this.url}: ${what}`, this.policy, () => this.op(what, fn));
  }

  path(name: string): string {
    return posix.join(this.target.path, name);
  }

  private async mkdirs(sftp: SFTPWrapper, dir: string): Promise<void> {
    let cur = dir.startsWith('/') ? '' : '.';
    for (const p of dir.split('/')) {
      if (!p || p === '.') continue;
      cur = cur === '' ? `/${p}` : `${cur}/${p}`;
      const at = cur;
      await new Promise<void>((res, rej) =>
        sftp.mkdir(at, { mode: 0o700 }, (err) => {
          if (!err) return res();
          sftp.stat(at, (e2, st) => (!e2 && st.isDirectory() ? res() : rej(err)));
        }),
      );
    }
  }

  async list(prefix = ''): Promise<StoreObject[]> {
    checkPrefix(prefix);
    return this.retried('list', async (sftp) => {
      const out: StoreObject[] = [];
      const walk = async (rel: string): Promise<void> => {
        const dir = rel ? this.path(rel) : this.target.path;
        let entries: { filename: string; attrs: Stats }[];
        try {
          entries = await call((cb) => sftp.readdir(dir, cb));
        } catch (err) {
          if (isNoSuchFile(err)) return;
          throw err;
        }
        for (const e of entries) {
          const name = rel ? `${rel}/${e.filename}` : e.filename;
          if (e.attrs.isDirectory()) {
            if (prefix === '' || prefix.startsWith(`${name}/`) || name.startsWith(prefix)) await walk(name);
          } else if (e.attrs.isFile() && !isPartialName(e.filename) && name.startsWith(prefix)) {
            out.push({ name, size: e.attrs.size, mtimeMs: e.attrs.mtime * 1000 });
            if (out.length > MAX_LIST) throw new StoreError('E_STORE_IO', `${this.url}: more than ${MAX_LIST} objects`, { limit: MAX_LIST });
          }
        }
      };
      const cut = prefix.lastIndexOf('/');
      await walk(cut < 0 ? '' : prefix.slice(0, cut));
      return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    });
  }

  async stat(name: string): Promise<StoreObject | null> {
    checkName(name);
    const p = this.path(name);
    return this.retried(`stat ${name}`, async (sftp) => {
      try {
        const st = await call<Stats>((cb) => sftp.stat(p, cb));
        return st.isFile() ? { name, size: st.size, mtimeMs: st.mtime * 1000 } : null;
      } catch (err) {
        if (isNoSuchFile(err)) return null;
        throw err;
      }
    });
  }

  async get(name: string, offset: number, length: number): Promise<Buffer> {
    const f = await this.open(name);
    try {
      return await f.read(offset, length);
    } finally {
      await f.close();
    }
  }

  /** Reads [offset, offset+length) of an open handle: READ_WINDOW requests in flight, short reads re-asked. */
  static readRange(sftp: SFTPWrapper, h: Buffer, what: string, offset: number, length: number): Promise<Buffer> {
    const out = Buffer.allocUnsafe(length);
    if (length === 0) return Promise.resolve(out);
    return new Promise((resolve, reject) => {
      let next = 0;
      let inflight = 0;
      let done = 0;
      let failed = false;
      const piece = (at: number, len: number): void => {
        inflight++;
        sftp.read(h, out, at, len, offset + at, (err, n) => {
          inflight--;
          if (failed) return;
          if (err || n === 0) {
            failed = true;
            return reject(err ?? new TruncatedError(what, offset + at, len, offset + at));
          }
          done += n;
          if (n < len) piece(at + n, len - n);
          pump();
        });
      };
      const pump = (): void => {
        while (inflight < READ_WINDOW && next < length) {
          const len = Math.min(READ_CHUNK, length - next);
          piece(next, len);
          next += len;
        }
        if (done === length) resolve(out);
      };
      pump();
    });
  }

  async open(name: string): Promise<StoreFile> {
    checkName(name);
    const p = this.path(name);
    let handle: { s: Session; h: Buffer } | null = null;
    const handleOn = async (sftp: SFTPWrapper, s: Session): Promise<Buffer> => {
      if (handle && handle.s === s && !s.closed) return handle.h;
      try {
        handle = { s, h: await call<Buffer>((cb) => sftp.open(p, 'r', cb)) };
      } catch (err) {
        if (isNoSuchFile(err)) throw new StoreError('E_STORE_NOT_FOUND', `${this.url}: no object ${name}`, { name });
        throw err;
      }
      return handle.h;
    };
    const size = await this.retried(`open ${name}`, async (sftp, s) => {
      const h = await handleOn(sftp, s);
      return (await call<Stats>((cb) => sftp.fstat(h, cb))).size;
    });
    return {
      size,
      read: (offset: number, length: number) => {
        checkRange(name, offset, length);
        if (offset + length > size) return Promise.reject(new TruncatedError(name, offset, length, size));
        return this.retried(`read ${name}`, async (sftp, s) => SftpStore.readRange(sftp, await handleOn(sftp, s), name, offset, length));
      },
      close: async () => {
        const hd = handle as { s: Session; h: Buffer } | null;
        handle = null;
        if (hd && !hd.s.closed) await Promise.race([new Promise<void>((res) => hd.s.sftp.close(hd.h, () => res())), hd.s.lost.catch(() => undefined)]);
      },
    };
  }

  async put(name: string): Promise<PutHandle> {
    checkName(name);
    if (await this.stat(name)) throw new StoreError('E_STORE_EXISTS', `${this.url}: ${name} exists (archives are immutable)`, { name });
    const final = this.path(name);
    const temp = posix.join(posix.dirname(final), partialName(posix.basename(final)));
    const h = await this.retried(`put ${name}`, async (sftp, s) => {
      await this.mkdirs(sftp, posix.dirname(final));
      return { s, h: await call<Buffer>((cb) => sftp.open(temp, 'wx', { mode: 0o600 }, cb)) };
    });
    return new SftpPut(this, name, temp, final, h);
  }

  async delete(name: string): Promise<void> {
    checkName(name);
    const p = this.path(name);
    await this.retried(`delete ${name}`, async (sftp) => {
      await call<void>((cb) => sftp.unlink(p, cb)).catch((err) => {
        if (!isNoSuchFile(err)) throw err;
      });
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    this.session?.conn.end();
    this.session = null;
  }
}

interface Segment {
  offset: number;
  data: Buffer;
  sent: boolean;
  acked: boolean;
}

/** One streaming upload; see the header for the resume and commit protocol. */
class SftpPut implements PutHandle {
  written = 0;
  /** Bytes [0, acked) are acknowledged by the server (contiguous prefix). */
  private acked = 0;
  private readonly segments: Segment[] = [];
  /**
   * What was written and not yet acknowledged, kept to be sent again after a reconnect: byte `o` of
   * the object at ring[o % PUT_BUFFER_BYTES]. One allocation per put instead of a copy per piece,
   * which, held until acknowledged, lived long enough to be promoted and waited for a Mark-Compact.
   */
  private readonly ring = Buffer.allocUnsafeSlow(PUT_BUFFER_BYTES);
  private inflight = 0;
  /** Bumped on every reconnect and on abort: callbacks of older writes are ignored. */
  private generation = 0;
  private resuming: Promise<void> | null = null;
  private failure: SnapferryError | null = null;
  private state: 'open' | 'ending' | 'done' | 'aborted' | 'failed' = 'open';
  private waiters: (() => void)[] = [];
  /** The first and the last SAMPLE_BYTES written: what committedEarlier compares (see there). */
  private readonly head = Buffer.alloc(SAMPLE_BYTES);
  private readonly tail = Buffer.alloc(SAMPLE_BYTES);
  /** Reconnects this put survived (for tests and logs). */
  resumes = 0;

  constructor(
    private readonly store: SftpStore,
    private readonly name: string,
    private readonly temp: string,
    private readonly final: string,
    private handle: { s: Session; h: Buffer },
  ) {}

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  private async until(cond: () => boolean): Promise<void> {
    while (!this.failure && !cond()) await new Promise<void>((r) => this.waiters.push(r));
    if (this.failure) throw this.failure;
  }

  private checkOpen(): void {
    if (this.failure) throw this.failure;
    if (this.state !== 'open') throw new StoreError('E_STORE_STATE', `${this.store.url}: put ${this.name} is ${this.state}`, { name: this.name });
  }

  async write(chunk: Buffer): Promise<void> {
    this.checkOpen();
    this.sample(chunk);
    for (let at = 0; at < chunk.length; ) {
      // pieces end on WRITE_CHUNK boundaries of the object, so none crosses the ring's end
      const len = Math.min(WRITE_CHUNK - (this.written % WRITE_CHUNK), chunk.length - at);
      await this.until(() => this.written - this.acked + len <= PUT_BUFFER_BYTES);
      // the window guarantees [written, written + len) of the ring holds nothing unacknowledged
      const r = this.written % PUT_BUFFER_BYTES;
      chunk.copy(this.ring, r, at, at + len);
      this.segments.push({ offset: this.written, data: this.ring.subarray(r, r + len), sent: false, acked: false });
      this.written += len;
      at += len;
      this.pump();
    }
  }

  private pump(): void {
    if (this.resuming || this.failure || this.state === 'aborted') return;
    if (this.handle.s.closed) return this.resume();
    // One writev for the SSH packets of the writes sent here (a 128 KiB write is 4-5 packets of
    // OpenSSH's 32 KiB), not one write(2) each: strace -c of bench/store.ts, ~6,100 writes for 192
    // MiB before, 1,536 writevs after. (ssh2 keeps its socket private; without it, no cork.)
    const sock = (this.handle.s.conn as unknown as { _sock?: Socket })._sock;
    sock?.cork();
    for (const seg of this.segments) {
      if (this.inflight >= WRITE_WINDOW) break;
      if (seg.sent) continue;
      this.send(seg);
    }
    sock?.uncork();
  }

  private send(seg: Segment): void {
    const gen = this.generation;
    const { s, h } = this.handle;
    seg.sent = true;
    this.inflight++;
    s.sftp.write(h, seg.data, 0, seg.data.length, seg.offset, (err) => {
      if (gen !== this.generation) return;
      this.inflight--;
      if (err) {
        if (s.closed) return this.resume();
        return void this.fail(new StoreError('E_STORE_IO', `${this.store.url}: write ${this.name} at ${seg.offset}: ${err.message}`, { name: this.name, offset: seg.offset, status: sftpCode(err) ?? null }, { cause: err }));
      }
      seg.acked = true;
      let n = 0;
      while (n < this.segments.length && this.segments[n]!.acked) n++;
      if (n > 0) {
        const last = this.segments[n - 1]!;
        this.acked = last.offset + last.data.length;
        // ssh2's two copies of each piece (the SFTP WRITE packet, the SSH packet) are garbage by now
        for (const done of this.segments.splice(0, n)) released(2 * done.data.length);
      }
      this.pump();
      this.wake();
    });
  }

  /**
   * After a dropped connection: reconnect (bounded backoff), reopen the partial without
   * truncating it, require that it holds the acknowledged prefix, and resend what was not
   * acknowledged.
   */
  private resume(): void {
    if (this.resuming || this.failure) return;
    this.generation++;
    this.inflight = 0;
    for (const seg of this.segments) if (!seg.acked) seg.sent = false;
    this.resuming = withRetries(`${this.store.url}: resume ${this.name}`, this.store.policy, () =>
      this.store.op(`resume ${this.name}`, async (sftp, s) => {
        let h: Buffer;
        try {
          h = await call<Buffer>((cb) => sftp.open(this.temp, 'r+', cb));
        } catch (err) {
          if (isNoSuchFile(err)) throw new StoreError('E_STORE_RESUME', `${this.store.url}: ${this.name}: the partial upload vanished`, { name: this.name });
          throw err;
        }
        const { size } = await call<Stats>((cb) => sftp.fstat(h, cb));
        if (size < this.acked) {
          throw new StoreError('E_STORE_RESUME', `${this.store.url}: ${this.name}: the server holds ${size} bytes of the ${this.acked} it acknowledged`, { name: this.name, size, acked: this.acked });
        }
        this.handle = { s, h };
      }),
    ).then(
      () => {
        this.resumes++;
        this.resuming = null;
        this.pump();
        this.wake();
      },
      (err: unknown) => {
        this.resuming = null;
        const e = err instanceof StoreError && err.code === 'E_STORE_RESUME' ? err : new StoreError('E_STORE_RESUME', `${this.store.url}: ${this.name}: cannot resume the upload (${(err as Error).message})`, { name: this.name, acked: this.acked }, { cause: err });
        void this.fail(e);
      },
    );
  }

  /** Fails the put for good and deletes the partial (best effort: it is never listed anyway). */
  private async fail(err: SnapferryError): Promise<void> {
    if (this.failure) return;
    this.failure = err;
    this.state = 'failed';
    this.generation++;
    this.wake();
    await this.removePartial(0);
  }

  private async removePartial(retries: number): Promise<void> {
    await withRetries(`${this.store.url}: remove ${this.temp}`, { ...this.store.policy, retries }, () =>
      this.store.op('remove partial', (sftp) => call<void>((cb) => sftp.unlink(this.temp, cb)).catch((e) => {
        if (!isNoSuchFile(e)) throw e;
      })),
    ).catch(() => undefined);
  }

  async end(): Promise<void> {
    this.checkOpen();
    this.state = 'ending';
    try {
      await this.until(() => this.acked === this.written && !this.resuming);
      let linkSent = false;
      await withRetries(`${this.store.url}: commit ${this.name}`, this.store.policy, () =>
        this.store.op(`commit ${this.name}`, async (sftp, s) => {
          if (linkSent && (await this.committedEarlier(sftp))) return;
          let h = this.handle.s === s ? this.handle.h : null;
          if (!h) {
            h = await call<Buffer>((cb) => sftp.open(this.temp, 'r+', cb)).catch((err) => {
              if (isNoSuchFile(err)) throw new StoreError('E_STORE_RESUME', `${this.store.url}: ${this.name}: the partial upload vanished before the commit`, { name: this.name });
              throw err;
            });
            this.handle = { s, h };
          }
          const { size } = await call<Stats>((cb) => sftp.fstat(h!, cb));
          if (size !== this.written) throw new StoreError('E_STORE_RESUME', `${this.store.url}: ${this.name}: the partial holds ${size} bytes, we wrote ${this.written}`, { name: this.name, size, written: this.written });
          await call<void>((cb) => sftp.ext_openssh_fsync(h!, (err) => cb(err))).catch((err: Error) => {
            if (!/not support/i.test(err.message)) throw err;
          });
          await call<void>((cb) => sftp.close(h!, cb));
          linkSent = true;
          await this.link(sftp);
        }),
      );
      this.state = 'done';
    } catch (err) {
      const e = err instanceof SnapferryError ? err : new StoreError('E_STORE_IO', String(err));
      await this.fail(e);
      throw e;
    }
  }

  /** hardlink@openssh.com (refuses an existing name), else RENAME; then the partial goes. */
  private async link(sftp: SFTPWrapper): Promise<void> {
    try {
      await call<void>((cb) => sftp.ext_openssh_hardlink(this.temp, this.final, cb));
    } catch (err) {
      if (/not support/i.test((err as Error).message)) {
        await this.refuseIfExists(sftp, err);
        return call<void>((cb) => sftp.rename(this.temp, this.final, cb));
      }
      return this.refuseIfExists(sftp, err);
    }
    await call<void>((cb) => sftp.unlink(this.temp, cb)).catch(() => undefined);
  }

  private async refuseIfExists(sftp: SFTPWrapper, cause: unknown): Promise<never> {
    const exists = await call<Stats>((cb) => sftp.stat(this.final, cb)).then(
      () => true,
      () => false,
    );
    if (exists) throw new StoreError('E_STORE_EXISTS', `${this.store.url}: ${this.name} appeared during the upload; not replaced`, { name: this.name });
    throw cause;
  }

  /** Keeps the first and the last SAMPLE_BYTES of what is written (`written` is the offset of `chunk`). */
  private sample(chunk: Buffer): void {
    if (this.written < SAMPLE_BYTES) chunk.copy(this.head, this.written, 0, Math.min(chunk.length, SAMPLE_BYTES - this.written));
    if (chunk.length >= SAMPLE_BYTES) chunk.copy(this.tail, 0, chunk.length - SAMPLE_BYTES);
    else {
      this.tail.copyWithin(0, chunk.length);
      chunk.copy(this.tail, SAMPLE_BYTES - chunk.length);
    }
  }

  /**
   * After a commit whose reply was lost: is the object under the final name ours? Only if it has our
   * size, our first and our last SAMPLE_BYTES (read back); then the partial, if still there, goes.
   * An object up to 2 x SAMPLE_BYTES (a manifest) is compared whole; a bigger one is an archive or
   * index, whose age ciphertext is under a random file key and nonce: another object with the same
   * size, head and tail is not a real case. (A SHA-256 of every upload cost the backup's main thread
   * ~4% of its time, and reading a whole archive back is as long as writing it.)
   */
  private async committedEarlier(sftp: SFTPWrapper): Promise<boolean> {
    let st: Stats;
    try {
      st = await call<Stats>((cb) => sftp.stat(this.final, cb));
    } catch (err) {
      if (isNoSuchFile(err)) return false;
      throw err;
    }
    const appeared = (): StoreError => new StoreError('E_STORE_EXISTS', `${this.store.url}: ${this.name} appeared during the upload; not replaced`, { name: this.name });
    if (st.size !== this.written) throw appeared();
    const h = await call<Buffer>((cb) => sftp.open(this.final, 'r', cb));
    try {
      const n = Math.min(SAMPLE_BYTES, this.written);
      const head = await SftpStore.readRange(sftp, h, this.name, 0, n);
      const tail = await SftpStore.readRange(sftp, h, this.name, this.written - n, n);
      if (!head.equals(this.head.subarray(0, n)) || !tail.equals(this.tail.subarray(SAMPLE_BYTES - n))) throw appeared();
    } finally {
      await call<void>((cb) => sftp.close(h, cb)).catch(() => undefined);
    }
    await call<void>((cb) => sftp.unlink(this.temp, cb)).catch(() => undefined);
    return true;
  }

  async abort(): Promise<void> {
    if (this.state === 'done' || this.state === 'aborted') return;
    this.state = 'aborted';
    this.generation++;
    this.wake();
    const { s, h } = this.handle;
    if (!s.closed) s.sftp.close(h, () => undefined);
    await this.removePartial(this.store.policy.retries);
  }
}
