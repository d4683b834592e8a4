/** Turns the DISK arguments into disks: a .vmx expands to its present disks, anything else is one disk. */
import { openDisk, type OpenDiskOptions } from '../disk/open.js';
import { readVmx } from '../disk/vmx.js';
import type { Disk } from '../disk/types.js';
import type { CommonOptions } from './main.js';
import type { TreeSource } from '../vfs/tree.js';

export interface NamedSource {
  /** What the user named (a disk path, or the .vmx). */
  arg: string;
  /** The VM's device id (scsi0:0) when the disk came from a .vmx. */
  id?: string;
  path: string;
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

export async function withDisk<T>(path: string, o: CommonOptions, fn: (disk: Disk) => Promise<T>): Promise<T> {
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
