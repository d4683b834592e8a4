/**
 * Attributes of an MFT record (ATTR_RECORD, Linux-NTFS layout.h) and the streams they form. A
 * resident attribute holds its value in the record; a non-resident one describes its clusters by a
 * runlist, possibly split over several extents (one per record, each covering [lowest_vcn,
 * highest_vcn]) when the runlist does not fit a single record. An AttrStream stitches those extents
 * back together and reads byte ranges of it: plain, sparse (holes read as zeros), LZNT1-compressed
 * (per compression unit) and past initialized_size (zeros).
 */
import { CorruptStructureError, UnsupportedError } from '../../util/errors.js';
import { checkBound, MiB } from '../../util/bounded.js';
import type { FileExtent, VolumeSource } from '../types.js';
import type { NtfsGeometry } from './boot.js';
import { ATTR_RECORD, ATTR_END, ATTR_COMPRESSION_MASK, ATTR_IS_ENCRYPTED, ATTR_IS_SPARSE, readI64Fast } from './structs.js';
import { decodeRunlist, findRun, MAX_RUNS_PER_STREAM, type Run } from './runlist.js';
import { decompressLznt1 } from './lznt1.js';

export interface AttrExtent {
  type: number;
  name: string;
  flags: number;
  instance: number;
  /** The MFT record this extent was read from. */
  record: number;
  resident: boolean;
  value?: Buffer;
  lowestVcn: number;
  highestVcn: number;
  runs: Run[];
  allocatedSize: number;
  dataSize: number;
  initializedSize: number;
  compressedSize?: number;
  compressionUnit: number;
}

/** Compression units above this are refused (NTFS itself only writes 16 clusters of <= 4 KiB). */
export const MAX_COMPRESSION_UNIT_BYTES = 1 * MiB;

/** The runs of every resident attribute (none; never changed). */
const NO_RUNS: Run[] = Object.freeze([]) as unknown as Run[];

function attrError(recordNo: number, msg: string, data: Record<string, string | number>): CorruptStructureError {
  return new CorruptStructureError('E_NTFS_ATTR', `MFT record ${recordNo}: ${msg}`, { structure: 'ATTR_RECORD', record: recordNo, ...data });
}

/** Parses the attribute list of one MFT record (already fixed up); every length is checked against the record. */
export function parseAttributes(rec: Buffer, attrsOffset: number, bytesInUse: number, recordNo: number, geo: NtfsGeometry): AttrExtent[] {
  const A = ATTR_RECORD;
  // messages are built only when thrown: a walk parses every record
  const bad = (msg: string, data: Record<string, string | number> = {}): CorruptStructureError => attrError(recordNo, msg, data);
  const out: AttrExtent[] = [];
  let pos = attrsOffset;
  // Each attribute is at least 16 bytes: a record cannot hold more than this many.
  const maxAttrs = Math.floor(bytesInUse / 16);
  while (true) {
    if (pos + 4 > bytesInUse) throw bad(`attribute list runs past bytes_in_use (${bytesInUse}) without an end marker`, { field: 'bytes_in_use', value: pos });
    const type = rec.readUInt32LE(pos + A.type);
    if (type === ATTR_END) break;
    if (out.length >= maxAttrs) throw bad(`more than ${maxAttrs} attributes`, { field: 'type', limit: maxAttrs });
    if (pos + A.RESIDENT_SIZE > bytesInUse) throw bad(`attribute at ${pos} has no room for its header`, { field: 'length', value: pos });
    const length = rec.readUInt32LE(pos + A.length);
    if (length < A.RESIDENT_SIZE || length % 8 !== 0 || pos + length > bytesInUse) throw bad(`attribute 0x${type.toString(16)} at ${pos} has length ${length} (must be 8-aligned, >= ${A.RESIDENT_SIZE}, within ${bytesInUse - pos})`, { field: 'length', value: length, limit: bytesInUse - pos });
    // fields read at pos + offset (no Buffer view per attribute: a walk parses every record)
    const nonResident = rec.readUInt8(pos + A.non_resident);
    const nameLength = rec.readUInt8(pos + A.name_length);
    const nameOffset = rec.readUInt16LE(pos + A.name_offset);
    if (nameLength && nameOffset + nameLength * 2 > length) throw bad(`attribute 0x${type.toString(16)} name (${nameLength} units at ${nameOffset}) runs past its ${length} bytes`, { field: 'name_length', value: nameLength });
    const name = nameLength ? rec.toString('utf16le', pos + nameOffset, pos + nameOffset + nameLength * 2) : '';
    const flags = rec.readUInt16LE(pos + A.flags);
    const instance = rec.readUInt16LE(pos + A.instance);
    if (nonResident === 0) {
      const valueLength = rec.readUInt32LE(pos + A.value_length);
      const valueOffset = rec.readUInt16LE(pos + A.value_offset);
      if (valueOffset + valueLength > length) throw bad(`resident attribute 0x${type.toString(16)} value (${valueLength} bytes at ${valueOffset}) runs past its ${length} bytes`, { field: 'value_length', value: valueLength, limit: length - valueOffset });
      const value = Buffer.from(rec.subarray(pos + valueOffset, pos + valueOffset + valueLength));
      out.push({ type, name, flags, instance, record: recordNo, resident: true, value, lowestVcn: 0, highestVcn: -1, runs: NO_RUNS, allocatedSize: valueLength, dataSize: valueLength, initializedSize: valueLength, compressionUnit: 0 });
    } else {
      if (length < A.NON_RESIDENT_SIZE) throw bad(`non-resident attribute 0x${type.toString(16)} is ${length} bytes, less than its ${A.NON_RESIDENT_SIZE}-byte header`, { field: 'length', value: length });
      const lowestVcn = readI64Fast(rec, pos + A.lowest_vcn, 'ATTR_RECORD', 'lowest_vcn');
      const highestVcn = readI64Fast(rec, pos + A.highest_vcn, 'ATTR_RECORD', 'highest_vcn');
      if (lowestVcn < 0 || highestVcn < lowestVcn - 1 || highestVcn >= geo.totalClusters * 64) throw bad(`attribute 0x${type.toString(16)} VCN range ${lowestVcn}..${highestVcn} is not sane`, { field: 'highest_vcn', value: highestVcn });
      const mpOffset = rec.readUInt16LE(pos + A.mapping_pairs_offset);
      if (mpOffset < A.NON_RESIDENT_SIZE || mpOffset > length) throw bad(`attribute 0x${type.toString(16)} mapping_pairs_offset ${mpOffset} is outside [${A.NON_RESIDENT_SIZE}, ${length}]`, { field: 'mapping_pairs_offset', value: mpOffset });
      const compressionUnit = rec.readUInt8(pos + A.compression_unit);
      const ext: AttrExtent = {
        type, name, flags, instance, record: recordNo, resident: false, lowestVcn, highestVcn,
        runs: decodeRunlist(rec, pos + mpOffset, pos + length, lowestVcn, highestVcn, geo.totalClusters, () => `MFT record ${recordNo} attribute 0x${type.toString(16)}${name ? ` '${name}'` : ''}`),
        allocatedSize: 0, dataSize: 0, initializedSize: 0, compressionUnit,
      };
      if (lowestVcn === 0) {
        // Sizes are only meaningful in the first extent.
        ext.allocatedSize = readI64Fast(rec, pos + A.allocated_size, 'ATTR_RECORD', 'allocated_size');
        ext.dataSize = readI64Fast(rec, pos + A.data_size, 'ATTR_RECORD', 'data_size');
        ext.initializedSize = readI64Fast(rec, pos + A.initialized_size, 'ATTR_RECORD', 'initialized_size');
        if (ext.allocatedSize < 0 || ext.dataSize < 0 || ext.initializedSize < 0 || ext.allocatedSize > geo.totalClusters * geo.clusterSize * 64) {
          throw bad(`attribute 0x${type.toString(16)} sizes allocated ${ext.allocatedSize} / data ${ext.dataSize} / initialized ${ext.initializedSize} are not sane`, { field: 'data_size', value: ext.dataSize });
        }
        if ((flags & (ATTR_COMPRESSION_MASK | ATTR_IS_SPARSE)) && mpOffset >= A.NON_RESIDENT_SIZE + 8) ext.compressedSize = readI64Fast(rec, pos + A.compressed_size, 'ATTR_RECORD', 'compressed_size');
      }
      out.push(ext);
    }
    pos += length;
  }
  return out;
}

/** One attribute as a byte stream: resident value or the stitched runlist of all its extents. */
export class AttrStream {
  readonly resident: boolean;
  readonly size: number;
  readonly allocatedSize: number;
  readonly initializedSize: number;
  readonly compressedSize?: number;
  readonly flags: number;
  readonly runs: Run[];
  /** Clusters per compression unit, 0 when not compressed. */
  readonly unitClusters: number;
  private readonly value?: Buffer;
  /** The last decompressed unit: sequential reads smaller than a unit (FUSE's 128 KiB) decompress it once. */
  private lastUnit: { u: number; data: Buffer } | null = null;

  constructor(
    private readonly volume: VolumeSource,
    private readonly geo: NtfsGeometry,
    extents: AttrExtent[],
    readonly where: string,
  ) {
    const bad = (msg: string, data: Record<string, string | number> = {}) => new CorruptStructureError('E_NTFS_ATTR', `${where}: ${msg}`, { structure: 'ATTR_RECORD', where, ...data });
    const first = extents[0]!;
    this.flags = first.flags;
    if (first.resident) {
      if (extents.length !== 1) throw bad(`a resident attribute has ${extents.length} extents`);
      this.resident = true;
      this.value = first.value!;
      this.size = this.allocatedSize = this.initializedSize = this.value.length;
      this.runs = [];
      this.unitClusters = 0;
      return;
    }
    this.resident = false;
    const sorted = [...extents].sort((a, b) => a.lowestVcn - b.lowestVcn);
    if (sorted.some((e) => e.resident)) throw bad('mixes resident and non-resident extents');
    const head = sorted[0]!;
    if (head.lowestVcn !== 0) throw bad(`first extent starts at VCN ${head.lowestVcn}, not 0`, { field: 'lowest_vcn', value: head.lowestVcn });
    const runs: Run[] = [];
    let next = 0;
    for (const e of sorted) {
      // Extents must tile the VCN space in order: a gap or an overlap is corruption (or a loop).
      if (e.lowestVcn !== next) throw bad(`extent in record ${e.record} starts at VCN ${e.lowestVcn}, expected ${next}`, { field: 'lowest_vcn', value: e.lowestVcn, expected: next });
      for (const r of e.runs) runs.push(r);
      if (runs.length > MAX_RUNS_PER_STREAM) throw bad(`more than ${MAX_RUNS_PER_STREAM} runs`, { field: 'runs', limit: MAX_RUNS_PER_STREAM });
      next = e.highestVcn + 1;
    }
    this.runs = runs;
    this.size = head.dataSize;
    this.allocatedSize = head.allocatedSize;
    this.initializedSize = Math.min(head.initializedSize, head.dataSize);
    if (head.compressedSize !== undefined) this.compressedSize = head.compressedSize;
    if (this.size > this.allocatedSize) throw bad(`data_size ${this.size} exceeds allocated_size ${this.allocatedSize}`, { field: 'data_size', value: this.size, limit: this.allocatedSize });
    if (this.flags & ATTR_COMPRESSION_MASK && head.compressionUnit) {
      checkBound('ATTR_RECORD', 'compression_unit', head.compressionUnit, 16, { where });
      this.unitClusters = 2 ** head.compressionUnit;
      checkBound('ATTR_RECORD', 'compression unit bytes', this.unitClusters * geo.clusterSize, MAX_COMPRESSION_UNIT_BYTES, { where });
    } else this.unitClusters = 0;
  }

  get encrypted(): boolean {
    return (this.flags & ATTR_IS_ENCRYPTED) !== 0;
  }
  get compressed(): boolean {
    return this.unitClusters > 0;
  }
  get sparse(): boolean {
    return (this.flags & ATTR_IS_SPARSE) !== 0;
  }

  /** Bytes [offset, offset+length) clipped at the stream's end. */
  async read(offset: number, length: number): Promise<Buffer> {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) throw new CorruptStructureError('E_NTFS_READ', `${this.where}: bad range ${offset}+${length}`, { where: this.where });
    const end = Math.min(this.size, offset + length);
    if (end <= offset) return Buffer.alloc(0);
    if (this.resident) return Buffer.from(this.value!.subarray(offset, end));
    // not zeroed: readInto writes every byte (holes and the part past initialized_size as zeros)
    const out = Buffer.allocUnsafe(end - offset);
    await this.readInto(out, offset);
    return out;
  }

  /**
   * Fills `out` with bytes [offset, offset+out.length), which must lie within the stream (not
   * clipped: a caller that reuses its buffers knows the size it wants). Every byte of `out` is
   * written, so it may hold anything before.
   */
  async readInto(out: Buffer, offset: number): Promise<void> {
    const end = offset + out.length;
    if (!Number.isSafeInteger(offset) || offset < 0 || end > this.size) throw new CorruptStructureError('E_NTFS_READ', `${this.where}: range ${offset}+${out.length} is outside its ${this.size} bytes`, { where: this.where, value: offset, limit: this.size });
    if (out.length === 0) return;
    if (this.resident) {
      this.value!.copy(out, 0, offset, end);
      return;
    }
    if (this.encrypted) throw new UnsupportedError('E_NTFS_ENCRYPTED', `${this.where}: EFS-encrypted data cannot be read without the user's key`, { where: this.where });
    if (this.unitClusters) return this.readCompressed(out, offset);
    const dataEnd = Math.min(end, this.initializedSize);
    await this.readPlain(out, offset, dataEnd);
    // past initialized_size the file reads as zeros whatever the clusters hold
    if (dataEnd < end) out.fill(0, Math.max(0, dataEnd - offset));
  }

  /** Bytes through the runlist alone, ignoring data_size: only for $MFT's bootstrap, before all its runs are known. */
  async readMapped(offset: number, length: number): Promise<Buffer> {
    const out = Buffer.alloc(length);
    await this.readPlain(out, offset, offset + length);
    return out;
  }

  /** Copies mapped clusters into out (which starts at byte `offset`) up to `dataEnd`, zeros for sparse runs; out past `dataEnd` is left as it is. */
  private async readPlain(out: Buffer, offset: number, dataEnd: number): Promise<void> {
    const cs = this.geo.clusterSize;
    let pos = offset;
    while (pos < dataEnd) {
      const vcn = Math.floor(pos / cs);
      const run = findRun(this.runs, vcn);
      if (!run) throw new CorruptStructureError('E_NTFS_RUNLIST', `${this.where}: VCN ${vcn} (byte ${pos}) is inside data_size ${this.size} but no run maps it`, { where: this.where, field: 'vcn', value: vcn });
      const runEnd = Math.min(dataEnd, (run.vcn + run.length) * cs);
      if (run.lcn !== null) {
        const phys = run.lcn * cs + (pos - run.vcn * cs);
        await this.volume.readInto(out.subarray(pos - offset, runEnd - offset), phys);
      } else out.fill(0, pos - offset, runEnd - offset);
      pos = runEnd;
    }
  }

  private async readCompressed(out: Buffer, offset: number): Promise<void> {
    const unitBytes = this.unitClusters * this.geo.clusterSize;
    const end = offset + out.length;
    for (let u = Math.floor(offset / unitBytes); u * unitBytes < end; u++) {
      const unit = await this.readUnit(u);
      const s = Math.max(offset, u * unitBytes);
      const e = Math.min(end, (u + 1) * unitBytes);
      unit.copy(out, s - offset, s - u * unitBytes, e - u * unitBytes);
    }
    // Past initialized_size the file reads as zeros whatever the clusters hold.
    if (this.initializedSize < end) out.fill(0, Math.max(0, this.initializedSize - offset));
  }

  /** A whole compression unit: stored raw (all clusters allocated), sparse, or LZNT1 in its leading clusters. */
  private async readUnit(u: number): Promise<Buffer> {
    if (this.lastUnit?.u === u) return this.lastUnit.data;
    const data = await this.loadUnit(u);
    this.lastUnit = { u, data };
    return data;
  }

  private async loadUnit(u: number): Promise<Buffer> {
    const cs = this.geo.clusterSize;
    const n = this.unitClusters;
    const pieces: { lcn: number; count: number }[] = [];
    let allocated = 0;
    for (let vcn = u * n; vcn < (u + 1) * n; ) {
      const run = findRun(this.runs, vcn);
      if (!run) {
        if (vcn * cs >= this.size) break; // the last unit may be mapped only up to the end
        throw new CorruptStructureError('E_NTFS_RUNLIST', `${this.where}: VCN ${vcn} of compression unit ${u} is not mapped`, { where: this.where, field: 'vcn', value: vcn });
      }
      const count = Math.min(run.vcn + run.length, (u + 1) * n) - vcn;
      if (run.lcn !== null) {
        pieces.push({ lcn: run.lcn + (vcn - run.vcn), count });
        allocated += count;
      }
      vcn += count;
    }
    const unitBytes = n * cs;
    if (allocated === 0) return Buffer.alloc(unitBytes);
    const stored = Buffer.alloc(allocated * cs);
    let p = 0;
    for (const piece of pieces) {
      await this.volume.readInto(stored.subarray(p, p + piece.count * cs), piece.lcn * cs);
      p += piece.count * cs;
    }
    if (allocated === n) return stored; // a unit that did not compress is stored as is
    return decompressLznt1(stored, unitBytes, `${this.where} compression unit ${u}`);
  }

  /** The stream's layout for readers that skip holes. */
  *extents(): Generator<FileExtent> {
    if (this.size === 0) return;
    if (this.resident) {
      yield { offset: 0, length: this.size, state: 'data' };
      return;
    }
    const cs = this.geo.clusterSize;
    let pending: FileExtent | null = null;
    const emit = function* (e: FileExtent): Generator<FileExtent> {
      if (pending && pending.state === e.state && pending.offset + pending.length === e.offset && (e.state !== 'data' || (pending.physical === undefined) === (e.physical === undefined) && (pending.physical === undefined || pending.physical + pending.length === e.physical))) {
        pending.length += e.length;
        return;
      }
      if (pending) yield pending;
      pending = { ...e };
    };
    if (this.unitClusters) {
      const unitBytes = this.unitClusters * cs;
      for (let u = 0; u * unitBytes < this.size; u++) {
        let allocated = 0;
        for (let vcn = u * this.unitClusters; vcn < (u + 1) * this.unitClusters; ) {
          const run = findRun(this.runs, vcn);
          if (!run) break;
          const count = Math.min(run.vcn + run.length, (u + 1) * this.unitClusters) - vcn;
          if (run.lcn !== null) allocated += count;
          vcn += count;
        }
        const length = Math.min(unitBytes, this.size - u * unitBytes);
        yield* emit({ offset: u * unitBytes, length, state: allocated ? 'data' : 'hole' });
      }
    } else {
      for (const r of this.runs) {
        const start = r.vcn * cs;
        if (start >= this.size) break;
        const length = Math.min(r.length * cs, this.size - start);
        if (r.lcn === null) yield* emit({ offset: start, length, state: 'hole' });
        else if (start >= this.initializedSize) yield* emit({ offset: start, length, state: 'unwritten' });
        else yield* emit({ offset: start, length, state: 'data', physical: r.lcn * cs });
      }
    }
    if (pending) yield pending;
  }
}
