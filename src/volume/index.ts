/**
 * readVolumes: what a disk is divided into. Sector 0 decides the scheme, as Linux and libblkid do:
 *   - no 0x55AA signature, a BootIndicator other than 0x00/0x80, or a FAT/NTFS/exFAT/BitLocker boot
 *     sector at LBA 0 (which also ends in 0x55AA) → no table: one volume, 'whole';
 *   - a 0xEE record (protective or hybrid MBR, UEFI 2.10 §5.2.3) → GPT;
 *   - else MBR (primaries, extended, logicals).
 */
import type { Disk } from '../disk/types.js';
import { checkWithin } from '../util/bounded.js';
import { UnsupportedError } from '../util/errors.js';
import { detectFilesystem, isBootSectorFilesystem } from './detect.js';
import { readGpt } from './gpt.js';
import { parseMbrSector, readMbr, type TableEntry } from './mbr.js';
import { GPT_SIGNATURE, MBR, MBR_TYPE_GPT_PROTECTIVE } from './structs.js';
import type { ReadAt, Volume, VolumeTable, VolumeWarning } from './types.js';

export type { FsDetection, FsKind, Volume, VolumeTable, VolumeWarning } from './types.js';
export { detectFilesystem } from './detect.js';
export { MAX_EBR_CHAIN } from './mbr.js';
export { MAX_GPT_ENTRIES, MAX_GPT_ENTRY_SIZE, formatGuid } from './gpt.js';

const SECTOR_SIZES = [512, 1024, 2048, 4096];

export async function readVolumes(disk: Pick<Disk, 'size' | 'read'>, opts: { sectorSize?: number } = {}): Promise<VolumeTable> {
  if (opts.sectorSize !== undefined && !SECTOR_SIZES.includes(opts.sectorSize)) {
    throw new UnsupportedError('E_SECTOR_SIZE', `sector size ${opts.sectorSize} is not one of ${SECTOR_SIZES.join(', ')}`, { sectorSize: opts.sectorSize });
  }
  const size = disk.size;
  // Every read is checked against the disk here, so a mock or partial Disk cannot be read past its end.
  const read: ReadAt = (offset, length) => {
    checkWithin('disk', offset, length, size);
    return disk.read(offset, length);
  };
  const warnings: VolumeWarning[] = [];
  const sector0 = size >= MBR.SIZE ? await read(0, MBR.SIZE) : undefined;
  const mbr = sector0 ? parseMbrSector(sector0) : undefined;

  if (!sector0 || !mbr || !mbr.signatureValid || !mbr.bootIndicatorsValid || isBootSectorFilesystem(sector0)) {
    if (mbr && mbr.signatureValid && !mbr.bootIndicatorsValid && !isBootSectorFilesystem(sector0!)) {
      warnings.push({ code: 'W_MBR_INVALID', message: 'sector 0 ends in 0x55AA but its partition records are not valid (BootIndicator not 0x00/0x80); read as a disk without a table' });
    }
    const whole: TableEntry = { index: 0, start: 0, size, type: { id: 'none', name: 'Whole disk' } };
    return { scheme: 'none', sectorSize: opts.sectorSize ?? 512, warnings, volumes: await withFilesystems(read, size, [whole], warnings, 'whole') };
  }

  if (mbr.records.some((r) => r.OSType === MBR_TYPE_GPT_PROTECTIVE)) {
    const sectorSize = opts.sectorSize ?? (await guessGptSectorSize(read, size));
    const gpt = await readGpt(read, size, sectorSize, warnings);
    return { scheme: 'gpt', sectorSize, diskGuid: gpt.header.DiskGUID, warnings, volumes: await withFilesystems(read, size, gpt.entries, warnings) };
  }

  const sectorSize = opts.sectorSize ?? 512;
  const entries = await readMbr(mbr, read, size, sectorSize, warnings);
  const diskGuid = `0x${mbr.UniqueMBRDiskSignature.toString(16).padStart(8, '0')}`;
  return { scheme: 'mbr', sectorSize, diskGuid, warnings, volumes: await withFilesystems(read, size, entries, warnings) };
}

/**
 * A GPT records no sector size: it is where the header is. Without opts.sectorSize we look for
 * "EFI PART" at LBA 1 and at the last LBA for 512- then 4096-byte sectors (a 4Kn disk), else 512.
 */
async function guessGptSectorSize(read: ReadAt, size: number): Promise<number> {
  for (const ss of [512, 4096]) {
    const lastLba = Math.floor(size / ss) - 1;
    for (const lba of [1, lastLba]) {
      if (lba < 1 || (lba + 1) * ss > size) continue;
      const sig = await read(lba * ss, GPT_SIGNATURE.length);
      if (sig.toString('latin1') === GPT_SIGNATURE) return ss;
    }
  }
  return 512;
}

async function withFilesystems(read: ReadAt, diskSize: number, entries: TableEntry[], warnings: VolumeWarning[], name?: string): Promise<Volume[]> {
  const volumes: Volume[] = [];
  for (const e of [...entries].sort((a, b) => a.index - b.index)) {
    const vname = name ?? `p${e.index}`;
    if (e.start + e.size > diskSize) {
      warnings.push({ code: 'W_PARTITION_PAST_END', message: `${vname}: bytes ${e.start}..${e.start + e.size - 1} run past the disk's end (${diskSize} bytes); only what lies within the disk is read` });
    }
    // Detection sees only the part of the volume that lies on the disk.
    const avail = Math.max(0, Math.min(e.size, diskSize - e.start));
    const filesystem = e.container ? { kind: 'none' as const } : await detectFilesystem((o, l) => read(e.start + o, l), avail);
    const v: Volume = { name: vname, index: e.index, start: e.start, size: e.size, type: e.type, filesystem };
    if (e.partUuid) v.partUuid = e.partUuid;
    if (e.label) v.label = e.label;
    if (e.bootable) v.bootable = true;
    volumes.push(v);
  }
  return volumes;
}
