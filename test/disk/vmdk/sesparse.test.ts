import t from 'tap';
import { join } from 'node:path';
import { isSeSparseExtent, SeSparseExtent } from '../../../src/disk/vmdk/sesparse.js';
import {
  encodeSeSparseConstHeader,
  encodeSeSparseGde,
  encodeSeSparseGte,
  encodeSeSparseVolatileHeader,
  SESPARSE_CONST_HEADER_MAGIC,
  SESPARSE_GT_BYTES,
  SESPARSE_VOLATILE_HEADER_MAGIC,
  VMDKSESparseConstHeader as C,
  VMDKSESparseVolatileHeader as V,
} from '../../../src/disk/vmdk/structs-sesparse.js';
import { BufferSource, openReadOnly } from '../../../src/disk/file.js';
import { RawLayer } from '../../../src/disk/raw.js';
import { LayeredDisk } from '../../../src/disk/layered.js';
import { image, qemuRaw } from '../../helpers/images.js';
import { CountingSource, qemuLayerMap } from '../../helpers/sources.js';
import { assertEqualsRaw } from '../../helpers/oracle.js';

const dir = image('vmdk-sesparse');

async function openChain(): Promise<{ disk: LayeredDisk; top: SeSparseExtent; mid: SeSparseExtent }> {
  const top = await SeSparseExtent.open(await openReadOnly(join(dir, 'snap2-sesparse.vmdk')));
  const mid = await SeSparseExtent.open(await openReadOnly(join(dir, 'snap1-sesparse.vmdk')));
  const base = new RawLayer(await openReadOnly(join(dir, 'base-flat.vmdk')));
  return { disk: new LayeredDisk([top, mid, base], []), top, mid };
}

t.test('a 3-deep seSparse chain reads byte-identical to qemu-img convert, sequentially and at 10,000 random offsets', async (t) => {
  const { disk, top } = await openChain();
  t.equal(top.size, 163843 * 512);
  await assertEqualsRaw(t, disk, qemuRaw(join(dir, 'snap2.vmdk')), { label: 'snap2' });
  await assertEqualsRaw(t, new LayeredDisk(disk.layers.slice(1), []), qemuRaw(join(dir, 'snap1.vmdk')), { randomReads: 2_000, seed: 7, label: 'snap1' });
  await disk.close();
});

t.test('allocation() of each delta equals qemu map: data, zero (zero and unmapped grains) and unallocated', async (t) => {
  const { disk, top, mid } = await openChain();
  const topMap = await top.allocation(0, top.size);
  t.same(topMap, qemuLayerMap(join(dir, 'snap2.vmdk'), top.size), 'snap2');
  t.same(await mid.allocation(0, mid.size), qemuLayerMap(join(dir, 'snap1.vmdk'), mid.size), 'snap1');
  t.ok(topMap.some((r) => r.state === 'zero') && topMap.some((r) => r.state === 'data') && topMap.some((r) => r.state === 'unallocated'));
  await disk.close();
});

t.test('zero and unmapped grains read as zeros and hide the parent; unallocated grains are holes', async (t) => {
  const { disk, top } = await openChain();
  // snap2: grain 9100 is a zero grain over snap1's data, 16000 unmapped, 8000 unallocated (snap1 below it).
  for (const grain of [9100, 16000]) {
    const out = Buffer.alloc(4096, 0xee);
    t.same(await top.readInto(out, grain * 4096), [], `grain ${grain} is not a hole`);
    t.ok(out.every((b) => b === 0), `grain ${grain} reads as zeros`);
  }
  const out = Buffer.alloc(4096, 0xee);
  t.same(await top.readInto(out, 8000 * 4096), [{ offset: 8000 * 4096, length: 4096 }]);
  t.ok(out.every((b) => b === 0xee), 'a hole is left untouched');
  await disk.close();
});

t.test('contiguous grains are read with one call and grain tables are cached', async (t) => {
  const src = new CountingSource(await openReadOnly(join(dir, 'snap2-sesparse.vmdk')));
  const top = await SeSparseExtent.open(src);
  const gtBase = top.regions.grain_tables_offset * 512;
  const isGt = (r: { position: number; length: number }) => r.length === SESPARSE_GT_BYTES && r.position >= gtBase && r.position < top.regions.grains_offset * 512;
  src.reads = [];
  await top.readInto(Buffer.alloc(top.size), 0);
  const gtReads = src.reads.filter(isGt).length;
  t.equal(gtReads, 6, 'each of the grain tables read once');
  // snap2 has 6 data runs (images/vmdk-sesparse.sh): one read per run, none per grain.
  t.ok(src.reads.length - gtReads <= 6, `data reads (${src.reads.length - gtReads}) <= runs (6)`);
  src.reads = [];
  await top.readInto(Buffer.alloc(top.size), 0);
  t.equal(src.reads.filter(isGt).length, 0, 'grain tables come from the cache');
  await top.close();
});

t.test('isSeSparseExtent recognises the const header', async (t) => {
  const src = await openReadOnly(join(dir, 'snap1-sesparse.vmdk'));
  t.ok(isSeSparseExtent(await src.read(0, 512)));
  await src.close();
  t.notOk(isSeSparseExtent(Buffer.from('COWD\x01\x00\x00\x00')));
  t.notOk(isSeSparseExtent(Buffer.alloc(8)));
});

// ---- crafted images: every bound read from disk trips a typed error ----
// Layout in sectors: const 0, volatile 1, grain dir 2, one grain table 3..66, grains from 67.
const GD = 2, GT = 3, GRAINS = 67;
type Regions = Parameters<typeof encodeSeSparseConstHeader>[0];
function craft(over: Partial<Regions> = {}): Buffer {
  const file = Buffer.alloc((GRAINS + 16) * 512);
  encodeSeSparseConstHeader({
    magic: BigInt(SESPARSE_CONST_HEADER_MAGIC), version: 0x0000000200000001n, capacity: 64n, grain_size: 8n, grain_table_size: 64n, flags: 0n,
    reserved: [0n, 0n, 0n, 0n],
    volatile_header_offset: 1n, volatile_header_size: 1n, journal_header_offset: 0n, journal_header_size: 0n, journal_offset: 0n, journal_size: 0n,
    grain_dir_offset: BigInt(GD), grain_dir_size: 1n, grain_tables_offset: BigInt(GT), grain_tables_size: 64n,
    free_bitmap_offset: 0n, free_bitmap_size: 0n, backmap_offset: 0n, backmap_size: 0n, grains_offset: BigInt(GRAINS), grains_size: 16n,
    ...over,
  }).copy(file, 0);
  encodeSeSparseVolatileHeader({ magic: BigInt(SESPARSE_VOLATILE_HEADER_MAGIC), free_gt_number: 1n, next_txn_seq_number: 1n, replay_journal: 0n }).copy(file, 512);
  file.writeBigUInt64LE(encodeSeSparseGde(0), GD * 512);
  const gte = (g: number, v: bigint) => file.writeBigUInt64LE(v, GT * 512 + g * 8);
  gte(0, encodeSeSparseGte('allocated', 1)); // grain 0 -> second grain of the area
  gte(1, encodeSeSparseGte('zero'));
  gte(2, encodeSeSparseGte('unmapped'));
  gte(3, encodeSeSparseGte('allocated', 0));
  file.fill(0x11, GRAINS * 512, (GRAINS + 8) * 512);
  file.fill(0x22, (GRAINS + 8) * 512);
  return file;
}
const open = (buf: Buffer) => SeSparseExtent.open(new BufferSource(buf));

t.test('a crafted seSparse reads allocated grains through the shuffled index, zeros, and holes', async (t) => {
  const e = await open(craft());
  const out = Buffer.alloc(8 * 4096, 0xee);
  t.same(await e.readInto(out, 0), [{ offset: 4 * 4096, length: 4 * 4096 }]);
  t.ok(out.subarray(0, 4096).every((b) => b === 0x22), 'grain 0 is grain index 1');
  t.ok(out.subarray(4096, 3 * 4096).every((b) => b === 0), 'zero and unmapped grains');
  t.ok(out.subarray(3 * 4096, 4 * 4096).every((b) => b === 0x11), 'grain 3 is grain index 0');
  t.same(await e.allocation(0, e.size), [
    { offset: 0, length: 4096, state: 'data' },
    { offset: 4096, length: 8192, state: 'zero' },
    { offset: 3 * 4096, length: 4096, state: 'data' },
    { offset: 4 * 4096, length: 4 * 4096, state: 'unallocated' },
  ]);
  // The encoding puts the index's low 12 bits in entry bits 48..59 and the rest in bits 0..47.
  t.equal(encodeSeSparseGte('allocated', 0x12345), 0x3345000000000012n);
});

t.test('every seSparse const and volatile header check is a typed error', async (t) => {
  const patch = (at: number, v: bigint, base = craft()) => { base.writeBigUInt64LE(v, at); return base; };
  await t.rejects(open(patch(C.magic, 0xcafebaben + 1n)), { code: 'E_SESPARSE_MAGIC' });
  await t.rejects(open(patch(C.version, 0x0000000100000001n)), { code: 'E_SESPARSE_UNSUPPORTED', data: { field: 'version' } });
  await t.rejects(open(patch(C.grain_size, 16n)), { code: 'E_SESPARSE_UNSUPPORTED', data: { field: 'grain_size' } });
  await t.rejects(open(patch(C.grain_table_size, 128n)), { code: 'E_SESPARSE_UNSUPPORTED', data: { field: 'grain_table_size' } });
  await t.rejects(open(patch(C.flags, 1n)), { code: 'E_SESPARSE_UNSUPPORTED', data: { field: 'flags' } });
  await t.rejects(open(patch(C.reserved3, 1n)), { code: 'E_SESPARSE_UNSUPPORTED', data: { field: 'reserved3' } });
  await t.rejects(open(patch(C.pad + 8, 1n)), { code: 'E_SESPARSE_UNSUPPORTED', data: { field: 'pad' } });
  await t.rejects(open(patch(C.capacity, 2n ** 37n + 1n)), { code: 'E_BOUND', data: { field: 'capacity' } });
  await t.rejects(open(patch(C.grains_offset, 2n ** 60n)), { code: 'E_BOUND', data: { field: 'grains_offset' } });
  await t.rejects(open(patch(C.volatile_header_offset, 1000n)), { code: 'E_BOUND', data: { field: 'volatile_header_offset' } });
  await t.rejects(open(patch(512 + V.magic, 0n)), { code: 'E_SESPARSE_MAGIC', data: { structure: 'VMDKSESparseVolatileHeader' } });
  await t.rejects(open(patch(512 + V.replay_journal, 1n)), { code: 'E_SESPARSE_DIRTY' });
  await t.rejects(open(patch(512 + V.pad, 1n)), { code: 'E_SESPARSE_UNSUPPORTED' });
  await t.rejects(open(patch(C.grain_dir_size, 4n * 1024n * 1024n + 1n)), { code: 'E_BOUND', data: { field: 'grain_dir_size' } });
  await t.rejects(open(patch(C.capacity, 64n * 32768n + 8n)), { code: 'E_SESPARSE_HEADER', data: { field: 'grain_dir_size' } }, '64 entries cannot map 65 tables');
  await t.rejects(open(patch(C.grain_dir_size, 0n)), { code: 'E_SESPARSE_HEADER', data: { field: 'grain_dir_size' } });
  await t.rejects(open(patch(C.grain_dir_offset, 1000n)), { code: 'E_BOUND', data: { field: 'grain_dir_offset' } });
  await t.rejects(open(craft().subarray(0, 300)), { code: 'E_TRUNCATED' });
});

t.test('grain directory and grain table entries out of bounds are typed errors', async (t) => {
  const gdeHi = craft();
  gdeHi.writeBigUInt64LE(0x2000000000000000n, GD * 512);
  await t.rejects(open(gdeHi), { code: 'E_SESPARSE_GDE' });
  const gdeIndex = craft();
  gdeIndex.writeBigUInt64LE(encodeSeSparseGde(1), GD * 512); // grain_tables_size holds one table
  await t.rejects(open(gdeIndex), { code: 'E_BOUND', data: { field: 'GDE[0]' } });
  // A grain tables area that claims 2 tables, with the second beyond the end of the file.
  const gtPast = craft({ grain_tables_offset: BigInt(GRAINS + 8), grain_tables_size: 128n });
  gtPast.writeBigUInt64LE(encodeSeSparseGde(1), GD * 512);
  const e0 = await open(gtPast);
  await t.rejects(e0.readInto(Buffer.alloc(512), 0), { code: 'E_BOUND', data: { field: 'GDE[0]' } });

  const gte = (v: bigint, grain = 4) => { const f = craft(); f.writeBigUInt64LE(v, GT * 512 + grain * 8); return f; };
  const read4 = async (f: Buffer) => (await open(f)).readInto(Buffer.alloc(4096), 4 * 4096);
  await t.rejects(read4(gte(0x0000000000000005n)), { code: 'E_SESPARSE_GTE' }, 'an unallocated entry with bits set');
  await t.rejects(read4(gte(0x4000000000000000n)), { code: 'E_SESPARSE_GTE' }, 'an unknown type');
  await t.rejects(read4(gte(encodeSeSparseGte('allocated', 2))), { code: 'E_BOUND', data: { field: 'GTE[4]' } }, 'past grains_size');
  await t.rejects(read4(gte(0x3000ffffffffffffn)), { code: 'E_BOUND', data: { field: 'GTE[4]' } }, 'a 60-bit index');
  const grainPast = craft({ grains_size: 64n });
  grainPast.writeBigUInt64LE(encodeSeSparseGte('allocated', 5), GT * 512 + 4 * 8);
  await t.rejects(read4(grainPast), { code: 'E_BOUND', data: { field: 'GTE[4]' } }, 'a grain beyond the end of the file');
  const e = await open(craft());
  t.same((await e.allocation(0, 4096))[0]!.state, 'data', 'the good entries still read');
  await t.rejects(e.readInto(Buffer.alloc(1), e.size), { code: 'E_TRUNCATED' }, 'a read past the capacity');
});
