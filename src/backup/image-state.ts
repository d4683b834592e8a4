/**
 * The local state of image backups: what the last image backup of a VM to a repository covered,
 * per disk, so that the next one can be incremental. Kept beside the file-level state (state.ts)
 * under the same key (store url + VM) as `<key>.image.json`; the appliance cannot read its own
 * backups back (it holds public keys only), so this file is all it knows. Losing it costs the next
 * image backup being full.
 *
 *   { format: 'snapferry-image-state', version: 1, repo, vm, archive,
 *     disks: { <diskId>: { size, chain: [{path, cid}] (top first),
 *                          blockSize?, hashes? (base64: 8 bytes of sha256 per block) } } }
 *
 * `chain` is what changed block tracking needs: when the chain read next time still holds that
 * top member (same path and CID, with the same members below it), the grains allocated in the
 * deltas above it are exactly what changed. `hashes` is the fallback for sources with no chain to
 * read (raw images, block devices): a block whose hash differs has changed.
 */
import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { open, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { statePaths } from './state.js';
import { MiB } from '../util/bounded.js';

export const IMAGE_STATE_FORMAT = 'snapferry-image-state';
/** Bytes of sha256 kept per block: collisions between a block's old and new contents are what matter, 2^-64 is plenty. */
export const BLOCK_HASH_BYTES = 8;
/** The block-hash fallback's block: 1 MiB (a 1 TiB disk keeps 8 MiB of hashes). */
export const HASH_BLOCK_SIZE = 1 * MiB;
/** A state file larger than this is not ours (a 16 TiB disk's hashes, base64, fit in ~180 MB... we stop well before). */
export const MAX_IMAGE_STATE_BYTES = 256 * MiB;

export interface ImageDiskState {
  size: number;
  chain: { path: string; cid?: string }[];
  blockSize?: number;
  hashes?: string;
}

export interface ImageState {
  format: typeof IMAGE_STATE_FORMAT;
  version: 1;
  repo: string;
  vm: string;
  archive: string;
  disks: Record<string, ImageDiskState>;
}

export function imageStatePath(dir: string, repoUrl: string, vm: string): string {
  return statePaths(dir, repoUrl, vm).last.replace(/\.last\.jsonl$/, '.image.json');
}

/** The state, or null with the reason when there is none usable (the backup then is full and says why). */
export function readImageState(path: string, repoUrl: string, vm: string): { state: ImageState | null; why?: string } {
  if (!existsSync(path)) return { state: null, why: 'no local image state' };
  const size = statSync(path).size;
  if (size > MAX_IMAGE_STATE_BYTES) return { state: null, why: `the local image state ${path} is ${size} bytes, over ${MAX_IMAGE_STATE_BYTES}` };
  let v: Partial<ImageState>;
  try {
    v = JSON.parse(readFileSync(path, 'utf8')) as Partial<ImageState>;
  } catch {
    return { state: null, why: `the local image state ${path} is not JSON` };
  }
  const ok =
    v.format === IMAGE_STATE_FORMAT &&
    v.version === 1 &&
    v.repo === repoUrl &&
    v.vm === vm &&
    typeof v.archive === 'string' &&
    typeof v.disks === 'object' &&
    v.disks !== null &&
    Object.values(v.disks).every((d) => Number.isSafeInteger(d?.size) && Array.isArray(d.chain) && (d.hashes === undefined || (typeof d.hashes === 'string' && Number.isSafeInteger(d.blockSize) && d.blockSize! > 0)));
  if (!ok) return { state: null, why: `the local image state ${path} is not a snapferry image state for ${vm} in ${repoUrl}` };
  return { state: v as ImageState };
}

export async function writeImageState(path: string, s: ImageState): Promise<void> {
  mkdirSync(join(path, '..'), { recursive: true, mode: 0o700 });
  const tmp = `${path}.${process.pid}.tmp`;
  const fh = await open(tmp, 'w', 0o600);
  try {
    await fh.write(`${JSON.stringify(s)}\n`);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, path);
}
