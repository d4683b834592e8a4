/**
 * Update sequence arrays ("fixups", multi-sector transfer protection): NTFS writes the record's
 * update sequence number over the last two bytes of every 512-byte stride and keeps the real bytes
 * in the array at usa_ofs. A stride whose tail is not the USN was torn by an interrupted write; the
 * record must not be trusted (Linux-NTFS layout.h NTFS_RECORD; ntfs-3g mst.c).
 */
import { CorruptStructureError } from '../../util/errors.js';
import { NTFS_RECORD, NTFS_BLOCK_SIZE } from './structs.js';

/** Checks `magic` and applies the fixups to `buf` in place; `what` names the record in errors. */
export function applyFixups(buf: Buffer, magic: string, what: string, data: Record<string, string | number> = {}): void {
  const got = buf.toString('latin1', NTFS_RECORD.magic, NTFS_RECORD.magic + 4);
  if (got !== magic) {
    throw new CorruptStructureError('E_NTFS_RECORD', `${what}: magic is ${JSON.stringify(got)}, not "${magic}"${got === 'BAAD' ? ' (marked bad by a failed multi-sector write)' : ''}`, { structure: magic, field: 'magic', value: got, record: what, ...data });
  }
  const usaOfs = buf.readUInt16LE(NTFS_RECORD.usa_ofs);
  const usaCount = buf.readUInt16LE(NTFS_RECORD.usa_count);
  const strides = buf.length / NTFS_BLOCK_SIZE;
  if (usaCount !== strides + 1 || usaOfs & 1 || usaOfs < 8 || usaOfs + usaCount * 2 > NTFS_BLOCK_SIZE - 2) {
    throw new CorruptStructureError('E_NTFS_FIXUP', `${what}: update sequence array (usa_ofs ${usaOfs}, usa_count ${usaCount}) does not fit a ${buf.length}-byte record of ${strides} strides`, { structure: magic, field: 'usa_count', value: usaCount, limit: strides + 1, record: what, ...data });
  }
  const usn = buf.readUInt16LE(usaOfs);
  for (let i = 0; i < strides; i++) {
    const tail = (i + 1) * NTFS_BLOCK_SIZE - 2;
    const seen = buf.readUInt16LE(tail);
    if (seen !== usn) {
      throw new CorruptStructureError('E_NTFS_FIXUP', `${what}: fixup mismatch in stride ${i} (0x${seen.toString(16)} where the update sequence number is 0x${usn.toString(16)}): torn write`, { structure: magic, record: what, stride: i, value: seen, expected: usn, ...data });
    }
    buf.writeUInt16LE(buf.readUInt16LE(usaOfs + 2 + i * 2), tail);
  }
}
