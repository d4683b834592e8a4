/**
 * restore --image --vmdk: a disk written out as a hosted monolithicSparse VMDK (VMware Virtual Disk
 * Format 1.1, "Hosted Sparse Extents"), the fields named as src/disk/vmdk/structs.ts declares them:
 *
 *   sector 0                      SparseExtentHeader (version 1, flags: validNewlineTest)
 *   sector 1 ..                   the embedded descriptor (createType="monolithicSparse", one SPARSE extent)
 *   gdOffset                      grain directory: one uint32 per grain table (sector of the table)
 *   gdOffset + GD sectors ..      every grain table (numGTEsPerGT = 512 uint32 each), preallocated
 *   overHead (grain-aligned) ..   the grains, in disk order; an all-zero grain is not written (GTE 0)
 *
 * Grains of 64 KiB (grainSize 128 sectors), as qemu-img and VMware write them. Only the disk's data
 * ranges are read (from the archives: image-disk.ts), so a restore costs what the backup holds.
 * qemu-img check and qemu-img compare against the source accept the result (test/backup/image.test.ts).
 */
import { open } from 'node:fs/promises';
import { constants } from 'node:fs';
import type { Disk } from '../disk/types.js';
import { SECTOR_SIZE } from '../disk/types.js';
import { SPARSE_EXTENT_HEADER_SIZE, SPARSE_MAGICNUMBER, SparseExtentHeaderLayout as H, SparseFlags, COMPRESSION_NONE, NEWLINE_CHECK, GDE_SIZE, GTE_SIZE } from '../disk/vmdk/structs.js';
import { ExitCode, SnapferryError } from '../util/errors.js';
import { MiB } from '../util/bounded.js';

const GRAIN_SECTORS = 128;
const GRAIN_BYTES = GRAIN_SECTORS * SECTOR_SIZE;
const GTES_PER_GT = 512;
const DESCRIPTOR_SECTORS = 20;
/** Bytes read from the disk per request. */
const READ_BYTES = 4 * MiB;

export class VmdkWriteError extends SnapferryError {}

function descriptor(capacitySectors: number, fileName: string): Buffer {
  // CID: any value; a parent-less disk has parentCID ffffffff (spec: "Header"). ddb geometry as qemu-img writes it.
  const cylinders = Math.min(16383, Math.floor(capacitySectors / (16 * 63)));
  const text = [
    '# Disk DescriptorFile',
    'version=1',
    `CID=${(Date.now() & 0x7fffffff).toString(16).padStart(8, '0')}`,
    'parentCID=ffffffff',
    'createType="monolithicSparse"',
    '',
    '# Extent description',
    `RW ${capacitySectors} SPARSE "${fileName.replace(/"/g, '_')}"`,
    '',
    '# The Disk Data Base',
    '#DDB',
    '',
    'ddb.virtualHWVersion = "4"',
    `ddb.geometry.cylinders = "${cylinders}"`,
    'ddb.geometry.heads = "16"',
    'ddb.geometry.sectors = "63"',
    'ddb.adapterType = "lsilogic"',
    '',
  ].join('\n');
  const b = Buffer.alloc(DESCRIPTOR_SECTORS * SECTOR_SIZE);
  if (Buffer.byteLength(text) > b.length) throw new VmdkWriteError('E_VMDK_WRITE', 'descriptor does not fit its sectors', {});
  b.write(text);
  return b;
}

/** Writes `disk` to `path` (created; must not exist unless overwrite) as a monolithicSparse VMDK. */
export async function writeMonolithicSparse(disk: Disk, path: string, fileName: string, opts: { overwrite?: boolean; onProgress?: (done: number, total: number) => void } = {}): Promise<{ size: number; grains: number }> {
  if (disk.size % SECTOR_SIZE !== 0) throw new VmdkWriteError('E_VMDK_WRITE', `a ${disk.size}-byte disk is not whole sectors`, { size: disk.size }, ExitCode.unsupported);
  const capacity = disk.size / SECTOR_SIZE;
  const grains = Math.ceil(capacity / GRAIN_SECTORS);
  const tables = Math.ceil(grains / GTES_PER_GT);
  const gdOffset = 1 + DESCRIPTOR_SECTORS;
  const gdSectors = Math.ceil((tables * GDE_SIZE) / SECTOR_SIZE);
  const gtSectors = (GTES_PER_GT * GTE_SIZE) / SECTOR_SIZE;
  const firstGt = gdOffset + gdSectors;
  const overHead = Math.ceil((firstGt + tables * gtSectors) / GRAIN_SECTORS) * GRAIN_SECTORS;
  if (overHead + grains * GRAIN_SECTORS > 0xffffffff) throw new VmdkWriteError('E_VMDK_WRITE', `a ${disk.size}-byte disk does not fit a sparse extent's 32-bit grain table entries`, { size: disk.size }, ExitCode.unsupported);

  const header = Buffer.alloc(SPARSE_EXTENT_HEADER_SIZE);
  header.writeUInt32LE(SPARSE_MAGICNUMBER, H.magicNumber);
  header.writeUInt32LE(1, H.version);
  header.writeUInt32LE(SparseFlags.validNewlineTest, H.flags);
  header.writeBigUInt64LE(BigInt(capacity), H.capacity);
  header.writeBigUInt64LE(BigInt(GRAIN_SECTORS), H.grainSize);
  header.writeBigUInt64LE(1n, H.descriptorOffset);
  header.writeBigUInt64LE(BigInt(DESCRIPTOR_SECTORS), H.descriptorSize);
  header.writeUInt32LE(GTES_PER_GT, H.numGTEsPerGT);
  header.writeBigUInt64LE(0n, H.rgdOffset);
  header.writeBigUInt64LE(BigInt(gdOffset), H.gdOffset);
  header.writeBigUInt64LE(BigInt(overHead), H.overHead);
  header.writeUInt8(0, H.uncleanShutdown);
  header.writeUInt8(NEWLINE_CHECK.singleEndLineChar, H.singleEndLineChar);
  header.writeUInt8(NEWLINE_CHECK.nonEndLineChar, H.nonEndLineChar);
  header.writeUInt8(NEWLINE_CHECK.doubleEndLineChar1, H.doubleEndLineChar1);
  header.writeUInt8(NEWLINE_CHECK.doubleEndLineChar2, H.doubleEndLineChar2);
  header.writeUInt16LE(COMPRESSION_NONE, H.compressAlgorithm);

  const gd = Buffer.alloc(gdSectors * SECTOR_SIZE);
  for (let i = 0; i < tables; i++) gd.writeUInt32LE(firstGt + i * gtSectors, i * GDE_SIZE);
  const gt = Buffer.alloc(tables * GTES_PER_GT * GTE_SIZE);

  let fh;
  try {
    fh = await open(path, constants.O_WRONLY | constants.O_CREAT | (opts.overwrite ? constants.O_TRUNC : constants.O_EXCL), 0o644);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new VmdkWriteError('E_EXPORT_EXISTS', `${path} exists (--overwrite replaces it)`, { path }, ExitCode.usage);
    throw err;
  }
  try {
    await fh.write(header, 0, header.length, 0);
    await fh.write(descriptor(capacity, fileName), 0, DESCRIPTOR_SECTORS * SECTOR_SIZE, SECTOR_SIZE);
    await fh.write(gd, 0, gd.length, gdOffset * SECTOR_SIZE);
    let next = overHead; // sector of the next grain
    let written = 0;
    let done = 0;
    const buf = Buffer.allocUnsafe(READ_BYTES);
    for (const r of await disk.allocation(0, disk.size)) {
      if (r.state !== 'data') continue;
      // whole grains covering the range (a grain's other bytes are read too: they belong in it)
      const from = Math.floor(r.offset / GRAIN_BYTES) * GRAIN_BYTES;
      const to = Math.min(disk.size, Math.ceil((r.offset + r.length) / GRAIN_BYTES) * GRAIN_BYTES);
      for (let off = from; off < to; off += READ_BYTES) {
        const n = Math.min(READ_BYTES, to - off);
        const piece = buf.subarray(0, n);
        await disk.readInto(piece, off);
        for (let g = 0; g < n; g += GRAIN_BYTES) {
          const grain = (off + g) / GRAIN_BYTES;
          if (gt.readUInt32LE(grain * GTE_SIZE) !== 0) continue; // written already (ranges sharing a grain)
          const bytes = piece.subarray(g, Math.min(n, g + GRAIN_BYTES));
          if (bytes.every((x) => x === 0)) continue;
          // a short last grain is padded with zeros to a whole grain
          const whole = bytes.length === GRAIN_BYTES ? bytes : Buffer.concat([bytes, Buffer.alloc(GRAIN_BYTES - bytes.length)]);
          await fh.write(whole, 0, GRAIN_BYTES, next * SECTOR_SIZE);
          gt.writeUInt32LE(next, grain * GTE_SIZE);
          next += GRAIN_SECTORS;
          written++;
        }
        done += n;
        opts.onProgress?.(done, disk.size);
      }
    }
    await fh.write(gt, 0, gt.length, firstGt * SECTOR_SIZE);
    await fh.truncate(Math.max(next, overHead) * SECTOR_SIZE);
    await fh.close();
    return { size: disk.size, grains: written };
  } catch (err) {
    await fh.close().catch(() => {});
    throw err;
  }
}
