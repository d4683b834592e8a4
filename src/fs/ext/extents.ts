/**
 * Extent trees (fs/ext4/ext4_extents.h; ext4 doc "The Contents of inode.i_block" / "Extent Tree").
 * The root lives in i_block; interior nodes (ext4_extent_idx) and leaves (ext4_extent) fill whole
 * blocks, each headed by ext4_extent_header and, with metadata_csum, followed by ext4_extent_tail.
 *
 * Hostile trees: eh_depth is bounded by EXT4_MAX_EXTENT_DEPTH and must drop by exactly one per
 * level, so a descent always ends; entries must be sorted; a block met twice in one walk is a loop
 * (E_EXT_EXTENT_LOOP), which also bounds a full walk to the blocks of the volume.
 */
import { checkBound, expectField } from '../../util/bounded.js';
import { CorruptStructureError } from '../../util/errors.js';
import { crc32cUpdate } from './crc32c.js';
import { EXT4_EXT_MAGIC, EXT4_MAX_EXTENT_DEPTH, EXT_INIT_MAX_LEN, ext4_extent, ext4_extent_header, ext4_extent_idx } from './structs.js';
import type { MapContext, Run } from './map.js';

const H = 'ext4_extent_header';

interface NodeHeader {
  entries: number;
  max: number;
  depth: number;
}

/** Validates a header at the start of `node` (i_block or a tree block). */
export function parseExtentHeader(node: Buffer, ino: number, where: number | 'i_block'): NodeHeader {
  const data = { ino, block: String(where) };
  const magic = node.readUInt16LE(ext4_extent_header.eh_magic);
  expectField(magic === EXT4_EXT_MAGIC, 'E_EXT_EXTENT', H, 'eh_magic', `0x${magic.toString(16)} is not 0xf30a`, data);
  const entries = node.readUInt16LE(ext4_extent_header.eh_entries);
  const max = node.readUInt16LE(ext4_extent_header.eh_max);
  const depth = node.readUInt16LE(ext4_extent_header.eh_depth);
  checkBound(H, 'eh_max', max, Math.floor((node.length - ext4_extent_header.SIZE) / ext4_extent.SIZE), data);
  checkBound(H, 'eh_entries', entries, max, data);
  checkBound(H, 'eh_depth', depth, EXT4_MAX_EXTENT_DEPTH, data);
  return { entries, max, depth };
}

/** ext4_extent_block_csum: crc32c(inode seed, the block up to the tail after eh_max entries). */
export function extentBlockChecksum(inodeSeed: number, node: Buffer, max: number): { stored: number; computed: number } | null {
  const tail = ext4_extent_header.SIZE + max * ext4_extent.SIZE;
  if (tail + 4 > node.length) return null;
  return { stored: node.readUInt32LE(tail), computed: crc32cUpdate(inodeSeed, node, 0, tail) };
}

function idxBlock(node: Buffer, i: number): { first: number; leaf: number } {
  const at = ext4_extent_header.SIZE + i * ext4_extent_idx.SIZE;
  return { first: node.readUInt32LE(at + ext4_extent_idx.ei_block), leaf: node.readUInt32LE(at + ext4_extent_idx.ei_leaf_lo) + node.readUInt16LE(at + ext4_extent_idx.ei_leaf_hi) * 0x100000000 };
}

export interface LeafExtent {
  lblk: number;
  len: number;
  pblk: number;
  unwritten: boolean;
}

function leafExtent(node: Buffer, i: number): LeafExtent {
  const at = ext4_extent_header.SIZE + i * ext4_extent.SIZE;
  const raw = node.readUInt16LE(at + ext4_extent.ee_len);
  // ext4_ext_get_actual_len: > EXT_INIT_MAX_LEN marks an uninitialized (unwritten) extent
  const unwritten = raw > EXT_INIT_MAX_LEN;
  return {
    lblk: node.readUInt32LE(at + ext4_extent.ee_block),
    len: unwritten ? raw - EXT_INIT_MAX_LEN : raw,
    pblk: node.readUInt32LE(at + ext4_extent.ee_start_lo) + node.readUInt16LE(at + ext4_extent.ee_start_hi) * 0x100000000,
    unwritten,
  };
}

/** Checks the entries of a node are in ascending, non-overlapping logical order (leaves) or ascending (index). */
function checkOrder(node: Buffer, h: NodeHeader, ino: number, where: number | 'i_block', ctx: MapContext): void {
  let prevEnd = -1;
  for (let i = 0; i < h.entries; i++) {
    if (h.depth === 0) {
      const e = leafExtent(node, i);
      if (e.len === 0 || e.lblk < prevEnd || e.lblk + e.len > 0x100000000) throw new CorruptStructureError('E_EXT_EXTENT', `ext4_extent ${i} of inode ${ino} (${where}): ${e.lblk}+${e.len} overlaps or is out of order`, { structure: 'ext4_extent', ino, block: String(where) });
      checkBound('ext4_extent', 'ee_start', e.pblk + e.len, ctx.blocksCount, { ino, block: String(where) });
      prevEnd = e.lblk + e.len;
    } else {
      const x = idxBlock(node, i);
      if (i > 0 && x.first <= prevEnd) throw new CorruptStructureError('E_EXT_EXTENT', `ext4_extent_idx ${i} of inode ${ino} (${where}): ei_block ${x.first} out of order`, { structure: 'ext4_extent_idx', ino, block: String(where) });
      checkBound('ext4_extent_idx', 'ei_leaf', x.leaf, ctx.blocksCount - 1, { ino, block: String(where) });
      prevEnd = x.first;
    }
  }
}

async function readNode(ctx: MapContext, ino: number, inodeSeed: number | null, block: number, depth: number): Promise<{ node: Buffer; h: NodeHeader }> {
  const node = await ctx.readBlock(block);
  const h = parseExtentHeader(node, ino, block);
  if (h.depth !== depth) throw new CorruptStructureError('E_EXT_EXTENT', `extent block ${block} of inode ${ino}: eh_depth ${h.depth}, its parent expects ${depth}`, { structure: H, field: 'eh_depth', ino, block });
  if (inodeSeed !== null) {
    const c = extentBlockChecksum(inodeSeed, node, h.max);
    if (c && c.stored !== c.computed) ctx.warn('W_EXT_CSUM_EXTENT', `extent block ${block} of inode ${ino}: checksum 0x${c.stored.toString(16)} != computed 0x${c.computed.toString(16)}`, { structure: 'ext4_extent_tail', ino, block });
  }
  checkOrder(node, h, ino, block, ctx);
  return { node, h };
}

/** The run of the file containing logical block `lblk`: data, unwritten, or a hole up to the next extent. */
export async function mapExtent(ctx: MapContext, ino: number, iBlock: Buffer, inodeSeed: number | null, lblk: number): Promise<Run> {
  let node = iBlock;
  let h = parseExtentHeader(node, ino, 'i_block');
  checkOrder(node, h, ino, 'i_block', ctx);
  let bound = Infinity; // the first logical block past this subtree
  const path = new Set<number>();
  while (h.depth > 0) {
    // the last index whose ei_block <= lblk
    let lo = 0;
    let hi = h.entries - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (idxBlock(node, mid).first <= lblk) {
        found = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    if (found < 0) {
      const next = h.entries > 0 ? idxBlock(node, 0).first : bound;
      return { lblk, len: Math.min(next, bound) - lblk, pblk: null, unwritten: false };
    }
    if (found + 1 < h.entries) bound = Math.min(bound, idxBlock(node, found + 1).first);
    const child = idxBlock(node, found).leaf;
    if (path.has(child)) throw new CorruptStructureError('E_EXT_EXTENT_LOOP', `extent tree of inode ${ino} points back at block ${child}`, { structure: 'ext4_extent_idx', ino, block: child });
    path.add(child);
    ({ node, h } = await readNode(ctx, ino, inodeSeed, child, h.depth - 1));
  }
  let lo = 0;
  let hi = h.entries - 1;
  let found = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (leafExtent(node, mid).lblk <= lblk) {
      found = mid;
      lo = mid + 1;
    } else hi = mid - 1;
  }
  if (found >= 0) {
    const e = leafExtent(node, found);
    if (lblk < e.lblk + e.len) return { lblk, len: Math.min(e.lblk + e.len, bound) - lblk, pblk: e.pblk + (lblk - e.lblk), unwritten: e.unwritten };
  }
  const next = found + 1 < h.entries ? leafExtent(node, found + 1).lblk : bound;
  return { lblk, len: Math.min(next, bound) - lblk, pblk: null, unwritten: false };
}

/** Every leaf extent in logical order (depth-first), with loop detection over the whole walk. */
export async function* walkExtents(ctx: MapContext, ino: number, iBlock: Buffer, inodeSeed: number | null): AsyncGenerator<LeafExtent> {
  const root = parseExtentHeader(iBlock, ino, 'i_block');
  checkOrder(iBlock, root, ino, 'i_block', ctx);
  const seen = new Set<number>();
  const stack: { node: Buffer; h: NodeHeader; i: number }[] = [{ node: iBlock, h: root, i: 0 }];
  while (stack.length > 0) {
    const top = stack[stack.length - 1]!;
    if (top.i >= top.h.entries) {
      stack.pop();
      continue;
    }
    const i = top.i++;
    if (top.h.depth === 0) {
      yield leafExtent(top.node, i);
      continue;
    }
    const child = idxBlock(top.node, i).leaf;
    if (seen.has(child)) throw new CorruptStructureError('E_EXT_EXTENT_LOOP', `extent tree of inode ${ino} visits block ${child} twice`, { structure: 'ext4_extent_idx', ino, block: child });
    seen.add(child);
    const { node, h } = await readNode(ctx, ino, inodeSeed, child, top.h.depth - 1);
    stack.push({ node, h, i: 0 });
  }
}
