/**
 * The disk contract. Every source (raw image, block device, VMDK with its delta chain, and later an
 * image backup in a remote archive) becomes a Disk: a size, random-access reads, and an allocation
 * map so that export, backup and CBT-style work can skip holes. Sources are opened read-only, always.
 *
 * Internally a Disk is a stack of DiskLayers (top first). A layer answers for the ranges it holds
 * and reports the rest as `unallocated`; the stack asks the layer below for those, and the bottom
 * of the stack reads them as zeros. This is the VMDK COW hierarchy (spec: "Delta links") and also
 * the shape of an incremental image backup.
 */

/** data: bytes stored in some layer; zero: known to read as zeros (ZERO extent, zeroed grain); unallocated: no layer holds it (reads as zeros). */
export type AllocState = 'data' | 'zero' | 'unallocated';

export interface AllocRange {
  offset: number;
  length: number;
  state: AllocState;
}

/** A byte range of the disk, absolute offsets. */
export interface ByteRange {
  offset: number;
  length: number;
}

export interface DiskLayer {
  /** Capacity in bytes that this layer describes. */
  readonly size: number;
  /**
   * Fills out[0, out.length) with the bytes of [offset, offset + out.length). Ranges this layer does
   * not hold are left untouched in `out` and returned (absolute offsets, ascending, non-overlapping);
   * ranges it knows are zero are written as zeros. The range must lie within `size`.
   */
  readInto(out: Buffer, offset: number): Promise<ByteRange[]>;
  /** The allocation states of [offset, offset + length), as ascending contiguous ranges covering it. */
  allocation(offset: number, length: number): Promise<AllocRange[]>;
  close(): Promise<void>;
}

/** One file of a disk's chain, as `inspect` shows it. */
export interface ChainMember {
  path: string;
  /** raw, block-device, monolithicSparse, twoGbMaxExtentFlat, vmfsSparse, seSparse, streamOptimized ... */
  kind: string;
  /** The descriptor's CID and parentCID as 8 hex digits, when the member is a VMDK. */
  cid?: string;
  parentCid?: string;
  /** The files that hold the member's extents (for a hosted sparse disk, the .vmdk itself). */
  extents: { path: string; type: string; sectors: number; offsetSectors?: number }[];
}

export interface Disk {
  readonly size: number;
  /** Top of the chain first. */
  readonly chain: readonly ChainMember[];
  read(offset: number, length: number): Promise<Buffer>;
  readInto(out: Buffer, offset: number): Promise<void>;
  allocation(offset?: number, length?: number): Promise<AllocRange[]>;
  close(): Promise<void>;
}

export const SECTOR_SIZE = 512;
