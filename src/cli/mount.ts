/**
 * `snapferry mount SOURCE... MNT` and `snapferry umount MNT`.
 *
 * By default mount runs the tree in a detached child and returns once the kernel has the mount (or
 * with the child's error): the child is this same program with --foreground, and tells its parent
 * "ready" (or why not) through an inherited pipe. With --foreground the calling process serves the
 * mount itself (systemd, debugging) and unmounts on SIGINT, SIGTERM or SIGHUP.
 */
import { spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, statSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { ExitCode, SnapferryError, toSnapferryError } from '../util/errors.js';
import { VmTree } from '../vfs/tree.js';
import { detach, isStale, mountAt, snapferryPid } from '../mount/mountinfo.js';
import type { CommonOptions } from './main.js';
import { diskOptions, openRepoImage, treeSources, treeSourcesOf, type RepoSource } from './sources.js';

/** The child's end of the ready pipe, when it was started by a background `mount`. */
const READY_FD_ENV = 'SNAPFERRY_MOUNT_READY_FD';
/** How long a background `mount` waits for its child to open every disk and mount. */
export const MOUNT_READY_TIMEOUT_MS = 300_000;

export interface MountCliOptions extends CommonOptions {
  foreground: boolean;
  allowOther: boolean;
  log?: string;
  replay: boolean;
  /** --repo: the arguments name an image backup, read from the repository. */
  fromRepo?: RepoSource;
}

export class MountError extends SnapferryError {}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Makes `mnt` ready to mount on: a directory, not mounted, or mounted by a dead process (cleared).
 * Returns a note when it cleared a stale mount.
 */
export function prepareMountPoint(mnt: string): string | undefined {
  const existing = mountAt(mnt);
  if (existing) {
    if (isStale(mnt)) {
      const r = detach(mnt);
      if (!r.ok) throw new MountError('E_MOUNT_BUSY', `${mnt}: a stale mount (its process is gone) could not be cleared: ${r.message}`, { mountPoint: mnt }, ExitCode.failure);
      return `cleared a stale ${existing.fsType} mount left at ${mnt} by a process that is gone`;
    }
    const pid = snapferryPid(existing);
    throw new MountError(
      'E_MOUNT_BUSY',
      pid !== undefined && alive(pid) ? `${mnt} is already a snapferry mount (pid ${pid}); run 'snapferry umount ${mnt}' first` : `${mnt} is already a mount point (${existing.fsType} from ${existing.source})`,
      { mountPoint: mnt, fsType: existing.fsType, source: existing.source },
      ExitCode.failure,
    );
  }
  let st;
  try {
    st = statSync(mnt);
  } catch {
    throw new MountError('E_MOUNT_POINT', `${mnt}: no such directory (create the mount point first)`, { mountPoint: mnt }, ExitCode.notFound);
  }
  if (!st.isDirectory()) throw new MountError('E_MOUNT_POINT', `${mnt}: not a directory`, { mountPoint: mnt }, ExitCode.usage);
  if (!existsSync('/dev/fuse')) throw new MountError('E_MOUNT_NO_FUSE', '/dev/fuse is missing: load the fuse kernel module (modprobe fuse) or give the container the device', {}, ExitCode.failure);
  return undefined;
}


function summary(tree: VmTree, mnt: string, log: string | undefined): Record<string, unknown> {
  return {
    mountPoint: mnt,
    pid: process.pid,
    ...(log ? { log } : {}),
    disks: tree.disks.map((d) => ({
      name: d.name,
      path: d.path,
      volumes: d.volumes.map((v) => ({ name: v.name, ...(v.fs ? { filesystem: v.fs.info.kind, notes: v.fs.info.notes } : {}), ...(v.error ? { error: v.error } : {}) })),
    })),
  };
}

function describe(s: Record<string, unknown>): string {
  const lines = [`mounted at ${s.mountPoint as string} (pid ${s.pid as number}${s.log ? `, log ${s.log as string}` : ''})`];
  for (const d of s.disks as { name: string; volumes: { name: string; filesystem?: string; notes?: string[]; error?: { message: string } }[] }[]) {
    for (const v of d.volumes) {
      const what = v.filesystem ? `${v.filesystem}${v.notes?.length ? ` (${v.notes.join('; ')})` : ''}` : `not readable: ${v.error?.message ?? 'unknown'}`;
      lines.push(`  ${d.name}/${v.name}  ${what}`);
    }
  }
  return `${lines.join('\n')}\n`;
}

export async function mountCommand(args: string[], mntArg: string, o: MountCliOptions): Promise<number> {
  const mnt = resolve(mntArg);
  return o.foreground ? foreground(args, mnt, o) : background(args, mnt, o);
}

/** Serves the mount in this process until a signal or an external unmount. */
async function foreground(args: string[], mnt: string, o: MountCliOptions): Promise<number> {
  const readyFd = process.env[READY_FD_ENV] ? Number(process.env[READY_FD_ENV]) : undefined;
  delete process.env[READY_FD_ENV];
  const tell = (msg: Record<string, unknown>): void => {
    if (readyFd === undefined) return;
    try {
      writeSync(readyFd, `${JSON.stringify(msg)}\n`);
      closeSync(readyFd);
    } catch {}
  };
  const logLine = (rec: Record<string, unknown>): void => {
    process.stderr.write(`${JSON.stringify({ time: new Date().toISOString(), ...rec })}\n`);
  };
  let tree: VmTree | undefined;
  let image: Awaited<ReturnType<typeof openRepoImage>> | undefined;
  try {
    const note = prepareMountPoint(mnt);
    if (note) logLine({ level: 'warning', message: note });
    if (o.fromRepo && args.length !== 1) throw new MountError('E_USAGE', 'mount --repo takes one image backup ID and MNT', {}, ExitCode.usage);
    if (o.fromRepo) image = await openRepoImage(args[0]!, o.fromRepo, Math.floor(o.cacheBytes / 2));
    tree = await VmTree.open(image ? treeSourcesOf(image.sources) : await treeSources(args), { cacheBytes: o.cacheBytes, disk: diskOptions(o), replayJournal: o.replay, linkRoot: mnt });
    const { mountTree } = await import('../mount/fuse.js');
    const m = await mountTree(tree, mnt, { allowOther: o.allowOther, log: logLine });
    const s = summary(tree, mnt, o.log);
    if (readyFd !== undefined) tell({ ok: true, ...s, ...(note ? { note } : {}) });
    else process.stdout.write(o.json ? `${JSON.stringify(s)}\n` : describe(s));
    logLine({ level: 'info', message: 'mounted', ...s });

    const why = await new Promise<string>((done) => {
      for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.once(sig, () => done(sig));
      void m.closed.then(() => done('unmounted from outside'));
    });
    if (why !== 'unmounted from outside') await m.unmount().catch((err) => logLine({ level: 'error', message: `unmount: ${(err as Error).message}` }));
    logLine({ level: 'info', message: `unmounted (${why})`, errors: Object.fromEntries(m.errorCounts) });
    await tree.close();
    await image?.close().catch(() => {});
    // blocked reads of /dev/fuse in the thread pool end with the mount; do not wait for them
    process.exit(ExitCode.ok);
  } catch (err) {
    const e = toSnapferryError(err);
    tell({ ok: false, error: e.toJSON() });
    await tree?.close().catch(() => {});
    await image?.close().catch(() => {});
    throw e;
  }
}

function defaultLog(mnt: string): string {
  return join(tmpdir(), `snapferry-mount${mnt.replace(/[^A-Za-z0-9._-]+/g, '_')}.log`);
}

/** Starts the foreground mount as a detached child and waits for its word. */
async function background(args: string[], mnt: string, o: MountCliOptions): Promise<number> {
  // Fail fast on what the parent can see itself (the child checks again).
  prepareMountPointCheckOnly(mnt);
  const log = o.log ? resolve(o.log) : defaultLog(mnt);
  const logFd = openSync(log, 'a', 0o600);
  // The child gets the same sources (absolute: it may outlive the caller's cwd) and options.
  const childArgs = ['mount', '--foreground', '--log', log, '--cache-mib', String(Math.round(o.cacheBytes / 2 ** 20)), '--max-chain-depth', String(o.maxChainDepth)];
  if (o.allowOther) childArgs.push('--allow-other');
  if (!o.replay) childArgs.push('--no-replay');
  if (o.ignoreCidMismatch) childArgs.push('--ignore-cid-mismatch');
  if (o.allowExternalExtents) childArgs.push('--allow-external-extents');
  if (o.fromRepo) {
    // the child reads the key file itself: it cannot be stdin, which the child does not get
    if (!o.fromRepo.identity || o.fromRepo.identity === '-') throw new MountError('E_USAGE', 'mount --repo needs --identity KEYFILE (a file: the serving process reads it; --foreground takes -)', {}, ExitCode.usage);
    const r = o.fromRepo;
    childArgs.push('--repo', /^sftp:\/\//.test(r.repo) ? r.repo : resolve(r.repo), '--identity', resolve(r.identity!));
    if (r.sshKey) childArgs.push('--ssh-key', resolve(r.sshKey));
    if (r.knownHosts) childArgs.push('--known-hosts', resolve(r.knownHosts));
    if (r.acceptNewHostKey) childArgs.push('--accept-new-host-key');
  }
  // an image backup's ID is not a path
  childArgs.push('--', ...args.map((a) => (o.fromRepo ? a : resolve(a))), mnt);
  const child = spawn(process.execPath, [...process.execArgv, process.argv[1]!, ...childArgs], {
    detached: true,
    cwd: '/',
    stdio: ['ignore', logFd, logFd, 'pipe'],
    env: { ...process.env, [READY_FD_ENV]: '3' },
  });
  closeSync(logFd);
  const pipe = child.stdio[3] as NodeJS.ReadableStream;
  const msg = await new Promise<Record<string, unknown>>((done) => {
    let buf = '';
    const timer = setTimeout(() => done({ ok: false, error: { code: 'E_MOUNT_TIMEOUT', message: `the mount process did not report within ${MOUNT_READY_TIMEOUT_MS / 1000} s (see ${log})` } }), MOUNT_READY_TIMEOUT_MS);
    pipe.on('data', (c: Buffer) => (buf += c.toString('utf8')));
    pipe.on('end', () => {
      clearTimeout(timer);
      try {
        done(JSON.parse(buf.split('\n')[0]!) as Record<string, unknown>);
      } catch {
        done({ ok: false, error: { code: 'E_MOUNT_FAILED', message: `the mount process ended without reporting (see ${log})` } });
      }
    });
  });
  child.unref();
  (pipe as unknown as { destroy(): void }).destroy();
  if (msg.ok !== true) {
    const e = msg.error as { code: string; message: string; data?: Record<string, string | number> } | undefined;
    throw new MountError(e?.code ?? 'E_MOUNT_FAILED', e?.message ?? 'mount failed', e?.data ?? {}, ExitCode.failure);
  }
  delete msg.ok;
  if (msg.note) process.stderr.write(`snapferry: ${msg.note as string}\n`);
  delete msg.note;
  process.stdout.write(o.json ? `${JSON.stringify(msg)}\n` : describe(msg));
  return ExitCode.ok;
}

/** The parent's early check: the same as prepareMountPoint, except that a stale mount is left for the child to clear. */
function prepareMountPointCheckOnly(mnt: string): void {
  if (mountAt(mnt) && isStale(mnt)) return;
  prepareMountPoint(mnt);
}

/** Stops the snapferry process serving `mnt` (it unmounts itself), or detaches a stale mount. */
export async function umountCommand(mntArg: string, o: CommonOptions): Promise<number> {
  const mnt = resolve(mntArg);
  const m = mountAt(mnt);
  if (!m) throw new MountError('E_NOT_MOUNTED', `${mnt} is not a mount point`, { mountPoint: mnt }, ExitCode.notFound);
  const pid = snapferryPid(m);
  if (pid === undefined) throw new MountError('E_NOT_SNAPFERRY', `${mnt} is a ${m.fsType} mount, not snapferry's; use umount(8)`, { mountPoint: mnt, fsType: m.fsType }, ExitCode.failure);
  let how: string;
  if (isStale(mnt) || !alive(pid)) {
    const r = detach(mnt);
    if (!r.ok) throw new MountError('E_UMOUNT_FAILED', `${mnt}: ${r.message}`, { mountPoint: mnt }, ExitCode.failure);
    how = 'stale mount cleared';
  } else {
    process.kill(pid, 'SIGTERM');
    const until = Date.now() + 10_000;
    while (mountAt(mnt) && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    if (mountAt(mnt)) {
      // Busy or wedged: detach lazily; the process notices and exits.
      const r = detach(mnt);
      if (!r.ok) throw new MountError('E_UMOUNT_FAILED', `${mnt}: pid ${pid} did not unmount and ${r.message}`, { mountPoint: mnt, pid }, ExitCode.failure);
      how = `pid ${pid} did not unmount within 10 s; detached`;
    } else how = `pid ${pid} unmounted`;
  }
  process.stdout.write(o.json ? `${JSON.stringify({ unmounted: mnt, how })}\n` : `unmounted ${mnt} (${how})\n`);
  return ExitCode.ok;
}

