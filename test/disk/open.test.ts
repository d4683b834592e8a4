import t from 'tap';
import { closeSync, mkdtempSync, openSync, readSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';

/** The part of a tap test the oracle check uses. */
import { execFileSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { basename, join } from 'node:path';
import { openDisk } from '../../src/disk/open.js';
import { mergeRanges } from '../../src/disk/layered.js';
import type { AllocRange, Disk } from '../../src/disk/types.js';
import { fingerprint, image, qemuRaw, requireTool } from '../helpers/images.js';
import { assertEqualsRaw, type Asserts } from '../helpers/oracle.js';

const dir = image('vmdk-chains');
const p = (name: string): string => join(dir, name);
// Every file the tests read, fingerprinted before and after (sources stay byte-identical).
const sources = readdirSync(dir).filter((f) => !f.startsWith('.')).map(p);
const before = await fingerprint(sources);

const oracle = (t: Asserts, disk: Disk, rawPath: string) => assertEqualsRaw(t, disk, rawPath);

interface QemuMapEntry { start: number; length: number; present: boolean; zero: boolean; data: boolean }

/** qemu-img map in our terms: data (some layer holds bytes), zero (a zeroed grain), unallocated. */
function qemuMap(path: string): AllocRange[] {
  requireTool('qemu-img');
  const entries = JSON.parse(execFileSync('qemu-img', ['map', '--output=json', path], { encoding: 'utf8', maxBuffer: 64 << 20 })) as QemuMapEntry[];
  return mergeRanges(entries.map((e) => ({ offset: e.start, length: e.length, state: !e.present ? 'unallocated' : e.data ? 'data' : 'zero' })));
}

interface QemuInfo { filename: string; 'format-specific'?: { data: { cid: number; 'parent-cid': number; 'create-type': string } } }
function qemuChain(path: string): QemuInfo[] {
  return JSON.parse(execFileSync('qemu-img', ['info', '--backing-chain', '--output=json', path], { encoding: 'utf8' })) as QemuInfo[];
}

const cases: { name: string; kinds: string[]; oracleOf?: string }[] = [
  { name: 'base.vmdk', kinds: ['monolithicSparse'] },
  { name: 'snap3.vmdk', kinds: ['monolithicSparse', 'monolithicSparse', 'monolithicSparse', 'monolithicSparse'] },
  { name: 'snap1.vmdk', kinds: ['monolithicSparse', 'monolithicSparse'] },
  { name: 'abs-child.vmdk', kinds: ['twoGbMaxExtentSparse', 'monolithicSparse'] },
  { name: 'flat.vmdk', kinds: ['monolithicFlat'] },
  { name: 'twoGbMaxExtentSparse.vmdk', kinds: ['twoGbMaxExtentSparse'] },
  { name: 'twoGbMaxExtentFlat.vmdk', kinds: ['twoGbMaxExtentFlat'] },
  { name: 'stream.vmdk', kinds: ['streamOptimized'] },
  { name: 'stream-child.vmdk', kinds: ['monolithicSparse', 'streamOptimized'] },
  // qemu ignores ZERO extent lines: its twin has a FLAT extent over a file of zeros there instead.
  { name: 'hand.vmdk', kinds: ['vmfs'], oracleOf: 'hand-twin.vmdk' },
];

for (const c of cases) {
  t.test(`${c.name} (${c.kinds.join(' <- ')}) reads byte-identical to qemu`, async (t) => {
    const disk = await openDisk(p(c.name));
    t.teardown(() => disk.close());
    t.same(disk.chain.map((m) => m.kind), c.kinds, 'chain kinds, top first');
    await oracle(t, disk, qemuRaw(p(c.oracleOf ?? c.name)));
  });
}

// ESX delta chains: COWD redo logs (vmfsSparse) and SEsparse deltas over a monolithicFlat base, made
// by the generators in images/ (qemu cannot create them) and read by qemu as the oracle.
for (const [script, kind] of [['vmdk-cowd', 'vmfsSparse'], ['vmdk-sesparse', 'seSparse']] as const) {
  t.test(`a ${kind} chain 3 deep reads byte-identical to qemu`, async (t) => {
    const d = image(script);
    const before = await fingerprint(readdirSync(d).filter((f) => !f.startsWith('.')).map((f) => join(d, f)));
    const disk = await openDisk(join(d, 'snap2.vmdk'));
    t.teardown(() => disk.close());
    t.same(disk.chain.map((m) => [m.kind, basename(m.path)]), [[kind, 'snap2.vmdk'], [kind, 'snap1.vmdk'], ['monolithicFlat', 'base.vmdk']]);
    for (let i = 0; i + 1 < disk.chain.length; i++) t.equal(disk.chain[i]!.parentCid, disk.chain[i + 1]!.cid, 'parentCID matches');
    await oracle(t, disk, qemuRaw(join(d, 'snap2.vmdk')));
    t.same(await disk.allocation(), qemuMap(join(d, 'snap2.vmdk')), 'allocation agrees with qemu-img map');
    await disk.close();
    t.same(await fingerprint(Object.keys(before)), before, 'sources unchanged');
  });
}

t.test('a bare sparse extent (no descriptor) reads as the bytes of its place in the whole disk', async (t) => {
  // qemu will not open an extent without a descriptor; its reading of the whole twoGbMaxExtentSparse
  // disk from 2 GiB on is the oracle for the second extent alone.
  const whole = qemuRaw(p('twoGbMaxExtentSparse.vmdk'));
  const tmp = mkdtempSync(join(tmpdir(), 'snapferry-bare-'));
  t.teardown(() => rmSync(tmp, { recursive: true, force: true }));
  const slice = Buffer.alloc(2048 * 512);
  const fd = openSync(whole, 'r');
  readSync(fd, slice, 0, slice.length, 2 ** 31);
  closeSync(fd);
  writeFileSync(join(tmp, 'slice.raw'), slice);
  const disk = await openDisk(p('twoGbMaxExtentSparse-s002.vmdk'));
  t.teardown(() => disk.close());
  t.same(disk.chain.map((m) => [m.kind, m.cid]), [['sparseExtent', undefined]]);
  await oracle(t, disk, join(tmp, 'slice.raw'));
});

t.test('the chain lists each member, top first, with the CIDs qemu reads', async (t) => {
  for (const name of ['snap3.vmdk', 'abs-child.vmdk', 'stream-child.vmdk']) {
    const disk = await openDisk(p(name));
    const q = qemuChain(p(name));
    t.equal(disk.chain.length, q.length, `${name}: as deep as qemu's backing chain`);
    t.same(disk.chain.map((m) => m.path), q.map((i) => (i.filename.startsWith('/') ? i.filename : p(i.filename))), `${name}: the same files in the same order`);
    t.same(
      disk.chain.map((m) => [m.cid, m.parentCid]),
      q.map((i) => [i['format-specific']!.data.cid.toString(16).padStart(8, '0'), i['format-specific']!.data['parent-cid'].toString(16).padStart(8, '0')]),
      `${name}: CIDs and parent CIDs`,
    );
    for (let i = 0; i + 1 < disk.chain.length; i++) t.equal(disk.chain[i]!.parentCid, disk.chain[i + 1]!.cid, 'each parentCID is its parent\'s CID');
    t.equal(disk.chain[disk.chain.length - 1]!.parentCid, 'ffffffff', 'the base has no parent');
    await disk.close();
  }
  const tgs = await openDisk(p('twoGbMaxExtentSparse.vmdk'));
  t.same(tgs.chain[0]!.extents, [
    { path: p('twoGbMaxExtentSparse-s001.vmdk'), type: 'SPARSE', sectors: 4194304 },
    { path: p('twoGbMaxExtentSparse-s002.vmdk'), type: 'SPARSE', sectors: 2048 },
  ]);
  await tgs.close();
  const hand = await openDisk(p('hand.vmdk'));
  t.same(hand.chain[0]!.extents, [
    { path: p('hand-data.bin'), type: 'FLAT', sectors: 2048, offsetSectors: 1024 },
    { path: '', type: 'ZERO', sectors: 2048 },
    { path: p('hand-vmfs.bin'), type: 'VMFS', sectors: 1000, offsetSectors: 0 },
    { path: p('hand-sparse.vmdk'), type: 'SPARSE', sectors: 4096 },
  ]);
  await hand.close();
});

t.test('the allocation map agrees with qemu-img map (data, zeroed grains, unallocated)', async (t) => {
  for (const name of ['snap3.vmdk', 'snap2.vmdk', 'abs-child.vmdk', 'stream-child.vmdk', 'twoGbMaxExtentSparse.vmdk', 'flat.vmdk']) {
    const disk = await openDisk(p(name));
    t.same(await disk.allocation(), qemuMap(p(name)), name);
    await disk.close();
  }
  // The ZERO extent is known zero; around it, qemu's map of the twin.
  const hand = await openDisk(p('hand.vmdk'));
  const twin = qemuMap(p('hand-twin.vmdk')).flatMap((r): AllocRange[] => {
    const zs = 1 << 20, ze = 2 << 20;
    const parts: AllocRange[] = [];
    if (r.offset < zs) parts.push({ ...r, length: Math.min(r.offset + r.length, zs) - r.offset });
    if (r.offset + r.length > ze) parts.push({ ...r, offset: Math.max(r.offset, ze), length: r.offset + r.length - Math.max(r.offset, ze) });
    return parts;
  });
  twin.push({ offset: 1 << 20, length: 1 << 20, state: 'zero' });
  twin.sort((a, b) => a.offset - b.offset);
  t.same(await hand.allocation(), mergeRanges(twin));
  await hand.close();
});

t.test('a raw image reads as itself', async (t) => {
  const disk = await openDisk(p('raw.img'));
  t.teardown(() => disk.close());
  t.same(disk.chain.map((m) => [m.kind, m.path]), [['raw', p('raw.img')]]);
  await oracle(t, disk, qemuRaw(p('raw.img'), 'raw'));
});

t.test('a read-only loop device opens as a block device and reads as its file', async (t) => {
  requireTool('losetup');
  const dev = execFileSync('losetup', ['-r', '-f', '--show', p('raw.img')], { encoding: 'utf8' }).trim();
  t.teardown(() => { execFileSync('losetup', ['-d', dev]); });
  const disk = await openDisk(dev);
  t.teardown(() => disk.close());
  t.same(disk.chain.map((m) => [m.kind, m.path]), [['block-device', dev]]);
  t.equal(disk.size, 8 << 20);
  await oracle(t, disk, qemuRaw(p('raw.img'), 'raw'));
});

t.test('reads outside the disk are typed errors', async (t) => {
  const disk = await openDisk(p('snap3.vmdk'));
  t.teardown(() => disk.close());
  await t.rejects(disk.read(disk.size - 10, 11), { code: 'E_TRUNCATED' });
  await t.rejects(openDisk(p('no-such.vmdk')), { code: 'E_SOURCE_NOT_FOUND' });
});

t.test('every source file is byte-identical after all the reads', async (t) => {
  t.same(await fingerprint(sources), before);
});
