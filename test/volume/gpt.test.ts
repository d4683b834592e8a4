import t, { type Test } from 'tap';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { readVolumes, MAX_GPT_ENTRIES, MAX_GPT_ENTRY_SIZE, type VolumeTable } from '../../src/volume/index.js';
import { formatGuid, parseGptHeader } from '../../src/volume/gpt.js';
import { LayeredDisk } from '../../src/disk/layered.js';
import { RawLayer } from '../../src/disk/raw.js';
import { BufferSource, openReadOnly } from '../../src/disk/file.js';
import { SnapferryError } from '../../src/util/errors.js';
import { image, prng, requireTool } from '../helpers/images.js';

interface SfdiskPartition { node: string; start: number; size: number; type: string; uuid?: string; name?: string }
interface SfdiskTable { partitiontable: { label: string; id: string; sectorsize: number; partitions: SfdiskPartition[] } }

function sfdiskJson(path: string): SfdiskTable {
  requireTool('sfdisk');
  return JSON.parse(execFileSync('sfdisk', ['--json', path], { encoding: 'utf8' })) as SfdiskTable;
}

async function readFile(path: string, opts?: { sectorSize?: number }): Promise<VolumeTable> {
  const disk = new LayeredDisk([new RawLayer(await openReadOnly(path))], []);
  try {
    return await readVolumes(disk, opts);
  } finally {
    await disk.close();
  }
}

const memDisk = (buf: Buffer): LayeredDisk => new LayeredDisk([new RawLayer(new BufferSource(buf))], []);

/** Every partition of sfdisk's view equals ours: number, start, size, type, uuid, name (GUIDs compared case-insensitively). */
function sameAsSfdisk(t: Test, table: VolumeTable, oracle: SfdiskTable['partitiontable']): void {
  t.equal(table.scheme, 'gpt');
  t.equal(table.sectorSize, oracle.sectorsize);
  t.equal(table.diskGuid, oracle.id.toLowerCase());
  t.equal(table.volumes.length, oracle.partitions.length, 'one volume per sfdisk partition');
  const ss = oracle.sectorsize;
  for (const p of oracle.partitions) {
    const n = Number(/(\d+)$/.exec(p.node)![1]);
    const v = table.volumes.find((x) => x.name === `p${n}`);
    if (!v) {
      t.fail(`p${n} missing`);
      continue;
    }
    t.same(
      { index: v.index, start: v.start, size: v.size, type: v.type.id, uuid: v.partUuid, name: v.label ?? '' },
      { index: n, start: p.start * ss, size: p.size * ss, type: p.type.toLowerCase(), uuid: p.uuid?.toLowerCase(), name: p.name ?? '' },
      `p${n}`,
    );
    t.not(v.type.name, 'unknown', `p${n} type ${p.type} has a name`);
  }
}

t.test('a GPT disk made by sfdisk reads as sfdisk --json says (names, uuids, a gap in the slots)', async (t) => {
  const path = join(image('volumes'), 'gpt.raw');
  const table = await readFile(path);
  sameAsSfdisk(t, table, sfdiskJson(path).partitiontable);
  t.same(table.warnings, []);
  t.ok(table.volumes.some((v) => v.name === 'p9') && !table.volumes.some((v) => v.name === 'p8'), 'numbered by entry slot');
  t.equal(table.volumes.find((v) => v.name === 'p6')!.label, 'exfat data ü', 'UTF-16LE names');
  t.equal(table.volumes.find((v) => v.name === 'p1')!.type.name, 'EFI System');
});

t.test('a damaged primary header: the backup is used, with W_GPT_BACKUP_USED, and the table is unchanged', async (t) => {
  const dir = image('volumes');
  const good = sfdiskJson(join(dir, 'gpt.raw')).partitiontable;
  for (const f of ['gpt-badhdr.raw', 'gpt-badarray.raw']) {
    const table = await readFile(join(dir, f));
    t.same(table.warnings.map((w) => w.code), ['W_GPT_BACKUP_USED'], f);
    t.match(table.warnings[0]!.message, f === 'gpt-badhdr.raw' ? /HeaderCRC32/ : /PartitionEntryArrayCRC32/);
    sameAsSfdisk(t, table, good);
    // sfdisk itself reads the damaged file through its backup too.
    sameAsSfdisk(t, table, sfdiskJson(join(dir, f)).partitiontable);
  }
});

t.test('both GPT headers damaged: E_GPT_CORRUPT naming both failures', async (t) => {
  const path = join(image('volumes'), 'gpt-bothbad.raw');
  await t.rejects(readFile(path), { code: 'E_GPT_CORRUPT', data: { primaryCode: 'E_GPT_CRC', backupCode: 'E_GPT_CRC' } });
});

t.test('a 4096-byte-sector GPT (written through a 4Kn loop device) is found and read in 4 KiB LBAs', async (t) => {
  const dir = image('volumes');
  const oracle = (JSON.parse(readFileSync(join(dir, 'gpt4k.json'), 'utf8')) as SfdiskTable).partitiontable;
  t.equal(oracle.sectorsize, 4096);
  const auto = await readFile(join(dir, 'gpt4k.raw'));
  sameAsSfdisk(t, auto, oracle);
  const explicit = await readFile(join(dir, 'gpt4k.raw'), { sectorSize: 4096 });
  sameAsSfdisk(t, explicit, oracle);
  await t.rejects(readFile(join(dir, 'gpt4k.raw'), { sectorSize: 512 }), { code: 'E_GPT_CORRUPT' }, 'read with the wrong sector size, no header is found');
});

// ---- crafted GPTs -------------------------------------------------------------------------

const LINUX = '0fc63daf-8483-4772-8e79-3d69d8477de4';

function guidBytes(s: string): Buffer {
  const h = s.replace(/-/g, '');
  const b = Buffer.from(h, 'hex');
  b.subarray(0, 4).reverse();
  b.subarray(4, 6).reverse();
  b.subarray(6, 8).reverse();
  return b;
}

interface Craft {
  sectors?: number;
  ss?: number;
  entries?: { start: number; end: number; type?: string; name?: string }[];
  count?: number;
  entrySize?: number;
  headerSize?: number;
  /** Changes applied to a header after its CRCs are computed or before (recrc). */
  mutate?: (hdr: Buffer, which: 'primary' | 'backup') => void;
  recrc?: boolean;
}

/** A disk with a protective MBR, primary and backup GPT headers and arrays, CRCs computed like a real tool. */
function craftGpt(c: Craft = {}): Buffer {
  const ss = c.ss ?? 512;
  const sectors = c.sectors ?? 2048;
  const count = c.count ?? 128;
  const entrySize = c.entrySize ?? 128;
  const buf = Buffer.alloc(sectors * ss);
  // Protective MBR.
  buf[446 + 4] = 0xee;
  buf.writeUInt32LE(1, 446 + 8);
  buf.writeUInt32LE(Math.min(sectors - 1, 0xffffffff), 446 + 12);
  buf.writeUInt16LE(0xaa55, 510);
  const arrayBytes = Math.min(count * entrySize, 1 << 20);
  const array = Buffer.alloc(arrayBytes);
  (c.entries ?? [{ start: 40, end: 99, name: 'one' }]).forEach((e, i) => {
    const at = i * entrySize;
    guidBytes(e.type ?? LINUX).copy(array, at);
    guidBytes(`00000000-0000-4000-8000-${String(i + 1).padStart(12, '0')}`).copy(array, at + 16);
    array.writeBigUInt64LE(BigInt(e.start), at + 32);
    array.writeBigUInt64LE(BigInt(e.end), at + 40);
    array.write(e.name ?? '', at + 56, 72, 'utf16le');
  });
  const arraySectors = Math.ceil(arrayBytes / ss);
  const lastLba = sectors - 1;
  const place = (which: 'primary' | 'backup'): void => {
    const my = which === 'primary' ? 1 : lastLba;
    const arrLba = which === 'primary' ? 2 : lastLba - arraySectors;
    const h = Buffer.alloc(ss);
    h.write('EFI PART', 0, 'latin1');
    h.writeUInt32LE(0x00010000, 8);
    h.writeUInt32LE(c.headerSize ?? 92, 12);
    h.writeBigUInt64LE(BigInt(my), 24);
    h.writeBigUInt64LE(BigInt(which === 'primary' ? lastLba : 1), 32);
    h.writeBigUInt64LE(BigInt(2 + arraySectors), 40);
    h.writeBigUInt64LE(BigInt(lastLba - arraySectors - 1), 48);
    guidBytes('12345678-9abc-4def-8123-456789abcdef').copy(h, 56);
    h.writeBigUInt64LE(BigInt(arrLba), 72);
    h.writeUInt32LE(count, 80);
    h.writeUInt32LE(entrySize, 84);
    h.writeUInt32LE(crc32(array) >>> 0, 88);
    if (c.recrc !== false) c.mutate?.(h, which);
    const hs = Math.min(h.readUInt32LE(12), ss);
    h.writeUInt32LE(crc32(h.subarray(0, Math.max(hs, 92))) >>> 0, 16);
    if (c.recrc === false) c.mutate?.(h, which);
    h.copy(buf, my * ss);
    array.copy(buf, arrLba * ss);
  };
  place('primary');
  place('backup');
  return buf;
}

t.test('a crafted GPT reads: mixed-endian GUIDs, UTF-16 names, sizes in bytes', async (t) => {
  const table = await readVolumes(memDisk(craftGpt({ entries: [{ start: 40, end: 99, name: 'één' }, { start: 100, end: 100 }] })));
  t.same(table.warnings, []);
  t.equal(table.diskGuid, '12345678-9abc-4def-8123-456789abcdef');
  t.same(table.volumes.map((v) => [v.name, v.start, v.size, v.type.id, v.type.name, v.label, v.partUuid]), [
    ['p1', 40 * 512, 60 * 512, LINUX, 'Linux filesystem', 'één', '00000000-0000-4000-8000-000000000001'],
    ['p2', 100 * 512, 512, LINUX, 'Linux filesystem', undefined, '00000000-0000-4000-8000-000000000002'],
  ]);
  t.equal(formatGuid(guidBytes('c12a7328-f81f-11d2-ba4b-00a0c93ec93b')), 'c12a7328-f81f-11d2-ba4b-00a0c93ec93b');
});

t.test(`NumberOfPartitionEntries over ${MAX_GPT_ENTRIES} is E_BOUND; the backup is used when only the primary is bad`, async (t) => {
  const both = craftGpt({ mutate: (h) => h.writeUInt32LE(MAX_GPT_ENTRIES + 1, 80) });
  t.throws(() => parseGptHeader(both.subarray(512, 1024), 1, 512, 2048), { code: 'E_BOUND', data: { field: 'NumberOfPartitionEntries', limit: String(MAX_GPT_ENTRIES) } });
  await t.rejects(readVolumes(memDisk(both)), { code: 'E_GPT_CORRUPT', data: { primaryCode: 'E_BOUND', backupCode: 'E_BOUND' } });
  const primaryOnly = craftGpt({ mutate: (h, w) => w === 'primary' && h.writeUInt32LE(0xffffffff, 80) });
  const table = await readVolumes(memDisk(primaryOnly));
  t.same(table.warnings.map((w) => w.code), ['W_GPT_BACKUP_USED']);
  t.match(table.warnings[0]!.message, /E_BOUND/);
  t.equal(table.volumes.length, 1);
});

t.test(`SizeOfPartitionEntry over ${MAX_GPT_ENTRY_SIZE} is E_BOUND; one not 128 x 2^n is E_GPT_HEADER`, async (t) => {
  const big = craftGpt({ mutate: (h) => h.writeUInt32LE(MAX_GPT_ENTRY_SIZE * 2, 84) });
  t.throws(() => parseGptHeader(big.subarray(512, 1024), 1, 512, 2048), { code: 'E_BOUND', data: { field: 'SizeOfPartitionEntry' } });
  const odd = craftGpt({ mutate: (h) => h.writeUInt32LE(192, 84) });
  t.throws(() => parseGptHeader(odd.subarray(512, 1024), 1, 512, 2048), { code: 'E_GPT_HEADER', data: { field: 'SizeOfPartitionEntry' } });
  // A legal larger entry size (256) reads, the name field staying at offset 56.
  const wide = await readVolumes(memDisk(craftGpt({ entrySize: 256, entries: [{ start: 50, end: 59, name: 'wide' }, { start: 60, end: 69, name: 'two' }] })));
  t.same(wide.volumes.map((v) => [v.name, v.label]), [['p1', 'wide'], ['p2', 'two']]);
});

t.test('HeaderSize over the sector size is E_BOUND, under 92 is E_GPT_HEADER', async (t) => {
  const big = craftGpt({ headerSize: 600 });
  t.throws(() => parseGptHeader(big.subarray(512, 1024), 1, 512, 2048), { code: 'E_BOUND', data: { field: 'HeaderSize' } });
  const small = craftGpt({ headerSize: 60 });
  t.throws(() => parseGptHeader(small.subarray(512, 1024), 1, 512, 2048), { code: 'E_GPT_HEADER', data: { field: 'HeaderSize' } });
  const larger = await readVolumes(memDisk(craftGpt({ headerSize: 512 })));
  t.same([larger.warnings, larger.volumes.length], [[], 1], 'a header CRC over all 512 bytes is valid');
});

t.test('header CRC bad with the backup good: W_GPT_BACKUP_USED; MyLBA wrong: E_GPT_HEADER', async (t) => {
  const badCrc = craftGpt({ recrc: false, mutate: (h, w) => w === 'primary' && (h[60] ^= 1) });
  const table = await readVolumes(memDisk(badCrc));
  t.same(table.warnings.map((w) => w.code), ['W_GPT_BACKUP_USED']);
  t.same(table.volumes.map((v) => v.name), ['p1']);
  t.throws(() => parseGptHeader(badCrc.subarray(512, 1024), 1, 512, 2048), { code: 'E_GPT_CRC', data: { field: 'HeaderCRC32' } });
  const wrongLba = craftGpt({ mutate: (h, w) => w === 'primary' && h.writeBigUInt64LE(7n, 24) });
  t.throws(() => parseGptHeader(wrongLba.subarray(512, 1024), 1, 512, 2048), { code: 'E_GPT_HEADER', data: { field: 'MyLBA' } });
  t.same((await readVolumes(memDisk(wrongLba))).warnings.map((w) => w.code), ['W_GPT_BACKUP_USED']);
});

t.test('a damaged backup with a good primary: the primary is used, with W_GPT_BACKUP_BAD', async (t) => {
  const buf = craftGpt({ recrc: false, mutate: (h, w) => w === 'backup' && (h[70] ^= 0xff) });
  const table = await readVolumes(memDisk(buf));
  t.same(table.warnings.map((w) => w.code), ['W_GPT_BACKUP_BAD']);
  t.equal(table.volumes.length, 1);
});

t.test('both headers bad: E_GPT_CORRUPT, not a silent fall-back to the protective MBR', async (t) => {
  const buf = craftGpt({ recrc: false, mutate: (h) => (h[60] ^= 1) });
  await t.rejects(readVolumes(memDisk(buf)), { code: 'E_GPT_CORRUPT', data: { primaryCode: 'E_GPT_CRC', backupCode: 'E_GPT_CRC' } });
  const noHeaders = craftGpt();
  noHeaders.fill(0, 512, 1024);
  noHeaders.fill(0, noHeaders.length - 512);
  await t.rejects(readVolumes(memDisk(noHeaders)), { code: 'E_GPT_CORRUPT', data: { primaryCode: 'E_GPT_SIGNATURE' } });
});

t.test('a partition past the end of the disk: W_GPT_ENTRY_OUTSIDE_USABLE and W_PARTITION_PAST_END, kept', async (t) => {
  const table = await readVolumes(memDisk(craftGpt({ entries: [{ start: 100, end: 5000 }, { start: 300, end: 200 }] })));
  t.same(table.warnings.map((w) => w.code).sort(), ['W_GPT_ENTRY_INVALID', 'W_GPT_ENTRY_OUTSIDE_USABLE', 'W_PARTITION_PAST_END']);
  t.same(table.volumes.map((v) => [v.name, v.size, v.filesystem.kind]), [['p1', 4901 * 512, 'unknown']]);
});

t.test('an LBA past 2^53 is E_BOUND; an entry array past the disk is E_TRUNCATED', async (t) => {
  const huge = craftGpt({ mutate: (h, w) => w === 'primary' && h.writeBigUInt64LE(1n << 60n, 72) });
  t.throws(() => parseGptHeader(huge.subarray(512, 1024), 1, 512, 2048), { code: 'E_BOUND', data: { field: 'PartitionEntryLBA' } });
  const past = craftGpt({ mutate: (h) => h.writeBigUInt64LE(2047n, 72) });
  await t.rejects(readVolumes(memDisk(past)), { code: 'E_GPT_CORRUPT', data: { primaryCode: 'E_TRUNCATED', backupCode: 'E_TRUNCATED' } });
  const bigStart = craftGpt({ entries: [{ start: 2 ** 60, end: 2 ** 60 + 10 }] });
  await t.rejects(readVolumes(memDisk(bigStart)), { code: 'E_GPT_CORRUPT', data: { primaryCode: 'E_BOUND' } });
});

t.test('mutated GPT headers and arrays end in a table or a typed error (seeded, 3000 cases)', async (t) => {
  const rand = prng(0x69e7);
  let tables = 0, errors = 0;
  for (let c = 0; c < 3000; c++) {
    const recrc = rand() < 0.7; // most cases keep CRCs valid, so mutations reach the field checks
    const buf = craftGpt({
      sectors: 512,
      entries: [{ start: 40, end: 99, name: 'a' }, { start: 100, end: 200, name: 'b' }],
      recrc,
      mutate: (h) => {
        for (let i = 0, n = 1 + Math.floor(rand() * 4); i < n; i++) h[8 + Math.floor(rand() * 84)] = Math.floor(rand() * 256);
      },
    });
    if (rand() < 0.3) for (let i = 0; i < 4; i++) buf[1024 + Math.floor(rand() * 256)] = Math.floor(rand() * 256);
    try {
      await readVolumes(memDisk(buf));
      tables++;
    } catch (err) {
      if (!(err instanceof SnapferryError)) throw err;
      errors++;
    }
  }
  t.equal(tables + errors, 3000);
  t.ok(tables > 0 && errors > 0, `both outcomes occur (${tables} tables, ${errors} errors)`);
});
