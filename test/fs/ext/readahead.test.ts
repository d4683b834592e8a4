/**
 * readBlock's read ahead (an inode table read in order, as a walk of files made in order reads
 * it): fewer reads, none longer than READ_AHEAD_BYTES, and the same tree when a longer read fails
 * (each block is then read alone). Inodes taken at random read one block each: the mount's
 * 200,000-entry listing (test/mount/wide.test.ts) holds that to its peak RSS bound. What the tree must equal is checked against the kernel elsewhere (ext.test.ts,
 * features.test.ts); here it must equal the tree read one block at a time.
 */
import t from 'tap';
import { join } from 'node:path';
import { image } from '../../helpers/images.js';
import { openExt, READ_AHEAD_BYTES, type ExtFileSystem } from '../../../src/fs/ext/ext.js';
import type { VolumeSource } from '../../../src/fs/types.js';
import { volumeOf } from './helpers.js';

const dir = image('ext');

/** Every entry below the root: path, type, size, mode, mtime, and the first bytes of each file. */
async function walk(fs: ExtFileSystem): Promise<string[]> {
  const out: string[] = [];
  const stack: Array<[number, string]> = [[fs.rootIno, '']];
  while (stack.length) {
    const [ino, path] = stack.pop()!;
    for await (const e of fs.readdir(ino)) {
      const p = `${path}/${e.name}`;
      const st = await fs.stat(e.ino);
      let head = '';
      if (st.type === 'file') head = (await fs.read(e.ino, 0, 64)).toString('hex');
      out.push(`${p} ${st.type} ${st.size} ${st.mode.toString(8)} ${st.mtimeNs} ${head}`);
      if (st.type === 'dir') stack.push([e.ino, p]);
    }
  }
  return out.sort();
}

function counting(v: VolumeSource, refuseLongerThan = Infinity): { volume: VolumeSource; reads: number[] } {
  const reads: number[] = [];
  const refuse = (length: number): void => {
    reads.push(length);
    if (length > refuseLongerThan) throw Object.assign(new Error(`refused: ${length} bytes`), { code: 'EIO' });
  };
  return {
    reads,
    volume: {
      size: v.size,
      read: async (o, l) => (refuse(l), v.read(o, l)),
      readInto: async (b, o) => (refuse(b.length), v.readInto(b, o)),
    },
  };
}

for (const img of ['ext4.img', 'ext2-1k.img', 'ext4-1k.img']) {
  t.test(`${img}: blocks read ahead, bounded, and the same tree when a longer read fails`, async (t) => {
    const path = join(dir, img);
    const plain = counting(await volumeOf(t, path));
    const fs = await openExt(plain.volume);
    const bs = fs.blockSize;
    const tree = await walk(fs);
    await fs.close();
    t.ok(tree.length > 40, `${tree.length} entries`);
    const metadataReads = plain.reads.filter((l) => l % bs === 0 && l > bs);
    t.ok(metadataReads.length > 0, `${metadataReads.length} reads of several blocks at once`);
    t.ok(Math.max(...plain.reads) <= READ_AHEAD_BYTES, `no read is longer than ${READ_AHEAD_BYTES} bytes (the walk reads 64 bytes of each file)`);

    const single = counting(await volumeOf(t, path), bs);
    const fs1 = await openExt(single.volume);
    // file data reads may be longer than a block: only the metadata read ahead must fall back
    const tree1 = await walk(fs1).catch((e: Error) => [`failed: ${e.message}`]);
    await fs1.close();
    t.same(tree1, tree, 'a volume that refuses reads longer than a block gives the same tree');
    t.ok(single.reads.some((l) => l > bs), 'the read ahead was tried there, and refused');
  });
}
