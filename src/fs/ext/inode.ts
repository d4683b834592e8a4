/**
 * struct ext4_inode, decoded (ext4 doc "Index Nodes"; fs/ext4/inode.c ext4_iget, ext4.h
 * EXT4_INODE_GET_XTIME). Fields past the first 128 bytes count only when i_extra_isize covers them.
 */
import { checkBound, expectField } from '../../util/bounded.js';
import type { FileType } from '../types.js';
import { S_IFMT } from '../types.js';
import { crc32cUpdate, crc32cU32 } from './crc32c.js';
import { EXT4_EPOCH_MASK, EXT4_FL, EXT4_GOOD_OLD_INODE_SIZE, EXT4_N_BLOCKS, ext4_inode } from './structs.js';

export interface Ext4Inode {
  ino: number;
  i_mode: number;
  i_uid: number;
  i_gid: number;
  i_size: number;
  i_links_count: number;
  /** i_blocks in 512-byte units (huge_file's block units already converted). */
  i_blocks: number;
  i_flags: number;
  i_dtime: number;
  i_generation: number;
  i_file_acl: number;
  i_extra_isize: number;
  /** The raw 60 bytes of i_block. */
  i_block: Buffer;
  atimeNs: bigint;
  mtimeNs: bigint;
  ctimeNs: bigint;
  crtimeNs?: bigint;
  type: FileType | null;
  /** The whole on-disk inode (s_inode_size bytes): the in-inode xattrs live past i_extra_isize. */
  raw: Buffer;
}

const S = 'ext4_inode';
const TYPES: Record<number, FileType> = {
  0o140000: 'socket',
  0o120000: 'symlink',
  0o100000: 'file',
  0o060000: 'blockdev',
  0o040000: 'dir',
  0o020000: 'chardev',
  0o010000: 'fifo',
};

/** EXT4_FITS_IN_INODE: does the field at `offset` of `size` bytes lie within 128 + i_extra_isize? */
function fits(extra: number, offset: number, size: number): boolean {
  return offset + size <= EXT4_GOOD_OLD_INODE_SIZE + extra;
}

/**
 * ext4_decode_extra_time: the 32-bit seconds are signed (dates before 1970); the extra field's two
 * epoch bits add multiples of 2^32 seconds (dates past 2038), its upper 30 bits are nanoseconds.
 */
export function decodeTime(seconds: number, extra: number | undefined): bigint {
  let s = BigInt(seconds | 0);
  let ns = 0n;
  if (extra !== undefined) {
    s += BigInt(extra & EXT4_EPOCH_MASK) << 32n;
    ns = BigInt(extra >>> 2);
  }
  return s * 1_000_000_000n + ns;
}

/** Parses one inode of `inodeSize` bytes. `hugeFile`: the huge_file feature; `blockSize` for i_blocks in block units. */
export function parseInode(ino: number, raw: Buffer, inodeSize: number, hugeFile: boolean, blockSize: number): Ext4Inode {
  const F = ext4_inode;
  const u32 = (o: number) => raw.readUInt32LE(o);
  const u16 = (o: number) => raw.readUInt16LE(o);
  let extra = 0;
  if (inodeSize > EXT4_GOOD_OLD_INODE_SIZE) {
    extra = u16(F.i_extra_isize);
    // ext4_iget: i_extra_isize must leave room and be a multiple of 4
    checkBound(S, 'i_extra_isize', extra, inodeSize - EXT4_GOOD_OLD_INODE_SIZE, { ino });
    expectField(extra % 4 === 0, 'E_EXT_INODE', S, 'i_extra_isize', `${extra} is not a multiple of 4`, { ino });
  }
  const flags = u32(F.i_flags);
  const mode = u16(F.i_mode);
  let blocks = u32(F.i_blocks_lo);
  if (hugeFile) {
    blocks += u16(F.l_i_blocks_high) * 0x100000000;
    if (flags & EXT4_FL.HUGE_FILE) blocks *= blockSize / 512;
  }
  const x = (timeField: number, extraField: number) => decodeTime(u32(timeField), fits(extra, extraField, 4) ? u32(extraField) : undefined);
  const inode: Ext4Inode = {
    ino,
    i_mode: mode,
    i_uid: u16(F.i_uid) | (u16(F.l_i_uid_high) << 16),
    i_gid: u16(F.i_gid) | (u16(F.l_i_gid_high) << 16),
    i_size: u32(F.i_size_lo) + u32(F.i_size_high) * 0x100000000,
    i_links_count: u16(F.i_links_count),
    i_blocks: blocks,
    i_flags: flags,
    i_dtime: u32(F.i_dtime),
    i_generation: u32(F.i_generation),
    i_file_acl: u32(F.i_file_acl_lo) + u16(F.l_i_file_acl_high) * 0x100000000,
    i_extra_isize: extra,
    i_block: raw.subarray(F.i_block, F.i_block + EXT4_N_BLOCKS * 4),
    atimeNs: x(F.i_atime, F.i_atime_extra),
    mtimeNs: x(F.i_mtime, F.i_mtime_extra),
    ctimeNs: x(F.i_ctime, F.i_ctime_extra),
    type: TYPES[mode & S_IFMT] ?? null,
    raw,
  };
  uid32Fix(inode);
  if (fits(extra, F.i_crtime, 4)) inode.crtimeNs = x(F.i_crtime, F.i_crtime_extra);
  // i_size is 64-bit; a value past 2^53 cannot be a real file here
  checkBound(S, 'i_size', inode.i_size, Number.MAX_SAFE_INTEGER, { ino });
  return inode;
}

function uid32Fix(inode: Ext4Inode): void {
  inode.i_uid >>>= 0;
  inode.i_gid >>>= 0;
}

/**
 * ext4_inode_csum: crc32c(s_csum_seed, le32 ino, le32 generation, the inode with l_i_checksum_lo and
 * (when i_extra_isize covers it) i_checksum_hi as zero). Without i_checksum_hi only 16 bits count.
 */
export function inodeChecksum(csumSeed: number, ino: number, raw: Buffer, inodeSize: number): { stored: number; computed: number } {
  const F = ext4_inode;
  const gen = raw.readUInt32LE(F.i_generation);
  let crc = crc32cU32(crc32cU32(csumSeed, ino), gen);
  const copy = Buffer.from(raw.subarray(0, inodeSize));
  copy.writeUInt16LE(0, F.l_i_checksum_lo);
  const hasHi = inodeSize > EXT4_GOOD_OLD_INODE_SIZE && fits(copy.readUInt16LE(F.i_extra_isize), F.i_checksum_hi, 2);
  if (hasHi) copy.writeUInt16LE(0, F.i_checksum_hi);
  crc = crc32cUpdate(crc, copy);
  const stored = raw.readUInt16LE(F.l_i_checksum_lo) | (hasHi ? raw.readUInt16LE(F.i_checksum_hi) << 16 : 0);
  return { stored: stored >>> 0, computed: hasHi ? crc >>> 0 : crc & 0xffff };
}

/** The per-inode checksum seed of extent, directory and htree blocks (ext4_iget's ei->i_csum_seed). */
export function inodeCsumSeed(csumSeed: number, ino: number, generation: number): number {
  return crc32cU32(crc32cU32(csumSeed, ino), generation);
}

/**
 * The Linux dev_t of a device inode (ext4_iget -> old_decode_dev / new_decode_dev), encoded as glibc's
 * makedev does, which is what lstat(2) returns in st_rdev.
 */
export function inodeRdev(inode: Ext4Inode): number {
  const b0 = inode.i_block.readUInt32LE(0);
  let major: number;
  let minor: number;
  if (b0 !== 0) {
    major = (b0 >>> 8) & 0xff;
    minor = b0 & 0xff;
  } else {
    const d = inode.i_block.readUInt32LE(4);
    major = (d & 0xfff00) >>> 8;
    minor = (d & 0xff) | ((d >>> 12) & 0xfff00);
  }
  // glibc gnu_dev_makedev: ((major & 0xfffff000) << 32) | ((major & 0xfff) << 8) | ((minor & 0xffffff00) << 12) | (minor & 0xff)
  return (major & 0xfffff000) * 2 ** 32 + (major & 0xfff) * 256 + (minor & 0xffffff00) * 4096 + (minor & 0xff);
}
