/**
 * Readers are shared by concurrent consumers (export's parallel lanes, FUSE, backup): many reads
 * in flight on one Disk must each get the right bytes. 2,000 random reads per image, 32 at a time,
 * against qemu's raw output, on every reader kind (hosted sparse, streamOptimized, chains, split
 * extents, COWD, SEsparse), with a small cache so that evictions happen while reads are in flight.
 */
import t from 'tap';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { openDisk } from '../../src/disk/open.js';
import { image, prng, qemuRaw } from '../helpers/images.js';

const cases: [string, string][] = [
  ['vmdk-sparse', 'scattered.vmdk'],
  ['vmdk-sparse', 'stream.vmdk'],
  ['vmdk-chains', 'snap3.vmdk'],
  ['vmdk-chains', 'twoGbMaxExtentSparse.vmdk'],
  ['vmdk-cowd', 'snap2.vmdk'],
  ['vmdk-sesparse', 'snap2.vmdk'],
];

for (const [script, file] of cases) {
  t.test(`${script}/${file}: 2,000 concurrent random reads equal qemu's bytes`, async (t) => {
    const path = join(image(script), file);
    const raw = await open(qemuRaw(path), 'r');
    const disk = await openDisk(path, { cacheBytes: 1 << 20 });
    t.teardown(async () => {
      await disk.close();
      await raw.close();
    });
    const rand = prng(4242);
    let bad: string | null = null;
    for (let batch = 0; batch < 2000 / 32 && !bad; batch++) {
      await Promise.all(
        Array.from({ length: 32 }, async () => {
          const length = 1 + Math.floor(rand() * 200_000);
          const offset = Math.floor(rand() * (disk.size - length));
          const [got, want] = await Promise.all([disk.read(offset, length), raw.read(Buffer.alloc(length), 0, length, offset).then((r) => r.buffer)]);
          if (!got.equals(want)) bad ??= `${offset}+${length}`;
        }),
      );
    }
    t.equal(bad, null, 'no concurrent read returned wrong bytes');
  });
}
