/**
 * A real OpenSSH sshd for a test: on 127.0.0.1, a free port, its own host key, config, authorized
 * keys and known_hosts, keys only. Missing sshd fails the test (it never skips).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface Sshd {
  host: string;
  port: number;
  user: string;
  /** A client key whose public half is authorized. */
  clientKey: string;
  /** A known_hosts file that holds the server's host key. */
  knownHosts: string;
  dir: string;
  /** Starts it again on the same port after kill(). */
  restart(): Promise<void>;
  kill(): void;
  stop(): void;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => (typeof a === 'object' && a ? resolve(a.port) : reject(new Error('no port'))));
    });
  });
}

async function accepting(port: number, ms: number): Promise<void> {
  const until = Date.now() + ms;
  for (;;) {
    const ok = await new Promise<boolean>((r) => {
      const c = connect(port, '127.0.0.1');
      c.once('data', () => {
        c.destroy();
        r(true);
      });
      c.once('error', () => r(false));
    });
    if (ok) return;
    if (Date.now() > until) throw new Error(`sshd did not accept on 127.0.0.1:${port} within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export async function startSshd(): Promise<Sshd> {
  const sshd = ['/usr/sbin/sshd', '/usr/bin/sshd'].find(existsSync);
  if (!sshd) throw new Error('OpenSSH sshd is missing (apt-get install openssh-server); this test does not skip');
  const dir = mkdtempSync(join(tmpdir(), 'sf-sshd-'));
  mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  const hostKey = join(dir, 'host_ed25519');
  const clientKey = join(dir, 'client_ed25519');
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', hostKey]);
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', clientKey]);
  writeFileSync(join(dir, 'authorized_keys'), readFileSync(`${clientKey}.pub`));
  const port = await freePort();
  const config = join(dir, 'sshd_config');
  writeFileSync(
    config,
    [
      'ListenAddress 127.0.0.1',
      `Port ${port}`,
      `HostKey ${hostKey}`,
      `PidFile ${join(dir, 'sshd.pid')}`,
      `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'PermitRootLogin prohibit-password',
      'StrictModes no',
      'UsePAM no',
      'LogLevel ERROR',
      'Subsystem sftp internal-sftp',
      '',
    ].join('\n'),
  );
  const hostPub = readFileSync(`${hostKey}.pub`, 'utf8').trim().split(/\s+/);
  const knownHosts = join(dir, 'known_hosts');
  writeFileSync(knownHosts, `[127.0.0.1]:${port} ${hostPub[0]} ${hostPub[1]}\n`);
  let child: ChildProcess | null = null;
  const start = async (): Promise<void> => {
    child = spawn(sshd, ['-D', '-e', '-f', config], { stdio: ['ignore', 'ignore', 'pipe'] });
    child.stderr!.on('data', () => {});
    await accepting(port, 10_000);
  };
  await start();
  return {
    host: '127.0.0.1',
    port,
    user: 'root',
    clientKey,
    knownHosts,
    dir,
    restart: start,
    kill: () => child?.kill('SIGKILL'),
    stop: () => child?.kill('SIGTERM'),
  };
}
