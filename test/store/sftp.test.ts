/**
 * The SFTP store against a real OpenSSH sshd on 127.0.0.1: the conformance suite; host keys as
 * OpenSSH checks them (unknown refused, accept-new records, changed refused); keys; and uploads
 * cut at 20 random points by a TCP proxy that drops the connection, and by killing sshd: no
 * partial object is ever listed, and the upload resumes to the exact bytes.
 */
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer, connect, type Socket } from 'node:net';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { SftpStore } from '../../src/store/sftp.js';
import { storeConformance } from '../conformance/store.js';
import { startSshd } from '../helpers/sshd.js';
import { prng } from '../helpers/images.js';

const sshd = await startSshd();
t.teardown(() => sshd.stop());
const url = (port: number, path: string): string => `sftp://root@127.0.0.1:${port}${path}`;
const opts = { sshKey: sshd.clientKey, knownHostsFile: sshd.knownHosts, create: true };
let n = 0;

t.test('conformance', (t) => storeConformance(t, () => SftpStore.open(url(sshd.port, join(sshd.dir, `repo${++n}`)), opts)));

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
});

/** A TCP proxy to sshd whose connections can be cut. */
async function proxy(target: number): Promise<{ port: number; cut(): void; close(): void }> {
  const socks = new Set<Socket>();
  const server = createServer((c) => {
    const up = connect(target, '127.0.0.1');
    socks.add(c).add(up);
    c.pipe(up).pipe(c);
    const end = (): void => {
      c.destroy();
      up.destroy();
      socks.delete(c);
      socks.delete(up);
    };
    c.on('error', end).on('close', end);
    up.on('error', end).on('close', end);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as { port: number }).port;
  return { port, cut: () => [...socks].forEach((s) => s.destroy()), close: () => server.close() };
}

t.test('connections cut at 20 random points of a 16 MiB upload: never a listed partial, and it completes', async (t) => {
  const p = await proxy(sshd.port);
  t.teardown(() => p.close());
  // the same host key, seen through the proxy's port
  writeFileSync(sshd.knownHosts, readFileSync(sshd.knownHosts, 'utf8').split('\n')[0]!.replace(`:${sshd.port} `, `:${p.port} `) + '\n', { flag: 'a' });
  const s = await SftpStore.open(url(p.port, join(sshd.dir, 'faults')), opts);
  t.teardown(() => s.close());
  const rand = prng(20261202);
  const body = randomBytes(16 << 20);
  let partialListed = 0;
  for (let round = 0; round < 20; round++) {
    const name = `obj-${round}`;
    const cutAt = Math.floor(rand() * body.length);
    const h = await s.put(name);
    let cutDone = false;
    for (let at = 0; at < body.length; at += 256 * 1024) {
      await h.write(body.subarray(at, at + 256 * 1024));
      if (!cutDone && at >= cutAt) {
        cutDone = true;
        p.cut();
        if ((await s.list()).some((o) => o.name === name)) partialListed++;
      }
    }
    await h.end();
    const st = await s.stat(name);
    t.equal(st?.size, body.length, `round ${round}: cut at ${cutAt}, the object completed`);
    t.ok((await s.get(name, 0, body.length)).equals(body), `round ${round}: bytes equal`);
  }
  t.equal(partialListed, 0, 'no partial object was ever listed');
  t.notOk((await s.list()).some((o) => o.name.includes('.partial-')), 'no partial left');
});

t.test('sshd killed mid-upload and restarted: the put resumes', async (t) => {
  const s = await SftpStore.open(url(sshd.port, join(sshd.dir, 'killed')), opts);
  t.teardown(() => s.close());
  const body = randomBytes(8 << 20);
  const h = await s.put('obj');
  for (let at = 0; at < body.length; at += 1 << 20) {
    await h.write(body.subarray(at, at + (1 << 20)));
    if (at === 4 << 20) {
      sshd.kill();
      // the session's own sshd child serves the connection: kill every sshd of this test
      try {
        execFileSync('pkill', ['-9', '-f', join(sshd.dir, 'sshd_config')]);
      } catch {}
      await new Promise((r) => setTimeout(r, 300));
      await sshd.restart();
    }
  }
  await h.end();
  t.ok((await s.get('obj', 0, body.length)).equals(body), 'the object is complete and exact');
});
