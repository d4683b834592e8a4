/**
 * The one entry point from a path to a Disk: a raw image, a block device, a VMDK of any create type
 * (hosted sparse with its embedded descriptor, or a text descriptor and its extent files), and the
 * delta chain below it (src/disk/chain.ts). Everything is opened read-only through `opener`.
 */
import type { ByteSource } from './file.js';
import { LayeredDisk } from './layered.js';
import type { Disk } from './types.js';
import { openChain } from './chain.js';

export interface OpenDiskOptions {
  /** How files are opened; default openReadOnly. Fuzzers inject in-memory files. */
  opener?: (path: string) => Promise<ByteSource>;
  /** Byte budget of each member's grain-table caches. */
  cacheBytes?: number;
  /** Read a chain whose parentCID and CID disagree (the user knows the parent is right). */
  ignoreCidMismatch?: boolean;
  /** Refuse chains of more files than this; default 64. */
  maxChainDepth?: number;
  /** Accept extent names that are absolute or leave the descriptor's directory (off: a hostile descriptor must not read arbitrary files). */
  allowExternalExtents?: boolean;
}

/** Opens `path` and its chain as one read-only disk whose size is the top member's capacity. */
export async function openDisk(path: string, opts: OpenDiskOptions = {}): Promise<Disk> {
  const { layers, chain } = await openChain(path, opts);
  return new LayeredDisk(layers, chain, layers[0]!.size);
}
