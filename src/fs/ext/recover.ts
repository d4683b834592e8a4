/**
 * Opens an ext3/ext4 volume as its guest would see it after a crash: when the superblock says the
 * journal needs recovery (EXT4_FEATURE_INCOMPAT_RECOVER), the internal jbd2 journal is replayed
 * into memory (src/fs/ext/journal) and the filesystem is opened with the replayed blocks as an
 * overlay the reader consults before the disk. Nothing is written to the source, ever.
 *
 * Order matters as in the kernel's ext4_load_journal: the journal inode is read from the disk as
 * it is (the journal's own blocks are never journaled), the log is replayed, and only then are the
 * superblock, group descriptors and everything else read: from the replayed view, so a superblock
 * or descriptor that the journal holds a newer copy of comes from the journal.
 */
import type { VolumeSource } from '../types.js';
import { COMPAT, INCOMPAT } from './structs.js';
import { hasCompat, hasIncompat } from './superblock.js';
import { openExt, readExtSuperblock, type ExtFileSystem } from './ext.js';
import { replayJournal, type JournalReplay } from './journal/replay.js';

export interface RecoverOptions {
  /** Replay a journal that needs recovery (default true); false reads the disk as it is, with a note. */
  replay?: boolean;
  /** The ext reader's cache budget. */
  cacheBytes?: number;
  /** Replayed blocks kept in memory before spilling to a temp file (default 64 MiB). */
  maxOverlayBytes?: number;
  /** Where the spill file goes (default the OS temp dir). */
  spillDir?: string;
}

export interface RecoveredExt {
  fs: ExtFileSystem;
  /** The replay, or null when none was needed or done. fs.close() releases it. */
  replay: JournalReplay | null;
}

export async function openExtRecovered(volume: VolumeSource, opts: RecoverOptions = {}): Promise<RecoveredExt> {
  const cache = opts.cacheBytes !== undefined ? { cacheBytes: opts.cacheBytes } : {};
  const sb = await readExtSuperblock(volume);
  const needsRecovery = hasCompat(sb, COMPAT.HAS_JOURNAL) && hasIncompat(sb, INCOMPAT.RECOVER);
  if (!needsRecovery) return { fs: await openExt(volume, cache), replay: null };

  const notes: string[] = [];
  let replay: JournalReplay | null = null;
  if (sb.s_journal_inum === 0) {
    // An external journal (s_journal_dev / s_journal_uuid) lives on another device we were not given.
    notes.push(`journal needs recovery but is external (device 0x${sb.s_journal_dev.toString(16)}, uuid ${sb.s_journal_uuid}); not replayed`);
  } else if (opts.replay === false) {
    notes.push('journal needs recovery; not replayed');
  } else {
    const plain = await openExt(volume, cache);
    try {
      const physical = await plain.journalBlocks();
      const bs = plain.info.blockSize;
      replay = await replayJournal(
        {
          blockSize: bs,
          journalBlocks: physical.length,
          fsBlockCount: plain.info.totalBlocks,
          readJournalBlock: (logical: number) => volume.read(physical[logical]! * bs, bs),
        },
        { maxOverlayBytes: opts.maxOverlayBytes, spillDir: opts.spillDir },
      );
    } finally {
      await plain.close();
    }
  }

  // The ext reader consults the overlay before the disk for every block, the superblock included.
  let fs: ExtFileSystem;
  try {
    fs = await openExt(volume, replay ? { ...cache, overlay: replay.overlay } : cache);
  } catch (err) {
    replay?.close();
    throw err;
  }
  if (replay) {
    fs.info.notes.push(`journal replayed: ${replay.transactions} transactions, ${replay.blocks} blocks`);
    for (const w of replay.warnings) fs.info.notes.push(w);
    const r = replay;
    const close = fs.close.bind(fs);
    fs.close = async () => {
      try {
        await close();
      } finally {
        r.close();
      }
    };
  }
  fs.info.notes.push(...notes);
  return { fs, replay };
}
