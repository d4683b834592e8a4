import t from 'tap';
import { spawnSync } from 'node:child_process';
import { openSync, readSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { detectFilesystem, readVolumes, type FsDetection } from '../../src/volume/index.js';
import { exfatVolumeLabel, ntfsVolumeLabel } from '../../src/volume/detect.js';
import { LayeredDisk } from '../../src/disk/layered.js';
import { RawLayer } from '../../src/disk/raw.js';
import { openReadOnly } from '../../src/disk/file.js';
import { image, prng, requireTool } from '../helpers/images.js';

/** blkid's low-level probe of [offset, offset+size) of a file, as KEY=value pairs ({} when it finds nothing). */
function blkid(path: string, offset: number, size: number): Record<string, string> {
  requireTool('blkid');
  const r = spawnSync('blkid', ['-p', '-o', 'export', '-O', String(offset), '-S', String(size), path], { encoding: 'utf8' });
  if (r.status === 2) return {}; // nothing detected
  if (r.status !== 0) throw new Error(`blkid failed (${r.status}): ${r.stderr}`);
  const out: Record<string, string> = {};
  for (const line of r.stdout.split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0) out[line.slice(0, eq)] = line.slice(eq + 1).replace(/\\(.)/g, '$1');
  }
  return out;
}

/** Our detection in blkid's vocabulary. */
function asBlkid(fs: FsDetection): Record<string, string> {
  const type: Record<string, [string, string?]> = {
    ext2: ['ext2'], ext3: ['ext3'], ext4: ['ext4'], ntfs: ['ntfs'], exfat: ['exfat'], swap: ['swap'], lvm2: ['LVM2_member'], bitlocker: ['BitLocker'],
    fat12: ['vfat', 'FAT12'], fat16: ['vfat', 'FAT16'], fat32: ['vfat', 'FAT32'],
  };
  const m = type[fs.kind];
  if (!m) return {};
  const out: Record<string, string> = { TYPE: m[0] };
  if (m[1]) out.VERSION = m[1];
  if (fs.label) out.LABEL = fs.label;
  if (fs.uuid) out.UUID = fs.uuid;
  return out;
}

function pick(b: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const k of ['TYPE', 'LABEL', 'UUID']) if (b[k] !== undefined) out[k] = b[k]!;
  if (b.TYPE === 'vfat' && b.VERSION) out.VERSION = b.VERSION;
  return out;
}

async function tableOf(path: string) {
  const disk = new LayeredDisk([new RawLayer(await openReadOnly(path))], []);
  try {
    return await readVolumes(disk);
  } finally {
    await disk.close();
  }
}

t.test('every volume of the test disks is detected as blkid -p detects it (type, FAT version, label, uuid)', async (t) => {
  const dir = image('volumes');
  const expected: Record<string, string[]> = {
    'mbr.raw': ['ext2', 'ntfs', 'fat32', 'none', 'ext3', 'swap', 'fat16', 'exfat'],
    'gpt.raw': ['fat12', 'ext4', 'ntfs', 'swap', 'lvm2', 'exfat', 'unknown', 'unknown'],
    'gpt4k.raw': ['ext4', 'ntfs'],
    'whole-ext4.raw': ['ext4'],
    'whole-fat.raw': ['fat16'],
  };
  for (const [file, kinds] of Object.entries(expected)) {
    const path = join(dir, file);
    const table = await tableOf(path);
    t.same(table.volumes.map((v) => v.filesystem.kind), kinds, `${file}: the filesystems the image script made`);
    for (const v of table.volumes) {
      if (v.filesystem.kind === 'none') continue; // the extended container
      t.same(asBlkid(v.filesystem), pick(blkid(path, v.start, v.size)), `${file} ${v.name}`);
    }
  }
});

t.test('labels and uuids given to mkfs come back (independent of blkid)', async (t) => {
  const table = await tableOf(join(image('volumes'), 'gpt.raw'));
  const fs = Object.fromEntries(table.volumes.map((v) => [v.name, v.filesystem]));
  t.same(fs.p1, { kind: 'fat12', label: 'ESP', uuid: '1212-1212' });
  t.same(fs.p2, { kind: 'ext4', label: 'rootfs', uuid: '4e4e0000-0000-4000-8000-000000000002' });
  t.equal(fs.p3!.label, 'WINDATA');
  t.same(fs.p4, { kind: 'swap', label: 'gptswap', uuid: '5a5a0000-0000-4000-8000-000000000004' });
  t.same(fs.p5, { kind: 'lvm2', uuid: 'Lvm2Pv-0000-1111-2222-3333-4444-555555' });
  t.equal(fs.p6!.label, 'GPTEXFAT');
});

const memRead = (buf: Buffer) => async (off: number, len: number): Promise<Buffer> => {
  // A plain Error, not a typed one: detection must never read outside the size it was given.
  if (off < 0 || off + len > buf.length) throw new Error(`read outside the volume: ${off}+${len} of ${buf.length}`);
  return Buffer.from(buf.subarray(off, off + len));
};
const detect = (buf: Buffer): Promise<FsDetection> => detectFilesystem(memRead(buf), buf.length);

t.test('BitLocker, LVM2 and swap with an 8 KiB page are recognised by signature', async (t) => {
  const bl = Buffer.alloc(8192);
  bl.write('\xeb\x58\x90-FVE-FS-', 0, 'latin1');
  bl.writeUInt16LE(0xaa55, 510);
  t.same(await detect(bl), { kind: 'bitlocker' });

  const lvm = Buffer.alloc(8192);
  lvm.write('LABELONE', 512, 'latin1');
  lvm.writeUInt32LE(32, 512 + 20);
  lvm.write('LVM2 001', 512 + 24, 'latin1');
  lvm.write('abcdef0123456789ABCDEFghijklmnop', 512 + 32, 'latin1');
  t.same(await detect(lvm), { kind: 'lvm2', uuid: 'abcdef-0123-4567-89AB-CDEF-ghij-klmnop' });
  lvm.write('LVM1 001', 512 + 24, 'latin1');
  t.same(await detect(lvm), { kind: 'unknown' }, 'LABELONE without the LVM2 type is not a PV');

  const swap = Buffer.alloc(16384);
  swap.write('SWAPSPACE2', 8192 - 10, 'latin1');
  swap.writeUInt32LE(1, 1024);
  Buffer.from('00112233445566778899aabbccddeeff', 'hex').copy(swap, 1036);
  swap.write('bigpage', 1052, 'utf8');
  t.same(await detect(swap), { kind: 'swap', label: 'bigpage', uuid: '00112233-4455-6677-8899-aabbccddeeff' });
});

t.test('ext2/ext3/ext4 are told apart by feature flags as blkid does; an external journal is not a filesystem', async (t) => {
  const sb = (compat: number, incompat: number, ro: number): Buffer => {
    const b = Buffer.alloc(4096);
    b.writeUInt16LE(0xef53, 1024 + 0x38);
    b.writeUInt32LE(compat, 1024 + 0x5c);
    b.writeUInt32LE(incompat, 1024 + 0x60);
    b.writeUInt32LE(ro, 1024 + 0x64);
    return b;
  };
  t.equal((await detect(sb(0, 0x2, 0x3))).kind, 'ext2');
  t.equal((await detect(sb(0x4, 0x2, 0x3))).kind, 'ext3');
  t.equal((await detect(sb(0x4, 0x2 | 0x40, 0x3))).kind, 'ext4', 'extents');
  t.equal((await detect(sb(0x4, 0x2, 0x400))).kind, 'ext4', 'metadata_csum');
  t.equal((await detect(sb(0, 0x8, 0))).kind, 'unknown', 'journal device');
});

t.test('volumes too small for a probe and implausible boot sectors are unknown, never a read past the volume', async (t) => {
  t.same(await detect(Buffer.alloc(0)), { kind: 'unknown' });
  t.same(await detect(Buffer.alloc(300, 0xff)), { kind: 'unknown' });
  const fat = Buffer.alloc(4096);
  fat.write('\xeb\x3c\x90mkfs.fat', 0, 'latin1');
  fat.writeUInt16LE(0xaa55, 510);
  t.same(await detect(fat), { kind: 'unknown' }, 'a jump and a signature but BytsPerSec 0');
});

/** The boot sector and bytes of a real NTFS / exFAT volume from the test disk. */
function volumeBytes(path: string, start: number, size: number): Buffer {
  const fd = openSync(path, 'r');
  const b = Buffer.alloc(size);
  readSync(fd, b, 0, size, start);
  closeSync(fd);
  return b;
}

t.test('NTFS boot-sector sizes are bounded: E_BOUND / E_NTFS_* from the label reader, a label-less ntfs from detection', async (t) => {
  const table = await tableOf(join(image('volumes'), 'gpt.raw'));
  const p3 = table.volumes.find((v) => v.name === 'p3')!;
  const vol = volumeBytes(join(image('volumes'), 'gpt.raw'), p3.start, p3.size);
  t.equal(await ntfsVolumeLabel(vol.subarray(0, 512), memRead(vol), vol.length), 'WINDATA');
  const cases: [string, (b: Buffer) => void, string, string][] = [
    ['cluster size', (b) => { b.writeUInt16LE(4096, 0x0b); b[0x0d] = 0xf0; }, 'E_BOUND', 'clusterSize'],
    ['record size', (b) => { b[0x40] = 0x7f; }, 'E_BOUND', 'ClustersPerMftRecord'],
    ['record size too small', (b) => { b[0x40] = 0xf8; }, 'E_NTFS_BOOT', 'ClustersPerMftRecord'],
    ['sector size', (b) => { b.writeUInt16LE(100, 0x0b); }, 'E_NTFS_BOOT', 'BytesPerSector'],
    ['MFT LCN', (b) => { b.writeBigUInt64LE(1n << 60n, 0x30); }, 'E_BOUND', 'MftLcn'],
  ];
  for (const [what, mutate, code, field] of cases) {
    const v = Buffer.from(vol);
    mutate(v);
    await t.rejects(ntfsVolumeLabel(v.subarray(0, 512), memRead(v), v.length), { code, data: { field } }, what);
    const d = await detect(v);
    t.equal(d.kind, 'ntfs', `${what}: still NTFS`);
    t.equal(d.label, undefined, `${what}: no label`);
  }
  // A torn $Volume record (the update sequence does not match) loses the label with E_NTFS_FIXUP.
  const bps = vol.readUInt16LE(0x0b), spc = vol[0x0d]!;
  const rec = Number(vol.readBigUInt64LE(0x30)) * bps * spc + 3 * 1024;
  const torn = Buffer.from(vol);
  torn[rec + 510] ^= 0xff;
  await t.rejects(ntfsVolumeLabel(torn.subarray(0, 512), memRead(torn), torn.length), { code: 'E_NTFS_FIXUP' });
  t.same(await detect(torn), { kind: 'ntfs', uuid: (await detect(vol)).uuid });
});

t.test('exFAT boot-sector shifts are bounded: E_EXFAT_BOOT / E_BOUND from the label reader', async (t) => {
  const table = await tableOf(join(image('volumes'), 'gpt.raw'));
  const p6 = table.volumes.find((v) => v.name === 'p6')!;
  const vol = volumeBytes(join(image('volumes'), 'gpt.raw'), p6.start, p6.size);
  t.equal(await exfatVolumeLabel(vol.subarray(0, 512), memRead(vol), vol.length), 'GPTEXFAT');
  const big = Buffer.from(vol);
  big[108] = 20;
  await t.rejects(exfatVolumeLabel(big.subarray(0, 512), memRead(big), big.length), { code: 'E_EXFAT_BOOT', data: { field: 'BytesPerSectorShift' } });
  const spc = Buffer.from(vol);
  spc[108] = 9;
  spc[109] = 30;
  await t.rejects(exfatVolumeLabel(spc.subarray(0, 512), memRead(spc), spc.length), { code: 'E_BOUND', data: { field: 'SectorsPerClusterShift' } });
  t.same((await detect(spc)).label, undefined);
  t.equal((await detect(spc)).kind, 'exfat');
});

t.test('mutated NTFS, exFAT, FAT and ext volume heads always end in a detection (seeded, 2000 cases)', async (t) => {
  const dir = image('volumes');
  const table = await tableOf(join(dir, 'mbr.raw'));
  const heads = table.volumes
    .filter((v) => v.filesystem.kind !== 'none')
    .map((v) => volumeBytes(join(dir, 'mbr.raw'), v.start, Math.min(v.size, 4 * 1024 * 1024)));
  const rand = prng(0xde7ec7);
  const kinds = new Set<string>();
  for (let c = 0; c < 2000; c++) {
    const v = Buffer.from(heads[c % heads.length]!);
    for (let i = 0, n = 1 + Math.floor(rand() * 8); i < n; i++) {
      const region = rand() < 0.7 ? 128 : 2048; // mostly the boot sector / BPB fields
      v[Math.floor(rand() * region)] = Math.floor(rand() * 256);
    }
    kinds.add((await detect(v)).kind);
  }
  t.ok(kinds.size > 1, `several outcomes (${[...kinds].join(', ')})`);
});
