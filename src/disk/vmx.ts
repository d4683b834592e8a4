/**
 * A VM's .vmx as input: its displayName and its present disks, so a user can name a VM instead of
 * its files. A .vmx is `key = "value"` lines; keys are case-insensitive; values are quoted, and a
 * byte that cannot appear in a value is written `|XX` (hex; `|22` is a quote, `|7C` the bar itself).
 *
 * A disk is `<bus><controller>:<unit>.fileName` (scsi, sata, nvme, ide) whose device and controller
 * are not `present = "FALSE"` and whose deviceType is not a CD-ROM (cdrom-image, atapi-cdrom,
 * cdrom-raw) nor a floppy, and whose file is not an .iso. In a snapshotted VM the fileName already
 * names the top of the chain (the -000001.vmdk), so it is what openDisk takes.
 */
import { isAbsolute, join, dirname } from 'node:path';
import { openReadOnly, type ByteSource } from './file.js';
import { CorruptStructureError } from '../util/errors.js';
import { MiB, checkBound } from '../util/bounded.js';

export const MAX_VMX_BYTES = 4 * MiB;
export const MAX_VMX_KEYS = 65_536;

export interface VmxDisk {
  /** The device, as the .vmx names it: scsi0:1, sata0:0, nvme0:0, ide0:0. */
  id: string;
  /** The fileName value as written (decoded). */
  fileName: string;
  /** fileName resolved against the .vmx's directory (absolute names kept). */
  path: string;
}

export interface VmxInfo {
  path: string;
  displayName: string | null;
  disks: VmxDisk[];
  /** Every key (lowercased) and its decoded value. */
  entries: Map<string, string>;
}

export interface ReadVmxOptions {
  opener?: (path: string) => Promise<ByteSource>;
}

const DISK_KEY = /^(scsi|sata|nvme|ide)(\d{1,3}):(\d{1,3})\.filename$/;
const LINE = /^([^=\s]+)\s*=\s*(.*)$/;
const BUS_ORDER = ['scsi', 'sata', 'nvme', 'ide'];

/** Decodes `|XX` escapes byte-wise, so escaped UTF-8 sequences come out as their characters. */
export function decodeVmxValue(raw: string): string {
  if (!raw.includes('|')) return raw;
  const src = Buffer.from(raw, 'utf8');
  const out = Buffer.alloc(src.length);
  let n = 0;
  for (let i = 0; i < src.length; i++) {
    const c = src[i]!;
    if (c === 0x7c && i + 2 < src.length && isHex(src[i + 1]!) && isHex(src[i + 2]!)) {
      out[n++] = parseInt(String.fromCharCode(src[i + 1]!, src[i + 2]!), 16);
      i += 2;
    } else {
      out[n++] = c;
    }
  }
  return out.subarray(0, n).toString('utf8');
}

function isHex(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66);
}

/** Parses .vmx text; `path` names the file in errors and anchors relative disk names. */
export function parseVmx(text: string, path: string): VmxInfo {
  checkBound('Vmx', 'size', text.length, MAX_VMX_BYTES, { path });
  const entries = new Map<string, string>();
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === '' || line.startsWith('#')) continue;
    const m = LINE.exec(line);
    if (!m) {
      throw new CorruptStructureError('E_VMX_SYNTAX', `${path}: line ${i + 1} is not key = "value"`, { path, line: i + 1, text: line.slice(0, 200) });
    }
    let value = m[2]!.trim();
    if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1);
    else if (value.startsWith('"')) {
      throw new CorruptStructureError('E_VMX_SYNTAX', `${path}: line ${i + 1} has an unterminated quoted value`, { path, line: i + 1, text: line.slice(0, 200) });
    }
    const key = m[1]!.toLowerCase();
    if (!entries.has(key)) checkBound('Vmx', 'keys', entries.size + 1, MAX_VMX_KEYS, { path, line: i + 1 });
    entries.set(key, decodeVmxValue(value));
  }

  const disks: (VmxDisk & { order: number[] })[] = [];
  for (const [key, fileName] of entries) {
    const m = DISK_KEY.exec(key);
    if (!m) continue;
    const bus = m[1]!;
    const controller = `${bus}${m[2]}`;
    const dev = `${controller}:${m[3]}`;
    if (isFalse(entries.get(`${dev}.present`)) || isFalse(entries.get(`${controller}.present`))) continue;
    const deviceType = (entries.get(`${dev}.devicetype`) ?? '').toLowerCase();
    if (deviceType.includes('cdrom') || deviceType.includes('floppy')) continue;
    if (fileName === '' || fileName.toLowerCase().endsWith('.iso')) continue;
    disks.push({
      id: dev,
      fileName,
      path: isAbsolute(fileName) ? fileName : join(dirname(path), fileName),
      order: [BUS_ORDER.indexOf(bus), Number(m[2]), Number(m[3])],
    });
  }
  disks.sort((a, b) => a.order[0]! - b.order[0]! || a.order[1]! - b.order[1]! || a.order[2]! - b.order[2]!);
  return {
    path,
    displayName: entries.get('displayname') ?? null,
    disks: disks.map(({ id, fileName, path: p }) => ({ id, fileName, path: p })),
    entries,
  };
}

function isFalse(v: string | undefined): boolean {
  return v !== undefined && v.trim().toLowerCase() === 'false';
}

/** Reads a .vmx (bounded to MAX_VMX_BYTES) and returns its name and present disks. */
export async function readVmx(path: string, opts: ReadVmxOptions = {}): Promise<VmxInfo> {
  const source = await (opts.opener ?? openReadOnly)(path);
  try {
    checkBound('Vmx', 'size', source.size, MAX_VMX_BYTES, { path });
    const bytes = await source.read(0, source.size);
    return parseVmx(bytes.toString('utf8'), path);
  } finally {
    await source.close();
  }
}
