/**
 * A 200,000-entry directory (images/ext-wide.sh) listed through the real mount streams: every name
 * exactly once, with the inode numbers the kernel's own ext4 gives, again on a second listing and
 * after a seekdir; and the mount's memory does not grow with the listing.
 *
 * What the memory checks guard against, as measured here (2 cores, loaded, default 96 MiB cache):
 *  - the listing built whole (fuse-native's readdir, or a look-ahead without its bound): the mount
 *    runs with a 40 MB V8 heap (NODE_OPTIONS=--max-old-space-size=40). Streaming lists fine under it
 *    (--trace-gc with an 8 MiB cache: at most ~19 MB before a collection); a handle that took all
 *    200,000 entries (names and nodes only, no attributes) at its first READDIRPLUS died of heap
 *    exhaustion 5.6 s in, and the listing failed (ECONNABORTED). The cap assumes the default cache:
 *    with --cache-mib 256 the caches' own objects exhausted it too.
 *  - a table that grows per listed entry (a node per READDIRPLUS entry kept until FORGET, which
 *    the kernel does not send while it caches the dentries): VmRSS after 200,000 entries may exceed
 *    VmRSS after 50,000 by at most 12 MB (80 bytes per entry). Measured: -1.6 to +3.6 MB.
 *  - everything else held per entry outside the heap: VmHWM <= 240 MB. Measured 179-183 MB: ~71 MB
 *    at start, the caches' budget, and ~64 MB of malloc'd 4 KiB block buffers that the ext reader
 *    drops at each inode table miss (the directory is listed in hash order, so its inodes are read
 *    at random from a 51 MB inode table) until V8 collects them.
 * Needs root and /dev/fuse: without them it fails, it never skips.
 */
import t, { type Test } from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT, image, requireTool } from '../helpers/images.js';
import { snapferry } from '../helpers/cli.js';
import { mountLoop } from '../helpers/mounts.js';
import { mountAt } from '../../src/mount/mountinfo.js';

requireTool('python3', 'mount', 'umount');
if (process.getuid?.() !== 0) throw new Error('mount tests need root (FUSE and loop mounts); this test does not skip');
if (!existsSync('/dev/fuse')) throw new Error('mount tests need /dev/fuse; this test does not skip');

const ENTRIES = 200_000;
const HEAP_MB = 40;
const SLOPE_FROM = 50_000;
const SLOPE_MAX_KB = 12 * 1024;
const HWM_MAX_KB = 240 * 1024;
const SEEK_AT = 190_000;

const img = join(image('ext-wide'), 'ext4.img');
const lister = join(ROOT, 'test', 'mount', 'wide-list.py');

interface Listing {
  count: number;
  twice: string[];
  missing: string[];
  extras: string[];
  inoSha: string;
  rss?: [number, number][];
  afterSeek?: number;
  expectedAfterSeek?: number;
  sameAfterSeek?: boolean;
}

function list(...args: string[]): Listing {
  return JSON.parse(execFileSync('python3', [lister, ...args], { encoding: 'utf8', maxBuffer: 1 << 20 })) as Listing;
}

function mountSnapferry(t: Test): { dir: string; pid: number } {
  const dir = mkdtempSync(join(tmpdir(), 'sf-wide-'));
  const log = join(mkdtempSync(join(tmpdir(), 'sf-log-')), 'mount.log');
  const r = snapferry(['mount', '--json', '--log', log, img, dir], { env: { NODE_OPTIONS: `--max-old-space-size=${HEAP_MB}` } });
  if (r.status !== 0) throw new Error(`snapferry mount failed (${r.status}): ${r.stderr}${r.stdout}`);
  t.teardown(() => {
    if (mountAt(dir)) snapferry(['umount', dir]);
    if (mountAt(dir)) spawnSync('umount', ['-l', dir]);
    rmdirSync(dir);
  });
  return { dir, pid: (JSON.parse(r.stdout) as { pid: number }).pid };
}

function complete(t: Test, l: Listing, what: string): void {
  t.equal(l.count, ENTRIES, `${what}: ${ENTRIES} entries besides . and ..`);
  t.same([l.twice, l.missing, l.extras], [[], [], []], `${what}: f000000..f199999 each exactly once, nothing else`);
}

t.test('a 200,000-entry directory lists through the mount in bounded memory, every name once, twice over and after a seekdir', async (t) => {
  const kernel = list('scan', join(mountLoop(t, img, 'ro,noload'), 'wide'), String(ENTRIES));
  complete(t, kernel, 'the kernel\'s ext4 (the oracle)');

  const m = mountSnapferry(t);
  const wide = join(m.dir, 'ext4', 'whole', 'wide');
  const first = list('scan', wide, String(ENTRIES), String(m.pid), String(SLOPE_FROM));
  complete(t, first, 'the mount');
  t.equal(first.inoSha, kernel.inoSha, 'each name has the inode number the kernel gives it');

  const rss = new Map(first.rss);
  const slope = rss.get(ENTRIES)! - rss.get(SLOPE_FROM)!;
  t.ok(slope <= SLOPE_MAX_KB, `VmRSS from entry ${SLOPE_FROM} to ${ENTRIES}: ${slope >= 0 ? '+' : ''}${slope} kB (at most ${SLOPE_MAX_KB} kB): nothing kept per entry (samples ${JSON.stringify(first.rss)})`);
  const hwm = Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${m.pid}/status`, 'utf8'))?.[1]);
  t.ok(hwm > 0 && hwm <= HWM_MAX_KB, `the mount's peak RSS ${hwm} kB (at most ${HWM_MAX_KB} kB), with a ${HEAP_MB} MB heap`);

  const second = list('seek', wide, String(ENTRIES), String(SEEK_AT));
  complete(t, second, 'a second listing');
  t.equal(second.inoSha, kernel.inoSha, 'a second listing: the same inode numbers');
  t.ok(second.sameAfterSeek && second.afterSeek === ENTRIES - SEEK_AT, `seekdir to telldir after entry ${SEEK_AT}: the ${second.afterSeek} entries after it, as the first pass listed them`);
  t.ok(existsSync(`/proc/${m.pid}`), 'the mount process is alive at the end');
});
