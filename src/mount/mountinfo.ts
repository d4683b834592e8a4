/**
 * What the kernel says is mounted where (/proc/self/mountinfo, proc(5)), and how to clear a FUSE
 * mount whose process died. A `kill -9`ed FUSE daemon leaves its mount point answering ENOTCONN
 * ("Transport endpoint is not connected") until someone detaches it; the next `snapferry mount` on
 * that path does so itself.
 */
import { readFileSync, statfsSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';

export interface MountEntry {
  /** The filesystem's device, major:minor (a FUSE mount's is 0:N, also the name of its bdi). */
  device: string;
  mountPoint: string;
  fsType: string;
  source: string;
  options: string;
}

/** mountinfo escapes space, tab, newline and backslash as \ooo. */
function unescape(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

export function parseMountinfo(text: string): MountEntry[] {
  const out: MountEntry[] = [];
  for (const line of text.split('\n')) {
    if (!line) continue;
    const f = line.split(' ');
    const sep = f.indexOf('-');
    if (sep < 6 || f.length < sep + 3) continue;
    out.push({ device: f[2]!, mountPoint: unescape(f[4]!), options: f[5]!, fsType: f[sep + 1]!, source: unescape(f[sep + 2]!) });
  }
  return out;
}

/** The topmost mount at `path`, if `path` is a mount point. */
export function mountAt(path: string, text = readFileSync('/proc/self/mountinfo', 'utf8')): MountEntry | undefined {
  const p = resolve(path);
  const all = parseMountinfo(text).filter((m) => m.mountPoint === p);
  return all[all.length - 1];
}

/** The pid a snapferry mount's source names ("snapferry:<pid>"), if it is one of ours. */
export function snapferryPid(m: MountEntry): number | undefined {
  const match = /^snapferry:(\d+)$/.exec(m.source);
  return match ? Number(match[1]) : undefined;
}

/**
 * Is the FUSE daemon behind `path` gone (the kernel answers ENOTCONN)? Asked through statfs, which
 * always reaches the daemon: a stat may be answered from the kernel's attribute cache.
 */
export function isStale(path: string): boolean {
  try {
    statfsSync(path);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ENOTCONN';
  }
}

/** Detaches the mount at `path` (lazily: nothing can still be using a dead daemon's files). */
export function detach(path: string): { ok: boolean; message: string } {
  for (const [cmd, args] of [
    ['fusermount', ['-uz', path]],
    ['umount', ['-l', path]],
  ] as const) {
    const r = spawnSync(cmd, args, { encoding: 'utf8' });
    if (r.status === 0) return { ok: true, message: '' };
    if (cmd === 'umount') return { ok: false, message: (r.stderr || r.error?.message || `${cmd} failed`).trim() };
  }
  return { ok: false, message: 'unreachable' };
}
