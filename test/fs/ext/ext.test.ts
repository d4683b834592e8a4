/**
 * The ext reader against the kernel: every image of images/ext.sh is loop-mounted read-only and
 * walked side by side with our reader (test/conformance/fs.ts): names, types, sizes, modes, owners,
 * link counts, ns timestamps, symlink targets, rdev, xattrs and the sha256 of every file.
 */
import t from 'tap';
import { join } from 'node:path';
import { image } from '../../helpers/images.js';
import { checkAgainstTree } from '../../conformance/fs.js';
import { openExt } from '../../../src/fs/ext/ext.js';
import { mountRo, volumeOf } from './helpers.js';

const dir = image('ext');
/** The kernel cannot stat the non-UTF-8 name through a UTF-8 string path: names.test.ts covers it with Buffer paths. */

const cases: { img: string; kind: string; blockSize: number }[] = [
  { img: 'ext4.img', kind: 'ext4', blockSize: 4096 },
  { img: 'ext4-1k.img', kind: 'ext4', blockSize: 1024 },
  { img: 'ext2-1k.img', kind: 'ext2', blockSize: 1024 },
  { img: 'ext3.img', kind: 'ext3', blockSize: 2048 },
  { img: 'ext4-noextent.img', kind: 'ext4', blockSize: 4096 },
  { img: 'ext4-inline.img', kind: 'ext4', blockSize: 4096 },
  { img: 'ext4-metabg.img', kind: 'ext4', blockSize: 2048 },
  { img: 'ext4-sparse2.img', kind: 'ext4', blockSize: 4096 },
  { img: 'ext4-d.img', kind: 'ext4', blockSize: 4096 },
  { img: 'ext4-eainode.img', kind: 'ext4', blockSize: 4096 },
];

for (const c of cases) {
  t.test(`${c.img}: the tree equals the kernel's read-only mount`, async (t) => {
    const path = join(dir, c.img);
    const fs = await openExt(await volumeOf(t, path));
    t.equal(fs.info.kind, c.kind);
    t.equal(fs.info.blockSize, c.blockSize);
    const mnt = mountRo(t, path);
    const s = await checkAgainstTree(t, fs, mnt, { which: ['atime', 'mtime', 'ctime'] });
    t.ok(s.files > 20, `${s.files} files compared`);
    t.same(fs.warnings, [], 'no checksum warnings on a clean image');
    await fs.close();
  });
}
