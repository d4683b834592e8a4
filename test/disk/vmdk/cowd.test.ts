import t from 'tap';
import { join } from 'node:path';
import { CowdExtent, isCowdExtent } from '../../../src/disk/vmdk/cowd.js';
import { COWD_GT_BYTES, COWD_MAGIC, COWD_VERSION, COWDisk_Header, encodeCowdHeader } from '../../../src/disk/vmdk/structs-cowd.js';
import { BufferSource, openReadOnly } from '../../../src/disk/file.js';
import { RawLayer } from '../../../src/disk/raw.js';
import { LayeredDisk } from '../../../src/disk/layered.js';
import { image, qemuRaw } from '../../helpers/images.js';
import { CountingSource, qemuLayerMap } from '../../helpers/sources.js';
import { assertEqualsRaw } from '../../helpers/oracle.js';

const dir = image('vmdk-cowd');

async function openChain(): Promise<{ disk: LayeredDisk; top: CowdExtent; mid: CowdExtent }> {
  const top = await CowdExtent.open(await openReadOnly(join(dir, 'snap2-delta.vmdk')));
  const mid = await CowdExtent.open(await openReadOnly(join(dir, 'snap1-delta.vmdk')));
  const base = new RawLayer(await openReadOnly(join(dir, 'base-flat.vmdk')));
  return { disk: new LayeredDisk([top, mid, base], []), top, mid };
}

t.test('a 3-deep COWD chain reads byte-identical to qemu-img convert, sequentially and at 10,000 random offsets', async (t) => {
  const { disk, top, mid } = await openChain();
  t.equal(top.header.grainSize, 16);
  t.equal(mid.header.grainSize, 1);
  t.equal(top.header.parentFileName, 'snap1.vmdk');
  await assertEqualsRaw(t, disk, qemuRaw(join(dir, 'snap2.vmdk')), { label: 'snap2' });
  // The middle of the chain alone, too (a chain 2 deep ending at snap1).
  await assertEqualsRaw(t, new LayeredDisk(disk.layers.slice(1), []), qemuRaw(join(dir, 'snap1.vmdk')), { randomReads: 2_000, seed: 7, label: 'snap1' });
  await disk.close();
});

t.test('allocation() of each delta equals the ranges qemu maps to that delta', async (t) => {
  const { disk, top, mid } = await openChain();
  t.same(await top.allocation(0, top.size), qemuLayerMap(join(dir, 'snap2.vmdk'), top.size), 'snap2');
  t.same(await mid.allocation(0, mid.size), qemuLayerMap(join(dir, 'snap1.vmdk'), mid.size), 'snap1');
  // A window inside one grain, and one across a grain-table boundary (4096 grains of 512 bytes = 2 MiB).
  const w = await mid.allocation(4090 * 512 + 100, 20 * 512);
  t.same(w, [
    { offset: 4090 * 512 + 100, length: 12 * 512 - 100, state: 'data' },
    { offset: 4102 * 512, length: 8 * 512 + 100, state: 'unallocated' },
  ]);
  await disk.close();
});

t.test('a grain not in the delta is returned as a hole and left untouched in the buffer', async (t) => {
  const { disk, mid } = await openChain();
  const out = Buffer.alloc(3 * 512, 0xee);
  const holes = await mid.readInto(out, 63 * 512); // grain 63 is in snap1, 64 and 65 are not
  t.same(holes, [{ offset: 64 * 512, length: 1024 }]);
  t.ok(out.subarray(512).every((b) => b === 0xee), 'holes untouched');
  await disk.close();
});

t.test('contiguous grains are read with one call and grain tables are cached', async (t) => {
  const src = new CountingSource(await openReadOnly(join(dir, 'snap2-delta.vmdk')));
  const top = await CowdExtent.open(src);
  // The grain tables' positions, from the grain directory (3 entries for 131079 sectors of 16-sector grains).
  const gd = await src.read(top.header.gdOffset * 512, 3 * 4);
  const gtAt = new Set([0, 1, 2].map((i) => gd.readUInt32LE(i * 4) * 512));
  const isGt = (r: { position: number; length: number }) => r.length === COWD_GT_BYTES && gtAt.has(r.position);
  src.reads = [];
  await top.readInto(Buffer.alloc(top.size), 0);
  const gtReads = src.reads.filter(isGt).length;
  const dataReads = src.reads.length - gtReads;
  t.equal(gtReads, 3, 'each of the 3 grain tables read once');
  // snap2 has 7 runs of grains (images/vmdk-cowd.sh); one read per run, none per grain.
  t.ok(dataReads <= 7, `data reads (${dataReads}) <= runs (7)`);
  src.reads = [];
  await top.readInto(Buffer.alloc(top.size), 0);
  t.equal(src.reads.filter(isGt).length, 0, 'grain tables come from the cache');
  await top.close();
});

t.test('isCowdExtent recognises the magic', async (t) => {
  const src = await openReadOnly(join(dir, 'snap1-delta.vmdk'));
  t.ok(isCowdExtent(await src.read(0, 512)));
  await src.close();
  t.notOk(isCowdExtent(Buffer.from('KDMV\x01\x00\x00\x00')));
  t.notOk(isCowdExtent(Buffer.from('CO')));
});

// ---- crafted headers: every bound read from disk trips a typed error ----

const GD_SECTOR = 4;
const GT_SECTOR = 5;
const GRAIN_SECTOR = GT_SECTOR + COWD_GT_BYTES / 512;

/** A 64-sector COWD with 8-sector grains: one GDE, one GT, grain 0 at GRAIN_SECTOR. */
function craft(over: Partial<Parameters<typeof encodeCowdHeader>[0]> = {}): Buffer {
  const file = Buffer.alloc((GRAIN_SECTOR + 8) * 512);
  encodeCowdHeader({
    magicNumber: COWD_MAGIC, version: COWD_VERSION, flags: 3, numSectors: 64, grainSize: 8, gdOffset: GD_SECTOR, numGDEntries: 1,
    freeSector: GRAIN_SECTOR + 8, parentFileName: 'p.vmdk', parentGeneration: 0, generation: 0, name: 'x', description: '',
    savedGeneration: 0, uncleanShutdown: 0, ...over,
  }).copy(file, 0);
  file.writeUInt32LE(GT_SECTOR, GD_SECTOR * 512);
  file.writeUInt32LE(GRAIN_SECTOR, GT_SECTOR * 512);
  file.fill(0x5a, GRAIN_SECTOR * 512);
  return file;
}

t.test('a crafted COWD reads its grain and reports the rest unallocated', async (t) => {
  const e = await CowdExtent.open(new BufferSource(craft()));
  t.equal(e.size, 64 * 512);
  const out = Buffer.alloc(64 * 512, 1);
  t.same(await e.readInto(out, 0), [{ offset: 4096, length: 28672 }]);
  t.ok(out.subarray(0, 4096).every((b) => b === 0x5a));
  t.same(await e.allocation(0, e.size), [{ offset: 0, length: 4096, state: 'data' }, { offset: 4096, length: 28672, state: 'unallocated' }]);
});

t.test('every COWD header bound is a typed error', async (t) => {
  const open = (buf: Buffer) => CowdExtent.open(new BufferSource(buf));
  await t.rejects(open(craft({ magicNumber: 0x12345678 })), { code: 'E_COWD_MAGIC' });
  await t.rejects(open(craft({ version: 3 })), { code: 'E_COWD_VERSION' });
  await t.rejects(open(craft({ grainSize: 0 })), { code: 'E_COWD_HEADER', data: { field: 'grainSize' } });
  await t.rejects(open(craft({ grainSize: 0x200001 })), { code: 'E_BOUND', data: { field: 'grainSize' } });
  await t.rejects(open(craft({ numGDEntries: 32 * 1024 * 1024 + 1 })), { code: 'E_BOUND', data: { field: 'numGDEntries' } });
  await t.rejects(open(craft({ numSectors: 4096 * 8 + 1 })), { code: 'E_COWD_HEADER', data: { field: 'numGDEntries' } }, 'two GT coverages need two entries');
  await t.rejects(open(craft({ gdOffset: GRAIN_SECTOR + 8 })), { code: 'E_BOUND', data: { field: 'gdOffset' } });
  await t.rejects(open(craft().subarray(0, 1000)), { code: 'E_TRUNCATED' }, 'a file shorter than its header');
});

t.test('grain directory and grain table entries beyond the file are typed errors', async (t) => {
  const badGde = craft();
  badGde.writeUInt32LE(GRAIN_SECTOR, GD_SECTOR * 512); // a GT would run past the end
  const e1 = await CowdExtent.open(new BufferSource(badGde));
  await t.rejects(e1.readInto(Buffer.alloc(512), 0), { code: 'E_BOUND', data: { field: 'GDE[0]' } });
  await t.rejects(e1.allocation(0, 512), { code: 'E_BOUND' });
  const badGte = craft();
  badGte.writeUInt32LE(0xffffff00, GT_SECTOR * 512 + 4); // grain 1
  const e2 = await CowdExtent.open(new BufferSource(badGte));
  t.same((await e2.allocation(0, 4096))[0]!.state, 'data', 'grain 0 is still fine');
  await t.rejects(e2.readInto(Buffer.alloc(512), 4096), { code: 'E_BOUND', data: { field: 'GTE[1]' } });
  await t.rejects(e2.readInto(Buffer.alloc(512), 64 * 512), { code: 'E_TRUNCATED' }, 'a read past the capacity');
  t.equal(COWDisk_Header.SIZE, 2048);
});
