/**
 * Directory blocks (ext4 doc "Directory Entries"; fs/ext4/dir.c ext4_check_dir_entry). A block is a
 * chain of ext4_dir_entry_2 records, each rec_len bytes long, which must tile the block exactly.
 * An htree's interior blocks look like one empty entry spanning the block, so a linear scan of
 * every block of the directory sees exactly the leaves' entries (that is how ext4_readdir works
 * for non-hashed order, too).
 *
 * Bounds (named on failure): rec_len >= 12, a multiple of 4, inside the block; name_len fits in
 * rec_len. rec_len always advances by at least 12, so a block cannot loop.
 */
import { checkBound, expectField } from '../../util/bounded.js';
import { crc32cUpdate } from './crc32c.js';
import {
  EXT4_DIR_REC_LEN_MIN,
  EXT4_FT_DIR_CSUM,
  EXT4_MAX_REC_LEN,
  dx_countlimit,
  dx_entry,
  dx_root,
  dx_tail,
  ext4_dir_entry_2,
  ext4_dir_entry_tail,
} from './structs.js';

export interface RawDirent {
  inode: number;
  name: Buffer;
  fileType: number;
}

const D = 'ext4_dir_entry_2';

/** ext4_rec_len_from_disk: on 64 KiB blocks 65535 (or 0) means the whole block and the low bits carry bit 16. */
export function recLenFromDisk(v: number, blockSize: number): number {
  if (blockSize < 65536) return v;
  if (v === EXT4_MAX_REC_LEN || v === 0) return blockSize;
  return (v & 65532) | ((v & 3) << 16);
}

/**
 * The entries of one directory block (or of an inline-data region), unused ones (inode 0) left out.
 * `filetype`: the filetype feature (else name_len is 16 bits and the type must come from the inode).
 */
export function parseDirBlock(block: Buffer, filetype: boolean, blockSize: number, where: { ino: number; lblk: number | string }): RawDirent[] {
  const out: RawDirent[] = [];
  const data = { ino: where.ino, lblk: String(where.lblk) };
  let off = 0;
  while (off < block.length) {
    checkWithinDirent(block.length - off, data, off);
    const inode = block.readUInt32LE(off + ext4_dir_entry_2.inode);
    const recLen = recLenFromDisk(block.readUInt16LE(off + ext4_dir_entry_2.rec_len), blockSize);
    const nameLen = filetype ? block.readUInt8(off + ext4_dir_entry_2.name_len) : block.readUInt16LE(off + ext4_dir_entry_2.name_len);
    const fileType = filetype ? block.readUInt8(off + ext4_dir_entry_2.file_type) : 0;
    expectField(recLen >= EXT4_DIR_REC_LEN_MIN && recLen % 4 === 0, 'E_EXT_DIRENT', D, 'rec_len', `${recLen} at offset ${off} is below 12 or not a multiple of 4`, { ...data, offset: off });
    checkBound(D, 'rec_len', recLen, block.length - off, { ...data, offset: off });
    checkBound(D, 'name_len', nameLen, recLen - ext4_dir_entry_2.HEADER_SIZE, { ...data, offset: off });
    if (inode !== 0 && nameLen > 0) {
      out.push({ inode, name: block.subarray(off + ext4_dir_entry_2.name, off + ext4_dir_entry_2.name + nameLen), fileType });
    }
    off += recLen;
  }
  return out;
}

function checkWithinDirent(left: number, data: Record<string, string | number>, off: number): void {
  checkBound(D, 'header', ext4_dir_entry_2.HEADER_SIZE, left, { ...data, offset: off });
}

/** Does the block end in an ext4_dir_entry_tail (metadata_csum leaf)? */
export function hasDirTail(block: Buffer): boolean {
  const t = block.length - ext4_dir_entry_tail.SIZE;
  return (
    t >= 0 &&
    block.readUInt32LE(t + ext4_dir_entry_tail.det_reserved_zero1) === 0 &&
    block.readUInt16LE(t + ext4_dir_entry_tail.det_rec_len) === ext4_dir_entry_tail.SIZE &&
    block.readUInt8(t + ext4_dir_entry_tail.det_reserved_zero2) === 0 &&
    block.readUInt8(t + ext4_dir_entry_tail.det_reserved_ft) === EXT4_FT_DIR_CSUM
  );
}

/** ext4_dirblock_csum: crc32c(inode seed, the block before its tail). */
export function dirBlockChecksum(inodeSeed: number, block: Buffer): { stored: number; computed: number } {
  const t = block.length - ext4_dir_entry_tail.SIZE;
  return { stored: block.readUInt32LE(t + ext4_dir_entry_tail.det_checksum), computed: crc32cUpdate(inodeSeed, block, 0, t) };
}

/**
 * ext4_dx_csum for an htree root (block 0 of an indexed directory) or interior node: crc32c(inode
 * seed, the block up to count entries, then the dx_tail with dt_checksum as zero). null when the node's
 * count/limit leave no room for a tail (not a metadata_csum node).
 */
export function dxNodeChecksum(inodeSeed: number, block: Buffer, isRoot: boolean): { stored: number; computed: number } | null {
  const countOffset = isRoot ? dx_root.entries : 8;
  if (countOffset + dx_countlimit.SIZE > block.length) return null;
  const limit = block.readUInt16LE(countOffset + dx_countlimit.limit);
  const count = block.readUInt16LE(countOffset + dx_countlimit.count);
  const tailAt = countOffset + limit * dx_entry.SIZE;
  if (count > limit || tailAt + dx_tail.SIZE > block.length) return null;
  let crc = crc32cUpdate(inodeSeed, block, 0, countOffset + count * dx_entry.SIZE);
  crc = crc32cUpdate(crc, block, tailAt + dx_tail.dt_reserved, tailAt + dx_tail.dt_checksum);
  crc = crc32cUpdate(crc, Buffer.alloc(4)); // dt_checksum counted as zero
  return { stored: block.readUInt32LE(tailAt + dx_tail.dt_checksum), computed: crc };
}

/** Is this block an htree interior node: one empty entry (inode 0, name_len 0) spanning the whole block? */
export function isDxNode(block: Buffer, blockSize: number): boolean {
  return block.readUInt32LE(0) === 0 && recLenFromDisk(block.readUInt16LE(4), blockSize) === block.length && block.readUInt16LE(6) === 0;
}
