/**
 * Two mounted directory trees compared entry for entry through the kernel's own syscalls (lstat,
 * readlink, read, getxattr via getfattr): what `find` + `stat` + `sha256sum` + `getfattr` of any
 * user would see. The oracle is a real mount (ntfs-3g, the kernel's ext4); the other side is a
 * snapferry mount.
 */
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { lstat, readdir, readlink } from 'node:fs/promises';

export interface SeenEntry {
  type: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  nlink: number;
  /** Nanoseconds since the epoch, as decimal strings (lstat with bigint: the full precision a mount gives). */
  mtimeNs: string;
  ctimeNs: string;
  ino: number;
  rdev: number;
  target?: string;
  sha256?: string;
  /** Read failed with this errno code. */
  readError?: string;
  xattrs: Record<string, string>;
}

export interface SeenTree {
  entries: Map<string, SeenEntry>;
  /** Paths with a name that is not valid UTF-8 (compared like the others, keyed with \xNN escapes): counted. */
  nonUtf8: string[];
}

/** A path's bytes as a map key: UTF-8 as it is, any other byte as \xNN. */
function keyOf(raw: Buffer): string {
  const text = raw.toString('utf8');
  if (Buffer.from(text, 'utf8').equals(raw)) return text;
  return [...raw].map((b) => (b >= 0x20 && b < 0x7f && b !== 0x5c ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, '0')}`)).join('');
}

function typeOf(st: { isFile(): boolean; isDirectory(): boolean; isSymbolicLink(): boolean; isBlockDevice(): boolean; isCharacterDevice(): boolean; isFIFO(): boolean }): string {
  return st.isFile() ? 'file' : st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : st.isBlockDevice() ? 'blockdev' : st.isCharacterDevice() ? 'chardev' : st.isFIFO() ? 'fifo' : 'socket';
}

async function sha256Of(path: Buffer): Promise<string> {
  const h = createHash('sha256');
  for await (const c of createReadStream(path)) h.update(c as Buffer);
  return h.digest('hex');
}

/** getfattr -R of a whole tree: path (relative) → name → hex value. */
function xattrsOf(root: string, dropNames: Set<string>): Map<string, Record<string, string>> {
  const out = new Map<string, Record<string, string>>();
  const text = execFileSync('getfattr', ['-R', '-h', '-d', '-m', '-', '-e', 'hex', '--absolute-names', root], { encoding: 'latin1', maxBuffer: 1 << 30, stdio: ['ignore', 'pipe', 'ignore'] });
  let cur: Record<string, string> | undefined;
  const rootKey = keyOf(Buffer.from(root));
  for (const line of text.split('\n')) {
    if (line.startsWith('# file: ')) {
      // getfattr prints the path's bytes, escaping some as \ooo: back to bytes, then to our key
      const p = keyOf(Buffer.from(line.slice(8).replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))), 'latin1'));
      const rel = p === rootKey ? '/' : p.slice(rootKey.length);
      cur = {};
      out.set(rel, cur);
    } else if (cur && line.includes('=')) {
      const eq = line.indexOf('=');
      const name = line.slice(0, eq);
      if (!dropNames.has(name)) cur[name] = line.slice(eq + 1);
    }
  }
  return out;
}

export async function seeTree(root: string, opts: { skip?: (rel: string) => boolean; dropXattrs?: string[] } = {}): Promise<SeenTree> {
  const entries = new Map<string, SeenEntry>();
  const nonUtf8: string[] = [];
  const xattrs = xattrsOf(root, new Set(opts.dropXattrs ?? []));
  const visit = async (rel: string, abs: Buffer): Promise<void> => {
    const st = await lstat(abs, { bigint: true });
    const type = typeOf(st);
    const e: SeenEntry = {
      type,
      mode: Number(st.mode),
      uid: Number(st.uid),
      gid: Number(st.gid),
      size: type === 'dir' ? 0 : Number(st.size),
      nlink: Number(st.nlink),
      mtimeNs: String(st.mtimeNs),
      ctimeNs: String(st.ctimeNs),
      ino: Number(st.ino),
      rdev: Number(st.rdev),
      xattrs: xattrs.get(rel) ?? {},
    };
    if (type === 'symlink') {
      // Links into the mount itself (ntfs-3g's junctions, ours too) name their mount point: compare
      // them relative to it, size included.
      const target = keyOf(await readlink(abs, { encoding: 'buffer' }));
      e.target = target === root || target.startsWith(`${root}/`) ? `<mount>${target.slice(root.length)}` : target;
      if (e.target !== target) e.size = e.size - Buffer.byteLength(root) + Buffer.byteLength('<mount>');
    }
    if (type === 'file') {
      try {
        e.sha256 = await sha256Of(abs);
      } catch (err) {
        e.readError = (err as NodeJS.ErrnoException).code ?? 'unknown';
      }
    }
    entries.set(rel, e);
    if (type !== 'dir') return;
    const names = await readdir(abs, { encoding: 'buffer' });
    for (const raw of names.sort(Buffer.compare)) {
      const name = keyOf(raw);
      const child = rel === '/' ? `/${name}` : `${rel}/${name}`;
      if (name !== raw.toString('utf8')) nonUtf8.push(child);
      if (opts.skip?.(child)) continue;
      await visit(child, Buffer.concat([abs, Buffer.from('/'), raw]));
    }
  };
  await visit('/', Buffer.from(root));
  return { entries, nonUtf8 };
}

/** The first differences between two trees (path: field found vs wanted), at most `limit`. */
export function diffTrees(found: SeenTree, wanted: SeenTree, opts: { ignoreFields?: (rel: string, field: string) => boolean; limit?: number } = {}): string[] {
  const out: string[] = [];
  const limit = opts.limit ?? 20;
  for (const rel of wanted.entries.keys()) if (!found.entries.has(rel)) out.push(`${rel}: missing`);
  for (const rel of found.entries.keys()) if (!wanted.entries.has(rel)) out.push(`${rel}: not in the oracle`);
  const fields = ['type', 'mode', 'uid', 'gid', 'size', 'nlink', 'mtimeNs', 'ctimeNs', 'rdev', 'target', 'sha256', 'readError', 'xattrs'] as const;
  for (const [rel, w] of wanted.entries) {
    const f = found.entries.get(rel);
    if (!f) continue;
    for (const k of fields) {
      if (opts.ignoreFields?.(rel, k)) continue;
      const a = JSON.stringify(k === 'xattrs' ? sortKeys(f[k]) : f[k]);
      const b = JSON.stringify(k === 'xattrs' ? sortKeys(w[k]) : w[k]);
      if (a !== b) out.push(`${rel}: ${k} ${a.slice(0, 200)} vs oracle ${b.slice(0, 200)}`);
    }
    if (out.length >= limit) break;
  }
  // Hard links: the paths that share an inode number are the same sets on both sides.
  const groups = (t: SeenTree): Map<string, string> => {
    const byIno = new Map<number, string[]>();
    for (const [rel, e] of t.entries) if (e.type !== 'dir' && e.nlink > 1) byIno.set(e.ino, [...(byIno.get(e.ino) ?? []), rel]);
    const m = new Map<string, string>();
    for (const paths of byIno.values()) for (const p of paths) m.set(p, paths.sort().join('|'));
    return m;
  };
  const gf = groups(found);
  const gw = groups(wanted);
  for (const [rel, g] of gw) if (gf.get(rel) !== g && !opts.ignoreFields?.(rel, 'links')) out.push(`${rel}: hard-link group ${gf.get(rel)} vs oracle ${g}`);
  return out.slice(0, limit);
}

function sortKeys(o: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(o).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}
