/**
 * The ext reader at sizes the small images never reach (images/ext-big.sh), against the kernel's
 * read-only mount: htree directories of 50,000 entries (two index levels without large_dir, three
 * with it), sparse files past 4 GiB and 16 GiB under extents and under double/triple indirect
 * blocks, and fallocated ranges partly written. The sparse files are too big to hash whole in a test
 * run, so for them the oracle is the kernel's FIEMAP map (filefrag -v) plus the kernel's bytes of
 * every stored range and its margins, and of sampled holes.
 */
import t from 'tap';
import type { Test } from 'tap';
import { execFileSync } from 'node:child_process';
import { closeSync, lstatSync, openSync, readdirSync, readSync } from 'node:fs';
import { join } from 'node:path';
import { image, prng, requireTool } from '../../helpers/images.js';
import { checkAgainstTree } from '../../conformance/fs.js';
import { openExt } from '../../../src/fs/ext/ext.js';
import type { ExtFileSystem } from '../../../src/fs/ext/ext.js';
import { dirHash, hashVersionOf } from '../../../src/fs/ext/htree.js';
import type { FileSystem } from '../../../src/fs/types.js';
import { debugfs, mountRo, volumeOf } from './helpers.js';

const dir = image('ext-big');
const BIG_ENTRIES = 50000;

/** Files under /huge are compared by map and ranges below, not hashed whole by checkAgainstTree. */
const hugeFile = (p: string) => p.startsWith('/huge/');

async function pathIno(fs: FileSystem, path: string): Promise<number> {
  let ino = fs.rootIno;
  for (const part of path.split('/').filter(Boolean)) {
    const next = await fs.lookup(ino, part);
    if (next === null) throw new Error(`${path}: no '${part}'`);
    ino = next;
  }
  return ino;
}

interface MapRun {
  lblk: number;
  pblk: number;
  len: number;
  unwritten: boolean;
}

/** Adjacent runs that continue each other logically and physically, in the same state, as one. */
function merged(runs: MapRun[]): MapRun[] {
  const out: MapRun[] = [];
  for (const r of runs) {
    const p = out[out.length - 1];
    if (p && p.lblk + p.len === r.lblk && p.pblk + p.len === r.pblk && p.unwritten === r.unwritten) p.len += r.len;
    else out.push({ ...r });
  }
  return out;
}

/** The kernel's block map of a file (FIEMAP through filefrag -v), in fs blocks, clipped at i_size as ours is. */
function kernelMap(path: string, blockSize: number, size: number): MapRun[] {
  requireTool('filefrag');
  const out = execFileSync('filefrag', ['-v', path], { encoding: 'utf8' });
  if (!out.includes(`blocks of ${blockSize} bytes`)) throw new Error(`filefrag did not report ${blockSize}-byte blocks:\n${out}`);
  const nBlocks = Math.ceil(size / blockSize);
  const runs: MapRun[] = [];
  for (const line of out.split('\n')) {
    const m = /^\s*\d+:\s*(\d+)\.\.\s*(\d+):\s*(\d+)\.\.\s*(\d+):\s*(\d+):(.*)$/.exec(line);
    if (!m) continue;
    const lblk = Number(m[1]);
    if (lblk >= nBlocks) continue;
    runs.push({ lblk, pblk: Number(m[3]), len: Math.min(Number(m[5]), nBlocks - lblk), unwritten: m[6]!.includes('unwritten') });
  }
  return merged(runs);
}

function kernelRead(fd: number, offset: number, length: number): Buffer {
  const b = Buffer.alloc(length);
  let got = 0;
  while (got < length) {
    const n = readSync(fd, b, got, length - got, offset + got);
    if (n === 0) break;
    got += n;
  }
  return b.subarray(0, got);
}

/**
 * A sparse file against the kernel: stat fields, the block map, the bytes of every stored or
 * unwritten range with 64 KiB of margin on both sides (so every hole/data edge is read across, in
 * 1 MiB reads that do not start on the edges), a read across every 2^32-byte multiple, and sampled holes.
 */
async function checkSparseFile(t: Test, fs: FileSystem, mnt: string, path: string, blockSize: number): Promise<void> {
  const ino = await pathIno(fs, path);
  const st = await fs.stat(ino);
  const ls = lstatSync(join(mnt, path));
  t.same({ type: st.type, size: st.size, mode: st.mode, uid: st.uid, gid: st.gid, nlink: st.nlink, allocated: st.allocatedSize }, { type: 'file', size: ls.size, mode: ls.mode, uid: ls.uid, gid: ls.gid, nlink: ls.nlink, allocated: ls.blocks * 512 }, `${path}: stat equals the kernel's`);

  const ours: MapRun[] = [];
  const ranges: { offset: number; length: number }[] = [];
  for await (const e of fs.extents(ino)) {
    if (e.state === 'hole') continue;
    ours.push({ lblk: e.offset / blockSize, pblk: e.physical! / blockSize, len: Math.ceil(e.length / blockSize), unwritten: e.state === 'unwritten' });
    ranges.push(e);
  }
  const map = merged(ours);
  t.same(map, kernelMap(join(mnt, path), blockSize, st.size), `${path}: the extent map equals the kernel's FIEMAP (${map.length} runs, ${map.filter((r) => r.unwritten).length} unwritten)`);

  const fd = openSync(join(mnt, path), 'r');
  try {
    const bad: string[] = [];
    const compare = async (offset: number, length: number) => {
      const [a, b] = [await fs.read(ino, offset, length), kernelRead(fd, offset, length)];
      if (!a.equals(b)) bad.push(`${offset}+${length}`);
    };
    let bytes = 0;
    const margin = 65536;
    for (const r of ranges) {
      const end = Math.min(st.size, r.offset + r.length + margin);
      for (let off = Math.max(0, r.offset - margin); off < end; off += 1 << 20) {
        const n = Math.min(1 << 20, end - off);
        await compare(off, n);
        bytes += n;
      }
    }
    for (let edge = 2 ** 32; edge < st.size; edge += 2 ** 32) await compare(edge - 3000, 7000);
    const rand = prng(st.size % 0xffffffff);
    for (let i = 0; i < 32; i++) await compare(Math.floor(rand() * st.size), 4096);
    await compare(st.size - 1, 4096); // clipped at the end
    t.same(bad, [], `${path}: ${bytes} bytes around ${ranges.length} stored ranges, the 2^32 edges and 32 sampled offsets read as the kernel reads them`);
  } finally {
    closeSync(fd);
  }
}

/** The big directory: readdir's name set is the kernel's; a sample of names looks up to the kernel's inode and stat; absent names are absent. */
async function checkBigDir(t: Test, fs: FileSystem, mnt: string, path: string): Promise<void> {
  const dirIno = await pathIno(fs, path);
  const theirs = readdirSync(join(mnt, path)).sort();
  t.equal(theirs.length, BIG_ENTRIES, `the kernel lists ${BIG_ENTRIES} entries`);
  const ours: string[] = [];
  for await (const e of fs.readdir(dirIno)) ours.push(e.name);
  ours.sort();
  t.equal(ours.length, theirs.length, `readdir returns ${ours.length} entries`);
  t.ok(ours.every((n, i) => n === theirs[i]), 'readdir returns exactly the kernel\'s names');

  const rand = prng(0xb16d1);
  const bad: string[] = [];
  const sample = 1200;
  for (let i = 0; i < sample; i++) {
    const name = theirs[Math.floor(rand() * theirs.length)]!;
    const ino = await fs.lookup(dirIno, name);
    const ls = lstatSync(join(mnt, path, name));
    if (ino !== ls.ino) {
      bad.push(`${name}: ino ${ino} != ${ls.ino}`);
      continue;
    }
    const st = await fs.stat(ino);
    const type = ls.isDirectory() ? 'dir' : ls.isFile() ? 'file' : 'other';
    if (st.type !== type || st.mode !== ls.mode || st.uid !== ls.uid || st.gid !== ls.gid || st.nlink !== ls.nlink || (type === 'file' && st.size !== ls.size)) bad.push(`${name}: stat differs`);
  }
  // absent names: a character the names never hold, and a hash neighbour of a real name
  for (let i = 0; i < 200; i++) {
    const real = theirs[Math.floor(rand() * theirs.length)]!;
    const name = i % 2 ? `${real.slice(0, -1)}!` : `${real}x`;
    if ((await fs.lookup(dirIno, name)) !== null) bad.push(`${name}: found, the kernel has no such entry`);
  }
  t.same(bad, [], `${sample} sampled lookups match the kernel's inode and stat; 200 absent names are absent`);
}

/**
 * The htree as e2fsprogs reads it (debugfs htree_dump): dx_root's indirect_levels, and every leaf
 * entry's stored hash, which our dirHash (htree.ts, the hash an htree lookup probes with) must reproduce
 * from the name with the root's hash version and the superblock's seed.
 */
function checkHtree(t: Test, fs: ExtFileSystem, img: string, levels: number): void {
  const dump = debugfs(img, 'htree_dump /big');
  t.equal(Number(/Indirect levels:\s*(\d+)/.exec(dump)?.[1] ?? -1), levels, `the image's /big has indirect_levels ${levels} (${levels + 1} index levels above the leaves)`);
  const version = hashVersionOf(fs.superblock, Number(/Hash Version:\s*(\d+)/.exec(dump)?.[1]));
  const bad: string[] = [];
  let n = 0;
  for (const m of dump.matchAll(/^\d+ 0x([0-9a-f]{8})-([0-9a-f]{8}) \(\d+\) (\S+)/gm)) {
    n++;
    const h = dirHash(Buffer.from(m[3]!), version, fs.superblock.s_hash_seed);
    if (h.hash !== parseInt(m[1]!, 16) || h.minorHash !== parseInt(m[2]!, 16)) bad.push(`${m[3]}: ours ${h.hash.toString(16)}-${h.minorHash.toString(16)}, debugfs ${m[1]}-${m[2]}`);
  }
  t.equal(n, BIG_ENTRIES, 'htree_dump shows every entry in the leaves');
  t.same(bad.slice(0, 10), [], `dirHash equals the stored hash of all ${n} leaf entries`);
}

t.test('ext4-bigdir.img: a two-level htree of 50,000 entries, files past 4 and 16 GiB, fallocated ranges', async (t) => {
  const path = join(dir, 'ext4-bigdir.img');
  const fs = await openExt(await volumeOf(t, path));
  checkHtree(t, fs, path, 1);
  t.equal(fs.info.blockSize, 4096);
  const mnt = mountRo(t, path);
  const s = await checkAgainstTree(t, fs, mnt, { which: ['atime', 'mtime', 'ctime'], ignore: hugeFile });
  t.ok(s.entries > BIG_ENTRIES, `${s.entries} entries compared`);
  t.same(readdirSync(join(mnt, 'huge')).sort(), ['fallocated', 'fallocated-past-4g', 'past-16g', 'past-4g'], 'the sparse files are there');
  const names: string[] = [];
  for await (const e of fs.readdir(await pathIno(fs, '/huge'))) names.push(e.name);
  t.same(names.sort(), readdirSync(join(mnt, 'huge')).sort(), '/huge lists as the kernel lists it');
  for (const f of ['past-4g', 'past-16g', 'fallocated', 'fallocated-past-4g']) await checkSparseFile(t, fs, mnt, `/huge/${f}`, 4096);
  const fresh = await openExt(await volumeOf(t, path));
  await checkBigDir(t, fresh, mnt, '/big');
  t.same(fs.warnings, [], 'no checksum warnings');
  await fresh.close();
  await fs.close();
});

t.test('ext4-largedir.img: a three-level htree (large_dir) of 50,000 entries', async (t) => {
  const path = join(dir, 'ext4-largedir.img');
  t.match(debugfs(path, 'features'), /large_dir/);
  const fs = await openExt(await volumeOf(t, path));
  checkHtree(t, fs, path, 2);
  t.equal(fs.info.blockSize, 1024);
  const mnt = mountRo(t, path);
  await checkBigDir(t, fs, mnt, '/big');
  const s = await checkAgainstTree(t, fs, mnt, { which: ['atime', 'mtime', 'ctime'] });
  t.ok(s.entries > BIG_ENTRIES, `${s.entries} entries compared`);
  t.same(fs.warnings, [], 'no checksum warnings');
  await fs.close();
});

for (const kind of ['ext2', 'ext3'] as const) {
  t.test(`${kind}-big.img: sparse files past 4 and 16 GiB through double and triple indirect blocks`, async (t) => {
    const path = join(dir, `${kind}-big.img`);
    const fs = await openExt(await volumeOf(t, path));
    t.equal(fs.info.kind, kind);
    t.equal(fs.info.blockSize, 4096);
    const mnt = mountRo(t, path);
    await checkAgainstTree(t, fs, mnt, { which: ['atime', 'mtime', 'ctime'], ignore: hugeFile });
    for (const f of ['past-4g', 'past-16g']) await checkSparseFile(t, fs, mnt, `/huge/${f}`, 4096);
    t.same(fs.warnings, [], 'no warnings');
    await fs.close();
  });
}
