/**
 * A CI-sized mutation fuzzer over the metadata of a real NTFS volume: boot sector, MFT records
 * (system files and user files, base and extension), INDX blocks of a large directory, $UpCase and
 * the runlists inside them. Every case opens the mutated volume and walks it (stat, readdir,
 * readlink, listxattr, reads); the only acceptable failures are SnapferryErrors. A non-typed error
 * is a crash, a case that does not finish in time is a hang, and either fails the test with the
 * seed that reproduces it.
 */
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { openNtfs, type NtfsFileSystem } from '../../../src/fs/ntfs/ntfs.js';
import { SnapferryError } from '../../../src/util/errors.js';
import { resolvePath } from '../../../src/fs/path.js';
import { AT } from '../../../src/fs/ntfs/structs.js';
import type { VolumeSource } from '../../../src/fs/types.js';
import { prng } from '../../helpers/images.js';
import { ntfsImages, volumeOfBuffer } from './helpers.js';

const CASES = Number(process.env.NTFS_FUZZ_CASES ?? 300);
const base = readFileSync(join(ntfsImages(), 'ntfs-4k.img'));

/** The original bytes with a few patches laid over them: a case never copies the 48 MiB image. */
function mutated(patches: Map<number, number>): VolumeSource {
  const patch = (out: Buffer, offset: number) => {
    for (const [at, v] of patches) if (at >= offset && at < offset + out.length) out[at - offset] = v;
  };
  const inner = volumeOfBuffer(base);
  return {
    size: base.length,
    read: async (o, l) => {
      const b = await inner.read(o, l);
      patch(b, o);
      return b;
    },
    readInto: async (b, o) => {
      await inner.readInto(b, o);
      patch(b, o);
    },
  };
}

async function walk(fs: NtfsFileSystem, budget: { entries: number; typed: number }): Promise<void> {
  const stack = [fs.rootIno];
  const seen = new Set<number>();
  while (stack.length && budget.entries > 0) {
    const dir = stack.pop()!;
    if (seen.has(dir)) continue;
    seen.add(dir);
    try {
      for await (const e of fs.readdir(dir)) {
        if (--budget.entries <= 0) break;
        try {
          const st = await fs.stat(e.ino);
          await fs.listxattr(e.ino);
          if (st.type === 'dir') stack.push(e.ino);
          else if (st.type === 'symlink') await fs.readlink(e.ino);
          else if (st.type === 'file') {
            await fs.read(e.ino, 0, 16384);
            await fs.read(e.ino, Math.max(0, st.size - 5000), 10000);
            for await (const x of fs.extents(e.ino)) void x;
          }
          for (const s of st.ntfs?.streams ?? []) await fs.read(e.ino, 0, 4096, s);
        } catch (err) {
          if (!(err instanceof SnapferryError)) throw err;
          budget.typed++;
        }
      }
    } catch (err) {
      if (!(err instanceof SnapferryError)) throw err;
      budget.typed++;
    }
  }
}

t.test(`${CASES} mutated volumes: typed errors only, no crash, no hang`, async (t) => {
  const probe = await openNtfs(volumeOfBuffer(base));
  const g = probe.geometry;
  const internals = probe as unknown as { mft: { inode(n: number): Promise<{ stream(t: number, n: string): { runs: { lcn: number | null; length: number }[] } | undefined }> } };
  // Regions worth mutating: where the metadata lives, found on the intact volume.
  const regions: [number, number][] = [[0, 512]];
  const rec = (n: number): [number, number] => [g.mftLcn * g.clusterSize + n * g.mftRecordSize, g.mftRecordSize];
  for (const n of [0, 3, 5, 6, 9, 10]) regions.push(rec(n));
  for (const p of ['/many', '/a/many-links.bin', '/fragmented.bin', '/compressed/text.txt', '/links/junction', '/links/abs', '/ads.txt', '/sparse.bin', '/names']) {
    const ino = await resolvePath(probe, p);
    regions.push(rec(ino));
    const inode = await internals.mft.inode(ino);
    for (const [type, name] of [[AT.INDEX_ALLOCATION, '$I30'], [AT.ATTRIBUTE_LIST, '']] as const) {
      const s = inode.stream(type, name);
      for (const r of s?.runs ?? []) if (r.lcn !== null) regions.push([r.lcn * g.clusterSize, Math.min(r.length * g.clusterSize, 16384)]);
    }
  }
  for (let n = 2180; n < 2400; n += 37) regions.push(rec(n)); // extension records and their neighbours
  const upcase = (await internals.mft.inode(10)).stream(AT.DATA, '')!.runs[0]!;
  regions.push([upcase.lcn! * g.clusterSize, 4096]);

  const crashes: string[] = [];
  let typed = 0;
  const budget = { entries: 0, typed: 0 };
  const started = Date.now();
  for (let c = 0; c < CASES; c++) {
    // xorshift's first outputs follow its seed closely: spread the seeds and warm it up
    const rnd = prng(Math.imul(c + 1, 0x9e3779b1) ^ 0x5eed);
    for (let i = 0; i < 4; i++) rnd();
    const patches = new Map<number, number>();
    const [start, len] = regions[Math.floor(rnd() * regions.length)]!;
    const n = 1 + Math.floor(rnd() * 12);
    for (let i = 0; i < n; i++) {
      const at = start + Math.floor(rnd() * len);
      const r = rnd();
      // bit flips, extremes and random bytes: sizes and offsets near their limits are the interesting ones
      patches.set(at, r < 0.4 ? base[at]! ^ (1 << Math.floor(rnd() * 8)) : r < 0.6 ? 0xff : r < 0.7 ? 0 : Math.floor(rnd() * 256));
    }
    const run = (async () => {
      const fs = await openNtfs(mutated(patches), { cacheBytes: 4 << 20 });
      budget.entries = 400;
      await walk(fs, budget);
    })();
    let timer: NodeJS.Timeout | undefined;
    const hang = new Promise<'hang'>((res) => (timer = setTimeout(() => res('hang'), 15000)));
    try {
      const r = await Promise.race([run.then(() => 'ok' as const), hang]);
      if (r === 'hang') crashes.push(`case ${c}: hang (region ${start}+${len})`);
    } catch (err) {
      if (err instanceof SnapferryError) typed++;
      else crashes.push(`case ${c}: ${(err as Error).stack?.split('\n').slice(0, 3).join(' | ')}`);
    } finally {
      clearTimeout(timer);
    }
  }
  t.same(crashes, [], `no crash or hang in ${CASES} cases (${typed} refused at open, ${budget.typed} typed errors while walking; ${((Date.now() - started) / 1000).toFixed(1)} s)`);
});
