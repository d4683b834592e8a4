/**
 * The Master File Table: MFT records ("FILE", MFT_RECORD in layout.h) read through $MFT's own
 * runlist, fixed up, parsed and assembled into inodes (a base record plus the extension records its
 * $ATTRIBUTE_LIST names). Records are cached in a ByteLru with a byte budget; the MFT is never
 * loaded whole. $MFT bootstraps itself: record 0 sits at the boot sector's mft_lcn and maps at least
 * the start of $MFT; when its runlist needs an attribute list, the extension records are read
 * through the part mapped so far (Linux-NTFS "ntfs_mft_load"; libyal NTFS "MFT entry").
 */
import { CorruptStructureError, SnapferryError, ExitCode } from '../../util/errors.js';
import { checkBound, KiB, MiB } from '../../util/bounded.js';
import { ByteLru } from '../../util/lru.js';
import type { VolumeSource } from '../types.js';
import type { NtfsGeometry } from './boot.js';
import { applyFixups } from './fixup.js';
import { parseAttributes, AttrStream, type AttrExtent } from './attribute.js';
import type { DirectoryIndex } from './index.js';
import type { InodeKind } from './ntfs.js';
import type { WofReader } from './wof/wof.js';
import {
  MFT_RECORD, MFT_RECORD_IN_USE, MFT_RECORD_IS_DIRECTORY, AT, ATTR_LIST_ENTRY, FILE_MFT,
  mftRefRecord, decodeStandardInformation, decodeFileName, type StandardInformation, type FileName,
} from './structs.js';

export interface MftRecord {
  recordNo: number;
  sequence: number;
  linkCount: number;
  flags: number;
  baseRecord: number;
  attrs: AttrExtent[];
}

/** An $ATTRIBUTE_LIST longer than this is refused (Windows caps it at 256 KiB). */
export const MAX_ATTRIBUTE_LIST_BYTES = 256 * KiB;
/** Extension records of one file, and of $MFT itself while bootstrapping. */
export const MAX_EXTENSION_RECORDS = 16384;

export class RecordNotFoundError extends SnapferryError {
  constructor(recordNo: number, why: string) {
    super('E_NTFS_NOT_FOUND', `MFT record ${recordNo}: ${why}`, { record: recordNo }, ExitCode.notFound);
  }
}

/** Fixes up and parses one MFT record buffer (owned by the caller; modified in place). */
export function parseMftRecord(buf: Buffer, recordNo: number, geo: NtfsGeometry): MftRecord {
  const M = MFT_RECORD;
  const what = `MFT record ${recordNo}`;
  applyFixups(buf, 'FILE', what, { record: recordNo });
  const bad = (field: string, msg: string, value: number, limit?: number) => new CorruptStructureError('E_NTFS_RECORD', `${what}: MFT_RECORD.${field} ${msg}`, { structure: 'MFT_RECORD', field, record: recordNo, value, limit });
  const bytesAllocated = buf.readUInt32LE(M.bytes_allocated);
  if (bytesAllocated !== buf.length) throw bad('bytes_allocated', `= ${bytesAllocated}, the record size is ${buf.length}`, bytesAllocated, buf.length);
  const bytesInUse = buf.readUInt32LE(M.bytes_in_use);
  if (bytesInUse > buf.length || bytesInUse < M.SIZE) throw bad('bytes_in_use', `= ${bytesInUse}, outside [${M.SIZE}, ${buf.length}]`, bytesInUse, buf.length);
  const attrsOffset = buf.readUInt16LE(M.attrs_offset);
  if (attrsOffset < M.SIZE - 8 || attrsOffset % 8 !== 0 || attrsOffset >= bytesInUse) throw bad('attrs_offset', `= ${attrsOffset}, not an aligned offset inside bytes_in_use ${bytesInUse}`, attrsOffset, bytesInUse);
  return {
    recordNo,
    sequence: buf.readUInt16LE(M.sequence_number),
    linkCount: buf.readUInt16LE(M.link_count),
    flags: buf.readUInt16LE(M.flags),
    baseRecord: mftRefRecord(buf, M.base_mft_record),
    attrs: parseAttributes(buf, attrsOffset, bytesInUse, recordNo, geo),
  };
}

/** A base record is in use and is not an extension record, or the file does not exist. */
function checkBase(n: number, base: MftRecord): void {
  if (!(base.flags & MFT_RECORD_IN_USE)) throw new RecordNotFoundError(n, 'not in use (deleted)');
  if (base.baseRecord !== 0) throw new RecordNotFoundError(n, `an extension record of ${base.baseRecord}, not a file`);
}

/** Attribute list entries (ATTR_LIST_ENTRY): which record holds which attribute extent. */
export function parseAttributeList(v: Buffer, where: string): { type: number; name: string; lowestVcn: number; record: number }[] {
  const E = ATTR_LIST_ENTRY;
  checkBound('ATTRIBUTE_LIST', 'length', v.length, MAX_ATTRIBUTE_LIST_BYTES, { where });
  const out: { type: number; name: string; lowestVcn: number; record: number }[] = [];
  let pos = 0;
  while (pos + E.SIZE <= v.length) {
    const length = v.readUInt16LE(pos + E.length);
    if (length < E.SIZE || pos + length > v.length) throw new CorruptStructureError('E_NTFS_ATTRLIST', `${where}: ATTR_LIST_ENTRY at ${pos} has length ${length}`, { structure: 'ATTR_LIST_ENTRY', field: 'length', where, value: length, limit: v.length - pos });
    const nameLength = v.readUInt8(pos + E.name_length);
    const nameOffset = v.readUInt8(pos + E.name_offset);
    if (nameLength && nameOffset + nameLength * 2 > length) throw new CorruptStructureError('E_NTFS_ATTRLIST', `${where}: ATTR_LIST_ENTRY at ${pos} name runs past the entry`, { structure: 'ATTR_LIST_ENTRY', field: 'name_length', where, value: nameLength });
    const lowestVcn = Number(v.readBigInt64LE(pos + E.lowest_vcn));
    out.push({
      type: v.readUInt32LE(pos + E.type),
      name: nameLength ? v.toString('utf16le', pos + nameOffset, pos + nameOffset + nameLength * 2) : '',
      lowestVcn: Number.isSafeInteger(lowestVcn) ? lowestVcn : -1,
      record: mftRefRecord(v, pos + E.mft_reference),
    });
    pos += length;
  }
  return out;
}

/** A file: its base record's header and the attributes of the base and all extension records. */
export class Inode {
  readonly si: StandardInformation;
  private names?: FileName[];
  /** Streams made so far, by `${type}:${name}` (most files ask for one or two, if any). */
  private streamCache?: Map<string, AttrStream>;
  private unnamedData?: AttrStream | null;
  /**
   * What the filesystem layer derived from this file (ntfs.ts: its kind, its directory index, its
   * WOF reader): kept with the cached record and dropped with it. Plain fields rather than WeakMaps
   * keyed by inode: a walk makes tens of thousands of inodes, and every major GC would have to
   * process a weak table's entries one by one.
   */
  kind?: InodeKind;
  index?: DirectoryIndex;
  wof?: WofReader;

  constructor(
    readonly recordNo: number,
    readonly base: MftRecord,
    readonly attrs: AttrExtent[],
    private readonly volume: VolumeSource,
    private readonly geo: NtfsGeometry,
    readonly bytes: number,
  ) {
    const si = attrs.find((a) => a.type === AT.STANDARD_INFORMATION && a.resident);
    if (!si) throw new CorruptStructureError('E_NTFS_ATTR', `MFT record ${recordNo} has no resident STANDARD_INFORMATION`, { structure: 'STANDARD_INFORMATION', record: recordNo });
    this.si = decodeStandardInformation(si.value!, `MFT record ${recordNo}`);
  }

  /** The FILE_NAME attributes, decoded when first asked for (a stat needs none of them). */
  get fileNames(): FileName[] {
    this.names ??= this.attrs.filter((a) => a.type === AT.FILE_NAME && a.resident).map((a) => decodeFileName(a.value!, `MFT record ${this.recordNo}`));
    return this.names;
  }

  get clusterSize(): number {
    return this.geo.clusterSize;
  }

  get isDirectory(): boolean {
    return (this.base.flags & MFT_RECORD_IS_DIRECTORY) !== 0;
  }

  has(type: number, name = ''): boolean {
    return this.attrs.some((a) => a.type === type && a.name === name);
  }

  /** The attribute (type, name) as a stream, or undefined. Names compare exactly (ntfs-3g: CASE_SENSITIVE). */
  stream(type: number, name = ''): AttrStream | undefined {
    // the unnamed $DATA (every stat asks for it) without a Map and a key string
    if (type === AT.DATA && name === '') {
      if (this.unnamedData === undefined) this.unnamedData = this.makeStream(type, name) ?? null;
      return this.unnamedData ?? undefined;
    }
    const key = `${type}:${name}`;
    let s = this.streamCache?.get(key);
    if (s) return s;
    s = this.makeStream(type, name);
    if (s) (this.streamCache ??= new Map()).set(key, s);
    return s;
  }

  private makeStream(type: number, name: string): AttrStream | undefined {
    const extents = this.attrs.filter((a) => a.type === type && a.name === name);
    if (!extents.length) return undefined;
    return new AttrStream(this.volume, this.geo, extents, `MFT record ${this.recordNo} attribute 0x${type.toString(16)}${name ? ` '${name}'` : ''}`);
  }

  /** Names of the named $DATA streams, in attribute order. */
  dataStreamNames(): string[] {
    const names: string[] = [];
    for (const a of this.attrs) if (a.type === AT.DATA && a.name && !names.includes(a.name)) names.push(a.name);
    return names;
  }
}

/**
 * Records are fetched from the disk in aligned blocks of this many bytes: a walk visits records in
 * roughly MFT order (a directory's files were mostly created together), so one read serves hundreds
 * of records instead of one 1 KiB read each (ntfs-3g reads ahead the same way through the kernel).
 * Each read costs ~40-80 us of main-thread time on the VMs we run on, whatever its size: on
 * bench/mount.sh's 50,110-file volume a walk made 972 reads of 64 KiB blocks, ~250 of 256 KiB.
 */
export const MFT_READ_BLOCK = 256 * KiB;
/**
 * Raw MFT blocks (before fixups; each record is copied out before it is fixed up) get this share of
 * the MFT's cache budget, parsed inodes the rest. A directory's files can be spread over many
 * blocks (bench/mount.sh's volume, filled by ntfs-3g: a directory of 225 files over ~10 blocks of
 * 256 KiB, shared with its siblings): with 4 MiB of blocks a walk read its 50 MiB MFT 3.7 times over
 * (725 reads), with 12 MiB once (~220 reads). Parsed inodes matter less: a walk's stat does not
 * keep them (inode()).
 */
export const MFT_BLOCK_SHARE = 0.5;

export class Mft {
  private readonly cache: ByteLru<number, Inode>;
  /** Cached MFT blocks by number, least recently used first; at most maxBlocks. */
  private readonly blocks = new Map<number, Buffer>();
  private readonly maxBlocks: number;
  /** Buffers of evicted blocks, to read the next blocks into. */
  private readonly freeBlocks: Buffer[] = [];
  private readonly loading = new Map<number, Promise<boolean>>();
  readonly recordCount: number;

  private constructor(
    private readonly volume: VolumeSource,
    readonly geo: NtfsGeometry,
    readonly mftData: AttrStream,
    readonly mftRecord: MftRecord,
    cacheBytes: number,
  ) {
    // What a parsed inode really costs: its records plus the attribute, run and name objects made
    // from them, about four times the records' bytes (measured with a heap snapshot of a walk).
    this.cache = new ByteLru(Math.floor(cacheBytes * (1 - MFT_BLOCK_SHARE)), (i) => i.bytes * 4 + 1024);
    this.maxBlocks = Math.max(2, Math.floor((cacheBytes * MFT_BLOCK_SHARE) / MFT_READ_BLOCK));
    this.recordCount = Math.floor(mftData.size / geo.mftRecordSize);
  }

  static async open(volume: VolumeSource, geo: NtfsGeometry, cacheBytes: number): Promise<Mft> {
    const rs = geo.mftRecordSize;
    const rec0 = parseMftRecord(await volume.read(geo.mftLcn * geo.clusterSize, rs), FILE_MFT, geo);
    if (!(rec0.flags & MFT_RECORD_IN_USE)) throw new CorruptStructureError('E_NTFS_RECORD', 'MFT record 0 ($MFT) is not in use', { record: 0 });
    let extents = rec0.attrs.filter((a) => a.type === AT.DATA && a.name === '');
    const list = rec0.attrs.find((a) => a.type === AT.ATTRIBUTE_LIST);
    if (list) {
      // $MFT's runlist continues in extension records, which we can only read through the part of
      // the runlist we already hold: map in VCN order, refusing a record not yet mapped and any
      // record seen twice (a runlist that loops over the MFT).
      const listValue = list.resident ? list.value! : await new AttrStream(volume, geo, [list], 'MFT record 0 $ATTRIBUTE_LIST').read(0, MAX_ATTRIBUTE_LIST_BYTES + 1);
      const entries = parseAttributeList(listValue, 'MFT record 0 $ATTRIBUTE_LIST').filter((e) => e.type === AT.DATA && e.name === '' && e.record !== FILE_MFT).sort((a, b) => a.lowestVcn - b.lowestVcn);
      checkBound('$MFT ATTRIBUTE_LIST', 'extension records', entries.length, MAX_EXTENSION_RECORDS);
      const seen = new Set<number>([FILE_MFT]);
      for (const e of entries) {
        if (seen.has(e.record)) {
          throw new CorruptStructureError('E_NTFS_CYCLE', `$MFT's attribute list names record ${e.record} twice: its runlist loops`, { structure: 'ATTR_LIST_ENTRY', record: e.record });
        }
        seen.add(e.record);
        const partial = new AttrStream(volume, geo, extents, '$MFT (bootstrap)');
        const mappedEnd = (partial.runs.length ? partial.runs[partial.runs.length - 1]!.vcn + partial.runs[partial.runs.length - 1]!.length : 0) * geo.clusterSize;
        const off = e.record * rs;
        if (off + rs > mappedEnd) {
          throw new CorruptStructureError('E_NTFS_ATTRLIST', `$MFT extension record ${e.record} lies beyond the ${mappedEnd} bytes of $MFT mapped before it`, { structure: 'ATTR_LIST_ENTRY', record: e.record, value: off, limit: mappedEnd });
        }
        // data_size is known, but the runs past this point are not yet: read through what is mapped.
        const buf = await partial.readMapped(off, rs);
        const ext = parseMftRecord(buf, e.record, geo);
        if (ext.baseRecord !== FILE_MFT) throw new CorruptStructureError('E_NTFS_ATTRLIST', `$MFT extension record ${e.record} names base record ${ext.baseRecord}`, { record: e.record, value: ext.baseRecord });
        extents = extents.concat(ext.attrs.filter((a) => a.type === AT.DATA && a.name === ''));
      }
    }
    if (!extents.length) throw new CorruptStructureError('E_NTFS_RECORD', '$MFT has no unnamed $DATA attribute', { record: 0 });
    const data = new AttrStream(volume, geo, extents, '$MFT');
    if (data.resident || data.size < rs * 16) throw new CorruptStructureError('E_NTFS_RECORD', `$MFT's data is ${data.resident ? 'resident' : `${data.size} bytes`}: too small to hold the system files`, { record: 0, value: data.size });
    return new Mft(volume, geo, data, rec0, cacheBytes);
  }

  /**
   * inode() without waiting, when that needs no read: the cached inode, or one parsed from a cached
   * MFT block that has no extension records; otherwise undefined (ask inode()). A walk's stats are
   * mostly served so, without the promises of three nested async calls per file.
   */
  inodeNow(n: number, keep = true): Inode | undefined {
    const hit = this.cache.get(n);
    if (hit) return hit;
    if (!Number.isSafeInteger(n) || n < 0 || n >= this.recordCount) throw new RecordNotFoundError(n, `outside the MFT's ${this.recordCount} records`);
    const rs = this.geo.mftRecordSize;
    if (MFT_READ_BLOCK % rs !== 0) return undefined;
    const b = Math.floor((n * rs) / MFT_READ_BLOCK);
    const buf = this.copyFromBlock(b, n * rs - b * MFT_READ_BLOCK);
    if (!buf) return undefined;
    const base = parseMftRecord(buf, n, this.geo);
    checkBase(n, base);
    if (base.attrs.some((a) => a.type === AT.ATTRIBUTE_LIST)) return undefined;
    const inode = new Inode(n, base, base.attrs, this.volume, this.geo, rs);
    if (keep) this.cache.set(n, inode);
    return inode;
  }

  /** One raw record, fixed up and parsed (not cached: inode() caches the assembled file). */
  async record(n: number): Promise<MftRecord> {
    if (!Number.isSafeInteger(n) || n < 0 || n >= this.recordCount) throw new RecordNotFoundError(n, `outside the MFT's ${this.recordCount} records`);
    const rs = this.geo.mftRecordSize;
    const buf = (await this.fromBlock(n)) ?? (await this.mftData.read(n * rs, rs));
    if (buf.length !== rs) throw new RecordNotFoundError(n, 'cut short by the end of $MFT');
    return parseMftRecord(buf, n, this.geo);
  }

  /**
   * Record n copied out of its MFT_READ_BLOCK (loaded once however many callers wait for it), or
   * undefined when blocks cannot serve it: a record size that does not divide the block, or a
   * block that fails to read as a whole (then the record alone is read, so one damaged run of $MFT
   * does not take its healthy neighbours down with it).
   *
   * Blocks are read into buffers that are reused once evicted (a fresh 256 KiB buffer per read
   * costs page faults and a memset). So a block's bytes are only ever copied in the same
   * synchronous step that finds it in `blocks`: a buffer held across an await could meanwhile be
   * evicted and refilled.
   */
  private async fromBlock(n: number): Promise<Buffer | undefined> {
    const rs = this.geo.mftRecordSize;
    if (MFT_READ_BLOCK % rs !== 0) return undefined;
    const b = Math.floor((n * rs) / MFT_READ_BLOCK);
    const at = n * rs - b * MFT_READ_BLOCK;
    let copy = this.copyFromBlock(b, at);
    if (copy) return copy;
    let pending = this.loading.get(b);
    if (!pending) {
      pending = this.loadBlock(b);
      this.loading.set(b, pending);
      void pending.finally(() => this.loading.delete(b));
    }
    if (!(await pending)) return undefined;
    copy = this.copyFromBlock(b, at);
    // evicted again before this caller ran (a cache of very few blocks): the record alone, then
    return copy;
  }

  /** Record bytes at `at` of cached block `b`, copied (fixups are applied in place), or undefined. */
  private copyFromBlock(b: number, at: number): Buffer | undefined {
    const block = this.blocks.get(b);
    if (!block) return undefined;
    // a fresh hit is the most recently used
    this.blocks.delete(b);
    this.blocks.set(b, block);
    const rs = this.geo.mftRecordSize;
    if (at + rs > block.length) return undefined;
    // from Node's pool: the parsed record copies what it keeps, so nothing holds this buffer long
    const own = Buffer.allocUnsafe(rs);
    block.copy(own, 0, at, at + rs);
    return own;
  }

  /** Reads block `b` into a free (or new) buffer and caches it; false when the read fails. */
  private async loadBlock(b: number): Promise<boolean> {
    const rs = this.geo.mftRecordSize;
    const start = b * MFT_READ_BLOCK;
    const length = Math.min(MFT_READ_BLOCK, this.recordCount * rs - start);
    const buf = this.freeBlocks.pop() ?? Buffer.allocUnsafeSlow(MFT_READ_BLOCK);
    const bytes = buf.subarray(0, length);
    try {
      await this.mftData.readInto(bytes, start);
    } catch {
      this.freeBlocks.push(buf);
      return false;
    }
    this.blocks.set(b, bytes);
    while (this.blocks.size > this.maxBlocks) {
      const oldest = this.blocks.keys().next().value!;
      const evicted = this.blocks.get(oldest)!;
      this.blocks.delete(oldest);
      this.freeBlocks.push(Buffer.from(evicted.buffer, evicted.byteOffset, MFT_READ_BLOCK));
    }
    return true;
  }

  /**
   * The file whose base record is `n`, with its extension records' attributes. `keep: false` (a
   * stat during a walk, which asks once per file) returns the cached inode when there is one but
   * does not cache one it had to parse: the kernel keeps the attributes it is given, and an inode
   * cached for nobody costs the garbage collector twice (copied out of the young generation, then
   * swept from the old one) for every file of the walk.
   */
  async inode(n: number, keep = true): Promise<Inode> {
    const now = this.inodeNow(n, keep);
    if (now) return now;
    const base = await this.record(n);
    checkBase(n, base);
    let attrs = base.attrs;
    let bytes = this.geo.mftRecordSize;
    const list = base.attrs.find((a) => a.type === AT.ATTRIBUTE_LIST);
    if (list) {
      const where = `MFT record ${n} $ATTRIBUTE_LIST`;
      const stream = new AttrStream(this.volume, this.geo, [list], where);
      checkBound('ATTRIBUTE_LIST', 'length', stream.size, MAX_ATTRIBUTE_LIST_BYTES, { record: n });
      const entries = parseAttributeList(await stream.read(0, stream.size), where);
      const records = [...new Set(entries.map((e) => e.record))].filter((r) => r !== n);
      checkBound('ATTRIBUTE_LIST', 'extension records', records.length, MAX_EXTENSION_RECORDS, { record: n });
      attrs = attrs.filter((a) => a.type !== AT.ATTRIBUTE_LIST || a === list);
      for (const r of records) {
        const ext = await this.record(r);
        if (!(ext.flags & MFT_RECORD_IN_USE) || ext.baseRecord !== n) {
          throw new CorruptStructureError('E_NTFS_ATTRLIST', `${where} names record ${r}, which is ${ext.flags & MFT_RECORD_IN_USE ? `an extension of ${ext.baseRecord}` : 'not in use'}`, { structure: 'ATTR_LIST_ENTRY', record: n, value: r });
        }
        attrs = attrs.concat(ext.attrs.filter((a) => a.type !== AT.ATTRIBUTE_LIST));
        bytes += this.geo.mftRecordSize;
      }
    }
    const inode = new Inode(n, base, attrs, this.volume, this.geo, bytes);
    if (keep) this.cache.set(n, inode);
    return inode;
  }
}

export const DEFAULT_CACHE_BYTES = 16 * MiB;
