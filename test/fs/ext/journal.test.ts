/**
 * jbd2 replay into memory (src/fs/ext/journal) against the real recovery: e2fsck's journal replay
 * (e2fsprogs shares fs/jbd2/recovery.c with the kernel) of a COPY of each image, block by block, on
 * journals written by debugfs (jo/jw/jc) and by the kernel itself (a crashed loop mount whose log
 * wraps); damaged copies are judged the same way. Crafted journals in Buffers prove each bound and
 * each recovery rule the images cannot reach. The cached images stay byte-identical.
 */
import t from 'tap';
import type * as Tap from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, openSync, readSync, writeSync, closeSync, rmSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { image, requireTool, fingerprint } from '../../helpers/images.js';
import { replayJournal, crc32Be, type JournalSource, type JournalReplay, type ReplayOptions } from '../../../src/fs/ext/journal/replay.js';
import { BlockOverlayStore, overlayVolume } from '../../../src/fs/ext/journal/overlay.js';
import { crc32cUpdate } from '../../../src/fs/ext/crc32c.js';
import * as S from '../../../src/fs/ext/journal/structs.js';
import { SnapferryError } from '../../../src/util/errors.js';
import { openExtRecovered } from '../../../src/fs/ext/recover.js';
import { checkAgainstTree } from '../../conformance/fs.js';
import { mountRo, volumeOf } from './helpers.js';

requireTool('debugfs', 'dumpe2fs', 'e2fsck', 'mkfs.ext4', 'mount', 'umount');
const DIR = image('ext-journal');
const NAMES = ['ext4-v3', 'ext4-v2-1k', 'ext3', 'ext4-64', 'kernel-wrap'] as const;
const sources = NAMES.map((n) => join(DIR, `${n}.img`));
const before = await fingerprint(sources);
const scratch = mkdtempSync(join(tmpdir(), 'snapferry-journal-test-'));
t.teardown(() => rmSync(scratch, { recursive: true, force: true }));

// ---------- what the real tools say about an image ----------

interface ImageFacts {
  path: string;
  bs: number;
  blockCount: number;
  /** Physical block of each logical journal block (debugfs stat <8>: the journal inode's map). */
  journal: number[];
}

function run(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'ignore'] }).toString();
}

function facts(path: string): ImageFacts {
  const h = run('dumpe2fs', ['-h', path]);
  const bs = Number(/Block size:\s+(\d+)/.exec(h)![1]);
  const blockCount = Number(/Block count:\s+(\d+)/.exec(h)![1]);
  const journal: number[] = [];
  // "(0-9):13-22, (IND):734, (10-24):24-38": logical ranges to physical ranges; (IND)/(ETB) skipped.
  for (const m of run('debugfs', ['-R', 'stat <8>', path]).matchAll(/\((\d+)(?:-(\d+))?\):(\d+)(?:-\d+)?/g)) {
    const l0 = Number(m[1]);
    const l1 = m[2] ? Number(m[2]) : l0;
    for (let l = l0; l <= l1; l++) journal[l] = Number(m[3]) + (l - l0);
  }
  return { path, bs, blockCount, journal };
}

/** Log positions from debugfs logdump: [sequence, type, logical block]. */
function logdump(path: string): Array<{ seq: number; type: number; block: number }> {
  return [...run('debugfs', ['-R', 'logdump', path]).matchAll(/Found expected sequence (\d+), type (\d+) \([^)]*\) at block (\d+)/g)].map((m) => ({
    seq: Number(m[1]),
    type: Number(m[2]),
    block: Number(m[3]),
  }));
}

function blockReader(path: string, bs: number): { read(b: number): Buffer; close(): void } {
  const fd = openSync(path, 'r');
  return {
    read(b) {
      const x = Buffer.alloc(bs);
      readSync(fd, x, 0, bs, b * bs);
      return x;
    },
    close: () => closeSync(fd),
  };
}

function journalSource(f: ImageFacts, path = f.path): JournalSource & { close(): void } {
  const r = blockReader(path, f.bs);
  return { blockSize: f.bs, journalBlocks: f.journal.length, fsBlockCount: f.blockCount, readJournalBlock: async (l) => r.read(f.journal[l]!), close: r.close };
}

/** A copy of `path` recovered by e2fsck's journal replay only (-E journal_only): the oracle. */
function e2fsckRecovered(path: string, name: string): { path: string; output: string } {
  const copy = join(scratch, `${name}.recovered.img`);
  copyFileSync(path, copy);
  const r = spawnSync('e2fsck', ['-E', 'journal_only', '-y', copy], { encoding: 'utf8' });
  if (r.status === null || r.status > 1) throw new Error(`e2fsck -E journal_only exited ${r.status}: ${r.stdout}${r.stderr}`);
  return { path: copy, output: r.stdout + r.stderr };
}

/** Flips one byte of a copy: the damaged image both e2fsck and we read. */
function damaged(path: string, name: string, byteOffset: number): string {
  const copy = join(scratch, `${name}.damaged.img`);
  copyFileSync(path, copy);
  const fd = openSync(copy, 'r+');
  const b = Buffer.alloc(1);
  readSync(fd, b, 0, 1, byteOffset);
  b[0] = b[0]! ^ 0xff;
  writeSync(fd, b, 0, 1, byteOffset);
  closeSync(fd);
  return copy;
}

// Fields e2fsck rewrites in the superblock it writes after replaying (write time, kbytes written,
// the RECOVER flag it clears, the checksum over them): masked when the superblock block is compared.
function maskSuperblock(block: Buffer, bs: number, errorsExpected: boolean): Buffer {
  const m = Buffer.from(block);
  const at = bs === 1024 ? 0 : 1024;
  // After a journal checksum failure e2fsck (like ext4_load_journal) marks s_state not clean, with errors.
  if (errorsExpected) m.fill(0, at + 0x3a, at + 0x3c);
  m.fill(0, at + 0x30, at + 0x34); // s_wtime
  m[at + 0x60] = m[at + 0x60]! & ~0x4; // s_feature_incompat & ~EXT4_FEATURE_INCOMPAT_RECOVER
  m.fill(0, at + 0x178, at + 0x180); // s_kbytes_written
  m[at + 0x274] = 0; // s_wtime_hi
  m.fill(0, at + 0x3fc, at + 0x400); // s_checksum
  return m;
}

/**
 * Every block: where the overlay has it, it must equal the recovered copy's; where it does not,
 * the original must equal the recovered copy (only the journal superblock, which e2fsck resets,
 * and the ext4 superblock, compared masked, may differ).
 */
function compareWithRecovered(f: ImageFacts, replay: JournalReplay, recovered: string): { wrong: number[]; unexplained: number[]; compared: number } {
  const orig = blockReader(f.path, f.bs);
  const rec = blockReader(recovered, f.bs);
  const sbBlock = f.bs === 1024 ? 1 : 0;
  const wrong: number[] = [];
  const unexplained: number[] = [];
  try {
    for (let b = 0; b < f.blockCount; b++) {
      const r = rec.read(b);
      const mine = replay.overlay.get(b) ?? orig.read(b);
      const errs = replay.warnings.length > 0;
      const same = b === sbBlock ? maskSuperblock(mine, f.bs, errs).equals(maskSuperblock(r, f.bs, errs)) : mine.equals(r);
      if (same || b === f.journal[0]) continue;
      if (b === sbBlock && process.env.JOURNAL_TEST_DEBUG) {
        const x = maskSuperblock(mine, f.bs, errs), y = maskSuperblock(r, f.bs, errs);
        console.error('superblock differs at', [...x.keys()].filter((i) => x[i] !== y[i]).map((i) => (i - (f.bs === 1024 ? 0 : 1024)).toString(16)).join(' '));
      }
      (replay.overlay.has(b) ? wrong : unexplained).push(b);
    }
  } finally {
    orig.close();
    rec.close();
  }
  return { wrong, unexplained, compared: f.blockCount };
}

async function replayImage(f: ImageFacts, path = f.path, opts?: ReplayOptions): Promise<JournalReplay> {
  const src = journalSource(f, path);
  try {
    return await replayJournal(src, opts);
  } finally {
    src.close();
  }
}

// ---------- real images against e2fsck's replay ----------

const expectedTransactions: Record<string, number | null> = {
  'ext4-v3': 4, // T1 T2 T3(revoke) T4(rewrite); T5 has no commit block
  'ext4-v2-1k': 2,
  ext3: 4,
  'ext4-64': 2,
  'kernel-wrap': null, // whatever the kernel committed: e2fsck decides
};

for (const name of NAMES) {
  t.test(`${name}: the overlay equals e2fsck's replay of a copy, block for block`, async (t) => {
    const f = facts(join(DIR, `${name}.img`));
    const replay = await replayImage(f);
    t.teardown(() => replay.close());
    const oracle = e2fsckRecovered(f.path, name);
    t.match(oracle.output, /recovering journal/, 'e2fsck did replay the journal');
    const cmp = compareWithRecovered(f, replay, oracle.path);
    t.same(cmp.wrong, [], 'every replayed block equals the recovered copy');
    t.same(cmp.unexplained, [], 'every block the recovery changed is in the overlay');
    t.ok(replay.blocks > 10, `${replay.blocks} blocks replayed from ${replay.transactions} transactions`);
    if (expectedTransactions[name] !== null) t.equal(replay.transactions, expectedTransactions[name], 'committed transactions');
    t.equal(replay.warnings.length, 0, 'no warnings');
    // The last sequence debugfs logdump shows a commit for is the last we replay.
    const commits = logdump(f.path).filter((e) => e.type === S.JBD2_COMMIT_BLOCK);
    t.equal(replay.lastSequence, commits.at(-1)!.seq, 'last transaction replayed = last commit in logdump');
    if (name === 'kernel-wrap') t.ok(replay.logEnd < replay.logStart, `the kernel's log wraps (s_start ${replay.logStart}, ends at ${replay.logEnd})`);
    if (existsSync(join(DIR, `${name}.revoked`))) {
      const victim = Number(readFileSync(join(DIR, `${name}.revoked`), 'utf8'));
      t.ok(replay.revokeHits >= 1, `revoke records suppressed ${replay.revokeHits} copies`);
      t.ok(replay.overlay.has(victim), 'the revoked block is replayed from the transaction after the revoke');
    }
  });
}

t.test('replay reaches the later state debugfs made (ext4-v2-1k, ext4-64)', async (t) => {
  for (const name of ['ext4-v2-1k', 'ext4-64']) {
    const f = facts(join(DIR, `${name}.img`));
    const replay = await replayImage(f);
    const fin = blockReader(join(DIR, `${name}.final.img`), f.bs);
    const orig = blockReader(f.path, f.bs);
    const journalSet = new Set(f.journal);
    const differ: number[] = [];
    for (let b = 0; b < f.blockCount; b++) {
      if (journalSet.has(b)) continue; // the final image's journal is empty
      if (!(replay.overlay.get(b) ?? orig.read(b)).equals(fin.read(b))) differ.push(b);
    }
    fin.close();
    orig.close();
    replay.close();
    t.same(differ, [], `${name}: every non-journal block equals the final image`);
  }
});

t.test('a tiny overlay budget spills to disk and still equals the recovery (kernel-wrap)', async (t) => {
  const f = facts(join(DIR, 'kernel-wrap.img'));
  const replay = await replayImage(f, f.path, { maxOverlayBytes: 4 * f.bs, spillDir: scratch });
  t.teardown(() => replay.close());
  t.ok(replay.overlay.memoryBytes <= 4 * f.bs, `memory ${replay.overlay.memoryBytes} bytes within the budget`);
  t.ok(replay.overlay.spilledBlocks > 0, `${replay.overlay.spilledBlocks} blocks spilled`);
  const cmp = compareWithRecovered(f, replay, e2fsckRecovered(f.path, 'kernel-wrap-spill').path);
  t.same(cmp.wrong, []);
  t.same(cmp.unexplained, []);
});

t.test('damaged journals are judged as e2fsck judges them', async (t) => {
  t.test('ext4-v3: a bad commit checksum in T2 ends the log after T1', async (t) => {
    const f = facts(join(DIR, 'ext4-v3.img'));
    const commit2 = logdump(f.path).find((e) => e.seq === 2 && e.type === S.JBD2_COMMIT_BLOCK)!;
    const path = damaged(f.path, 'v3-commit', f.journal[commit2.block]! * f.bs + 0x100);
    const replay = await replayImage(f, path);
    t.teardown(() => replay.close());
    t.equal(replay.transactions, 1, 'only T1 is replayed');
    t.equal(replay.failedCommit, 2, 'T2 is the failed commit');
    t.match(replay.warnings, [/journal transaction 2 is corrupt/]);
    const cmp = compareWithRecovered({ ...f, path }, replay, e2fsckRecovered(path, 'v3-commit').path);
    t.same(cmp.wrong, []);
    t.same(cmp.unexplained, []);
  });
  t.test('ext3 (no checksums): a torn commit block (bad magic) leaves T2 uncommitted', async (t) => {
    const f = facts(join(DIR, 'ext3.img'));
    const commit2 = logdump(f.path).find((e) => e.seq === 2 && e.type === S.JBD2_COMMIT_BLOCK)!;
    const path = damaged(f.path, 'ext3-commit', f.journal[commit2.block]! * f.bs);
    const replay = await replayImage(f, path);
    t.teardown(() => replay.close());
    t.equal(replay.transactions, 1);
    const cmp = compareWithRecovered({ ...f, path }, replay, e2fsckRecovered(path, 'ext3-commit').path);
    t.same(cmp.wrong, []);
    t.same(cmp.unexplained, []);
  });
  t.test('ext4-v3: a data block failing its tag checksum is skipped, the rest replayed', async (t) => {
    const f = facts(join(DIR, 'ext4-v3.img'));
    const desc1 = logdump(f.path).find((e) => e.seq === 1 && e.type === S.JBD2_DESCRIPTOR_BLOCK)!;
    const path = damaged(f.path, 'v3-data', f.journal[desc1.block + 3]! * f.bs + 77);
    const replay = await replayImage(f, path);
    t.teardown(() => replay.close());
    t.equal(replay.warnings.length, 1, 'one warning');
    t.match(replay.warnings[0], /does not match its tag; not replayed/);
    const oracle = e2fsckRecovered(path, 'v3-data');
    t.match(oracle.output, /Invalid checksum recovering data block/, 'e2fsck skipped it too');
    const cmp = compareWithRecovered({ ...f, path }, replay, oracle.path);
    t.same(cmp.wrong, []);
    t.same(cmp.unexplained, []);
  });
  t.test('ext4-v3: a descriptor failing its checksum before a later commit: recovery refused', async (t) => {
    const f = facts(join(DIR, 'ext4-v3.img'));
    const desc2 = logdump(f.path).find((e) => e.seq === 2 && e.type === S.JBD2_DESCRIPTOR_BLOCK)!;
    const path = damaged(f.path, 'v3-desc', f.journal[desc2.block]! * f.bs + f.bs - 100);
    await t.rejects(replayImage(f, path), { code: 'E_JBD2_CSUM' });
    const oracle = e2fsckRecovered(path, 'v3-desc');
    t.match(oracle.output, /Journal checksum error/, 'e2fsck refuses the same journal');
  });
});

// ---------- crafted journals ----------

interface CraftTag {
  fs: number;
  data?: Buffer;
  flags?: number;
  badChecksum?: boolean;
}
type CraftRecord =
  | { kind: 'desc'; seq: number; tags: CraftTag[]; badChecksum?: boolean }
  | { kind: 'commit'; seq: number; time?: bigint; badChecksum?: boolean; v1?: 'good' | 'bad' }
  | { kind: 'revoke'; seq: number; blocks: number[]; rcount?: number }
  | { kind: 'raw'; data: Buffer };

interface CraftOptions {
  bs?: number;
  maxlen?: number;
  first?: number;
  start?: number;
  sequence?: number;
  incompat?: number;
  compat?: number;
  version?: 1 | 2;
  journalBlocks?: number;
  badSuperblockChecksum?: boolean;
}

/**
 * A jbd2 journal in a Buffer, written from the structures of jbd2.h: records are laid out from
 * s_start (wrapping at s_maxlen to s_first) with the checksums the kernel's commit path writes.
 */
function craft(records: CraftRecord[], o: CraftOptions = {}): { source: JournalSource; blocks: Buffer[] } {
  const bs = o.bs ?? 1024;
  const maxlen = o.maxlen ?? 64;
  const first = o.first ?? 1;
  const incompat = o.incompat ?? S.JBD2_FEATURE_INCOMPAT_REVOKE;
  const compat = o.compat ?? 0;
  const f = S.journalFeatures({ s_feature_incompat: incompat, s_feature_compat: compat } as S.JournalSuperblock);
  const csum23 = f.csumV2 || f.csumV3;
  const uuid = Buffer.from('00112233445566778899aabbccddeeff', 'hex');
  const seed = crc32cUpdate(0xffffffff, uuid);
  const blocks = Array.from({ length: o.journalBlocks ?? maxlen }, () => Buffer.alloc(bs));
  const sb = blocks[0]!;
  const L = S.journal_superblock_s;
  sb.writeUInt32BE(S.JBD2_MAGIC_NUMBER, 0);
  sb.writeUInt32BE(o.version === 1 ? S.JBD2_SUPERBLOCK_V1 : S.JBD2_SUPERBLOCK_V2, 4);
  sb.writeUInt32BE(bs, L.s_blocksize);
  sb.writeUInt32BE(maxlen, L.s_maxlen);
  sb.writeUInt32BE(first, L.s_first);
  sb.writeUInt32BE(o.sequence ?? 1, L.s_sequence);
  sb.writeUInt32BE(o.start ?? first, L.s_start);
  sb.writeUInt32BE(compat, L.s_feature_compat);
  sb.writeUInt32BE(incompat, L.s_feature_incompat);
  uuid.copy(sb, L.s_uuid);
  sb.writeUInt32BE(1, L.s_nr_users);
  if (csum23) {
    sb.writeUInt8(S.JBD2_CRC32C_CHKSUM, L.s_checksum_type);
    sb.writeUInt32BE((crc32cUpdate(0xffffffff, sb.subarray(0, 1024)) ^ (o.badSuperblockChecksum ? 1 : 0)) >>> 0, L.s_checksum);
  }
  let pos = o.start || first; // a clean journal (s_start 0) still gets its records after the superblock
  const put = (b: Buffer): void => {
    b.copy(blocks[pos]!);
    pos = pos + 1 >= maxlen ? first : pos + 1;
  };
  const header = (type: number, seq: number): Buffer => {
    const b = Buffer.alloc(bs);
    b.writeUInt32BE(S.JBD2_MAGIC_NUMBER, 0);
    b.writeUInt32BE(type, 4);
    b.writeUInt32BE(seq >>> 0, 8);
    return b;
  };
  const tail = (b: Buffer, bad?: boolean): void => {
    if (!csum23) return;
    b.writeUInt32BE(0, bs - 4);
    b.writeUInt32BE((crc32cUpdate(seed, b) ^ (bad ? 1 : 0)) >>> 0, bs - 4);
  };
  const tagBytes = S.journalTagBytes(f);
  let v1sum = 0xffffffff;
  for (const r of records) {
    if (r.kind === 'raw') put(r.data);
    else if (r.kind === 'desc') {
      const d = header(S.JBD2_DESCRIPTOR_BLOCK, r.seq);
      let off = S.JOURNAL_HEADER_SIZE;
      const datas: Buffer[] = [];
      r.tags.forEach((tag, i) => {
        const data = tag.data ?? Buffer.alloc(bs, (tag.fs * 7 + r.seq) & 0xff);
        let flags = (tag.flags ?? 0) | (i > 0 ? S.JBD2_FLAG_SAME_UUID : 0) | (i === r.tags.length - 1 ? S.JBD2_FLAG_LAST_TAG : 0);
        const logged = Buffer.from(data);
        if (logged.readUInt32BE(0) === S.JBD2_MAGIC_NUMBER) {
          logged.writeUInt32BE(0, 0); // the commit path escapes the block
          flags |= S.JBD2_FLAG_ESCAPE;
        }
        d.writeUInt32BE(tag.fs % 2 ** 32, off);
        if (f.is64bit) d.writeUInt32BE(Math.floor(tag.fs / 2 ** 32), off + 8);
        if (csum23) {
          const seqb = Buffer.alloc(4);
          seqb.writeUInt32BE(r.seq >>> 0);
          const c = (crc32cUpdate(crc32cUpdate(seed, seqb), logged) ^ (tag.badChecksum ? 1 : 0)) >>> 0;
          if (f.csumV3) d.writeUInt32BE(c, off + S.journal_block_tag3_s.t_checksum);
          else d.writeUInt16BE(c & 0xffff, off + S.journal_block_tag_s.t_checksum);
        }
        if (f.csumV3) d.writeUInt32BE(flags, off + S.journal_block_tag3_s.t_flags);
        else d.writeUInt16BE(flags, off + S.journal_block_tag_s.t_flags);
        off += tagBytes + (i === 0 ? 16 : 0);
        datas.push(logged);
      });
      tail(d, r.badChecksum);
      put(d);
      v1sum = crc32Be(v1sum, d);
      for (const x of datas) {
        put(x);
        v1sum = crc32Be(v1sum, x);
      }
    } else if (r.kind === 'revoke') {
      const b = header(S.JBD2_REVOKE_BLOCK, r.seq);
      const len = f.is64bit ? 8 : 4;
      r.blocks.forEach((x, i) => (len === 8 ? b.writeBigUInt64BE(BigInt(x), 16 + i * 8) : b.writeUInt32BE(x, 16 + i * 4)));
      b.writeUInt32BE(r.rcount ?? 16 + r.blocks.length * len, 12);
      tail(b);
      put(b);
    } else {
      const b = header(S.JBD2_COMMIT_BLOCK, r.seq);
      b.writeBigUInt64BE(r.time ?? 1000n, S.commit_header.h_commit_sec);
      if (r.v1) {
        b.writeUInt8(S.JBD2_CRC32_CHKSUM, S.commit_header.h_chksum_type);
        b.writeUInt8(S.JBD2_CRC32_CHKSUM_SIZE, S.commit_header.h_chksum_size);
        b.writeUInt32BE((v1sum ^ (r.v1 === 'bad' ? 1 : 0)) >>> 0, S.commit_header.h_chksum);
        v1sum = 0xffffffff;
      }
      if (csum23) b.writeUInt32BE((crc32cUpdate(seed, b) ^ (r.badChecksum ? 1 : 0)) >>> 0, S.commit_header.h_chksum);
      put(b);
    }
  }
  return {
    blocks,
    source: { blockSize: bs, journalBlocks: blocks.length, readJournalBlock: async (l) => Buffer.from(blocks[l]!) },
  };
}

const fill = (bs: number, v: number): Buffer => Buffer.alloc(bs, v);
const V3 = S.JBD2_FEATURE_INCOMPAT_REVOKE | S.JBD2_FEATURE_INCOMPAT_64BIT | S.JBD2_FEATURE_INCOMPAT_CSUM_V3;
const V2 = S.JBD2_FEATURE_INCOMPAT_REVOKE | S.JBD2_FEATURE_INCOMPAT_CSUM_V2;

t.test('crafted: recovery rules', async (t) => {
  t.test('an uncommitted transaction is not applied; later transactions override earlier ones', async (t) => {
    const { source } = craft([
      { kind: 'desc', seq: 1, tags: [{ fs: 100, data: fill(1024, 1) }, { fs: 101, data: fill(1024, 1) }] },
      { kind: 'commit', seq: 1 },
      { kind: 'desc', seq: 2, tags: [{ fs: 101, data: fill(1024, 2) }] },
      { kind: 'commit', seq: 2 },
      { kind: 'desc', seq: 3, tags: [{ fs: 100, data: fill(1024, 3) }] },
    ]);
    const r = await replayJournal(source);
    t.equal(r.transactions, 2);
    t.equal(r.lastSequence, 2);
    t.same(r.overlay.get(100), fill(1024, 1), 'T3 never committed');
    t.same(r.overlay.get(101), fill(1024, 2), 'T2 overrides T1');
    t.equal(r.blocks, 2);
  });
  t.test('a revoked block is not replayed from transactions up to the revoke, but is after it', async (t) => {
    const { source } = craft([
      { kind: 'desc', seq: 1, tags: [{ fs: 100, data: fill(1024, 1) }, { fs: 200, data: fill(1024, 1) }] },
      { kind: 'commit', seq: 1 },
      { kind: 'revoke', seq: 2, blocks: [100, 200] },
      { kind: 'desc', seq: 2, tags: [{ fs: 200, data: fill(1024, 2) }] },
      { kind: 'commit', seq: 2 },
      { kind: 'desc', seq: 3, tags: [{ fs: 100, data: fill(1024, 3) }] },
      { kind: 'commit', seq: 3 },
    ]);
    const r = await replayJournal(source);
    t.equal(r.transactions, 3);
    t.same(r.overlay.get(100), fill(1024, 3), 'rewritten after the revoke');
    t.notOk(r.overlay.has(200), 'revoked in its own transaction: not replayed from it either');
    t.equal(r.revokes, 2);
    t.equal(r.revokeHits, 3, 'block 100 in T1, block 200 in T1 and T2');
  });
  t.test('a revoke in an uncommitted transaction does not count', async (t) => {
    const { source } = craft([
      { kind: 'desc', seq: 1, tags: [{ fs: 100, data: fill(1024, 1) }] },
      { kind: 'commit', seq: 1 },
      { kind: 'revoke', seq: 2, blocks: [100] },
    ]);
    const r = await replayJournal(source);
    t.same(r.overlay.get(100), fill(1024, 1));
    t.equal(r.revokes, 0);
  });
  t.test('an escaped block gets the jbd2 magic back', async (t) => {
    const data = fill(1024, 9);
    data.writeUInt32BE(S.JBD2_MAGIC_NUMBER, 0);
    const { source, blocks } = craft([{ kind: 'desc', seq: 1, tags: [{ fs: 7, data }] }, { kind: 'commit', seq: 1 }], { incompat: V3 });
    t.equal(blocks[2]!.readUInt32BE(0), 0, 'logged escaped');
    const r = await replayJournal(source);
    t.same(r.overlay.get(7), data);
  });
  t.test('a bad commit checksum (v3) ends replay there, also with async_commit', async (t) => {
    for (const incompat of [V3, V3 | S.JBD2_FEATURE_INCOMPAT_ASYNC_COMMIT]) {
      const { source } = craft(
        [
          { kind: 'desc', seq: 1, tags: [{ fs: 10 }] },
          { kind: 'commit', seq: 1 },
          { kind: 'desc', seq: 2, tags: [{ fs: 11 }] },
          { kind: 'commit', seq: 2, badChecksum: true },
          { kind: 'desc', seq: 3, tags: [{ fs: 12 }] },
          { kind: 'commit', seq: 3 },
        ],
        { incompat },
      );
      const r = await replayJournal(source);
      t.equal(r.transactions, 1);
      t.same(r.overlay.blocks(), [10]);
    }
  });
  t.test('a bad descriptor checksum: refused when the commit time goes on, the log ends when it goes back', async (t) => {
    const recs = (time: bigint): CraftRecord[] => [
      { kind: 'desc', seq: 1, tags: [{ fs: 10 }] },
      { kind: 'commit', seq: 1, time: 2000n },
      { kind: 'desc', seq: 2, tags: [{ fs: 11 }], badChecksum: true },
      { kind: 'commit', seq: 2, time },
    ];
    await t.rejects(replayJournal(craft(recs(2000n), { incompat: V3 }).source), { code: 'E_JBD2_CSUM' });
    const r = await replayJournal(craft(recs(1000n), { incompat: V3 }).source);
    t.equal(r.transactions, 1, 'stale blocks of an older log: ends after T1');
  });
  t.test('v2 checksums: 16-bit tag checksums on 32-bit tags; a bad one skips that block with a warning', async (t) => {
    const { source } = craft([{ kind: 'desc', seq: 1, tags: [{ fs: 10 }, { fs: 11, badChecksum: true }, { fs: 12 }] }, { kind: 'commit', seq: 1 }], { incompat: V2 });
    const r = await replayJournal(source);
    t.same(r.overlay.blocks(), [10, 12]);
    t.equal(r.warnings.length, 1);
  });
  t.test('64-bit tags carry t_blocknr_high', async (t) => {
    const fs = 2 ** 32 + 5;
    const { source } = craft([{ kind: 'desc', seq: 1, tags: [{ fs, data: fill(1024, 4) }] }, { kind: 'commit', seq: 1 }], { incompat: V3 });
    const r = await replayJournal(source);
    t.same(r.overlay.blocks(), [fs]);
  });
  t.test('v1 transaction checksums (crc32_be): a wrong sum ends the log', async (t) => {
    const { source } = craft(
      [
        { kind: 'desc', seq: 1, tags: [{ fs: 10 }, { fs: 11 }] },
        { kind: 'commit', seq: 1, v1: 'good' },
        { kind: 'desc', seq: 2, tags: [{ fs: 12 }] },
        { kind: 'commit', seq: 2, v1: 'bad' },
      ],
      { compat: S.JBD2_FEATURE_COMPAT_CHECKSUM },
    );
    const r = await replayJournal(source);
    t.equal(r.transactions, 1);
    t.same(r.overlay.blocks(), [10, 11]);
  });
  t.test('the log wraps from s_maxlen to s_first, and the sequence wraps at 2^32', async (t) => {
    const { source } = craft(
      [
        { kind: 'desc', seq: 0xffffffff, tags: [{ fs: 10 }, { fs: 11 }] },
        { kind: 'commit', seq: 0xffffffff },
        { kind: 'desc', seq: 0, tags: [{ fs: 13 }] },
        { kind: 'commit', seq: 0 },
      ],
      { maxlen: 10, start: 7, sequence: 0xffffffff },
    );
    const r = await replayJournal(source);
    t.equal(r.transactions, 2);
    t.equal(r.lastSequence, 0);
    t.same(r.overlay.blocks(), [10, 11, 13]);
    t.ok(r.logEnd < r.logStart, 'wrapped');
  });
  t.test('a clean journal (s_start 0) replays nothing', async (t) => {
    const r = await replayJournal(craft([{ kind: 'desc', seq: 1, tags: [{ fs: 10 }] }, { kind: 'commit', seq: 1 }], { start: 0 }).source);
    t.equal(r.transactions, 0);
    t.equal(r.blocks, 0);
  });
  t.test('a v1 superblock (no features) replays with 8-byte tags', async (t) => {
    const r = await replayJournal(craft([{ kind: 'desc', seq: 1, tags: [{ fs: 10 }, { fs: 11 }] }, { kind: 'commit', seq: 1 }], { version: 1, incompat: 0 }).source);
    t.same(r.overlay.blocks(), [10, 11]);
  });
});

t.test('crafted: every bound refuses with a typed error', async (t) => {
  const one: CraftRecord[] = [{ kind: 'desc', seq: 1, tags: [{ fs: 10 }] }, { kind: 'commit', seq: 1 }];
  t.test('s_maxlen past the journal inode', async (t) => {
    const { source } = craft(one, { maxlen: 64, journalBlocks: 32 });
    await t.rejects(replayJournal(source), { code: 'E_BOUND', data: { structure: 'journal_superblock_s', field: 's_maxlen', value: '64', limit: '32' } });
  });
  t.test('s_first and s_start outside the log', async (t) => {
    await t.rejects(replayJournal(craft(one, { first: 0, start: 1 }).source), { code: 'E_JBD2_SUPERBLOCK', data: { field: 's_first' } });
    const { source, blocks } = craft(one);
    blocks[0]!.writeUInt32BE(64, S.journal_superblock_s.s_start);
    await t.rejects(replayJournal(source), { code: 'E_JBD2_SUPERBLOCK', data: { field: 's_start' } });
  });
  t.test('more tags in a descriptor than the log holds', async (t) => {
    const tags = Array.from({ length: 20 }, (_, i) => ({ fs: 100 + i }));
    const { source } = craft([{ kind: 'desc', seq: 1, tags }], { maxlen: 40 });
    // Rewrite s_maxlen down after laying the records out: 20 tags in a 12-block log.
    const b0 = Buffer.from(await source.readJournalBlock(0));
    b0.writeUInt32BE(13, S.journal_superblock_s.s_maxlen);
    const src: JournalSource = { ...source, readJournalBlock: async (l) => (l === 0 ? b0 : source.readJournalBlock(l)) };
    await t.rejects(replayJournal(src), { code: 'E_BOUND', data: { structure: 'journal descriptor block', field: 'tags', value: '20', limit: '12' } });
  });
  t.test('a descriptor chain that never commits cycles the log: the sequence never advances', async (t) => {
    // 8-block journal, log [1, 8): a descriptor with 6 tags fills it and wraps back onto itself.
    const { source } = craft([{ kind: 'desc', seq: 1, tags: Array.from({ length: 6 }, (_, i) => ({ fs: 10 + i })) }], { maxlen: 8 });
    await t.rejects(replayJournal(source), { code: 'E_BOUND', data: { structure: 'jbd2 log', field: 'blocks scanned from s_start', limit: '7' } });
  });
  t.test('r_count past the block', async (t) => {
    const { source } = craft([{ kind: 'revoke', seq: 1, blocks: [5], rcount: 1021 }, { kind: 'commit', seq: 1 }], { incompat: V3 });
    await t.rejects(replayJournal(source), { code: 'E_BOUND', data: { structure: 'jbd2_journal_revoke_header_s', field: 'r_count', value: '1021', limit: '1020' } });
  });
  t.test('more distinct revoked blocks than maxRevokeRecords', async (t) => {
    const { source } = craft([{ kind: 'revoke', seq: 1, blocks: [5, 6, 7] }, { kind: 'commit', seq: 1 }]);
    await t.rejects(replayJournal(source, { maxRevokeRecords: 2 }), { code: 'E_BOUND', data: { structure: 'jbd2 revoke table', field: 'records', value: '3', limit: '2' } });
  });
  t.test('a 64-bit block number past 2^53', async (t) => {
    const { source } = craft([{ kind: 'desc', seq: 1, tags: [{ fs: 2 ** 53 + 2 ** 40 }] }, { kind: 'commit', seq: 1 }], { incompat: V3 });
    await t.rejects(replayJournal(source), { code: 'E_BOUND', data: { structure: 'journal_block_tag_s', field: 't_blocknr_high' } });
  });
  t.test('superblock: unknown incompat feature, bad checksum, wrong block size, v2+v3', async (t) => {
    await t.rejects(replayJournal(craft(one, { incompat: 0x1000 }).source), { code: 'E_JBD2_FEATURE' });
    await t.rejects(replayJournal(craft(one, { incompat: V3, badSuperblockChecksum: true }).source), { code: 'E_JBD2_CSUM', data: { field: 's_checksum' } });
    await t.rejects(replayJournal({ ...craft(one).source, blockSize: 2048 }), { code: 'E_JBD2_SUPERBLOCK', data: { field: 's_blocksize' } });
    await t.rejects(replayJournal(craft(one, { incompat: V3 | S.JBD2_FEATURE_INCOMPAT_CSUM_V2 }).source), { code: 'E_JBD2_SUPERBLOCK' });
    await t.rejects(replayJournal({ blockSize: 1024, journalBlocks: 1, readJournalBlock: async () => Buffer.alloc(1024) }), { code: 'E_JBD2_LENGTH' });
  });
  t.test('not a journal superblock', async (t) => {
    const r = replayJournal({ blockSize: 1024, journalBlocks: 8, readJournalBlock: async () => Buffer.alloc(1024) });
    await t.rejects(r, { code: 'E_JBD2_SUPERBLOCK', data: { field: 'h_magic' } });
  });
  t.test('errors are SnapferryErrors', async (t) => {
    await replayJournal(craft(one, { incompat: 0x1000 }).source).then(
      () => t.fail('resolved'),
      (e: unknown) => t.ok(e instanceof SnapferryError),
    );
  });
});

t.test('overlay memory is bounded: spilled blocks read back, overwritten in place', async (t) => {
  const tags = Array.from({ length: 6 }, (_, i) => ({ fs: 50 + i, data: fill(1024, i + 1) }));
  const { source } = craft([
    { kind: 'desc', seq: 1, tags },
    { kind: 'commit', seq: 1 },
    { kind: 'desc', seq: 2, tags: [{ fs: 55, data: fill(1024, 0xee) }] },
    { kind: 'commit', seq: 2 },
  ]);
  const r = await replayJournal(source, { maxOverlayBytes: 2048, spillDir: scratch });
  t.teardown(() => r.close());
  t.equal(r.overlay.memoryBytes, 2048);
  t.equal(r.overlay.spilledBlocks, 4);
  for (let i = 0; i < 5; i++) t.same(r.overlay.get(50 + i), fill(1024, i + 1));
  t.same(r.overlay.get(55), fill(1024, 0xee), 'a spilled block replaced by a later transaction');
  r.close();
  t.throws(() => r.overlay.get(55), { code: 'E_OVERLAY_CLOSED' });
});

t.test('overlayVolume lays replayed blocks over any read, across block edges, without touching the source', async (t) => {
  const base = Buffer.alloc(8 * 512, 0x11);
  const vol = {
    size: base.length,
    readInto: async (out: Buffer, off: number) => void base.copy(out, 0, off, off + out.length),
    read: async (off: number, len: number) => base.subarray(off, off + len), // shared, as a cache would be
  };
  const ov = new BlockOverlayStore(512, 1 << 20);
  ov.set(2, fill(512, 0xaa));
  ov.set(5, fill(512, 0xbb));
  const v = overlayVolume(vol, ov);
  const got = await v.read(700, 2500); // blocks 1..6
  const want = Buffer.alloc(2500, 0x11);
  want.fill(0xaa, 1024 - 700, 1536 - 700);
  want.fill(0xbb, 2560 - 700, 3072 - 700);
  t.same(got, want);
  const into = Buffer.alloc(100);
  await v.readInto(into, 2600);
  t.same(into, fill(100, 0xbb));
  t.same(base, Buffer.alloc(8 * 512, 0x11), 'the source buffer is untouched');
  ov.close();
});

// ---------- openExtRecovered: the whole tree, against the kernel ----------

/** A copy of `path` the kernel itself recovered: mounted read-write (the kernel replays), unmounted. */
function kernelRecovered(t: Tap.Test, path: string, name: string): string {
  const copy = join(scratch, `${name}.kernel.img`);
  copyFileSync(path, copy);
  const dir = mkdtempSync(join(scratch, 'mnt-'));
  execFileSync('mount', ['-o', 'loop', copy, dir]);
  try {
    t.ok(true, `the kernel mounted a copy of ${name} read-write (and replayed its journal)`);
  } finally {
    execFileSync('umount', [dir]);
  }
  return copy;
}

for (const name of NAMES) {
  t.test(`${name}: openExtRecovered shows the tree the kernel shows after its own replay`, async (t) => {
    const path = join(DIR, `${name}.img`);
    const { fs, replay } = await openExtRecovered(await volumeOf(t, path));
    t.teardown(() => fs.close());
    t.ok(replay, 'replayed');
    t.ok(fs.info.notes.includes(`journal replayed: ${replay!.transactions} transactions, ${replay!.blocks} blocks`), `note: ${fs.info.notes.join('; ')}`);
    const kernel = kernelRecovered(t, path, name);
    const s = await checkAgainstTree(t, fs, mountRo(t, kernel), { which: ['mtime', 'ctime'] });
    t.ok(s.files >= 20, `${s.files} files, ${s.dirs} directories compared`);
    t.same(s.mismatches, []);
  });
}

t.test('ext4-64: replay false shows the disk as it is, as the kernel does with noload', async (t) => {
  const path = join(DIR, 'ext4-64.img');
  const { fs, replay } = await openExtRecovered(await volumeOf(t, path), { replay: false });
  t.teardown(() => fs.close());
  t.equal(replay, null);
  t.ok(fs.info.notes.includes('journal needs recovery; not replayed'));
  const copy = join(scratch, 'noload.img');
  copyFileSync(path, copy);
  const s = await checkAgainstTree(t, fs, mountRo(t, copy), { which: ['mtime', 'ctime'] });
  t.same(s.mismatches, []);
  // And the replayed view differs from it: new1.bin exists only after replay.
  const root = fs.rootIno;
  const home = await fs.lookup(root, 'home');
  const bob = await fs.lookup(home!, 'bob');
  t.equal(await fs.lookup(bob!, 'new1.bin'), null, 'not there without replay');
  const rec = await openExtRecovered(await volumeOf(t, path));
  t.teardown(() => rec.fs.close());
  const bob2 = await rec.fs.lookup((await rec.fs.lookup(rec.fs.rootIno, 'home'))!, 'bob');
  t.not(await rec.fs.lookup(bob2!, 'new1.bin'), null, 'there after replay');
});

t.test('the cached images are byte-identical after everything', async (t) => {
  t.same(await fingerprint(sources), before);
});
