/**
 * The GUID Partition Table (UEFI 2.10 §5.3). A primary header at LBA 1 and a backup at the last
 * LBA each describe an array of partition entries, both protected by CRC32. We validate as the
 * spec's §5.3.2 list says (signature, header CRC with the CRC field zeroed, MyLBA, entry array
 * CRC) and, when the primary or its array is damaged, read the backup with W_GPT_BACKUP_USED.
 *
 * When both are unusable we throw E_GPT_CORRUPT (naming both failures) rather than falling back
 * to the protective MBR's single 0xEE partition: a disk that says "I am GPT" but whose GPT we
 * cannot read must not look like a disk with nothing on it.
 */
import { crc32 } from 'node:zlib';
import { CorruptStructureError, SnapferryError } from '../util/errors.js';
import { checkBound, checkWithin, expectField, readU64, safeMul } from '../util/bounded.js';
import { GPT_HEADER, GPT_PARTITION_ENTRY, GPT_SIGNATURE } from './structs.js';
import { gptTypeName } from './names.js';
import type { TableEntry } from './mbr.js';
import type { ReadAt, VolumeWarning } from './types.js';

/** The spec's minimum array is 16 KiB (128 x 128 bytes); we accept eight times as many entries. */
export const MAX_GPT_ENTRIES = 1024;
/** 128 x 2^n bytes; no implementation uses more than 128, we allow up to 1 KiB. */
export const MAX_GPT_ENTRY_SIZE = 1024;

export interface GptHeader {
  Revision: number;
  HeaderSize: number;
  MyLBA: number;
  AlternateLBA: number;
  FirstUsableLBA: number;
  LastUsableLBA: number;
  DiskGUID: string;
  PartitionEntryLBA: number;
  NumberOfPartitionEntries: number;
  SizeOfPartitionEntry: number;
  PartitionEntryArrayCRC32: number;
}

export interface GptTable {
  header: GptHeader;
  entries: TableEntry[];
}

/** EFI_GUID's textual form: the first three fields little-endian, the last eight bytes in order; lowercase. */
export function formatGuid(b: Buffer, at = 0): string {
  const h = (s: number, e: number): string => b.toString('hex', at + s, at + e);
  const le = (s: number, e: number): string => Buffer.from(b.subarray(at + s, at + e)).reverse().toString('hex');
  return `${le(0, 4)}-${le(4, 6)}-${le(6, 8)}-${h(8, 10)}-${h(10, 16)}`;
}

/** Parses and validates a GPT header read from `lba` (one logical block). Throws typed errors only. */
export function parseGptHeader(block: Buffer, lba: number, sectorSize: number, diskSectors: number): GptHeader {
  const S = 'GPT_HEADER';
  const data = { lba };
  checkWithin(S, 0, GPT_HEADER.MIN_SIZE, block.length, data);
  expectField(block.toString('latin1', GPT_HEADER.Signature, GPT_HEADER.Signature + 8) === GPT_SIGNATURE, 'E_GPT_SIGNATURE', S, 'Signature', `no "EFI PART" at LBA ${lba}`, data);
  const HeaderSize = block.readUInt32LE(GPT_HEADER.HeaderSize);
  expectField(HeaderSize >= GPT_HEADER.MIN_SIZE, 'E_GPT_HEADER', S, 'HeaderSize', `${HeaderSize} is below ${GPT_HEADER.MIN_SIZE}`, data);
  checkBound(S, 'HeaderSize', HeaderSize, Math.min(sectorSize, block.length), data);
  const stored = block.readUInt32LE(GPT_HEADER.HeaderCRC32);
  const copy = Buffer.from(block.subarray(0, HeaderSize));
  copy.writeUInt32LE(0, GPT_HEADER.HeaderCRC32);
  const computed = crc32(copy) >>> 0;
  expectField(computed === stored, 'E_GPT_CRC', S, 'HeaderCRC32', `stored 0x${stored.toString(16)} != computed 0x${computed.toString(16)}`, data);
  const h: GptHeader = {
    Revision: block.readUInt32LE(GPT_HEADER.Revision),
    HeaderSize,
    MyLBA: readU64(block, GPT_HEADER.MyLBA, S, 'MyLBA'),
    AlternateLBA: readU64(block, GPT_HEADER.AlternateLBA, S, 'AlternateLBA'),
    FirstUsableLBA: readU64(block, GPT_HEADER.FirstUsableLBA, S, 'FirstUsableLBA'),
    LastUsableLBA: readU64(block, GPT_HEADER.LastUsableLBA, S, 'LastUsableLBA'),
    DiskGUID: formatGuid(block, GPT_HEADER.DiskGUID),
    PartitionEntryLBA: readU64(block, GPT_HEADER.PartitionEntryLBA, S, 'PartitionEntryLBA'),
    NumberOfPartitionEntries: block.readUInt32LE(GPT_HEADER.NumberOfPartitionEntries),
    SizeOfPartitionEntry: block.readUInt32LE(GPT_HEADER.SizeOfPartitionEntry),
    PartitionEntryArrayCRC32: block.readUInt32LE(GPT_HEADER.PartitionEntryArrayCRC32),
  };
  expectField(h.MyLBA === lba, 'E_GPT_HEADER', S, 'MyLBA', `${h.MyLBA} but the header was read from LBA ${lba}`, data);
  checkBound(S, 'NumberOfPartitionEntries', h.NumberOfPartitionEntries, MAX_GPT_ENTRIES, data);
  checkBound(S, 'SizeOfPartitionEntry', h.SizeOfPartitionEntry, MAX_GPT_ENTRY_SIZE, data);
  const n = h.SizeOfPartitionEntry / GPT_PARTITION_ENTRY.MIN_SIZE;
  expectField(Number.isInteger(n) && n >= 1 && (n & (n - 1)) === 0, 'E_GPT_HEADER', S, 'SizeOfPartitionEntry', `${h.SizeOfPartitionEntry} is not 128 x 2^n`, data);
  expectField(h.FirstUsableLBA <= h.LastUsableLBA + 1 && h.LastUsableLBA < diskSectors, 'E_GPT_HEADER', S, 'LastUsableLBA', `usable range ${h.FirstUsableLBA}..${h.LastUsableLBA} is not within the disk's ${diskSectors} sectors`, data);
  return h;
}

/** Validates the entry array's CRC and decodes its used entries (numbered by slot: entry 0 is p1). */
export function parseGptEntries(array: Buffer, h: GptHeader, sectorSize: number, warnings: VolumeWarning[]): TableEntry[] {
  const S = 'GPT_PARTITION_ENTRY';
  const bytes = h.NumberOfPartitionEntries * h.SizeOfPartitionEntry; // both bounded: <= 1 MiB
  checkWithin('GPT partition entry array', 0, bytes, array.length);
  const computed = crc32(array.subarray(0, bytes)) >>> 0;
  expectField(computed === h.PartitionEntryArrayCRC32, 'E_GPT_CRC', 'GPT_HEADER', 'PartitionEntryArrayCRC32', `stored 0x${h.PartitionEntryArrayCRC32.toString(16)} != computed 0x${computed.toString(16)}`, { lba: h.PartitionEntryLBA });
  const entries: TableEntry[] = [];
  for (let i = 0; i < h.NumberOfPartitionEntries; i++) {
    const at = i * h.SizeOfPartitionEntry;
    const typeBytes = array.subarray(at + GPT_PARTITION_ENTRY.PartitionTypeGUID, at + GPT_PARTITION_ENTRY.PartitionTypeGUID + 16);
    if (typeBytes.every((b) => b === 0)) continue; // unused entry
    const name = `p${i + 1}`;
    const start = readU64(array, at + GPT_PARTITION_ENTRY.StartingLBA, S, 'StartingLBA');
    const end = readU64(array, at + GPT_PARTITION_ENTRY.EndingLBA, S, 'EndingLBA');
    if (end < start) {
      warnings.push({ code: 'W_GPT_ENTRY_INVALID', message: `${name}: EndingLBA ${end} is before StartingLBA ${start}; the entry is ignored` });
      continue;
    }
    if (start < h.FirstUsableLBA || end > h.LastUsableLBA) {
      warnings.push({ code: 'W_GPT_ENTRY_OUTSIDE_USABLE', message: `${name}: sectors ${start}..${end} are outside the usable range ${h.FirstUsableLBA}..${h.LastUsableLBA}` });
    }
    const type = formatGuid(array, at + GPT_PARTITION_ENTRY.PartitionTypeGUID);
    const nameAt = at + GPT_PARTITION_ENTRY.PartitionName;
    // 36 UTF-16LE code units, NUL-terminated when shorter (an entry larger than 128 bytes keeps the same name field).
    let label = array.toString('utf16le', nameAt, nameAt + GPT_PARTITION_ENTRY.PartitionNameBytes);
    const nul = label.indexOf('\0');
    if (nul >= 0) label = label.slice(0, nul);
    const e: TableEntry = {
      index: i + 1,
      start: safeMul(start, sectorSize, S, 'StartingLBA'),
      size: safeMul(end - start + 1, sectorSize, S, 'EndingLBA'),
      type: { id: type, name: gptTypeName(type) },
      partUuid: formatGuid(array, at + GPT_PARTITION_ENTRY.UniquePartitionGUID),
    };
    if (label) e.label = label;
    entries.push(e);
  }
  return entries;
}

/** Reads the header at `lba` and its entry array. */
async function readGptAt(read: ReadAt, diskSize: number, sectorSize: number, lba: number, warnings: VolumeWarning[]): Promise<GptTable> {
  const diskSectors = Math.floor(diskSize / sectorSize);
  const offset = safeMul(lba, sectorSize, 'GPT_HEADER', 'lba');
  checkWithin('GPT header', offset, sectorSize, diskSize, { lba });
  const header = parseGptHeader(await read(offset, sectorSize), lba, sectorSize, diskSectors);
  const arrayBytes = header.NumberOfPartitionEntries * header.SizeOfPartitionEntry;
  const arrayOffset = safeMul(header.PartitionEntryLBA, sectorSize, 'GPT_HEADER', 'PartitionEntryLBA');
  checkWithin('GPT partition entry array', arrayOffset, arrayBytes, diskSize, { lba: header.PartitionEntryLBA });
  const array = arrayBytes > 0 ? await read(arrayOffset, arrayBytes) : Buffer.alloc(0);
  const entryWarnings: VolumeWarning[] = [];
  const entries = parseGptEntries(array, header, sectorSize, entryWarnings);
  warnings.push(...entryWarnings);
  return { header, entries };
}

function describe(err: unknown): { code: string; message: string } {
  if (err instanceof SnapferryError) return { code: err.code, message: err.message };
  throw err; // not a property of the image: a bug or an I/O failure, which must not be masked
}

/**
 * The GPT of a disk: the primary when it and its array are intact, else the backup (at the
 * primary's AlternateLBA when the primary header is readable, else at the disk's last LBA).
 */
export async function readGpt(read: ReadAt, diskSize: number, sectorSize: number, warnings: VolumeWarning[]): Promise<GptTable> {
  const lastLba = Math.floor(diskSize / sectorSize) - 1;
  let primaryFailure: { code: string; message: string };
  let alternate: number | undefined;
  try {
    const primary = await readGptAt(read, diskSize, sectorSize, 1, warnings);
    await checkBackupHeader(read, diskSize, sectorSize, primary.header.AlternateLBA, warnings);
    return primary;
  } catch (err) {
    primaryFailure = describe(err);
    // The header may be fine and only its array damaged: then it knows where the backup is.
    try {
      const offset = sectorSize;
      if (offset + sectorSize <= diskSize) alternate = parseGptHeader(await read(offset, sectorSize), 1, sectorSize, lastLba + 1).AlternateLBA;
    } catch (e) {
      describe(e);
    }
  }
  const candidates = [...new Set([alternate, lastLba].filter((l): l is number => l !== undefined && l > 1))];
  const failures: string[] = [];
  let backupFailure = { code: 'E_GPT_CORRUPT', message: 'no backup header location' };
  for (const lba of candidates) {
    try {
      const backupWarnings: VolumeWarning[] = [];
      const backup = await readGptAt(read, diskSize, sectorSize, lba, backupWarnings);
      warnings.push({ code: 'W_GPT_BACKUP_USED', message: `the primary GPT is unusable (${primaryFailure.code}: ${primaryFailure.message}); the backup at LBA ${lba} is used` });
      warnings.push(...backupWarnings);
      return backup;
    } catch (err) {
      backupFailure = describe(err);
      failures.push(`LBA ${lba}: ${backupFailure.code}: ${backupFailure.message}`);
    }
  }
  throw new CorruptStructureError('E_GPT_CORRUPT', `both GPT headers are unusable: primary: ${primaryFailure.code}: ${primaryFailure.message}; backup: ${failures.join('; ') || backupFailure.message}`, {
    structure: 'GPT_HEADER',
    primaryCode: primaryFailure.code,
    primaryMessage: primaryFailure.message,
    backupCode: backupFailure.code,
    backupMessage: backupFailure.message,
  });
}

/** A damaged backup does not stop us, but the next repair would need it: say so. */
async function checkBackupHeader(read: ReadAt, diskSize: number, sectorSize: number, lba: number, warnings: VolumeWarning[]): Promise<void> {
  const diskSectors = Math.floor(diskSize / sectorSize);
  try {
    const offset = safeMul(lba, sectorSize, 'GPT_HEADER', 'AlternateLBA');
    checkWithin('GPT backup header', offset, sectorSize, diskSize, { lba });
    parseGptHeader(await read(offset, sectorSize), lba, sectorSize, diskSectors);
  } catch (err) {
    const f = describe(err);
    warnings.push({ code: 'W_GPT_BACKUP_BAD', message: `the backup GPT header at LBA ${lba} is unusable (${f.code}: ${f.message}); the primary is used` });
  }
}
