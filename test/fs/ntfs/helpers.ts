/** Shared by the NTFS tests: the images of images/ntfs.sh, opened by our reader and mounted by ntfs-3g. */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Test } from 'tap';
import { LayeredDisk } from '../../../src/disk/layered.js';
import { RawLayer } from '../../../src/disk/raw.js';
import { openReadOnly } from '../../../src/disk/file.js';
import type { VolumeSource } from '../../../src/fs/types.js';
import { image, requireTool } from '../../helpers/images.js';

export const IMAGES = ['ntfs-512.img', 'ntfs-4k.img', 'ntfs-64k.img'] as const;

export function ntfsImages(): string {
  requireTool('mkntfs', 'ntfs-3g', 'setfattr', 'getfattr', 'python3');
  return image('ntfs');
}

export async function volumeOf(path: string): Promise<VolumeSource & { close(): Promise<void> }> {
  const d = new LayeredDisk([new RawLayer(await openReadOnly(path))], []);
  return { size: d.size, read: (o, l) => d.read(o, l), readInto: (b, o) => d.readInto(b, o), close: () => d.close() };
}

export function volumeOfBuffer(buf: Buffer): VolumeSource {
  return {
    size: buf.length,
    read: async (o, l) => {
      if (o < 0 || o + l > buf.length) throw new Error(`read past the end: ${o}+${l}`);
      return Buffer.from(buf.subarray(o, o + l));
    },
    readInto: async (b, o) => {
      if (o < 0 || o + b.length > buf.length) throw new Error(`read past the end: ${o}+${b.length}`);
      buf.copy(b, 0, o, o + b.length);
    },
  };
}

/** Mounts `img` read-only with ntfs-3g (streams as xattrs) and unmounts in teardown. Fails without root or FUSE. */
export function mountNtfs3g(t: Test, img: string): string {
  if (process.getuid?.() !== 0) throw new Error('the ntfs-3g oracle needs root (FUSE mount with allow_other); this test does not skip');
  if (!existsSync('/dev/fuse')) throw new Error('the ntfs-3g oracle needs /dev/fuse; this test does not skip');
  const mnt = mkdtempSync(join(tmpdir(), 'ntfs-oracle-'));
  execFileSync('ntfs-3g', ['-o', 'ro,streams_interface=xattr', img, mnt]);
  t.teardown(() => {
    const r = spawnSync('umount', [mnt]);
    if (r.status !== 0) spawnSync('umount', ['-l', mnt]);
    rmdirSync(mnt);
  });
  return mnt;
}
