/**
 * The VMDK text descriptor (VMware Virtual Disk Format 1.1, "The Descriptor File"): a header of
 * key=value lines (version, CID, parentCID, createType, parentFileNameHint), the extent lines
 *   ACCESS SECTORS TYPE "FILENAME" [OFFSET]
 * and the disk database (ddb.* keys). It is a standalone file (monolithicFlat, twoGbMax*, vmfs,
 * vmfsSparse, seSparse, ESX snapshots) or embedded in a hosted sparse extent (monolithicSparse,
 * streamOptimized), where it is NUL-padded to whole sectors.
 *
 * The text is attacker-controlled: its size, line count, extent count, sector counts and names are
 * bounded, and a line we cannot read is a typed error naming its number. Keys we do not know are
 * kept (VMware adds new ones), never fatal.
 */
import { BoundExceededError, CorruptStructureError, UnsupportedError } from '../../util/errors.js';
import { MiB } from '../../util/bounded.js';
import { SECTOR_SIZE } from '../types.js';

/** Descriptor text larger than this is not a descriptor (VMware's are well under 4 KiB). */
export const MAX_DESCRIPTOR_BYTES = 1 * MiB;
export const MAX_DESCRIPTOR_LINES = 65_536;
/** Extents per descriptor: a 62 TiB twoGbMaxExtent disk has ~32,000; 4096 covers 8 TiB of 2 GiB extents. */
export const MAX_EXTENTS = 4096;
/** Longest quoted file name (PATH_MAX). */
export const MAX_FILE_NAME = 4096;
/** Sector counts and offsets must stay exact as byte counts (sectors * 512 <= 2^53 - 1). */
export const MAX_SECTORS = Math.floor(Number.MAX_SAFE_INTEGER / SECTOR_SIZE);
/** parentCID of a disk with no parent (spec: "ffffffff ... the disk has no parent"). */
export const NO_PARENT_CID = 0xffffffff;

export type ExtentAccess = 'RW' | 'RDONLY' | 'NOACCESS';
export const EXTENT_TYPES = ['FLAT', 'SPARSE', 'ZERO', 'VMFS', 'VMFSSPARSE', 'VMFSRDM', 'VMFSRAW', 'SESPARSE'] as const;
export type ExtentType = (typeof EXTENT_TYPES)[number];

/** Extent types whose file is a plain run of sectors (read at OFFSET); only these take an offset. */
const FLAT_TYPES: ReadonlySet<ExtentType> = new Set<ExtentType>(['FLAT', 'VMFS', 'VMFSRDM', 'VMFSRAW']);

/** One extent line of the descriptor ("Extent Descriptions" in the spec). */
export interface ExtentDescriptor {
  access: ExtentAccess;
  /** Size of the extent in sectors. */
  sectors: number;
  type: ExtentType;
  /** The quoted FILENAME, relative to the descriptor's directory; null for ZERO. */
  fileName: string | null;
  /** Start of the extent's data in its file, in sectors (FLAT-like types; 0 otherwise). */
  offset: number;
  /** 1-based line of the descriptor, for messages. */
  line: number;
}

export interface VmdkDescriptor {
  /** The file the descriptor came from (standalone or the sparse file embedding it). */
  path: string;
  version: number | null;
  encoding: string | null;
  /** CID: content ID, 32 bits; rewritten by VMware and qemu on the first write after open. */
  cid: number | null;
  /** parentCID: the parent's CID when this delta was made; NO_PARENT_CID for a base disk. */
  parentCid: number;
  createType: string;
  parentFileNameHint: string | null;
  extents: ExtentDescriptor[];
  /** The disk database: ddb.adapterType, ddb.geometry.*, ddb.uuid ... (unquoted values). */
  ddb: Map<string, string>;
  /** Every other header key, unquoted (isNativeSnapshot, changeTrackPath, unknown keys ...). */
  entries: Map<string, string>;
  /** Capacity: the sum of the extents' sectors. */
  totalSectors: number;
}

/** A CID as `inspect` prints it: 8 lowercase hex digits (qemu writes them unpadded). */
export function formatCid(cid: number): string {
  return cid.toString(16).padStart(8, '0');
}

/** True when the start of a file looks like a text descriptor (bounded to its first KiB). */
export function looksLikeDescriptor(head: Buffer): boolean {
  const text = head.subarray(0, 1024).toString('latin1');
  return text.startsWith('# Disk DescriptorFile') || text.includes('createType=');
}

function corrupt(path: string, line: number, why: string, text?: string): CorruptStructureError {
  return new CorruptStructureError('E_VMDK_DESCRIPTOR', `${path}: descriptor line ${line}: ${why}`, {
    path,
    structure: 'VmdkDescriptor',
    line,
    text: text === undefined ? undefined : text.slice(0, 200),
  });
}

// Digit runs are capped at 30 (any longer is malformed) so a number is never parsed from megabytes.
const EXTENT_LINE = /^(RW|RDONLY|NOACCESS)\s+(\d{1,30})\s+([A-Za-z0-9]{1,32})(?:\s+"([^"]*)")?(?:\s+(\d{1,30}))?\s*$/;
const ACCESS_START = /^(RW|RDONLY|NOACCESS)\s/;
const KEY_VALUE = /^([A-Za-z0-9_.:\-]+)\s*=\s*(.*)$/;

function unquote(v: string): string {
  const s = v.trim();
  return s.length >= 2 && s.startsWith('"') && s.endsWith('"') ? s.slice(1, -1) : s;
}

function parseSectors(path: string, line: number, field: string, digits: string): number {
  // The regex admits at most 30 digits; past 2^53 / 512 the byte offset would not be exact.
  const n = Number(digits);
  if (!Number.isSafeInteger(n) || n > MAX_SECTORS) throw new BoundExceededError('ExtentDescriptor', field, BigInt(digits), MAX_SECTORS, { path, line });
  return n;
}

function parseCid(path: string, line: number, key: string, value: string): number {
  if (!/^[0-9a-fA-F]{1,8}$/.test(value)) throw corrupt(path, line, `${key} is not a 32-bit hex number`, value);
  return parseInt(value, 16);
}

/**
 * Parses descriptor text. `path` names the file in errors and is kept in the result; extent file
 * names stay as written (resolve them against dirname(path)).
 */
export function parseDescriptor(text: string, path: string): VmdkDescriptor {
  if (text.length > MAX_DESCRIPTOR_BYTES) throw new BoundExceededError('VmdkDescriptor', 'size', text.length, MAX_DESCRIPTOR_BYTES, { path });
  // An embedded descriptor is NUL-padded to its sectors; the text ends at the first NUL.
  const nul = text.indexOf('\0');
  const body = nul >= 0 ? text.slice(0, nul) : text;
  const lines = body.split('\n');
  if (lines.length > MAX_DESCRIPTOR_LINES) throw new BoundExceededError('VmdkDescriptor', 'lines', lines.length, MAX_DESCRIPTOR_LINES, { path });

  const desc: VmdkDescriptor = {
    path,
    version: null,
    encoding: null,
    cid: null,
    parentCid: NO_PARENT_CID,
    createType: '',
    parentFileNameHint: null,
    extents: [],
    ddb: new Map(),
    entries: new Map(),
    totalSectors: 0,
  };
  let sawCreateType = false;

  for (let i = 0; i < lines.length; i++) {
    const lineNo = i + 1;
    const line = lines[i]!.trim(); // also drops the \r of CRLF files
    if (line === '' || line.startsWith('#')) continue;

    if (ACCESS_START.test(line)) {
      const m = EXTENT_LINE.exec(line);
      if (!m) throw corrupt(path, lineNo, 'malformed extent line (want ACCESS SECTORS TYPE "FILENAME" [OFFSET])', line);
      const access = m[1] as ExtentAccess;
      const type = m[3]!.toUpperCase();
      if (!(EXTENT_TYPES as readonly string[]).includes(type)) {
        throw new UnsupportedError('E_VMDK_EXTENT_TYPE', `${path}: descriptor line ${lineNo}: unknown extent type ${m[3]}`, { path, line: lineNo, type: m[3]!.slice(0, 32) });
      }
      const extentType = type as ExtentType;
      const fileName = m[4] ?? null;
      if (fileName !== null && fileName.length > MAX_FILE_NAME) {
        throw new BoundExceededError('ExtentDescriptor', 'fileName.length', fileName.length, MAX_FILE_NAME, { path, line: lineNo });
      }
      if (extentType !== 'ZERO' && (fileName === null || fileName === '')) throw corrupt(path, lineNo, `a ${extentType} extent needs a quoted file name`, line);
      if (m[5] !== undefined && !FLAT_TYPES.has(extentType)) throw corrupt(path, lineNo, `a ${extentType} extent takes no offset`, line);
      if (desc.extents.length >= MAX_EXTENTS) throw new BoundExceededError('VmdkDescriptor', 'extents', desc.extents.length + 1, MAX_EXTENTS, { path, line: lineNo });
      const sectors = parseSectors(path, lineNo, 'sectors', m[2]!);
      const offset = m[5] === undefined ? 0 : parseSectors(path, lineNo, 'offset', m[5]);
      if (offset + sectors > MAX_SECTORS) throw new BoundExceededError('ExtentDescriptor', 'offset+sectors', offset + sectors, MAX_SECTORS, { path, line: lineNo });
      desc.totalSectors += sectors;
      if (desc.totalSectors > MAX_SECTORS) throw new BoundExceededError('VmdkDescriptor', 'totalSectors', desc.totalSectors, MAX_SECTORS, { path, line: lineNo });
      desc.extents.push({ access, sectors, type: extentType, fileName: extentType === 'ZERO' ? null : fileName, offset, line: lineNo });
      continue;
    }

    const kv = KEY_VALUE.exec(line);
    if (!kv) throw corrupt(path, lineNo, 'neither a key=value pair nor an extent line', line);
    const key = kv[1]!;
    const value = unquote(kv[2]!);
    if (value.length > MAX_FILE_NAME) throw new BoundExceededError('VmdkDescriptor', `${key.slice(0, 64)}.length`, value.length, MAX_FILE_NAME, { path, line: lineNo });
    switch (key) {
      case 'version': {
        if (!/^\d{1,9}$/.test(value)) throw corrupt(path, lineNo, 'version is not a number', value);
        desc.version = Number(value);
        break;
      }
      case 'encoding':
        desc.encoding = value;
        break;
      case 'CID':
        desc.cid = parseCid(path, lineNo, key, value);
        break;
      case 'parentCID':
        desc.parentCid = parseCid(path, lineNo, key, value);
        break;
      case 'createType':
        desc.createType = value;
        sawCreateType = true;
        break;
      case 'parentFileNameHint':
        desc.parentFileNameHint = value === '' ? null : value;
        break;
      default:
        if (key.startsWith('ddb.')) desc.ddb.set(key, value);
        else desc.entries.set(key, value);
    }
  }

  if (!sawCreateType || desc.createType === '') {
    throw new CorruptStructureError('E_VMDK_DESCRIPTOR', `${path}: descriptor has no createType`, { path, structure: 'VmdkDescriptor', field: 'createType' });
  }
  return desc;
}
