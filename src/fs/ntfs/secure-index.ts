/**
 * Lookup in a view index keyed by a 32-bit number (COLLATION_NTOFS_ULONG): $Secure:$SII maps a
 * security_id to its SECURITY_DESCRIPTOR_HEADER in $SDS. Same B+tree as directories (INDEX_ROOT,
 * INDX blocks with fixups), but entries carry data (data_offset/data_length) instead of an MFT
 * reference. Depth-bounded, cycle-checked.
 */
import { CorruptStructureError } from '../../util/errors.js';
import { checkBound } from '../../util/bounded.js';
import type { Inode } from './mft.js';
import { applyFixups } from './fixup.js';
import { AT, INDEX_ROOT, INDEX_HEADER, INDEX_BLOCK, INDEX_ENTRY_HEADER, INDEX_ENTRY_NODE, INDEX_ENTRY_END, SECURITY_DESCRIPTOR_HEADER } from './structs.js';
import { MAX_INDEX_DEPTH, MAX_INDEX_BLOCK_SIZE } from './index.js';

export async function parseViewIndexLookup(inode: Inode, name: string, key: number): Promise<{ offset: number; length: number } | null> {
  const where = `MFT record ${inode.recordNo} ${name}`;
  const bad = (msg: string, value = 0) => new CorruptStructureError('E_NTFS_INDEX', `${where}: ${msg}`, { structure: 'INDEX_ENTRY', where, value });
  const rootAttr = inode.attrs.find((a) => a.type === AT.INDEX_ROOT && a.name === name && a.resident);
  if (!rootAttr) return null;
  const root = rootAttr.value!;
  if (root.length < INDEX_ROOT.SIZE) throw bad('INDEX_ROOT too short', root.length);
  const blockSize = root.readUInt32LE(INDEX_ROOT.index_block_size);
  checkBound('INDEX_ROOT', 'index_block_size', blockSize, MAX_INDEX_BLOCK_SIZE, { where });
  const alloc = inode.stream(AT.INDEX_ALLOCATION, name);
  const visited = new Set<number>();
  let buf = root;
  let hdr: number = INDEX_ROOT.index;
  for (let depth = 0; ; depth++) {
    checkBound('INDEX_BLOCK', 'tree depth', depth, MAX_INDEX_DEPTH, { where });
    const start = hdr + buf.readUInt32LE(hdr + INDEX_HEADER.entries_offset);
    const end = hdr + buf.readUInt32LE(hdr + INDEX_HEADER.index_length);
    if (end > buf.length || start < hdr + INDEX_HEADER.SIZE || start > end) throw bad('entries fall outside the node', end);
    let pos = start;
    let child: number | null = null;
    for (;;) {
      if (pos + INDEX_ENTRY_HEADER.SIZE > end) throw bad('no END entry', pos);
      const length = buf.readUInt16LE(pos + INDEX_ENTRY_HEADER.length);
      const flags = buf.readUInt16LE(pos + INDEX_ENTRY_HEADER.ie_flags);
      if (length < INDEX_ENTRY_HEADER.SIZE || length % 8 || pos + length > end) throw bad(`entry length ${length}`, length);
      const isNode = (flags & INDEX_ENTRY_NODE) !== 0;
      const childVcn = isNode && length >= INDEX_ENTRY_HEADER.SIZE + 8 ? Number(buf.readBigInt64LE(pos + length - 8)) : null;
      if (flags & INDEX_ENTRY_END) {
        child = childVcn;
        break;
      }
      if (length < INDEX_ENTRY_HEADER.SIZE + 4) throw bad(`entry length ${length}`, length);
      const k = buf.readUInt32LE(pos + INDEX_ENTRY_HEADER.key);
      if (k === key) {
        const dOff = buf.readUInt16LE(pos + INDEX_ENTRY_HEADER.data_offset);
        const dLen = buf.readUInt16LE(pos + INDEX_ENTRY_HEADER.data_length);
        if (dLen < SECURITY_DESCRIPTOR_HEADER.SIZE || dOff + dLen > length) throw bad('entry data outside the entry', dOff);
        const d = pos + dOff;
        const offset = buf.readBigUInt64LE(d + SECURITY_DESCRIPTOR_HEADER.offset);
        if (offset > BigInt(Number.MAX_SAFE_INTEGER)) throw bad('offset too large');
        return { offset: Number(offset), length: buf.readUInt32LE(d + SECURITY_DESCRIPTOR_HEADER.length) };
      }
      if (key < k) {
        child = childVcn;
        break;
      }
      pos += length;
    }
    if (child === null || !alloc) return null;
    if (visited.has(child)) throw new CorruptStructureError('E_NTFS_CYCLE', `${where}: INDX block at VCN ${child} reached twice`, { where, value: child });
    visited.add(child);
    const unit = blockSize >= inode.clusterSize ? inode.clusterSize : 512;
    const off = child * unit;
    if (!Number.isSafeInteger(off) || off + blockSize > alloc.size) throw bad(`child VCN ${child} outside $INDEX_ALLOCATION`, child);
    buf = await alloc.read(off, blockSize);
    applyFixups(buf, 'INDX', `${where} INDX block at VCN ${child}`, { record: inode.recordNo, vcn: child });
    hdr = INDEX_BLOCK.index;
  }
}
