/**
 * An image backup: every disk of a VM, whole, as one archive — the same PAX tar in zstd frames in
 * age, with an index and a manifest, as a file-level backup (backup.ts), so stock tools restore it:
 *
 *   descriptors/<file>             the VM's small text descriptors: its .vmx, and per disk the
 *                                  descriptor text of each VMDK of its chain (embedded ones extracted)
 *                                  as descriptors/<DISKID>/<file>.txt
 *   disks/<DISKID>.raw             the disk as a GNU sparse 1.0 member: realsize = capacity,
 *                                  segments = the data ranges; `age -d | zstd -d | tar -xS` gives a
 *                                  sparse raw file byte-identical to `qemu-img convert -O raw`
 *
 * DISKID is the tree's name of the disk (src/vfs/tree.ts): scsi0:0 from a .vmx, else the file's name
 * without its extension. No SNAPFERRY.* PAX records: GNU tar warns about every unknown keyword, and
 * the manifest (parent) already says whether a member is a full disk or an incremental's blocks.
 *
 * An incremental's disk member holds only the changed blocks: its holes mean "unchanged, read the
 * parent archive" (manifest.parent), so a restore point is the stack of its archives, top first —
 * a LayeredDisk of archive layers (image-disk.ts). A block that became zero is stored as data. The
 * changed blocks come from the chain itself when it can (the grains allocated in the deltas above
 * the member the last image backup covered, by path and CID: changed block tracking), else from
 * per-block hashes in the local state (image-state.ts); without either the backup is full and the
 * summary says why.
 *
 * Index: one line per member (tree order of the tar): path, type 'file', size (logical), header and
 * data offsets; a descriptor's sha256; a full disk member's blocksSha256 (image-hash.ts: the sha256
 * of its 1 MiB blocks' sha256s, so that holes cost no hashing).
 */
import { createHash } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { basename } from 'node:path';
import type { AllocRange, Disk } from '../disk/types.js';
import { SECTOR_SIZE as SECTOR } from '../disk/types.js';
import type { SparseSegment as SparseSegmentLike } from '../archive/tar/entry.js';
import { LayeredDisk, mergeRanges } from '../disk/layered.js';
import { decodeSparseExtentHeader, SPARSE_EXTENT_HEADER_SIZE, SPARSE_MAGICNUMBER } from '../disk/vmdk/structs.js';
import { TarWriter, type TarEntry } from '../archive/tar/writer.js';
import { SPARSE_LIMITS } from '../archive/tar/sparse.js';
import { encodeIndexLine, type IndexEntry } from '../archive/index.js';
import type { Store } from '../store/types.js';
import { ExitCode, SnapferryError } from '../util/errors.js';
import { MiB } from '../util/bounded.js';
import { archiveName, ensureRepository, indexName, newArchiveId, openBackupObjects, readManifest, recipientFingerprint, writeManifest, type Manifest } from './repo.js';
import { DiskHasher } from './image-hash.js';
import { BLOCK_HASH_BYTES, HASH_BLOCK_SIZE, imageStatePath, readImageState, writeImageState, type ImageDiskState, type ImageState } from './image-state.js';

export const IMAGE_DISKS_DIR = 'disks/';
export const IMAGE_DESCRIPTORS_DIR = 'descriptors/';
/** A descriptor we copy is small text; a bigger file is not a descriptor. */
export const MAX_DESCRIPTOR_BYTES = 1 * MiB;
/** Bytes read from a disk per request, with the next one in flight. */
const READ_CHUNK = 1 * MiB;

export const diskMemberName = (diskId: string): string => `${IMAGE_DISKS_DIR}${diskId}.raw`;

export class ImageBackupError extends SnapferryError {}

export interface ImageSource {
  /** The disk's name in the tree and in the archive (scsi0:0, or the file's base name). */
  id: string;
  /** What the user named (the top of the chain). */
  path: string;
  disk: Disk;
}

export interface ImageBackupOptions {
  store: Store;
  vm: string;
  recipients: string[];
  incremental: boolean;
  stateDir: string;
  /** The VM's .vmx, stored under descriptors/. */
  vmx?: string;
  frameSize?: number;
  version: string;
  onProgress?: (p: ImageBackupProgress) => void;
}

export interface ImageBackupProgress {
  disk: string;
  bytesRead: number;
  bytesStored: number;
}

export interface ImageDiskSummary {
  id: string;
  size: number;
  /** Bytes of data ranges stored in this archive (logical, before compression). */
  storedBytes: number;
  segments: number;
  /** How the changed blocks were found: full, chain (CBT from the deltas), hashes. */
  how: 'full' | 'chain' | 'hashes';
  /** A full member's digest of the whole logical disk (image-hash.ts). */
  blocksSha256?: string;
}

export interface ImageBackupSummary {
  id: string;
  kind: 'image';
  incremental: boolean;
  parent?: string;
  disks: ImageDiskSummary[];
  bytesRead: number;
  archiveBytes: number;
  indexBytes: number;
  durationMs: number;
  notes: string[];
}

/** The descriptor text of one chain member: a text descriptor file whole, or a hosted sparse extent's embedded one. */
async function descriptorText(path: string): Promise<Buffer | null> {
  const st = await stat(path);
  const { open } = await import('node:fs/promises');
  const fh = await open(path, 'r');
  try {
    const head = Buffer.alloc(SPARSE_EXTENT_HEADER_SIZE);
    const { bytesRead } = await fh.read(head, 0, head.length, 0);
    if (bytesRead === head.length && head.readUInt32LE(0) === SPARSE_MAGICNUMBER) {
      const h = decodeSparseExtentHeader(head, path);
      const bytes = h.descriptorSize * SECTOR;
      if (h.descriptorOffset === 0 || bytes === 0 || bytes > MAX_DESCRIPTOR_BYTES) return null;
      const buf = Buffer.alloc(bytes);
      await fh.read(buf, 0, bytes, h.descriptorOffset * SECTOR);
      const end = buf.indexOf(0);
      return end >= 0 ? buf.subarray(0, end) : buf;
    }
    if (st.size > MAX_DESCRIPTOR_BYTES) return null;
    const all = await readFile(path);
    // a text descriptor starts with its "# Disk DescriptorFile" comment or a version= line; anything
    // else (a raw image, a flat extent) is not one
    return /^(#|version=)/i.test(all.subarray(0, 64).toString('latin1')) && !all.includes(0) ? all : null;
  } finally {
    await fh.close();
  }
}

/** Data ranges of a disk, merged; when past the sparse map's limit, the smallest gaps are filled (more bytes stored, never fewer). */
export function toSegments(ranges: readonly { offset: number; length: number }[], maxEntries = SPARSE_LIMITS.maxEntries - 1): SparseSegmentLike[] {
  let segs: SparseSegmentLike[] = [];
  for (const r of ranges) {
    if (r.length <= 0) continue;
    const last = segs[segs.length - 1];
    if (last && last.offset + last.length >= r.offset) last.length = Math.max(last.length, r.offset + r.length - last.offset);
    else segs.push({ offset: r.offset, length: r.length });
  }
  for (let gap = 64 * 1024; segs.length > maxEntries; gap *= 2) {
    const joined: SparseSegmentLike[] = [];
    for (const s of segs) {
      const last = joined[joined.length - 1];
      if (last && s.offset - (last.offset + last.length) <= gap) last.length = s.offset + s.length - last.offset;
      else joined.push({ ...s });
    }
    segs = joined;
  }
  return segs;
}

/** The ranges a chain's members above `depth` hold (allocated or zeroed grains): the blocks written since that member was the top. */
async function changedAbove(disk: LayeredDisk, depth: number): Promise<AllocRange[]> {
  const all: AllocRange[] = [];
  for (let i = 0; i < depth; i++) {
    const layer = disk.layers[i]!;
    for (const r of await layer.allocation(0, Math.min(layer.size, disk.size))) if (r.state !== 'unallocated') all.push({ ...r, state: 'data' });
  }
  all.sort((a, b) => a.offset - b.offset);
  return mergeRanges(all);
}

/** Where the previous backup's top member sits in today's chain, when everything from it down is unchanged; else -1. */
function chainDepth(disk: Disk, prev: ImageDiskState): number {
  const cur = disk.chain.map((m) => ({ path: m.path, cid: m.cid }));
  if (!(disk instanceof LayeredDisk) || disk.layers.length !== cur.length) return -1;
  if (prev.chain.length === 0 || prev.chain.some((m) => m.cid === undefined)) return -1;
  const k = cur.length - prev.chain.length;
  if (k < 0) return -1;
  for (let i = 0; i < prev.chain.length; i++) {
    const a = cur[k + i]!;
    const b = prev.chain[i]!;
    if (a.path !== b.path || a.cid !== b.cid) return -1;
  }
  return k;
}

/** Reads in flight ahead of the writer: the disk's reads overlap compression and upload. */
const READS_IN_FLIGHT = 4;

/**
 * Reads [from, to) of a disk in READ_CHUNK pieces, READS_IN_FLIGHT at once. A piece's buffer is
 * reused once the caller asks for the next piece (it has consumed this one by then).
 */
async function* readAhead(disk: Disk, from: number, to: number): AsyncGenerator<{ offset: number; bytes: Buffer }> {
  const bufs = Array.from({ length: READS_IN_FLIGHT }, () => Buffer.allocUnsafe(READ_CHUNK));
  let turn = 0;
  let next = from;
  const queue: Promise<{ offset: number; bytes: Buffer }>[] = [];
  const start = (): void => {
    if (next >= to) return;
    const off = next;
    const b = bufs[turn++ % READS_IN_FLIGHT]!.subarray(0, Math.min(READ_CHUNK, to - off));
    next += b.length;
    const p = disk.readInto(b, off).then(() => ({ offset: off, bytes: b }));
    p.catch(() => {}); // awaited below, in order
    queue.push(p);
  };
  for (let i = 0; i < READS_IN_FLIGHT; i++) start();
  while (queue.length) {
    const cur = await queue.shift()!;
    yield cur;
    start(); // into the buffer just consumed
  }
}

/** Per-block hashes of a whole disk (image-hash.ts): its data ranges read, the rest hashed as zeros without reading. */
async function blockHashes(disk: Disk, onRead: (n: number) => void): Promise<Buffer> {
  const hasher = new DiskHasher(disk.size);
  try {
    let pos = 0;
    for (const r of await disk.allocation(0, disk.size)) {
      if (r.state !== 'data') continue;
      hasher.zeros(r.offset - pos);
      for await (const piece of readAhead(disk, r.offset, r.offset + r.length)) {
        await hasher.update(piece.bytes);
        onRead(piece.bytes.length);
      }
      pos = r.offset + r.length;
    }
    hasher.zeros(disk.size - pos);
    return (await hasher.finish()).blockHashes;
  } catch (err) {
    await hasher.close();
    throw err;
  }
}

/** The zero-detection block of a source without an allocation map: qemu's and VMware's grain. */
const ZERO_SCAN_BLOCK = 64 * 1024;
const ZERO_SCAN = Buffer.alloc(ZERO_SCAN_BLOCK);

/**
 * The non-zero ranges of a disk that says nothing of its allocation (a raw image, a block device, a
 * flat extent: all 'data'), found by reading it once: without this its image stored every byte and
 * a stock `tar -xS` wrote every zero back out. A block device hot-added to the appliance is this case.
 */
async function nonZeroRanges(disk: Disk, onRead: (n: number) => void): Promise<SparseSegmentLike[]> {
  const out: SparseSegmentLike[] = [];
  for await (const piece of readAhead(disk, 0, disk.size)) {
    onRead(piece.bytes.length);
    for (let i = 0; i < piece.bytes.length; i += ZERO_SCAN_BLOCK) {
      const b = piece.bytes.subarray(i, i + ZERO_SCAN_BLOCK);
      if (b.equals(ZERO_SCAN.subarray(0, b.length))) continue;
      const at = piece.offset + i;
      const last = out[out.length - 1];
      if (last && last.offset + last.length === at) last.length += b.length;
      else out.push({ offset: at, length: b.length });
    }
  }
  return out;
}

interface DiskPlan {
  src: ImageSource;
  how: ImageDiskSummary['how'];
  segments: SparseSegmentLike[];
  /** Block hashes for the new state, when this plan computed them before writing (hashes). */
  hashes?: Buffer;
}

export async function runImageBackup(sources: ImageSource[], o: ImageBackupOptions): Promise<ImageBackupSummary> {
  const started = Date.now();
  const notes: string[] = [];
  await ensureRepository(o.store);
  if (sources.length === 0) throw new ImageBackupError('E_IMAGE_NO_DISK', 'an image backup needs at least one disk', {}, ExitCode.usage);
  const ids = new Set<string>();
  for (const s of sources) {
    if (ids.has(s.id) || s.id === '' || s.id.includes('/') || s.id === '.' || s.id === '..') throw new ImageBackupError('E_IMAGE_DISK_ID', `disk id '${s.id}' is empty, repeated or not a name`, { disk: s.id }, ExitCode.usage);
    ids.add(s.id);
  }

  // The state to compare with, and whether its archive is still in the repository.
  const statePath = imageStatePath(o.stateDir, o.store.url, o.vm);
  let prev: ImageState | null = null;
  if (o.incremental) {
    const got = readImageState(statePath, o.store.url, o.vm);
    prev = got.state;
    if (!prev) notes.push(`${got.why}: this image backup is full`);
    else {
      try {
        const m = await readManifest(o.store, prev.archive);
        if (m.kind !== 'image') throw new Error('not an image backup');
      } catch {
        notes.push(`the state's archive ${prev.archive} is not an image backup in the repository: this image backup is full`);
        prev = null;
      }
    }
  }

  let bytesRead = 0;
  const plans: DiskPlan[] = [];
  for (const src of sources) {
    const disk = src.disk;
    const before = prev?.disks[src.id];
    if (prev && before && before.size === disk.size) {
      const depth = chainDepth(disk, before);
      if (depth >= 0) {
        plans.push({ src, how: 'chain', segments: toSegments(await changedAbove(disk as LayeredDisk, depth)) });
        continue;
      }
      if (before.hashes && before.blockSize) {
        const old = Buffer.from(before.hashes, 'base64');
        const hashes = before.blockSize === HASH_BLOCK_SIZE ? await blockHashes(disk, (n) => (bytesRead += n)) : Buffer.alloc(0);
        if (old.length === hashes.length) {
          const changed: SparseSegmentLike[] = [];
          for (let b = 0; b * BLOCK_HASH_BYTES < hashes.length; b++) {
            const at = b * BLOCK_HASH_BYTES;
            if (hashes.compare(old, at, at + BLOCK_HASH_BYTES, at, at + BLOCK_HASH_BYTES) !== 0) changed.push({ offset: b * before.blockSize, length: Math.min(before.blockSize, disk.size - b * before.blockSize) });
          }
          plans.push({ src, how: 'hashes', segments: toSegments(changed), hashes });
          continue;
        }
      }
    }
    if (prev) {
      // one disk that cannot be compared makes the whole backup full: an incremental's holes
      // would otherwise read the parent where the disk now holds nothing
      notes.push(`${src.id}: ${!before ? 'not in the last image backup' : before.size !== disk.size ? `its size changed (${before.size} -> ${disk.size})` : 'its chain no longer holds the member the last image backup covered and no block hashes were kept'}: this image backup is full`);
      prev = null;
      return runImageBackup(sources, { ...o, incremental: false }).then((s) => ({ ...s, notes: [...notes, ...s.notes] }));
    }
    const alloc = await disk.allocation(0, disk.size);
    const data = alloc.filter((r) => r.state === 'data');
    const noMap = disk.size > 0 && data.length === 1 && data[0]!.offset === 0 && data[0]!.length === disk.size;
    plans.push({ src, how: 'full', segments: toSegments(noMap ? await nonZeroRanges(disk, (n) => (bytesRead += n)) : data) });
  }
  const incremental = prev !== null;
  const parent = prev?.archive;

  const id = newArchiveId();
  const objects = await openBackupObjects(o.store, id, o);
  try {
    const { archive, index } = objects;
    const tar = new TarWriter(archive);
    const now = BigInt(started) * 1_000_000n;
    const base = { type: 'file' as const, mode: 0o644, uid: 0, gid: 0, mtimeNs: now };
    const indexLine = (path: string, size: number, at: { headerOffset: number; dataOffset: number }, sha256?: string): IndexEntry => ({
      path,
      type: 'file',
      mode: 0o644,
      uid: 0,
      gid: 0,
      size,
      nlink: 1,
      mtimeNs: String(now),
      ctimeNs: String(now),
      atimeNs: String(now),
      header: at.headerOffset,
      data: at.dataOffset,
      ...(sha256 ? { sha256 } : {}),
    });

    // descriptors first: small, and what a full-VM restore reads before the disks
    const descriptors: { path: string; bytes: Buffer }[] = [];
    if (o.vmx) descriptors.push({ path: `${IMAGE_DESCRIPTORS_DIR}${basename(o.vmx)}`, bytes: await readFile(o.vmx) });
    for (const src of sources) {
      for (const m of src.disk.chain) {
        if (!/\.vmdk$/i.test(m.path)) continue;
        const text = await descriptorText(m.path).catch(() => null);
        if (text) descriptors.push({ path: `${IMAGE_DESCRIPTORS_DIR}${src.id}/${basename(m.path)}.txt`, bytes: text });
      }
    }
    for (const d of descriptors) {
      if (d.bytes.length > MAX_DESCRIPTOR_BYTES) throw new ImageBackupError('E_IMAGE_DESCRIPTOR', `${d.path}: ${d.bytes.length} bytes, over ${MAX_DESCRIPTOR_BYTES}`, { path: d.path, limit: MAX_DESCRIPTOR_BYTES });
      const at = await tar.add({ ...base, path: d.path, size: d.bytes.length }, d.bytes);
      await index.write(encodeIndexLine(indexLine(d.path, d.bytes.length, at, createHash('sha256').update(d.bytes).digest('hex'))));
    }

    const summaries: ImageDiskSummary[] = [];
    const newState: ImageState = { format: 'snapferry-image-state', version: 1, repo: o.store.url, vm: o.vm, archive: id, disks: {} };
    let lastReport = 0;
    for (const plan of plans) {
      const { src, segments } = plan;
      const disk = src.disk;
      // a full member's digest covers the whole logical disk (image-hash.ts: holes cost nothing)
      // and gives the block hashes a later incremental compares with
      const hasher = plan.how === 'full' ? new DiskHasher(disk.size) : null;
      const feed = async (b: Buffer): Promise<void> => {
        if (hasher) await hasher.update(b);
      };
      const feedZeros = (n: number): void => hasher?.zeros(n);
      let storedBytes = 0;
      async function* body(): AsyncIterable<Buffer> {
        let pos = 0;
        for (const s of segments) {
          feedZeros(s.offset - pos);
          for await (const piece of readAhead(disk, s.offset, s.offset + s.length)) {
            await feed(piece.bytes);
            bytesRead += piece.bytes.length;
            storedBytes += piece.bytes.length;
            const t = Date.now();
            if (o.onProgress && t - lastReport > 250) {
              lastReport = t;
              o.onProgress({ disk: src.id, bytesRead, bytesStored: archive.stats().bytesOut });
            }
            yield piece.bytes;
          }
          pos = s.offset + s.length;
        }
        feedZeros(disk.size - pos);
      }
      const path = diskMemberName(src.id);
      const entry: TarEntry = { ...base, path, size: disk.size, sparse: segments };
      let at;
      try {
        at = await tar.add(entry, body());
      } catch (err) {
        await hasher?.close();
        throw err;
      }
      const digest = await hasher?.finish();
      await index.write(encodeIndexLine({ ...indexLine(path, disk.size, at), ...(digest ? { blocksSha256: digest.blocksSha256 } : {}) }));
      summaries.push({ id: src.id, size: disk.size, storedBytes, segments: segments.length, how: plan.how, ...(digest ? { blocksSha256: digest.blocksSha256 } : {}) });
      const hashes = plan.how === 'hashes' ? plan.hashes : digest?.blockHashes;
      newState.disks[src.id] = {
        size: disk.size,
        chain: disk.chain.map((m) => ({ path: m.path, ...(m.cid !== undefined ? { cid: m.cid } : {}) })),
        ...(hashes ? { blockSize: HASH_BLOCK_SIZE, hashes: hashes.toString('base64') } : {}),
      };
    }

    await tar.finish();
    await index.end();
    const archiveBytes = archive.stats().bytesOut;
    const indexBytes = index.stats().bytesOut;
    const needs: string[] = [];
    if (parent) {
      // the whole chain of parents: a restore point reads through every one of them
      const pm = await readManifest(o.store, parent);
      needs.push(parent, ...pm.needs);
    }
    const manifest: Manifest = {
      format: 'snapferry-manifest',
      version: 1,
      id,
      vm: o.vm,
      createdAt: new Date(started).toISOString(),
      kind: 'image',
      ...(parent ? { parent } : {}),
      needs: [...new Set(needs)].sort(),
      recipients: o.recipients.map(recipientFingerprint),
      files: sources.length,
      bytes: sources.reduce((n, s) => n + s.disk.size, 0),
      storedBytes: summaries.reduce((n, s) => n + s.storedBytes, 0),
      archive: { name: archiveName(id), size: archiveBytes },
      index: { name: indexName(id), size: indexBytes },
      errors: 0,
      durationMs: Date.now() - started,
      snapferry: o.version,
    };
    await writeManifest(o.store, manifest);
    await writeImageState(statePath, newState);
    return { id, kind: 'image', incremental, ...(parent ? { parent } : {}), disks: summaries, bytesRead, archiveBytes, indexBytes, durationMs: Date.now() - started, notes };
  } catch (err) {
    await objects.abort();
    throw err;
  }
}
