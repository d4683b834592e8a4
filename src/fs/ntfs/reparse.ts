/**
 * Reparse points ($REPARSE_POINT, REPARSE_POINT in layout.h; [MS-FSCC] 2.1.2): symbolic links and
 * junctions become symlinks whose targets are rendered exactly as ntfs-3g renders them
 * (libntfs-3g/reparse.c ntfs_make_symlink), because the backup's manifest must match what a user
 * sees on an ntfs-3g mount:
 *  - a junction or full symlink "\??\C:\dir\x" whose path exists on this volume (looked up
 *    case-insensitively, each component replaced by its stored case) becomes MOUNT + "/dir/x";
 *  - one that does not, or a volume junction "\??\Volume{guid}\", becomes MOUNT + "/.NTFS-3G/C:/dir/x";
 *  - a relative symlink keeps its path, components case-fixed, "\" turned to "/" as far as it resolves;
 *  - an absolute "\dir\x" resolves on this volume or is not a link at all;
 *  - anything else reads "unsupported reparse tag 0x%08lx" (34 bytes), as on ntfs-3g without plugins.
 * MOUNT is ntfs-3g's mount point; ours is NtfsOptions.mountPoint ('' by default: volume-rooted paths).
 */
import {
  REPARSE_POINT, IO_REPARSE_TAG_IS_MICROSOFT, IO_REPARSE_TAG_MOUNT_POINT, IO_REPARSE_TAG_SYMLINK,
  MOUNT_POINT_REPARSE_DATA, SYMLINK_REPARSE_DATA, SYMLINK_FLAG_RELATIVE,
} from './structs.js';

/** What rendering needs to know about the tree (implemented by the filesystem). */
export interface ReparseResolver {
  readonly rootIno: number;
  /** First entry of directory `dir` equal to `units` ignoring case, or null (also when `dir` is not a directory). */
  fixName(dir: number, units: Uint16Array): Promise<{ record: number; units: Uint16Array } | null>;
  isDirectory(record: number): Promise<boolean>;
  isReparse(record: number): Promise<boolean>;
  /** The parent directory per the file's first FILE_NAME; null for the root (ntfs_dir_parent_inode). */
  parentOf(record: number): Promise<number | null>;
}

export interface ReparseData {
  tag: number;
  /** The whole attribute value (system.ntfs_reparse_data). */
  raw: Buffer;
}

export function parseReparsePoint(v: Buffer): ReparseData | null {
  if (v.length < REPARSE_POINT.SIZE) return null;
  return { tag: v.readUInt32LE(REPARSE_POINT.reparse_tag), raw: v };
}

export function unsupportedTarget(tag: number): string {
  return `unsupported reparse tag 0x${tag.toString(16).padStart(8, '0')}`;
}

const BS = 0x5c; // '\'
const SLASH = 0x2f;
const unitsOf = (s: string) => Array.from(s, (c) => c.charCodeAt(0));
const DIR_JUNCTION_HEAD = unitsOf('\\??\\');
const VOL_JUNCTION_HEAD = unitsOf('\\??\\Volume{');
const startsWith = (a: number[], head: number[]) => head.every((u, i) => a[i] === u);
const decode = (u: number[]) => Buffer.from(Uint16Array.from(u).buffer).toString('utf16le');

/** valid_reparse_data: sizes agree with the header, and a link's name lies inside the value. */
function valid(v: Buffer, isDir: boolean): boolean {
  if (v.length < REPARSE_POINT.SIZE) return false;
  const tag = v.readUInt32LE(REPARSE_POINT.reparse_tag);
  if (tag === 0) return false;
  const dataLength = v.readUInt16LE(REPARSE_POINT.reparse_data_length);
  if (dataLength + REPARSE_POINT.SIZE + (tag & IO_REPARSE_TAG_IS_MICROSOFT ? 0 : 16) !== v.length) return false;
  const d = REPARSE_POINT.reparse_data;
  if (tag === IO_REPARSE_TAG_MOUNT_POINT) {
    if (v.length < d + MOUNT_POINT_REPARSE_DATA.path_buffer) return false;
    const offs = v.readUInt16LE(d + MOUNT_POINT_REPARSE_DATA.subst_name_offset);
    const lth = v.readUInt16LE(d + MOUNT_POINT_REPARSE_DATA.subst_name_length);
    return isDir && d + MOUNT_POINT_REPARSE_DATA.path_buffer + offs + lth <= v.length;
  }
  if (tag === IO_REPARSE_TAG_SYMLINK) {
    if (v.length < d + SYMLINK_REPARSE_DATA.path_buffer) return false;
    const offs = v.readUInt16LE(d + SYMLINK_REPARSE_DATA.subst_name_offset);
    const lth = v.readUInt16LE(d + SYMLINK_REPARSE_DATA.subst_name_length);
    return d + SYMLINK_REPARSE_DATA.path_buffer + offs + lth <= v.length;
  }
  return true;
}

/** The substitute name as UTF-16 units, plus one unit past it (ntfs-3g peeks at it) when present. */
function substName(v: Buffer, base: number, offs: number, lth: number): number[] {
  const out: number[] = [];
  const start = base + offs;
  for (let i = 0; i < (lth >> 1); i++) out.push(v.readUInt16LE(start + i * 2));
  return out;
}

/**
 * search_absolute: walk `path[start..count)` from the root, fixing each component's case, turning
 * separators into '/'; the result names a node of the right kind (or another reparse point).
 */
async function searchAbsolute(r: ReparseResolver, path: number[], start0: number, count: number, isDir: boolean): Promise<string | null> {
  let ni: number | null = r.rootIno;
  let start = start0;
  const end = start0 + count;
  do {
    let len = 0;
    while (start + len < end && path[start + len] !== BS) len++;
    const found: { record: number; units: Uint16Array } | null = await r.fixName(ni!, Uint16Array.from(path.slice(start, start + len)));
    ni = null;
    if (found) {
      for (let i = 0; i < found.units.length && i < len; i++) path[start + i] = found.units[i]!;
      ni = found.record;
      start += len;
      if (start < end) path[start++] = SLASH;
    }
  } while (ni !== null && (await r.isDirectory(ni)) && !(await r.isReparse(ni)) && start < end);
  if (ni !== null && ((await r.isDirectory(ni)) === isDir || (await r.isReparse(ni)))) return decode(path.slice(start0, end));
  return null;
}

/** search_relative: resolve from the link's parent, "..\" going up, as far as the path resolves. */
async function searchRelative(r: ReparseResolver, self: number, selfIsDir: boolean, path: number[]): Promise<string | null> {
  const count = path.length;
  let pos = 0;
  let ok = true;
  let morelinks = false;
  let max = 32;
  let curni: number | null = await r.parentOf(self);
  while (curni !== null && ok && !morelinks && pos < count - 1 && --max) {
    if (count >= pos + 2 && path[pos] === 0x2e && path[pos + 1] === BS) {
      path[pos + 1] = SLASH;
      pos += 2;
    } else if (count >= pos + 3 && path[pos] === 0x2e && path[pos + 1] === 0x2e && path[pos + 2] === BS) {
      path[pos + 2] = SLASH;
      pos += 3;
      curni = await r.parentOf(curni);
      if (curni === null) ok = false;
    } else {
      let lth = 0;
      while (pos + lth < count && path[pos + lth] !== BS) lth++;
      const found = lth > 0 ? await r.fixName(curni, Uint16Array.from(path.slice(pos, pos + lth))) : null;
      if (!found) ok = false;
      else {
        for (let i = 0; i < found.units.length && i < lth; i++) path[pos + i] = found.units[i]!;
        curni = found.record;
        if (await r.isReparse(curni)) morelinks = true;
        if (pos + lth < count) {
          path[pos + lth] = SLASH;
          pos += lth + 1;
        } else {
          pos += lth;
          if (!morelinks && (await r.isDirectory(curni)) !== selfIsDir) ok = false;
        }
      }
    }
  }
  return ok ? decode(path) : null;
}

/** ntfs_get_fulllink: "\??\X:\path" (same volume or /.NTFS-3G/X:/path) and "\??\Volume{...}\". */
async function fullLink(r: ReparseResolver, j: number[], mount: string, isDir: boolean, driveDefined: (letter: number) => Promise<boolean>): Promise<string | null> {
  const count = j.length;
  let kind: 'dir' | 'vol' | 'none' = 'none';
  if (count >= 7 && startsWith(j, DIR_JUNCTION_HEAD) && j[4] && j[5] === 0x3a && j[6] === BS) kind = 'dir';
  else if (count >= 12 && startsWith(j, VOL_JUNCTION_HEAD) && j[count - 1] === BS) kind = 'vol';
  let full: string | null = null;
  if (kind === 'dir' && count >= 8 && j[7] && !(await driveDefined(j[4]!))) {
    const t = await searchAbsolute(r, j, 7, count - 7, isDir);
    if (t !== null) full = `${mount}/${t}`;
  }
  if ((kind === 'dir' && full === null) || kind === 'vol') {
    let t = decode(j.slice(4, kind === 'vol' ? count - 1 : count)).replace(/\\/g, '/');
    if (t[1] === ':' && t[0]! >= 'a' && t[0]! <= 'z') t = t[0]!.toUpperCase() + t.slice(1);
    if (t.length) full = `${mount}/.NTFS-3G/${t}`;
  }
  return full;
}

/** ntfs_get_abslink: "X:\path" or "\path" in a relative-flagged symlink. */
async function absLink(r: ReparseResolver, j: number[], mount: string, isDir: boolean, driveDefined: (letter: number) => Promise<boolean>): Promise<string | null> {
  const count = j.length;
  const kind = count >= 3 && j[0] && j[1] === 0x3a && j[2] === BS ? 'full' : j[0] === BS ? 'abs' : 'rejected';
  let full: string | null = null;
  if ((kind === 'full' && count >= 4 && j[3] && !(await driveDefined(j[0]!))) || kind === 'abs') {
    const t = kind === 'abs' ? await searchAbsolute(r, j, 1, count - 1, isDir) : await searchAbsolute(r, j, 3, count - 3, isDir);
    if (t !== null) full = `${mount}/${t}`;
  }
  if (kind === 'full' && full === null) {
    let t = decode(j).replace(/\\/g, '/');
    if (t[1] === ':' && t[0]! >= 'a' && t[0]! <= 'z') t = t[0]!.toUpperCase() + t.slice(1);
    full = `${mount}/.NTFS-3G/${t}`;
  }
  return full;
}

/** ntfs_make_symlink: the target ntfs-3g shows for a junction or symlink, or null if it shows none. */
export async function renderLinkTarget(v: Buffer, self: number, isDir: boolean, r: ReparseResolver, mount: string, driveDefined: (letter: number) => Promise<boolean>): Promise<string | null> {
  if (!valid(v, isDir)) return null;
  const tag = v.readUInt32LE(REPARSE_POINT.reparse_tag);
  const d = REPARSE_POINT.reparse_data;
  if (tag === IO_REPARSE_TAG_MOUNT_POINT) {
    const j = substName(v, d + MOUNT_POINT_REPARSE_DATA.path_buffer, v.readUInt16LE(d + MOUNT_POINT_REPARSE_DATA.subst_name_offset), v.readUInt16LE(d + MOUNT_POINT_REPARSE_DATA.subst_name_length));
    return fullLink(r, j, mount, isDir, driveDefined);
  }
  if (tag === IO_REPARSE_TAG_SYMLINK) {
    const j = substName(v, d + SYMLINK_REPARSE_DATA.path_buffer, v.readUInt16LE(d + SYMLINK_REPARSE_DATA.subst_name_offset), v.readUInt16LE(d + SYMLINK_REPARSE_DATA.subst_name_length));
    const relative = (v.readUInt32LE(d + SYMLINK_REPARSE_DATA.flags) & SYMLINK_FLAG_RELATIVE) !== 0;
    const kind = j[0] === BS ? (j[1] === 0x3f || j[1] === BS ? 'full' : 'abs') : j[1] === 0x3a ? 'abs' : 'rel';
    if (kind === 'full') return relative ? null : fullLink(r, j, mount, isDir, driveDefined);
    if (kind === 'abs') return relative ? absLink(r, j, mount, isDir, driveDefined) : null;
    return relative ? searchRelative(r, self, isDir, j) : null;
  }
  return null;
}
