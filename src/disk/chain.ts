/**
 * Delta chains (spec: "Delta links"; ESX redo logs / snapshots): a member names its parent with
 * parentFileNameHint (relative to the member's own directory, or absolute) and records the CID its
 * parent had when the delta was made in parentCID. We open the member named by the user, then its
 * parents down to a base, refusing a missing parent, a parent whose CID changed since (unless the
 * user overrides), the same file twice (a cycle) and a chain deeper than the stated bound.
 *
 * Each member is detected from its first bytes, never from its name:
 *   KDMV                 hosted sparse extent; its embedded descriptor (if any) gives CID and parent
 *   COWD / SEsparse      a bare ESX sparse extent, with no descriptor of its own
 *   text descriptor      '# Disk DescriptorFile' or 'createType=' in the first KiB
 *   anything else        a raw image or a block device
 */
import { realpath } from 'node:fs/promises';
import { resolve } from 'node:path';
import { TextDecoder } from 'node:util';
import { openReadOnly, type ByteSource } from './file.js';
import { RawLayer } from './raw.js';
import { SECTOR_SIZE, type ChainMember, type DiskLayer } from './types.js';
import { ExitCode, SnapferryError, UsageError, toSnapferryError, type ErrorData } from '../util/errors.js';
import { checkBound } from '../util/bounded.js';
import {
  MAX_DESCRIPTOR_BYTES,
  formatCid,
  looksLikeDescriptor,
  parseDescriptor,
  type VmdkDescriptor,
} from './vmdk/descriptor.js';
import { VmdkLayer, openSparseExtent, resolveBeside, type Opener } from './vmdk/image.js';
import { SparseExtent, isSparseExtent } from './vmdk/sparse.js';
import { isCowdExtent } from './vmdk/cowd.js';
import { isSeSparseExtent } from './vmdk/sesparse.js';
import type { OpenDiskOptions } from './open.js';

export const DEFAULT_MAX_CHAIN_DEPTH = 64;
/** The largest maxChainDepth a caller may ask for (the CLI's --max-chain-depth bound). */
export const MAX_CHAIN_DEPTH_LIMIT = 4096;
/** How much of a file we look at to tell what it is. */
const HEAD_BYTES = 1024;

/** A chain that cannot be assembled: the code says why, `data` names the files. */
export class ChainError extends SnapferryError {
  constructor(code: string, message: string, data: ErrorData = {}) {
    super(code, message, data, ExitCode.chain);
  }
}

/** One opened member: its layer, what `inspect` shows of it, and its descriptor when it has one. */
export interface OpenedMember {
  layer: DiskLayer;
  member: ChainMember;
  descriptor: VmdkDescriptor | null;
}

/** Decodes descriptor bytes; a non-UTF-8 `encoding` (windows-1252 ...) re-decodes the file names. */
function decodeDescriptor(bytes: Buffer, path: string): VmdkDescriptor {
  const desc = parseDescriptor(bytes.toString('utf8'), path);
  const enc = desc.encoding;
  if (enc !== null && !/^utf-?8$/i.test(enc)) {
    let decoder: TextDecoder | null = null;
    try {
      decoder = new TextDecoder(enc);
    } catch {
      decoder = null; // an encoding Node does not know: keep the UTF-8 reading
    }
    if (decoder) return parseDescriptor(decoder.decode(bytes), path);
  }
  return desc;
}

/**
 * Opens one member from its already-open source, detecting its kind. Takes ownership of `source`:
 * it ends up owned by the returned layer, or closed.
 */
export async function openMember(source: ByteSource, opts: { opener: Opener; cacheBytes?: number; allowExternalExtents?: boolean }): Promise<OpenedMember> {
  const path = source.path;
  const cache = opts.cacheBytes === undefined ? {} : { cacheBytes: opts.cacheBytes };
  let head: Buffer;
  try {
    head = await source.read(0, Math.min(source.size, HEAD_BYTES));
  } catch (err) {
    await source.close().catch(() => undefined);
    throw err;
  }

  if (isSparseExtent(head)) {
    let layer: SparseExtent;
    try {
      layer = await SparseExtent.open(source, cache);
    } catch (err) {
      await source.close().catch(() => undefined);
      throw err;
    }
    try {
      // The embedded descriptor's extent line names this very file (perhaps by an old name): the
      // file itself is the one extent; the descriptor gives createType, CID and the parent.
      const descriptor = layer.embeddedDescriptor === null ? null : parseDescriptor(layer.embeddedDescriptor, path);
      const member: ChainMember = {
        path,
        kind: descriptor?.createType ?? (layer.streamOptimized ? 'streamOptimized' : 'sparseExtent'),
        ...cids(descriptor),
        extents: [{ path, type: 'SPARSE', sectors: Math.ceil(layer.size / SECTOR_SIZE) }],
      };
      return { layer, member, descriptor };
    } catch (err) {
      await layer.close().catch(() => undefined);
      throw err;
    }
  }

  if (isCowdExtent(head) || isSeSparseExtent(head)) {
    const cowd = isCowdExtent(head);
    const layer = await openSparseExtent(source, 'bare', cache);
    const member: ChainMember = {
      path,
      kind: cowd ? 'vmfsSparse' : 'seSparse',
      extents: [{ path, type: cowd ? 'VMFSSPARSE' : 'SESPARSE', sectors: Math.ceil(layer.size / SECTOR_SIZE) }],
    };
    return { layer, member, descriptor: null };
  }

  if (looksLikeDescriptor(head)) {
    let descriptor: VmdkDescriptor;
    try {
      checkBound('VmdkDescriptor', 'fileSize', source.size, MAX_DESCRIPTOR_BYTES, { path });
      descriptor = decodeDescriptor(await source.read(0, source.size), path);
    } finally {
      // A standalone descriptor holds no sectors: its extents are other files.
      await source.close().catch(() => undefined);
    }
    const layer = await VmdkLayer.open(descriptor, { opener: opts.opener, allowExternalExtents: opts.allowExternalExtents === true, ...cache });
    const member: ChainMember = {
      path,
      kind: descriptor.createType,
      ...cids(descriptor),
      extents: descriptor.extents.map((e) => ({
        path: e.fileName === null ? '' : resolveBeside(path, e.fileName),
        type: e.type,
        sectors: e.sectors,
        ...(e.type === 'FLAT' || e.type === 'VMFS' || e.type === 'VMFSRAW' || e.type === 'VMFSRDM' ? { offsetSectors: e.offset } : {}),
      })),
    };
    return { layer, member, descriptor };
  }

  const layer = new RawLayer(source);
  const member: ChainMember = {
    path,
    kind: source.isBlockDevice ? 'block-device' : 'raw',
    extents: [{ path, type: source.isBlockDevice ? 'block-device' : 'raw', sectors: Math.ceil(source.size / SECTOR_SIZE) }],
  };
  return { layer, member, descriptor: null };
}

function cids(d: VmdkDescriptor | null): { cid?: string; parentCid?: string } {
  if (d === null) return {};
  return { ...(d.cid === null ? {} : { cid: formatCid(d.cid) }), parentCid: formatCid(d.parentCid) };
}

/** The identity of a file for cycle detection: its real path (an injected in-memory file: its resolved name). */
async function fileIdentity(path: string): Promise<string> {
  try {
    return await realpath(path);
  } catch {
    return resolve(path);
  }
}

export interface OpenedChain {
  /** Top first. */
  layers: DiskLayer[];
  chain: ChainMember[];
}

/** Opens `path` and its parents. On any error every layer opened so far is closed. */
export async function openChain(topPath: string, opts: OpenDiskOptions = {}): Promise<OpenedChain> {
  const opener: Opener = opts.opener ?? openReadOnly;
  const maxDepth = opts.maxChainDepth ?? DEFAULT_MAX_CHAIN_DEPTH;
  if (!Number.isInteger(maxDepth) || maxDepth < 1 || maxDepth > MAX_CHAIN_DEPTH_LIMIT) {
    throw new UsageError(`maxChainDepth must be an integer from 1 to ${MAX_CHAIN_DEPTH_LIMIT}`, { value: String(maxDepth) });
  }
  const memberOpts = { opener, allowExternalExtents: opts.allowExternalExtents === true, ...(opts.cacheBytes === undefined ? {} : { cacheBytes: opts.cacheBytes }) };
  const layers: DiskLayer[] = [];
  const chain: ChainMember[] = [];
  const seen = new Map<string, string>();
  let path = topPath;
  let child: { path: string; descriptor: VmdkDescriptor } | null = null;
  try {
    for (;;) {
      if (chain.length >= maxDepth) {
        throw new ChainError('E_VMDK_CHAIN_DEPTH', `${topPath}: the chain is deeper than ${maxDepth} files (next parent: ${path})`, {
          top: topPath,
          path,
          child: child?.path,
          limit: maxDepth,
        });
      }
      const identity = await fileIdentity(path);
      const again = seen.get(identity);
      if (again !== undefined) {
        throw new ChainError('E_VMDK_CHAIN_CYCLE', `${child?.path ?? topPath} names ${path} as its parent, which is already in the chain as ${again}`, {
          path,
          child: child?.path,
          first: again,
          files: chain.map((m) => m.path),
        });
      }
      seen.set(identity, path);

      let source: ByteSource;
      try {
        source = await opener(path);
      } catch (err) {
        const e = toSnapferryError(err);
        if (child !== null && e.code === 'E_SOURCE_NOT_FOUND') {
          throw new ChainError('E_VMDK_PARENT_MISSING', `${child.path}: its parent ${path} (parentFileNameHint "${child.descriptor.parentFileNameHint}") cannot be opened: ${e.message}`, {
            path,
            child: child.path,
            parentFileNameHint: child.descriptor.parentFileNameHint ?? undefined,
          });
        }
        throw e;
      }
      const opened = await openMember(source, memberOpts);
      layers.push(opened.layer);
      chain.push(opened.member);
      // A delta's parent is always a VMDK (qemu agrees: "backing_file must be a vmdk image"). A hint
      // naming any other file would make us serve that file's bytes as the disk's.
      if (child !== null && (opened.member.kind === 'raw' || opened.member.kind === 'block-device')) {
        throw new ChainError('E_VMDK_PARENT_NOT_VMDK', `${child.path}: its parent ${path} (parentFileNameHint "${child.descriptor.parentFileNameHint}") is not a VMDK`, {
          path,
          child: child.path,
        });
      }

      if (child !== null && opened.descriptor !== null) {
        const want = child.descriptor.parentCid;
        const have = opened.descriptor.cid;
        if (have !== want && !opts.ignoreCidMismatch) {
          const haveText = have === null ? 'none' : formatCid(have);
          throw new ChainError(
            'E_VMDK_CID_MISMATCH',
            `${child.path} has parentCID ${formatCid(want)} but its parent ${path} has CID ${haveText}: the parent changed after the snapshot was taken (override: ignoreCidMismatch / --ignore-cid-mismatch)`,
            { child: child.path, childParentCid: formatCid(want), parent: path, parentCid: haveText },
          );
        }
      }

      const hint = opened.descriptor?.parentFileNameHint ?? null;
      if (hint === null) break;
      child = { path, descriptor: opened.descriptor! };
      path = resolveBeside(path, hint);
    }
  } catch (err) {
    for (const l of layers) await l.close().catch(() => undefined);
    throw err;
  }
  return { layers, chain };
}
