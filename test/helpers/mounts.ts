/**
 * The kernel and ntfs-3g as oracles: read-only mounts that are undone in the test's teardown. Each
 * needs root (and /dev/fuse for ntfs-3g); without them the test fails, it never skips.
 */
import type { Test } from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, rmdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

function needRoot(what: string): void {
  if (process.getuid?.() !== 0) throw new Error(`${what} needs root; this test does not skip`);
}

/** A read-only loop device over [start, start+size) of `file`, detached in teardown. */
export function loopDevice(t: Test, file: string, start: number, size: number): string {
  const dev = execFileSync('losetup', ['-f', '--show', '-r', '-o', String(start), '--sizelimit', String(size), file], { encoding: 'utf8' }).trim();
  t.teardown(() => void spawnSync('losetup', ['-d', dev]));
  return dev;
}

/** The partitions of a raw disk image as sfdisk reads them, in bytes. */
export function partitions(raw: string): { start: number; size: number }[] {
  const j = JSON.parse(execFileSync('sfdisk', ['--json', raw], { encoding: 'utf8' })) as { partitiontable: { sectorsize?: number; partitions: { start: number; size: number }[] } };
  const ss = j.partitiontable.sectorsize ?? 512;
  return j.partitiontable.partitions.map((p) => ({ start: p.start * ss, size: p.size * ss }));
}

/** `mount -o loop,OPTS IMG` on a fresh directory. */
export function mountLoop(t: Test, img: string, opts: string): string {
  needRoot('a loop mount');
  const dir = mkdtempSync(join(tmpdir(), 'mnt-'));
  execFileSync('mount', ['-o', `loop,${opts}`, img, dir]);
  t.teardown(() => {
    execFileSync('umount', [dir]);
    rmdirSync(dir);
  });
  return dir;
}

/**
 * The kernel's own journal recovery of `img`: a COPY on a writable loop device, mounted read-only
 * (the kernel replays into a writable device even for a ro mount; the original is never touched).
 */
export function mountRecovered(t: Test, img: string): string {
  needRoot('the kernel\'s journal recovery');
  const copy = join(mkdtempSync(join(tmpdir(), 'copy-')), 'recovered.img');
  copyFileSync(img, copy);
  const loop = execFileSync('losetup', ['-f', '--show', copy], { encoding: 'utf8' }).trim();
  const dir = mkdtempSync(join(tmpdir(), 'mnt-'));
  try {
    execFileSync('mount', ['-o', 'ro', loop, dir]);
  } catch (err) {
    spawnSync('losetup', ['-d', loop]);
    throw err;
  }
  t.teardown(() => {
    execFileSync('umount', [dir]);
    spawnSync('losetup', ['-d', loop]);
    rmdirSync(dir);
  });
  return dir;
}

/** ntfs-3g, read-only, streams as xattrs, on `dev` (an image or a loop device). */
export function mountNtfs3g(t: Test, dev: string): string {
  needRoot('the ntfs-3g oracle (a FUSE mount)');
  if (!existsSync('/dev/fuse')) throw new Error('the ntfs-3g oracle needs /dev/fuse; this test does not skip');
  const dir = mkdtempSync(join(tmpdir(), 'ntfs-oracle-'));
  execFileSync('ntfs-3g', ['-o', 'ro,streams_interface=xattr', dev, dir]);
  t.teardown(() => {
    if (spawnSync('umount', [dir]).status !== 0) spawnSync('umount', ['-l', dir]);
    rmdirSync(dir);
  });
  return dir;
}
