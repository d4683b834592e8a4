/**
 * The NTFS boot sector: geometry of the volume (sector, cluster, MFT record and index block sizes)
 * and where $MFT starts. Layout: NTFS_BOOT_SECTOR in structs.ts (Linux-NTFS layout.h; libyal NTFS
 * "Volume header"). Every size is bounded before use: clusters from 256 B to 2 MiB, records and
 * index blocks from 512 B to 64 KiB, all powers of two.
 */
import { CorruptStructureError } from '../../util/errors.js';
import { checkBound, readI64, MiB, KiB } from '../../util/bounded.js';
import { NTFS_BOOT_SECTOR, NTFS_OEM_ID, NTFS_BLOCK_SIZE } from './structs.js';

export interface NtfsGeometry {
  bytesPerSector: number;
  clusterSize: number;
  mftRecordSize: number;
  indexBlockSize: number;
  totalClusters: number;
  mftLcn: number;
  mftMirrLcn: number;
  serialNumber: bigint;
}

export const MAX_CLUSTER_SIZE = 2 * MiB;
export const MAX_RECORD_SIZE = 64 * KiB;

const isPow2 = (n: number) => n > 0 && (n & (n - 1)) === 0;

/**
 * clusters_per_mft_record / clusters_per_index_record: a positive value counts clusters, a negative
 * one is -log2 of the size in bytes (used whenever a record is smaller than a cluster).
 */
function recordSize(raw: number, clusterSize: number, field: string): number {
  let size: number;
  if (raw > 0) size = raw * clusterSize;
  else {
    checkBound('NTFS_BOOT_SECTOR', `${field} (as -log2)`, -raw, 16);
    size = 2 ** -raw;
  }
  if (!isPow2(size) || size < NTFS_BLOCK_SIZE || size > MAX_RECORD_SIZE) {
    throw new CorruptStructureError('E_NTFS_BOOT', `NTFS_BOOT_SECTOR.${field} = ${raw} gives ${size} bytes, not a power of two in [${NTFS_BLOCK_SIZE}, ${MAX_RECORD_SIZE}]`, { structure: 'NTFS_BOOT_SECTOR', field, value: raw, limit: MAX_RECORD_SIZE });
  }
  return size;
}

export function parseBootSector(b: Buffer, volumeSize: number): NtfsGeometry {
  const S = NTFS_BOOT_SECTOR;
  if (b.length < S.SIZE) throw new CorruptStructureError('E_NTFS_BOOT', `NTFS boot sector: ${b.length} bytes, need ${S.SIZE}`, { structure: 'NTFS_BOOT_SECTOR' });
  const oem = b.toString('latin1', S.oem_id, S.oem_id + 8);
  if (oem !== NTFS_OEM_ID) throw new CorruptStructureError('E_NTFS_BOOT', `NTFS_BOOT_SECTOR.oem_id is ${JSON.stringify(oem)}, not "NTFS    ": not an NTFS volume`, { structure: 'NTFS_BOOT_SECTOR', field: 'oem_id', value: oem });
  const bytesPerSector = b.readUInt16LE(S.bytes_per_sector);
  if (!isPow2(bytesPerSector) || bytesPerSector < 256 || bytesPerSector > 4096) {
    throw new CorruptStructureError('E_NTFS_BOOT', `NTFS_BOOT_SECTOR.bytes_per_sector = ${bytesPerSector}: not a power of two in [256, 4096]`, { structure: 'NTFS_BOOT_SECTOR', field: 'bytes_per_sector', value: bytesPerSector });
  }
  // sectors_per_cluster above 0x80 is the negative-shift encoding Windows uses for clusters past
  // 64 KiB: the cluster holds 2^(256 - value) sectors (0xF4 with 512-byte sectors = 2 MiB).
  const spcRaw = b.readUInt8(S.sectors_per_cluster);
  let sectorsPerCluster: number;
  if (spcRaw <= 0x80) sectorsPerCluster = spcRaw;
  else {
    checkBound('NTFS_BOOT_SECTOR', 'sectors_per_cluster (shift)', 256 - spcRaw, 16);
    sectorsPerCluster = 2 ** (256 - spcRaw);
  }
  const clusterSize = sectorsPerCluster * bytesPerSector;
  if (!isPow2(sectorsPerCluster) || clusterSize > MAX_CLUSTER_SIZE) {
    throw new CorruptStructureError('E_NTFS_BOOT', `NTFS_BOOT_SECTOR.sectors_per_cluster = 0x${spcRaw.toString(16)} gives ${clusterSize}-byte clusters, not a power of two up to ${MAX_CLUSTER_SIZE}`, { structure: 'NTFS_BOOT_SECTOR', field: 'sectors_per_cluster', value: spcRaw, limit: MAX_CLUSTER_SIZE });
  }
  const mftRecordSize = recordSize(b.readInt8(S.clusters_per_mft_record), clusterSize, 'clusters_per_mft_record');
  const indexBlockSize = recordSize(b.readInt8(S.clusters_per_index_record), clusterSize, 'clusters_per_index_record');
  const sectors = readI64(b, S.number_of_sectors, 'NTFS_BOOT_SECTOR', 'number_of_sectors');
  if (sectors <= 0) throw new CorruptStructureError('E_NTFS_BOOT', `NTFS_BOOT_SECTOR.number_of_sectors = ${sectors}`, { structure: 'NTFS_BOOT_SECTOR', field: 'number_of_sectors', value: sectors });
  const totalClusters = Math.floor((sectors * bytesPerSector) / clusterSize);
  // The volume may legitimately be a little longer than the filesystem (the backup boot sector);
  // a filesystem that claims more clusters than the volume holds is truncated or hostile.
  checkBound('NTFS_BOOT_SECTOR', 'number_of_sectors * bytes_per_sector', totalClusters * clusterSize, volumeSize);
  const mftLcn = readI64(b, S.mft_lcn, 'NTFS_BOOT_SECTOR', 'mft_lcn');
  checkBound('NTFS_BOOT_SECTOR', 'mft_lcn', mftLcn, totalClusters - 1);
  const mftMirrLcn = readI64(b, S.mftmirr_lcn, 'NTFS_BOOT_SECTOR', 'mftmirr_lcn');
  return { bytesPerSector, clusterSize, mftRecordSize, indexBlockSize, totalClusters, mftLcn, mftMirrLcn, serialNumber: b.readBigUInt64LE(S.volume_serial_number) };
}
