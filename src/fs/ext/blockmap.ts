/**
 * ext2/ext3 block maps (ext4 doc "Direct/Indirect Block Addressing"; fs/ext4/indirect.c):
 * i_block[0..11] point at data, i_block[12] at a block of pointers, [13] at a block of pointer
 * blocks, [14] one level more. A zero pointer at any level is a hole covering all it would map.
 * The depth is fixed by the layout, so a hostile map cannot loop; every pointer is bounded by
 * s_blocks_count.
 */
import { checkBound } from '../../util/bounded.js';
import { EXT4_DIND_BLOCK, EXT4_IND_BLOCK, EXT4_NDIR_BLOCKS, EXT4_TIND_BLOCK } from './structs.js';
import type { MapContext, Run } from './map.js';

/** The run containing `lblk`: consecutive physical blocks within one pointer array, or the hole a zero pointer covers. */
export async function mapBlockmap(ctx: MapContext, ino: number, iBlock: Buffer, lblk: number): Promise<Run> {
  const per = ctx.blockSize / 4;
  const check = (p: number, field: string) => checkBound('ext4_inode', field, p, ctx.blocksCount - 1, { ino, lblk });
  // Walk down to the pointer array holding lblk; `span` is how many blocks one entry of it maps.
  let array = iBlock;
  let index: number;
  let arrayLen: number;
  if (lblk < EXT4_NDIR_BLOCKS) {
    index = lblk;
    arrayLen = EXT4_NDIR_BLOCKS;
  } else {
    let rel = lblk - EXT4_NDIR_BLOCKS;
    let levels: number;
    let slot: number;
    if (rel < per) {
      levels = 1;
      slot = EXT4_IND_BLOCK;
    } else if ((rel -= per) < per * per) {
      levels = 2;
      slot = EXT4_DIND_BLOCK;
    } else if ((rel -= per * per) < per * per * per) {
      levels = 3;
      slot = EXT4_TIND_BLOCK;
    } else {
      return { lblk, len: Infinity, pblk: null, unwritten: false };
    }
    let ptr = iBlock.readUInt32LE(slot * 4);
    let span = per ** levels; // blocks the pointer in hand maps
    let within = rel; // lblk's offset inside it
    for (let level = levels; level > 0; level--) {
      if (ptr === 0) return { lblk, len: span - within, pblk: null, unwritten: false };
      check(ptr, 'i_block (indirect)');
      array = await ctx.readBlock(ptr);
      span /= per;
      const i = Math.floor(within / span);
      within -= i * span;
      if (level === 1) {
        index = i;
        arrayLen = per;
        return runIn(array, index!, arrayLen!, lblk, check);
      }
      ptr = array.readUInt32LE(i * 4);
    }
    throw new Error('unreachable');
  }
  return runIn(array, index, arrayLen, lblk, check);
}

/** From entry `index` of a pointer array: the run of contiguous blocks, or of zero pointers. */
function runIn(array: Buffer, index: number, arrayLen: number, lblk: number, check: (p: number, f: string) => void): Run {
  const first = array.readUInt32LE(index * 4);
  let n = 1;
  if (first === 0) {
    while (index + n < arrayLen && array.readUInt32LE((index + n) * 4) === 0) n++;
    return { lblk, len: n, pblk: null, unwritten: false };
  }
  check(first, 'i_block');
  while (index + n < arrayLen && array.readUInt32LE((index + n) * 4) === first + n) n++;
  check(first + n - 1, 'i_block');
  return { lblk, len: n, pblk: first, unwritten: false };
}
