/**
 * From a volume of a disk to its filesystem: the one place that knows which reader handles which
 * kind the volume layer detected (src/volume/detect.ts). Everything above (the CLI's ls/cat/stat,
 * later vfs/) opens filesystems through here, never a reader directly.
 */
import type { Disk } from '../disk/types.js';
import type { Volume } from '../volume/types.js';
import { ExitCode, SnapferryError, UnsupportedError } from '../util/errors.js';
import { checkWithin } from '../util/bounded.js';
import type { FileSystem, VolumeSource } from './types.js';
import { openExtRecovered } from './ext/recover.js';
import { openNtfs } from './ntfs/ntfs.js';

export interface OpenFilesystemOptions {
  /** ext3/ext4: replay a journal that needs recovery into memory (default true); false reads the disk as it is, with a note. */
  replayJournal?: boolean;
  /** The reader's cache byte budget (its own default when absent). */
  cacheBytes?: number;
  /**
   * Where the volume's root appears to the user (a mount's volume directory). NTFS junctions and
   * absolute symlinks point into it, as ntfs-3g points them into its mount point; '' (the default)
   * gives volume-rooted targets ('/a/b').
   */
  linkRoot?: string;
}

/** The kinds openFilesystem reads; every other detected kind is E_FS_UNSUPPORTED. */
export const READABLE_KINDS = ['ext2', 'ext3', 'ext4', 'ntfs'] as const;

/**
 * A bounded byte window [start, start+size) of a disk, with offsets relative to the window. The
 * window is clipped at the disk's end: the volume layer keeps a partition's table size when it runs
 * past the disk (with W_PARTITION_PAST_END), and only what lies within the disk can be read. Reads
 * outside the window are E_TRUNCATED, so a filesystem reader can never see a neighbouring volume.
 */
export function volumeSource(disk: Pick<Disk, 'size' | 'read' | 'readInto'>, start: number, size: number): VolumeSource {
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(size) || start < 0 || size < 0) {
    throw new SnapferryError('E_VOLUME_RANGE', `volume range start=${start} size=${size} is not a pair of non-negative integers`, { start, size }, ExitCode.corrupt);
  }
  const visible = Math.max(0, Math.min(size, disk.size - start));
  const what = `volume at ${start}`;
  return {
    size: visible,
    async read(offset, length) {
      checkWithin(what, offset, length, visible, { start });
      return disk.read(start + offset, length);
    },
    async readInto(out, offset) {
      checkWithin(what, offset, out.length, visible, { start });
      return disk.readInto(out, start + offset);
    },
  };
}

/** Opens the filesystem of `volume` (one of readVolumes(disk).volumes) by its detected kind. */
export async function openFilesystem(disk: Pick<Disk, 'size' | 'read' | 'readInto'>, volume: Volume, opts: OpenFilesystemOptions = {}): Promise<FileSystem> {
  const kind = volume.filesystem.kind;
  const source = volumeSource(disk, volume.start, volume.size);
  const cache = opts.cacheBytes !== undefined ? { cacheBytes: opts.cacheBytes } : {};
  switch (kind) {
    case 'ext2':
    case 'ext3':
    case 'ext4':
      return (await openExtRecovered(source, { ...cache, replay: opts.replayJournal !== false })).fs;
    case 'ntfs':
      return await openNtfs(source, { ...cache, ...(opts.linkRoot !== undefined ? { mountPoint: opts.linkRoot } : {}) });
    default:
      throw new UnsupportedError(
        'E_FS_UNSUPPORTED',
        `${volume.name}: ${kind === 'unknown' ? 'no filesystem snapferry recognises' : kind === 'none' ? 'an extended partition (a container of logical partitions, not a filesystem)' : `a ${kind} volume`}; snapferry reads files on ${READABLE_KINDS.join(', ')}`,
        { volume: volume.name, kind, readable: [...READABLE_KINDS] },
      );
  }
}
