/**
 * The appliance under qemu-system-x86_64 for a test: software emulation (-accel tcg: /dev/kvm is not
 * usable on the machines this runs on), SSH forwarded to a free port on 127.0.0.1 only, guest disks
 * attached read-only, and the QEMU guest agent's socket, which is how a hypervisor administrator
 * configures an appliance without a shell over SSH (the appliance offers none).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { connect, createServer, type Socket } from 'node:net';
import { join } from 'node:path';

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => (typeof a === 'object' && a ? resolve(a.port) : reject(new Error('no port'))));
    });
  });
}

export interface BootOptions {
  /** qcow2 the guest boots and writes (an overlay of the built image). */
  disk: string;
  /** Raw images attached read-only as further virtio disks (/dev/vdb, /dev/vdc ...). */
  guestDisks: string[];
  dir: string;
  memoryMiB?: number;
  cpus?: number;
}

export interface Appliance {
  sshPort: number;
  serialLog: string;
  qga: GuestAgent;
  /** ms from qemu's start until the guest's sshd sent its banner. */
  bootToSshMs: number;
  stop(): Promise<void>;
}

/** Resolves once something on 127.0.0.1:port sends an SSH banner. */
async function sshBanner(port: number, until: number, child: ChildProcess): Promise<void> {
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`qemu exited (${child.exitCode ?? child.signalCode}) before SSH came up`);
    const ok = await new Promise<boolean>((r) => {
      const c = connect(port, '127.0.0.1');
      const t = setTimeout(() => {
        c.destroy();
        r(false);
      }, 3000);
      c.once('data', (d: Buffer) => {
        clearTimeout(t);
        c.destroy();
        r(d.toString('latin1').startsWith('SSH-2.0-'));
      });
      c.once('error', () => {
        clearTimeout(t);
        r(false);
      });
      c.once('close', () => {
        clearTimeout(t);
        r(false);
      });
    });
    if (ok) return;
    if (Date.now() > until) throw new Error(`no SSH banner on 127.0.0.1:${port} in time`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

export async function boot(o: BootOptions, timeoutMs = 300_000): Promise<Appliance> {
  const sshPort = await freePort();
  const serialLog = join(o.dir, 'serial.log');
  const qgaSock = join(o.dir, 'qga.sock');
  const args = [
    '-accel', 'tcg', '-machine', 'pc', '-cpu', 'max',
    '-m', String(o.memoryMiB ?? 512), '-smp', String(o.cpus ?? 1),
    '-display', 'none', '-monitor', 'none', '-serial', `file:${serialLog}`,
    '-drive', `file=${o.disk},format=qcow2,if=virtio,cache=unsafe`,
    ...o.guestDisks.flatMap((d) => ['-drive', `file=${d},format=raw,if=virtio,readonly=on`]),
    // hostfwd bound to the loopback; the guest reaches the host's loopback as 10.0.2.2 (qemu's NAT).
    '-netdev', `user,id=n0,hostfwd=tcp:127.0.0.1:${sshPort}-:22`,
    '-device', 'virtio-net-pci,netdev=n0,romfile=',
    '-chardev', `socket,id=qga0,path=${qgaSock},server=on,wait=off`,
    '-device', 'virtio-serial-pci', '-device', 'virtserialport,chardev=qga0,name=org.qemu.guest_agent.0',
  ];
  const t0 = Date.now();
  const child = spawn('qemu-system-x86_64', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  const err: Buffer[] = [];
  child.stderr!.on('data', (d: Buffer) => err.push(d));
  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const gone = new Promise<void>((r) => child.once('exit', () => r()));
    child.kill('SIGTERM');
    const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await gone;
    clearTimeout(t);
  };
  try {
    await sshBanner(sshPort, t0 + timeoutMs, child);
  } catch (e) {
    await stop();
    throw new Error(`${(e as Error).message}; qemu stderr: ${Buffer.concat(err).toString()}`);
  }
  const bootToSshMs = Date.now() - t0;
  const qga = new GuestAgent(qgaSock);
  await qga.ready(t0 + timeoutMs);
  return { sshPort, serialLog, qga, bootToSshMs, stop: async () => {
    qga.close();
    await stop();
  } };
}

/** A small client of the QEMU guest agent's JSON protocol (qemu-ga(8), qapi/qga schema). */
export class GuestAgent {
  private sock: Socket | null = null;
  private buf = '';
  private waiting: ((line: string) => void) | null = null;
  constructor(private path: string) {}

  private async open(): Promise<Socket> {
    if (this.sock) return this.sock;
    const s = await new Promise<Socket>((resolve, reject) => {
      const c = connect(this.path);
      c.once('connect', () => resolve(c));
      c.once('error', reject);
    });
    s.on('data', (d: Buffer) => {
      this.buf += d.toString('utf8');
      for (let i; (i = this.buf.indexOf('\n')) >= 0; ) {
        const line = this.buf.slice(0, i);
        this.buf = this.buf.slice(i + 1);
        const w = this.waiting;
        this.waiting = null;
        w?.(line);
      }
    });
    this.sock = s;
    return s;
  }

  close(): void {
    this.sock?.destroy();
    this.sock = null;
  }

  private async request(cmd: object, ms = 30_000): Promise<unknown> {
    const s = await this.open();
    const line = await new Promise<string>((resolve, reject) => {
      const t = setTimeout(() => {
        this.waiting = null;
        reject(new Error(`guest agent: no answer to ${JSON.stringify(cmd).slice(0, 80)} in ${ms} ms`));
      }, ms);
      this.waiting = (l) => {
        clearTimeout(t);
        resolve(l);
      };
      s.write(`${JSON.stringify(cmd)}\n`);
    });
    const msg = JSON.parse(line) as { return?: unknown; error?: { desc: string } };
    if (msg.error) throw new Error(`guest agent: ${msg.error.desc}`);
    return msg.return;
  }

  /** Waits until qemu-ga answers: guest-sync with a fresh id also discards any stale reply. */
  async ready(until: number): Promise<void> {
    for (;;) {
      try {
        const id = Math.floor(Math.random() * 1e9);
        const r = await this.request({ execute: 'guest-sync', arguments: { id } }, 5000);
        if (r === id) return;
      } catch {
        this.close();
      }
      if (Date.now() > until) throw new Error('the guest agent did not answer in time');
      await new Promise((r) => setTimeout(r, 1000));
    }
  }

  async writeFile(path: string, data: string | Buffer, mode?: string): Promise<void> {
    const h = (await this.request({ execute: 'guest-file-open', arguments: { path, mode: 'w' } })) as number;
    await this.request({ execute: 'guest-file-write', arguments: { handle: h, 'buf-b64': Buffer.from(data).toString('base64') } });
    await this.request({ execute: 'guest-file-close', arguments: { handle: h } });
    if (mode) await this.exec('/bin/chmod', [mode, path]);
  }

  /** Runs a program in the guest as root (no shell unless asked for) and waits for it. */
  async exec(path: string, args: string[] = [], ms = 120_000): Promise<{ code: number; stdout: string; stderr: string }> {
    const { pid } = (await this.request({ execute: 'guest-exec', arguments: { path, arg: args, 'capture-output': true } })) as { pid: number };
    const until = Date.now() + ms;
    for (;;) {
      const st = (await this.request({ execute: 'guest-exec-status', arguments: { pid } })) as { exited: boolean; exitcode?: number; signal?: number; 'out-data'?: string; 'err-data'?: string };
      if (st.exited) {
        return {
          code: st.exitcode ?? 128 + (st.signal ?? 0),
          stdout: Buffer.from(st['out-data'] ?? '', 'base64').toString(),
          stderr: Buffer.from(st['err-data'] ?? '', 'base64').toString(),
        };
      }
      if (Date.now() > until) throw new Error(`guest: ${path} ${args.join(' ')} still running after ${ms} ms`);
      await new Promise((r) => setTimeout(r, 300));
    }
  }
}
