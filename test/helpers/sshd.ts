/**
 * A real OpenSSH sshd for a test: on 127.0.0.1, a free port, its own host key, config, authorized
 * keys and known_hosts, keys only. Missing sshd fails the test (it never skips).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
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
  /**
   * SIGKILL the listener and every process it forked (the per-connection sshd and its sftp
   * session), by pid, found under /proc: a crash of the server, not a polite shutdown. Killing
   * only the listener would leave the established connection served by its child.
   */
  kill(): Promise<void>;
  /** SIGTERM the listener and its children, and wait for the listener to exit. */
  stop(): Promise<void>;
}

/** Every live descendant of `root`, from /proc/<pid>/stat's ppid field (children first). */
function descendants(root: number): number[] {
  const parent = new Map<number, number>();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      // pid (comm) state ppid ...: comm may hold spaces and parentheses, so split after the last ')'
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      parent.set(Number(d), ppid);
    } catch {
      // the process exited while we looked
    }
  }
  const out: number[] = [];
  const walk = (pid: number): void => {
    for (const [child, pp] of parent) if (pp === pid) {
      walk(child);
      out.push(child);
    }
  };
  walk(root);
  return out;
}

function signalTree(child: ChildProcess | null, sig: NodeJS.Signals): void {
  if (!child?.pid || child.exitCode !== null || child.signalCode !== null) return;
  const pids = descendants(child.pid);
  for (const pid of [child.pid, ...pids]) {
    try {
      process.kill(pid, sig);
    } catch {
      // already gone
    }
  }
}

function exited(child: ChildProcess | null): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((r) => child.once('exit', () => r()));
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
    const log: Buffer[] = [];
    child.stderr!.on('data', (d: Buffer) => log.push(d));
    child.once('exit', (code, sig) => {
      if (code !== 0 && code !== null && sig === null) process.stderr.write(`sshd exited ${code}: ${Buffer.concat(log).toString()}\n`);
    });
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
    kill: async () => {
      signalTree(child, 'SIGKILL');
      await exited(child);
    },
    stop: async () => {
      signalTree(child, 'SIGTERM');
      await exited(child);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
