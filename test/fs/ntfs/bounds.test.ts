/**
 * Hostile input: every bound the NTFS reader applies, proven with a crafted structure that crosses
 * it and the typed error it must raise (never a crash, a hang or a huge allocation). Unit-level
 * structures are built in memory; whole-volume cases patch a copy of a real mkntfs/ntfs-3g image
 * (re-protecting patched records with their update sequence so only the intended fault remains).
 */
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseBootSector } from '../../../src/fs/ntfs/boot.js';
import { applyFixups } from '../../../src/fs/ntfs/fixup.js';
import { decodeRunlist } from '../../../src/fs/ntfs/runlist.js';
import { decompressLznt1 } from '../../../src/fs/ntfs/lznt1.js';
import { parseAttributes } from '../../../src/fs/ntfs/attribute.js';
import { parseAttributeList, parseMftRecord } from '../../../src/fs/ntfs/mft.js';
import { parseIndexNode } from '../../../src/fs/ntfs/index.js';
import { UpCase } from '../../../src/fs/ntfs/upcase.js';
import { openNtfs, type NtfsFileSystem } from '../../../src/fs/ntfs/ntfs.js';
import { resolvePath } from '../../../src/fs/path.js';
import { ATTR_RECORD, AT, MFT_RECORD, NTFS_BOOT_SECTOR, NTFS_RECORD, INDEX_BLOCK, INDEX_HEADER, INDEX_ENTRY_HEADER, INDEX_ENTRY_NODE, INDEX_ENTRY_END, LARGE_INDEX } from '../../../src/fs/ntfs/structs.js';
import type { NtfsGeometry } from '../../../src/fs/ntfs/boot.js';
import { ntfsImages, volumeOfBuffer } from './helpers.js';

const GEO: NtfsGeometry = { bytesPerSector: 512, clusterSize: 4096, mftRecordSize: 1024, indexBlockSize: 4096, totalClusters: 1000, mftLcn: 4, mftMirrLcn: 500, serialNumber: 0n };
const base = readFileSync(join(ntfsImages(), 'ntfs-4k.img'));

/** Writes the update sequence back over a logical (fixed-up) record so it reads as intact. */
function reprotect(rec: Buffer): void {
  const usaOfs = rec.readUInt16LE(NTFS_RECORD.usa_ofs);
  const usn = rec.readUInt16LE(usaOfs);
  for (let i = 0; i < rec.length / 512; i++) {
    const tail = (i + 1) * 512 - 2;
    rec.writeUInt16LE(rec.readUInt16LE(tail), usaOfs + 2 + i * 2);
    rec.writeUInt16LE(usn, tail);
  }
}

/** A patched copy of the 4 KiB image: `edit` gets the copy and the reader opened on the original. */
async function patched(edit: (img: Buffer, fs: NtfsFileSystem) => Promise<void> | void): Promise<NtfsFileSystem> {
  const img = Buffer.from(base);
  await edit(img, await openNtfs(volumeOfBuffer(base)));
  return openNtfs(volumeOfBuffer(img));
}

/** Byte offset in the volume of MFT record n (through $MFT's runlist). */
function recordOffset(fs: NtfsFileSystem, n: number): number {
  const mft = (fs as unknown as { mft: { mftData: { runs: { vcn: number; lcn: number | null; length: number }[] } } }).mft;
  const cs = fs.geometry.clusterSize;
  const byte = n * fs.geometry.mftRecordSize;
  const run = mft.mftData.runs.find((r) => byte >= r.vcn * cs && byte < (r.vcn + r.length) * cs)!;
  return run.lcn! * cs + (byte - run.vcn * cs);
}

/** Edits MFT record n of `img` in its fixed-up form. */
function editRecord(img: Buffer, fs: NtfsFileSystem, n: number, edit: (rec: Buffer) => void): void {
  const off = recordOffset(fs, n);
  const rec = Buffer.from(img.subarray(off, off + fs.geometry.mftRecordSize));
  applyFixups(rec, 'FILE', `record ${n}`);
  edit(rec);
  reprotect(rec);
  rec.copy(img, off);
}

/** Offset of the first attribute of `type` in a fixed-up record. */
function attrOffset(rec: Buffer, type: number): number {
  let pos = rec.readUInt16LE(MFT_RECORD.attrs_offset);
  while (rec.readUInt32LE(pos) !== type) pos += rec.readUInt32LE(pos + ATTR_RECORD.length);
  return pos;
}

t.test('boot sector: geometry encodings and their bounds', async (t) => {
  const boot = Buffer.from(base.subarray(0, 512));
  const with_ = (f: (b: Buffer) => void) => {
    const b = Buffer.from(boot);
    f(b);
    return b;
  };
  const huge = 2 ** 50;
  t.equal(parseBootSector(boot, base.length).clusterSize, 4096, 'the real boot sector');
  const twoMiB = parseBootSector(with_((b) => {
    b.writeUInt8(0xf4, NTFS_BOOT_SECTOR.sectors_per_cluster);
    b.writeInt8(-10, NTFS_BOOT_SECTOR.clusters_per_mft_record);
    b.writeInt8(-12, NTFS_BOOT_SECTOR.clusters_per_index_record);
  }), huge);
  t.same([twoMiB.clusterSize, twoMiB.mftRecordSize, twoMiB.indexBlockSize], [2 * 1024 * 1024, 1024, 4096], 'sectors_per_cluster 0xF4: 2^12 sectors, 2 MiB clusters, records and blocks in -log2 form');
  t.equal(parseBootSector(with_((b) => b.writeUInt8(0x80, NTFS_BOOT_SECTOR.sectors_per_cluster)), huge).clusterSize, 65536, 'sectors_per_cluster 0x80: 128 sectors');
  t.equal(parseBootSector(with_((b) => b.writeUInt8(1, NTFS_BOOT_SECTOR.sectors_per_cluster)), huge).clusterSize, 512, '512-byte clusters');
  t.throws(() => parseBootSector(with_((b) => b.writeUInt8(0xf3, NTFS_BOOT_SECTOR.sectors_per_cluster)), huge), { code: 'E_NTFS_BOOT' }, '4 MiB clusters are refused');
  t.throws(() => parseBootSector(with_((b) => b.writeUInt8(0x03, NTFS_BOOT_SECTOR.sectors_per_cluster)), huge), { code: 'E_NTFS_BOOT' }, 'a non-power-of-two cluster');
  t.throws(() => parseBootSector(with_((b) => b.writeUInt8(0x81, NTFS_BOOT_SECTOR.sectors_per_cluster)), huge), { code: 'E_BOUND' }, 'sectors_per_cluster 0x81: a shift of 127 is past the bound');
  t.equal(parseBootSector(with_((b) => b.writeInt8(-12, NTFS_BOOT_SECTOR.clusters_per_mft_record)), huge).mftRecordSize, 4096, 'clusters_per_mft_record -12: 4 KiB records');
  t.equal(parseBootSector(with_((b) => b.writeInt8(2, NTFS_BOOT_SECTOR.clusters_per_index_record)), huge).indexBlockSize, 8192, 'positive counts are clusters');
  t.throws(() => parseBootSector(with_((b) => b.writeInt8(-17, NTFS_BOOT_SECTOR.clusters_per_mft_record)), huge), { code: 'E_BOUND' }, '2^17-byte records');
  t.throws(() => parseBootSector(with_((b) => b.writeInt8(-8, NTFS_BOOT_SECTOR.clusters_per_mft_record)), huge), { code: 'E_NTFS_BOOT' }, '256-byte records are smaller than a fixup stride');
  t.throws(() => parseBootSector(with_((b) => b.writeInt8(127, NTFS_BOOT_SECTOR.clusters_per_index_record)), huge), { code: 'E_NTFS_BOOT' }, '127-cluster index blocks');
  t.throws(() => parseBootSector(with_((b) => b.write('NTFZ', NTFS_BOOT_SECTOR.oem_id)), huge), { code: 'E_NTFS_BOOT' }, 'not NTFS');
  t.throws(() => parseBootSector(with_((b) => b.writeUInt16LE(100, NTFS_BOOT_SECTOR.bytes_per_sector)), huge), { code: 'E_NTFS_BOOT' }, '100-byte sectors');
  t.throws(() => parseBootSector(boot, base.length / 2), { code: 'E_BOUND', data: { field: 'number_of_sectors * bytes_per_sector' } }, 'a filesystem larger than its volume');
  t.throws(() => parseBootSector(with_((b) => b.writeBigInt64LE(10n ** 9n, NTFS_BOOT_SECTOR.mft_lcn)), huge), { code: 'E_BOUND', data: { field: 'mft_lcn' } }, '$MFT outside the volume');
  t.throws(() => parseBootSector(with_((b) => b.writeBigInt64LE(2n ** 62n, NTFS_BOOT_SECTOR.number_of_sectors)), huge), { code: 'E_BOUND' }, 'a 64-bit size past 2^53');
});

t.test('fixups: a torn MFT record or index block is E_NTFS_FIXUP naming it', async (t) => {
  const probe = await openNtfs(volumeOfBuffer(base));
  const readme = await resolvePath(probe, '/readme.txt');
  const fs = await patched((img, fs) => {
    img[recordOffset(fs, readme) + 1022] ^= 0xff; // the tail of the second stride
  });
  await t.rejects(fs.stat(readme), { code: 'E_NTFS_FIXUP', data: { record: readme, stride: 1 } }, `record ${readme} named`);
  t.ok(await fs.stat(await resolvePath(fs, '/big.bin')), 'other records still read');

  const many = await resolvePath(probe, '/many');
  const inode = await (probe as unknown as { mft: { inode(n: number): Promise<{ stream(t: number, n: string): { runs: { lcn: number | null }[] } }> } }).mft.inode(many);
  const lcn = inode.stream(AT.INDEX_ALLOCATION, '$I30').runs[0]!.lcn!;
  const fs2 = await patched((img) => {
    img[lcn * 4096 + 2 * 512 - 1] ^= 0x55; // stride 2 of the INDX block at VCN 0
  });
  const entries = async () => {
    for await (const _ of fs2.readdir(many)) void _;
  };
  await t.rejects(entries(), { code: 'E_NTFS_FIXUP', data: { vcn: 0, stride: 1 } }, 'the INDX block is named by directory and VCN');
  const rec = Buffer.alloc(1024);
  rec.write('FILE', 0);
  rec.writeUInt16LE(0x30, NTFS_RECORD.usa_ofs);
  rec.writeUInt16LE(9, NTFS_RECORD.usa_count);
  t.throws(() => applyFixups(rec, 'FILE', 'crafted'), { code: 'E_NTFS_FIXUP', data: { field: 'usa_count' } }, 'usa_count not matching the record size');
  rec.write('BAAD', 0);
  t.throws(() => applyFixups(rec, 'FILE', 'crafted'), { code: 'E_NTFS_RECORD' }, 'a record marked BAAD');
});

t.test('runlists: sparse runs, negative offsets, and every bound', async (t) => {
  const rl = (bytes: number[], highest = 1000, total = 1000) => decodeRunlist(Buffer.from(bytes), 0, bytes.length, 0, highest, total, 'crafted');
  t.same(rl([0x11, 0x04, 0x20, 0x01, 0x08, 0x11, 0x02, 0xf0, 0x00]), [
    { vcn: 0, lcn: 32, length: 4 },
    { vcn: 4, lcn: null, length: 8 },
    { vcn: 12, lcn: 16, length: 2 },
  ], 'a run, a hole, a run at a negative delta');
  t.throws(() => rl([0x19, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0]), { code: 'E_NTFS_RUNLIST' }, 'a 9-byte length field');
  t.throws(() => rl([0x10, 0x05, 0x00]), { code: 'E_NTFS_RUNLIST' }, 'a length field of size 0');
  t.throws(() => rl([0x11, 0x00, 0x05, 0x00]), { code: 'E_NTFS_RUNLIST' }, 'a zero-length run');
  t.throws(() => rl([0x11, 0x04, 0xf0, 0x00]), { code: 'E_NTFS_RUNLIST', data: { field: 'lcn' } }, 'a negative LCN');
  t.throws(() => rl([0x21, 0x04, 0xe8, 0x03, 0x00]), { code: 'E_NTFS_RUNLIST', data: { field: 'lcn' } }, 'clusters past the volume');
  t.throws(() => rl([0x11, 0x10, 0x01, 0x00], 7), { code: 'E_NTFS_RUNLIST', data: { field: 'highest_vcn' } }, 'runs past highest_vcn');
  t.throws(() => rl([0x31, 0x10, 0x01]), { code: 'E_NTFS_RUNLIST' }, 'a pair cut by the attribute end');
});

t.test('LZNT1: a reference vector, and corrupt chunks', async (t) => {
  // "abc" literals, then a back-reference of offset 3, length 6: token ((3-1) << 12) | (6-3)
  const chunk = Buffer.from([0x05, 0xb0, 0x08, 0x61, 0x62, 0x63, 0x03, 0x20]);
  t.equal(decompressLznt1(chunk, 16, 'v').toString('latin1'), 'abcabcabc\0\0\0\0\0\0\0', 'overlapping copy, then zeros');
  const stored = Buffer.concat([Buffer.from([0xff, 0x3f]), Buffer.alloc(4096, 0x41)]);
  t.equal(decompressLznt1(stored, 4096, 'v').toString('latin1'), 'A'.repeat(4096), 'an uncompressed chunk');
  t.throws(() => decompressLznt1(Buffer.from([0x03, 0xb0, 0x01, 0x00, 0x20]), 4096, 'v'), { code: 'E_NTFS_LZNT1' }, 'a reference before the chunk start');
  t.throws(() => decompressLznt1(Buffer.from([0xff, 0xbf, 0x00, 0x41]), 4096, 'v'), { code: 'E_NTFS_LZNT1' }, 'a chunk longer than the data');
  t.equal(decompressLznt1(Buffer.from([0x05, 0xb0, 0x08, 0x61, 0x62, 0x63, 0xff, 0x0f]), 64, 'v').length, 64, 'a long reference stops at the output size');
});

t.test('attribute records, attribute lists, index entries: lengths inside their containers', async (t) => {
  const rec = Buffer.alloc(1024);
  const at = 0x38;
  const put = (len: number, nameLen = 0, nameOff = 0, valLen = 0, valOff = 0x18) => {
    rec.fill(0);
    rec.writeUInt32LE(AT.DATA, at);
    rec.writeUInt32LE(len, at + ATTR_RECORD.length);
    rec.writeUInt8(nameLen, at + ATTR_RECORD.name_length);
    rec.writeUInt16LE(nameOff, at + ATTR_RECORD.name_offset);
    rec.writeUInt32LE(valLen, at + ATTR_RECORD.value_length);
    rec.writeUInt16LE(valOff, at + ATTR_RECORD.value_offset);
    if (at + len + 4 <= rec.length) rec.writeUInt32LE(0xffffffff, at + len);
  };
  put(0x20, 0, 0, 8);
  t.equal(parseAttributes(rec, at, 0x100, 7, GEO).length, 1, 'a well-formed resident attribute');
  put(0x20, 0, 0, 8);
  t.throws(() => parseAttributes(rec, at, 0x50, 7, GEO), { code: 'E_NTFS_ATTR' }, 'no end marker within bytes_in_use');
  put(0x400);
  t.throws(() => parseAttributes(rec, at, 0x100, 7, GEO), { code: 'E_NTFS_ATTR', data: { field: 'length' } }, 'an attribute past bytes_in_use');
  put(0x1c);
  t.throws(() => parseAttributes(rec, at, 0x100, 7, GEO), { code: 'E_NTFS_ATTR', data: { field: 'length' } }, 'an unaligned length');
  put(0x20, 20, 0x18);
  t.throws(() => parseAttributes(rec, at, 0x100, 7, GEO), { code: 'E_NTFS_ATTR', data: { field: 'name_length' } }, 'a name past the attribute');
  put(0x20, 0, 0, 100);
  t.throws(() => parseAttributes(rec, at, 0x100, 7, GEO), { code: 'E_NTFS_ATTR', data: { field: 'value_length' } }, 'a value past the attribute');
  put(0x48, 0, 0, 0, 0);
  rec.writeUInt8(1, at + ATTR_RECORD.non_resident);
  rec.writeUInt16LE(0x10, at + ATTR_RECORD.mapping_pairs_offset);
  t.throws(() => parseAttributes(rec, at, 0x100, 7, GEO), { code: 'E_NTFS_ATTR', data: { field: 'mapping_pairs_offset' } }, 'mapping pairs inside the header');

  const list = Buffer.alloc(64);
  list.writeUInt16LE(0x10, 4);
  t.throws(() => parseAttributeList(list, 'crafted'), { code: 'E_NTFS_ATTRLIST', data: { field: 'length' } }, 'an attribute list entry shorter than its header');
  t.throws(() => parseAttributeList(Buffer.alloc(300 * 1024), 'crafted'), { code: 'E_BOUND' }, 'an attribute list past 256 KiB');

  const node = Buffer.alloc(256);
  node.writeUInt32LE(INDEX_HEADER.SIZE, INDEX_HEADER.entries_offset);
  node.writeUInt32LE(INDEX_HEADER.SIZE + 16, INDEX_HEADER.index_length);
  node.writeUInt16LE(16, INDEX_HEADER.SIZE + INDEX_ENTRY_HEADER.length);
  node.writeUInt16LE(INDEX_ENTRY_END, INDEX_HEADER.SIZE + INDEX_ENTRY_HEADER.ie_flags);
  t.same(parseIndexNode(node, 0, 'crafted').entries, [null], 'an empty node: just the END entry');
  node.writeUInt16LE(64, INDEX_HEADER.SIZE + INDEX_ENTRY_HEADER.length);
  t.throws(() => parseIndexNode(node, 0, 'crafted'), { code: 'E_NTFS_INDEX', data: { field: 'length' } }, 'an entry past index_length');
  node.writeUInt16LE(24, INDEX_HEADER.SIZE + INDEX_ENTRY_HEADER.length);
  node.writeUInt32LE(INDEX_HEADER.SIZE + 24, INDEX_HEADER.index_length);
  node.writeUInt16LE(INDEX_ENTRY_END | INDEX_ENTRY_NODE, INDEX_HEADER.SIZE + INDEX_ENTRY_HEADER.ie_flags);
  t.throws(() => parseIndexNode(node, 0, 'crafted'), { code: 'E_NTFS_INDEX', data: { field: 'ie_flags' } }, 'a child pointer in a node without LARGE_INDEX');
  node.writeUInt8(LARGE_INDEX, INDEX_HEADER.ih_flags);
  t.same(parseIndexNode(node, 0, 'crafted').children, [0], 'with LARGE_INDEX the END entry points to VCN 0');
  node.writeUInt32LE(4096, INDEX_HEADER.index_length);
  t.throws(() => parseIndexNode(node, 0, 'crafted'), { code: 'E_NTFS_INDEX', data: { field: 'index_length' } }, 'index_length past the node');

  t.throws(() => UpCase.fromBuffer(Buffer.alloc(3)), { code: 'E_NTFS_UPCASE' }, 'an odd-sized $UpCase');
  t.throws(() => UpCase.fromBuffer(Buffer.alloc(0x20002)), { code: 'E_NTFS_UPCASE' }, 'an $UpCase past 64 Ki units');
});

t.test('MFT record headers: sizes inside the record', async (t) => {
  const probe = await openNtfs(volumeOfBuffer(base));
  const n = await resolvePath(probe, '/readme.txt');
  const off = recordOffset(probe, n);
  const fresh = () => Buffer.from(base.subarray(off, off + 1024));
  t.equal(parseMftRecord(fresh(), n, probe.geometry).recordNo, n, 'the real record parses');
  const edit = (f: (r: Buffer) => void) => {
    const r = fresh();
    applyFixups(r, 'FILE', 'x');
    f(r);
    reprotect(r);
    return r;
  };
  t.throws(() => parseMftRecord(edit((r) => r.writeUInt32LE(5000, MFT_RECORD.bytes_in_use)), n, probe.geometry), { code: 'E_NTFS_RECORD', data: { field: 'bytes_in_use' } });
  t.throws(() => parseMftRecord(edit((r) => r.writeUInt32LE(4096, MFT_RECORD.bytes_allocated)), n, probe.geometry), { code: 'E_NTFS_RECORD', data: { field: 'bytes_allocated' } });
  t.throws(() => parseMftRecord(edit((r) => r.writeUInt16LE(0x3fe, MFT_RECORD.attrs_offset)), n, probe.geometry), { code: 'E_NTFS_RECORD', data: { field: 'attrs_offset' } });
});

t.test('whole volumes: loops, compression units, encryption and WOF are refused with their codes', async (t) => {
  const probe = await openNtfs(volumeOfBuffer(base));
  const internals = (fs: NtfsFileSystem) => (fs as unknown as { mft: { inode(n: number): Promise<{ stream(t: number, n: string): { runs: { vcn: number; lcn: number | null; length: number }[] } }> } }).mft;

  // An INDX leaf whose END entry is turned into a pointer back to its own VCN: a B+tree that loops.
  const many = await resolvePath(probe, '/many');
  const runs = (await internals(probe).inode(many)).stream(AT.INDEX_ALLOCATION, '$I30').runs;
  const fsLoop = await patched((img) => {
    const off = runs[0]!.lcn! * 4096; // the block at VCN 0, a leaf
    const blk = Buffer.from(img.subarray(off, off + 4096));
    applyFixups(blk, 'INDX', 'leaf');
    const hdr = INDEX_BLOCK.index;
    const end = hdr + blk.readUInt32LE(hdr + INDEX_HEADER.index_length) - 16; // the END entry
    blk.writeUInt8(LARGE_INDEX, hdr + INDEX_HEADER.ih_flags);
    blk.writeUInt16LE(24, end + INDEX_ENTRY_HEADER.length);
    blk.writeUInt16LE(INDEX_ENTRY_END | INDEX_ENTRY_NODE, end + INDEX_ENTRY_HEADER.ie_flags);
    blk.writeBigInt64LE(0n, end + 16);
    blk.writeUInt32LE(blk.readUInt32LE(hdr + INDEX_HEADER.index_length) + 8, hdr + INDEX_HEADER.index_length);
    reprotect(blk);
    blk.copy(img, off);
  });
  // The leaf at VCN 0 holds the first names; a name just after its last entry descends into its END child.
  const firstBlockNames: string[] = [];
  for await (const e of probe.readdir(many)) firstBlockNames.push(e.name);
  let loopHit = false;
  for (const name of firstBlockNames.slice(0, 400)) {
    try {
      await fsLoop.lookup(many, `${name}~`);
    } catch (err) {
      if ((err as { code?: string }).code === 'E_NTFS_CYCLE') {
        loopHit = true;
        break;
      }
      throw err;
    }
  }
  t.ok(loopHit, 'a lookup that walks into the loop gets E_NTFS_CYCLE');

  // compression_unit = 20 on a compressed file: 2^20 clusters per unit
  const text = await resolvePath(probe, '/compressed/text.txt');
  const fsCu = await patched((img, fs) => editRecord(img, fs, text, (r) => r.writeUInt8(20, attrOffset(r, AT.DATA) + ATTR_RECORD.compression_unit)));
  await t.rejects(fsCu.read(text, 0, 10), { code: 'E_BOUND', data: { field: 'compression_unit' } }, 'an oversized compression unit');

  // EFS: the ENCRYPTED flag on the data attribute (ntfs-3g cannot create EFS files)
  const big = await resolvePath(probe, '/big.bin');
  const fsEfs = await patched((img, fs) => editRecord(img, fs, big, (r) => {
    const a = attrOffset(r, AT.DATA);
    r.writeUInt16LE(r.readUInt16LE(a + ATTR_RECORD.flags) | 0x4000, a + ATTR_RECORD.flags);
  }));
  t.equal((await fsEfs.stat(big)).ntfs!.encrypted, true, 'an encrypted file is listed and flagged');
  await t.rejects(fsEfs.read(big, 0, 10), { code: 'E_NTFS_ENCRYPTED' }, 'its ciphertext is never returned as its content');

  // An attribute list naming an extension record that says it belongs to another file
  const manyLinks = await resolvePath(probe, '/a/many-links.bin');
  const readme = await resolvePath(probe, '/readme.txt');
  const fsList = await patched(async (img, fs) => {
    const inode = await (fs as unknown as { mft: { inode(n: number): Promise<{ attrs: { type: number; record: number }[] }> } }).mft.inode(manyLinks);
    const ext = inode.attrs.find((a) => a.type === AT.FILE_NAME && a.record !== manyLinks)!.record;
    editRecord(img, fs, ext, (r) => r.writeUInt32LE(readme, MFT_RECORD.base_mft_record));
  });
  await t.rejects(fsList.stat(manyLinks), { code: 'E_NTFS_ATTRLIST' }, "an attribute list pointing into another file's record");

  // WOF: listed as a file and flagged. images/ntfs.sh's stub has the reparse point (XPRESS4K) but
  // no WofCompressedData stream, so there is nothing to decompress: reads say so (E_NTFS_WOF), they
  // never return the all-zero unnamed stream. Readable WOF files are in wof.test.ts.
  const wof = await resolvePath(probe, '/links/wof-stub.bin');
  const st = await probe.stat(wof);
  t.equal(st.type, 'file', 'a WOF-compressed file is a file, not a reparse stub');
  t.equal(st.ntfs!.reparseTag, 0x80000017, 'flagged with its reparse tag');
  t.same(st.ntfs!.streams, [], 'the stub has no WofCompressedData stream');
  await t.rejects(probe.read(wof, 0, 1), { code: 'E_NTFS_WOF', message: /XPRESS4K.*no WofCompressedData stream/, data: { record: wof } }, 'a WOF file without its compressed stream is refused');
  await t.rejects((async () => { for await (const e of probe.extents(wof)) void e; })(), { code: 'E_NTFS_WOF' }, 'and so is mapping it (its unnamed stream is not its content)');
});
