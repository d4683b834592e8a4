/**
 * The NTFS reader against ntfs-3g (read-only FUSE mount) on volumes mkntfs made at 512 B, 4 KiB
 * and 64 KiB clusters and ntfs-3g populated (images/ntfs.sh): the conformance walk compares every
 * entry's name, type, mode, owner, link count, times (100 ns), size, symlink target, sha256 and
 * xattrs. The Sleuth Kit (fls/icat), an independent reader, cross-checks names and bytes.
 */
import t, { type Test } from 'tap';
import { createHash } from 'node:crypto';
import { execFileSync, spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { tmpdir } from 'node:os';
import { copyFileSync, lstatSync, mkdtempSync, rmdirSync, rmSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { openNtfs, type NtfsFileSystem } from '../../../src/fs/ntfs/ntfs.js';
import { resolvePath } from '../../../src/fs/path.js';
import { checkAgainstTree } from '../../conformance/fs.js';
import { requireTool } from '../../helpers/images.js';
import { IMAGES, ntfsImages, volumeOf, volumeOfBuffer, mountNtfs3g } from './helpers.js';

const dir = ntfsImages();
requireTool('fls', 'icat', 'ils', 'blkid');

async function open(t: Test, img: string, mountPoint?: string): Promise<NtfsFileSystem> {
  const vol = await volumeOf(img);
  const fs = await openNtfs(vol, mountPoint === undefined ? {} : { mountPoint });
  t.teardown(async () => {
    await fs.close();
    await vol.close();
  });
  return fs;
}

for (const name of IMAGES) {
  const img = join(dir, name);
  t.test(`${name}: every entry equals ntfs-3g's view`, async (t) => {
    const mnt = mountNtfs3g(t, img);
    const fs = await open(t, img, mnt);
    // The WOF stub: ntfs-3g without its system-compression plugin shows a symlink "unsupported
    // reparse tag 0x80000017"; we list it as the file it is. It has no WofCompressedData stream, so
    // its reads are refused (E_NTFS_WOF, bounds.test.ts); readable WOF files: wof.test.ts.
    const s = await checkAgainstTree(t, fs, mnt, { times: 'ns', which: ['atime', 'mtime', 'ctime'], ignore: (p) => p === '/links/wof-stub.bin' });
    t.ok(s.files > 2100, `walked the big directory too (${s.files} files)`);
    t.ok(s.symlinks >= 13, `symlinks, junctions and NT symlinks compared (${s.symlinks})`);
    t.ok(s.other >= 3, `FIFO and devices compared (${s.other})`);
    t.ok(s.xattrs >= 4, `named streams compared as xattrs (${s.xattrs})`);
  });

  t.test(`${name}: The Sleuth Kit lists the same user files and reads the same bytes`, async (t) => {
    const fs = await open(t, img);
    // fls -r -p -u: allocated entries with full paths; drop system files, DOS names are not listed by fls either
    const out = execFileSync('fls', ['-r', '-p', '-u', img], { encoding: 'utf8', maxBuffer: 1 << 28 });
    // fls also recovers names from index slack whose records are free (deleted files): ils -a says which records are in use.
    const allocated = new Set(execFileSync('ils', ['-a', img], { encoding: 'utf8', maxBuffer: 1 << 26 }).split('\n').map((l) => Number(l.split('|')[0])));
    const tsk = new Map<string, number>();
    for (const line of out.split('\n')) {
      // "r/r 64-128-2:\tpath"; deleted entries carry a "*", ADS lines a ":stream" suffix
      const m = /^[-a-z]\/[-a-z] (\d+)-\d+-\d+:\t(.*)$/.exec(line);
      if (!m) continue;
      const path = m[2]!;
      if (path.split('/').some((c) => c.startsWith('$')) || path.includes(':')) continue;
      if (allocated.has(Number(m[1]))) tsk.set('/' + path, Number(m[1]));
    }
    let checked = 0;
    for (const [path, ino] of tsk) {
      const ours = await resolvePath(fs, path);
      if (ours !== ino) {
        t.equal(ours, ino, `${path}: same MFT record as fls`);
        continue;
      }
      checked++;
    }
    t.ok(checked > 2100, `every path fls lists resolves to the same record (${checked})`);
    for (const p of ['/big.bin', '/fragmented.bin', '/compressed/text.txt', '/compressed/mixed.bin', '/sparse.bin', '/a/b/c/d/e/f/deep.bin']) {
      const ino = await resolvePath(fs, p);
      const st = await fs.stat(ino);
      const ours = createHash('sha256').update(await fs.read(ino, 0, st.size)).digest('hex');
      const theirs = createHash('sha256').update(execFileSync('icat', [img, String(ino)], { maxBuffer: 1 << 28 })).digest('hex');
      t.equal(ours, theirs, `${p}: icat reads the same bytes`);
    }
  });
}

t.test('volume facts agree with blkid and the mkntfs label', async (t) => {
  for (const name of IMAGES) {
    const img = join(dir, name);
    const fs = await open(t, img);
    const uuid = execFileSync('blkid', ['-p', '-o', 'value', '-s', 'UUID', img], { encoding: 'utf8' }).trim();
    const label = execFileSync('blkid', ['-p', '-o', 'value', '-s', 'LABEL', img], { encoding: 'utf8' }).trim();
    t.equal(fs.info.uuid, uuid, `${name}: UUID is blkid's`);
    t.equal(fs.info.label, label, `${name}: label is blkid's`);
    t.equal(fs.info.blockSize, Number(/ntfs-(\d+)(k?)/.exec(name)![1]) * (name.includes('k.') ? 1024 : 1), `${name}: cluster size`);
    t.same(fs.info.notes, [], `${name}: clean, not hibernated`);
    t.equal(`${fs.ntfs.majorVersion}.${fs.ntfs.minorVersion}`, '3.1', `${name}: NTFS 3.1`);
  }
});

t.test('the images hold the features the walk is meant to prove (per istat, not our reader)', async (t) => {
  for (const name of ['ntfs-512.img', 'ntfs-4k.img']) {
    const img = join(dir, name);
    const istat = (path: string) => execFileSync('istat', [img, execFileSync('ifind', ['-n', path, img], { encoding: 'utf8' }).trim()], { encoding: 'utf8' });
    t.match(istat('/a/many-links.bin'), /\$ATTRIBUTE_LIST/, `${name}: 41 hard links overflow into an attribute list`);
    t.match(istat('/fragmented.bin'), /\$ATTRIBUTE_LIST/, `${name}: the fragmented file's runlist spans extension records`);
    t.match(istat('/compressed/text.txt'), /Non-Resident, Compressed/, `${name}: LZNT1-compressed data`);
    t.match(istat('/sparse.bin'), /Sparse/, `${name}: a sparse file`);
    t.equal((istat('/names/A long file name.document').match(/^Name: /gm) ?? []).length, 2, `${name}: a Win32 name and its DOS alias`);
    t.match(istat('/many'), /\$INDEX_ALLOCATION/, `${name}: the big directory's index has INDX blocks below its root`);
  }
});

t.test('lookup: exact and POSIX names as on ntfs-3g; Win32 and DOS names also ignoring case, through $UpCase', async (t) => {
  const img = join(dir, 'ntfs-4k.img');
  const mnt = mountNtfs3g(t, img);
  const fs = await open(t, img, mnt);
  const inoOnMount = (p: string): number | null => {
    try {
      return Number(lstatSync(join(mnt, p)).ino); // ntfs-3g's st_ino is the MFT record number
    } catch {
      return null;
    }
  };
  const ours = async (p: string) => fs.lookup(await resolvePath(fs, p.includes('/') ? p.slice(0, p.lastIndexOf('/')) : '/'), p.slice(p.lastIndexOf('/') + 1));
  // ntfs-3g (without ignore_case) matches exactly; so do we for these. The $-files are hidden from
  // listings but reachable by name on ntfs-3g, and so on ours.
  for (const p of ['names/Case.txt', 'names/case.txt', 'names/CASE.TXT', 'names/cAsE.TxT', 'names/A long file name.document', 'names/ALONGF~1.DOC',
    'names/日本語のファイル名.txt', 'names/ünïcödé', 'names/Ünïcödé', 'names/ΕΛΛΗΝΙΚΆ ΑΡΧΕΊΑ', 'README.TXT', 'readme.txt', 'nonexistent', '$MFT', '$Volume', '$Extend', '$Extend/$Reparse']) {
    const theirs = inoOnMount(p);
    t.equal(await ours(p), theirs, `${p}: ${theirs === null ? 'not found' : `record ${theirs}`}, as on ntfs-3g`);
  }
  // The contract is Windows' lookup: names outside the POSIX namespace match ignoring case, by the
  // volume's $UpCase (here the Win32 name ntfs-3g made when given a DOS alias, and the alias itself).
  const target = inoOnMount('names/A long file name.document');
  t.ok(target !== null, 'the Win32-named file exists');
  for (const p of ['names/a LONG file NAME.DOCUMENT', 'names/A LONG FILE NAME.DOCUMENT', 'names/alongf~1.doc']) t.equal(await ours(p), target, `${p}: the Win32/DOS-named file, ignoring case`);
  t.equal(await fs.lookup(fs.rootIno, '.'), null, "'.' is not a name");
});

t.test('NTFS attributes and reparse data as ntfs-3g exposes them (system.ntfs_attrib_be, system.ntfs_reparse_data)', async (t) => {
  const img = join(dir, 'ntfs-4k.img');
  const mnt = mountNtfs3g(t, img);
  const fs = await open(t, img, mnt);
  const getfattr = (p: string, n: string) => execFileSync('getfattr', ['-h', '--only-values', '-n', n, join(mnt, p)]);
  for (const p of ['readme.txt', 'compressed/text.txt', 'compressed', 'sparse.bin', 'links/abs', 'links/junction', 'links/ntsym-rel', 'a']) {
    const ino = await resolvePath(fs, p);
    t.same([...(await fs.getxattr(ino, 'system.ntfs_attrib_be'))], [...getfattr(p, 'system.ntfs_attrib_be')], `${p}: system.ntfs_attrib_be`);
    const st = await fs.stat(ino);
    t.equal(st.ntfs!.dosAttributes, getfattr(p, 'system.ntfs_attrib_be').readUInt32BE(0) & ~0x10, `${p}: Stat.ntfs.dosAttributes`);
  }
  for (const p of ['links/junction', 'links/ntsym-rel', 'links/ntsym-missing']) {
    const ino = await resolvePath(fs, p);
    t.same((await fs.getxattr(ino, 'system.ntfs_reparse_data')).toString('hex'), getfattr(p, 'system.ntfs_reparse_data').toString('hex'), `${p}: the raw reparse point`);
  }
  const text = await fs.stat(await resolvePath(fs, 'compressed/text.txt'));
  t.ok(text.ntfs!.compressed && !text.ntfs!.sparse, 'compressed flag');
  t.ok((await fs.stat(await resolvePath(fs, 'sparse.bin'))).ntfs!.sparse, 'sparse flag');
  t.same((await fs.stat(await resolvePath(fs, 'ads.txt'))).ntfs!.streams.sort(), ['Zone.Identifier', 'big', 'small'], 'Stat.ntfs.streams');
  const ads = await resolvePath(fs, 'ads.txt');
  t.same(await fs.read(ads, 5, 100, 'small'), Buffer.from('ll stream'), 'read() of a named stream, from an offset, clipped at its end');
  await t.rejects(fs.read(ads, 0, 1, 'nope'), { code: 'E_NTFS_NO_STREAM' });
  await t.rejects(fs.read(await resolvePath(fs, 'a'), 0, 1), { code: 'E_NTFS_NOT_FILE' });
  await t.rejects(fs.getxattr(ads, 'user.nope'), { code: 'E_NTFS_NO_XATTR' });
});

t.test('extents agree with the bytes: holes read as zeros, data extents hold the file at their physical offset', async (t) => {
  const img = join(dir, 'ntfs-4k.img');
  const fs = await open(t, img);
  const raw = await readFile(img);
  for (const p of ['sparse.bin', 'fragmented.bin', 'all-hole.bin', 'big.bin', 'compressed/sparse-in-compressed.bin']) {
    const ino = await resolvePath(fs, p);
    const st = await fs.stat(ino);
    const data = await fs.read(ino, 0, st.size);
    let holes = 0;
    let datas = 0;
    let covered = 0;
    for await (const e of fs.extents(ino)) {
      t.equal(e.offset, covered, `${p}: extents tile the file (at ${e.offset})`);
      covered = e.offset + e.length;
      const part = data.subarray(e.offset, e.offset + e.length);
      if (e.state === 'hole') {
        holes++;
        t.ok(part.every((b) => b === 0), `${p}: hole at ${e.offset}+${e.length} reads as zeros`);
      } else if (e.physical !== undefined) {
        datas++;
        t.ok(raw.subarray(e.physical, e.physical + e.length).equals(part), `${p}: data at ${e.offset}+${e.length} is at byte ${e.physical} of the volume`);
      }
    }
    t.equal(covered, st.size, `${p}: extents cover the whole file`);
    t.comment(`${p}: ${holes} holes, ${datas} mapped data extents`);
  }
});

t.test("the mount's paths agree with the full ones: stat 'posix', readInto a used buffer, MFT blocks evicted and reused under concurrent stats", async (t) => {
  for (const name of ['ntfs-512.img', 'ntfs-4k.img'] as const) {
    const img = join(dir, name);
    const full = await open(t, img);
    // 64 KiB of cache: two MFT blocks at a time, so concurrent stats evict and refill the buffers
    // other stats are reading from
    const vol = await volumeOf(img);
    const small = await openNtfs(vol, { cacheBytes: 64 * 1024 });
    t.teardown(async () => {
      await small.close();
      await vol.close();
    });
    let entries = 0;
    let files = 0;
    let ranges = 0;
    const walk = async (dirIno: number, path: string): Promise<void> => {
      const list: { name: string; ino: number; type: string }[] = [];
      for await (const e of small.readdir(dirIno)) list.push({ name: e.name, ino: e.ino, type: e.type });
      const expected: { name: string; ino: number; type: string }[] = [];
      for await (const e of full.readdir(dirIno)) expected.push({ name: e.name, ino: e.ino, type: e.type });
      t.same(list, expected, `${name}:${path}: the same listing with a 64 KiB cache`);
      const posix = await Promise.all(list.map((e) => small.stat(e.ino, 'posix').catch((err: { code?: string }) => err.code ?? 'error')));
      for (const [i, e] of list.entries()) {
        entries++;
        const want = await full.stat(e.ino).catch((err: { code?: string }) => err.code ?? 'error');
        const got = posix[i]!;
        if (typeof want === 'string' || typeof got === 'string') {
          t.equal(got, want, `${name}:${path}/${e.name}: the same error`);
          continue;
        }
        const { ntfs: _ntfs, birthtimeNs: _birth, ...wantPosix } = want;
        t.same(got, wantPosix, `${name}:${path}/${e.name}: stat 'posix' is stat's POSIX fields`);
        t.equal(got.ntfs, undefined, `${name}:${path}/${e.name}: stat 'posix' leaves the NTFS facts out`);
        if (got.type === 'dir') await walk(e.ino, `${path}/${e.name}`);
        else if (got.type === 'file' && !/wof-stub/.test(e.name)) {
          files++;
          for (const [offset, length] of [
            [0, 65536],
            [Math.floor(got.size / 3), 10000],
            [Math.max(0, got.size - 5000), 20000],
            [got.size + 1, 100],
          ] as const) {
            const wantBytes = await full.read(e.ino, offset, length).catch((err: { code?: string }) => err.code ?? 'error');
            const out = Buffer.alloc(length, 0xa5);
            const n = await small.readInto(e.ino, out, offset).catch((err: { code?: string }) => err.code ?? 'error');
            if (typeof wantBytes === 'string' || typeof n === 'string') {
              t.equal(n, wantBytes, `${name}:${path}/${e.name}: readInto fails as read does`);
              continue;
            }
            ranges++;
            if (n !== wantBytes.length || !out.subarray(0, n).equals(wantBytes)) t.fail(`${name}:${path}/${e.name}: readInto ${offset}+${length} gives read's ${wantBytes.length} bytes`);
          }
        }
      }
    };
    await walk(full.rootIno, '');
    t.ok(entries > 2100 && files > 2000, `${name}: ${entries} entries, ${files} files compared`);
    t.pass(`${name}: ${ranges} ranges read into a buffer full of 0xa5 equal read()`);
  }
});

t.test("owner SIDs equal the owner in ntfs-3g's system.ntfs_acl", async (t) => {
  const img = join(dir, 'ntfs-4k.img');
  const mnt = mountNtfs3g(t, img);
  const fs = await open(t, img, mnt);
  // SECURITY_DESCRIPTOR_RELATIVE: owner SID at the u32 offset 4; SID = revision, count, 6-byte BE authority, count u32 LE
  const ownerOf = (sd: Buffer) => {
    const o = sd.readUInt32LE(4);
    const n = sd[o + 1]!;
    return `S-${sd[o]}-${sd.readUIntBE(o + 2, 6)}` + Array.from({ length: n }, (_, i) => `-${sd.readUInt32LE(o + 8 + 4 * i)}`).join('');
  };
  for (const p of ['', 'readme.txt', 'a', 'many', 'links/junction', 'compressed/text.txt', 'names/日本語のファイル名.txt']) {
    const sd = execFileSync('getfattr', ['-h', '--only-values', '-n', 'system.ntfs_acl', join(mnt, p)]);
    t.equal((await fs.stat(await resolvePath(fs, p))).ntfs!.ownerSid, ownerOf(sd), `/${p}: owner ${ownerOf(sd)}`);
  }
});

t.test('a hibernated Windows is read, not refused, and info says so (ntfs-3g refuses it read-write)', async (t) => {
  const copy = join(mkdtempSync(join(tmpdir(), 'ntfs-hiber-')), 'copy.img');
  copyFileSync(join(dir, 'ntfs-hiber.img'), copy); // ntfs-3g is asked for read-write: never on the cached image
  t.teardown(() => rmSync(dirname(copy), { recursive: true, force: true }));
  const mnt = mkdtempSync(join(tmpdir(), 'ntfs-hiber-mnt-'));
  const r = spawnSync('ntfs-3g', [copy, mnt], { encoding: 'utf8' });
  spawnSync('umount', [mnt]);
  rmdirSync(mnt);
  t.match(r.stderr, /Windows is hibernated/, 'ntfs-3g sees the hibernated volume');
  const fs = await open(t, copy);
  t.same(fs.info.notes, ['hibernated'], 'noted');
  t.equal((await fs.read((await fs.lookup(fs.rootIno, 'document.txt'))!, 0, 100)).toString(), 'still here\n', 'and read');
});

t.test('a dirty volume is read and noted "dirty" (VOLUME_INFORMATION.flags)', async (t) => {
  const raw = await readFile(join(dir, 'ntfs-4k.img'));
  const probe = await openNtfs(volumeOfBuffer(raw));
  // $Volume (record 3): set VOLUME_IS_DIRTY in its VOLUME_INFORMATION, keeping the record's fixups intact
  const rs = probe.geometry.mftRecordSize;
  const off = probe.geometry.mftLcn * probe.geometry.clusterSize + 3 * rs;
  const rec = raw.subarray(off, off + rs);
  let pos = rec.readUInt16LE(0x14);
  while (rec.readUInt32LE(pos) !== 0x70) pos += rec.readUInt32LE(pos + 4);
  const flagsAt = pos + rec.readUInt16LE(pos + 0x14) + 0x0a;
  t.ok(flagsAt % 512 < 510, 'the flags are not under a fixup');
  rec.writeUInt16LE(rec.readUInt16LE(flagsAt) | 1, flagsAt);
  const fs = await openNtfs(volumeOfBuffer(raw));
  t.same(fs.info.notes, ['dirty'], 'noted');
  t.ok((await fs.stat(await resolvePath(fs, '/big.bin'))).size === 3000000, 'and read');
});
