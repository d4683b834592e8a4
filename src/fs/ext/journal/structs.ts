/**
 * jbd2 on-disk structures, declared once with the names of the kernel's include/linux/jbd2.h and
 * Documentation/filesystems/ext4/journal.rst. Every jbd2 field is BIG-endian (unlike the rest of
 * ext4). The replay code reads journal blocks only through these declarations.
 */
import { CorruptStructureError, UnsupportedError } from '../../../util/errors.js';

/** JBD2_MAGIC_NUMBER: h_magic of every journal metadata block (and what an escaped data block lost). */
export const JBD2_MAGIC_NUMBER = 0xc03b3998;

/** h_blocktype values (jbd2.h "Descriptor block types"). */
export const JBD2_DESCRIPTOR_BLOCK = 1;
export const JBD2_COMMIT_BLOCK = 2;
export const JBD2_SUPERBLOCK_V1 = 3;
export const JBD2_SUPERBLOCK_V2 = 4;
export const JBD2_REVOKE_BLOCK = 5;
export const JBD2_FC_BLOCK = 6;

/** journal_header_s { __be32 h_magic; __be32 h_blocktype; __be32 h_sequence; }: 12 bytes. */
export const journal_header_s = { h_magic: 0x0, h_blocktype: 0x4, h_sequence: 0x8 } as const;
export const JOURNAL_HEADER_SIZE = 12;

export interface JournalHeader {
  h_magic: number;
  h_blocktype: number;
  h_sequence: number;
}

export function readJournalHeader(b: Buffer): JournalHeader {
  return {
    h_magic: b.readUInt32BE(journal_header_s.h_magic),
    h_blocktype: b.readUInt32BE(journal_header_s.h_blocktype),
    h_sequence: b.readUInt32BE(journal_header_s.h_sequence),
  };
}

/**
 * journal_superblock_s (1024 bytes at journal block 0). v1 (JBD2_SUPERBLOCK_V1) ends after s_errno;
 * the feature fields are valid only in v2 (JBD2_HAS_*_FEATURE checks j_format_version >= 2).
 */
export const journal_superblock_s = {
  s_header: 0x0,
  s_blocksize: 0xc,
  s_maxlen: 0x10,
  s_first: 0x14,
  s_sequence: 0x18,
  s_start: 0x1c,
  s_errno: 0x20,
  s_feature_compat: 0x24,
  s_feature_incompat: 0x28,
  s_feature_ro_compat: 0x2c,
  s_uuid: 0x30,
  s_nr_users: 0x40,
  s_dynsuper: 0x44,
  s_max_transaction: 0x48,
  s_max_trans_data: 0x4c,
  s_checksum_type: 0x50,
  s_padding2: 0x51,
  s_num_fc_blks: 0x54,
  s_head: 0x58,
  s_padding: 0x5c,
  s_checksum: 0xfc,
  s_users: 0x100,
} as const;
export const JOURNAL_SUPERBLOCK_SIZE = 0x400;

/** s_feature_compat. */
export const JBD2_FEATURE_COMPAT_CHECKSUM = 0x1;
/** s_feature_incompat. */
export const JBD2_FEATURE_INCOMPAT_REVOKE = 0x1;
export const JBD2_FEATURE_INCOMPAT_64BIT = 0x2;
export const JBD2_FEATURE_INCOMPAT_ASYNC_COMMIT = 0x4;
export const JBD2_FEATURE_INCOMPAT_CSUM_V2 = 0x8;
export const JBD2_FEATURE_INCOMPAT_CSUM_V3 = 0x10;
export const JBD2_FEATURE_INCOMPAT_FAST_COMMIT = 0x20;
/** JBD2_KNOWN_INCOMPAT_FEATURES: a journal with any other incompat bit is refused, as the kernel does. */
export const JBD2_KNOWN_INCOMPAT_FEATURES =
  JBD2_FEATURE_INCOMPAT_REVOKE |
  JBD2_FEATURE_INCOMPAT_64BIT |
  JBD2_FEATURE_INCOMPAT_ASYNC_COMMIT |
  JBD2_FEATURE_INCOMPAT_CSUM_V2 |
  JBD2_FEATURE_INCOMPAT_CSUM_V3 |
  JBD2_FEATURE_INCOMPAT_FAST_COMMIT;

/** s_checksum_type / h_chksum_type (jbd2.h "Checksum types"). */
export const JBD2_CRC32_CHKSUM = 1;
export const JBD2_MD5_CHKSUM = 2;
export const JBD2_SHA1_CHKSUM = 3;
export const JBD2_CRC32C_CHKSUM = 4;
export const JBD2_CRC32_CHKSUM_SIZE = 4;

/** JBD2_DEFAULT_FAST_COMMIT_BLOCKS: the fast-commit area when s_num_fc_blks is 0. */
export const JBD2_DEFAULT_FAST_COMMIT_BLOCKS = 256;

export interface JournalSuperblock {
  s_header: JournalHeader;
  /** 1 or 2 (from h_blocktype JBD2_SUPERBLOCK_V1 / V2): j_format_version. */
  formatVersion: 1 | 2;
  s_blocksize: number;
  s_maxlen: number;
  s_first: number;
  s_sequence: number;
  s_start: number;
  s_errno: number;
  s_feature_compat: number;
  s_feature_incompat: number;
  s_feature_ro_compat: number;
  s_uuid: Buffer;
  s_nr_users: number;
  s_checksum_type: number;
  s_num_fc_blks: number;
  s_head: number;
  s_checksum: number;
}

/** Decodes journal_superblock_s; checks only what makes it a jbd2 superblock at all. */
export function readJournalSuperblock(b: Buffer): JournalSuperblock {
  if (b.length < JOURNAL_SUPERBLOCK_SIZE) {
    throw new CorruptStructureError('E_JBD2_SUPERBLOCK', `journal_superblock_s: ${b.length} bytes, need ${JOURNAL_SUPERBLOCK_SIZE}`, { structure: 'journal_superblock_s' });
  }
  const h = readJournalHeader(b);
  if (h.h_magic !== JBD2_MAGIC_NUMBER) {
    throw new CorruptStructureError('E_JBD2_SUPERBLOCK', `journal_superblock_s.h_magic is 0x${h.h_magic.toString(16)}, not 0x${JBD2_MAGIC_NUMBER.toString(16)}`, {
      structure: 'journal_superblock_s',
      field: 'h_magic',
      value: h.h_magic,
    });
  }
  if (h.h_blocktype !== JBD2_SUPERBLOCK_V1 && h.h_blocktype !== JBD2_SUPERBLOCK_V2) {
    // jbd2 journal_get_superblock: "unrecognised superblock format ID"
    throw new UnsupportedError('E_JBD2_SUPERBLOCK_VERSION', `journal_superblock_s.h_blocktype ${h.h_blocktype} is not a v1 (3) or v2 (4) superblock`, {
      structure: 'journal_superblock_s',
      field: 'h_blocktype',
      value: h.h_blocktype,
    });
  }
  const v2 = h.h_blocktype === JBD2_SUPERBLOCK_V2;
  const u32 = (off: number): number => b.readUInt32BE(off);
  const L = journal_superblock_s;
  return {
    s_header: h,
    formatVersion: v2 ? 2 : 1,
    s_blocksize: u32(L.s_blocksize),
    s_maxlen: u32(L.s_maxlen),
    s_first: u32(L.s_first),
    s_sequence: u32(L.s_sequence),
    s_start: u32(L.s_start),
    s_errno: b.readInt32BE(L.s_errno),
    // A v1 superblock has no feature words: they read as zero (JBD2_HAS_*_FEATURE).
    s_feature_compat: v2 ? u32(L.s_feature_compat) : 0,
    s_feature_incompat: v2 ? u32(L.s_feature_incompat) : 0,
    s_feature_ro_compat: v2 ? u32(L.s_feature_ro_compat) : 0,
    s_uuid: Buffer.from(b.subarray(L.s_uuid, L.s_uuid + 16)),
    s_nr_users: v2 ? u32(L.s_nr_users) : 0,
    s_checksum_type: v2 ? b.readUInt8(L.s_checksum_type) : 0,
    s_num_fc_blks: v2 ? u32(L.s_num_fc_blks) : 0,
    s_head: v2 ? u32(L.s_head) : 0,
    s_checksum: v2 ? u32(L.s_checksum) : 0,
  };
}

/**
 * journal_block_tag_s (no csum v3): __be32 t_blocknr; __be16 t_checksum; __be16 t_flags;
 * __be32 t_blocknr_high. Its on-disk size is journal_tag_bytes(): 8 (32-bit), 12 (64-bit), plus 2
 * under csum v2 (the checksum halfword then counts).
 */
export const journal_block_tag_s = { t_blocknr: 0x0, t_checksum: 0x4, t_flags: 0x6, t_blocknr_high: 0x8 } as const;
/**
 * journal_block_tag3_s (csum v3): __be32 t_blocknr; __be32 t_flags; __be32 t_blocknr_high;
 * __be32 t_checksum: always 16 bytes. Its t_flags' low halfword sits at offset 6 as in
 * journal_block_tag_s, which is why recovery.c reads be16 at 6 for both.
 */
export const journal_block_tag3_s = { t_blocknr: 0x0, t_flags: 0x4, t_blocknr_high: 0x8, t_checksum: 0xc } as const;
export const JOURNAL_BLOCK_TAG3_SIZE = 16;
/** The 16-byte UUID that follows a tag unless JBD2_FLAG_SAME_UUID. */
export const JOURNAL_TAG_UUID_SIZE = 16;

/** t_flags (jbd2.h "Definitions for the journal tag flags word"). */
export const JBD2_FLAG_ESCAPE = 1;
export const JBD2_FLAG_SAME_UUID = 2;
export const JBD2_FLAG_DELETED = 4;
export const JBD2_FLAG_LAST_TAG = 8;

/** struct jbd2_journal_block_tail { __be32 t_checksum; }: the last 4 bytes of a descriptor/revoke block under csum v2/v3. */
export const JBD2_JOURNAL_BLOCK_TAIL_SIZE = 4;

/** jbd2_journal_revoke_header_s { journal_header_t r_header; __be32 r_count; }: r_count = bytes used, header included. */
export const jbd2_journal_revoke_header_s = { r_header: 0x0, r_count: 0xc } as const;
export const JBD2_REVOKE_HEADER_SIZE = 16;

/**
 * struct commit_header { __be32 h_magic, h_blocktype, h_sequence; unsigned char h_chksum_type,
 * h_chksum_size, h_padding[2]; __be32 h_chksum[JBD2_CHECKSUM_BYTES = 8]; __be64 h_commit_sec;
 * __be32 h_commit_nsec; }
 */
export const commit_header = {
  h_magic: 0x0,
  h_blocktype: 0x4,
  h_sequence: 0x8,
  h_chksum_type: 0xc,
  h_chksum_size: 0xd,
  h_padding: 0xe,
  h_chksum: 0x10,
  h_commit_sec: 0x30,
  h_commit_nsec: 0x38,
} as const;

export interface CommitHeader {
  h_chksum_type: number;
  h_chksum_size: number;
  /** h_chksum[0]: the v1 crc32_be of the transaction, or the v2/v3 crc32c of this block. */
  h_chksum0: number;
  h_commit_sec: bigint;
  h_commit_nsec: number;
}

export function readCommitHeader(b: Buffer): CommitHeader {
  return {
    h_chksum_type: b.readUInt8(commit_header.h_chksum_type),
    h_chksum_size: b.readUInt8(commit_header.h_chksum_size),
    h_chksum0: b.readUInt32BE(commit_header.h_chksum),
    h_commit_sec: b.readBigUInt64BE(commit_header.h_commit_sec),
    h_commit_nsec: b.readUInt32BE(commit_header.h_commit_nsec),
  };
}

/** The features replay needs, decoded once (jbd2_has_feature_*, jbd2_journal_has_csum_v2or3). */
export interface JournalFeatures {
  revoke: boolean;
  is64bit: boolean;
  asyncCommit: boolean;
  csumV1: boolean;
  csumV2: boolean;
  csumV3: boolean;
  fastCommit: boolean;
}

export function journalFeatures(sb: JournalSuperblock): JournalFeatures {
  const inc = sb.s_feature_incompat;
  return {
    revoke: (inc & JBD2_FEATURE_INCOMPAT_REVOKE) !== 0,
    is64bit: (inc & JBD2_FEATURE_INCOMPAT_64BIT) !== 0,
    asyncCommit: (inc & JBD2_FEATURE_INCOMPAT_ASYNC_COMMIT) !== 0,
    csumV1: (sb.s_feature_compat & JBD2_FEATURE_COMPAT_CHECKSUM) !== 0,
    csumV2: (inc & JBD2_FEATURE_INCOMPAT_CSUM_V2) !== 0,
    csumV3: (inc & JBD2_FEATURE_INCOMPAT_CSUM_V3) !== 0,
    fastCommit: (inc & JBD2_FEATURE_INCOMPAT_FAST_COMMIT) !== 0,
  };
}

/** journal_tag_bytes(): the on-disk size of one block tag for these features. */
export function journalTagBytes(f: JournalFeatures): number {
  if (f.csumV3) return JOURNAL_BLOCK_TAG3_SIZE;
  let sz = 12; // sizeof(journal_block_tag_t)
  if (f.csumV2) sz += 2;
  return f.is64bit ? sz : sz - 4;
}
