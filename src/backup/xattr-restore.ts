/**
 * Extended attributes for restored entries. Node has no setxattr, so the attributes go to one
 * `setfattr -h --restore=-` process (the attr package) per restore, in the dump format `getfattr -d
 * -e hex` writes: "# file: PATH", then "NAME=0xHEX" lines, then an empty line. Paths are relative
 * to the restore's target (the process runs there), names and paths escaped as \ooo, so any bytes
 * pass; `-h` sets a symlink's own attributes and never follows one.
 *
 * The dump streams: an entry's lines are written once it has its final name, and setfattr reads
 * them in order. Its complaints ("setfattr: PATH: REASON", one per attribute it could not set)
 * become warnings when it exits.
 */
import { spawn, type ChildProcess } from 'node:child_process';

/** Bytes that stand for themselves in a dump; every other byte is written \ooo. */
const PLAIN = /^[A-Za-z0-9._\-+/,:@%~]$/;

export function dumpEscape(bytes: Buffer): string {
  let s = '';
  for (const b of bytes) {
    const c = String.fromCharCode(b);
    s += b < 0x80 && PLAIN.test(c) ? c : `\\${b.toString(8).padStart(3, '0')}`;
  }
  return s;
}

/** One entry's stanza of the dump. */
export function dumpStanza(relPath: Buffer, xattrs: ReadonlyArray<readonly [string, Buffer]>): string {
  let s = `# file: ${dumpEscape(relPath)}\n`;
  for (const [name, value] of xattrs) s += `${dumpEscape(Buffer.from(name, 'utf8'))}=${value.length ? `0x${value.toString('hex')}` : ''}\n`;
  return `${s}\n`;
}

export interface XattrWarning {
  path: string;
  code: string;
  message: string;
}

/** Longest stderr kept from setfattr (one line per complaint); complaints past it are not reported. */
const MAX_STDERR = 1 << 20;

export class XattrSetter {
  private child: ChildProcess | null = null;
  private failed: Error | null = null;
  private stderr = '';
  private exited: Promise<number | null> | null = null;
  /** Entries given to setfattr. */
  entries = 0;

  /** `cwd`: the restore's target; paths given to add() are relative to it. */
  constructor(private readonly cwd: string) {}

  async add(relPath: Buffer, xattrs: ReadonlyArray<readonly [string, Buffer]>): Promise<void> {
    if (xattrs.length === 0 || this.failed) return;
    const child = this.start();
    this.entries++;
    const ok = child.stdin!.write(dumpStanza(relPath, xattrs));
    if (!ok) await new Promise<void>((resolve) => {
      const done = (): void => {
        child.stdin!.off('drain', done);
        child.off('close', done);
        resolve();
      };
      child.stdin!.once('drain', done);
      child.once('close', done);
    });
  }

  /** Ends the dump and waits for setfattr: what it could not set, as warnings (one per complaint). */
  async close(): Promise<XattrWarning[]> {
    const warnings: XattrWarning[] = [];
    if (this.child) {
      this.child.stdin!.end();
      const code = await this.exited;
      for (const line of this.stderr.split('\n')) {
        const m = /^setfattr: (.*): ([^:]*)$/.exec(line);
        if (m) warnings.push({ path: m[1]!, code: 'E_RESTORE_XATTR', message: `setfattr could not set an extended attribute: ${m[2]}` });
        else if (line.trim()) warnings.push({ path: '(restore)', code: 'E_RESTORE_XATTR', message: `setfattr: ${line}` });
      }
      if (code !== 0 && warnings.length === 0) warnings.push({ path: '(restore)', code: 'E_RESTORE_XATTR', message: `setfattr exited with ${code}` });
    }
    if (this.failed) warnings.push({ path: '(restore)', code: 'E_RESTORE_XATTR', message: `extended attributes were not set: ${this.failed.message}` });
    return warnings;
  }

  private start(): ChildProcess {
    if (this.child) return this.child;
    const child = spawn('setfattr', ['-h', '--restore=-'], { cwd: this.cwd, stdio: ['pipe', 'ignore', 'pipe'] });
    this.exited = new Promise((resolve) => {
      child.once('error', (err: NodeJS.ErrnoException) => {
        this.failed = err.code === 'ENOENT' ? new Error('setfattr is not installed (Debian: apt-get install attr)') : err;
        resolve(null);
      });
      child.once('close', (code) => resolve(code));
    });
    child.stdin!.on('error', () => {}); // an early exit shows in close()
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (d: string) => {
      if (this.stderr.length < MAX_STDERR) this.stderr += d;
    });
    this.child = child;
    return child;
  }
}
