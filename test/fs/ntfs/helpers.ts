/** Shared by the NTFS tests: the images of images/ntfs.sh, opened by our reader and mounted by ntfs-3g. */
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

export { mountNtfs3g } from '../../helpers/mounts.js';
