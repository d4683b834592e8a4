import t, { type Test } from 'tap';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deflateSync } from 'node:zlib';
import { BufferSource, openReadOnly } from '../../../src/disk/file.js';
import { LayeredDisk, mergeRanges } from '../../../src/disk/layered.js';
import type { AllocRange } from '../../../src/disk/types.js';
import { isSparseExtent, SparseExtent, SparseLimits } from '../../../src/disk/vmdk/sparse.js';
import {
  COMPRESSION_DEFLATE,
  encodeSparseExtentHeader,
  GD_AT_END,
  MARKER_EOS,
  MARKER_FOOTER,
  MARKER_GD,
  MARKER_GT,
  SPARSE_MAGICNUMBER,
  SparseExtentHeaderLayout,
  SparseFlags,
  type SparseExtentHeader,
} from '../../../src/disk/vmdk/structs.js';
import { SnapferryError } from '../../../src/util/errors.js';
import { image, prng, qemuRaw, requireTool } from '../../helpers/images.js';
import { compareWithRaw } from '../../helpers/oracle.js';

requireTool('qemu-img', 'qemu-io');
const dir = image('vmdk-sparse');
const MiB = 1024 * 1024;
/** What a typed error must match: its stable code and, where it names one, the field. */
type Want = { code: string; data?: Record<string, string | number> };

/** qemu's allocation map of [start, start+length) of an image, shifted to start at 0. */
function qemuMap(path: string, start = 0, length?: number): AllocRange[] {
  const entries = JSON.parse(execFileSync('qemu-img', ['map', '--output=json', path], { encoding: 'utf8' })) as { start: number; length: number; present: boolean; zero: boolean; data: boolean }[];
  const end = length === undefined ? Infinity : start + length;
  const ranges: AllocRange[] = [];
  for (const e of entries) {
    const s = Math.max(e.start, start), x = Math.min(e.start + e.length, end);
    if (s >= x) continue;
    ranges.push({ offset: s - start, length: x - s, state: !e.present ? 'unallocated' : e.data ? 'data' : 'zero' });
  }
  return mergeRanges(ranges);
}

/** Every range our map calls unallocated or zero reads as zeros in qemu's raw output. */
async function holesReadZero(ranges: AllocRange[], rawPath: string, rawStart = 0): Promise<string | null> {
  const fh = await open(rawPath, 'r');
  const chunk = Buffer.alloc(4 * MiB);
  const zero = Buffer.alloc(4 * MiB);
  try {
    for (const r of ranges) {
      if (r.state === 'data') continue;
      for (let o = 0; o < r.length; o += chunk.length) {
        const n = Math.min(chunk.length, r.length - o);
        await fh.read(chunk, 0, n, rawStart + r.offset + o);
        if (!chunk.subarray(0, n).equals(zero.subarray(0, n))) return `${r.state} range at ${r.offset + o} holds data in qemu's output`;
      }
    }
    return null;
  } finally {
    await fh.close();
  }
}

async function openExtent(path: string): Promise<SparseExtent> {
  return SparseExtent.open(await openReadOnly(path));
}

async function checkAgainstQemu(t: Test, file: string, opts: { createType: string | null; streamOptimized: boolean }): Promise<void> {
  const path = join(dir, file);
  const extent = await openExtent(path);
  const disk = new LayeredDisk([extent], []);
  try {
    t.equal(extent.streamOptimized, opts.streamOptimized, 'streamOptimized');
    if (opts.createType) t.match(extent.embeddedDescriptor, `createType="${opts.createType}"`, 'embedded descriptor names the createType');
    const raw = qemuRaw(path);
    const r = await compareWithRaw(disk, raw, { randomReads: 10_000 });
    t.equal(r.mismatchAt, null, 'every byte equals qemu-img convert -O raw');
    t.equal(r.randomReads, 10_000);
    t.equal(r.randomMismatch, null, '10,000 random reads equal qemu');
    const ours = await extent.allocation(0, extent.size);
    t.same(ours, qemuMap(path), 'allocation() equals qemu-img map');
    t.equal(await holesReadZero(ours, raw), null, 'unallocated and zero ranges read as zeros in qemu output');
    t.ok(ours.some((r) => r.state === 'data') && ours.some((r) => r.state === 'unallocated'), 'the image has both data and holes');
  } finally {
    await disk.close();
  }
}

t.test('monolithicSparse with scattered writes and holes reads as qemu reads it', async (t) => {
  await checkAgainstQemu(t, 'scattered.vmdk', { createType: 'monolithicSparse', streamOptimized: false });
});

t.test('zeroed-grain GTEs (zeroed_grain=on, write -z) read as zeros and map as zero', async (t) => {
  const extent = await openExtent(join(dir, 'zeroed.vmdk'));
  const map = await extent.allocation(0, extent.size);
  await extent.close();
  t.ok(map.some((r) => r.state === 'zero'), 'the image has zeroed grains');
  t.ok((extent.header.flags & SparseFlags.zeroedGrainGte) !== 0, 'qemu set the zeroed-grain flag');
  await checkAgainstQemu(t, 'zeroed.vmdk', { createType: 'monolithicSparse', streamOptimized: false });
});

t.test('streamOptimized (deflated grains behind GrainMarkers) reads as qemu reads it', async (t) => {
  await checkAgainstQemu(t, 'stream.vmdk', { createType: 'streamOptimized', streamOptimized: true });
  // qemu's output is also the seeded source it was converted from.
  t.equal(execFileSync('cmp', [qemuRaw(join(dir, 'stream.vmdk')), join(dir, 'stream-source.raw')]).length, 0, 'qemu reads back the source');
});

t.test('twoGbMaxExtentSparse: each sNNN extent opened alone equals its slice of the disk', async (t) => {
  const raw = qemuRaw(join(dir, 'split.vmdk'));
  const desc = readFileSync(join(dir, 'split.vmdk'), 'utf8');
  const extents = [...desc.matchAll(/^RW (\d+) SPARSE "([^"]+)"$/gm)].map((m) => ({ sectors: Number(m[1]), file: m[2]! }));
  t.equal(extents.length, 2, 'the descriptor lists two extents');
  const work = mkdtempSync(join(tmpdir(), 'sf-split-'));
  t.teardown(() => rmSync(work, { recursive: true, force: true }));
  let start = 0;
  for (const { sectors, file } of extents) {
    const extent = await openExtent(join(dir, file));
    t.equal(extent.size, sectors * 512, `${file}: capacity equals the descriptor's extent size`);
    t.equal(extent.embeddedDescriptor, null, `${file}: an extent of a split disk holds no descriptor`);
    // qemu cannot open an extent of a split disk alone: its oracle is the slice of the whole disk.
    const slice = join(work, `${file}.raw`);
    execFileSync('dd', [`if=${raw}`, `of=${slice}`, 'bs=1M', `skip=${start}`, `count=${Math.ceil(extent.size / MiB)}`, 'iflag=skip_bytes', 'conv=sparse', 'status=none']);
    execFileSync('truncate', ['-s', String(extent.size), slice]);
    const disk = new LayeredDisk([extent], []);
    const r = await compareWithRaw(disk, slice, { randomReads: 10_000 });
    t.equal(r.mismatchAt, null, `${file}: every byte equals qemu`);
    t.equal(r.randomMismatch, null, `${file}: 10,000 random reads equal qemu`);
    const ours = await extent.allocation(0, extent.size);
    t.same(ours, qemuMap(join(dir, 'split.vmdk'), start, extent.size), `${file}: allocation() equals qemu-img map of its slice`);
    t.equal(await holesReadZero(ours, slice), null, `${file}: holes read as zeros`);
    await disk.close();
    start += extent.size;
  }
});

t.test('the 1 GiB benchmark disk (shuffled grains) reads as qemu reads it', async (t) => {
  await checkAgainstQemu(t, 'big.vmdk', { createType: 'monolithicSparse', streamOptimized: false });
});

// ---------------------------------------------------------------------------------------------
// A VMware-style stream-optimized extent (grain directory at the end, GT/GD markers, footer and
// end-of-stream marker), written here from the spec because qemu-img writes its GD at the front.
// qemu reads it back as the oracle, so the check does not rest on our reading of the spec alone.

function sectorPad(b: Buffer): Buffer {
  const pad = (512 - (b.length % 512)) % 512;
  return pad ? Buffer.concat([b, Buffer.alloc(pad)]) : b;
}
function marker(val: number, type: number): Buffer {
  const m = Buffer.alloc(512);
  m.writeBigUInt64LE(BigInt(val), 0);
  m.writeUInt32LE(0, 8);
  m.writeUInt32LE(type, 12);
  return m;
}
function baseHeader(over: Partial<SparseExtentHeader> = {}): SparseExtentHeader {
  return {
    magicNumber: SPARSE_MAGICNUMBER, version: 1, flags: SparseFlags.validNewlineTest | SparseFlags.redundantGrainTable,
    capacity: 1024, grainSize: 128, descriptorOffset: 0, descriptorSize: 0, numGTEsPerGT: 512, rgdOffset: 0, gdOffset: 1,
    overHead: 8, uncleanShutdown: 0, singleEndLineChar: 0x0a, nonEndLineChar: 0x20, doubleEndLineChar1: 0x0d, doubleEndLineChar2: 0x0a,
    compressAlgorithm: 0, ...over,
  };
}

function vmwareStream(raw: Buffer, name: string): Buffer {
  const grainBytes = 65536, perGT = 512;
  const capacity = raw.length / 512;
  const descriptor = sectorPad(Buffer.from(`# Disk DescriptorFile\nversion=1\nCID=5eed0001\nparentCID=ffffffff\ncreateType="streamOptimized"\n\n# Extent description\nRDONLY ${capacity} SPARSE "${name}"\n\n# The Disk Data Base\n#DDB\n\nddb.adapterType = "lsilogic"\n`));
  const header = baseHeader({
    version: 3, flags: SparseFlags.validNewlineTest | SparseFlags.compressedGrains | SparseFlags.markers, capacity,
    descriptorOffset: 1, descriptorSize: descriptor.length / 512, gdOffset: GD_AT_END, overHead: 128, compressAlgorithm: COMPRESSION_DEFLATE,
  });
  const parts: Buffer[] = [encodeSparseExtentHeader(header), descriptor];
  let sector = 1 + descriptor.length / 512;
  while (sector < header.overHead) { parts.push(Buffer.alloc(512)); sector++; }
  const grains = Math.ceil(raw.length / grainBytes);
  const gtes = new Uint32Array(Math.ceil(grains / perGT) * perGT);
  for (let g = 0; g < grains; g++) {
    const data = raw.subarray(g * grainBytes, Math.min(raw.length, (g + 1) * grainBytes));
    if (data.every((b) => b === 0)) continue;
    const z = deflateSync(data);
    const gm = Buffer.alloc(12);
    gm.writeBigUInt64LE(BigInt(g * 128), 0);
    gm.writeUInt32LE(z.length, 8);
    const block = sectorPad(Buffer.concat([gm, z]));
    gtes[g] = sector;
    parts.push(block);
    sector += block.length / 512;
  }
  const gd = new Uint32Array(gtes.length / perGT);
  for (let i = 0; i < gd.length; i++) {
    const gt = gtes.subarray(i * perGT, (i + 1) * perGT);
    if (gt.every((e) => e === 0)) continue;
    parts.push(marker(4, MARKER_GT));
    sector++;
    gd[i] = sector;
    parts.push(Buffer.from(gt.buffer, gt.byteOffset, gt.byteLength));
    sector += 4;
  }
  const gdBytes = sectorPad(Buffer.from(gd.buffer, gd.byteOffset, gd.byteLength));
  parts.push(marker(gdBytes.length / 512, MARKER_GD));
  sector++;
  const gdOffset = sector;
  parts.push(gdBytes);
  parts.push(marker(1, MARKER_FOOTER), encodeSparseExtentHeader({ ...header, gdOffset }), marker(0, MARKER_EOS));
  return Buffer.concat(parts);
}

t.test('a VMware-style streamOptimized extent (GD at end, footer) reads as qemu reads it', async (t) => {
  const source = readFileSync(join(dir, 'stream-source.raw'));
  const work = mkdtempSync(join(tmpdir(), 'sf-stream-'));
  t.teardown(() => rmSync(work, { recursive: true, force: true }));
  const path = join(work, 'vmware-stream.vmdk');
  writeFileSync(path, vmwareStream(source, 'vmware-stream.vmdk'));
  const raw = join(work, 'qemu.raw');
  execFileSync('qemu-img', ['convert', '-f', 'vmdk', '-O', 'raw', path, raw]);
  t.ok(readFileSync(raw).equals(source), 'qemu reads the crafted extent back as its source');
  const extent = await openExtent(path);
  t.equal(extent.streamOptimized, true);
  t.not(extent.header.gdOffset, GD_AT_END, 'the header in use is the footer copy');
  t.match(extent.embeddedDescriptor, 'createType="streamOptimized"');
  const disk = new LayeredDisk([extent], []);
  const r = await compareWithRaw(disk, raw, { randomReads: 10_000 });
  t.equal(r.mismatchAt, null, 'every byte equals qemu');
  t.equal(r.randomMismatch, null, '10,000 random reads equal qemu');
  t.same(await extent.allocation(0, extent.size), qemuMap(path), 'allocation() equals qemu-img map');
  await disk.close();
});

// ---------------------------------------------------------------------------------------------
// Crafted extents in a Buffer: every bound read from disk trips with its typed error.

/**
 * A minimal hosted sparse extent: 1024 sectors, 8 grains of 128 sectors, one GT. Sector 0 header,
 * sector 1 GD, sectors 2..5 GT, grain 0 at sector 8 (seeded bytes), grain 1 zeroed (GTE 1), the
 * rest unallocated.
 */
function craft(over: Partial<SparseExtentHeader> = {}, edit?: (buf: Buffer) => void): Buffer {
  const buf = Buffer.alloc((8 + 128) * 512);
  encodeSparseExtentHeader(baseHeader({ flags: SparseFlags.validNewlineTest | SparseFlags.zeroedGrainGte, ...over })).copy(buf, 0);
  buf.writeUInt32LE(2, 512); // GD[0] -> GT at sector 2
  buf.writeUInt32LE(8, 1024); // GT[0] -> grain at sector 8
  buf.writeUInt32LE(1, 1028); // GT[1] -> zeroed grain
  const rand = prng(7);
  for (let i = 8 * 512; i < buf.length; i++) buf[i] = Math.floor(rand() * 256);
  edit?.(buf);
  return buf;
}

/** A minimal stream-optimized extent whose grain 0 is `grain` deflated (or `deflated` verbatim). */
function craftStream(deflated: Buffer, markerSize = deflated.length): Buffer {
  const gm = Buffer.alloc(12);
  gm.writeBigUInt64LE(0n, 0);
  gm.writeUInt32LE(markerSize, 8);
  const grain = sectorPad(Buffer.concat([gm, deflated]));
  const head = Buffer.alloc(8 * 512);
  encodeSparseExtentHeader(baseHeader({ version: 3, flags: SparseFlags.compressedGrains | SparseFlags.markers, compressAlgorithm: COMPRESSION_DEFLATE })).copy(head, 0);
  head.writeUInt32LE(2, 512);
  head.writeUInt32LE(8, 1024);
  return Buffer.concat([head, grain]);
}

async function openBuf(buf: Buffer): Promise<SparseExtent> {
  return SparseExtent.open(new BufferSource(buf, 'crafted.vmdk'));
}

t.test('a crafted extent reads data, zeroed and unallocated grains', async (t) => {
  const buf = craft();
  t.ok(isSparseExtent(buf));
  t.notOk(isSparseExtent(Buffer.from('# Disk DescriptorFile')));
  const extent = await openBuf(buf);
  const out = Buffer.alloc(3 * 65536, 0xee);
  const holes = await extent.readInto(out, 0);
  t.ok(out.subarray(0, 65536).equals(buf.subarray(8 * 512, 136 * 512)), 'grain 0 is the bytes at sector 8');
  t.ok(out.subarray(65536, 131072).every((b) => b === 0), 'grain 1 (GTE 1) reads as zeros');
  t.ok(out.subarray(131072).every((b) => b === 0xee), 'an unallocated grain is left for the parent');
  t.same(holes, [{ offset: 131072, length: 65536 }]);
  t.same(await extent.allocation(0, extent.size), [
    { offset: 0, length: 65536, state: 'data' },
    { offset: 65536, length: 65536, state: 'zero' },
    { offset: 131072, length: 6 * 65536, state: 'unallocated' },
  ]);
  const mid = Buffer.alloc(100);
  await extent.readInto(mid, 65500);
  t.ok(mid.subarray(0, 36).equals(buf.subarray(8 * 512 + 65500, 8 * 512 + 65536)) && mid.subarray(36).every((b) => b === 0), 'a read across a grain boundary');
  await t.rejects(extent.readInto(Buffer.alloc(10), extent.size - 5), { code: 'E_TRUNCATED' }, 'a read past the capacity');
  // Without the zeroed-grain flag, GTE 1 is a sector like any other (as qemu reads it).
  const plain = await openBuf(craft({ flags: SparseFlags.validNewlineTest }));
  t.same((await plain.allocation(65536, 65536))[0]!.state, 'data');
});

const headerCases: [string, Partial<SparseExtentHeader> | null, ((b: Buffer) => void) | null, Want][] = [
  ['bad magic', null, (b) => b.write('XDMV', 0), { code: 'E_VMDK_MAGIC' }],
  ['version 4', { version: 4 }, null, { code: 'E_VMDK_VERSION' }],
  ['newline check bytes mangled by a text-mode copy', null, (b) => b.writeUInt8(0x0d, SparseExtentHeaderLayout.singleEndLineChar), { code: 'E_VMDK_NEWLINE' }],
  ['unknown compressAlgorithm', { compressAlgorithm: 7 }, null, { code: 'E_VMDK_COMPRESSION' }],
  ['huge capacity', { capacity: SparseLimits.capacity + 1 }, null, { code: 'E_BOUND', data: { field: 'capacity' } }],
  ['capacity past 2^53', null, (b) => b.writeBigUInt64LE(1n << 60n, SparseExtentHeaderLayout.capacity), { code: 'E_BOUND', data: { field: 'capacity' } }],
  ['grainSize 0', { grainSize: 0 }, null, { code: 'E_VMDK_GRAIN_SIZE' }],
  ['grainSize not a power of two', { grainSize: 100 }, null, { code: 'E_VMDK_GRAIN_SIZE' }],
  ['grainSize too big', { grainSize: SparseLimits.grainSize * 2 }, null, { code: 'E_BOUND', data: { field: 'grainSize' } }],
  ['numGTEsPerGT 0', { numGTEsPerGT: 0 }, null, { code: 'E_VMDK_HEADER' }],
  ['numGTEsPerGT too big', { numGTEsPerGT: 1024 }, null, { code: 'E_BOUND', data: { field: 'numGTEsPerGT' } }],
  ['too many grain directory entries', { capacity: 1 << 30, grainSize: 1, numGTEsPerGT: 1 }, null, { code: 'E_BOUND', data: { field: 'gdEntries' } }],
  ['gdOffset past the end', { gdOffset: 100_000 }, null, { code: 'E_BOUND', data: { field: 'gdOffset' } }],
  ['gdOffset 0', { gdOffset: 0 }, null, { code: 'E_VMDK_HEADER' }],
  ['grain directory running past the end', { capacity: 1 << 24, gdOffset: 135 }, null, { code: 'E_TRUNCATED' }],
  ['descriptorSize too big', { descriptorOffset: 1, descriptorSize: SparseLimits.descriptorSize + 1 }, null, { code: 'E_BOUND', data: { field: 'descriptorSize' } }],
  ['descriptor past the end', { descriptorOffset: 130, descriptorSize: 20 }, null, { code: 'E_TRUNCATED' }],
  ['GD_AT_END without a footer', { gdOffset: GD_AT_END }, null, { code: 'E_VMDK_FOOTER' }],
];

for (const [name, over, edit, want] of headerCases) {
  t.test(`typed error: ${name}`, async (t) => {
    await t.rejects(openBuf(craft(over ?? {}, edit ?? undefined)), want);
  });
}

t.test('typed error: a file too small for a header', async (t) => {
  await t.rejects(openBuf(craft().subarray(0, 100)), { code: 'E_VMDK_HEADER' });
});

t.test('typed error: GD_AT_END with a file too small for a footer, or a footer that says GD_AT_END again', async (t) => {
  await t.rejects(openBuf(craft({ gdOffset: GD_AT_END }).subarray(0, 1024)), { code: 'E_VMDK_FOOTER' });
  const header = baseHeader({ version: 3, flags: SparseFlags.compressedGrains | SparseFlags.markers, compressAlgorithm: COMPRESSION_DEFLATE, gdOffset: GD_AT_END });
  const file = Buffer.concat([encodeSparseExtentHeader(header), Buffer.alloc(512), marker(1, MARKER_FOOTER), encodeSparseExtentHeader(header), marker(0, MARKER_EOS)]);
  await t.rejects(openBuf(file), { code: 'E_VMDK_FOOTER', data: { field: 'gdOffset' } });
  // The same footer with a real gdOffset opens (the header copy in the footer is the one used).
  const good = Buffer.concat([encodeSparseExtentHeader(header), Buffer.alloc(512), marker(1, MARKER_FOOTER), encodeSparseExtentHeader({ ...header, gdOffset: 1 }), marker(0, MARKER_EOS)]);
  const extent = await openBuf(good);
  t.equal(extent.header.gdOffset, 1);
  t.same(await extent.allocation(0, extent.size), [{ offset: 0, length: extent.size, state: 'unallocated' }]);
});

t.test('typed error: a grain directory entry pointing past the end', async (t) => {
  const extent = await openBuf(craft({}, (b) => b.writeUInt32LE(0x7fffffff, 512)));
  await t.rejects(extent.readInto(Buffer.alloc(512), 0), { code: 'E_VMDK_GD_ENTRY' });
  await t.rejects(extent.allocation(0, 512), { code: 'E_VMDK_GD_ENTRY' });
});

t.test('typed error: a grain table entry pointing past the end', async (t) => {
  const extent = await openBuf(craft({}, (b) => b.writeUInt32LE(1000, 1024 + 8)));
  await t.rejects(extent.readInto(Buffer.alloc(512), 2 * 65536), { code: 'E_VMDK_GTE', data: { value: 1000 } });
  const ok = Buffer.alloc(512);
  await extent.readInto(ok, 0);
  t.ok(ok.equals(craft().subarray(8 * 512, 9 * 512)), 'other grains still read');
});

t.test('a crafted compressed grain inflates, and wrong or corrupt deflate data is a typed error', async (t) => {
  const grain = craft().subarray(8 * 512, 136 * 512);
  const good = await openBuf(craftStream(deflateSync(grain)));
  const got = Buffer.alloc(65536);
  t.same(await good.readInto(got, 0), []);
  t.ok(got.equals(grain), 'a good grain inflates to itself');
  const cases: [string, Buffer, Want, number?][] = [
    ['inflating past the grain size', deflateSync(Buffer.concat([grain, Buffer.alloc(512)])), { code: 'E_VMDK_INFLATE' }],
    ['inflating short of the grain size', deflateSync(grain.subarray(0, 1000)), { code: 'E_VMDK_INFLATE' }],
    ['garbage deflate data', Buffer.from('this is not a zlib stream at all'), { code: 'E_VMDK_INFLATE' }],
    ['truncated deflate data', deflateSync(grain).subarray(0, 100), { code: 'E_VMDK_INFLATE' }],
    ['a GrainMarker of size 0', deflateSync(grain), { code: 'E_VMDK_GRAIN_MARKER' }, 0],
    ['a GrainMarker size past two grains', deflateSync(grain), { code: 'E_BOUND', data: { structure: 'GrainMarker', field: 'size' } }, 2 * 65536 + 1],
    ['a GrainMarker size past the end of the file', deflateSync(grain), { code: 'E_TRUNCATED' }, deflateSync(grain).length + 10_000],
  ];
  for (const [name, deflated, want, size] of cases) {
    const extent = await openBuf(craftStream(deflated, size));
    await t.rejects(extent.readInto(Buffer.alloc(4096), 0), want, name);
  }
});

t.test('random mutations of crafted extents end in data or a typed error', async (t) => {
  const seeds = [craft(), craftStream(deflateSync(craft().subarray(8 * 512, 136 * 512)))];
  const rand = prng(42);
  let typed = 0, ok = 0;
  for (let i = 0; i < 3000; i++) {
    const buf = Buffer.from(seeds[i % 2]!);
    const flips = 1 + Math.floor(rand() * 4);
    for (let f = 0; f < flips; f++) {
      // Mostly the header, GD and GT (the first 6 sectors), sometimes anywhere.
      const at = Math.floor(rand() * (rand() < 0.8 ? 6 * 512 : buf.length));
      buf[at] = rand() < 0.5 ? Math.floor(rand() * 256) : [0, 1, 0xff, 0x80][Math.floor(rand() * 4)]!;
    }
    try {
      const extent = await openBuf(buf);
      const len = Math.min(extent.size, 3 * 65536);
      await extent.readInto(Buffer.alloc(len), 0);
      await extent.allocation(0, extent.size);
      ok++;
    } catch (err) {
      if (!(err instanceof SnapferryError)) t.fail(`case ${i}: untyped ${String(err)}`);
      else typed++;
    }
  }
  t.equal(ok + typed, 3000, `${ok} read, ${typed} typed errors`);
});
