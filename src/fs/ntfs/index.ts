/**
 * Directory indexes ($I30): a B+tree of FILE_NAME keys whose root is the resident $INDEX_ROOT and
 * whose nodes are INDX blocks in $INDEX_ALLOCATION, allocated per $BITMAP (Linux-NTFS layout.h
 * INDEX_ROOT / INDEX_BLOCK / INDEX_ENTRY; libyal NTFS "Index"). Listing streams the root's entries
 * and then every allocated block in VCN order, as ntfs-3g's ntfs_readdir does, so a directory of
 * any size is listed one block at a time. Lookup descends the tree by $UpCase collation, with a
 * depth bound and a visited set (a node that is its own descendant is a cycle).
 */
import { CorruptStructureError } from '../../util/errors.js';
import { checkBound, KiB } from '../../util/bounded.js';
import { ByteLru } from '../../util/lru.js';
import type { NtfsGeometry } from './boot.js';
import { applyFixups } from './fixup.js';
import type { Inode } from './mft.js';
import type { AttrStream } from './attribute.js';
import { UpCase } from './upcase.js';
import {
  AT, INDEX_ROOT, INDEX_HEADER, INDEX_BLOCK, INDEX_ENTRY_HEADER, INDEX_ENTRY_NODE, INDEX_ENTRY_END, LARGE_INDEX,
  FILE_NAME_POSIX, mftRefRecord, decodeFileName, type FileName,
} from './structs.js';

export const I30 = '$I30';
/** Deeper than any real B+tree (a 2^32-entry directory with 4 KiB nodes is < 10 levels). */
export const MAX_INDEX_DEPTH = 32;
export const MAX_INDEX_BLOCK_SIZE = 64 * KiB;
/** Bytes of consecutive INDX blocks a listing reads at once. */
export const INDEX_READ_BYTES = 256 * KiB;

export interface IndexEntry {
  record: number;
  sequence: number;
  fileName: FileName;
}

interface Node {
  entries: (IndexEntry | null)[]; // null: the END entry (it may still point to a child)
  children: (number | null)[];
}

/** Parses the entries after an INDEX_HEADER at `hdr` in `buf` (a root value or a fixed-up block). */
export function parseIndexNode(buf: Buffer, hdr: number, where: string, keyed: 'file_name' | 'view' = 'file_name'): Node {
  const H = INDEX_HEADER;
  const E = INDEX_ENTRY_HEADER;
  const bad = (field: string, msg: string, value: number, limit?: number) => new CorruptStructureError('E_NTFS_INDEX', `${where}: ${msg}`, { structure: 'INDEX_ENTRY', field, where, value, limit });
  if (hdr + H.SIZE > buf.length) throw bad('entries_offset', 'INDEX_HEADER runs past the node', hdr, buf.length);
  const start = hdr + buf.readUInt32LE(hdr + H.entries_offset);
  const end = hdr + buf.readUInt32LE(hdr + H.index_length);
  if (end > buf.length || start < hdr + H.SIZE || start > end) throw bad('index_length', `entries ${start}..${end} fall outside the ${buf.length}-byte node`, end, buf.length);
  const large = (buf.readUInt8(hdr + H.ih_flags) & LARGE_INDEX) !== 0;
  const node: Node = { entries: [], children: [] };
  let pos = start;
  const maxEntries = Math.ceil((end - start) / E.SIZE);
  for (;;) {
    if (pos + E.SIZE > end) throw bad('length', `entry at ${pos} runs past index_length without an END entry`, pos, end);
    const length = buf.readUInt16LE(pos + E.length);
    const keyLength = buf.readUInt16LE(pos + E.key_length);
    const flags = buf.readUInt16LE(pos + E.ie_flags);
    if (length < E.SIZE || length % 8 !== 0 || pos + length > end) throw bad('length', `entry at ${pos} has length ${length}`, length, end - pos);
    const isNode = (flags & INDEX_ENTRY_NODE) !== 0;
    if (isNode && !large) throw bad('ie_flags', `entry at ${pos} points to a child in a node without LARGE_INDEX`, flags);
    if (E.key + keyLength + (isNode ? 8 : 0) > length) throw bad('key_length', `entry at ${pos} key of ${keyLength} bytes does not fit its ${length} bytes`, keyLength, length);
    let child: number | null = null;
    if (isNode) {
      const vcn = buf.readBigInt64LE(pos + length - 8);
      if (vcn < 0n || vcn > BigInt(Number.MAX_SAFE_INTEGER)) throw bad('vcn', `entry at ${pos} child VCN ${vcn}`, Number(vcn));
      child = Number(vcn);
    }
    node.children.push(child);
    if (flags & INDEX_ENTRY_END) {
      node.entries.push(null);
      break;
    }
    if (node.entries.length >= maxEntries) throw bad('length', 'more entries than the node can hold', node.entries.length, maxEntries);
    if (keyed === 'file_name') {
      const key = buf.subarray(pos + E.key, pos + E.key + keyLength);
      node.entries.push({ record: mftRefRecord(buf, pos + E.indexed_file), sequence: buf.readUInt16LE(pos + E.indexed_file + 6), fileName: decodeFileName(key, `${where} entry at ${pos}`) });
    } else node.entries.push(null);
    pos += length;
  }
  return node;
}

/** The $I30 index of one directory inode. */
export class DirectoryIndex {
  private readonly root: Node;
  private readonly alloc?: AttrStream;
  private readonly bitmap?: AttrStream;
  private readonly blockSize: number;
  private readonly vcnSize: number;
  private readonly where: string;

  constructor(
    private readonly inode: Inode,
    geo: NtfsGeometry,
    private readonly upcase: UpCase,
    private readonly blockCache: ByteLru<string, Node>,
  ) {
    this.where = `directory ${inode.recordNo} $I30`;
    const rootStream = inode.stream(AT.INDEX_ROOT, I30);
    if (!rootStream || !rootStream.resident) throw new CorruptStructureError('E_NTFS_INDEX', `${this.where}: no resident $INDEX_ROOT`, { structure: 'INDEX_ROOT', record: inode.recordNo });
    const v = inode.attrs.find((a) => a.type === AT.INDEX_ROOT && a.name === I30)!.value!;
    if (v.length < INDEX_ROOT.SIZE) throw new CorruptStructureError('E_NTFS_INDEX', `${this.where}: INDEX_ROOT is ${v.length} bytes`, { structure: 'INDEX_ROOT', record: inode.recordNo, value: v.length });
    if (v.readUInt32LE(INDEX_ROOT.type) !== AT.FILE_NAME) throw new CorruptStructureError('E_NTFS_INDEX', `${this.where}: INDEX_ROOT indexes attribute 0x${v.readUInt32LE(INDEX_ROOT.type).toString(16)}, not FILE_NAME`, { structure: 'INDEX_ROOT', field: 'type', record: inode.recordNo });
    this.blockSize = v.readUInt32LE(INDEX_ROOT.index_block_size);
    if (this.blockSize < 512 || this.blockSize > MAX_INDEX_BLOCK_SIZE || this.blockSize & (this.blockSize - 1)) {
      throw new CorruptStructureError('E_NTFS_INDEX', `${this.where}: INDEX_ROOT.index_block_size = ${this.blockSize}, not a power of two in [512, ${MAX_INDEX_BLOCK_SIZE}]`, { structure: 'INDEX_ROOT', field: 'index_block_size', value: this.blockSize, limit: MAX_INDEX_BLOCK_SIZE });
    }
    // Index VCNs count clusters when a block is at least a cluster, else 512-byte units (layout.h).
    this.vcnSize = this.blockSize >= geo.clusterSize ? geo.clusterSize : 512;
    this.root = parseIndexNode(v, INDEX_ROOT.index, `${this.where} INDEX_ROOT`);
    this.alloc = inode.stream(AT.INDEX_ALLOCATION, I30);
    this.bitmap = inode.stream(AT.BITMAP, I30);
  }

  private async block(vcn: number): Promise<Node> {
    const key = `${this.inode.recordNo}:${vcn}`;
    const hit = this.blockCache.get(key);
    if (hit) return hit;
    const where = `${this.where} INDX block at VCN ${vcn}`;
    if (!this.alloc) throw new CorruptStructureError('E_NTFS_INDEX', `${where}: the directory has no $INDEX_ALLOCATION`, { structure: 'INDEX_BLOCK', record: this.inode.recordNo, value: vcn });
    const off = vcn * this.vcnSize;
    if (!Number.isSafeInteger(off) || off + this.blockSize > this.alloc.size) throw new CorruptStructureError('E_NTFS_INDEX', `${where}: outside the ${this.alloc.size}-byte $INDEX_ALLOCATION`, { structure: 'INDEX_BLOCK', record: this.inode.recordNo, value: vcn, limit: this.alloc.size });
    const node = this.parseBlock(await this.alloc.read(off, this.blockSize), vcn);
    this.blockCache.set(key, node);
    return node;
  }

  /** An INDX block read from disk (modified in place by the fixups), checked and parsed. */
  private parseBlock(buf: Buffer, vcn: number): Node {
    const where = `${this.where} INDX block at VCN ${vcn}`;
    applyFixups(buf, 'INDX', where, { record: this.inode.recordNo, vcn });
    const stored = buf.readBigInt64LE(INDEX_BLOCK.index_block_vcn);
    if (stored !== BigInt(vcn)) throw new CorruptStructureError('E_NTFS_INDEX', `${where}: INDEX_BLOCK.index_block_vcn is ${stored}`, { structure: 'INDEX_BLOCK', field: 'index_block_vcn', record: this.inode.recordNo, value: Number(stored), expected: vcn });
    return parseIndexNode(buf, INDEX_BLOCK.index, where);
  }

  /**
   * Every entry: the root's, then each allocated block's in VCN order (ntfs_readdir's order).
   * Consecutive allocated blocks are read together, up to INDEX_READ_BYTES at a time (a directory's
   * blocks mostly lie in one run: one read instead of one per 4 KiB block). A listing reads each
   * block once, so it leaves the block cache to lookups: it uses the blocks cached there and adds
   * none (a walk would otherwise fill it with nodes nobody asks for again, the kernel having the
   * names).
   */
  async *entries(): AsyncGenerator<IndexEntry> {
    for (const e of this.root.entries) if (e) yield e;
    if (!this.alloc) return;
    const bs = this.blockSize;
    const blocks = Math.floor(this.alloc.size / bs);
    const bits = this.bitmap ? await this.bitmap.read(0, Math.ceil(blocks / 8)) : null;
    const allocated = (i: number): boolean => !bits || (bits[i >> 3]! & (1 << (i & 7))) !== 0;
    const perRead = Math.max(1, Math.floor(INDEX_READ_BYTES / bs));
    const cached = (i: number): Node | undefined => this.blockCache.get(`${this.inode.recordNo}:${(i * bs) / this.vcnSize}`);
    for (let i = 0; i < blocks; ) {
      if (!allocated(i)) {
        i++;
        continue;
      }
      const hit = cached(i);
      if (hit) {
        for (const e of hit.entries) if (e) yield e;
        i++;
        continue;
      }
      let j = i + 1;
      while (j < blocks && j - i < perRead && allocated(j) && !cached(j)) j++;
      let bytes: Buffer | null = null;
      try {
        bytes = await this.alloc.read(i * bs, (j - i) * bs);
      } catch {
        // block by block instead: the entries before a damaged block are still listed
      }
      for (let k = i; k < j; k++) {
        const vcn = (k * bs) / this.vcnSize;
        const node = bytes ? this.parseBlock(bytes.subarray((k - i) * bs, (k - i + 1) * bs), vcn) : await this.block(vcn);
        for (const e of node.entries) if (e) yield e;
      }
      i = j;
    }
  }

  /**
   * Entries whose name equals `units` ignoring case (through $UpCase), in collation order. Entries
   * equal to the key can sit in the subtree left of an equal entry, so those are searched too.
   */
  async findIgnoreCase(units: Uint16Array): Promise<IndexEntry[]> {
    const found: IndexEntry[] = [];
    const visited = new Set<number>();
    const visit = async (node: Node, depth: number): Promise<void> => {
      checkBound('INDEX_BLOCK', 'tree depth', depth, MAX_INDEX_DEPTH, { record: this.inode.recordNo });
      for (let i = 0; i < node.entries.length; i++) {
        const e = node.entries[i];
        const c = e ? this.upcase.compare(units, e.fileName.units) : -1;
        if (c <= 0) {
          const child = node.children[i];
          if (child !== null && child !== undefined) {
            if (visited.has(child)) throw new CorruptStructureError('E_NTFS_CYCLE', `${this.where}: INDX block at VCN ${child} is reached twice: the B+tree loops`, { structure: 'INDEX_BLOCK', record: this.inode.recordNo, value: child });
            visited.add(child);
            await visit(await this.block(child), depth + 1);
          }
          if (c < 0) return;
          found.push(e!);
        }
      }
    };
    await visit(this.root, 0);
    return found;
  }

  /** The lookup contract: an exact match wins; otherwise a case-insensitive match that is not in the (case-sensitive) POSIX namespace. */
  async lookup(units: Uint16Array): Promise<IndexEntry | null> {
    const candidates = await this.findIgnoreCase(units);
    const exact = candidates.find((e) => sameUnits(e.fileName.units, units));
    if (exact) return exact;
    return candidates.find((e) => e.fileName.nameType !== FILE_NAME_POSIX) ?? null;
  }
}

function sameUnits(a: Uint16Array, b: Uint16Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export type { Node as IndexNode };
