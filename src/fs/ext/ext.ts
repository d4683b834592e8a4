/**
 * The ext2/3/4 reader: a FileSystem (src/fs/types.ts) over a VolumeSource, read-only, in userspace.
 *
 * Every block goes through readBlock / readData, which consult the BlockOverlay first: the journal
 * replay (src/fs/ext/journal/) hands us the blocks the guest's kernel would have written home after
 * a crash, and we must see them instead of the disk's for metadata and data alike. The block cache
 * holds only disk blocks and sits behind the overlay, so an overlay always wins.
 *
 * Damage policy: a structure that cannot be parsed is a typed error (E_EXT_*, E_BOUND) for the
 * operation that needs it; a checksum that does not match (metadata_csum) is a typed warning
 * (W_EXT_CSUM_*) recorded in `warnings` and info.notes, and the data is still served, as
 * `debugfs -n` would.
 */
import { createHash } from 'node:crypto';
import { checkBound, expectField } from '../../util/bounded.js';
import { CorruptStructureError, ExitCode, SnapferryError, type ErrorData } from '../../util/errors.js';
import { ByteLru, detached } from '../../util/lru.js';
import type { DirEntry, FileExtent, FileSystem, FileType, FsInfo, Stat, VolumeSource } from '../types.js';
import { mapBlockmap } from './blockmap.js';
import {
  DX_FULL_RANGE,
  checkDxOrder,
  dirBlockChecksum,
  dxBlockAt,
  dxChildRange,
  dxHashAt,
  dxInRange,
  dxNodeChecksum,
  dxSearch,
  hasDirTail,
  isDxNode,
  parseDirBlock,
  parseDxNode,
  parseDxRoot,
  type DxNode,
  type DxRange,
  type RawDirent,
} from './dir.js';
import { mapExtent, walkExtents } from './extents.js';
import { dirHash, hashVersionOf } from './htree.js';
import { inodeChecksum, inodeCsumSeed, inodeRdev, parseInode, type Ext4Inode } from './inode.js';
import type { MapContext, Run } from './map.js';
import {
  COMPAT,
  EXT4_BG_INODE_UNINIT,
  EXT4_ERROR_FS,
  EXT4_FL,
  EXT4_FT,
  EXT4_HTREE_LEVEL,
  EXT4_HTREE_LEVEL_COMPAT,
  EXT4_INLINE_DOTDOT_SIZE,
  EXT4_MIN_INLINE_DATA_SIZE,
  EXT4_ROOT_INO,
  EXT4_SUPER_BLOCK_OFFSET,
  EXT4_VALID_FS,
  EXT4_XATTR_INDEX,
  INCOMPAT,
  RO_COMPAT,
  ext4_super_block,
} from './structs.js';
import {
  descriptorBlock,
  groupDescChecksum,
  parseGroupDesc,
  parseSuperblock,
  superblockChecksum,
  superblockGeometry,
  type Ext4GroupDesc,
  type Ext4SuperBlock,
  type ExtGeometry,
} from './superblock.js';
import { aclToXattr, parseIbodyXattrs, parseXattrBlock, xattrBlockChecksum, xattrFullName, type RawXattr } from './xattr.js';

/** Replayed journal blocks, by filesystem block number, consulted before the disk for every block read. */
export interface BlockOverlay {
  get(block: number): Buffer | undefined;
}

export interface ExtOptions {
  /** Byte budget of the metadata block cache (default 32 MiB); other caches take a share of it. */
  cacheBytes?: number;
  overlay?: BlockOverlay;
}

/** A problem that did not stop the read: a checksum mismatch, an orphan list we stopped following. */
export interface ExtWarning {
  code: string;
  message: string;
  data: ErrorData;
}

export type { Ext4SuperBlock } from './superblock.js';

/** Entries in the orphan list we follow before giving up (the kernel's recovery processes them all; we only hide them). */
export const MAX_ORPHANS = 65536;
/** Warnings kept verbatim; past this only counted. */
export const MAX_WARNINGS = 200;
/** A symlink target longer than PATH_MAX (or a block) is corrupt. */
export const MAX_SYMLINK = 4096;
/** Blocks of the journal inode we map for the journal engineer (4 GiB of 4 KiB blocks... of 1 KiB: 2^22 blocks). */
export const MAX_JOURNAL_BLOCKS = 1 << 22;
/**
 * Bytes of names one linearly scanned directory may take in the lookup cache (a directory past it
 * is scanned per lookup). Indexed (htree) directories are never cached whole: a lookup descends the
 * index and reads a handful of blocks, which the block cache keeps.
 */
export const MAX_CACHED_DIR_BYTES = 4 * 1024 * 1024;
/** Metadata blocks read at once at most (readBlock's `ahead`). */
export const READ_AHEAD_BYTES = 64 * 1024;
/** What one cached group descriptor is counted as (the decoded object and its map entry). */
const GROUP_DESC_CACHE_BYTES = 256;
/** What one cached name costs, beyond its UTF-16 characters: the Map slot, the string header, the inode number. */
const CACHED_NAME_OVERHEAD = 64;

/** A linearly scanned directory's names, for repeated lookups, and the bytes they are charged. */
interface DirNames {
  names: Map<string, number>;
  bytes: number;
}

/** What an htree probe looks for: "." or ".." (the root's own entries), a name's bytes, or a no-key name's embedded hash. */
type DxProbe =
  | { dots: '.' | '..' }
  | { name: Buffer; matches: (raw: Buffer) => boolean }
  | { embeddedHash: number; matches: (raw: Buffer) => boolean };

/** One level of a descent (dx_frame): the node's block, the entry taken, the hash range the node covers. */
interface DxFrame {
  block: Buffer;
  node: DxNode;
  lblk: number;
  range: DxRange;
  at: number;
}

const FT_TYPE: Record<number, FileType> = {
  [EXT4_FT.REG_FILE]: 'file',
  [EXT4_FT.DIR]: 'dir',
  [EXT4_FT.CHRDEV]: 'chardev',
  [EXT4_FT.BLKDEV]: 'blockdev',
  [EXT4_FT.FIFO]: 'fifo',
  [EXT4_FT.SOCK]: 'socket',
  [EXT4_FT.SYMLINK]: 'symlink',
};

/** Reads and decodes the primary superblock (1024 bytes at offset 1024), magic checked. */
export async function readExtSuperblock(volume: VolumeSource): Promise<Ext4SuperBlock> {
  return parseSuperblock(await volume.read(EXT4_SUPER_BLOCK_OFFSET, ext4_super_block.SIZE));
}

export async function openExt(volume: VolumeSource, opts: ExtOptions = {}): Promise<ExtFileSystem> {
  let raw = await volume.read(EXT4_SUPER_BLOCK_OFFSET, ext4_super_block.SIZE);
  let sb = parseSuperblock(raw);
  // A replayed transaction may carry the superblock itself (s_last_orphan, counters): read it through the overlay.
  const bs0 = 1024 << Math.min(sb.s_log_block_size, 6);
  const sbBlock = Math.floor(EXT4_SUPER_BLOCK_OFFSET / bs0);
  const fromOverlay = opts.overlay?.get(sbBlock);
  if (fromOverlay) {
    const at = EXT4_SUPER_BLOCK_OFFSET - sbBlock * bs0;
    raw = Buffer.from(fromOverlay.subarray(at, at + ext4_super_block.SIZE));
    sb = parseSuperblock(raw);
  }
  const geo = superblockGeometry(sb, volume.size);
  const fs = new ExtFileSystem(volume, sb, geo, opts);
  if (geo.metadataCsum) {
    const computed = superblockChecksum(raw);
    if (computed !== sb.s_checksum) fs.warn('W_EXT_CSUM_SUPERBLOCK', `superblock checksum 0x${sb.s_checksum.toString(16)} != computed 0x${computed.toString(16)}`, { structure: 'ext4_super_block' });
  }
  await fs.init();
  return fs;
}

export class ExtFileSystem implements FileSystem {
  readonly info: FsInfo;
  readonly rootIno = EXT4_ROOT_INO;
  readonly blockSize: number;
  readonly warnings: ExtWarning[] = [];
  /** Inodes on the orphan list: unlinked, open at the crash; never listed. */
  readonly orphans = new Set<number>();
  private warned = new Set<string>();
  private warningCount = 0;
  private readonly blocks: ByteLru<number, Buffer>;
  private readonly loadingBlocks = new Map<number, Promise<Buffer>>();
  /**
   * Group descriptors decoded (and checksummed) once: a walk reads every inode through its group's
   * descriptor, and decoding it each time was ~3% of a backup's main thread. A share of the budget.
   */
  private readonly groupDescs: ByteLru<number, Ext4GroupDesc>;
  /** The inode table block the last inode came from (inode()'s read ahead runs only in order). */
  private lastInodeBlock = -2;
  private readonly inodes: ByteLru<number, Ext4Inode>;
  private readonly dirIndex: ByteLru<number, DirNames>;
  private readonly maxCachedDirBytes: number;
  /** Index blocks (as cached Buffers) already found in hash order within a range: checkDxOrder once, not per lookup. */
  private readonly dxOrdered = new WeakMap<Buffer, string>();
  private readonly ctx: MapContext;
  private readonly overlay: BlockOverlay | undefined;
  private readonly filetype: boolean;
  private readonly hugeFile: boolean;

  constructor(
    private readonly volume: VolumeSource,
    readonly superblock: Ext4SuperBlock,
    readonly geometry: ExtGeometry,
    opts: ExtOptions,
  ) {
    const budget = opts.cacheBytes ?? 32 * 1024 * 1024;
    this.blockSize = geometry.blockSize;
    this.overlay = opts.overlay;
    this.blocks = new ByteLru(Math.floor(budget / 2), (b) => b.length);
    this.inodes = new ByteLru(Math.floor(budget / 8), (i) => i.raw.length + 256);
    this.dirIndex = new ByteLru(Math.floor(budget / 4), (d) => d.bytes);
    this.groupDescs = new ByteLru(Math.floor(budget / 32), () => GROUP_DESC_CACHE_BYTES);
    this.maxCachedDirBytes = Math.min(MAX_CACHED_DIR_BYTES, Math.floor(budget / 4));
    this.filetype = (superblock.s_feature_incompat & INCOMPAT.FILETYPE) !== 0;
    this.hugeFile = (superblock.s_feature_ro_compat & RO_COMPAT.HUGE_FILE) !== 0;
    this.ctx = {
      blockSize: this.blockSize,
      blocksCount: superblock.s_blocks_count,
      readBlock: (n) => this.readBlock(n),
      warn: (c, m, d) => this.warn(c, m, d),
    };
    const sb = superblock;
    const ext4Only = (sb.s_feature_incompat & ~(INCOMPAT.FILETYPE | INCOMPAT.RECOVER | INCOMPAT.META_BG)) !== 0 || (sb.s_feature_ro_compat & ~(RO_COMPAT.SPARSE_SUPER | RO_COMPAT.LARGE_FILE | RO_COMPAT.BTREE_DIR)) !== 0;
    this.info = {
      kind: ext4Only ? 'ext4' : sb.s_feature_compat & COMPAT.HAS_JOURNAL ? 'ext3' : 'ext2',
      blockSize: this.blockSize,
      totalBlocks: sb.s_blocks_count,
      freeBlocks: sb.s_free_blocks_count,
      totalInodes: sb.s_inodes_count,
      freeInodes: sb.s_free_inodes_count,
      notes: [],
      uuid: sb.s_uuid,
    };
    if (sb.s_volume_name) this.info.label = sb.s_volume_name;
  }

  /** Records a warning once per distinct message (bounded), and a note for the user. */
  warn(code: string, message: string, data: ErrorData): void {
    const key = `${code}:${message}`;
    if (this.warned.has(key)) return;
    this.warningCount++;
    if (this.warnings.length < MAX_WARNINGS) {
      this.warned.add(key);
      this.warnings.push({ code, message, data });
      this.info.notes.push(`${code}: ${message}`);
    } else if (this.warningCount === MAX_WARNINGS + 1) this.info.notes.push('more warnings not recorded');
  }

  /** Opening checks: state notes, the root inode, the orphan list. */
  async init(): Promise<void> {
    const sb = this.superblock;
    if (sb.s_feature_incompat & INCOMPAT.RECOVER) {
      this.info.notes.push(this.overlay ? 'journal replayed into memory' : 'journal needs recovery: shown without replay (as the disk holds it)');
    }
    if (sb.s_state & EXT4_ERROR_FS) this.info.notes.push('filesystem has errors (s_state EXT4_ERROR_FS): fsck was due');
    else if (!(sb.s_state & EXT4_VALID_FS)) this.info.notes.push('not cleanly unmounted (s_state)');
    if (sb.s_feature_incompat & INCOMPAT.ENCRYPT) this.info.notes.push('encryption feature: encrypted directories show no-key names, file contents are ciphertext');
    if (sb.s_feature_incompat & INCOMPAT.CASEFOLD) this.info.notes.push('casefold feature: case-insensitive directories are flagged (lookup stays exact)');
    const root = await this.inode(EXT4_ROOT_INO);
    expectField(root.type === 'dir', 'E_EXT_ROOT', 'ext4_inode', 'i_mode', `root inode 2 is not a directory (mode 0${root.i_mode.toString(8)})`);
    await this.readOrphans();
  }

  /** Follows s_last_orphan -> i_dtime -> ... (ext4_orphan_cleanup's list), bounded and cycle-checked. */
  private async readOrphans(): Promise<void> {
    let ino = this.superblock.s_last_orphan;
    while (ino !== 0) {
      if (ino > this.superblock.s_inodes_count || ino < 1) {
        this.warn('W_EXT_ORPHAN', `orphan list points at inode ${ino}, outside 1..${this.superblock.s_inodes_count}`, { structure: 'ext4_super_block', field: 's_last_orphan', value: ino });
        break;
      }
      if (this.orphans.has(ino)) {
        this.warn('W_EXT_ORPHAN_LOOP', `orphan list loops back to inode ${ino}`, { structure: 'ext4_inode', field: 'i_dtime', value: ino });
        break;
      }
      if (this.orphans.size >= MAX_ORPHANS) {
        this.warn('W_EXT_ORPHAN_BOUND', `orphan list longer than ${MAX_ORPHANS}`, { structure: 'ext4_super_block', field: 's_last_orphan', limit: MAX_ORPHANS });
        break;
      }
      this.orphans.add(ino);
      ino = (await this.inode(ino)).i_dtime;
    }
    if (this.orphans.size > 0) this.info.notes.push(`${this.orphans.size} orphan inode(s) (unlinked while open): not shown`);
  }

  // ---- blocks ------------------------------------------------------------------------------

  /**
   * One filesystem block: the overlay's if it has it, else the disk's (cached). Callers must not
   * modify it. With `ahead` > 1 the blocks after it (up to `ahead` in all, READ_AHEAD_BYTES at most,
   * stopping at the first one cached, loading or in the overlay) come in the same read and are
   * cached too: a walk of files made in order reads their inode table block after block, and one
   * read(2) per 4 KiB block was ~3,400 of the 4,300 reads of a backup of 50,000 small files.
   */
  async readBlock(n: number, ahead = 1): Promise<Buffer> {
    checkBound('block', 'number', n, this.superblock.s_blocks_count - 1);
    const o = this.overlay?.get(n);
    if (o) return o;
    const b = this.blocks.get(n);
    if (b) return b;
    // Concurrent readers of one block (a walk stats several inodes of one inode table block at
    // once) share a single read.
    const loading = this.loadingBlocks.get(n);
    if (loading) return loading;
    const bs = this.blockSize;
    const max = Math.min(ahead, Math.max(1, Math.floor(READ_AHEAD_BYTES / bs)), this.superblock.s_blocks_count - n, Math.floor(this.volume.size / bs) - n);
    let count = 1;
    while (count < max && !this.blocks.has(n + count) && !this.loadingBlocks.has(n + count) && !this.overlay?.get(n + count)) count++;
    // the read ahead is an optimisation: if it fails, each block is read alone (and fails alone)
    const all = count === 1 ? null : this.volume.read(n * bs, count * bs).catch(() => null);
    for (let i = count - 1; i >= 0; i--) {
      const block = n + i;
      const pending = (all ?? Promise.resolve(null)).then(async (run) => {
        // a cached view would pin its whole store (util/lru.ts)
        const own = run ? detached(run.subarray(i * bs, (i + 1) * bs)) : detached(await this.volume.read(block * bs, bs));
        this.blocks.set(block, own);
        return own;
      });
      this.loadingBlocks.set(block, pending);
      pending.catch(() => {}).finally(() => this.loadingBlocks.delete(block));
    }
    return this.loadingBlocks.get(n)!;
  }

  /** `count` contiguous blocks from `first` for file data: not cached, overlay applied block by block. */
  private async readData(first: number, count: number): Promise<Buffer> {
    checkBound('block', 'number', first + count - 1, this.superblock.s_blocks_count - 1);
    const out = Buffer.allocUnsafe(count * this.blockSize);
    await this.volume.readInto(out, first * this.blockSize);
    if (this.overlay) {
      for (let i = 0; i < count; i++) {
        const o = this.overlay.get(first + i);
        if (o) o.copy(out, i * this.blockSize);
      }
    }
    return out;
  }

  // ---- groups and inodes -------------------------------------------------------------------

  async groupDesc(group: number): Promise<Ext4GroupDesc> {
    checkBound('ext4_group_desc', 'group', group, this.geometry.groupCount - 1);
    const cached = this.groupDescs.get(group);
    if (cached) return cached;
    const { descPerBlock, descSize } = this.geometry;
    const block = await this.readBlock(descriptorBlock(this.superblock, this.geometry, Math.floor(group / descPerBlock)));
    const at = (group % descPerBlock) * descSize;
    const raw = block.subarray(at, at + descSize);
    const gd = parseGroupDesc(raw, descSize);
    if (this.geometry.metadataCsum) {
      const computed = groupDescChecksum(this.geometry.csumSeed, group, raw);
      if (computed !== gd.bg_checksum) this.warn('W_EXT_CSUM_GROUP_DESC', `group descriptor ${group}: checksum 0x${gd.bg_checksum.toString(16)} != computed 0x${computed.toString(16)}`, { structure: 'ext4_group_desc', group });
    }
    this.groupDescs.set(group, gd);
    return gd;
  }

  /** The decoded inode `ino` (cached). A free slot decodes with i_mode 0. */
  async inode(ino: number): Promise<Ext4Inode> {
    const sb = this.superblock;
    if (!Number.isInteger(ino) || ino < 1 || ino > sb.s_inodes_count) checkBound('ext4_inode', 'ino', ino, sb.s_inodes_count);
    const hit = this.inodes.get(ino);
    if (hit) return hit;
    const group = Math.floor((ino - 1) / sb.s_inodes_per_group);
    const index = (ino - 1) % sb.s_inodes_per_group;
    const gd = await this.groupDesc(group);
    const { inodeSize, blockSize } = this.geometry;
    let raw: Buffer;
    // An uninitialized inode table (lazy_itable_init) holds no live inode: never read its garbage.
    if (gd.bg_flags & EXT4_BG_INODE_UNINIT && (sb.s_feature_ro_compat & (RO_COMPAT.GDT_CSUM | RO_COMPAT.METADATA_CSUM))) raw = Buffer.alloc(inodeSize);
    else {
      const byte = index * inodeSize;
      checkBound('ext4_group_desc', 'bg_inode_table', gd.bg_inode_table + Math.floor(byte / blockSize), sb.s_blocks_count - 1, { group });
      const tableBlock = Math.floor(byte / blockSize);
      const tableBlocks = Math.ceil((sb.s_inodes_per_group * inodeSize) / blockSize);
      // read ahead in the table only while inodes come in order (a walk of files made in order);
      // inodes taken at random (a huge directory listed in hash order) read one block each: a
      // 64 KiB read per miss there churned the block cache into 12 MB more peak RSS
      const at = gd.bg_inode_table + tableBlock;
      const inOrder = at === this.lastInodeBlock || at === this.lastInodeBlock + 1;
      this.lastInodeBlock = at;
      const block = await this.readBlock(at, inOrder ? tableBlocks - tableBlock : 1);
      raw = detached(block.subarray(byte % blockSize, (byte % blockSize) + inodeSize));
    }
    const inode = parseInode(ino, raw, inodeSize, this.hugeFile, blockSize);
    if (this.geometry.metadataCsum && inode.i_mode !== 0) {
      const c = inodeChecksum(this.geometry.csumSeed, ino, raw, inodeSize);
      if (c.stored !== c.computed) this.warn('W_EXT_CSUM_INODE', `inode ${ino}: checksum 0x${c.stored.toString(16)} != computed 0x${c.computed.toString(16)}`, { structure: 'ext4_inode', ino });
    }
    this.inodes.set(ino, inode);
    return inode;
  }

  /** A live inode: in use and of a known type. */
  private async live(ino: number): Promise<Ext4Inode & { type: FileType }> {
    const inode = await this.inode(ino);
    if (inode.i_mode === 0) throw new CorruptStructureError('E_EXT_INODE_FREE', `inode ${ino} is not in use`, { structure: 'ext4_inode', ino });
    if (inode.type === null) throw new CorruptStructureError('E_EXT_INODE_MODE', `inode ${ino}: i_mode 0${inode.i_mode.toString(8)} has no file type`, { structure: 'ext4_inode', field: 'i_mode', ino });
    return inode as Ext4Inode & { type: FileType };
  }

  private inodeSeed(inode: Ext4Inode): number | null {
    return this.geometry.metadataCsum ? inodeCsumSeed(this.geometry.csumSeed, inode.ino, inode.i_generation) : null;
  }

  // ---- file data ---------------------------------------------------------------------------

  /** ext4_inode_is_fast_symlink: the target lives in i_block when no data block is counted. */
  private isFastSymlink(inode: Ext4Inode): boolean {
    if (inode.type !== 'symlink') return false;
    if (inode.i_flags & EXT4_FL.INLINE_DATA) return false;
    if (inode.i_flags & EXT4_FL.EA_INODE) return inode.i_size > 0 && inode.i_size < EXT4_MIN_INLINE_DATA_SIZE;
    const eaBlocks = inode.i_file_acl ? this.blockSize / 512 : 0;
    return inode.i_blocks - eaBlocks === 0;
  }

  /** The run of `inode`'s logical block `lblk` through its extent tree or block map. */
  private async map(inode: Ext4Inode, lblk: number): Promise<Run> {
    if (inode.i_flags & EXT4_FL.EXTENTS) return mapExtent(this.ctx, inode.ino, inode.i_block, this.inodeSeed(inode), lblk);
    return mapBlockmap(this.ctx, inode.ino, inode.i_block, lblk);
  }

  /** Inline data (inline.c): i_block's 60 bytes, then the value of system.data in the inode body. */
  private inlineData(inode: Ext4Inode): Buffer {
    const body = parseIbodyXattrs(inode.raw, inode.i_extra_isize, this.geometry.inodeSize, inode.ino);
    const more = body.find((x) => x.index === EXT4_XATTR_INDEX.SYSTEM && x.name.toString('latin1') === 'data');
    const all = Buffer.concat([inode.i_block, more?.value ?? Buffer.alloc(0)]);
    return all;
  }

  /** Bytes [offset, offset+length) of the inode's data, clipped at i_size. */
  private async readInode(inode: Ext4Inode, offset: number, length: number): Promise<Buffer> {
    const end = Math.min(inode.i_size, offset + length);
    if (offset >= end) return Buffer.alloc(0);
    if (!(inode.i_flags & EXT4_FL.INLINE_DATA)) {
      // A range within one mapped run (a small file is one extent): its bytes as read (readData's
      // buffer is fresh, never cached), without a copy.
      const bs = this.blockSize;
      const lblk = Math.floor(offset / bs);
      const run = await this.map(inode, lblk);
      if (run.pblk !== null && !run.unwritten && (lblk + run.len) * bs >= end) {
        const data = await this.readData(run.pblk, Math.ceil(end / bs) - lblk);
        return data.subarray(offset - lblk * bs, end - lblk * bs);
      }
    }
    const out = Buffer.allocUnsafe(end - offset);
    await this.readInodeInto(inode, out, offset);
    return out;
  }

  /**
   * Bytes [offset, offset + out.length) of the inode's data into `out`, clipped at i_size; returns
   * how many. Each mapped run is read straight into its place in `out` (overlay blocks copied over
   * it), holes and unwritten extents are zero-filled: no buffer of our own per read.
   */
  private async readInodeInto(inode: Ext4Inode, out: Buffer, offset: number): Promise<number> {
    const end = Math.min(inode.i_size, offset + out.length);
    if (offset >= end) return 0;
    if (inode.i_flags & EXT4_FL.INLINE_DATA) {
      const data = this.inlineData(inode);
      const n = Math.max(0, Math.min(end, data.length) - offset);
      if (n > 0) data.copy(out, 0, offset, offset + n);
      out.fill(0, n, end - offset);
      return end - offset;
    }
    const bs = this.blockSize;
    let pos = offset;
    while (pos < end) {
      const lblk = Math.floor(pos / bs);
      const run = await this.map(inode, lblk);
      const runEnd = Math.min(end, (lblk + Math.min(run.len, Math.ceil((end - lblk * bs) / bs))) * bs);
      if (run.pblk !== null && !run.unwritten) {
        const lastBlock = run.pblk + Math.ceil(runEnd / bs) - 1 - lblk;
        checkBound('block', 'number', lastBlock, this.superblock.s_blocks_count - 1);
        await this.volume.readInto(out.subarray(pos - offset, runEnd - offset), run.pblk * bs + (pos - lblk * bs));
        if (this.overlay) {
          for (let b = lblk; b * bs < runEnd; b++) {
            const o = this.overlay.get(run.pblk + (b - lblk));
            if (!o) continue;
            const from = Math.max(pos, b * bs);
            const to = Math.min(runEnd, (b + 1) * bs);
            o.copy(out, from - offset, from - b * bs, to - b * bs);
          }
        }
      } else {
        out.fill(0, pos - offset, runEnd - offset); // a hole, or an unwritten extent: zeros
      }
      pos = runEnd;
    }
    return end - offset;
  }

  // ---- directories -------------------------------------------------------------------------

  /** Raw entries of a directory, block by block (inline dirs: i_block after the parent, then system.data). */
  private async *rawEntries(dir: Ext4Inode): AsyncGenerator<RawDirent> {
    const where = { ino: dir.ino, lblk: 0 as number | string };
    if (dir.i_flags & EXT4_FL.INLINE_DATA) {
      const data = this.inlineData(dir);
      where.lblk = 'inline';
      const parent = data.readUInt32LE(0);
      yield { inode: parent, name: Buffer.from('..'), fileType: EXT4_FT.DIR };
      yield* parseDirBlock(data.subarray(EXT4_INLINE_DOTDOT_SIZE, EXT4_MIN_INLINE_DATA_SIZE), this.filetype, this.blockSize, where);
      if (data.length > EXT4_MIN_INLINE_DATA_SIZE) yield* parseDirBlock(data.subarray(EXT4_MIN_INLINE_DATA_SIZE, Math.max(EXT4_MIN_INLINE_DATA_SIZE, Math.min(data.length, dir.i_size))), this.filetype, this.blockSize, where);
      return;
    }
    const bs = this.blockSize;
    const nBlocks = Math.ceil(dir.i_size / bs);
    const seed = this.inodeSeed(dir);
    const indexed = (dir.i_flags & EXT4_FL.INDEX) !== 0;
    for (let lblk = 0; lblk < nBlocks; ) {
      const run = await this.map(dir, lblk);
      const n = Math.min(run.len, nBlocks - lblk);
      if (run.pblk === null || run.unwritten) {
        lblk += n;
        continue;
      }
      for (let i = 0; i < n; i++) {
        const block = await this.readBlock(run.pblk + i);
        where.lblk = lblk + i;
        if (seed !== null) this.checkDirBlock(dir, block, lblk + i, indexed, seed);
        if (indexed && lblk + i > 0 && isDxNode(block, bs)) continue;
        yield* parseDirBlock(block, this.filetype, bs, where);
      }
      lblk += n;
    }
  }

  /** The block's metadata_csum checksum, warned about on mismatch; false when it does not match. */
  private checkDirBlock(dir: Ext4Inode, block: Buffer, lblk: number, indexed: boolean, seed: number): boolean {
    let c: { stored: number; computed: number } | null = null;
    let what = 'ext4_dir_entry_tail';
    // dx nodes first: a root that was a leaf before the directory grew keeps a stale leaf tail
    // in its last 12 bytes, where the dx_tail's dt_reserved now sits.
    if (indexed && (lblk === 0 || isDxNode(block, this.blockSize))) {
      c = dxNodeChecksum(seed, block, lblk === 0);
      what = 'dx_tail';
    } else if (hasDirTail(block)) c = dirBlockChecksum(seed, block);
    if (c && c.stored !== c.computed) {
      this.warn('W_EXT_CSUM_DIR', `directory ${dir.ino} block ${lblk}: checksum 0x${c.stored.toString(16)} != computed 0x${c.computed.toString(16)}`, { structure: what, ino: dir.ino, lblk });
      return false;
    }
    return true;
  }

  /** ext4_dir_htree_level: index levels the kernel allows, root included (3 with large_dir, else 2). */
  private maxHtreeLevels(): number {
    return this.superblock.s_feature_incompat & INCOMPAT.LARGEDIR ? EXT4_HTREE_LEVEL : EXT4_HTREE_LEVEL_COMPAT;
  }

  /** The name a user sees: UTF-8 when it decodes; encrypted dirs show the kernel's no-key form. */
  private displayName(dir: Ext4Inode, raw: Buffer): { name: string; rawName?: Buffer } {
    if (dir.i_flags & EXT4_FL.ENCRYPT) return { name: this.noKeyName(dir, raw) };
    const name = raw.toString('utf8');
    if (Buffer.byteLength(name) === raw.length && Buffer.from(name, 'utf8').equals(raw)) return { name };
    return { name, rawName: Buffer.from(raw) };
  }

  /**
   * fscrypt_fname_disk_to_usr without the key (fs/crypto/fname.c): base64url of struct
   * fscrypt_nokey_name { u32 dir_hash, u32 dir_hash_minor, u8 bytes[149], u8 sha256[32] }, the
   * ciphertext whole when it fits in bytes[], else its first 149 bytes and the SHA-256 of the rest.
   * The hash is the directory's htree hash of the ciphertext when ext4_readdir goes through the
   * htree code (is_dx_dir), else zero.
   */
  private noKeyName(dir: Ext4Inode, raw: Buffer): string {
    const head = Buffer.alloc(8);
    const dx = (this.superblock.s_feature_compat & COMPAT.DIR_INDEX) !== 0 && ((dir.i_flags & EXT4_FL.INDEX) !== 0 || Math.floor(dir.i_size / this.blockSize) === 1);
    if (dx) {
      const h = dirHash(raw, hashVersionOf(this.superblock), this.superblock.s_hash_seed);
      head.writeUInt32LE(h.hash, 0);
      head.writeUInt32LE(h.minorHash, 4);
    }
    const body = raw.length <= 149 ? raw : Buffer.concat([raw.subarray(0, 149), createHash('sha256').update(raw.subarray(149)).digest()]);
    return Buffer.concat([head, body]).toString('base64url');
  }

  private async entryType(e: RawDirent): Promise<FileType> {
    const t = this.filetype ? FT_TYPE[e.fileType] : undefined;
    if (t) return t;
    return (await this.live(e.inode)).type;
  }

  async *readdir(dirIno: number): AsyncIterable<DirEntry> {
    const dir = await this.live(dirIno);
    if (dir.type !== 'dir') throw new SnapferryError('E_FS_NOT_DIR', `inode ${dirIno} is not a directory`, { ino: dirIno });
    for await (const e of this.rawEntries(dir)) {
      checkBound('ext4_dir_entry_2', 'inode', e.inode, this.superblock.s_inodes_count, { dir: dirIno });
      if ((e.name.length === 1 && e.name[0] === 0x2e) || (e.name.length === 2 && e.name[0] === 0x2e && e.name[1] === 0x2e)) continue;
      if (this.orphans.has(e.inode)) continue;
      const n = this.displayName(dir, e.name);
      const entry: DirEntry = { name: n.name, ino: e.inode, type: await this.entryType(e) };
      if (n.rawName) entry.rawName = n.rawName;
      yield entry;
    }
  }

  /**
   * The inode `name` names in directory `dirIno`, or null. An indexed directory is searched through
   * its htree (dxLookup); any other, or one whose index we refuse, is scanned linearly, and its
   * names are cached when they fit in maxCachedDirBytes. Both paths skip orphans and match on
   * displayName(), so they answer alike.
   */
  async lookup(dirIno: number, name: string): Promise<number | null> {
    const cached = this.dirIndex.get(dirIno);
    if (cached) return cached.names.get(name) ?? null;
    const dir = await this.live(dirIno);
    if (dir.type !== 'dir') throw new SnapferryError('E_FS_NOT_DIR', `inode ${dirIno} is not a directory`, { ino: dirIno });
    if (this.isDxDir(dir)) {
      const found = await this.dxLookup(dir, name);
      if (found !== undefined) return found;
    }
    return this.linearLookup(dir, name);
  }

  /** is_dx_dir: the filesystem has dir_index and the directory EXT4_INDEX_FL (an inline directory has no index). */
  private isDxDir(dir: Ext4Inode): boolean {
    return (this.superblock.s_feature_compat & COMPAT.DIR_INDEX) !== 0 && (dir.i_flags & EXT4_FL.INDEX) !== 0 && (dir.i_flags & EXT4_FL.INLINE_DATA) === 0;
  }

  /** Every entry in order (ext4_readdir's non-hashed walk), first name wins; cached when it fits. */
  private async linearLookup(dir: Ext4Inode, name: string): Promise<number | null> {
    let names: Map<string, number> | null = new Map();
    let bytes = 0;
    for await (const e of this.rawEntries(dir)) {
      checkBound('ext4_dir_entry_2', 'inode', e.inode, this.superblock.s_inodes_count, { dir: dir.ino });
      if (this.orphans.has(e.inode)) continue;
      const n = this.displayName(dir, e.name).name;
      if (names) {
        if (names.has(n)) continue;
        names.set(n, e.inode);
        bytes += 2 * n.length + CACHED_NAME_OVERHEAD;
        if (bytes > this.maxCachedDirBytes) {
          // too big to keep: answer from what we have, else keep scanning without a map
          const hit = names.get(name);
          if (hit !== undefined) return hit;
          names = null;
        }
      } else if (n === name) return e.inode;
    }
    if (!names) return null;
    this.dirIndex.set(dir.ino, { names, bytes });
    return names.get(name) ?? null;
  }

  /**
   * ext4_dx_find_entry without the key or casefold tables: the htree probe for `name`.
   * undefined when the index cannot answer (casefolded directory, a name whose bytes are not its
   * UTF-8, an index we refuse: W_EXT_HTREE) and the caller must scan linearly.
   */
  private async dxLookup(dir: Ext4Inode, name: string): Promise<number | null | undefined> {
    // The hash of a casefolded directory is over the casefolded name; our lookup stays exact.
    if (dir.i_flags & EXT4_FL.CASEFOLD) return undefined;
    let probe: DxProbe;
    if (name === '.' || name === '..') probe = { dots: name };
    else if (dir.i_flags & EXT4_FL.ENCRYPT) {
      // A no-key name carries the ciphertext's hash (fscrypt_nokey_name.dir_hash), which is what
      // the index is ordered by. Every name we list is canonical base64url of >= 8 bytes, so any
      // other string names nothing.
      const raw = Buffer.from(name, 'base64url');
      if (raw.length < 8 || raw.toString('base64url') !== name) return null;
      probe = { embeddedHash: raw.readUInt32LE(0), matches: (b) => this.displayName(dir, b).name === name };
    } else {
      const bytes = Buffer.from(name, 'utf8');
      // A name that is not its bytes' UTF-8 may match a mis-encoded entry by its display form: scan.
      if (name.includes('\uFFFD') || bytes.toString('utf8') !== name) return undefined;
      probe = { name: bytes, matches: (b) => b.equals(bytes) };
    }
    try {
      return await this.dxFind(dir, probe);
    } catch (err) {
      if (!(err instanceof SnapferryError) || err.exitCode !== ExitCode.corrupt) throw err;
      this.warn('W_EXT_HTREE', `directory ${dir.ino}: htree index refused (${err.message}); scanned linearly`, { structure: 'dx_root', ino: dir.ino, code: err.code });
      return undefined;
    }
  }

  /**
   * dx_probe down indirect_levels interior levels to a leaf, the leaf scanned, then the next leaves
   * while their hash continues ours (ext4_htree_next_block). Every block is read once at most (a
   * dx_entry pointing back up is a cycle), within the directory's size, checksummed; a node out of
   * hash order or a miss in a leaf holding names of other hashes throws, and the caller scans.
   */
  private async dxFind(dir: Ext4Inode, probe: DxProbe): Promise<number | null | undefined> {
    const bs = this.blockSize;
    const ino = dir.ino;
    const nBlocks = Math.ceil(dir.i_size / bs);
    const seed = this.inodeSeed(dir);
    const csum = this.geometry.metadataCsum;
    const seen = new Set<number>();
    const readDirBlock = async (lblk: number, index: boolean): Promise<Buffer> => {
      checkBound('dx_entry', 'block', lblk, nBlocks - 1, { ino });
      expectField(!seen.has(lblk), 'E_EXT_HTREE', 'dx_entry', 'block', `block ${lblk} is reached twice (a cycle)`, { ino, lblk });
      seen.add(lblk);
      const run = await this.map(dir, lblk);
      expectField(run.pblk !== null && !run.unwritten, 'E_EXT_HTREE', 'dx_entry', 'block', `block ${lblk} is a hole`, { ino, lblk });
      const block = await this.readBlock(run.pblk);
      // A leaf's bad checksum is a warning (the data is served); an index node's also stops us
      // trusting where it points.
      if (seed !== null && !this.checkDirBlock(dir, block, lblk, true, seed) && index) {
        throw new CorruptStructureError('E_EXT_HTREE', `index block ${lblk} fails its checksum`, { structure: 'dx_tail', ino, lblk });
      }
      return block;
    };

    const root = await readDirBlock(0, true);
    const info = parseDxRoot(root, bs, csum, this.maxHtreeLevels(), ino);
    if ('dots' in probe) {
      // "." and ".." are the root's two fake entries, in no leaf.
      for (const e of parseDirBlock(root, this.filetype, bs, { ino, lblk: 0 })) {
        checkBound('ext4_dir_entry_2', 'inode', e.inode, this.superblock.s_inodes_count, { dir: ino });
        if (!this.orphans.has(e.inode) && e.name.toString('latin1') === probe.dots) return e.inode;
      }
      return null;
    }
    const version = hashVersionOf(this.superblock, info.hashVersion);
    let hash: number;
    if ('embeddedHash' in probe) {
      // noKeyName hashed with the filesystem's default version: only usable if the root agrees.
      if (version !== hashVersionOf(this.superblock)) return undefined;
      hash = probe.embeddedHash;
      if (hash % 2 === 1) return null; // dirHash never sets the collision bit: no listed name carries it
    } else hash = dirHash(probe.name, version, this.superblock.s_hash_seed).hash;

    const checkOrder = (f: DxFrame): void => {
      const key = `${f.range.lo}:${f.range.hi}`;
      if (this.dxOrdered.get(f.block) === key) return;
      checkDxOrder(f.block, f.node, f.range, ino, f.lblk);
      this.dxOrdered.set(f.block, key);
    };
    // frames[k]: the node at level k, the entry taken, the hash range it covers
    const frames: DxFrame[] = [{ block: root, node: info, lblk: 0, range: DX_FULL_RANGE, at: 0 }];
    const descend = async (from: number, first: boolean): Promise<void> => {
      for (let k = from; ; k++) {
        const f = frames[k]!;
        if (first) {
          checkOrder(f);
          f.at = dxSearch(f.block, f.node, hash);
        }
        if (k === info.indirectLevels) return;
        const lblk = dxBlockAt(f.block, f.node, f.at);
        const block = await readDirBlock(lblk, true);
        const node = parseDxNode(block, bs, csum, ino, lblk);
        const child: DxFrame = { block, node, lblk, range: dxChildRange(f.block, f.node, f.at, f.range), at: 0 };
        if (!first) checkOrder(child);
        frames[k + 1] = child;
      }
    };
    await descend(0, true);

    const scanned: { lblk: number; range: DxRange; names: Buffer[] }[] = [];
    for (;;) {
      const f = frames[info.indirectLevels]!;
      const lblk = dxBlockAt(f.block, f.node, f.at);
      const leaf = await readDirBlock(lblk, false);
      const names: Buffer[] = [];
      for (const e of parseDirBlock(leaf, this.filetype, bs, { ino, lblk })) {
        checkBound('ext4_dir_entry_2', 'inode', e.inode, this.superblock.s_inodes_count, { dir: ino });
        names.push(e.name);
        if (this.orphans.has(e.inode)) continue;
        if (probe.matches(e.name)) return e.inode;
      }
      scanned.push({ lblk, range: dxChildRange(f.block, f.node, f.at, f.range), names });
      // ext4_htree_next_block: the next entry at the deepest level that has one ...
      let k = info.indirectLevels;
      while (k >= 0 && frames[k]!.at + 1 >= frames[k]!.node.count) k--;
      if (k < 0) break;
      const g = frames[k]!;
      g.at++;
      // ... followed only while it continues our hash
      const next = dxHashAt(g.block, g.node, g.at);
      if (next - (next % 2) !== hash) break;
      await descend(k, false);
    }
    // A miss is only believed if every leaf we read holds names of its own range: a dx_entry
    // pointing at the wrong leaf would otherwise hide the name.
    for (const s of scanned) {
      for (const n of s.names) {
        const h = dirHash(n, version, this.superblock.s_hash_seed).hash;
        expectField(dxInRange(h, s.range), 'E_EXT_HTREE', 'dx_entry', 'block', `leaf block ${s.lblk} holds a name hashing to 0x${h.toString(16)}, outside 0x${s.range.lo.toString(16)}..0x${s.range.hi.toString(16)}`, { ino, lblk: s.lblk });
      }
    }
    return null;
  }

  // ---- the FileSystem contract --------------------------------------------------------------

  async stat(ino: number): Promise<Stat> {
    const inode = await this.live(ino);
    const st: Stat = {
      ino,
      type: inode.type,
      mode: inode.i_mode,
      nlink: inode.i_links_count,
      uid: inode.i_uid,
      gid: inode.i_gid,
      size: inode.i_size,
      allocatedSize: inode.i_blocks * 512,
      atimeNs: inode.atimeNs,
      mtimeNs: inode.mtimeNs,
      ctimeNs: inode.ctimeNs,
      ext: {
        flags: inode.i_flags,
        encrypted: (inode.i_flags & EXT4_FL.ENCRYPT) !== 0,
        casefolded: (inode.i_flags & EXT4_FL.CASEFOLD) !== 0,
        generation: inode.i_generation,
      },
    };
    if (inode.crtimeNs !== undefined) st.birthtimeNs = inode.crtimeNs;
    if (inode.type === 'blockdev' || inode.type === 'chardev') st.rdev = inodeRdev(inode);
    // fscrypt_symlink_getattr: an encrypted symlink reports the length of what readlink returns
    if (inode.type === 'symlink' && inode.i_flags & EXT4_FL.ENCRYPT) st.size = (await this.readlink(ino)).length;
    return st;
  }

  async read(ino: number, offset: number, length: number, stream?: string): Promise<Buffer> {
    if (stream !== undefined) throw new SnapferryError('E_FS_NO_STREAM', `ext has no named streams ('${stream}')`, { ino, stream });
    const inode = await this.live(ino);
    if (inode.type !== 'file') throw new SnapferryError('E_FS_NOT_FILE', `inode ${ino} is a ${inode.type}, not a file`, { ino });
    if (offset < 0 || length < 0) throw new SnapferryError('E_FS_RANGE', `negative range ${offset}+${length}`, { ino });
    return this.readInode(inode, offset, length);
  }

  async readInto(ino: number, out: Buffer, offset: number, stream?: string): Promise<number> {
    if (stream !== undefined) throw new SnapferryError('E_FS_NO_STREAM', `ext has no named streams ('${stream}')`, { ino, stream });
    const inode = await this.live(ino);
    if (inode.type !== 'file') throw new SnapferryError('E_FS_NOT_FILE', `inode ${ino} is a ${inode.type}, not a file`, { ino });
    if (offset < 0) throw new SnapferryError('E_FS_RANGE', `negative offset ${offset}`, { ino });
    return this.readInodeInto(inode, out, offset);
  }

  async readlink(ino: number): Promise<string> {
    const inode = await this.live(ino);
    if (inode.type !== 'symlink') throw new SnapferryError('E_FS_NOT_SYMLINK', `inode ${ino} is not a symlink`, { ino });
    checkBound('ext4_inode', 'i_size (symlink)', inode.i_size, Math.max(MAX_SYMLINK, this.blockSize), { ino });
    let target: Buffer;
    if (this.isFastSymlink(inode)) {
      checkBound('ext4_inode', 'i_size (fast symlink)', inode.i_size, inode.i_block.length, { ino });
      target = inode.i_block.subarray(0, inode.i_size);
    } else target = await this.readInode(inode, 0, inode.i_size);
    if (inode.i_flags & EXT4_FL.ENCRYPT) {
      // struct fscrypt_symlink_data { __le16 len; char encrypted_path[]; }, shown as a no-key name with no hash
      expectField(target.length >= 2, 'E_EXT_SYMLINK', 'fscrypt_symlink_data', 'len', 'missing', { ino });
      const len = target.readUInt16LE(0);
      checkBound('fscrypt_symlink_data', 'len', len, target.length - 2, { ino });
      const ct = target.subarray(2, 2 + len);
      const body = ct.length <= 149 ? ct : Buffer.concat([ct.subarray(0, 149), createHash('sha256').update(ct.subarray(149)).digest()]);
      return Buffer.concat([Buffer.alloc(8), body]).toString('base64url');
    }
    return target.toString('utf8');
  }

  /** The inode's xattrs: in-inode first, then the xattr block (the kernel's listxattr order). */
  private async rawXattrs(inode: Ext4Inode): Promise<RawXattr[]> {
    const out = parseIbodyXattrs(inode.raw, inode.i_extra_isize, this.geometry.inodeSize, inode.ino);
    if (inode.i_file_acl !== 0) {
      checkBound('ext4_inode', 'i_file_acl', inode.i_file_acl, this.superblock.s_blocks_count - 1, { ino: inode.ino });
      const block = await this.readBlock(inode.i_file_acl);
      if (this.geometry.metadataCsum) {
        const c = xattrBlockChecksum(this.geometry.csumSeed, inode.i_file_acl, block);
        if (c.stored !== c.computed) this.warn('W_EXT_CSUM_XATTR', `xattr block ${inode.i_file_acl} (inode ${inode.ino}): checksum 0x${c.stored.toString(16)} != computed 0x${c.computed.toString(16)}`, { structure: 'ext4_xattr_header', block: inode.i_file_acl, ino: inode.ino });
      }
      out.push(...parseXattrBlock(block, inode.i_file_acl, inode.ino));
    }
    return out;
  }

  async listxattr(ino: number): Promise<string[]> {
    const inode = await this.live(ino);
    const names: string[] = [];
    for (const x of await this.rawXattrs(inode)) {
      const n = xattrFullName(x);
      if (n !== null) names.push(n);
    }
    return names;
  }

  async getxattr(ino: number, name: string): Promise<Buffer> {
    const inode = await this.live(ino);
    for (const x of await this.rawXattrs(inode)) {
      if (xattrFullName(x) !== name) continue;
      let value: Buffer;
      if (x.value) value = Buffer.from(x.value);
      else {
        // ea_inode: the value is the data of inode e_value_inum (EXT4_EA_INODE_FL)
        const holder = await this.live(x.valueInum);
        expectField((holder.i_flags & EXT4_FL.EA_INODE) !== 0, 'E_EXT_XATTR', 'ext4_xattr_entry', 'e_value_inum', `inode ${x.valueInum} is not an EA inode`, { ino });
        value = await this.readInode(holder, 0, x.valueSize);
        expectField(value.length === x.valueSize, 'E_EXT_XATTR', 'ext4_xattr_entry', 'e_value_size', `${x.valueSize} but EA inode ${x.valueInum} holds ${holder.i_size}`, { ino });
      }
      if (x.index === EXT4_XATTR_INDEX.POSIX_ACL_ACCESS || x.index === EXT4_XATTR_INDEX.POSIX_ACL_DEFAULT) return aclToXattr(value, { ino, name });
      return value;
    }
    throw new SnapferryError('E_FS_NO_XATTR', `inode ${ino} has no xattr '${name}'`, { ino, name });
  }

  async *extents(ino: number, stream?: string): AsyncIterable<FileExtent> {
    if (stream !== undefined) throw new SnapferryError('E_FS_NO_STREAM', `ext has no named streams ('${stream}')`, { ino, stream });
    const inode = await this.live(ino);
    if (inode.type !== 'file') throw new SnapferryError('E_FS_NOT_FILE', `inode ${ino} is a ${inode.type}, not a file`, { ino });
    const size = inode.i_size;
    if (size === 0) return;
    if (inode.i_flags & EXT4_FL.INLINE_DATA) {
      yield { offset: 0, length: size, state: 'data' };
      return;
    }
    const bs = this.blockSize;
    let pos = 0; // bytes covered so far
    const emit = function* (offset: number, length: number, state: FileExtent['state'], physical?: number): Generator<FileExtent> {
      const end = Math.min(size, offset + length);
      if (end <= offset) return;
      const e: FileExtent = { offset, length: end - offset, state };
      if (physical !== undefined) e.physical = physical;
      yield e;
    };
    if (inode.i_flags & EXT4_FL.EXTENTS) {
      for await (const x of walkExtents(this.ctx, ino, inode.i_block, this.inodeSeed(inode))) {
        const start = x.lblk * bs;
        if (start >= size) break;
        if (start < pos) throw new CorruptStructureError('E_EXT_EXTENT', `inode ${ino}: extent at block ${x.lblk} overlaps the previous one`, { structure: 'ext4_extent', ino });
        if (start > pos) yield* emit(pos, start - pos, 'hole');
        yield* emit(start, x.len * bs, x.unwritten ? 'unwritten' : 'data', x.pblk * bs);
        pos = Math.min(size, start + x.len * bs);
      }
    } else {
      const nBlocks = Math.ceil(size / bs);
      for (let lblk = 0; lblk < nBlocks; ) {
        const run = await this.map(inode, lblk);
        const n = Math.min(run.len, nBlocks - lblk);
        yield* emit(lblk * bs, n * bs, run.pblk === null ? 'hole' : 'data', run.pblk === null ? undefined : run.pblk * bs);
        lblk += n;
      }
      pos = size;
    }
    if (pos < size) yield* emit(pos, size - pos, 'hole');
  }

  /**
   * For the journal engineer: the physical blocks of the journal inode (s_journal_inum), in logical
   * order, bounded by MAX_JOURNAL_BLOCKS. A hole in the journal is corruption (jbd2_journal_bmap).
   */
  async journalBlocks(): Promise<number[]> {
    const ino = this.superblock.s_journal_inum;
    expectField(ino !== 0 && (this.superblock.s_feature_compat & COMPAT.HAS_JOURNAL) !== 0, 'E_EXT_NO_JOURNAL', 'ext4_super_block', 's_journal_inum', 'the filesystem has no internal journal');
    const inode = await this.live(ino);
    const n = Math.ceil(inode.i_size / this.blockSize);
    checkBound('ext4_inode', 'i_size (journal blocks)', n, MAX_JOURNAL_BLOCKS, { ino });
    const out: number[] = [];
    for (let lblk = 0; lblk < n; ) {
      const run = await this.map(inode, lblk);
      if (run.pblk === null) throw new CorruptStructureError('E_EXT_JOURNAL_HOLE', `journal inode ${ino} has a hole at block ${lblk}`, { structure: 'ext4_inode', ino, lblk });
      const k = Math.min(run.len, n - lblk);
      for (let i = 0; i < k; i++) out.push(run.pblk + i);
      lblk += k;
    }
    return out;
  }

  async close(): Promise<void> {
    this.blocks.clear();
    this.inodes.clear();
    this.dirIndex.clear();
  }
}
