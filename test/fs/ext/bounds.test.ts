/**
 * Hostile input: real images with one structure damaged in a copy (located with debugfs, never with
 * our own reader), each expecting the typed error that names the structure and field, or the typed
 * warning when the damage is only a checksum and the data can still be served.
 */
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { image } from '../../helpers/images.js';
import { openExt, type ExtFileSystem } from '../../../src/fs/ext/ext.js';
import { resolvePath } from '../../../src/fs/path.js';
import { ext4_super_block, ext4_inode, ext4_extent_header, ext4_dir_entry_2, ext4_xattr_header, ext4_xattr_entry, ext4_extent_idx } from '../../../src/fs/ext/structs.js';
import { bufferVolume, debugfs } from './helpers.js';

const dir = image('ext');
const ext4Path = join(dir, 'ext4.img');
const ext4k1Path = join(dir, 'ext4-1k.img');
const pristine = readFileSync(ext4Path);
const pristine1k = readFileSync(ext4k1Path);
const SB = 1024;
const BS = 4096;

/** debugfs imap: the byte offset of an inode in the image. */
function inodeOffset(img: string, path: string, bs: number): number {
  const out = debugfs(img, `imap ${path}`);
  const m = /located at block (\d+), offset (0x[0-9a-f]+)/.exec(out);
  if (!m) throw new Error(`debugfs imap ${path}: ${out}`);
  return Number(m[1]) * bs + Number(m[2]);
}

async function open(buf: Buffer): Promise<ExtFileSystem> {
  return openExt(bufferVolume(buf));
}

async function walkAll(fs: ExtFileSystem): Promise<void> {
  const stack = [fs.rootIno];
  while (stack.length) {
    const ino = stack.pop()!;
    for await (const e of fs.readdir(ino)) {
      const st = await fs.stat(e.ino);
      if (st.type === 'dir') stack.push(e.ino);
      if (st.type === 'file') await fs.read(e.ino, 0, st.size);
      if (st.type === 'symlink') await fs.readlink(e.ino);
      for (const n of await fs.listxattr(e.ino)) await fs.getxattr(e.ino, n);
    }
  }
}

const copy = () => Buffer.from(pristine);

t.test('superblock bounds: each bad geometry field is refused by name', async (t) => {
  const cases: [string, (b: Buffer) => void, string, string?][] = [
    ['s_magic', (b) => b.writeUInt16LE(0x1234, SB + ext4_super_block.s_magic), 'E_EXT_MAGIC'],
    ['s_log_block_size', (b) => b.writeUInt32LE(7, SB + ext4_super_block.s_log_block_size), 'E_BOUND', 's_log_block_size'],
    ['s_inodes_per_group', (b) => b.writeUInt32LE(0xffffffff, SB + ext4_super_block.s_inodes_per_group), 'E_BOUND', 's_inodes_per_group'],
    ['s_blocks_per_group', (b) => b.writeUInt32LE(0, SB + ext4_super_block.s_blocks_per_group), 'E_EXT_SUPERBLOCK', 's_blocks_per_group'],
    ['s_inode_size', (b) => b.writeUInt16LE(100, SB + ext4_super_block.s_inode_size), 'E_EXT_SUPERBLOCK', 's_inode_size'],
    ['s_inode_size > block', (b) => b.writeUInt16LE(8192, SB + ext4_super_block.s_inode_size), 'E_BOUND', 's_inode_size'],
    ['s_desc_size', (b) => b.writeUInt16LE(48, SB + ext4_super_block.s_desc_size), 'E_EXT_SUPERBLOCK', 's_desc_size'],
    ['s_inodes_count', (b) => b.writeUInt32LE(12345, SB + ext4_super_block.s_inodes_count), 'E_EXT_SUPERBLOCK', 's_inodes_count'],
    ['s_blocks_count', (b) => b.writeUInt32LE(0xffffffff, SB + ext4_super_block.s_blocks_count_hi), 'E_BOUND'],
    ['unknown incompat feature', (b) => b.writeUInt32LE(b.readUInt32LE(SB + ext4_super_block.s_feature_incompat) | 0x1000, SB + ext4_super_block.s_feature_incompat), 'E_EXT_FEATURE'],
    ['journal device', (b) => b.writeUInt32LE(b.readUInt32LE(SB + ext4_super_block.s_feature_incompat) | 0x8, SB + ext4_super_block.s_feature_incompat), 'E_EXT_JOURNAL_DEV'],
  ];
  for (const [name, mutate, code, field] of cases) {
    const b = copy();
    mutate(b);
    const err = await open(b).then(() => null, (e: { code: string; data: Record<string, unknown> }) => e);
    t.equal(err?.code, code, `${name}: ${code}`);
    if (field) t.match(JSON.stringify(err?.data), field, `${name}: the error names ${field}`);
  }
});

t.test('inode bounds: i_extra_isize past the inode, a slow symlink longer than a block', async (t) => {
  const b = copy();
  b.writeUInt16LE(200, inodeOffset(ext4Path, '/hello.txt', BS) + ext4_inode.i_extra_isize);
  const fs = await open(b);
  const ino = await resolvePath(fs, '/a');
  t.ok(ino > 0);
  await t.rejects(fs.stat((await fs.lookup(fs.rootIno, 'hello.txt'))!), { code: 'E_BOUND', data: { field: 'i_extra_isize' } });

  const c = copy();
  c.writeUInt32LE(100000, inodeOffset(ext4Path, '/links/sym-200', BS) + ext4_inode.i_size_lo);
  const fs2 = await open(c);
  await t.rejects(fs2.readlink(await resolvePath(fs2, '/links/sym-200')), { code: 'E_BOUND', data: { field: 'i_size (symlink)' } });
});

t.test('extent header bounds: entries past max, depth past 5, a leaf past the volume', async (t) => {
  const at = inodeOffset(ext4Path, '/data/seeded-300k.bin', BS) + ext4_inode.i_block;
  const cases: [string, (b: Buffer) => void, string, string][] = [
    ['eh_entries > eh_max', (b) => b.writeUInt16LE(9, at + ext4_extent_header.eh_entries), 'E_BOUND', 'eh_entries'],
    ['eh_max > room', (b) => b.writeUInt16LE(50, at + ext4_extent_header.eh_max), 'E_BOUND', 'eh_max'],
    ['eh_depth > 5', (b) => b.writeUInt16LE(6, at + ext4_extent_header.eh_depth), 'E_BOUND', 'eh_depth'],
    ['eh_magic', (b) => b.writeUInt16LE(0, at + ext4_extent_header.eh_magic), 'E_EXT_EXTENT', 'eh_magic'],
    ['ee_start past the volume', (b) => b.writeUInt32LE(0x7fffffff, at + 12 + 8), 'E_BOUND', 'ee_start'],
  ];
  for (const [name, mutate, code, field] of cases) {
    const b = copy();
    mutate(b);
    const fs = await open(b);
    const ino = await resolvePath(fs, '/data/seeded-300k.bin');
    await t.rejects(fs.read(ino, 0, 4096), { code, data: { field } }, name);
    await t.rejects((async () => { for await (const _ of fs.extents(ino)) void _; })(), { code }, `${name} (extents)`);
  }
});

t.test('an extent tree that points back at itself is a loop, not a hang', async (t) => {
  // ext4-1k.img /data/fragmented has a depth-2 tree: debugfs prints its index blocks as (ETB0):N
  const stat = debugfs(ext4k1Path, 'stat /data/fragmented');
  const etb0 = Number(/\(ETB0\):(\d+)/.exec(stat)![1]);
  const b = Buffer.from(pristine1k);
  // the first index entry of the depth-1 node now names the node itself
  b.writeUInt32LE(etb0, etb0 * 1024 + ext4_extent_header.SIZE + ext4_extent_idx.ei_leaf_lo);
  const fs = await open(b);
  const ino = await resolvePath(fs, '/data/fragmented');
  await t.rejects(fs.read(ino, 0, 1024), { code: 'E_EXT_EXTENT_LOOP' });
  await t.rejects((async () => { for await (const _ of fs.extents(ino)) void _; })(), { code: 'E_EXT_EXTENT_LOOP' });
});

t.test('directory entry bounds: rec_len below 12, rec_len 0, past the block, name_len past rec_len, inode past the count', async (t) => {
  const blk = Number(debugfs(ext4Path, 'bmap /a 0').trim());
  const at = blk * BS; // the "." entry of /a
  const cases: [string, (b: Buffer) => void, string, string][] = [
    ['rec_len 4', (b) => b.writeUInt16LE(4, at + ext4_dir_entry_2.rec_len), 'E_EXT_DIRENT', 'rec_len'],
    ['rec_len 0 (would loop)', (b) => b.writeUInt16LE(0, at + ext4_dir_entry_2.rec_len), 'E_EXT_DIRENT', 'rec_len'],
    ['rec_len past the block', (b) => b.writeUInt16LE(8192, at + 12 + ext4_dir_entry_2.rec_len), 'E_BOUND', 'rec_len'],
    ['name_len past rec_len', (b) => b.writeUInt8(200, at + ext4_dir_entry_2.name_len), 'E_BOUND', 'name_len'],
    ['inode past s_inodes_count', (b) => b.writeUInt32LE(0x7fffffff, at + 24 + ext4_dir_entry_2.inode), 'E_BOUND', 'inode'],
  ];
  for (const [name, mutate, code, field] of cases) {
    const b = copy();
    mutate(b);
    const fs = await open(b);
    const ino = (await fs.lookup(fs.rootIno, 'a'))!;
    await t.rejects((async () => { for await (const _ of fs.readdir(ino)) void _; })(), { code, data: { field } }, name);
  }
});

t.test('xattr bounds: a value past its block, a name past its block, a bad block magic', async (t) => {
  const acl = Number(/File ACL: (\d+)/.exec(debugfs(ext4Path, 'stat /xattr/big'))![1]);
  const e0 = acl * BS + ext4_xattr_header.SIZE;
  const cases: [string, (b: Buffer) => void, string, string][] = [
    ['e_value_offs', (b) => b.writeUInt16LE(0xfff0, e0 + ext4_xattr_entry.e_value_offs), 'E_BOUND', 'e_value_offs + e_value_size'],
    ['e_value_size', (b) => b.writeUInt32LE(0x7fffffff, e0 + ext4_xattr_entry.e_value_size), 'E_BOUND', 'e_value_size'],
    ['h_magic', (b) => b.writeUInt32LE(0, acl * BS + ext4_xattr_header.h_magic), 'E_EXT_XATTR', 'h_magic'],
    ['h_blocks', (b) => b.writeUInt32LE(7, acl * BS + ext4_xattr_header.h_blocks), 'E_EXT_XATTR', 'h_blocks'],
  ];
  for (const [name, mutate, code, field] of cases) {
    const b = copy();
    mutate(b);
    const fs = await open(b);
    const ino = await resolvePath(fs, '/xattr/big');
    await t.rejects(fs.listxattr(ino), { code, data: { field } }, name);
  }
});

t.test('orphan list: a loop and an out-of-range link end with typed warnings; orphans are not listed', async (t) => {
  const b = copy();
  const hello = Number(/Inode (\d+)/.exec(debugfs(ext4Path, 'imap /hello.txt'))![1]);
  b.writeUInt32LE(hello, SB + ext4_super_block.s_last_orphan);
  b.writeUInt32LE(hello, inodeOffset(ext4Path, '/hello.txt', BS) + ext4_inode.i_dtime);
  const fs = await open(b);
  t.ok(fs.warnings.some((w) => w.code === 'W_EXT_ORPHAN_LOOP'), 'W_EXT_ORPHAN_LOOP');
  const names: string[] = [];
  for await (const e of fs.readdir(fs.rootIno)) names.push(e.name);
  t.notOk(names.includes('hello.txt'), 'the orphan is not listed');
  t.ok(names.includes('a'), 'everything else is');

  const c = copy();
  c.writeUInt32LE(0x7fffffff, SB + ext4_super_block.s_last_orphan);
  const fs2 = await open(c);
  t.ok(fs2.warnings.some((w) => w.code === 'W_EXT_ORPHAN'), 'W_EXT_ORPHAN');
});

t.test('a checksum mismatch is a typed warning and the data is still served', async (t) => {
  const b = copy();
  const at = inodeOffset(ext4Path, '/data/seeded-300k.bin', BS);
  b.writeUInt16LE(b.readUInt16LE(at + ext4_inode.l_i_checksum_lo) ^ 0xffff, at + ext4_inode.l_i_checksum_lo);
  const blk = Number(debugfs(ext4Path, 'bmap /a 0').trim());
  b[blk * BS + BS - 1] ^= 0xff; // the /a block's dir-entry-tail checksum
  const acl = Number(/File ACL: (\d+)/.exec(debugfs(ext4Path, 'stat /xattr/big'))![1]);
  b[acl * BS + ext4_xattr_header.h_checksum] ^= 0xff;
  b[SB + ext4_super_block.s_checksum] ^= 0xff;
  const fs = await open(b);
  const good = await open(copy());
  await walkAll(fs);
  const codes = fs.warnings.map((w) => w.code).sort();
  t.same(codes, ['W_EXT_CSUM_DIR', 'W_EXT_CSUM_INODE', 'W_EXT_CSUM_SUPERBLOCK', 'W_EXT_CSUM_XATTR'], 'one warning per damaged structure');
  t.ok(fs.info.notes.some((n) => n.startsWith('W_EXT_CSUM_INODE')), 'the warning is a note the user sees');
  const ino = await resolvePath(fs, '/data/seeded-300k.bin');
  t.ok((await fs.read(ino, 0, 300000)).equals(await good.read(ino, 0, 300000)), 'the file reads as it does undamaged');
  t.same(good.warnings, []);
});

t.test('a block number past the filesystem is refused before any read', async (t) => {
  const fs = await open(copy());
  await t.rejects(fs.readBlock(fs.superblock.s_blocks_count), { code: 'E_BOUND' });
  await t.rejects(fs.stat(fs.superblock.s_inodes_count + 1), { code: 'E_BOUND', data: { field: 'ino' } });
  await t.rejects(fs.stat(0), { code: 'E_BOUND' });
});
