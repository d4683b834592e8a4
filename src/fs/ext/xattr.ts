/**
 * Extended attributes (ext4 doc "Extended Attributes"; fs/ext4/xattr.c, xattr.h, acl.c). They live
 * in the large inode after i_extra_isize (ext4_xattr_ibody_header, values relative to the first
 * entry) and in one xattr block (ext4_xattr_header, values relative to the block), or with
 * ea_inode in an inode of their own (e_value_inum). Entries are 4-byte padded and end with a zero
 * u32. Every offset and size is checked against its region before a value is sliced.
 */
import { checkBound, expectField } from '../../util/bounded.js';
import { crc32cUpdate } from './crc32c.js';
import {
  ACL_TAG,
  ACL_UNDEFINED_ID,
  EXT4_ACL_VERSION,
  EXT4_XATTR_INDEX,
  EXT4_XATTR_MAGIC,
  EXT4_XATTR_PAD,
  POSIX_ACL_XATTR_VERSION,
  XATTR_SIZE_MAX,
  ext4_acl_entry,
  ext4_acl_header,
  ext4_xattr_entry,
  ext4_xattr_header,
  ext4_xattr_ibody_header,
} from './structs.js';

export interface RawXattr {
  index: number;
  name: Buffer;
  /** The value when stored in the region; null when it lives in inode `valueInum`. */
  value: Buffer | null;
  valueInum: number;
  valueSize: number;
}

const E = 'ext4_xattr_entry';

/** The prefixes the kernel's handlers list (ext4_xattr_handler_map); other indexes stay hidden, as system.data does. */
const PREFIX: Record<number, string> = {
  [EXT4_XATTR_INDEX.USER]: 'user.',
  [EXT4_XATTR_INDEX.POSIX_ACL_ACCESS]: 'system.posix_acl_access',
  [EXT4_XATTR_INDEX.POSIX_ACL_DEFAULT]: 'system.posix_acl_default',
  [EXT4_XATTR_INDEX.TRUSTED]: 'trusted.',
  [EXT4_XATTR_INDEX.SECURITY]: 'security.',
};

export function xattrFullName(x: RawXattr): string | null {
  const p = PREFIX[x.index];
  if (p === undefined) return null;
  return p + x.name.toString('latin1');
}

/**
 * Entries from `region`, starting at `entriesAt`; values are at `valueBase + e_value_offs` within
 * the region. `where` names the container for errors.
 */
export function parseXattrEntries(region: Buffer, entriesAt: number, valueBase: number, where: Record<string, string | number>): RawXattr[] {
  const out: RawXattr[] = [];
  let off = entriesAt;
  for (;;) {
    // the list ends with a zero u32 (EXT4_XATTR_IS_LAST_ENTRY), or at the region's end
    if (off + 4 > region.length || region.readUInt32LE(off) === 0) break;
    checkBound(E, 'header', off + ext4_xattr_entry.HEADER_SIZE, region.length, { ...where, offset: off });
    const nameLen = region.readUInt8(off + ext4_xattr_entry.e_name_len);
    const index = region.readUInt8(off + ext4_xattr_entry.e_name_index);
    const valueOffs = region.readUInt16LE(off + ext4_xattr_entry.e_value_offs);
    const valueInum = region.readUInt32LE(off + ext4_xattr_entry.e_value_inum);
    const valueSize = region.readUInt32LE(off + ext4_xattr_entry.e_value_size);
    const entryLen = (ext4_xattr_entry.HEADER_SIZE + nameLen + EXT4_XATTR_PAD - 1) & ~(EXT4_XATTR_PAD - 1);
    checkBound(E, 'e_name_len', off + ext4_xattr_entry.HEADER_SIZE + nameLen, region.length, { ...where, offset: off });
    checkBound(E, 'e_value_size', valueSize, XATTR_SIZE_MAX, { ...where, offset: off });
    const name = region.subarray(off + ext4_xattr_entry.e_name, off + ext4_xattr_entry.e_name + nameLen);
    let value: Buffer | null = null;
    if (valueInum === 0) {
      const start = valueBase + valueOffs;
      checkBound(E, 'e_value_offs + e_value_size', start + valueSize, region.length, { ...where, offset: off, e_value_offs: valueOffs });
      value = region.subarray(start, start + valueSize);
    }
    out.push({ index, name, value, valueInum, valueSize });
    off += entryLen;
  }
  return out;
}

/** The xattrs in a large inode's body (after 128 + i_extra_isize), or [] when it has none. */
export function parseIbodyXattrs(raw: Buffer, extraIsize: number, inodeSize: number, ino: number): RawXattr[] {
  const start = 128 + extraIsize;
  if (start + ext4_xattr_ibody_header.SIZE > inodeSize) return [];
  const region = raw.subarray(start, inodeSize);
  if (region.readUInt32LE(ext4_xattr_ibody_header.h_magic) !== EXT4_XATTR_MAGIC) return [];
  // IFIRST: values are relative to the first entry, right after the 4-byte header
  return parseXattrEntries(region, ext4_xattr_ibody_header.SIZE, ext4_xattr_ibody_header.SIZE, { structure: 'ext4_xattr_ibody_header', ino });
}

/** The xattrs of an xattr block; checks h_magic and h_blocks (always 1: ext4_xattr_block_csum_verify's caller). */
export function parseXattrBlock(block: Buffer, blockNr: number, ino: number): RawXattr[] {
  const H = 'ext4_xattr_header';
  const magic = block.readUInt32LE(ext4_xattr_header.h_magic);
  expectField(magic === EXT4_XATTR_MAGIC, 'E_EXT_XATTR', H, 'h_magic', `0x${magic.toString(16)} in block ${blockNr}`, { ino, block: blockNr });
  const blocks = block.readUInt32LE(ext4_xattr_header.h_blocks);
  expectField(blocks === 1, 'E_EXT_XATTR', H, 'h_blocks', `${blocks} in block ${blockNr}, must be 1`, { ino, block: blockNr });
  return parseXattrEntries(block, ext4_xattr_header.SIZE, 0, { structure: H, ino, block: blockNr });
}

/** ext4_xattr_block_csum: crc32c(s_csum_seed, le64 block number, the block with h_checksum as zero). */
export function xattrBlockChecksum(csumSeed: number, blockNr: number, block: Buffer): { stored: number; computed: number } {
  const nr = Buffer.alloc(8);
  nr.writeBigUInt64LE(BigInt(blockNr));
  const copy = Buffer.from(block);
  copy.writeUInt32LE(0, ext4_xattr_header.h_checksum);
  return { stored: block.readUInt32LE(ext4_xattr_header.h_checksum), computed: crc32cUpdate(crc32cUpdate(csumSeed, nr), copy) };
}

/**
 * ext4_acl_from_disk then posix_acl_to_xattr: the compact on-disk ACL (version 1; 4-byte entries
 * for the owner/group/mask/other tags, 8-byte ones with an id for named users and groups) becomes
 * the VFS form getxattr returns (version 2, every entry 8 bytes, ACL_UNDEFINED_ID where no id).
 */
export function aclToXattr(disk: Buffer, where: Record<string, string | number>): Buffer {
  const A = 'ext4_acl_header';
  expectField(disk.length >= ext4_acl_header.SIZE && disk.readUInt32LE(ext4_acl_header.a_version) === EXT4_ACL_VERSION, 'E_EXT_ACL', A, 'a_version', 'not an ext4 ACL (version 1)', where);
  const entries: Buffer[] = [];
  let off = ext4_acl_header.SIZE;
  while (off < disk.length) {
    checkBound('ext4_acl_entry', 'short', off + ext4_acl_entry.SHORT_SIZE, disk.length, where);
    const tag = disk.readUInt16LE(off + ext4_acl_entry.e_tag);
    const perm = disk.readUInt16LE(off + ext4_acl_entry.e_perm);
    let id = ACL_UNDEFINED_ID;
    if (tag === ACL_TAG.USER || tag === ACL_TAG.GROUP) {
      checkBound('ext4_acl_entry', 'e_id', off + ext4_acl_entry.SIZE, disk.length, where);
      id = disk.readUInt32LE(off + ext4_acl_entry.e_id);
      off += ext4_acl_entry.SIZE;
    } else {
      expectField(tag === ACL_TAG.USER_OBJ || tag === ACL_TAG.GROUP_OBJ || tag === ACL_TAG.MASK || tag === ACL_TAG.OTHER, 'E_EXT_ACL', 'ext4_acl_entry', 'e_tag', `0x${tag.toString(16)} is not an ACL tag`, where);
      off += ext4_acl_entry.SHORT_SIZE;
    }
    const e = Buffer.alloc(8);
    e.writeUInt16LE(tag, 0);
    e.writeUInt16LE(perm, 2);
    e.writeUInt32LE(id, 4);
    entries.push(e);
  }
  const head = Buffer.alloc(4);
  head.writeUInt32LE(POSIX_ACL_XATTR_VERSION);
  return Buffer.concat([head, ...entries]);
}
