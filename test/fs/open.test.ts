/**
 * openFilesystem picks the reader by the kind the volume layer detected, through a byte window
 * that cannot reach past its volume: checked on the sample VM (GPT: ext4 + NTFS behind a VMDK
 * chain) against the kernel's mount, on whole-disk ext2/ext3/NTFS images against The Sleuth Kit's
 * fls, on a journal that needs recovery against the kernel's replay, and with volumes no reader
 * handles (swap, an MBR extended partition, zeros) made by sfdisk and mkswap.
 */
import t, { type Test } from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { openDisk } from '../../src/disk/open.js';
import type { Disk } from '../../src/disk/types.js';
import { openFilesystem, volumeSource } from '../../src/fs/open.js';
import type { FileSystem } from '../../src/fs/types.js';
import { readVolumes, type Volume } from '../../src/volume/index.js';
import { SnapferryError } from '../../src/util/errors.js';
import { checkAgainstTree } from '../conformance/fs.js';
import { mountLoop as mount, mountRecovered } from '../helpers/mounts.js';
import { fingerprint, image, prng, qemuRaw, requireTool } from '../helpers/images.js';

requireTool('qemu-img', 'ntfs-3g', 'mount', 'umount', 'losetup', 'fls', 'blkid', 'sfdisk', 'mkswap');
if (process.getuid?.() !== 0) throw new Error('the kernel oracle needs root for loop mounts; this test does not skip');

const vm = image('sample-vm');
const top = join(vm, 'sample-000002.vmdk');
const extDir = image('ext');
const journalDir = image('ext-journal');
const ntfsDir = image('ntfs');
const sources = [join(vm, 'sample.vmdk'), join(vm, 'sample-000001.vmdk'), top, join(extDir, 'ext2-1k.img'), join(extDir, 'ext3.img'), join(journalDir, 'ext4-64.img'), join(ntfsDir, 'ntfs-4k.img')];
const tmp = mkdtempSync(join(tmpdir(), 'snapferry-open-'));
t.teardown(() => rmSync(tmp, { recursive: true, force: true }));

let before: Record<string, string>;
t.before(async () => {
  before = await fingerprint(sources);
});

async function disk(t: Test, path: string): Promise<Disk> {
  const d = await openDisk(path, {});
  t.teardown(() => d.close());
  return d;
}

async function open(t: Test, d: Disk, v: Volume, opts?: Parameters<typeof openFilesystem>[2]): Promise<FileSystem> {
  const fs = await openFilesystem(d, v, opts);
  t.teardown(() => fs.close());
  return fs;
}

/** The names in a directory as The Sleuth Kit's fls lists them (its $-metadata and $OrphanFiles left out, as the readers hide them). */
function flsNames(img: string, sectorOffset: number, inode?: number): string[] {
  const args = ['-o', String(sectorOffset), img, ...(inode !== undefined ? [String(inode)] : [])];
  const out = execFileSync('fls', args, { encoding: 'utf8' });
  // "r/r 22:\tname"; deleted entries carry a '*' before the address; streams are name:stream.
  const names = out
    .split('\n')
    .filter((l) => l.includes('\t') && !l.split('\t')[0]!.includes('*'))
    .map((l) => l.slice(l.indexOf('\t') + 1));
  return [...new Set(names.filter((n) => !n.startsWith('$') && !n.includes(':')))].sort();
}

async function rootNames(fs: FileSystem): Promise<string[]> {
  const names: string[] = [];
  for await (const e of fs.readdir(fs.rootIno)) names.push(e.name);
  return names.sort();
}

t.test('volumeSource is a window of the disk: reads are relative, never past its end, clipped at the disk end', async (t) => {
  const bytes = Buffer.alloc(64 * 1024);
  const rand = prng(7);
  for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(rand() * 256);
  const mem = {
    size: bytes.length,
    read: async (o: number, l: number) => Buffer.from(bytes.subarray(o, o + l)),
    readInto: async (b: Buffer, o: number) => void bytes.copy(b, 0, o, o + b.length),
  };
  const v = volumeSource(mem, 4096, 8192);
  t.equal(v.size, 8192);
  t.same(await v.read(0, 16), bytes.subarray(4096, 4112), 'offset 0 is the volume start');
  const into = Buffer.alloc(100);
  await v.readInto(into, 8092);
  t.same(into, bytes.subarray(4096 + 8092, 4096 + 8192), 'the last bytes of the window');
  await t.rejects(v.read(8190, 4), { code: 'E_TRUNCATED' }, 'a read that crosses the window end is refused');
  await t.rejects(v.readInto(Buffer.alloc(1), 8192), { code: 'E_TRUNCATED' });
  await t.rejects(v.read(-1, 1), { code: 'E_TRUNCATED' });
  const past = volumeSource(mem, 60 * 1024, 16 * 1024);
  t.equal(past.size, 4 * 1024, 'a volume running past the disk end is clipped to what the disk holds');
  t.throws(() => volumeSource(mem, -512, 10), { code: 'E_VOLUME_RANGE' });
  t.throws(() => volumeSource(mem, 0.5, 10), { code: 'E_VOLUME_RANGE' });
});

t.test('the sample VM p1 (ext4 behind a 3-deep VMDK chain) opens as ext4 and equals the kernel mount of qemu-img raw output', async (t) => {
  const d = await disk(t, top);
  const vols = (await readVolumes(d)).volumes;
  const p1 = vols.find((v) => v.name === 'p1')!;
  t.equal(p1.filesystem.kind, 'ext4');
  const fs = await open(t, d, p1);
  t.equal(fs.info.kind, 'ext4');
  t.equal(fs.info.label, 'guestroot');
  const raw = qemuRaw(top);
  const mnt = mount(t, raw, `ro,noload,offset=${p1.start},sizelimit=${p1.size}`);
  const s = await checkAgainstTree(t, fs, mnt, { inodes: true, which: ['atime', 'mtime', 'ctime'] });
  t.same(s.mismatches, [], 'every entry equals the kernel view');
  t.ok(s.files >= 40, `${s.files} files compared`);
});

t.test('whole-disk ext2 and ext3 images open with their own kind; the root equals fls and blkid', async (t) => {
  for (const [file, kind] of [['ext2-1k.img', 'ext2'], ['ext3.img', 'ext3']] as const) {
    const img = join(extDir, file);
    const d = await disk(t, img);
    const [whole] = (await readVolumes(d)).volumes;
    t.equal(whole!.name, 'whole');
    t.equal(whole!.filesystem.kind, kind);
    const fs = await open(t, d, whole!);
    t.equal(fs.info.kind, kind, `${file} is read as ${kind}`);
    t.equal(fs.info.uuid, execFileSync('blkid', ['-p', '-s', 'UUID', '-o', 'value', img], { encoding: 'utf8' }).trim(), `${file}: UUID as blkid reads it`);
    t.same(await rootNames(fs), flsNames(img, 0), `${file}: root names equal fls`);
  }
});

t.test('a whole-disk NTFS image opens as NTFS; the root equals ntfs-3g listing', async (t) => {
  const img = join(ntfsDir, 'ntfs-4k.img');
  const d = await disk(t, img);
  const [whole] = (await readVolumes(d)).volumes;
  t.equal(whole!.filesystem.kind, 'ntfs');
  const fs = await open(t, d, whole!, { cacheBytes: 4 << 20 });
  t.equal(fs.info.kind, 'ntfs');
  // Not fls here: it also lists stale index entries whose MFT records were reused (deleted fillers).
  const mnt = mkdtempSync(join(tmp, 'ntfs-'));
  execFileSync('ntfs-3g', ['-o', 'ro', img, mnt]);
  t.teardown(() => {
    execFileSync('umount', [mnt]);
    rmdirSync(mnt);
  });
  t.same(await rootNames(fs), readdirSync(mnt).sort(), 'root names equal those ntfs-3g lists (DOS aliases and $-files hidden)');
});

t.test('an ext4 journal that needs recovery is replayed by default, and read as it is with replayJournal: false', async (t) => {
  const img = join(journalDir, 'ext4-64.img');
  const d = await disk(t, img);
  const [whole] = (await readVolumes(d)).volumes;
  const replayed = mountRecovered(t, img);
  const asIs = mount(t, img, 'ro,noload');

  const fs = await open(t, d, whole!);
  t.match(fs.info.notes.join('\n'), /journal replayed: \d+ transactions, \d+ blocks/);
  const r = await checkAgainstTree(t, fs, replayed, { which: ['mtime', 'ctime'] });
  t.same(r.mismatches, [], 'with replay: the kernel view after its own recovery');

  const plain = await open(t, d, whole!, { replayJournal: false });
  t.match(plain.info.notes.join('\n'), /journal needs recovery; not replayed/);
  const p = await checkAgainstTree(t, plain, asIs, { which: ['mtime', 'ctime'] });
  t.same(p.mismatches, [], 'without replay: the kernel view with noload');
  const newdir = async (f: FileSystem) => f.lookup((await f.lookup((await f.lookup(f.rootIno, 'home'))!, 'bob'))!, 'newdir');
  t.not(await newdir(fs), null, 'the replayed view holds a directory made in a journaled transaction');
  t.equal(await newdir(plain), null, 'the unreplayed view does not');
});

t.test('volumes no reader handles are E_FS_UNSUPPORTED naming the volume and its kind (swap, extended, unknown)', async (t) => {
  const img = join(tmp, 'mbr.raw');
  execFileSync('truncate', ['-s', '8M', img]);
  execFileSync('sfdisk', ['-q', img], { input: 'label: dos\nstart=2048, size=4096, type=82\nstart=6144, size=8192, type=5\nstart=8192, size=4096, type=83\n' });
  const swap = join(tmp, 'swap.img');
  execFileSync('truncate', ['-s', '2M', swap]);
  execFileSync('mkswap', ['-q', swap]);
  execFileSync('dd', [`if=${swap}`, `of=${img}`, 'bs=512', 'seek=2048', 'conv=notrunc', 'status=none']);
  const blk = spawnSync('blkid', ['-p', '-O', String(2048 * 512), '-s', 'TYPE', '-o', 'value', img], { encoding: 'utf8' });
  t.equal(blk.stdout.trim(), 'swap', 'blkid sees swap in p1');

  const d = await disk(t, img);
  const vols = (await readVolumes(d)).volumes;
  t.same(vols.map((v) => [v.name, v.filesystem.kind]), [['p1', 'swap'], ['p2', 'none'], ['p5', 'unknown']]);
  for (const v of vols) {
    const err = await openFilesystem(d, v).then(
      () => null,
      (e: unknown) => e,
    );
    t.ok(err instanceof SnapferryError, `${v.name}: refused with a typed error`);
    const e = err as SnapferryError;
    t.equal(e.code, 'E_FS_UNSUPPORTED');
    t.equal(e.exitCode, 5, 'exit code 5: unsupported');
    t.equal(e.data.volume, v.name);
    t.equal(e.data.kind, v.filesystem.kind);
    t.match(e.message, new RegExp(`^${v.name}: `));
  }
  writeFileSync(join(tmp, 'zeros.raw'), Buffer.alloc(1 << 20));
  const z = await disk(t, join(tmp, 'zeros.raw'));
  const [whole] = (await readVolumes(z)).volumes;
  await t.rejects(openFilesystem(z, whole!), { code: 'E_FS_UNSUPPORTED', data: { volume: 'whole', kind: 'unknown' } });
});

t.test('no source file changed', async (t) => {
  t.same(await fingerprint(sources), before);
});
