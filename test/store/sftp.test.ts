/**
 * The SFTP store against a real OpenSSH sshd on 127.0.0.1: the conformance suite; host keys as
 * OpenSSH checks them (unknown refused, accept-new records, changed refused); keys; and uploads
 * cut at 20 random points by a TCP proxy that drops the connection, and by killing sshd: no
 * partial object is ever listed, and the upload resumes to the exact bytes.
 */
import t from 'tap';
import type * as Tap from 'tap';
import { randomBytes } from 'node:crypto';
import { readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { createServer, connect, type Socket } from 'node:net';
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { userInfo } from 'node:os';
import { rmSync } from 'node:fs';
import { SftpStore, PUT_BUFFER_BYTES } from '../../src/store/sftp.js';
import { openStore } from '../../src/store/open.js';
import { ThreadStore } from '../../src/store/thread.js';
import { RetryingStore } from '../../src/store/retry.js';
import { StoreError } from '../../src/store/errors.js';
import type { Store } from '../../src/store/types.js';
import { storeConformance } from '../conformance/store.js';
import { startSshd } from '../helpers/sshd.js';
import { prng } from '../helpers/images.js';

const sshd = await startSshd();
t.teardown(() => sshd.stop());
const url = (port: number, path: string): string => `sftp://root@127.0.0.1:${port}${path}`;
const opts = { sshKey: sshd.clientKey, knownHostsFile: sshd.knownHosts, create: true };
let n = 0;

t.test('conformance (openStore: the SftpStore on the helper thread)', (t) => storeConformance(t, () => openStore(url(sshd.port, join(sshd.dir, `repo${++n}`)), opts), (s) => decodeURIComponent(new URL(s.url).pathname)));

t.test('conformance (the SftpStore on the calling thread)', (t) => storeConformance(t, () => SftpStore.open(url(sshd.port, join(sshd.dir, `repo${++n}`)), opts), (s) => decodeURIComponent(new URL(s.url).pathname)));

t.test('openStore runs an sftp:// store on the helper thread, and its errors cross typed', async (t) => {
  const s = (await openStore(url(sshd.port, join(sshd.dir, 'threaded')), opts)) as RetryingStore;
  t.ok(s.inner instanceof ThreadStore, 'the store behind the retry layer is the ThreadStore');
  await s.close();
  const kh = join(sshd.dir, 'kh-empty-threaded');
  writeFileSync(kh, '');
  const e = await openStore(url(sshd.port, join(sshd.dir, 'threaded')), { ...opts, knownHostsFile: kh }).then(
    () => null,
    (err: unknown) => err,
  );
  t.ok(e instanceof StoreError, 'a StoreError on this side');
  t.match(e, { code: 'E_SSH_HOSTKEY_UNKNOWN', retryable: false, data: { host: '127.0.0.1', port: sshd.port } }, 'with its code, data and retryable flag');
  const k = join(sshd.dir, 'stranger-threaded');
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', k]);
  await t.rejects(openStore(url(sshd.port, join(sshd.dir, 'x')), { ...opts, sshKey: k }), { code: 'E_SSH_AUTH' });
});

t.test('host keys: unknown refused, accept-new records it, a changed key is refused', async (t) => {
  const kh = join(sshd.dir, 'kh-empty');
  writeFileSync(kh, '');
  await t.rejects(SftpStore.open(url(sshd.port, join(sshd.dir, 'hk')), { ...opts, knownHostsFile: kh }), { code: 'E_SSH_HOSTKEY_UNKNOWN' });
  const s = await SftpStore.open(url(sshd.port, join(sshd.dir, 'hk')), { ...opts, knownHostsFile: kh, acceptNewHostKey: true });
  await s.close();
  t.match(readFileSync(kh, 'utf8'), new RegExp(`^\\[127\\.0\\.0\\.1\\]:${sshd.port} ssh-ed25519 `), 'accept-new recorded the key as OpenSSH would');
  const again = await SftpStore.open(url(sshd.port, join(sshd.dir, 'hk')), { ...opts, knownHostsFile: kh });
  await again.close();
  t.pass('the recorded key is accepted without the flag');
  const other = join(sshd.dir, 'other_host');
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', other]);
  const wrong = join(sshd.dir, 'kh-wrong');
  writeFileSync(wrong, `[127.0.0.1]:${sshd.port} ${readFileSync(`${other}.pub`, 'utf8').split(' ').slice(0, 2).join(' ')}\n`);
  await t.rejects(SftpStore.open(url(sshd.port, join(sshd.dir, 'hk')), { ...opts, knownHostsFile: wrong, acceptNewHostKey: true }), { code: 'E_SSH_HOSTKEY_CHANGED' }, 'changed: refused even with accept-new');
  const hashed = join(sshd.dir, 'kh-hashed');
  writeFileSync(hashed, readFileSync(sshd.knownHosts));
  execFileSync('ssh-keygen', ['-H', '-f', hashed], { stdio: 'ignore' });
  t.match(readFileSync(hashed, 'utf8'), /^\|1\|/, 'ssh-keygen -H hashed it');
  const h = await SftpStore.open(url(sshd.port, join(sshd.dir, 'hk')), { ...opts, knownHostsFile: hashed });
  await h.close();
  t.pass('a hashed known_hosts entry is honoured');
});

t.test('a key that is not authorized is refused with E_SSH_AUTH', async (t) => {
  const k = join(sshd.dir, 'stranger');
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', k]);
  await t.rejects(SftpStore.open(url(sshd.port, join(sshd.dir, 'x')), { ...opts, sshKey: k }), { code: 'E_SSH_AUTH' });
  await t.rejects(SftpStore.open(url(sshd.port, join(sshd.dir, 'x')), { ...opts, sshKey: join(sshd.dir, 'no-such-key') }), { code: 'E_SSH_KEY' }, 'a missing key file');
  await t.rejects(SftpStore.open(url(sshd.port, join(sshd.dir, 'not-there')), { ...opts, create: false }), { code: 'E_STORE_NOT_FOUND' }, 'a missing location without create');
  await t.rejects(SftpStore.open(`sftp://root:pw@127.0.0.1:${sshd.port}/x`, opts), { code: 'E_STORE_URL' }, 'a password in the URL');
});

t.test('sftp://host/~/path is relative to the login directory', async (t) => {
  const s = await openStore(`sftp://root@127.0.0.1:${sshd.port}/~/sf-home-test-${process.pid}`, opts);
  await (await s.put('a')).end();
  t.ok(statSync(join(userInfo().homedir, `sf-home-test-${process.pid}`, 'a')).isFile(), 'the object is under the passwd home');
  await s.delete('a');
  await s.close();
  rmSync(join(userInfo().homedir, `sf-home-test-${process.pid}`), { recursive: true, force: true });
});

interface Proxy {
  port: number;
  /** Client-to-server bytes forwarded so far, over every connection. */
  readonly forwarded: number;
  /** Cut every connection once `forwarded` reaches `at` (the bytes before it get through). */
  cutAt(at: number): void;
  /** Cut after forwarding the k-th client data event from now (k = 0: the next one). */
  cutAfterEvents(k: number): void;
  /**
   * Each connection opened from now on takes the next budget and is cut once it has forwarded that
   * many client-to-server bytes (handshake included); when the list runs out, connections live.
   * Cuts counted per connection do not depend on timing: a budget is spent by that connection alone.
   */
  cutConnectionsAfter(budgets: number[]): void;
  cuts: number;
  cut(): void;
  pause(): void;
  resume(): void;
  close(): void;
}

/** A TCP proxy to sshd whose connections can be cut at a byte, or stalled. */
async function proxy(target: number): Promise<Proxy> {
  const pairs = new Set<[Socket, Socket]>();
  let forwarded = 0;
  let cutPoint = Infinity;
  let eventsLeft = -1;
  let paused = false;
  let budgets: number[] = [];
  const cut = (): void => {
    p.cuts++;
    for (const [c, up] of pairs) {
      c.destroy();
      up.destroy();
    }
    pairs.clear();
  };
  const server = createServer((c) => {
    const up = connect(target, '127.0.0.1');
    const pair: [Socket, Socket] = [c, up];
    pairs.add(pair);
    if (paused) c.pause();
    let budget = budgets.length ? budgets.shift()! : Infinity;
    c.on('data', (d: Buffer) => {
      if (d.length >= budget) {
        // this connection's budget is spent: its first `budget` bytes reach sshd, then it dies alone
        up.end(d.subarray(0, budget));
        forwarded += budget;
        budget = Infinity;
        c.destroy();
        pairs.delete(pair);
        p.cuts++;
        return;
      }
      budget -= d.length;
      if (forwarded + d.length >= cutPoint) {
        const keep = Math.max(0, cutPoint - forwarded);
        cutPoint = Infinity;
        forwarded += keep;
        up.end(d.subarray(0, keep)); // these bytes reach sshd, then the link dies
        c.destroy();
        pairs.delete(pair);
        return cut();
      }
      forwarded += d.length;
      up.write(d);
      if (eventsLeft >= 0 && eventsLeft-- === 0) {
        up.end();
        c.destroy();
        pairs.delete(pair);
        cut();
      }
    });
    up.pipe(c);
    const end = (): void => {
      c.destroy();
      up.destroy();
      pairs.delete(pair);
    };
    c.on('error', end).on('close', end);
    up.on('error', end).on('close', end);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const p: Proxy = {
    port: (server.address() as { port: number }).port,
    get forwarded() {
      return forwarded;
    },
    cutAt: (at) => (cutPoint = at),
    cutAfterEvents: (k) => (eventsLeft = k),
    cutConnectionsAfter: (b) => (budgets = [...b]),
    cuts: 0,
    cut,
    pause: () => {
      paused = true;
      for (const [c, up] of pairs) {
        c.pause();
        up.pause();
      }
    },
    resume: () => {
      paused = false;
      for (const [c, up] of pairs) {
        c.resume();
        up.resume();
      }
    },
    close: () => server.close(),
  };
  return p;
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/**
 * A store straight to sshd that watches a directory of the repository: every listing may hold only
 * objects it was told may be committing, each at its full size. (A listing sent before the commit's
 * rename can answer after it, so an object becomes allowed when its end() is called, not when it
 * resolves; a partial under the final name would still show a short size.)
 */
function watcher(direct: Store, committing: Map<string, number>): { stop(): Promise<void>; listings: number; bad: string[] } {
  const w = { listings: 0, bad: [] as string[], stop: async () => {} };
  let on = true;
  const loop = (async () => {
    while (on) {
      for (const o of await direct.list()) if (committing.get(o.name) !== o.size) w.bad.push(`${o.name} (${o.size} bytes)`);
      w.listings++;
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  w.stop = async () => {
    on = false;
    await loop;
  };
  return w;
}

async function withProxy(t: Tap.Test): Promise<{ p: Proxy; viaProxy: string; direct: string }> {
  const p = await proxy(sshd.port);
  t.teardown(() => p.close());
  // the same host key, seen through the proxy's port
  const line = readFileSync(sshd.knownHosts, 'utf8').split('\n')[0]!;
  writeFileSync(sshd.knownHosts, line.replace(`:${sshd.port} `, `:${p.port} `) + '\n', { flag: 'a' });
  return { p, viaProxy: `${p.port}`, direct: `${sshd.port}` };
}

t.test('one 16 MiB upload whose connections are cut 20 times (seeded: in handshakes and mid-transfer): resumed to the exact bytes, no partial ever listed', async (t) => {
  const { p } = await withProxy(t);
  const repo = join(sshd.dir, 'cuts');
  const direct = await openStore(url(sshd.port, repo), opts);
  t.teardown(() => direct.close());
  const body = randomBytes(16 << 20);
  const rand = prng(20261202);
  // One budget per connection: every fourth cut lands in the key exchange or authentication (under
  // 3 KB of client bytes), the rest mid-transfer (64-640 KiB). 20 budgets sum to under 12.5 MiB, so
  // no connection can carry the 16 MiB upload to its end before all 20 cuts have happened.
  const budgets = Array.from({ length: 20 }, (_, i) => (i % 4 === 1 ? 100 + Math.floor(rand() * 2900) : (64 << 10) + Math.floor(rand() * (576 << 10))));
  t.ok(budgets.reduce((a, b) => a + b, 0) < body.length, 'the budgets cannot carry the whole upload');
  const committing = new Map<string, number>();
  const w = watcher(direct, committing);
  p.cutConnectionsAfter(budgets);
  const s = await openStore(url(p.port, repo), { ...opts, retries: 8 });
  t.teardown(() => s.close());
  let failures = 0;
  let done = false;
  // each failed attempt spends at least one budget, so 21 attempts always reach a live connection
  for (let attempt = 0; attempt < 22 && !done; attempt++) {
    try {
      const h = await s.put('big');
      for (let at = 0; at < body.length; at += 256 << 10) await h.write(body.subarray(at, at + (256 << 10)));
      committing.set('big', body.length);
      await h.end();
      done = true;
    } catch (err) {
      failures++;
      t.ok(err instanceof StoreError, `a failed put fails with a typed error (${(err as StoreError).code}: ${(err as Error).message})`);
      t.equal(await direct.stat('big'), null, 'and nothing is accepted under the name');
    }
  }
  await w.stop();
  t.ok(done, `the upload completed (${failures} put(s) failed and were retried)`);
  t.equal(p.cuts, 20, 'the connection was cut 20 times');
  t.same(w.bad, [], `no partial or unfinished object in ${w.listings} listings taken during the upload`);
  t.equal(sha(await direct.get('big', 0, body.length)), sha(body), 'the bytes equal');
  t.same(readdirSync(repo).filter((f) => f.includes('.partial-')), [], 'no partial file left on the server');
});

t.test('a cut in each step of the commit: the put either commits exactly or fails typed, never half', async (t) => {
  const { p } = await withProxy(t);
  const repo = join(sshd.dir, 'commit-cuts');
  const direct = await openStore(url(sshd.port, repo), opts);
  t.teardown(() => direct.close());
  const s = await openStore(url(p.port, repo), opts);
  t.teardown(() => s.close());
  let committed = 0;
  let failed = 0;
  for (let k = 0; k < 10; k++) {
    const name = `c${k}`;
    const body = randomBytes(100_000 + k);
    const h = await s.put(name);
    await h.write(body);
    // let the writes be acknowledged, so the cut lands in the commit's own requests
    await new Promise((r) => setTimeout(r, 100));
    p.cutAfterEvents(k % 5);
    try {
      await h.end();
      committed++;
      t.equal(sha(await direct.get(name, 0, body.length)), sha(body), `cut ${k % 5} events into the commit of ${name}: committed, bytes equal`);
    } catch (err) {
      failed++;
      t.ok(err instanceof StoreError, `${name}: typed error ${(err as StoreError).code}`);
      t.equal(await direct.stat(name), null, `${name}: failed, and nothing is under its name`);
    }
    p.cutAfterEvents(-1);
    t.same((await direct.list()).filter((o) => o.name.includes('.partial-')), [], `${name}: no partial listed`);
  }
  t.ok(committed >= 5, `most commits survive their cut by resuming (${committed} committed, ${failed} failed typed)`);
});

t.test('after a lost commit reply, an object under the final name is ours only with our size, head and tail', async (t) => {
  const repo = join(sshd.dir, 'committed-earlier');
  const s = await SftpStore.open(url(sshd.port, repo), opts);
  t.teardown(() => s.close());
  const r = prng(11);
  type Probe = { committedEarlier(sftp: unknown): Promise<boolean> };
  for (const size of [10, 64 * 1024, 200_000, 1_000_003]) {
    const body = randomBytes(size);
    const h = await s.put(`o${size}`);
    // writes of random sizes, some smaller than the kept head and tail, some larger
    for (let at = 0; at < size; ) {
      const n = Math.min(size - at, 1 + Math.floor(r() * (r() < 0.5 ? 5000 : 150_000)));
      await h.write(body.subarray(at, at + n));
      at += n;
    }
    await h.end();
    const probe = h as unknown as Probe;
    t.equal(await s.op('probe', (sftp) => probe.committedEarlier(sftp)), true, `${size} bytes: the committed object is recognised as ours`);
    // the same size, one byte changed in the head, then in the tail: someone else's
    for (const at of [0, size - 1]) {
      const other = Buffer.from(body);
      other[at]! ^= 1;
      writeFileSync(join(repo, `o${size}`), other);
      await t.rejects(s.op('probe', (sftp) => probe.committedEarlier(sftp)), { code: 'E_STORE_EXISTS' }, `${size} bytes, byte ${at} changed: not ours`);
    }
  }
});

t.test('ranged reads cut 5 times come back exact', async (t) => {
  const { p } = await withProxy(t);
  const repo = join(sshd.dir, 'read-cuts');
  const direct = await openStore(url(sshd.port, repo), opts);
  t.teardown(() => direct.close());
  const body = randomBytes(8 << 20);
  const h = await direct.put('r');
  await h.write(body);
  await h.end();
  const s = await openStore(url(p.port, repo), opts);
  t.teardown(() => s.close());
  const f = await s.open('r');
  const rand = prng(99);
  for (let i = 0; i < 5; i++) {
    p.cutAt(p.forwarded + 200 + Math.floor(rand() * 2000));
    const off = Math.floor(rand() * (body.length >> 1));
    const got = await f.read(off, 4 << 20);
    t.ok(got.equals(body.subarray(off, off + (4 << 20))), `read ${i} at ${off} across a cut equals`);
  }
  await f.close();
  t.equal(p.cuts, 5, 'five cuts happened');
});

t.test('a stalled link: write() stops resolving within the put buffer, then the upload completes', async (t) => {
  const { p } = await withProxy(t);
  const repo = join(sshd.dir, 'stall');
  const s = await openStore(url(p.port, repo), opts);
  t.teardown(() => s.close());
  const body = randomBytes(24 << 20);
  const h = await s.put('slow');
  await h.write(body.subarray(0, 4 << 20));
  p.pause();
  let accepted = h.written;
  const writer = (async () => {
    for (let at = 4 << 20; at < body.length; at += 256 << 10) {
      await h.write(body.subarray(at, at + (256 << 10)));
      accepted = h.written;
    }
  })();
  await new Promise((r) => setTimeout(r, 1500));
  const onServer = readdirSync(repo).filter((f) => f.startsWith('slow.partial-')).reduce((n, f) => n + statSync(join(repo, f)).size, 0);
  const ahead = accepted - onServer;
  t.ok(accepted < body.length, `the writer is held back while the link is stalled (accepted ${(accepted / 2 ** 20).toFixed(2)} MiB of 24)`);
  t.ok(ahead <= PUT_BUFFER_BYTES + (256 << 10), `accepted bytes exceed what the server holds by ${(ahead / 2 ** 20).toFixed(2)} MiB, within the ${PUT_BUFFER_BYTES / 2 ** 20} MiB put buffer + one write`);
  p.resume();
  await writer;
  await h.end();
  t.equal(sha(await s.get('slow', 0, body.length)), sha(body), 'after the stall the bytes equal');
});

t.test('sshd killed (with its session processes) mid-upload and restarted: the put resumes or fails typed, never a listed partial', async (t) => {
  const repo = join(sshd.dir, 'killed');
  const s = await openStore(url(sshd.port, repo), opts);
  t.teardown(() => s.close());
  const body = randomBytes(8 << 20);
  let done = false;
  for (let attempt = 0; attempt < 2 && !done; attempt++) {
    try {
      const h = await s.put('obj');
      for (let at = 0; at < body.length; at += 1 << 20) {
        await h.write(body.subarray(at, at + (1 << 20)));
        if (at === 4 << 20 && attempt === 0) {
          await sshd.kill();
          t.same((await readdirSync(repo)).filter((f) => !f.includes('.partial-')), [], 'while sshd is down, only a partial file exists on disk');
          await new Promise((r) => setTimeout(r, 300));
          await sshd.restart();
        }
      }
      await h.end();
      done = true;
      t.pass(`attempt ${attempt}: the put completed`);
    } catch (err) {
      t.ok(err instanceof StoreError, `attempt ${attempt}: typed error ${(err as StoreError).code}`);
    }
    t.same((await s.list()).filter((o) => o.name !== 'obj' || !done), [], 'nothing but a complete object is listed');
  }
  t.ok(done, 'the object got stored');
  t.equal(sha(await s.get('obj', 0, body.length)), sha(body), 'the object is complete and exact');
});
