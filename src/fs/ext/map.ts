/**
 * What the block mappers (extents.ts, blockmap.ts) need from the filesystem, and what they return:
 * a run of logical blocks that is either stored (pblk), unwritten (reads as zeros) or a hole.
 */
import type { ErrorData } from '../../util/errors.js';

export interface MapContext {
  readonly blockSize: number;
  readonly blocksCount: number;
  /** A metadata block, through the journal overlay and the block cache. */
  readBlock(n: number): Promise<Buffer>;
  /** Records a typed warning (checksum mismatch ...) and carries on. */
  warn(code: string, message: string, data: ErrorData): void;
}

export interface Run {
  lblk: number;
  /** Blocks in the run; Infinity for the hole past the last mapped block. */
  len: number;
  pblk: number | null;
  unwritten: boolean;
}
