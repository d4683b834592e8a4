/**
 * The MBR partition table: four primary records and, behind an extended partition, a linked list
 * of EBRs each describing one logical partition (UEFI 2.10 §5.2.1; the EBR rules as Linux
 * block/partitions/msdos.c and util-linux libfdisk read them).
 *
 * EBR addressing, the rule every implementation must get right:
 *   - the logical partition's StartingLBA is relative to the EBR that describes it;
 *   - the next-EBR link's StartingLBA is relative to the start of the (outermost) extended partition.
 *
 * The EBR chain is disk-controlled, so it is bounded (MAX_EBR_CHAIN) and checked for loops. A bad
 * link ends the chain with a warning and keeps the partitions read so far: a damaged logical chain
 * should not hide the primaries, nor the logicals before the damage.
 */
import { checkWithin, safeMul } from '../util/bounded.js';
import { MBR, MBR_EXTENDED_TYPES, MBR_PARTITION_RECORD, MBR_SIGNATURE } from './structs.js';
import { mbrTypeId, mbrTypeName } from './names.js';
import type { ReadAt, VolumeWarning } from './types.js';

/** More logical partitions than any real disk has (Linux's DISK_MAX_PARTS is 256; libfdisk stops far earlier). */
export const MAX_EBR_CHAIN = 128;

export interface MbrPartitionRecord {
  /** Slot 0..3 in its sector. */
  slot: number;
  BootIndicator: number;
  OSType: number;
  StartingLBA: number;
  SizeInLBA: number;
}

export interface MbrSector {
  /** Bytes 510-511 are 0x55 0xAA. */
  signatureValid: boolean;
  /** Every BootIndicator is 0x00 or 0x80 (anything else is not a partition table: blkid's rule). */
  bootIndicatorsValid: boolean;
  UniqueMBRDiskSignature: number;
  records: MbrPartitionRecord[];
}

/** A partition as the table states it, before filesystem detection. */
export interface TableEntry {
  index: number;
  start: number;
  size: number;
  type: { id: string; name: string };
  bootable?: boolean;
  partUuid?: string;
  label?: string;
  /** An extended partition: a container of EBRs, not a filesystem. */
  container?: boolean;
}

/** Decodes the first 512 bytes of an MBR or EBR sector. */
export function parseMbrSector(sector: Buffer): MbrSector {
  checkWithin('MBR', 0, MBR.SIZE, sector.length);
  const records: MbrPartitionRecord[] = [];
  let bootIndicatorsValid = true;
  for (let slot = 0; slot < MBR.PartitionRecordCount; slot++) {
    const at = MBR.PartitionRecord + slot * MBR_PARTITION_RECORD.SIZE;
    const BootIndicator = sector.readUInt8(at + MBR_PARTITION_RECORD.BootIndicator);
    if (BootIndicator !== 0x00 && BootIndicator !== 0x80) bootIndicatorsValid = false;
    records.push({
      slot,
      BootIndicator,
      OSType: sector.readUInt8(at + MBR_PARTITION_RECORD.OSType),
      StartingLBA: sector.readUInt32LE(at + MBR_PARTITION_RECORD.StartingLBA),
      SizeInLBA: sector.readUInt32LE(at + MBR_PARTITION_RECORD.SizeInLBA),
    });
  }
  return {
    signatureValid: sector.readUInt16LE(MBR.Signature) === MBR_SIGNATURE,
    bootIndicatorsValid,
    UniqueMBRDiskSignature: sector.readUInt32LE(MBR.UniqueMBRDiskSignature),
    records,
  };
}

const isUsed = (r: MbrPartitionRecord): boolean => r.OSType !== 0 && r.SizeInLBA !== 0;
const isExtended = (r: MbrPartitionRecord): boolean => MBR_EXTENDED_TYPES.has(r.OSType);

function entryOf(index: number, startLba: number, r: MbrPartitionRecord, sectorSize: number): TableEntry {
  const e: TableEntry = {
    index,
    start: safeMul(startLba, sectorSize, 'MBR_PARTITION_RECORD', 'StartingLBA'),
    size: safeMul(r.SizeInLBA, sectorSize, 'MBR_PARTITION_RECORD', 'SizeInLBA'),
    type: { id: mbrTypeId(r.OSType), name: mbrTypeName(r.OSType) },
  };
  if (r.BootIndicator === 0x80) e.bootable = true;
  if (isExtended(r)) e.container = true;
  return e;
}

/**
 * The partitions of an MBR disk: primaries as p1-p4 (by slot), the extended partition itself (as
 * fdisk lists it), and logical partitions p5 onwards in chain order (Linux numbering).
 */
export async function readMbr(mbr: MbrSector, read: ReadAt, diskSize: number, sectorSize: number, warnings: VolumeWarning[]): Promise<TableEntry[]> {
  const entries: TableEntry[] = [];
  let extended: MbrPartitionRecord | undefined;
  for (const r of mbr.records) {
    if (!isUsed(r)) continue;
    entries.push(entryOf(r.slot + 1, r.StartingLBA, r, sectorSize));
    if (isExtended(r)) {
      if (extended) warnings.push({ code: 'W_MBR_MULTIPLE_EXTENDED', message: `p${r.slot + 1} is a second extended partition; only p${extended.slot + 1}'s logical partitions are read` });
      else extended = r;
    }
  }
  if (extended) entries.push(...(await readLogicals(extended, read, diskSize, sectorSize, warnings)));
  return entries;
}

async function readLogicals(extended: MbrPartitionRecord, read: ReadAt, diskSize: number, sectorSize: number, warnings: VolumeWarning[]): Promise<TableEntry[]> {
  const logicals: TableEntry[] = [];
  const extStart = extended.StartingLBA;
  const extEnd = extStart + extended.SizeInLBA; // exclusive, in sectors; u32 + u32 stays exact
  const visited = new Set<number>();
  let ebrLba = extStart;
  let number = 5;
  for (let hop = 0; ; hop++) {
    if (hop >= MAX_EBR_CHAIN) {
      warnings.push({ code: 'W_MBR_EBR_CHAIN_LIMIT', message: `the logical partition chain is longer than ${MAX_EBR_CHAIN} EBRs; the rest is ignored` });
      break;
    }
    if (visited.has(ebrLba)) {
      warnings.push({ code: 'W_MBR_EBR_LOOP', message: `the EBR at sector ${ebrLba} is linked twice (a loop); the logical chain stops there` });
      break;
    }
    visited.add(ebrLba);
    const offset = ebrLba * sectorSize;
    if (ebrLba < extStart || ebrLba >= extEnd || offset + MBR.SIZE > diskSize) {
      warnings.push({ code: 'W_MBR_EBR_OUTSIDE', message: `the EBR at sector ${ebrLba} lies outside the extended partition (sectors ${extStart}..${extEnd - 1}) or the disk; the logical chain stops there` });
      break;
    }
    const ebr = parseMbrSector(await read(offset, MBR.SIZE));
    if (!ebr.signatureValid) {
      // An extended partition with no logicals yet has a zeroed first EBR: nothing to warn about.
      if (hop > 0 || ebr.records.some(isUsed)) warnings.push({ code: 'W_MBR_EBR_SIGNATURE', message: `the EBR at sector ${ebrLba} lacks the 0x55AA signature; the logical chain stops there` });
      break;
    }
    // libfdisk's reading: the first data record is the logical partition, the first extended record the link.
    const data = ebr.records.find((r) => isUsed(r) && !isExtended(r));
    const link = ebr.records.find((r) => isUsed(r) && isExtended(r));
    const extra = ebr.records.filter((r) => isUsed(r) && r !== data && r !== link).length;
    if (extra > 0) warnings.push({ code: 'W_MBR_EBR_EXTRA', message: `the EBR at sector ${ebrLba} holds ${extra} more record(s) than a logical partition and a link; they are ignored` });
    if (data) logicals.push(entryOf(number++, ebrLba + data.StartingLBA, data, sectorSize));
    if (!link) break;
    ebrLba = extStart + link.StartingLBA;
  }
  return logicals;
}
