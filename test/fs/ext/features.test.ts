/**
 * What the tree walk does not see, against independent oracles: extents against the kernel's
 * FIEMAP (filefrag -v), inode flags / generation / crtime against debugfs and statx, non-UTF-8
 * names through Buffer paths, statfs totals against dumpe2fs, the journal inode's blocks against
 * debugfs, 64 KiB blocks (which this kernel cannot mount) against debugfs rdump.
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { lstatSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { image, requireTool } from '../../helpers/images.js';
import { checkAgainstTree } from '../../conformance/fs.js';
import { openExt, type ExtFileSystem } from '../../../src/fs/ext/ext.js';
import { resolvePath } from '../../../src/fs/path.js';
import { EXT4_FL } from '../../../src/fs/ext/structs.js';
import { debugfs, mountRo, volumeOf } from './helpers.js';

const dir = image('ext');

/** filefrag -v: logical block -> { physical block, unwritten } for every mapped block. */
function fiemap(path: string): Map<number, { p: number; u: boolean }> {
  requireTool('filefrag');
  const out = execFileSync('filefrag', ['-v', path], { encoding: 'utf8' });
  const m = new Map<number, { p: number; u: boolean }>();
  for (const line of out.split('\n')) {
    const r = /^\s*\d+:\s+(\d+)\.\.\s*(\d+):\s+(\d+)\.\.\s*(\d+):\s+\d+:.*?$/.exec(line);
    if (!r) continue;
    const u = /unwritten/.test(line);
    for (let l = Number(r[1]), p = Number(r[3]); l <= Number(r[2]); l++, p++) m.set(l, { p, u });
  }
  return m;
}

async function ourMap(fs: ExtFileSystem, ino: number, bs: number): Promise<Map<number, { p: number; u: boolean }>> {
  const m = new Map<number, { p: number; u: boolean }>();
  for await (const e of fs.extents(ino)) {
    if (e.state === 'hole') continue;
    for (let o = 0; o < e.length; o += bs) m.set((e.offset + o) / bs, { p: (e.physical! + o) / bs, u: e.state === 'unwritten' });
  }
  return m;
}

for (const [img, files] of [
  ['ext4.img', ['/data/fallocated', '/data/fallocated-keep', '/data/sparse', '/data/fragmented', '/data/seeded-300k.bin']],
  ['ext4-1k.img', ['/data/fragmented', '/data/fallocated', '/data/sparse']],
  ['ext2-1k.img', ['/triple', '/data/sparse', '/data/seeded-300k.bin']],
  ['ext4-noextent.img', ['/data/sparse', '/data/seeded-300k.bin']],
] as const) {
  t.test(`${img}: extents equal the kernel's FIEMAP block for block (unwritten, holes, depth-2 trees, triple indirect)`, async (t) => {
    const path = join(dir, img);
    const fs = await openExt(await volumeOf(t, path));
    const mnt = mountRo(t, path);
    for (const f of files) {
      const ino = await resolvePath(fs, f);
      const st = await fs.stat(ino);
      const theirs = fiemap(join(mnt, f));
      // FIEMAP also reports preallocation past EOF (fallocate -n); the contract clips at the size.
      const nBlocks = Math.ceil(st.size / fs.blockSize);
      for (const k of [...theirs.keys()]) if (k >= nBlocks) theirs.delete(k);
      const ours = await ourMap(fs, ino, fs.blockSize);
      t.same([...ours].sort((a, b) => a[0] - b[0]), [...theirs].sort((a, b) => a[0] - b[0]), `${f}: ${theirs.size} mapped blocks`);
      let covered = 0;
      for await (const e of fs.extents(ino)) {
        t.equal(e.offset, covered, `${f}: extents tile the file`);
        covered = e.offset + e.length;
        if (e.offset !== covered - e.length) break;
      }
      t.equal(covered, st.size, `${f}: extents end at the size`);
    }
    if (img.startsWith('ext4.') || img.startsWith('ext4-1k')) {
      const unwritten = [...(await ourMap(fs, await resolvePath(fs, '/data/fallocated'), fs.blockSize)).values()].filter((v) => v.u).length;
      t.ok(unwritten > 0, 'the fallocated file has unwritten blocks (the feature is exercised)');
    }
    await fs.close();
  });
}

t.test('unwritten ranges read as zeros; the written middle reads as written', async (t) => {
  const path = join(dir, 'ext4.img');
  const fs = await openExt(await volumeOf(t, path));
  const mnt = mountRo(t, path);
  const ino = await resolvePath(fs, '/data/fallocated');
  const ours = await fs.read(ino, 0, 1 << 20);
  const theirs = execFileSync('cat', [join(mnt, 'data/fallocated')], { maxBuffer: 1 << 22 });
  t.ok(ours.equals(theirs));
  t.ok(ours.subarray(0, 64 * 4096).every((b) => b === 0), 'the unwritten head is zeros');
  t.notOk(ours.subarray(64 * 4096, 66 * 4096).every((b) => b === 0), 'the written blocks are data');
});

/** A file read through readInto in pieces of `step` bytes from `start` (the caller's buffer, reused); with each piece whose count was wrong. */
async function readIntoPieces(fs: ExtFileSystem, ino: number, start: number, size: number, step: number): Promise<{ bytes: Buffer; wrongCounts: string[] }> {
  const out: Buffer[] = [];
  const wrongCounts: string[] = [];
  const piece = Buffer.alloc(step, 0xee); // stale bytes: every byte returned must be written by readInto
  for (let off = start; off < size; off += step) {
    const n = await fs.readInto(ino, piece, off);
    if (n !== Math.min(step, size - off)) wrongCounts.push(`${n} at ${off}`);
    out.push(Buffer.from(piece.subarray(0, n)));
  }
  return { bytes: Buffer.concat(out), wrongCounts };
}

t.test('readInto equals the kernel\'s bytes: holes, unwritten extents, fragments, inline data, odd offsets', async (t) => {
  const cases: Array<[string, string[]]> = [
    ['ext4.img', ['/data/sparse', '/data/fallocated', '/data/fallocated-keep', '/data/fragmented', '/data/seeded-300k.bin', '/hello.txt']],
    ['ext2-1k.img', ['/data/sparse', '/data/seeded-300k.bin', '/a/b/c/deep.bin']],
    ['ext4-inline.img', ['/inline/tiny', '/inline/in-xattr-too', '/hello.txt']],
  ];
  for (const [img, files] of cases) {
    const path = join(dir, img);
    const fs = await openExt(await volumeOf(t, path));
    const mnt = mountRo(t, path);
    for (const f of files) {
      const ino = await resolvePath(fs, f);
      const theirs = execFileSync('cat', [join(mnt, f)], { maxBuffer: 64 << 20 });
      for (const [start, step] of [[0, 1 << 20], [1, 4095], [4097, 65537], [0, 7]] as const) {
        if (step === 7 && theirs.length > 100_000) continue; // byte-sized steps only on small files
        const ours = await readIntoPieces(fs, ino, start, theirs.length, step);
        t.same(ours.wrongCounts, [], `${img}${f}: every piece's count from ${start} in steps of ${step}`);
        t.ok(ours.bytes.equals(theirs.subarray(Math.min(start, theirs.length))), `${img}${f}: ${theirs.length} bytes from ${start} in steps of ${step}`);
      }
      const past = Buffer.alloc(16);
      t.equal(await fs.readInto(ino, past, theirs.length), 0, `${img}${f}: nothing past the end`);
    }
    const dirIno = await resolvePath(fs, '/data');
    await t.rejects(fs.readInto(dirIno, Buffer.alloc(1), 0), { code: 'E_FS_NOT_FILE' }, `${img}: a directory is not read`);
    await t.rejects(fs.readInto(await resolvePath(fs, '/hello.txt'), Buffer.alloc(1), -1), { code: 'E_FS_RANGE' }, `${img}: a negative offset is refused`);
    await fs.close();
  }
});

/** debugfs stat: flags, generation, Blockcount, crtime (seconds:extra as stored). */
function debugfsStat(img: string, path: string): { flags: number; generation: number; blockcount: number; crtime?: [number, number]; links: number } {
  const s = debugfs(img, `stat ${path}`);
  const crt = /crtime: 0x([0-9a-f]+):([0-9a-f]+)/.exec(s);
  const out: ReturnType<typeof debugfsStat> = {
    flags: Number(/Flags: (0x[0-9a-f]+)/.exec(s)![1]),
    generation: Number(/Generation: (\d+)/.exec(s)![1]),
    blockcount: Number(/Blockcount: (\d+)/.exec(s)![1]),
    links: Number(/Links: (\d+)/.exec(s)![1]),
  };
  if (crt) out.crtime = [parseInt(crt[1]!, 16), parseInt(crt[2]!, 16)];
  return out;
}

t.test('inode flags, generation, i_blocks and crtime equal debugfs; birthtime equals the kernel statx', async (t) => {
  for (const img of ['ext4.img', 'ext4-inline.img', 'ext2-1k.img']) {
    const path = join(dir, img);
    const fs = await openExt(await volumeOf(t, path));
    const mnt = mountRo(t, path);
    const paths = img === 'ext4-inline.img' ? ['/inline/tiny', '/inline/in-xattr-too', '/inline/dir-small', '/inline/dir-grown', '/hello.txt'] : ['/hello.txt', '/htree', '/data/fragmented', '/times/2100', '/links/sym-1000', '/xattr/big'];
    for (const p of paths) {
      if (img === 'ext2-1k.img' && (p === '/htree' || p === '/data/fragmented')) continue;
      const ino = await resolvePath(fs, p);
      const st = await fs.stat(ino);
      const d = debugfsStat(path, p);
      t.equal(st.ext!.flags, d.flags, `${img} ${p}: flags 0x${d.flags.toString(16)}`);
      t.equal(st.ext!.generation, d.generation, `${img} ${p}: generation`);
      t.equal(st.allocatedSize, d.blockcount * 512, `${img} ${p}: i_blocks`);
      t.equal(st.nlink, d.links, `${img} ${p}: links`);
      if (d.crtime) {
        const [sec, extra] = d.crtime;
        // independent of our decoder: the kernel's statx birth time must agree with what debugfs printed
        const real = lstatSync(join(mnt, p), { bigint: true });
        t.equal(st.birthtimeNs, real.birthtimeNs, `${img} ${p}: birthtime equals statx`);
        t.equal(st.birthtimeNs! % 1_000_000_000n, BigInt(extra >>> 2), `${img} ${p}: crtime ns from debugfs (0x${sec.toString(16)}:${extra.toString(16)})`);
      } else t.equal(st.birthtimeNs, undefined, `${img} ${p}: no crtime in a 128-byte inode`);
    }
    if (img === 'ext4-inline.img') {
      const tiny = await fs.stat(await resolvePath(fs, '/inline/tiny'));
      const grown = await fs.stat(await resolvePath(fs, '/inline/in-xattr-too'));
      t.ok(tiny.ext!.flags & EXT4_FL.INLINE_DATA, 'inline data is exercised');
      t.ok(grown.ext!.flags & EXT4_FL.INLINE_DATA, 'inline data continuing in system.data is exercised');
      t.ok((await fs.stat(await resolvePath(fs, '/inline/dir-small'))).ext!.flags & EXT4_FL.INLINE_DATA, 'an inline directory is exercised');
    }
    if (img === 'ext4.img') t.ok((await fs.stat(await resolvePath(fs, '/htree'))).ext!.flags & EXT4_FL.INDEX, 'an htree directory is exercised');
    await fs.close();
  }
});

t.test('non-UTF-8 names: rawName holds the exact bytes the kernel lists; lookup finds them', async (t) => {
  const path = join(dir, 'ext4.img');
  const fs = await openExt(await volumeOf(t, path));
  const mnt = mountRo(t, path);
  const names = await resolvePath(fs, '/names');
  const theirs = readdirSync(Buffer.from(join(mnt, 'names')), { encoding: 'buffer' });
  const ours: { name: string; raw: Buffer; ino: number }[] = [];
  for await (const e of fs.readdir(names)) ours.push({ name: e.name, raw: e.rawName ?? Buffer.from(e.name, 'utf8'), ino: e.ino });
  t.same(ours.map((o) => o.raw.toString('hex')).sort(), theirs.map((b) => b.toString('hex')).sort(), 'the same bytes');
  const odd = ours.filter((o) => o.raw.toString('utf8') !== o.name || !Buffer.from(o.name).equals(o.raw));
  t.equal(odd.length, 1, 'exactly one name does not decode');
  for (const o of ours) {
    t.equal(await fs.lookup(names, o.name), o.ino, `lookup ${JSON.stringify(o.name)}`);
    const real = lstatSync(Buffer.concat([Buffer.from(join(mnt, 'names') + '/'), o.raw]));
    t.equal((await fs.stat(o.ino)).size, real.size);
    t.equal(o.ino, real.ino, 'the same inode as the kernel');
  }
  t.ok(ours.some((o) => o.raw.length === 255), 'a 255-byte name');
});

t.test('statfs totals and labels equal dumpe2fs', async (t) => {
  requireTool('dumpe2fs');
  for (const img of ['ext4.img', 'ext2-1k.img', 'ext3.img', 'ext4-metabg.img']) {
    const path = join(dir, img);
    const fs = await openExt(await volumeOf(t, path));
    const d = execFileSync('dumpe2fs', ['-h', path], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    const f = (k: string) => /^(.*?):\s*(.*)$/m.exec(d.split('\n').find((l) => l.startsWith(k + ':'))!)![2]!.trim();
    t.equal(fs.info.totalBlocks, Number(f('Block count')), `${img} blocks`);
    t.equal(fs.info.freeBlocks, Number(f('Free blocks')), `${img} free blocks`);
    t.equal(fs.info.totalInodes, Number(f('Inode count')), `${img} inodes`);
    t.equal(fs.info.freeInodes, Number(f('Free inodes')), `${img} free inodes`);
    t.equal(fs.info.blockSize, Number(f('Block size')), `${img} block size`);
    t.equal(fs.info.uuid, f('Filesystem UUID'), `${img} uuid`);
    t.equal(fs.info.label, f('Filesystem volume name'), `${img} label`);
    await fs.close();
  }
});

t.test('journalBlocks: the journal inode blocks, as debugfs maps them', async (t) => {
  for (const img of ['ext4.img', 'ext3.img', 'ext4-1k.img']) {
    const path = join(dir, img);
    const fs = await openExt(await volumeOf(t, path));
    const blocks = await fs.journalBlocks();
    const want: number[] = [];
    const s = debugfs(path, `stat <${fs.superblock.s_journal_inum}>`);
    const list = s.slice(s.search(/EXTENTS:|BLOCKS:/)).split('\n')[1]!;
    for (const m of list.matchAll(/\((\d+)(?:-(\d+))?\):(\d+)(?:-(\d+))?/g)) {
      const n = m[2] ? Number(m[2]) - Number(m[1]) + 1 : 1;
      for (let i = 0; i < n; i++) want.push(Number(m[3]) + i);
    }
    t.equal(blocks.length, want.length, `${img}: ${want.length} journal blocks`);
    t.same(blocks, want, `${img}: the same physical blocks in order`);
    const first = await fs.readBlock(blocks[0]!);
    t.equal(first.readUInt32BE(0), 0xc03b3998, `${img}: the first one holds the jbd2 superblock magic`);
    await fs.close();
  }
  const noJournal = await openExt(await volumeOf(t, join(dir, 'ext2-1k.img')));
  await t.rejects(noJournal.journalBlocks(), { code: 'E_EXT_NO_JOURNAL' });
});

t.test('an overlay block replaces the disk block for metadata and data reads', async (t) => {
  const path = join(dir, 'ext4.img');
  const plain = await openExt(await volumeOf(t, path));
  const ino = await resolvePath(plain, '/hello.txt');
  const ext = [] as number[];
  for await (const e of plain.extents(ino)) ext.push(e.physical! / plain.blockSize);
  const patched = Buffer.alloc(plain.blockSize, 0x41);
  const fs = await openExt(await volumeOf(t, path), { overlay: { get: (b) => (b === ext[0] ? patched : undefined) } });
  t.equal((await fs.read(ino, 0, 5)).toString(), 'AAAAA', 'data comes from the overlay');
  t.equal((await plain.read(ino, 0, 5)).toString(), 'hello', 'and not without it');
  const into = Buffer.alloc(3);
  t.equal(await fs.readInto(ino, into, 2), 3);
  t.equal(into.toString(), 'AAA', 'readInto takes the overlay block too');
});

t.test('64 KiB blocks (the kernel here cannot mount them): the tree equals debugfs rdump', async (t) => {
  const path = join(dir, 'ext4-64k.img');
  const fs = await openExt(await volumeOf(t, path));
  t.equal(fs.info.blockSize, 65536);
  const out = mkdtempSync(join(tmpdir(), 'ext-rdump-'));
  t.teardown(() => rmSync(out, { recursive: true, force: true }));
  debugfs(path, `rdump / ${out}`);
  // rdump writes no device/fifo/socket nodes, no xattrs, splits hard links, drops setuid/setgid/sticky,
  // stamps symlinks with "now" and files with whole seconds: what it keeps (names, types, owners,
  // contents, targets) is compared, and the permission bits below.
  await checkAgainstTree(t, fs, out, { times: false, nlink: false, xattrs: false, mode: false, ignore: (p) => p.startsWith('/special/') || p.includes('\ufffd') });
  for (const p of ['/setuid', '/setgid', '/sticky', '/mode-0000', '/hello.txt']) {
    const mode = Number(/Mode:\s+(\d+)/.exec(debugfs(path, `stat ${p}`))![1]!.replace(/^/, '0o'));
    t.equal((await fs.stat(await resolvePath(fs, p))).mode & 0o7777, mode, `${p}: mode 0${mode.toString(8)} as debugfs prints it`);
  }
  const ino = await resolvePath(fs, '/xattr/big');
  const ea = debugfs(path, 'ea_list /xattr/big');
  for (const n of await fs.listxattr(ino)) t.match(ea, `${n} (${(await fs.getxattr(ino, n)).length})`, `xattr ${n} as debugfs lists it`);
});
