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
  DX_BLOCK_MASK,
  DX_HASH,
  DX_ROOT_INFO_LENGTH,
  DX_ROOT_UNIMPLEMENTED_FLAGS,
  EXT4_DIR_REC_LEN_MIN,
  EXT4_FT_DIR_CSUM,
  EXT4_MAX_REC_LEN,
  dx_countlimit,
  dx_entry,
  dx_node,
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

// ---- htree index nodes (fs/ext4/namei.c: struct dx_root, dx_node, dx_probe) ------------------

/** Where a node's dx_countlimit + dx_entry[] start in its block, and the validated count. */
export interface DxNode {
  /** Byte offset of dx_countlimit (which overlays entry 0's hash) in the block. */
  entriesAt: number;
  count: number;
  limit: number;
}

export interface DxRoot extends DxNode {
  /** dx_root_info.hash_version as stored (the unsigned variant is chosen by s_flags, not here). */
  hashVersion: number;
  /** dx_root_info.indirect_levels: interior levels below the root. */
  indirectLevels: number;
}

const X = 'E_EXT_HTREE';

/**
 * dx_root_limit / dx_node_limit: the entries that fit after the header, less a dx_tail with
 * metadata_csum. The kernel refuses a node whose limit is anything else ("limit != root limit").
 */
export function dxLimit(blockSize: number, isRoot: boolean, metadataCsum: boolean): number {
  const header = isRoot ? dx_root.entries : dx_node.entries;
  return Math.floor((blockSize - header - (metadataCsum ? dx_tail.SIZE : 0)) / dx_entry.SIZE);
}

function dxCountLimit(block: Buffer, entriesAt: number, expectLimit: number, where: Record<string, string | number>): DxNode {
  const limit = block.readUInt16LE(entriesAt + dx_countlimit.limit);
  const count = block.readUInt16LE(entriesAt + dx_countlimit.count);
  expectField(limit === expectLimit, X, 'dx_countlimit', 'limit', `${limit}, but ${expectLimit} entries fit in the block`, { ...where, value: limit, limit: expectLimit });
  expectField(count >= 1 && count <= limit, X, 'dx_countlimit', 'count', `${count} is 0 or past limit ${limit}`, { ...where, value: count, limit });
  return { entriesAt, count, limit };
}

/**
 * Block 0 of an indexed directory, checked as dx_probe checks it (hash version, unused_flags,
 * indirect_levels, limit, count) plus what e2fsck adds (info_length, the fake "." and ".." entries
 * with ".." spanning the block, so that a linear scan sees exactly those two there).
 * `maxLevels`: EXT4_HTREE_LEVEL with large_dir, else EXT4_HTREE_LEVEL_COMPAT.
 */
export function parseDxRoot(block: Buffer, blockSize: number, metadataCsum: boolean, maxLevels: number, ino: number): DxRoot {
  const where = { ino, lblk: 0 };
  const dotLen = recLenFromDisk(block.readUInt16LE(dx_root.dot + ext4_dir_entry_2.rec_len), blockSize);
  const dotdotLen = recLenFromDisk(block.readUInt16LE(dx_root.dotdot + ext4_dir_entry_2.rec_len), blockSize);
  expectField(
    dotLen === dx_root.dotdot && block.readUInt8(dx_root.dot + ext4_dir_entry_2.name_len) === 1 && block[dx_root.dot + ext4_dir_entry_2.name] === 0x2e,
    X, 'dx_root', 'dot', 'block 0 does not start with a 12-byte "." entry', where,
  );
  expectField(dotdotLen === block.length - dx_root.dotdot && block.readUInt8(dx_root.dotdot + ext4_dir_entry_2.name_len) === 2, X, 'dx_root', 'dotdot', `".." rec_len ${dotdotLen} does not span the block`, where);
  const hashVersion = block.readUInt8(dx_root.info_hash_version);
  const infoLength = block.readUInt8(dx_root.info_info_length);
  const indirectLevels = block.readUInt8(dx_root.info_indirect_levels);
  const flags = block.readUInt8(dx_root.info_unused_flags);
  expectField(infoLength === DX_ROOT_INFO_LENGTH, X, 'dx_root_info', 'info_length', `${infoLength}, not ${DX_ROOT_INFO_LENGTH}`, { ...where, value: infoLength });
  // SIPHASH needs the casefold+encryption key; the others are the ones dx_probe accepts.
  expectField(hashVersion === DX_HASH.LEGACY || hashVersion === DX_HASH.HALF_MD4 || hashVersion === DX_HASH.TEA, X, 'dx_root_info', 'hash_version', `${hashVersion} is not a hash we can compute`, { ...where, value: hashVersion });
  expectField((flags & DX_ROOT_UNIMPLEMENTED_FLAGS) === 0, X, 'dx_root_info', 'unused_flags', `0x${flags.toString(16)} has unimplemented flags`, { ...where, value: flags });
  expectField(indirectLevels < maxLevels, X, 'dx_root_info', 'indirect_levels', `${indirectLevels}, the limit is ${maxLevels - 1}`, { ...where, value: indirectLevels, limit: maxLevels - 1 });
  return { ...dxCountLimit(block, dx_root.entries, dxLimit(blockSize, true, metadataCsum), where), hashVersion, indirectLevels };
}

/** An interior node: a fake empty entry spanning the block (isDxNode), then dx_countlimit + dx_entry[]. */
export function parseDxNode(block: Buffer, blockSize: number, metadataCsum: boolean, ino: number, lblk: number): DxNode {
  expectField(isDxNode(block, blockSize), X, 'dx_node', 'fake', `block ${lblk} is not an index node`, { ino, lblk });
  return dxCountLimit(block, dx_node.entries, dxLimit(blockSize, false, metadataCsum), { ino, lblk });
}

/** dx_get_hash; entry 0 has no hash (its bytes are the countlimit) and covers from the node's lower bound. */
export function dxHashAt(block: Buffer, node: DxNode, i: number): number {
  return i === 0 ? 0 : block.readUInt32LE(node.entriesAt + i * dx_entry.SIZE + dx_entry.hash);
}

/** dx_get_block: a logical block of the directory. */
export function dxBlockAt(block: Buffer, node: DxNode, i: number): number {
  return (block.readUInt32LE(node.entriesAt + i * dx_entry.SIZE + dx_entry.block) & DX_BLOCK_MASK) >>> 0;
}

/** dx_probe's binary search: the last entry whose hash is <= `hash` (entry 0 when none is). */
export function dxSearch(block: Buffer, node: DxNode, hash: number): number {
  let lo = 1;
  let hi = node.count - 1;
  while (lo <= hi) {
    const mid = lo + ((hi - lo) >> 1);
    if (dxHashAt(block, node, mid) > hash) hi = mid - 1;
    else lo = mid + 1;
  }
  return lo - 1;
}

/**
 * A hash range [lo, hi) a subtree covers, from the entry that leads to it: lo is the entry's hash
 * without the collision bit, hi the next entry's hash; a next hash with the collision bit set means
 * names of exactly hash (hi - 1) may sit on both sides.
 */
export interface DxRange {
  lo: number;
  hi: number;
}

export const DX_FULL_RANGE: DxRange = { lo: 0, hi: 2 ** 32 };

export function dxChildRange(block: Buffer, node: DxNode, i: number, parent: DxRange): DxRange {
  const lo = i === 0 ? parent.lo : dxHashAt(block, node, i) - (dxHashAt(block, node, i) % 2);
  const hi = i + 1 < node.count ? dxHashAt(block, node, i + 1) : parent.hi;
  return { lo, hi };
}

/** Does a name hashing to `hash` belong under `range`? */
export function dxInRange(hash: number, range: DxRange): boolean {
  const top = range.hi - (range.hi % 2);
  return hash >= range.lo && (hash < top || (range.hi % 2 === 1 && hash === top));
}

/**
 * The entries of a node must be in hash order and inside the range its parent gave it. The kernel
 * trusts both; we check them because a misordered index would send a lookup to the wrong leaf and
 * hide a name a linear scan finds.
 */
export function checkDxOrder(block: Buffer, node: DxNode, range: DxRange, ino: number, lblk: number): void {
  let prev = range.lo;
  const top = range.hi - (range.hi % 2);
  for (let i = 1; i < node.count; i++) {
    const h = dxHashAt(block, node, i);
    const bare = h - (h % 2);
    expectField(bare >= prev && bare <= top, X, 'dx_entry', 'hash', `entry ${i} of block ${lblk}: 0x${h.toString(16)} is out of order or outside 0x${range.lo.toString(16)}..0x${range.hi.toString(16)}`, { ino, lblk, value: h });
    prev = bare;
  }
}
