/**
 * An image backup read as a disk: the archive becomes a source of the disk layer, so the volume and
 * filesystem readers, ls, cat, stat, mount and restore work on a backup in a remote store exactly
 * as on a live snapshot, fetching only what they touch.
 *
 * One ArchiveDiskLayer per archive of the restore point: its disk member's GNU sparse 1.0 segments
 * are the ranges it holds, read as ranges of the tar through the archive stack (only the age chunks
 * and zstd frames touched are fetched, decrypted and decompressed; decompressed frames are kept in a
 * byte-budgeted cache; a sequential reader gets the next READ_AHEAD bytes fetched behind its back);
 * its holes are 'unallocated'. The layers are stacked top first in a LayeredDisk (src/disk/layered.ts):
 * a read falls through an incremental's holes to the archive that last wrote each block, and the
 * bottom (full) archive's holes read as zeros — a VMDK delta chain's shape.
 *
 * Everything read from the store is hostile: the manifest chain is bounded and checked for cycles,
 * the index lines and the disk ids in them are bounded, each member must be the sparse file its index
 * line says (name, realsize), and the sparse map itself is checked by the tar reader (E_TAR_SPARSE,
 * E_TAR_BOUND).
 */
import type { AllocRange, ByteRange, ChainMember, DiskLayer } from '../disk/types.js';
import { LayeredDisk } from '../disk/layered.js';
import type { Store } from '../store/types.js';
import { readEntryAt, type TarMemberLocation } from '../archive/tar/reader.js';
import type { ArchiveReader } from '../archive/stack.js';
import { CorruptStructureError, ExitCode, SnapferryError } from '../util/errors.js';
import { MiB } from '../util/bounded.js';
import { archiveName, readManifest, requireRepository, type Manifest } from './repo.js';
import { indexEntries, openEncrypted, type Archives, type Identities } from './restore.js';
import type { IndexEntry } from '../archive/index.js';
import { DiskHasher } from './image-hash.js';
import { IMAGE_DISKS_DIR } from './image.js';

/** Archives in one restore point (a full and its incrementals) at most. */
export const MAX_IMAGE_CHAIN = 1024;
/** Index lines of one image archive at most (disks and descriptors of one VM). */
export const MAX_IMAGE_INDEX_ENTRIES = 4096;
/** Disks of one image backup at most (as a tree holds: VFS_MAX_DISKS). */
export const MAX_IMAGE_DISKS = 256;
/**
 * Bytes fetched ahead of a sequential reader, at most; a reader earns read-ahead as it goes (the
 * window is the bytes it has read in a row, from READ_AHEAD_AFTER on): a filesystem's metadata
 * reads are often adjacent for a few blocks, and fetching megabytes after each of them would fetch
 * most of a remote archive for one file. (A 1 MiB file's restore fetches ~3 MiB either way: the two
 * 1 MiB frames it spans and the one the zstd reader reads ahead.)
 */
const READ_AHEAD = 4 * MiB;
const READ_AHEAD_AFTER = 4 * MiB;

export class ImageError extends SnapferryError {}

type SegmentAt = { offset: number; length: number; storedOffset: number };

/** One archive's member of one disk, as a disk layer. */
export class ArchiveDiskLayer implements DiskLayer {
  private readonly segs: SegmentAt[];
  private lastEnd = -1;
  /** Bytes read in a row, each read starting where the last ended. */
  private sequential = 0;

  constructor(
    readonly size: number,
    private readonly ra: ArchiveReader,
    readonly member: TarMemberLocation,
  ) {
    this.segs = (member.storedSegments ?? []).filter((s) => s.length > 0);
  }

  /** Index of the first segment ending after `offset` (maps can hold 2^20 entries). */
  private first(offset: number): number {
    let lo = 0;
    let hi = this.segs.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.segs[mid]!.offset + this.segs[mid]!.length <= offset) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  async readInto(out: Buffer, offset: number): Promise<ByteRange[]> {
    const end = offset + out.length;
    const holes: ByteRange[] = [];
    const reads: Promise<void>[] = [];
    let pos = offset;
    let lastStored = -1;
    for (let i = this.first(offset); i < this.segs.length && this.segs[i]!.offset < end; i++) {
      const s = this.segs[i]!;
      const from = Math.max(s.offset, offset);
      const to = Math.min(s.offset + s.length, end);
      if (from > pos) holes.push({ offset: pos, length: from - pos });
      const stored = s.storedOffset + (from - s.offset);
      reads.push(this.ra.read(stored, to - from).then((b) => void b.copy(out, from - offset)));
      lastStored = stored + (to - from);
      pos = to;
    }
    if (pos < end) holes.push({ offset: pos, length: end - pos });
    await Promise.all(reads);
    // a reader going forward gets the next bytes of the member fetched (and decompressed) ahead
    this.sequential = offset === this.lastEnd ? this.sequential + out.length : out.length;
    if (this.sequential >= READ_AHEAD_AFTER && lastStored >= 0) {
      const ahead = Math.min(READ_AHEAD, this.sequential, this.ra.size - lastStored);
      if (ahead > 0) this.ra.read(lastStored, ahead).catch(() => undefined); // a damaged frame is reported when really read
    }
    this.lastEnd = end;
    return holes;
  }

  async allocation(offset: number, length: number): Promise<AllocRange[]> {
    const end = offset + length;
    const out: AllocRange[] = [];
    let pos = offset;
    for (let i = this.first(offset); i < this.segs.length && this.segs[i]!.offset < end; i++) {
      const s = this.segs[i]!;
      const from = Math.max(s.offset, offset);
      const to = Math.min(s.offset + s.length, end);
      if (from > pos) out.push({ offset: pos, length: from - pos, state: 'unallocated' });
      out.push({ offset: from, length: to - from, state: 'data' });
      pos = to;
    }
    if (pos < end) out.push({ offset: pos, length: end - pos, state: 'unallocated' });
    return out;
  }

  /** Bytes of data this layer holds. */
  storedBytes(): number {
    return this.segs.reduce((n, s) => n + s.length, 0);
  }

  async close(): Promise<void> {
    // the archive reader is shared by the layers of one archive; OpenedImage closes it
  }
}

/**
 * verify of a full image's disk member: its blocksSha256 (image-hash.ts) recomputed from the stored
 * segments, holes hashed as zeros without being read. Returns the data bytes read.
 */
export async function verifyDiskMember(archives: Archives, self: string, e: IndexEntry): Promise<number> {
  const where = e.archive ?? self;
  const ra = await archives.get(where);
  const member = await readEntryAt(ra, e.header!);
  if (member.entry.path.toString('utf8') !== e.path || member.entry.size !== e.size) {
    throw new CorruptStructureError('E_IMAGE_MEMBER', `${e.path}: the index points at tar member '${member.entry.path.toString('utf8').slice(0, 300)}' (${member.entry.size} bytes) in ${where}`, { structure: 'tar member', id: where, header: e.header! });
  }
  const segs = (member.storedSegments ?? [{ offset: 0, length: e.size, storedOffset: member.dataOffset }]).filter((x) => x.length > 0);
  const hasher = new DiskHasher(e.size);
  let bytes = 0;
  try {
    let pos = 0;
    for (const s of segs) {
      hasher.zeros(s.offset - pos);
      for (let o = 0; o < s.length; o += MiB) {
        const n = Math.min(MiB, s.length - o);
        await hasher.update(await ra.read(s.storedOffset + o, n));
        bytes += n;
      }
      pos = s.offset + s.length;
    }
    hasher.zeros(e.size - pos);
  } catch (err) {
    await hasher.close();
    throw err;
  }
  const got = (await hasher.finish()).blocksSha256;
  if (got !== e.blocksSha256) throw new CorruptStructureError('E_RESTORE_HASH', `${e.path}: the stored disk has blocksSha256 ${got}, the index says ${e.blocksSha256} (archive ${where})`, { path: e.path, archive: where });
  return bytes;
}

export interface ImageDiskEntry {
  id: string;
  size: number;
  header: number;
  /** A full member's digest (image-hash.ts). */
  blocksSha256?: string;
}

export interface OpenedImage {
  /** The restore point's archives, top first. */
  manifests: Manifest[];
  /** blocksSha256: the digest a full backup recorded (a restore point of one archive). */
  disks: { id: string; disk: LayeredDisk; blocksSha256?: string }[];
  /** Descriptor members of the top archive (path, size). */
  descriptors: { path: string; size: number }[];
  bytesFetched(): number;
  close(): Promise<void>;
}

/** The archives of a restore point, top first: the archive and its parents, bounded, without cycles. */
export async function imageChain(store: Store, id: string): Promise<Manifest[]> {
  const out: Manifest[] = [];
  const seen = new Set<string>();
  for (let cur: string | undefined = id; cur !== undefined; ) {
    if (seen.has(cur)) throw new CorruptStructureError('E_IMAGE_CHAIN', `image backup ${id}: its parents loop back to ${cur}`, { structure: 'Manifest', field: 'parent', id: cur });
    if (out.length >= MAX_IMAGE_CHAIN) throw new CorruptStructureError('E_IMAGE_CHAIN', `image backup ${id}: more than ${MAX_IMAGE_CHAIN} archives in its chain`, { structure: 'Manifest', field: 'parent', limit: MAX_IMAGE_CHAIN });
    seen.add(cur);
    const m = await readManifest(store, cur);
    if (m.kind !== 'image') {
      if (out.length === 0) throw new ImageError('E_IMAGE_NOT_IMAGE', `${id} is a ${m.kind} (file-level) backup, not an image backup`, { id, kind: m.kind }, ExitCode.usage);
      throw new CorruptStructureError('E_IMAGE_CHAIN', `image backup ${id}: its parent ${cur} is a ${m.kind} backup`, { structure: 'Manifest', field: 'parent', id: cur });
    }
    if (m.parent !== undefined && typeof m.parent !== 'string') throw new CorruptStructureError('E_MANIFEST', `${cur}: parent is not an id`, { id: cur });
    out.push(m);
    cur = m.parent;
  }
  return out;
}

const DISK_ID = /^[^/\0]{1,255}$/;

/** The disk members an image archive's index lists (descriptors aside), checked. */
export async function imageIndex(store: Store, m: Manifest, identities: Identities): Promise<{ disks: ImageDiskEntry[]; descriptors: { path: string; size: number }[] }> {
  const disks: ImageDiskEntry[] = [];
  const descriptors: { path: string; size: number }[] = [];
  let n = 0;
  for await (const e of indexEntries(store, m, identities)) {
    if (++n > MAX_IMAGE_INDEX_ENTRIES) throw new CorruptStructureError('E_IMAGE_INDEX', `index of ${m.id}: more than ${MAX_IMAGE_INDEX_ENTRIES} entries for an image backup`, { structure: 'IndexEntry', id: m.id, limit: MAX_IMAGE_INDEX_ENTRIES });
    if (!e.path.startsWith(IMAGE_DISKS_DIR)) {
      descriptors.push({ path: e.path, size: e.size });
      continue;
    }
    const name = e.path.slice(IMAGE_DISKS_DIR.length);
    const id = name.endsWith('.raw') ? name.slice(0, -4) : '';
    if (!DISK_ID.test(id) || id === '.' || id === '..' || e.type !== 'file' || e.header === undefined || e.archive !== undefined) {
      throw new CorruptStructureError('E_IMAGE_INDEX', `index of ${m.id}: '${e.path.slice(0, 300)}' is not a disk member of this archive`, { structure: 'IndexEntry', field: 'path', id: m.id });
    }
    if (disks.some((d) => d.id === id)) throw new CorruptStructureError('E_IMAGE_INDEX', `index of ${m.id}: disk ${id} listed twice`, { structure: 'IndexEntry', field: 'path', id: m.id });
    if (disks.length >= MAX_IMAGE_DISKS) throw new CorruptStructureError('E_IMAGE_INDEX', `index of ${m.id}: more than ${MAX_IMAGE_DISKS} disks`, { structure: 'IndexEntry', id: m.id, limit: MAX_IMAGE_DISKS });
    disks.push({ id, size: e.size, header: e.header, ...(e.blocksSha256 ? { blocksSha256: e.blocksSha256 } : {}) });
  }
  return { disks, descriptors };
}

export interface OpenImageOptions {
  /** Byte budget of decompressed frames, shared by the archives of the chain (default 32 MiB). */
  cacheBytes?: number;
}

/** Opens image backup `id` (its whole chain) as disks. */
export async function openImage(store: Store, id: string, identities: Identities, opts: OpenImageOptions = {}): Promise<OpenedImage> {
  await requireRepository(store);
  const manifests = await imageChain(store, id);
  const readers = new Map<string, ArchiveReader & { close(): Promise<void> }>();
  const closeAll = async (): Promise<void> => {
    for (const r of readers.values()) await r.close().catch(() => {});
    readers.clear();
  };
  try {
    const budget = Math.max(4 * MiB, Math.floor((opts.cacheBytes ?? 32 * MiB) / manifests.length));
    const indexes = [];
    for (const m of manifests) indexes.push(await imageIndex(store, m, identities));
    const top = indexes[0]!;
    const disks: OpenedImage['disks'] = [];
    for (const d of top.disks) {
      const layers: ArchiveDiskLayer[] = [];
      const chain: ChainMember[] = [];
      for (const [i, m] of manifests.entries()) {
        const entry = indexes[i]!.disks.find((x) => x.id === d.id);
        // a disk added after an earlier archive: nothing below the first archive that has it
        if (!entry) break;
        let ra = readers.get(m.id);
        if (!ra) {
          ra = await openEncrypted(store, archiveName(m.id), identities, budget);
          readers.set(m.id, ra);
        }
        const member = await readEntryAt(ra, entry.header);
        const want = `${IMAGE_DISKS_DIR}${d.id}.raw`;
        if (member.entry.path.toString('utf8') !== want || member.entry.type !== 'file' || member.entry.size !== entry.size) {
          throw new CorruptStructureError('E_IMAGE_MEMBER', `${m.id}: the index points ${want} at tar member '${member.entry.path.toString('utf8').slice(0, 300)}' (${member.entry.type}, ${member.entry.size} bytes; the index says ${entry.size})`, { structure: 'tar member', id: m.id, header: entry.header });
        }
        layers.push(new ArchiveDiskLayer(entry.size, ra, member));
        chain.push({ path: `${m.id}:${want}`, kind: m.parent ? 'image-incremental' : 'image-full', extents: [] });
      }
      disks.push({ id: d.id, disk: new LayeredDisk(layers, chain, d.size), ...(d.blocksSha256 && manifests.length === 1 ? { blocksSha256: d.blocksSha256 } : {}) });
    }
    return {
      manifests,
      disks,
      descriptors: top.descriptors,
      bytesFetched: () => [...readers.values()].reduce((n, r) => n + r.stats().bytesFetched, 0),
      close: closeAll,
    };
  } catch (err) {
    await closeAll();
    throw err;
  }
}
