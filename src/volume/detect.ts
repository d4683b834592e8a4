/**
 * Filesystem detection by signature, the way blkid's superblock probers do it: look for each
 * format's magic where its specification puts it, then read its label and UUID. Detection never
 * fails a disk: a damaged label area costs the label, not the volume. Every size read here
 * (sector, cluster, MFT record sizes) is bounded before it is used to compute an offset.
 */
import { SnapferryError } from '../util/errors.js';
import { checkBound, expectField, readU64, safeMul, KiB, MiB } from '../util/bounded.js';
import {
  ATTR_RECORD_HEADER,
  BITLOCKER_SIGNATURE,
  BITLOCKER_SIGNATURE_OFFSET,
  EXFAT_BOOT_SECTOR,
  EXFAT_ENTRY_VOLUME_LABEL,
  EXFAT_NAME,
  EXFAT_VOLUME_LABEL_ENTRY,
  EXT2_FEATURE_RO_COMPAT_SUPP,
  EXT3_FEATURE_COMPAT_HAS_JOURNAL,
  EXT3_FEATURE_INCOMPAT_JOURNAL_DEV,
  EXT3_FEATURE_INCOMPAT_SUPP,
  EXT4_SUPER_BLOCK_OFFSET,
  EXT4_SUPER_MAGIC,
  FAT12_MAX_CLUSTERS,
  FAT16_MAX_CLUSTERS,
  FAT_BOOT_SECTOR,
  LVM2_LABEL_HEADER,
  LVM2_LABEL_ID,
  LVM2_LABEL_SCAN_SECTORS,
  LVM2_LABEL_TYPE,
  LVM2_PV_HEADER,
  MBR,
  MBR_SIGNATURE,
  MFT_RECORD,
  NTFS_AT_END,
  NTFS_AT_VOLUME_NAME,
  NTFS_BOOT_SECTOR,
  NTFS_OEM_ID,
  NTFS_VOLUME_RECORD,
  SWAP_HEADER,
  SWAP_MAGICS,
  SWAP_PAGE_SIZES,
  ext4_super_block,
} from './structs.js';
import type { FsDetection, ReadAt } from './types.js';

/** Bounds on sizes read from boot sectors (NTFS allows clusters up to 2 MiB, records up to 64 KiB in practice). */
const MAX_NTFS_CLUSTER = 2 * MiB;
const MAX_MFT_RECORD = 64 * KiB;
const MAX_EXFAT_CLUSTER = 32 * MiB; // exFAT spec §3.1.15: BytesPerSectorShift + SectorsPerClusterShift <= 25
/** The longest exFAT root-directory prefix scanned for the label entry (it is normally the 1st-3rd entry). */
const EXFAT_LABEL_SCAN = 64 * KiB;

/** Reads [offset, offset+length) of the volume, or null when that range is not inside it. */
type Probe = (offset: number, length: number) => Promise<Buffer | null>;

/**
 * What filesystem lies in a volume of `size` bytes read through `read` (offsets relative to the
 * volume). Reads outside [0, size) are never issued: a probe that would need them does not match.
 */
export async function detectFilesystem(read: ReadAt, size: number): Promise<FsDetection> {
  const probe = prober(read, size);
  const boot = await probe(0, 512);
  if (boot) {
    const oem = boot.toString('latin1', 3, 11);
    if (boot.toString('latin1', BITLOCKER_SIGNATURE_OFFSET, BITLOCKER_SIGNATURE_OFFSET + 8) === BITLOCKER_SIGNATURE) return { kind: 'bitlocker' };
    if (oem === NTFS_OEM_ID) return detectNtfs(boot, probe);
    if (oem === EXFAT_NAME) return detectExfat(boot, probe);
  }
  const lvm = await detectLvm2(probe);
  if (lvm) return lvm;
  const ext = await detectExt(probe);
  if (ext) return ext;
  const swap = await detectSwap(probe);
  if (swap) return swap;
  if (boot) {
    const fat = detectFat(boot);
    if (fat) return fat;
  }
  return { kind: 'unknown' };
}

function prober(read: ReadAt, size: number): Probe {
  return async (offset, length) => (offset >= 0 && length >= 0 && offset + length <= size ? read(offset, length) : null);
}

/** True when sector 0 holds a FAT, NTFS, exFAT or BitLocker boot sector (which also ends in 0x55AA, like an MBR). */
export function isBootSectorFilesystem(sector0: Buffer): boolean {
  if (sector0.length < 512) return false;
  const oem = sector0.toString('latin1', 3, 11);
  if (oem === NTFS_OEM_ID || oem === EXFAT_NAME || oem === BITLOCKER_SIGNATURE) return true;
  return detectFat(sector0) !== null;
}

function withOptional(kind: FsDetection['kind'], label: string | undefined, uuid: string | undefined): FsDetection {
  const out: FsDetection = { kind };
  if (label) out.label = label;
  if (uuid) out.uuid = uuid;
  return out;
}

/** 16 bytes in byte order as 8-4-4-4-12 lowercase (ext4 s_uuid, swap sws_uuid); undefined when all zero. */
export function formatUuidBytes(b: Buffer): string | undefined {
  if (b.every((x) => x === 0)) return undefined;
  const h = b.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}

/** A NUL-padded byte string (ext4 s_volume_name, sws_volume) as UTF-8 up to its first NUL. */
function cString(b: Buffer): string {
  const nul = b.indexOf(0);
  return b.toString('utf8', 0, nul < 0 ? b.length : nul);
}

/** A 32-bit volume serial as blkid prints FAT and exFAT ones: 'ABCD-1234'. */
function serial32(v: number): string {
  const h = v.toString(16).toUpperCase().padStart(8, '0');
  return `${h.slice(0, 4)}-${h.slice(4)}`;
}

// ---- NTFS ----------------------------------------------------------------------------------

async function detectNtfs(boot: Buffer, probe: Probe): Promise<FsDetection> {
  const serial = boot.readBigUInt64LE(NTFS_BOOT_SECTOR.VolumeSerialNumber);
  const uuid = serial === 0n ? undefined : serial.toString(16).toUpperCase().padStart(16, '0');
  let label: string | undefined;
  try {
    label = await ntfsLabel(boot, probe);
  } catch (err) {
    // A damaged $Volume loses the label, not the volume; only our typed errors are expected here.
    if (!(err instanceof SnapferryError)) throw err;
  }
  return withOptional('ntfs', label, uuid);
}

/**
 * The NTFS label: the $VOLUME_NAME attribute of MFT record 3 ($Volume). Throws typed errors
 * (E_BOUND, E_NTFS_*) on a damaged boot sector or record; detectFilesystem drops only the label then.
 */
export async function ntfsVolumeLabel(boot: Buffer, read: ReadAt, size: number): Promise<string | undefined> {
  return ntfsLabel(boot, prober(read, size));
}

async function ntfsLabel(boot: Buffer, probe: Probe): Promise<string | undefined> {
  const S = 'NTFS_BOOT_SECTOR';
  const bytesPerSector = boot.readUInt16LE(NTFS_BOOT_SECTOR.BytesPerSector);
  expectField(bytesPerSector >= 256 && bytesPerSector <= 4096 && (bytesPerSector & (bytesPerSector - 1)) === 0, 'E_NTFS_BOOT', S, 'BytesPerSector', `${bytesPerSector} is not a power of two in 256..4096`);
  const spc = boot.readUInt8(NTFS_BOOT_SECTOR.SectorsPerCluster);
  // Values above 0x80 encode 2^(256 - value) sectors (large clusters, Windows 10 1903+).
  const sectorsPerCluster = spc > 0x80 ? 2 ** (256 - spc) : spc;
  expectField(sectorsPerCluster > 0, 'E_NTFS_BOOT', S, 'SectorsPerCluster', 'is zero');
  const clusterSize = bytesPerSector * sectorsPerCluster;
  checkBound(S, 'clusterSize', clusterSize, MAX_NTFS_CLUSTER);
  const cpr = boot.readInt8(NTFS_BOOT_SECTOR.ClustersPerMftRecord);
  const recordSize = cpr < 0 ? 2 ** -cpr : cpr * clusterSize;
  checkBound(S, 'ClustersPerMftRecord', recordSize, MAX_MFT_RECORD);
  expectField(recordSize >= 512, 'E_NTFS_BOOT', S, 'ClustersPerMftRecord', `record size ${recordSize} is below 512`);
  const mftLcn = readU64(boot, NTFS_BOOT_SECTOR.MftLcn, S, 'MftLcn');
  const mftOffset = safeMul(mftLcn, clusterSize, S, 'MftLcn');
  const recOffset = mftOffset + NTFS_VOLUME_RECORD * recordSize;
  const rec = await probe(recOffset, recordSize);
  if (!rec || rec.toString('latin1', 0, 4) !== 'FILE') return undefined;
  applyFixups(rec);
  const R = 'MFT_RECORD';
  const used = Math.min(rec.readUInt32LE(MFT_RECORD.BytesInUse), recordSize);
  let pos = rec.readUInt16LE(MFT_RECORD.AttrsOffset);
  // Each attribute is at least 24 bytes long, so this walk ends within recordSize/24 steps.
  while (pos + 24 <= used) {
    const type = rec.readUInt32LE(pos + ATTR_RECORD_HEADER.Type);
    if (type === NTFS_AT_END) break;
    const length = rec.readUInt32LE(pos + ATTR_RECORD_HEADER.Length);
    expectField(length >= 24 && pos + length <= used, 'E_NTFS_ATTR', 'ATTR_RECORD_HEADER', 'Length', `${length} at ${pos} overruns the record (${used} bytes in use)`, { record: NTFS_VOLUME_RECORD });
    if (type === NTFS_AT_VOLUME_NAME && rec.readUInt8(pos + ATTR_RECORD_HEADER.NonResident) === 0) {
      const vlen = rec.readUInt32LE(pos + ATTR_RECORD_HEADER.ValueLength);
      const voff = rec.readUInt16LE(pos + ATTR_RECORD_HEADER.ValueOffset);
      expectField(voff + vlen <= length, 'E_NTFS_ATTR', R, 'ValueLength', `${vlen} at ${voff} overruns the attribute (${length} bytes)`);
      return rec.toString('utf16le', pos + voff, pos + voff + (vlen & ~1)) || undefined;
    }
    pos += length;
  }
  return undefined;
}

/** NTFS multi-sector transfer protection: the last two bytes of every 512-byte stride are in the update sequence array. */
function applyFixups(rec: Buffer): void {
  const usaOffset = rec.readUInt16LE(MFT_RECORD.UsaOffset);
  const usaCount = rec.readUInt16LE(MFT_RECORD.UsaCount);
  expectField(usaCount >= 1 && (usaCount - 1) * 512 <= rec.length && usaOffset + usaCount * 2 <= rec.length, 'E_NTFS_FIXUP', 'MFT_RECORD', 'UsaCount', `${usaCount} entries at ${usaOffset} do not fit a ${rec.length}-byte record`);
  const check = rec.readUInt16LE(usaOffset);
  for (let i = 1; i < usaCount; i++) {
    const at = i * 512 - 2;
    expectField(rec.readUInt16LE(at) === check, 'E_NTFS_FIXUP', 'MFT_RECORD', 'UpdateSequence', `stride ${i} does not end in the update sequence number`);
    rec.writeUInt16LE(rec.readUInt16LE(usaOffset + 2 * i), at);
  }
}

// ---- exFAT ---------------------------------------------------------------------------------

async function detectExfat(boot: Buffer, probe: Probe): Promise<FsDetection> {
  const uuid = serial32(boot.readUInt32LE(EXFAT_BOOT_SECTOR.VolumeSerialNumber));
  let label: string | undefined;
  try {
    label = await exfatRootLabel(boot, probe);
  } catch (err) {
    if (!(err instanceof SnapferryError)) throw err;
  }
  return withOptional('exfat', label, uuid);
}

/** The exFAT label: the Volume Label entry (0x83) of the root directory's first cluster (exFAT spec §7.3). Throws typed errors. */
export async function exfatVolumeLabel(boot: Buffer, read: ReadAt, size: number): Promise<string | undefined> {
  return exfatRootLabel(boot, prober(read, size));
}

async function exfatRootLabel(boot: Buffer, probe: Probe): Promise<string | undefined> {
  const S = 'EXFAT_BOOT_SECTOR';
  const bps = boot.readUInt8(EXFAT_BOOT_SECTOR.BytesPerSectorShift);
  const spc = boot.readUInt8(EXFAT_BOOT_SECTOR.SectorsPerClusterShift);
  expectField(bps >= 9 && bps <= 12, 'E_EXFAT_BOOT', S, 'BytesPerSectorShift', `${bps} is outside 9..12`);
  checkBound(S, 'SectorsPerClusterShift', spc, 25 - bps);
  const sectorSize = 2 ** bps;
  const clusterSize = sectorSize * 2 ** spc;
  checkBound(S, 'clusterSize', clusterSize, MAX_EXFAT_CLUSTER);
  const heap = boot.readUInt32LE(EXFAT_BOOT_SECTOR.ClusterHeapOffset) * sectorSize;
  const root = boot.readUInt32LE(EXFAT_BOOT_SECTOR.FirstClusterOfRootDirectory);
  expectField(root >= 2, 'E_EXFAT_BOOT', S, 'FirstClusterOfRootDirectory', `${root} is below 2`);
  const at = heap + (root - 2) * clusterSize;
  const dir = await probe(at, Math.min(clusterSize, EXFAT_LABEL_SCAN));
  if (!dir) return undefined;
  for (let p = 0; p + EXFAT_VOLUME_LABEL_ENTRY.SIZE <= dir.length; p += EXFAT_VOLUME_LABEL_ENTRY.SIZE) {
    const type = dir[p]!;
    if (type === 0) break; // end of directory
    if (type !== EXFAT_ENTRY_VOLUME_LABEL) continue;
    const n = Math.min(dir[p + EXFAT_VOLUME_LABEL_ENTRY.CharacterCount]!, 11);
    const start = p + EXFAT_VOLUME_LABEL_ENTRY.VolumeLabel;
    return dir.toString('utf16le', start, start + 2 * n) || undefined;
  }
  return undefined;
}

// ---- LVM2 ----------------------------------------------------------------------------------

/** An LVM2 PV label lives in one of the first four sectors (LVM2 label.c: LABEL_SCAN_SECTORS). */
async function detectLvm2(probe: Probe): Promise<FsDetection | null> {
  const head = await probe(0, LVM2_LABEL_SCAN_SECTORS * 512);
  if (!head) return null;
  for (let s = 0; s < LVM2_LABEL_SCAN_SECTORS; s++) {
    const at = s * 512;
    if (head.toString('latin1', at + LVM2_LABEL_HEADER.id, at + LVM2_LABEL_HEADER.id + 8) !== LVM2_LABEL_ID) continue;
    if (head.toString('latin1', at + LVM2_LABEL_HEADER.type, at + LVM2_LABEL_HEADER.type + 8) !== LVM2_LABEL_TYPE) continue;
    const pvOff = head.readUInt32LE(at + LVM2_LABEL_HEADER.offset_xl);
    let uuid: string | undefined;
    if (pvOff + LVM2_PV_HEADER.ID_LEN <= 512) {
      const id = head.toString('latin1', at + pvOff, at + pvOff + LVM2_PV_HEADER.ID_LEN);
      // blkid prints the 32-character PV id in LVM's 6-4-4-4-4-4-6 grouping.
      if (/^[0-9A-Za-z!#]{32}$/.test(id)) {
        const cuts = [6, 4, 4, 4, 4, 4, 6];
        const parts: string[] = [];
        let i = 0;
        for (const c of cuts) parts.push(id.slice(i, (i += c)));
        uuid = parts.join('-');
      }
    }
    return withOptional('lvm2', undefined, uuid);
  }
  return null;
}

// ---- ext2/3/4 ------------------------------------------------------------------------------

async function detectExt(probe: Probe): Promise<FsDetection | null> {
  const sb = await probe(EXT4_SUPER_BLOCK_OFFSET, ext4_super_block.SIZE);
  if (!sb || sb.readUInt16LE(ext4_super_block.s_magic) !== EXT4_SUPER_MAGIC) return null;
  const compat = sb.readUInt32LE(ext4_super_block.s_feature_compat);
  const incompat = sb.readUInt32LE(ext4_super_block.s_feature_incompat);
  const roCompat = sb.readUInt32LE(ext4_super_block.s_feature_ro_compat);
  // An external journal device carries the magic too, but holds no files.
  if (incompat & EXT3_FEATURE_INCOMPAT_JOURNAL_DEV) return { kind: 'unknown' };
  // blkid's rule: any feature an ext3 driver does not know (extents, 64bit, flex_bg, metadata_csum ...) makes it ext4.
  const ext4 = (incompat & ~EXT3_FEATURE_INCOMPAT_SUPP) !== 0 || (roCompat & ~EXT2_FEATURE_RO_COMPAT_SUPP) !== 0;
  const kind = ext4 ? 'ext4' : compat & EXT3_FEATURE_COMPAT_HAS_JOURNAL ? 'ext3' : 'ext2';
  const label = cString(sb.subarray(ext4_super_block.s_volume_name, ext4_super_block.s_volume_name + 16));
  const uuid = formatUuidBytes(sb.subarray(ext4_super_block.s_uuid, ext4_super_block.s_uuid + 16));
  return withOptional(kind, label, uuid);
}

// ---- swap ----------------------------------------------------------------------------------

async function detectSwap(probe: Probe): Promise<FsDetection | null> {
  for (const page of SWAP_PAGE_SIZES) {
    const page0 = await probe(0, page);
    if (!page0) return null;
    const magic = page0.toString('latin1', page - 10, page);
    if (!(SWAP_MAGICS as readonly string[]).includes(magic)) continue;
    if (magic !== 'SWAPSPACE2') return { kind: 'swap' }; // the old format has no label or UUID
    const label = cString(page0.subarray(SWAP_HEADER.sws_volume, SWAP_HEADER.sws_volume + 16));
    const uuid = formatUuidBytes(page0.subarray(SWAP_HEADER.sws_uuid, SWAP_HEADER.sws_uuid + 16));
    return withOptional('swap', label, uuid);
  }
  return null;
}

// ---- FAT12/16/32 ---------------------------------------------------------------------------

const isPow2 = (v: number): boolean => v > 0 && (v & (v - 1)) === 0;

/**
 * A FAT boot sector, typed by its cluster count as the FAT specification (§3.5) requires; the
 * BS_FilSysType string is informational only. Null unless every BPB field is plausible.
 */
function detectFat(boot: Buffer): FsDetection | null {
  const F = FAT_BOOT_SECTOR;
  if (boot.readUInt16LE(MBR.Signature) !== MBR_SIGNATURE) return null;
  if (boot[F.BS_jmpBoot] !== 0xeb && boot[F.BS_jmpBoot] !== 0xe9) return null;
  const bytsPerSec = boot.readUInt16LE(F.BPB_BytsPerSec);
  const secPerClus = boot.readUInt8(F.BPB_SecPerClus);
  const rsvd = boot.readUInt16LE(F.BPB_RsvdSecCnt);
  const numFats = boot.readUInt8(F.BPB_NumFATs);
  const rootEnt = boot.readUInt16LE(F.BPB_RootEntCnt);
  const media = boot.readUInt8(F.BPB_Media);
  if (!isPow2(bytsPerSec) || bytsPerSec < 512 || bytsPerSec > 4096 || !isPow2(secPerClus) || rsvd === 0 || numFats === 0) return null;
  if (media !== 0xf0 && media < 0xf8) return null;
  const fatSz = boot.readUInt16LE(F.BPB_FATSz16) || boot.readUInt32LE(F.BPB_FATSz32);
  const totSec = boot.readUInt16LE(F.BPB_TotSec16) || boot.readUInt32LE(F.BPB_TotSec32);
  if (fatSz === 0 || totSec === 0) return null;
  const rootDirSectors = Math.ceil((rootEnt * 32) / bytsPerSec);
  const meta = rsvd + numFats * fatSz + rootDirSectors;
  if (meta >= totSec) return null;
  const clusters = Math.floor((totSec - meta) / secPerClus);
  const kind = clusters <= FAT12_MAX_CLUSTERS ? 'fat12' : clusters <= FAT16_MAX_CLUSTERS ? 'fat16' : 'fat32';
  const fat32 = kind === 'fat32';
  const sigAt = fat32 ? F.BS_BootSig32 : F.BS_BootSig;
  if (boot[sigAt] !== 0x29) return { kind };
  const volId = boot.readUInt32LE(fat32 ? F.BS_VolID32 : F.BS_VolID);
  const labAt = fat32 ? F.BS_VolLab32 : F.BS_VolLab;
  const lab = boot.toString('latin1', labAt, labAt + 11).replace(/[ \0]+$/, '');
  return withOptional(kind, lab === 'NO NAME' ? undefined : lab, serial32(volId));
}
