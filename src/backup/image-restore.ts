/**
 * Restores out of an image backup (image.ts), read as disks (image-disk.ts):
 *
 *  - the whole VM: each disk written back as a sparse raw file <target>/<DISKID>.raw (src/disk/export.ts:
 *    ranges no archive holds and all-zero blocks become holes), the full-VM restore;
 *  - files: the image's disks opened as the VM's tree (src/vfs/tree.ts, the NTFS and ext readers),
 *    the selected subtrees walked in tree order and written by restore.ts's restoreEntries, with its
 *    rules (never outside the target, O_EXCL temporary names, hard links, times, modes). Only the
 *    age chunks and zstd frames holding the metadata and files read are fetched.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Store } from '../store/types.js';
import { indexEntryOf, type IndexEntry } from '../archive/index.js';
import { exportRaw } from '../disk/export.js';
import { INFO_XATTR, VmTree, type TreeNode } from '../vfs/tree.js';
import type { FileSystem } from '../fs/types.js';
import { CorruptStructureError, ExitCode, toSnapferryError } from '../util/errors.js';
import { openImage, type OpenedImage } from './image-disk.js';
import { writeMonolithicSparse } from './image-vmdk.js';
import { RestoreError, restoreEntries, type Identities, type RestoreOptions, type RestoreSummary } from './restore.js';

const CHUNK = 1 << 20;

/** The image's disks as the VM's tree (the caller closes the tree, then the image). */
export async function openImageTree(image: OpenedImage, opts: { cacheBytes?: number; replayJournal?: boolean; linkRoot?: string } = {}): Promise<VmTree> {
  return VmTree.open(
    image.disks.map((d) => ({ path: d.disk.chain[0]?.path ?? d.id, name: d.id, disk: d.disk })),
    { ...(opts.cacheBytes ? { cacheBytes: opts.cacheBytes } : {}), ...(opts.replayJournal !== undefined ? { replayJournal: opts.replayJournal } : {}), ...(opts.linkRoot ? { linkRoot: opts.linkRoot } : {}) },
  );
}

export interface ImageDiskRestoreSummary {
  id: string;
  disks: { id: string; path: string; size: number; written: number }[];
  bytesFetched: number;
}

/** restore --image: every disk (or those named) as <target>/<DISKID>.raw, sparse (or, vmdk, a monolithicSparse <DISKID>.vmdk). */
export async function restoreImageDisks(o: { store: Store; id: string; identities: Identities; target: string; overwrite: boolean; disks: string[]; vmdk?: boolean; onProgress?: (p: { disk: string; done: number; total: number }) => void }): Promise<ImageDiskRestoreSummary> {
  const image = await openImage(o.store, o.id, o.identities);
  try {
    const known = image.disks.map((d) => d.id);
    for (const want of o.disks) if (!known.includes(want)) throw new RestoreError('E_RESTORE_NOT_FOUND', `image backup ${o.id} has no disk '${want}'; its disks are ${known.join(', ')}`, { disk: want, id: o.id }, ExitCode.notFound);
    await mkdir(o.target, { recursive: true });
    const out: ImageDiskRestoreSummary = { id: o.id, disks: [], bytesFetched: 0 };
    for (const d of image.disks) {
      if (o.disks.length && !o.disks.includes(d.id)) continue;
      // DISKID comes from the archive's index, checked to hold no '/' (image-disk.ts), so this stays in the target
      if (o.vmdk) {
        // a VMDK's file name may not hold ':' on VMware's side (scsi0:0): '_' there
        const name = `${d.id.replace(/[^A-Za-z0-9._-]/g, '_')}.vmdk`;
        const path = join(o.target, name);
        const r = await writeMonolithicSparse(d.disk, path, name, { overwrite: o.overwrite, ...(o.onProgress ? { onProgress: (done: number, total: number) => o.onProgress!({ disk: d.id, done, total }) } : {}) });
        out.disks.push({ id: d.id, path, size: r.size, written: r.grains * 65536 });
        continue;
      }
      const path = join(o.target, `${d.id}.raw`);
      const r = await exportRaw(d.disk, path, { overwrite: o.overwrite, ...(o.onProgress ? { onProgress: (p) => o.onProgress!({ disk: d.id, done: p.done, total: p.total }) } : {}) });
      out.disks.push({ id: d.id, path, size: r.size, written: r.written });
    }
    out.bytesFetched = image.bytesFetched();
    return out;
  } finally {
    await image.close();
  }
}

/**
 * The entries below the selected tree paths, in tree order, as index lines: what restoreEntries
 * writes. `nodes` maps each line to its node (a file's data, an entry's xattrs).
 */
async function* walk(tree: VmTree, paths: string[], nodes: WeakMap<IndexEntry, TreeNode>, warn: (path: string, err: unknown) => void): AsyncIterable<IndexEntry> {
  const links = new Map<string, string>();
  async function* visit(node: TreeNode & { kind: 'fs' }, pathBytes: Buffer): AsyncIterable<IndexEntry> {
    const path = pathBytes.toString('utf8');
    let st;
    try {
      st = await tree.stat(node);
    } catch (err) {
      warn(path, err);
      return;
    }
    const e = indexEntryOf(pathBytes, st);
    nodes.set(e, node);
    try {
      const names = (await tree.listxattr(node)).filter((n) => n !== INFO_XATTR);
      if (names.length) e.xattrs = names;
    } catch (err) {
      warn(path, err);
    }
    if (st.type === 'symlink') {
      try {
        e.target = await tree.readlink(node);
      } catch (err) {
        warn(path, err);
        return;
      }
    }
    if (st.type === 'file') {
      const key = `${node.volume.slot}:${node.ino}`;
      const first = st.nlink > 1 ? links.get(key) : undefined;
      if (first) e.link = first;
      else if (st.nlink > 1) links.set(key, path);
    }
    yield e;
    if (st.type !== 'dir') return;
    const children: { name: Buffer; node: TreeNode & { kind: 'fs' } }[] = [];
    try {
      for await (const c of tree.readdir(node)) if (c.node.kind === 'fs') children.push({ name: c.rawName ?? Buffer.from(c.name, 'utf8'), node: c.node });
    } catch (err) {
      warn(path, err);
    }
    children.sort((a, b) => Buffer.compare(a.name, b.name));
    for (const c of children) yield* visit(c.node, Buffer.concat([pathBytes, Buffer.from('/'), c.name]));
  }
  const wanted = paths.length ? paths.map((p) => p.replace(/^\/+|\/+$/g, '')) : [''];
  for (const p of wanted) {
    const node = await tree.resolve(`/${p}`);
    if (node.kind === 'fs') yield* visit(node, Buffer.from(p));
    else if (node.kind === 'root' || node.kind === 'disk') {
      for (const v of tree.volumes()) {
        if (!v.fs || (node.kind === 'disk' && v.diskName !== node.disk.name)) continue;
        yield* visit({ kind: 'fs', volume: v as typeof v & { fs: FileSystem }, ino: v.fs.rootIno }, Buffer.from(`${v.diskName}/${v.name}`));
      }
    } else if (node.kind === 'unreadable') warn(p, new RestoreError('E_RESTORE_UNREADABLE', `${p}: ${node.volume.error?.message ?? 'no readable filesystem'}`, { path: p }, ExitCode.failure));
    else throw new RestoreError('E_RESTORE_NOT_FILE', `${p} is the tree's info file, not a file of the VM`, { path: p }, ExitCode.usage);
  }
}

async function* fileData(tree: VmTree, node: TreeNode, e: IndexEntry): AsyncIterable<Buffer> {
  for (let off = 0; off < e.size; off += CHUNK) {
    const n = Math.min(CHUNK, e.size - off);
    const b = await tree.read(node, off, n);
    if (b.length !== n) throw new CorruptStructureError('E_RESTORE_SHORT_READ', `${e.path}: ${b.length} bytes at ${off}, wanted ${n}`, { path: e.path, offset: off });
    yield b;
  }
}

/** restore ID PATH... of an image backup: files out of its disks. */
export async function restoreImageFiles(o: RestoreOptions): Promise<RestoreSummary> {
  const image = await openImage(o.store, o.id, o.identities);
  let tree: VmTree | undefined;
  try {
    tree = await openImageTree(image);
    const nodes = new WeakMap<IndexEntry, TreeNode>();
    let walkErrors = 0;
    const warn = (path: string, err: unknown): void => {
      const e = toSnapferryError(err);
      walkErrors++;
      o.onWarning?.({ path, code: e.code, message: e.message });
    };
    const t = tree;
    const xattrsOf = async (e: IndexEntry): Promise<Array<[string, Buffer]>> => {
      const node = nodes.get(e)!;
      const out: Array<[string, Buffer]> = [];
      for (const n of e.xattrs ?? []) out.push([n, await t.getxattr(node, n)]);
      return out;
    };
    const s = await restoreEntries(o, o.id, walk(t, o.paths, nodes, warn), (e) => fileData(t, nodes.get(e)!, e), xattrsOf);
    s.errors += walkErrors;
    s.bytesFetched = image.bytesFetched();
    return s;
  } finally {
    await tree?.close();
    await image.close();
  }
}

/** restore ID PATH --target - of an image backup: one regular file's bytes. */
export async function restoreImageFileToStream(o: Omit<RestoreOptions, 'target' | 'overwrite'>, out: (b: Buffer) => Promise<void>): Promise<RestoreSummary> {
  if (o.paths.length !== 1) throw new RestoreError('E_USAGE', 'restore --target - takes exactly one PATH (a regular file)', {}, ExitCode.usage);
  const want = o.paths[0]!.replace(/^\/+|\/+$/g, '');
  const image = await openImage(o.store, o.id, o.identities);
  let tree: VmTree | undefined;
  try {
    tree = await openImageTree(image);
    const node = await tree.resolve(`/${want}`);
    const st = await tree.stat(node);
    if (node.kind !== 'fs' || st.type !== 'file') throw new RestoreError('E_RESTORE_NOT_FILE', `${want} is a ${st.type}; --target - writes one regular file`, { path: want }, ExitCode.usage);
    let bytes = 0;
    for await (const b of fileData(tree, node, { path: want, size: st.size } as IndexEntry)) {
      await out(b);
      bytes += b.length;
    }
    return { id: o.id, entries: 1, files: 1, bytes, bytesFetched: image.bytesFetched(), skipped: 0, errors: 0 };
  } finally {
    await tree?.close();
    await image.close();
  }
}
