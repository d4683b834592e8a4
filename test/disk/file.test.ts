/**
 * The read-only file source's read-ahead (src/disk/file.ts): runs of small forward reads are served
 * from windows read whole, reads that jump about go straight to the file, and either way every read
 * returns the file's bytes. Checked against node:fs reads of the same file, with reads in flight
 * at once (as backup's prefetch and FUSE's reader threads make them), at the file's end, and for a
 * pattern that must not read windows at all.
 */
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openReadOnly, READAHEAD } from '../../src/disk/file.js';
import { prng } from '../helpers/images.js';

const dir = mkdtempSync(join(tmpdir(), 'sf-file-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
// not a multiple of the window or of 4 KiB: the last window is short
const size = 5 * READAHEAD.window + 12345;
const path = join(dir, 'data.bin');
writeFileSync(path, randomBytes(size));
const truth = readFileSync(path);

type Stats = { served: number; windows: number };
const statsOf = (s: object): Stats => (s as { readahead: Stats }).readahead;

t.test('a forward run of small reads is served from windows, byte-exact, up to the last byte', async (t) => {
  const src = await openReadOnly(path);
  t.teardown(() => src.close());
  let pos = 0;
  let n = 0;
  while (pos < size) {
    const len = Math.min(size - pos, 200 + ((n * 7919) % 9000));
    const b = await src.read(pos, len);
    if (!b.equals(truth.subarray(pos, pos + len))) t.fail(`read ${n} at ${pos}+${len} differs`);
    pos += len + ((n % 3) * 4096); // small forward gaps, as between files
    n++;
  }
  const st = statsOf(src);
  t.ok(st.served > n * 0.9, `most reads served from windows (${st.served} of ${n})`);
  t.ok(st.windows <= Math.ceil(size / READAHEAD.window) + 2, `about one window per ${READAHEAD.window} bytes (${st.windows})`);
});

t.test('in a forward run the next window is read while one serves, and a read across the two is served from both', async (t) => {
  const src = await openReadOnly(path);
  t.teardown(() => src.close());
  for (const pos of [0, 4096, 8192]) await src.read(pos, 100);
  t.equal(statsOf(src).windows, 2, 'the window serving (from 8192, where the run was seen) and the one after it');
  const across = 8192 + READAHEAD.window - 50; // 50 bytes from the first window, 50 from the second
  t.ok((await src.read(across, 100)).equals(truth.subarray(across, across + 100)), 'byte-exact across the boundary');
  t.equal(statsOf(src).served, 2, 'served from the two windows, not read again');
  t.equal(statsOf(src).windows, 3, 'and the window after those is on its way');
});

t.test('random reads read no window and return the right bytes', async (t) => {
  // a disk-sized spread (64 MiB): two reads in a row within a window of each other are rare, as on a real disk
  const bigPath = join(dir, 'big.bin');
  const bigSize = 64 << 20;
  writeFileSync(bigPath, randomBytes(bigSize));
  const big = readFileSync(bigPath);
  const src = await openReadOnly(bigPath);
  t.teardown(() => src.close());
  const rnd = prng(7);
  for (let i = 0; i < 2000; i++) {
    const len = 1 + Math.floor(rnd() * 8192);
    const pos = Math.floor(rnd() * (bigSize - len));
    const b = await src.read(pos, len);
    if (!b.equals(big.subarray(pos, pos + len))) t.fail(`random read ${i} at ${pos}+${len} differs`);
  }
  // by chance about one read in 4,000 follows two near ones; a window per read would be 2,000
  t.ok(statsOf(src).windows < 10, `windows read for 2,000 random reads: ${statsOf(src).windows}`);
});

t.test('32 reads in flight at once, mixed forward runs and jumps, all byte-exact', async (t) => {
  const src = await openReadOnly(path);
  t.teardown(() => src.close());
  const rnd = prng(11);
  let cursor = 0;
  for (let round = 0; round < 60; round++) {
    const reads: Array<[number, number]> = [];
    for (let i = 0; i < 32; i++) {
      const len = 1 + Math.floor(rnd() * 20000);
      const pos = rnd() < 0.8 ? cursor : Math.floor(rnd() * (size - len));
      const p = Math.min(pos, size - len);
      reads.push([p, len]);
      cursor = (p + len) % (size - 30000);
    }
    const got = await Promise.all(reads.map(([p, l]) => src.read(p, l)));
    got.forEach((b, i) => {
      const [p, l] = reads[i]!;
      if (!b.equals(truth.subarray(p, p + l))) t.fail(`round ${round} read ${i} at ${p}+${l} differs`);
    });
  }
  t.ok(statsOf(src).served > 0, 'some reads were served from windows');
  t.equal(statsOf(src).windows <= 60 * 32, true, 'windows stay within the reads made');
});

t.test('reads past the end are still E_TRUNCATED, never a short buffer from a window', async (t) => {
  const src = await openReadOnly(path);
  t.teardown(() => src.close());
  for (let p = size - 3 * 4096; p < size; p += 4096) await src.read(p, Math.min(4096, size - p));
  await t.rejects(src.read(size - 10, 20), { code: 'E_TRUNCATED' });
  t.same(await src.read(size - 10, 10), truth.subarray(size - 10), 'the last bytes');
});
