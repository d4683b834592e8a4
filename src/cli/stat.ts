/** snapferry stat: everything the reader knows of one entry, as text or one JSON object. */
import { ExitCode } from '../util/errors.js';
import { devNumbers, type ExtentState, type FileSystem, type Stat } from '../fs/types.js';
import { isoNs, modeString, printablePath } from './ls.js';
import { stdout } from './cat.js';
import { planTarget, resolveTargetPath, withTarget, type FsCommandOptions } from './target.js';

/** NTFS DOS attributes ([MS-FSCC] 2.6 File Attributes), named as attrib/Explorer do. */
const DOS_ATTRIBUTES: [number, string][] = [
  [0x1, 'READONLY'], [0x2, 'HIDDEN'], [0x4, 'SYSTEM'], [0x10, 'DIRECTORY'], [0x20, 'ARCHIVE'], [0x40, 'DEVICE'], [0x80, 'NORMAL'],
  [0x100, 'TEMPORARY'], [0x200, 'SPARSE_FILE'], [0x400, 'REPARSE_POINT'], [0x800, 'COMPRESSED'], [0x1000, 'OFFLINE'],
  [0x2000, 'NOT_CONTENT_INDEXED'], [0x4000, 'ENCRYPTED'], [0x8000, 'INTEGRITY_STREAM'], [0x10000, 'VIRTUAL'], [0x20000, 'NO_SCRUB_DATA'],
  [0x10000000, 'DUP_FILE_NAME_INDEX_PRESENT'], [0x20000000, 'DUP_VIEW_INDEX_PRESENT'],
];

function dosAttributeNames(v: number): string[] {
  return DOS_ATTRIBUTES.filter(([bit]) => (v & bit) !== 0).map(([, name]) => name);
}

export interface ExtentSummary {
  count: number;
  /** Bytes per state, over the extents listed. */
  bytes: Record<ExtentState, number>;
  /** Extents per state. */
  extents: Record<ExtentState, number>;
}

/** Counts a file's extents by state; streamed, so a file with millions of them costs no memory. */
export async function summariseExtents(fs: FileSystem, ino: number): Promise<ExtentSummary> {
  const s: ExtentSummary = { count: 0, bytes: { data: 0, hole: 0, unwritten: 0 }, extents: { data: 0, hole: 0, unwritten: 0 } };
  for await (const e of fs.extents(ino)) {
    s.count++;
    s.bytes[e.state] += e.length;
    s.extents[e.state]++;
  }
  return s;
}

/** What stat --json prints: the Stat with times as ISO strings (ns precision) and as exact ns strings. */
export interface StatRecord {
  path: string;
  volume: string;
  filesystem: { kind: string; label?: string; uuid?: string; notes: string[] };
  ino: number;
  type: Stat['type'];
  mode: number;
  modeString: string;
  nlink: number;
  uid: number;
  gid: number;
  size: number;
  allocatedSize: number;
  atime: string;
  mtime: string;
  ctime: string;
  birthtime?: string;
  /** The same instants as decimal nanoseconds since the epoch (exact: JSON numbers cannot hold them). */
  atimeNs: string;
  mtimeNs: string;
  ctimeNs: string;
  birthtimeNs?: string;
  rdev?: { value: number; major: number; minor: number };
  target?: string;
  xattrs: string[];
  extents?: ExtentSummary;
  ext?: Stat['ext'];
  ntfs?: Omit<NonNullable<Stat['ntfs']>, 'reparseTag'> & { reparseTag?: string; dosAttributeNames: string[] };
}

export async function statRecord(fs: FileSystem, ino: number, path: string, volume: string): Promise<StatRecord> {
  const st = await fs.stat(ino);
  const info = fs.info;
  const r: StatRecord = {
    path,
    volume,
    filesystem: { kind: info.kind, ...(info.label !== undefined ? { label: info.label } : {}), ...(info.uuid !== undefined ? { uuid: info.uuid } : {}), notes: info.notes },
    ino: st.ino,
    type: st.type,
    mode: st.mode,
    modeString: modeString(st.type, st.mode),
    nlink: st.nlink,
    uid: st.uid,
    gid: st.gid,
    size: st.size,
    allocatedSize: st.allocatedSize,
    atime: isoNs(st.atimeNs),
    mtime: isoNs(st.mtimeNs),
    ctime: isoNs(st.ctimeNs),
    ...(st.birthtimeNs !== undefined ? { birthtime: isoNs(st.birthtimeNs) } : {}),
    atimeNs: st.atimeNs.toString(),
    mtimeNs: st.mtimeNs.toString(),
    ctimeNs: st.ctimeNs.toString(),
    ...(st.birthtimeNs !== undefined ? { birthtimeNs: st.birthtimeNs.toString() } : {}),
    xattrs: await fs.listxattr(ino),
  };
  if (st.rdev !== undefined && (st.type === 'blockdev' || st.type === 'chardev')) r.rdev = { value: st.rdev, ...devNumbers(st.rdev) };
  if (st.type === 'symlink') r.target = await fs.readlink(ino);
  if (st.type === 'file') r.extents = await summariseExtents(fs, ino);
  if (st.ext) r.ext = st.ext;
  if (st.ntfs) {
    const { reparseTag, ...rest } = st.ntfs;
    r.ntfs = { ...rest, ...(reparseTag !== undefined ? { reparseTag: `0x${reparseTag.toString(16).padStart(8, '0')}` } : {}), dosAttributeNames: dosAttributeNames(st.ntfs.dosAttributes) };
  }
  return r;
}

function timeLine(iso: string, ns: string): string {
  return `${iso} (${ns} ns)`;
}

export function renderStat(r: StatRecord): string {
  const rows: [string, string][] = [
    ['path', `${r.volume}${printablePath(r.path)}`],
    ['filesystem', `${r.filesystem.kind}${r.filesystem.label ? ` "${r.filesystem.label}"` : ''}${r.filesystem.uuid ? ` ${r.filesystem.uuid}` : ''}`],
    ['type', r.type],
    ['inode', String(r.ino)],
    ['mode', `${r.modeString} (0${r.mode.toString(8)})`],
    ['links', String(r.nlink)],
    ['owner', `uid ${r.uid}, gid ${r.gid}`],
    ['size', String(r.size)],
    ['allocated', String(r.allocatedSize)],
  ];
  if (r.rdev) rows.push(['device', `${r.rdev.major}:${r.rdev.minor}`]);
  if (r.target !== undefined) rows.push(['target', printablePath(r.target)]);
  rows.push(['access', timeLine(r.atime, r.atimeNs)], ['modify', timeLine(r.mtime, r.mtimeNs)], ['change', timeLine(r.ctime, r.ctimeNs)]);
  if (r.birthtime !== undefined) rows.push(['birth', timeLine(r.birthtime, r.birthtimeNs!)]);
  rows.push(['xattrs', r.xattrs.length ? r.xattrs.map((x) => printablePath(x)).join(', ') : '(none)']);
  if (r.extents) {
    const e = r.extents;
    const parts = (['data', 'hole', 'unwritten'] as const).filter((s) => e.extents[s] > 0).map((s) => `${e.extents[s]} ${s} (${e.bytes[s]} bytes)`);
    rows.push(['extents', `${e.count}${parts.length ? `: ${parts.join(', ')}` : ''}`]);
  }
  if (r.ext) rows.push(['ext flags', `0x${r.ext.flags.toString(16)}${r.ext.encrypted ? ' encrypted' : ''}${r.ext.casefolded ? ' casefolded' : ''}`], ['generation', String(r.ext.generation)]);
  if (r.ntfs) {
    const n = r.ntfs;
    rows.push(['attributes', `0x${n.dosAttributes.toString(16)}${n.dosAttributeNames.length ? ` (${n.dosAttributeNames.join(' ')})` : ''}`]);
    if (n.ownerSid) rows.push(['owner SID', n.ownerSid]);
    if (n.reparseTag) rows.push(['reparse tag', n.reparseTag]);
    const flags = [n.encrypted && 'encrypted', n.compressed && 'compressed', n.sparse && 'sparse'].filter(Boolean);
    if (flags.length) rows.push(['ntfs flags', flags.join(', ')]);
    rows.push(['streams', n.streams.length ? n.streams.map((s) => printablePath(s)).join(', ') : '(none)']);
  }
  const w = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `${k.padEnd(w)}  ${v}`).join('\n') + '\n';
}

export async function statCommand(diskArg: string, target: string, o: FsCommandOptions): Promise<number> {
  const plan = await planTarget(diskArg, target, o);
  try {
    return await withTarget(plan, o, async (t) => {
      const { ino, path } = await resolveTargetPath(t, false);
      const r = await statRecord(t.fs, ino, path, t.label);
      await stdout().write(o.json ? JSON.stringify(r) + '\n' : renderStat(r));
      return ExitCode.ok;
    });
  } finally {
    await plan.close();
  }
}
