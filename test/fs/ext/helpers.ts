/**
 * Shared by the ext tests: open an image file as a VolumeSource, and loop-mount an image read-only
 * as the oracle (ro,noload: the kernel neither replays a journal nor writes), unmounted in teardown.
 */
import type { Test } from 'tap';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openReadOnly, BufferSource } from '../../../src/disk/file.js';
import { LayeredDisk } from '../../../src/disk/layered.js';
import { RawLayer } from '../../../src/disk/raw.js';
import type { VolumeSource } from '../../../src/fs/types.js';
import { requireTool } from '../../helpers/images.js';

export async function volumeOf(t: Test, path: string): Promise<VolumeSource> {
  const d = new LayeredDisk([new RawLayer(await openReadOnly(path))], []);
  t.teardown(() => d.close());
  return { size: d.size, read: (o, l) => d.read(o, l), readInto: (b, o) => d.readInto(b, o) };
}

export function bufferVolume(buf: Buffer): VolumeSource {
  const d = new LayeredDisk([new RawLayer(new BufferSource(buf))], []);
  return { size: d.size, read: (o, l) => d.read(o, l), readInto: (b, o) => d.readInto(b, o) };
}

/** Mounts `image` read-only without journal replay (noload, only valid with a journal); unmounted in t.teardown. */
export function mountRo(t: Test, image: string, extraOpts = ''): string {
  const journal = debugfs(image, 'features').includes('has_journal');
  requireTool('mount', 'umount');
  if (process.getuid?.() !== 0) throw new Error('the kernel oracle needs root for loop mounts; this test does not skip');
  const dir = mkdtempSync(join(tmpdir(), 'ext-oracle-'));
  execFileSync('mount', ['-o', `loop,ro${journal ? ',noload' : ''}${extraOpts ? ',' + extraOpts : ''}`, image, dir]);
  t.teardown(() => {
    execFileSync('umount', [dir]);
    rmdirSync(dir);
  });
  return dir;
}

/** debugfs -R CMD on an image (read-only: debugfs opens without -w). */
export function debugfs(image: string, cmd: string): string {
  requireTool('debugfs');
  return execFileSync('debugfs', ['-R', cmd, image], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], maxBuffer: 1 << 28 });
}
