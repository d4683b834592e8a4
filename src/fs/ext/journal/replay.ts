/**
 * jbd2 journal recovery into memory: what the kernel's fs/jbd2/recovery.c (jbd2_journal_recover)
 * does at mount, with the replayed blocks going to a BlockOverlayStore instead of the disk.
 *
 * The kernel makes three passes over the log:
 *   PASS_SCAN   find the end of the log: the first transaction without a valid commit block
 *               (checksums v1/v2/v3 verified here);
 *   PASS_REVOKE collect the revoke records of the committed transactions;
 *   PASS_REPLAY copy every tagged block of every committed transaction home, unless a revoke
 *               record of the same or a later transaction covers it; later transactions win.
 * We make the same walk once (the scan keeps each descriptor's tags and the positions of revoke
 * blocks), then revoke and replay from that record, reading data blocks again only to copy them.
 *
 * Decisions follow recovery.c (Linux 6.x), so that our view of a crashed image is the view the
 * guest's own kernel would have after mounting it:
 *   - the log starts at s_start with s_sequence and wraps from j_last back to s_first;
 *   - a block with the wrong magic or sequence ends the log; an unknown block type ends it too;
 *   - a commit block whose checksum fails (v1 crc32_be over the transaction; v2/v3 crc32c of the
 *     block) ends the log before that transaction, unless its commit time runs backwards (then it
 *     is stale, and the log ends there all the same);
 *   - a descriptor or revoke block whose checksum fails makes the next commit decide: a commit time
 *     that does not go backwards means real corruption, and the kernel refuses to recover
 *     (E_JBD2_CSUM here); otherwise the log ends;
 *   - a data block whose tag checksum fails is not replayed (the kernel skips it and reports EIO
 *     after replaying the rest): a warning here;
 *   - an escaped block (JBD2_FLAG_ESCAPE) gets its first four bytes back as JBD2_MAGIC_NUMBER.
 *
 * Bounds (every count from the journal is checked before it drives a loop or an allocation):
 * s_maxlen against the journal inode's length; the blocks one scan may walk against the log's
 * length (a descriptor chain that never commits would otherwise cycle the log forever, since the
 * sequence never advances); tags per descriptor likewise; r_count against the block size; distinct
 * revoked blocks against maxRevokeRecords; the overlay's memory against maxOverlayBytes (spill).
 */
import { BoundExceededError, CorruptStructureError, UnsupportedError } from '../../../util/errors.js';
import { checkBound } from '../../../util/bounded.js';
import { crc32cUpdate as crc32c } from '../crc32c.js';
import { BlockOverlayStore, DEFAULT_MAX_OVERLAY_BYTES } from './overlay.js';
import {
  JBD2_COMMIT_BLOCK,
  JBD2_CRC32C_CHKSUM,
  JBD2_CRC32_CHKSUM,
  JBD2_CRC32_CHKSUM_SIZE,
  JBD2_DEFAULT_FAST_COMMIT_BLOCKS,
  JBD2_DESCRIPTOR_BLOCK,
  JBD2_FLAG_ESCAPE,
  JBD2_FLAG_LAST_TAG,
  JBD2_FLAG_SAME_UUID,
  JBD2_JOURNAL_BLOCK_TAIL_SIZE,
  JBD2_KNOWN_INCOMPAT_FEATURES,
  JBD2_MAGIC_NUMBER,
  JBD2_REVOKE_BLOCK,
  JBD2_REVOKE_HEADER_SIZE,
  JOURNAL_HEADER_SIZE,
  JOURNAL_SUPERBLOCK_SIZE,
  JOURNAL_TAG_UUID_SIZE,
  commit_header,
  jbd2_journal_revoke_header_s,
  journal_block_tag3_s,
  journal_block_tag_s,
  journal_superblock_s,
  journalFeatures,
  journalTagBytes,
  readCommitHeader,
  readJournalHeader,
  readJournalSuperblock,
  type JournalFeatures,
  type JournalSuperblock,
} from './structs.js';

/** The journal as replay sees it: its blocks in log order (logical block 0 is the jbd2 superblock). */
export interface JournalSource {
  /** The filesystem's block size; the journal superblock's s_blocksize must equal it. */
  blockSize: number;
  /** Logical block `logical` of the journal (0 <= logical < journalBlocks), blockSize bytes. */
  readJournalBlock(logical: number): Promise<Buffer>;
  /** Blocks the journal inode maps (i_size / blockSize). */
  journalBlocks: number;
  /** Blocks in the filesystem, when known: tags past it are not replayed (a warning). */
  fsBlockCount?: number;
}

export interface ReplayOptions {
  /** Replayed blocks kept in memory; more spill to a temp file (default 64 MiB). */
  maxOverlayBytes?: number;
  /** Where the spill file is made (default os.tmpdir()); it is unlinked at once. */
  spillDir?: string;
  /** Distinct revoked blocks accepted (default 2^21). */
  maxRevokeRecords?: number;
}

export interface JournalReplay {
  /** Replayed filesystem blocks, by filesystem block number: consult before the disk. */
  overlay: BlockOverlayStore;
  /** Committed transactions replayed (info.end_transaction - info.start_transaction). */
  transactions: number;
  /** Distinct filesystem blocks in the overlay. */
  blocks: number;
  /** Block copies made (nr_replays: a block replayed by two transactions counts twice). */
  replayedTags: number;
  /** Revoke records read (nr_revokes) and tagged blocks they suppressed (nr_revoke_hits). */
  revokes: number;
  revokeHits: number;
  /** s_sequence: the first transaction expected in the log. */
  firstSequence: number;
  /** The sequence of the last transaction replayed, or null when none was. */
  lastSequence: number | null;
  /** The transaction whose commit block failed its checksum (journal->j_failed_commit), or null. */
  failedCommit: number | null;
  /** s_start, and the log block after the last commit replayed (below s_start when the log wrapped). */
  logStart: number;
  logEnd: number;
  /** The journal superblock as found. */
  superblock: JournalSuperblock;
  /** Things a user should know (data-block checksum failures, s_errno, fast commits not replayed). */
  warnings: string[];
  /** Releases the overlay (and its spill file). */
  close(): void;
}

/**
 * The kernel's crc32_be(crc, buf) (lib/crc32.c): MSB-first IEEE CRC-32 (polynomial 0x04C11DB7), no
 * inversion in or out: the checksum v1 transaction sum (JBD2_FEATURE_COMPAT_CHECKSUM), seeded ~0.
 * (crc32c, the v2/v3 checksum, is the ext reader's raw crc32cUpdate: jbd2_chksum(j, seed, buf).)
 */
const CRC32_BE_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n << 24;
    for (let k = 0; k < 8; k++) c = c & 0x80000000 ? (c << 1) ^ 0x04c11db7 : c << 1;
    t[n] = c >>> 0;
  }
  return t;
})();

export function crc32Be(crc: number, buf: Uint8Array): number {
  let c = crc >>> 0;
  for (let i = 0; i < buf.length; i++) c = (CRC32_BE_TABLE[((c >>> 24) ^ buf[i]!) & 0xff]! ^ (c << 8)) >>> 0;
  return c;
}

interface Tag {
  /** Journal logical block holding the copy. */
  logBlock: number;
  /** Filesystem block it belongs to. */
  fsBlock: number;
  flags: number;
  checksum: number;
}

interface Transaction {
  sequence: number;
  tags: Tag[];
  revokeBlocks: number[];
}

const DEFAULT_MAX_REVOKE_RECORDS = 1 << 21;

/** tid_gt / tid_geq of jbd2.h: transaction ids compare modulo 2^32. */
const tidGt = (x: number, y: number): boolean => ((x - y) | 0) > 0;


export async function replayJournal(j: JournalSource, opts: ReplayOptions = {}): Promise<JournalReplay> {
  const bs = j.blockSize;
  if (!Number.isSafeInteger(j.journalBlocks) || j.journalBlocks < 2) {
    throw new CorruptStructureError('E_JBD2_LENGTH', `the journal holds ${j.journalBlocks} blocks; a jbd2 journal needs a superblock and a log`, { structure: 'journal inode', field: 'i_size', value: j.journalBlocks });
  }
  const raw = await j.readJournalBlock(0);
  const sb = readJournalSuperblock(raw);
  const f = journalFeatures(sb);
  const geometry = checkSuperblock(sb, f, raw, j);
  const warnings: string[] = [];
  if (sb.s_errno !== 0) warnings.push(`journal superblock records error ${sb.s_errno} (s_errno) from an aborted journal`);
  const overlay = new BlockOverlayStore(bs, opts.maxOverlayBytes ?? DEFAULT_MAX_OVERLAY_BYTES, opts.spillDir);
  const result: JournalReplay = {
    overlay,
    transactions: 0,
    blocks: 0,
    replayedTags: 0,
    revokes: 0,
    revokeHits: 0,
    firstSequence: sb.s_sequence,
    lastSequence: null,
    failedCommit: null,
    logStart: sb.s_start,
    logEnd: sb.s_start,
    superblock: sb,
    warnings,
    close: () => overlay.close(),
  };
  // recovery.c: "s_start ... is always zero if, and only if, the journal was cleanly unmounted".
  if (sb.s_start === 0) return result;
  if (f.fastCommit) warnings.push('journal has the fast_commit feature: fast-commit blocks are not replayed, only full commits');

  try {
    const seed = f.csumV2 || f.csumV3 ? crc32c(0xffffffff, sb.s_uuid) : 0;
    const scan = await scanLog(j, sb, f, geometry, seed);
    const end = scan.endTransaction;
    const committed = scan.transactions.filter((t) => tidGt(end, t.sequence));

    // PASS_REVOKE: a record keeps the highest sequence that revoked the block (jbd2_journal_set_revoke).
    const revoked = new Map<number, number>();
    const maxRevokes = opts.maxRevokeRecords ?? DEFAULT_MAX_REVOKE_RECORDS;
    for (const t of committed) {
      for (const at of t.revokeBlocks) {
        const block = await readLog(j, at, bs);
        for (const fsBlock of revokeRecords(block, f, bs)) {
          const seen = revoked.get(fsBlock);
          if (seen === undefined) {
            if (revoked.size >= maxRevokes) throw new BoundExceededError('jbd2 revoke table', 'records', revoked.size + 1, maxRevokes, { sequence: t.sequence });
            revoked.set(fsBlock, t.sequence);
          } else if (tidGt(t.sequence, seen)) revoked.set(fsBlock, t.sequence);
          result.revokes++;
        }
      }
    }

    // PASS_REPLAY: in log order, so a later transaction's copy of a block replaces an earlier one.
    for (const t of committed) {
      const seqBytes = Buffer.alloc(4);
      seqBytes.writeUInt32BE(t.sequence);
      const seqSeed = f.csumV2 || f.csumV3 ? crc32c(seed, seqBytes) : 0;
      for (const tag of t.tags) {
        // jbd2_journal_test_revoke: revoked unless this transaction is newer than the revoke.
        const rev = revoked.get(tag.fsBlock);
        if (rev !== undefined && !tidGt(t.sequence, rev)) {
          result.revokeHits++;
          continue;
        }
        const data = await readLog(j, tag.logBlock, bs);
        if (f.csumV2 || f.csumV3) {
          // jbd2_block_tag_csum_verify: crc32c(seed, be32 sequence, the block as logged (escaped)).
          const c = crc32c(seqSeed, data);
          const ok = f.csumV3 ? tag.checksum === c : tag.checksum === (c & 0xffff);
          if (!ok) {
            warnings.push(`journal transaction ${t.sequence}: checksum of the copy of block ${tag.fsBlock} (journal block ${tag.logBlock}) does not match its tag; not replayed`);
            continue;
          }
        }
        if (j.fsBlockCount !== undefined && tag.fsBlock >= j.fsBlockCount) {
          warnings.push(`journal transaction ${t.sequence}: block ${tag.fsBlock} lies past the filesystem's ${j.fsBlockCount} blocks; not replayed`);
          continue;
        }
        if (tag.flags & JBD2_FLAG_ESCAPE) data.writeUInt32BE(JBD2_MAGIC_NUMBER, 0);
        overlay.set(tag.fsBlock, data);
        result.replayedTags++;
      }
    }
    result.transactions = (end - sb.s_sequence) >>> 0;
    result.lastSequence = result.transactions > 0 ? (end - 1) >>> 0 : null;
    result.blocks = overlay.size;
    result.logEnd = scan.headBlock;
    result.failedCommit = scan.failedCommit;
    if (scan.failedCommit !== null) {
      // ext4_load_journal: "journal transaction %u is corrupt" and the filesystem is marked with errors.
      warnings.push(`journal transaction ${scan.failedCommit} is corrupt (its commit block fails its checksum): it and later transactions are not replayed`);
    }
    return result;
  } catch (err) {
    overlay.close();
    throw err;
  }
}

interface Geometry {
  /** j_first: the first log block. */
  first: number;
  /** j_last: one past the last log block (the fast-commit area, if any, lies beyond it). */
  last: number;
}

/** What jbd2's journal_get_superblock/load_superblock refuse, refused the same way. */
function checkSuperblock(sb: JournalSuperblock, f: JournalFeatures, raw: Buffer, j: JournalSource): Geometry {
  const S = 'journal_superblock_s';
  if (sb.s_blocksize !== j.blockSize) {
    throw new CorruptStructureError('E_JBD2_SUPERBLOCK', `${S}.s_blocksize ${sb.s_blocksize} differs from the filesystem block size ${j.blockSize}`, { structure: S, field: 's_blocksize', value: sb.s_blocksize, expected: j.blockSize });
  }
  // "journal file too short": the superblock may not claim more blocks than the inode maps.
  checkBound(S, 's_maxlen', sb.s_maxlen, j.journalBlocks);
  const total = sb.s_maxlen;
  if (sb.s_first === 0 || sb.s_first >= total) {
    throw new CorruptStructureError('E_JBD2_SUPERBLOCK', `${S}.s_first ${sb.s_first} lies outside the journal's ${total} blocks`, { structure: S, field: 's_first', value: sb.s_first, limit: total });
  }
  if (sb.s_feature_incompat & ~JBD2_KNOWN_INCOMPAT_FEATURES) {
    throw new UnsupportedError('E_JBD2_FEATURE', `${S}.s_feature_incompat 0x${sb.s_feature_incompat.toString(16)} has features this reader does not know`, { structure: S, field: 's_feature_incompat', value: sb.s_feature_incompat });
  }
  if (f.csumV2 && f.csumV3) {
    throw new CorruptStructureError('E_JBD2_SUPERBLOCK', `${S}: checksum v2 and v3 are both set`, { structure: S, field: 's_feature_incompat', value: sb.s_feature_incompat });
  }
  if (f.csumV1 && (f.csumV2 || f.csumV3)) {
    throw new CorruptStructureError('E_JBD2_SUPERBLOCK', `${S}: checksum v1 and v2/v3 are both set`, { structure: S, field: 's_feature_compat', value: sb.s_feature_compat });
  }
  if (f.csumV2 || f.csumV3) {
    if (sb.s_checksum_type !== JBD2_CRC32C_CHKSUM) {
      throw new CorruptStructureError('E_JBD2_SUPERBLOCK', `${S}.s_checksum_type ${sb.s_checksum_type} is not crc32c (4)`, { structure: S, field: 's_checksum_type', value: sb.s_checksum_type });
    }
    // jbd2_superblock_csum: crc32c(~0, the 1024-byte superblock with s_checksum zeroed).
    const copy = Buffer.from(raw.subarray(0, JOURNAL_SUPERBLOCK_SIZE));
    copy.writeUInt32BE(0, journal_superblock_s.s_checksum);
    const calc = crc32c(0xffffffff, copy);
    if (calc !== sb.s_checksum) {
      throw new CorruptStructureError('E_JBD2_CSUM', `${S}.s_checksum 0x${sb.s_checksum.toString(16)} does not match 0x${calc.toString(16)}`, { structure: S, field: 's_checksum', value: sb.s_checksum, expected: calc });
    }
  }
  let last = total;
  if (f.fastCommit) {
    const fc = sb.s_num_fc_blks || JBD2_DEFAULT_FAST_COMMIT_BLOCKS;
    checkBound(S, 's_num_fc_blks', fc, total - sb.s_first - 1);
    last = total - fc;
  }
  if (sb.s_start !== 0 && (sb.s_start < sb.s_first || sb.s_start >= last)) {
    throw new CorruptStructureError('E_JBD2_SUPERBLOCK', `${S}.s_start ${sb.s_start} lies outside the log [${sb.s_first}, ${last})`, { structure: S, field: 's_start', value: sb.s_start, first: sb.s_first, last });
  }
  return { first: sb.s_first, last };
}

async function readLog(j: JournalSource, logical: number, bs: number): Promise<Buffer> {
  const b = await j.readJournalBlock(logical);
  if (b.length !== bs) throw new CorruptStructureError('E_JBD2_READ', `journal block ${logical}: read ${b.length} bytes, expected ${bs}`, { structure: 'journal', field: 'block', value: logical });
  return b;
}

/** jbd2_descriptor_block_csum_verify (also used for revoke blocks): crc32c(seed, block with the tail zeroed). */
function tailChecksumOk(b: Buffer, seed: number): boolean {
  const at = b.length - JBD2_JOURNAL_BLOCK_TAIL_SIZE;
  const provided = b.readUInt32BE(at);
  const copy = Buffer.from(b);
  copy.writeUInt32BE(0, at);
  return crc32c(seed, copy) === provided;
}

/** jbd2_commit_block_csum_verify: crc32c(seed, block with h_chksum[0] zeroed). */
function commitChecksumOk(b: Buffer, seed: number): boolean {
  const provided = b.readUInt32BE(commit_header.h_chksum);
  const copy = Buffer.from(b);
  copy.writeUInt32BE(0, commit_header.h_chksum);
  return crc32c(seed, copy) === provided;
}

/** The tags of a descriptor block, walked as recovery.c's count_tags / PASS_REPLAY loop walk them. */
function descriptorTags(b: Buffer, f: JournalFeatures): Array<Omit<Tag, 'logBlock'>> {
  const tagBytes = journalTagBytes(f);
  const size = b.length - (f.csumV2 || f.csumV3 ? JBD2_JOURNAL_BLOCK_TAIL_SIZE : 0);
  const tags: Array<Omit<Tag, 'logBlock'>> = [];
  let off = JOURNAL_HEADER_SIZE;
  while (off + tagBytes <= size) {
    const flags = b.readUInt16BE(off + journal_block_tag_s.t_flags);
    let fsBlock = b.readUInt32BE(off + journal_block_tag_s.t_blocknr);
    if (f.is64bit) {
      const high = b.readUInt32BE(off + journal_block_tag_s.t_blocknr_high);
      const full = high * 2 ** 32 + fsBlock;
      if (!Number.isSafeInteger(full)) throw new BoundExceededError('journal_block_tag_s', 't_blocknr_high', BigInt(high) << 32n, BigInt(Number.MAX_SAFE_INTEGER));
      fsBlock = full;
    }
    const checksum = f.csumV3 ? b.readUInt32BE(off + journal_block_tag3_s.t_checksum) : f.csumV2 ? b.readUInt16BE(off + journal_block_tag_s.t_checksum) : 0;
    tags.push({ fsBlock, flags, checksum });
    off += tagBytes;
    if (!(flags & JBD2_FLAG_SAME_UUID)) off += JOURNAL_TAG_UUID_SIZE;
    if (flags & JBD2_FLAG_LAST_TAG) break;
  }
  return tags;
}

/** scan_revoke_records: r_count bytes (header included) of 4- or 8-byte big-endian block numbers. */
function revokeRecords(b: Buffer, f: JournalFeatures, bs: number): number[] {
  const rcount = b.readUInt32BE(jbd2_journal_revoke_header_s.r_count);
  const csumSize = f.csumV2 || f.csumV3 ? JBD2_JOURNAL_BLOCK_TAIL_SIZE : 0;
  // The kernel fails recovery with -EINVAL here.
  checkBound('jbd2_journal_revoke_header_s', 'r_count', rcount, bs - csumSize);
  const recordLen = f.is64bit ? 8 : 4;
  const out: number[] = [];
  for (let off = JBD2_REVOKE_HEADER_SIZE; off + recordLen <= rcount; off += recordLen) {
    if (recordLen === 4) out.push(b.readUInt32BE(off));
    else {
      const v = b.readBigUInt64BE(off);
      if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new BoundExceededError('jbd2_journal_revoke_header_s', 'record', v, Number.MAX_SAFE_INTEGER);
      out.push(Number(v));
    }
  }
  return out;
}

interface Scan {
  transactions: Transaction[];
  endTransaction: number;
  /** info->head_block: the log block after the last commit accepted. */
  headBlock: number;
  /** j_failed_commit: the transaction whose commit block failed its checksum. */
  failedCommit: number | null;
}

/** PASS_SCAN: walks the log from s_start and finds info->end_transaction. */
async function scanLog(j: JournalSource, sb: JournalSuperblock, f: JournalFeatures, g: Geometry, seed: number): Promise<Scan> {
  const bs = j.blockSize;
  const logLength = g.last - g.first;
  const wrap = (x: number): number => (x >= g.last ? x - logLength : x);
  const csum23 = f.csumV2 || f.csumV3;

  let next = sb.s_sequence;
  let pos = sb.s_start;
  let scanned = 0;
  let endTransaction: number | null = null;
  let needCheckCommitTime = false;
  let lastCommitTime = 0n;
  let crc32Sum = 0xffffffff;
  const transactions: Transaction[] = [];
  let current: Transaction | null = null;
  let headBlock = sb.s_start;
  let failedCommit: number | null = null;
  const txn = (): Transaction => {
    if (!current || current.sequence !== next) {
      current = { sequence: next, tags: [], revokeBlocks: [] };
      transactions.push(current);
    }
    return current;
  };
  // A valid log never holds more blocks than the log area: past that the journal is cycling.
  const consume = (n: number): void => {
    scanned += n;
    if (scanned > logLength) throw new BoundExceededError('jbd2 log', 'blocks scanned from s_start', scanned, logLength, { s_start: sb.s_start, sequence: next });
  };

  scan: for (;;) {
    // When the whole log area has been walked, the next block may only end the log.
    const full = scanned >= logLength;
    scanned++;
    const at = pos;
    const b = await readLog(j, at, bs);
    pos = wrap(pos + 1);
    const h = readJournalHeader(b);
    if (h.h_magic !== JBD2_MAGIC_NUMBER || h.h_sequence !== next) break;
    if (full) throw new BoundExceededError('jbd2 log', 'blocks scanned from s_start', scanned, logLength, { s_start: sb.s_start, sequence: next });

    switch (h.h_blocktype) {
      case JBD2_DESCRIPTOR_BLOCK: {
        // PASS_SCAN can see stale blocks of an older pass through the log: the commit decides.
        if (csum23 && !tailChecksumOk(b, seed)) needCheckCommitTime = true;
        const tags = descriptorTags(b, f);
        if (tags.length > logLength) throw new BoundExceededError('journal descriptor block', 'tags', tags.length, logLength, { block: at });
        const withBlocks: Tag[] = [];
        for (const t of tags) {
          withBlocks.push({ ...t, logBlock: pos });
          pos = wrap(pos + 1);
        }
        consume(tags.length);
        if (f.csumV1 && !needCheckCommitTime && endTransaction === null) {
          // calc_chksums: crc32_be over the descriptor and each data block it describes.
          crc32Sum = crc32Be(crc32Sum, b);
          for (const t of withBlocks) crc32Sum = crc32Be(crc32Sum, await readLog(j, t.logBlock, bs));
        }
        txn().tags.push(...withBlocks);
        continue;
      }
      case JBD2_COMMIT_BLOCK: {
        const ch = readCommitHeader(b);
        const commitTime = ch.h_commit_sec;
        if (needCheckCommitTime) {
          if (commitTime >= lastCommitTime) {
            throw new CorruptStructureError('E_JBD2_CSUM', `journal transaction ${next}: a descriptor or revoke block fails its checksum (the kernel refuses to recover this journal)`, {
              structure: 'jbd2_journal_block_tail',
              field: 't_checksum',
              sequence: next,
            });
          }
          break scan; // ignore_crc_mismatch: stale blocks of an older log; the log ends here.
        }
        let checksumError = false;
        if (f.csumV1) {
          if (endTransaction !== null) {
            failedCommit = endTransaction;
            break scan;
          }
          const v1ok =
            (crc32Sum === ch.h_chksum0 && ch.h_chksum_type === JBD2_CRC32_CHKSUM && ch.h_chksum_size === JBD2_CRC32_CHKSUM_SIZE) ||
            (ch.h_chksum_type === 0 && ch.h_chksum_size === 0 && ch.h_chksum0 === 0);
          if (!v1ok) checksumError = true;
          else crc32Sum = 0xffffffff;
        }
        if (!checksumError && csum23 && !commitChecksumOk(b, seed)) checksumError = true;
        if (checksumError) {
          if (commitTime < lastCommitTime) break scan;
          endTransaction = next;
          // journal->j_failed_commit: ext4 then marks the filesystem as having errors.
          failedCommit = next;
          if (!f.asyncCommit) break scan;
        }
        lastCommitTime = commitTime;
        if (endTransaction === null) headBlock = pos;
        txn();
        next = (next + 1) >>> 0;
        continue;
      }
      case JBD2_REVOKE_BLOCK:
        if (csum23 && !tailChecksumOk(b, seed)) needCheckCommitTime = true;
        txn().revokeBlocks.push(at);
        continue;
      default:
        break scan; // "Unrecognised magic %d, end of scan."
    }
  }
  const end = endTransaction ?? next;
  return { transactions, endTransaction: end, headBlock, failedCommit };
}
