import t from 'tap';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { readVolumes, MAX_EBR_CHAIN } from '../../src/volume/index.js';
import { parseMbrSector } from '../../src/volume/mbr.js';
import { LayeredDisk } from '../../src/disk/layered.js';
import { RawLayer } from '../../src/disk/raw.js';
import { BufferSource, openReadOnly } from '../../src/disk/file.js';
import { SnapferryError } from '../../src/util/errors.js';
import { image, prng, requireTool } from '../helpers/images.js';

interface SfdiskPartition { node: string; start: number; size: number; type: string; bootable?: boolean; uuid?: string; name?: string }
interface SfdiskTable { partitiontable: { label: string; id: string; sectorsize: number; partitions: SfdiskPartition[] } }

function sfdiskJson(path: string): SfdiskTable {
  requireTool('sfdisk');
  return JSON.parse(execFileSync('sfdisk', ['--json', path], { encoding: 'utf8' })) as SfdiskTable;
}

async function openDisk(path: string): Promise<LayeredDisk> {
  return new LayeredDisk([new RawLayer(await openReadOnly(path))], []);
}

function memDisk(buf: Buffer): LayeredDisk {
  return new LayeredDisk([new RawLayer(new BufferSource(buf))], []);
}

interface Rec { boot?: number; type: number; start: number; count: number }
/** A 512-byte MBR/EBR sector with the given records and the 0x55AA signature. */
function sector(records: Rec[], signature = true): Buffer {
  const b = Buffer.alloc(512);
  records.forEach((r, i) => {
    const at = 446 + 16 * i;
    b[at] = r.boot ?? 0;
    b[at + 4] = r.type;
    b.writeUInt32LE(r.start, at + 8);
    b.writeUInt32LE(r.count, at + 12);
  });
  if (signature) b.writeUInt16LE(0xaa55, 510);
  return b;
}

function codes(ws: { code: string }[]): string[] {
  return ws.map((w) => w.code);
}

t.test('an MBR disk made by sfdisk reads as sfdisk --json says: primaries, extended, logicals p5 onwards', async (t) => {
  const dir = image('volumes');
  const path = join(dir, 'mbr.raw');
  const oracle = sfdiskJson(path).partitiontable;
  t.equal(oracle.label, 'dos');
  const disk = await openDisk(path);
  const table = await readVolumes(disk);
  await disk.close();
  t.equal(table.scheme, 'mbr');
  t.equal(table.sectorSize, 512);
  t.equal(table.diskGuid, oracle.id);
  t.same(table.warnings, []);
  t.equal(table.volumes.length, oracle.partitions.length, 'one volume per sfdisk partition (8: 3 primaries, the extended, 4 logicals)');
  for (const p of oracle.partitions) {
    const n = Number(/(\d+)$/.exec(p.node)![1]);
    const v = table.volumes.find((x) => x.name === `p${n}`);
    t.ok(v, `p${n} present`);
    if (!v) continue;
    t.equal(v.index, n);
    t.equal(v.start, p.start * 512, `p${n} start`);
    t.equal(v.size, p.size * 512, `p${n} size`);
    t.equal(Number.parseInt(v.type.id, 16), Number.parseInt(p.type, 16), `p${n} type ${p.type}`);
    t.equal(v.bootable === true, p.bootable === true, `p${n} bootable`);
  }
  t.same(table.volumes.map((v) => v.name), ['p1', 'p2', 'p3', 'p4', 'p5', 'p6', 'p7', 'p8']);
  const ext = table.volumes.find((v) => v.name === 'p4')!;
  t.equal(ext.type.name, 'Extended');
  t.equal(ext.filesystem.kind, 'none', 'the extended container is not probed as a filesystem');
});

t.test('logical starts are relative to their EBR, next-EBR links relative to the extended start', async (t) => {
  // Extended at LBA 100; EBR1 at 100 describes a logical at +10 and links to +50 (LBA 150);
  // EBR2 at 150 describes a logical at +5 (LBA 155). A wrong rule would give 110/160 or 160/205.
  const buf = Buffer.alloc(400 * 512);
  sector([{ type: 0x83, start: 10, count: 20 }, { type: 0x0f, start: 100, count: 300 }]).copy(buf, 0);
  sector([{ type: 0x83, start: 10, count: 30 }, { type: 0x05, start: 50, count: 100 }]).copy(buf, 100 * 512);
  sector([{ type: 0x07, start: 5, count: 40 }]).copy(buf, 150 * 512);
  const table = await readVolumes(memDisk(buf));
  t.same(codes(table.warnings), []);
  t.same(
    table.volumes.map((v) => [v.name, v.start / 512, v.size / 512, v.type.id]),
    [
      ['p1', 10, 20, '0x83'],
      ['p2', 100, 300, '0x0f'],
      ['p5', 110, 30, '0x83'],
      ['p6', 155, 40, '0x07'],
    ],
  );
});

t.test('an EBR loop stops the chain with W_MBR_EBR_LOOP and keeps the logicals read before it', async (t) => {
  const buf = Buffer.alloc(300 * 512);
  sector([{ type: 0x05, start: 100, count: 200 }]).copy(buf, 0);
  sector([{ type: 0x83, start: 1, count: 10 }, { type: 0x05, start: 20, count: 50 }]).copy(buf, 100 * 512);
  // The second EBR links back to the first (relative 0 = the extended start).
  sector([{ type: 0x83, start: 1, count: 10 }, { type: 0x05, start: 0, count: 50 }]).copy(buf, 120 * 512);
  const table = await readVolumes(memDisk(buf));
  t.same(codes(table.warnings), ['W_MBR_EBR_LOOP']);
  t.same(table.volumes.map((v) => v.name), ['p1', 'p5', 'p6']);
  t.same(table.volumes.map((v) => v.start / 512), [100, 101, 121]);
});

t.test(`an EBR chain longer than ${MAX_EBR_CHAIN} stops with W_MBR_EBR_CHAIN_LIMIT after ${MAX_EBR_CHAIN} logicals`, async (t) => {
  const ebrs = MAX_EBR_CHAIN + 40;
  const extStart = 64;
  const buf = Buffer.alloc((extStart + 2 * ebrs + 2) * 512);
  sector([{ type: 0x0f, start: extStart, count: 2 * ebrs + 1 }]).copy(buf, 0);
  for (let i = 0; i < ebrs; i++) {
    const recs: Rec[] = [{ type: 0x83, start: 1, count: 1 }];
    if (i < ebrs - 1) recs.push({ type: 0x05, start: 2 * (i + 1), count: 2 });
    sector(recs).copy(buf, (extStart + 2 * i) * 512);
  }
  const table = await readVolumes(memDisk(buf));
  t.same(codes(table.warnings), ['W_MBR_EBR_CHAIN_LIMIT']);
  const logicals = table.volumes.filter((v) => v.index >= 5);
  t.equal(logicals.length, MAX_EBR_CHAIN);
  t.equal(logicals.at(-1)!.name, `p${4 + MAX_EBR_CHAIN}`);
});

t.test('an EBR link outside the extended partition or the disk stops the chain with W_MBR_EBR_OUTSIDE', async (t) => {
  const buf = Buffer.alloc(200 * 512);
  sector([{ type: 0x05, start: 100, count: 50 }]).copy(buf, 0);
  sector([{ type: 0x83, start: 1, count: 10 }, { type: 0x05, start: 0xfffffff0, count: 10 }]).copy(buf, 100 * 512);
  const table = await readVolumes(memDisk(buf));
  t.same(codes(table.warnings), ['W_MBR_EBR_OUTSIDE']);
  t.same(table.volumes.map((v) => v.name), ['p1', 'p5']);
});

t.test('an EBR without the 0x55AA signature ends the chain with W_MBR_EBR_SIGNATURE', async (t) => {
  const buf = Buffer.alloc(200 * 512);
  sector([{ type: 0x05, start: 100, count: 50 }]).copy(buf, 0);
  sector([{ type: 0x83, start: 1, count: 10 }, { type: 0x05, start: 10, count: 10 }]).copy(buf, 100 * 512);
  sector([{ type: 0x83, start: 1, count: 5 }], false).copy(buf, 110 * 512);
  const table = await readVolumes(memDisk(buf));
  t.same(codes(table.warnings), ['W_MBR_EBR_SIGNATURE']);
  t.same(table.volumes.map((v) => v.name), ['p1', 'p5']);
});

t.test('a partition past the end of the disk is kept, flagged W_PARTITION_PAST_END, and probed only within the disk', async (t) => {
  const buf = Buffer.alloc(64 * 512);
  sector([{ type: 0x83, boot: 0x80, start: 8, count: 1000 }, { type: 0x07, start: 0xffff0000, count: 8 }]).copy(buf, 0);
  const table = await readVolumes(memDisk(buf));
  t.same(codes(table.warnings), ['W_PARTITION_PAST_END', 'W_PARTITION_PAST_END']);
  t.match(table.warnings[0]!.message, /^p1:/);
  t.same(table.volumes.map((v) => [v.name, v.size, v.bootable === true, v.filesystem.kind]), [
    ['p1', 1000 * 512, true, 'unknown'],
    ['p2', 8 * 512, false, 'unknown'],
  ]);
});

t.test('sector 0 without a valid table is one volume, "whole"', async (t) => {
  const none = await readVolumes(memDisk(Buffer.alloc(4096)));
  t.same([none.scheme, none.volumes.length, none.volumes[0]!.name, none.volumes[0]!.index, none.volumes[0]!.size], ['none', 1, 'whole', 0, 4096]);
  const badStatus = sector([{ type: 0x83, boot: 0x12, start: 1, count: 2 }]);
  const t2 = await readVolumes(memDisk(Buffer.concat([badStatus, Buffer.alloc(4096)])));
  t.equal(t2.scheme, 'none');
  t.same(codes(t2.warnings), ['W_MBR_INVALID']);
  const tiny = await readVolumes(memDisk(Buffer.alloc(100)));
  t.same([tiny.scheme, tiny.volumes[0]!.size, tiny.volumes[0]!.filesystem.kind], ['none', 100, 'unknown']);
  const empty = await readVolumes(memDisk(Buffer.concat([sector([]), Buffer.alloc(4096)])));
  t.same([empty.scheme, empty.volumes.length], ['mbr', 0], 'an all-empty table is a table with no partitions');
});

t.test('LBA fields are in logical sectors: with sectorSize 4096 an MBR entry scales by 4096', async (t) => {
  const buf = Buffer.alloc(64 * 4096);
  sector([{ type: 0x83, start: 8, count: 16 }]).copy(buf, 0);
  const table = await readVolumes(memDisk(buf), { sectorSize: 4096 });
  t.same([table.sectorSize, table.volumes[0]!.start, table.volumes[0]!.size], [4096, 8 * 4096, 16 * 4096]);
  await t.rejects(readVolumes(memDisk(buf), { sectorSize: 520 }), { code: 'E_SECTOR_SIZE' });
});

t.test('parseMbrSector refuses a buffer shorter than a sector with E_TRUNCATED', async (t) => {
  t.throws(() => parseMbrSector(Buffer.alloc(100)), { code: 'E_TRUNCATED' });
});

t.test('mutated MBR/EBR chains end in a table or a typed error (seeded, 3000 cases)', async (t) => {
  const base = Buffer.alloc(256 * 512);
  sector([{ type: 0x83, start: 8, count: 8 }, { type: 0x0f, start: 64, count: 180 }]).copy(base, 0);
  for (let i = 0; i < 5; i++) sector([{ type: 0x83, start: 1, count: 4 }, { type: 0x05, start: 8 * (i + 1), count: 8 }]).copy(base, (64 + 8 * i) * 512);
  const rand = prng(0x3b3);
  let tables = 0, errors = 0, most = 0;
  for (let c = 0; c < 3000; c++) {
    const buf = Buffer.from(base);
    const flips = 1 + Math.floor(rand() * 6);
    for (let f = 0; f < flips; f++) {
      const ebr = Math.floor(rand() * 6);
      const at = (ebr === 0 ? 0 : (64 + 8 * (ebr - 1)) * 512) + 446 + Math.floor(rand() * 66);
      buf[at] = Math.floor(rand() * 256);
    }
    try {
      const table = await readVolumes(memDisk(buf));
      most = Math.max(most, table.volumes.length);
      tables++;
    } catch (err) {
      if (!(err instanceof SnapferryError)) throw err;
      errors++;
    }
  }
  t.equal(tables + errors, 3000);
  t.ok(most <= 4 + MAX_EBR_CHAIN, `at most 4 primaries and ${MAX_EBR_CHAIN} logicals (saw ${most})`);
});
