/**
 * Turns the DISK arguments into disks: a .vmx expands to its present disks, anything else is one
 * disk. With --repo, the argument is an image backup's ID instead, and its disks are read from the
 * repository (src/backup/image-disk.ts): the commands above see disks either way.
 */
import { readFileSync } from 'node:fs';
import { openDisk, type OpenDiskOptions } from '../disk/open.js';
import { readVmx } from '../disk/vmx.js';
import type { Disk } from '../disk/types.js';
import type { CommonOptions } from './main.js';
import type { TreeSource } from '../vfs/tree.js';
import { parseIdentityFile } from '../archive/age/keys.js';
import { UsageError } from '../util/errors.js';

export interface NamedSource {
  /** What the user named (a disk path, or the .vmx). */
  arg: string;
  /** The VM's device id (scsi0:0) when the disk came from a .vmx (or an image backup). */
  id?: string;
  path: string;
  /** Already open (an image backup's disk): used instead of opening `path`; its owner closes it. */
  disk?: Disk;
}

/** Where an image backup is: --repo and what reading it needs. */
export interface RepoSource {
  repo: string;
  identity?: string;
  sshKey?: string;
  knownHosts?: string;
  acceptNewHostKey: boolean;
}

/** Image backup `arg` (an id, a prefix, or latest) of the repository, as sources; close() when done. */
export async function openRepoImage(arg: string, r: RepoSource, cacheBytes?: number): Promise<{ id: string; sources: NamedSource[]; close(): Promise<void> }> {
  if (!r.identity) throw new UsageError('--identity KEYFILE is needed to read an image backup (an age identity file; - reads it from stdin)');
  const ids = parseIdentityFile(readFileSync(r.identity === '-' ? 0 : r.identity, 'utf8'));
  const { openStore } = await import('../store/open.js');
  const { resolveArchiveId } = await import('../backup/repo.js');
  const { openImage } = await import('../backup/image-disk.js');
  const store = await openStore(r.repo, { create: false, ...(r.sshKey ? { sshKey: r.sshKey } : {}), ...(r.knownHosts ? { knownHostsFile: r.knownHosts } : {}), acceptNewHostKey: r.acceptNewHostKey });
  try {
    const id = await resolveArchiveId(store, arg);
    const image = await openImage(store, id, ids, cacheBytes ? { cacheBytes } : {});
    return {
      id,
      sources: image.disks.map((d) => ({ arg, id: d.id, path: `${id}:${d.id}`, disk: d.disk })),
      close: async () => {
        await image.close();
        await store.close();
      },
    };
  } catch (err) {
    await store.close();
    throw err;
  }
}

export async function expandSources(args: string[]): Promise<NamedSource[]> {
  const out: NamedSource[] = [];
  for (const arg of args) {
    if (arg.toLowerCase().endsWith('.vmx')) {
      const vm = await readVmx(arg);
      for (const d of vm.disks) out.push({ arg, id: d.id, path: d.path });
    } else {
      out.push({ arg, path: arg });
    }
  }
  return out;
}

export function diskOptions(o: CommonOptions): OpenDiskOptions {
  return { cacheBytes: o.cacheBytes, ignoreCidMismatch: o.ignoreCidMismatch, maxChainDepth: o.maxChainDepth, allowExternalExtents: o.allowExternalExtents };
}

export async function withDisk<T>(path: string, o: CommonOptions, fn: (disk: Disk) => Promise<T>, open?: Disk): Promise<T> {
  if (open) return fn(open);
  const disk = await openDisk(path, diskOptions(o));
  try {
    return await fn(disk);
  } finally {
    await disk.close();
  }
}

/** The DISK arguments as the unified tree's sources: a .vmx's disks named by their device ids. */
export async function treeSources(args: string[]): Promise<TreeSource[]> {
  const named = await expandSources(args);
  return named.map((s) => (s.id !== undefined ? { path: s.path, name: s.id } : { path: s.path }));
}

/** NamedSources (an image backup's disks) as the tree's sources. */
export function treeSourcesOf(named: NamedSource[]): TreeSource[] {
  return named.map((s) => ({ path: s.path, ...(s.id !== undefined ? { name: s.id } : {}), ...(s.disk ? { disk: s.disk } : {}) }));
}
