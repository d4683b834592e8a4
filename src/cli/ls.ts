/**
 * snapferry ls: the volumes of a disk, or the entries of a directory (recursively with -R), one
 * line each; with --json one JSON object per line (JSON Lines), which is also the manifest users
 * compare a restore with. Output streams: a directory is never read whole, a tree never built, and
 * each line waits for stdout to drain.
 */
import { createHash } from 'node:crypto';
import { ExitCode, SnapferryError, toSnapferryError } from '../util/errors.js';
import { devNumbers, type DirEntry, type FileSystem, type FileType, type Stat } from '../fs/types.js';
import { MAX_PATH_COMPONENTS } from '../fs/path.js';
import { humanBytes, table } from './output.js';
import { readChunks, stdout } from './cat.js';
import { forEachDisk, planTarget, resolveIn, withTarget, type FsCommandOptions, type TargetPlan } from './target.js';

export interface LsOptions extends FsCommandOptions {
  recursive: boolean;
  sha256: boolean;
}

/** Deepest directory nesting -R descends into (the same bound path resolution has). */
export const MAX_WALK_DEPTH = MAX_PATH_COMPONENTS;

// ---- formatting ---------------------------------------------------------------------------------

const TYPE_CHAR: Record<FileType, string> = { file: '-', dir: 'd', symlink: 'l', blockdev: 'b', chardev: 'c', fifo: 'p', socket: 's' };

/** st_mode as `ls -l` prints it: type, then rwx for user/group/other with setuid/setgid/sticky folded in. */
export function modeString(type: FileType, mode: number): string {
  const bit = (m: number, c: string) => (mode & m ? c : '-');
  const special = (x: number, s: number, set: string, unset: string) => (mode & s ? (mode & x ? set : unset) : mode & x ? 'x' : '-');
  return (
    TYPE_CHAR[type] +
    bit(0o400, 'r') + bit(0o200, 'w') + special(0o100, 0o4000, 's', 'S') +
    bit(0o040, 'r') + bit(0o020, 'w') + special(0o010, 0o2000, 's', 'S') +
    bit(0o004, 'r') + bit(0o002, 'w') + special(0o001, 0o1000, 't', 'T')
  );
}

/** Bounds of an ECMAScript Date (ECMA-262 21.4.1.22: ±8.64e15 ms), in seconds. */
const DATE_LIMIT_S = 8_640_000_000_000n;

/** bigint nanoseconds since the epoch as ISO 8601 UTC with all nine fraction digits: "2024-01-02T03:04:05.123456789Z". */
export function isoNs(ns: bigint): string {
  let s = ns / 1_000_000_000n;
  let frac = ns % 1_000_000_000n;
  if (frac < 0n) {
    // Floor division: 1969-12-31T23:59:59.5 is -0.5 s, i.e. second -1 plus 0.5.
    frac += 1_000_000_000n;
    s -= 1n;
  }
  if (s > DATE_LIMIT_S || s < -DATE_LIMIT_S) return `${ns}ns`;
  const base = new Date(Number(s) * 1000).toISOString(); // ...T03:04:05.000Z (±YYYYYY- for far years)
  return `${base.slice(0, -5)}.${frac.toString().padStart(9, '0')}Z`;
}


/**
 * A path for a terminal: control characters and backslashes escaped (so one entry is one line),
 * bytes that are not UTF-8 (ext names are bytes) as \xNN.
 */
export function printablePath(path: string, raw?: Buffer): string {
  const escape = (s: string) =>
    s.replace(/[\u0000-\u001f\u007f\\]/g, (c) => (c === '\\' ? '\\\\' : c === '\n' ? '\\n' : c === '\t' ? '\\t' : `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`));
  if (!raw) return escape(path);
  let out = '';
  let i = 0;
  while (i < raw.length) {
    const len = utf8SequenceLength(raw, i);
    if (len === 0) {
      out += `\\x${raw[i]!.toString(16).padStart(2, '0')}`;
      i++;
    } else {
      out += escape(raw.toString('utf8', i, i + len));
      i += len;
    }
  }
  return out;
}

/** Length of the well-formed UTF-8 sequence at raw[i] (Unicode 15, table 3-7), or 0. */
function utf8SequenceLength(raw: Buffer, i: number): number {
  const b0 = raw[i]!;
  if (b0 < 0x80) return 1;
  const ranges: [number, number][][] = [
    [[0xc2, 0xdf], [0x80, 0xbf]],
    [[0xe0, 0xe0], [0xa0, 0xbf], [0x80, 0xbf]],
    [[0xe1, 0xec], [0x80, 0xbf], [0x80, 0xbf]],
    [[0xed, 0xed], [0x80, 0x9f], [0x80, 0xbf]],
    [[0xee, 0xef], [0x80, 0xbf], [0x80, 0xbf]],
    [[0xf0, 0xf0], [0x90, 0xbf], [0x80, 0xbf], [0x80, 0xbf]],
    [[0xf1, 0xf3], [0x80, 0xbf], [0x80, 0xbf], [0x80, 0xbf]],
    [[0xf4, 0xf4], [0x80, 0x8f], [0x80, 0xbf], [0x80, 0xbf]],
  ];
  for (const seq of ranges) {
    if (b0 < seq[0]![0] || b0 > seq[0]![1]) continue;
    for (let k = 1; k < seq.length; k++) {
      const b = raw[i + k];
      if (b === undefined || b < seq[k]![0] || b > seq[k]![1]) return 0;
    }
    return seq.length;
  }
  return 0;
}

// ---- the walk -----------------------------------------------------------------------------------

export interface WalkEntry {
  kind: 'entry';
  /** '/'-rooted path inside the volume. */
  path: string;
  /** The path's exact bytes, when a component's name is not UTF-8 (ext). */
  rawPath?: Buffer;
  ino: number;
  stat: Stat;
}

/** An entry the walk could not stat, or a directory it did not enter (its own ancestor: a cycle; or too deep). */
export interface WalkSkip {
  kind: 'skip';
  error: SnapferryError;
}

/** Stats started ahead of the entry being printed, per open directory (the walk's only parallelism). */
export const STAT_AHEAD = 16;

/** An entry pulled from a listing with its stat under way, or the listing's end or failure. */
type Ahead = { e: DirEntry; stat: Promise<{ stat: Stat } | { err: unknown }> } | { done: true } | { fail: unknown };

interface Frame {
  ino: number;
  path: string;
  rawPath?: Buffer;
  entries: AsyncIterator<DirEntry>;
  /** Entries pulled ahead, in listing order: at most STAT_AHEAD, so memory is bounded by depth. */
  ahead: Ahead[];
}

/**
 * The frame's next entry, keeping up to STAT_AHEAD stats in flight behind it: a cold walk waits
 * for one disk read per inode (an MFT record, an inode table block), and these overlap. Entries come
 * out in listing order; a listing that fails does so at its place in that order.
 */
async function nextAhead(fs: FileSystem, f: Frame): Promise<Ahead> {
  while (f.ahead.length < STAT_AHEAD) {
    const last = f.ahead[f.ahead.length - 1];
    if (last && !('e' in last)) break;
    try {
      const n = await f.entries.next();
      if (n.done) f.ahead.push({ done: true });
      else {
        const e = n.value;
        f.ahead.push({ e, stat: fs.stat(e.ino).then((stat) => ({ stat }), (err: unknown) => ({ err })) });
      }
    } catch (fail) {
      f.ahead.push({ fail });
    }
  }
  return f.ahead.shift()!;
}

function childPath(parent: string, name: string): string {
  return parent === '/' ? `/${name}` : `${parent}/${name}`;
}

/**
 * The entries below `ino` in pre-order (a directory, then what it holds), as `find` walks: with
 * `recursive` false only the directory's own entries. Iterative, with one open directory listing
 * per level and nothing else kept: memory grows with the depth, never with the tree. A directory
 * that is already on the way down (the same ino) is a cycle in a corrupt filesystem: reported as a
 * skip, not entered. `start` itself is not yielded.
 */
export async function* walk(fs: FileSystem, ino: number, path: string, recursive: boolean): AsyncGenerator<WalkEntry | WalkSkip> {
  const stack: Frame[] = [{ ino, path, entries: fs.readdir(ino)[Symbol.asyncIterator](), ahead: [] }];
  const onPath = new Set<number>([ino]);
  try {
    while (stack.length > 0) {
      const top = stack[stack.length - 1]!;
      const next = await nextAhead(fs, top);
      if ('fail' in next) throw next.fail;
      if ('done' in next) {
        stack.pop();
        onPath.delete(top.ino);
        continue;
      }
      const e = next.e;
      const p = childPath(top.path, e.name);
      const rawPath = top.rawPath || e.rawName ? Buffer.concat([top.rawPath ?? Buffer.from(top.path), Buffer.from(top.path === '/' ? '' : '/'), e.rawName ?? Buffer.from(e.name)]) : undefined;
      const got = await next.stat;
      if ('err' in got) {
        // One unreadable inode or MFT record costs its entry (reported), not the rest of the walk.
        const err = got.err;
        const se = toSnapferryError(err);
        if (se.code === 'E_INTERNAL') throw err;
        yield { kind: 'skip', error: new SnapferryError(se.code, `${p}: ${se.message}`, { ...se.data, path: p, ino: e.ino }, se.exitCode) };
        continue;
      }
      const stat = got.stat;
      yield { kind: 'entry', path: p, ...(rawPath ? { rawPath } : {}), ino: e.ino, stat };
      if (!recursive || stat.type !== 'dir') continue;
      if (onPath.has(e.ino)) {
        yield { kind: 'skip', error: new SnapferryError('E_FS_DIR_CYCLE', `${p}: directory ${e.ino} contains itself (it is one of its own ancestors); not entered`, { path: p, ino: e.ino }, ExitCode.corrupt) };
        continue;
      }
      if (stack.length >= MAX_WALK_DEPTH) {
        yield { kind: 'skip', error: new SnapferryError('E_FS_TOO_DEEP', `${p}: deeper than ${MAX_WALK_DEPTH} directories; not entered`, { path: p, ino: e.ino, limit: MAX_WALK_DEPTH }, ExitCode.corrupt) };
        continue;
      }
      onPath.add(e.ino);
      stack.push({ ino: e.ino, path: p, ...(rawPath ? { rawPath } : {}), entries: fs.readdir(e.ino)[Symbol.asyncIterator](), ahead: [] });
    }
  } finally {
    // An abandoned walk (an output error) closes the listings it left open.
    for (const f of stack.reverse()) await f.entries.return?.();
  }
}

// ---- the command --------------------------------------------------------------------------------

/** One ls line's data: what --json prints, field for field. */
export interface LsRecord {
  path: string;
  /** Hex of the path's bytes when it is not UTF-8 (`path` then holds U+FFFD where bytes did not decode). */
  pathHex?: string;
  type: FileType;
  size: number;
  mode: number;
  uid: number;
  gid: number;
  nlink: number;
  mtime: string;
  target?: string;
  /** A device node's numbers. */
  devMajor?: number;
  devMinor?: number;
  sha256?: string;
  ino: number;
  /** Set when the entry's link target or contents could not be read (its code and message). */
  error?: { code: string; message: string };
}

async function sha256Of(fs: FileSystem, ino: number): Promise<string> {
  const h = createHash('sha256');
  await readChunks(fs, ino, undefined, (c) => {
    h.update(c);
  });
  return h.digest('hex');
}

async function record(fs: FileSystem, e: WalkEntry, sha256: boolean): Promise<LsRecord> {
  const st = e.stat;
  const r: LsRecord = {
    path: e.path,
    ...(e.rawPath ? { pathHex: e.rawPath.toString('hex') } : {}),
    type: st.type,
    size: st.size,
    mode: st.mode,
    uid: st.uid,
    gid: st.gid,
    nlink: st.nlink,
    mtime: isoNs(st.mtimeNs),
    ino: e.ino,
  };
  if ((st.type === 'chardev' || st.type === 'blockdev') && st.rdev !== undefined) {
    const { major, minor } = devNumbers(st.rdev);
    r.devMajor = major;
    r.devMinor = minor;
  }
  try {
    if (st.type === 'symlink') r.target = await fs.readlink(e.ino);
    if (sha256 && st.type === 'file') r.sha256 = await sha256Of(fs, e.ino);
  } catch (err) {
    // One unreadable file (EFS-encrypted, a corrupt runlist) must not end a manifest of thousands:
    // it is marked and the command's exit code says something was not read.
    const se = toSnapferryError(err);
    if (se.code === 'E_OUTPUT_CLOSED' || se.code === 'E_INTERNAL') throw err;
    r.error = { code: se.code, message: se.message };
  }
  return r;
}

function textLine(r: LsRecord, raw?: Buffer): string {
  const mode = modeString(r.type, r.mode);
  return `${mode} ${String(r.nlink).padStart(3)} ${String(r.uid).padStart(5)} ${String(r.gid).padStart(5)} ${String(r.size).padStart(12)} ${r.mtime} ${printablePath(r.path, raw)}${r.target !== undefined ? ` -> ${printablePath(r.target)}` : ''}${r.sha256 ? `  sha256:${r.sha256}` : ''}\n`;
}

async function listVolumes(plan: TargetPlan, o: LsOptions): Promise<void> {
  const out = stdout();
  await forEachDisk(plan, o, async (d) => {
    const prefix = d.source.id ? `${d.source.id}/` : '';
    if (o.json) {
      for (const v of d.table.volumes) {
        await out.write(JSON.stringify({ volume: prefix + v.name, ...(d.source.id ? { disk: d.source.id } : {}), start: v.start, size: v.size, type: v.type, filesystem: v.filesystem, ...(v.label ? { label: v.label } : {}) }) + '\n');
      }
      return;
    }
    const rows = [['VOLUME', 'SIZE', 'FILESYSTEM', 'LABEL']];
    for (const v of d.table.volumes) rows.push([prefix + v.name, humanBytes(v.size), v.filesystem.kind, v.filesystem.label ?? v.label ?? '']);
    await out.write(table(rows, '') + '\n');
  });
}

export async function lsCommand(diskArg: string, target: string | undefined, o: LsOptions): Promise<number> {
  const plan = await planTarget(diskArg, target, o);
  try {
    return await lsPlan(plan, o);
  } finally {
    await plan.close();
  }
}

async function lsPlan(plan: TargetPlan, o: LsOptions): Promise<number> {
  // No VOLUME (nothing, or only a .vmx disk id): the volumes there are.
  if (plan.spec.volume === undefined) {
    await listVolumes(plan, o);
    return ExitCode.ok;
  }
  const out = stdout();
  let problems = 0;
  await withTarget(plan, o, async (t) => {
    const ino = await resolveIn(t, t.path);
    const stat = await t.fs.stat(ino);
    const emit = async (e: WalkEntry) => {
      const r = await record(t.fs, e, o.sha256);
      if (r.error) {
        problems++;
        if (!o.json) process.stderr.write(`snapferry: ${r.error.code}: ${t.label}${r.path}: ${r.error.message}\n`);
      }
      await out.write(o.json ? JSON.stringify(r) + '\n' : textLine(r, e.rawPath));
    };
    // A file (or link, device ...) lists itself; a directory lists what it holds, as ls does.
    if (stat.type !== 'dir') return emit({ kind: 'entry', path: t.path, ino, stat });
    for await (const item of walk(t.fs, ino, t.path, o.recursive)) {
      if (item.kind === 'entry') await emit(item);
      else {
        problems++;
        process.stderr.write(o.json ? JSON.stringify({ warning: item.error.toJSON() }) + '\n' : `snapferry: ${item.error.code}: ${item.error.message}\n`);
      }
    }
  });
  // Something was listed but not read (or a cycle was cut): say so in the exit code.
  return problems > 0 ? ExitCode.failure : ExitCode.ok;
}
