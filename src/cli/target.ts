/**
 * What a file command points at: `[DISKID/]VOLUME[/PATH]`. VOLUME is a name `inspect` shows (p1,
 * p5, whole). DISKID (scsi0:0, nvme0:1 ...) names one disk of a .vmx; it may be left out when the
 * .vmx has a single disk. A VOLUME/PATH on NTFS may end in `:STREAM` (see splitStream).
 */
import type { Disk } from '../disk/types.js';
import { openFilesystem } from '../fs/open.js';
import { NotADirectoryError, PathNotFoundError, resolvePath } from '../fs/path.js';
import type { FileSystem } from '../fs/types.js';
import { readVolumes, type Volume, type VolumeTable } from '../volume/index.js';
import { ExitCode, SnapferryError, UsageError } from '../util/errors.js';
import type { CommonOptions } from './main.js';
import { expandSources, openRepoImage, withDisk, type NamedSource, type RepoSource } from './sources.js';

export interface TargetSpec {
  /** The .vmx disk id the target named, if it named one. */
  diskId?: string;
  /** The volume name, absent when the target names only a disk (or nothing). */
  volume?: string;
  /** '/'-rooted path inside the volume ('/' for its root). */
  path: string;
}

export class VolumeNotFoundError extends SnapferryError {
  constructor(volume: string, available: string[], disk?: string) {
    super(
      'E_VOLUME_NOT_FOUND',
      `${disk ? `${disk}: ` : ''}no volume '${volume}'; there ${available.length === 1 ? 'is' : 'are'} ${available.length ? available.join(', ') : 'none'}`,
      { volume, available, ...(disk ? { disk } : {}) },
      ExitCode.notFound,
    );
  }
}

export class DiskIdNotFoundError extends SnapferryError {
  constructor(given: string | undefined, ids: string[]) {
    super(
      'E_DISK_NOT_FOUND',
      given === undefined
        ? `the VM has ${ids.length} disks: start the target with one of ${ids.join(', ')} (e.g. ${ids[0]}/p1/etc)`
        : `the VM has no disk '${given}'; its disks are ${ids.join(', ')}`,
      { ...(given !== undefined ? { disk: given } : {}), available: ids },
      ExitCode.notFound,
    );
  }
}

/**
 * Splits a target. `ids` are the disk ids of a .vmx (empty for a plain disk). A disk id contains a
 * colon (scsi0:0) and never a '/', volume names are p<N> or whole, so the first component decides.
 */
export function parseTarget(target: string | undefined, ids: string[]): TargetSpec {
  const parts = (target ?? '').split('/').filter((p) => p !== '');
  let diskId: string | undefined;
  if (parts.length > 0 && ids.includes(parts[0]!)) diskId = parts.shift();
  else if (ids.length > 0 && parts[0]?.includes(':')) throw new DiskIdNotFoundError(parts[0], ids);
  else if (ids.length > 1 && parts.length > 0) throw new DiskIdNotFoundError(undefined, ids);
  const volume = parts.shift();
  return { ...(diskId !== undefined ? { diskId } : {}), ...(volume !== undefined ? { volume } : {}), path: '/' + parts.join('/') };
}

/**
 * `name:stream` at the end of a path, as NTFS names alternate data streams ("file:stream",
 * "file:stream:$DATA", "file::$DATA" for the unnamed stream). Win32 names cannot hold ':', but
 * POSIX-namespace names can, so the CLI only tries this when the whole path does not exist.
 */
export function splitStream(path: string): { path: string; stream: string } | null {
  const slash = path.lastIndexOf('/');
  const last = path.slice(slash + 1);
  const colon = last.indexOf(':');
  if (colon <= 0) return null;
  let stream = last.slice(colon + 1);
  if (stream.toUpperCase().endsWith(':$DATA')) stream = stream.slice(0, -':$DATA'.length);
  if (stream.includes(':')) return null;
  return { path: path.slice(0, slash + 1) + last.slice(0, colon), stream };
}

/** One disk of the command's DISK argument, opened, with its volume table. */
export interface OpenedDisk {
  source: NamedSource;
  disk: Disk;
  table: VolumeTable;
}

/** The disks a target selects: the one it names, the only one, or (no target) all of them. */
function selectSources(sources: NamedSource[], spec: TargetSpec): NamedSource[] {
  if (spec.diskId !== undefined) return sources.filter((s) => s.id === spec.diskId);
  return sources;
}

/** A command's DISK argument expanded to its disks, and the target parsed against their ids. */
export interface TargetPlan {
  sources: NamedSource[];
  spec: TargetSpec;
  /** Releases what the plan opened (an image backup's store and archives). */
  close(): Promise<void>;
}

/** With o.fromRepo, diskArg is an image backup's ID and the disks are its disks. */
export async function planTarget(diskArg: string, target: string | undefined, o: { fromRepo?: RepoSource; cacheBytes?: number } = {}): Promise<TargetPlan> {
  if (o.fromRepo) {
    const img = await openRepoImage(diskArg, o.fromRepo, o.cacheBytes);
    try {
      return { sources: img.sources, spec: parseTarget(target, img.sources.map((s) => s.id!)), close: img.close };
    } catch (err) {
      await img.close();
      throw err;
    }
  }
  const sources = await expandSources([diskArg]);
  const ids = sources.flatMap((s) => (s.id ? [s.id] : []));
  return { sources, spec: parseTarget(target, ids), close: async () => {} };
}

/** Opens each disk the plan selects in turn (one open at a time), with its volumes read. */
export async function forEachDisk(plan: TargetPlan, o: CommonOptions, fn: (d: OpenedDisk) => Promise<void>): Promise<void> {
  for (const source of selectSources(plan.sources, plan.spec)) {
    await withDisk(source.path, o, async (disk) => fn({ source, disk, table: await readVolumes(disk) }), source.disk);
  }
}

export function findVolume(d: OpenedDisk, name: string): Volume {
  const v = d.table.volumes.find((x) => x.name === name);
  if (!v) throw new VolumeNotFoundError(name, d.table.volumes.map((x) => x.name), d.source.id);
  return v;
}

/** A volume's filesystem, opened, with the name a user would type for it (scsi0:0/p1 or p1). */
export interface OpenedTarget {
  disk: OpenedDisk;
  volume: Volume;
  /** The volume as named in output and notes: 'p1', or 'scsi0:0/p1' when the DISK was a .vmx. */
  label: string;
  fs: FileSystem;
  path: string;
}

export interface FsCommandOptions extends CommonOptions {
  /** ext3/ext4: replay the journal in memory (default); --no-replay turns it off. */
  replay: boolean;
  /** --repo: DISK is an image backup's ID (src/cli/sources.ts openRepoImage). */
  fromRepo?: RepoSource;
}

/**
 * Opens the filesystem a `VOLUME/PATH` target names and runs fn with it. The filesystem's notes
 * ("journal replayed: ...", "dirty", "hibernated") go to stderr in text mode, never to stdout,
 * which carries only the command's output (a file's bytes, JSON lines).
 */
export async function withTarget<T>(plan: TargetPlan, o: FsCommandOptions, fn: (t: OpenedTarget) => Promise<T>): Promise<T> {
  const spec = plan.spec;
  let result: { value: T } | undefined;
  await forEachDisk(plan, o, async (d) => {
    if (spec.volume === undefined) throw new UsageError(`name a volume: ${d.source.id ? `${d.source.id}/` : ''}VOLUME/PATH (volumes: ${d.table.volumes.map((v) => v.name).join(', ') || 'none'})`);
    const volume = findVolume(d, spec.volume);
    const label = d.source.id ? `${d.source.id}/${volume.name}` : volume.name;
    const fs = await openFilesystem(d.disk, volume, { replayJournal: o.replay, cacheBytes: o.cacheBytes });
    try {
      if (!o.json) for (const n of fs.info.notes) process.stderr.write(`${label}: ${n}\n`);
      result = { value: await fn({ disk: d, volume, label, fs, path: spec.path }) };
    } finally {
      await fs.close();
    }
  });
  if (!result) throw new UsageError('the target selects no disk');
  return result.value;
}

/**
 * The inode a path names, and the NTFS stream when the path ends in `:STREAM`: only on NTFS and
 * only when the path, colon and all, does not exist (a POSIX-namespace name may contain ':').
 */
export async function resolveTargetPath(t: OpenedTarget, allowStream: boolean): Promise<{ ino: number; stream?: string; path: string }> {
  try {
    return { ino: await resolveIn(t, t.path), path: t.path };
  } catch (err) {
    if (!(err instanceof PathNotFoundError) || !allowStream || t.fs.info.kind !== 'ntfs') throw err;
    const split = splitStream(t.path);
    if (!split) throw err;
    const ino = await resolveIn(t, split.path);
    return split.stream === '' ? { ino, path: split.path } : { ino, stream: split.stream, path: split.path };
  }
}

/** resolvePath, with errors naming the path as the user typed it (p1/etc/x, not /etc/x). */
export async function resolveIn(t: OpenedTarget, path: string): Promise<number> {
  try {
    return await resolvePath(t.fs, path);
  } catch (err) {
    if (err instanceof PathNotFoundError) throw new PathNotFoundError(`${t.label}${path}`, String(err.data.missing));
    if (err instanceof NotADirectoryError) throw new NotADirectoryError(`${t.label}${path}`, String(err.data.component));
    throw err;
  }
}
