/**
 * The block devices attached to the appliance (hot-added guest disks: /dev/sdX, virtio, NVMe), read
 * from sysfs (Documentation/ABI/stable/sysfs-block) and /dev/disk/by-id. Nothing here opens a device;
 * the volumes are read by the caller through src/disk (O_RDONLY, always).
 *
 * The appliance's own root disk is left out (found through the root filesystem's st_dev and
 * /sys/dev/block/MAJ:MIN), and so are loop, ram and zram devices, floppy and optical drives (fd*, sr*:
 * qemu's default machine adds both; no guest disk is hot-added as one) unless asked for: they are the
 * appliance's plumbing, not a guest's disk. Counts are bounded: at most MAX_DISKS devices.
 */
import { existsSync, readFileSync, readdirSync, readlinkSync, realpathSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';

export const MAX_DISKS = 1024;

export interface BlockDevice {
  name: string;
  path: string;
  size: number;
  model?: string;
  vendor?: string;
  serial?: string;
  readOnly: boolean;
  removable: boolean;
  byId: string[];
  /** Devices left out unless --all (loop, ram, zram, floppy and optical drives, or no media). */
  plumbing: boolean;
}

function read(p: string): string | undefined {
  try {
    return readFileSync(p, 'utf8').trim();
  } catch {
    return undefined;
  }
}

/** The name of the whole disk under /sys/block that holds `path`'s filesystem, if it is a block device. */
export function diskOf(path: string, sys = '/sys'): string | undefined {
  const dev = statSync(path).dev;
  const major = Math.floor(dev / 256) & 0xfff; // Linux dev_t: major in bits 8..19, minor 0..7 + 20..31
  const minor = (dev & 0xff) | ((dev >>> 12) & 0xfff00);
  const link = join(sys, 'dev', 'block', `${major}:${minor}`);
  if (!existsSync(link)) return undefined;
  const real = realpathSync(link);
  return existsSync(join(real, 'partition')) ? basename(join(real, '..')) : basename(real);
}

function byIdLinks(dir: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  if (!existsSync(dir)) return out;
  for (const n of readdirSync(dir).slice(0, 16 * MAX_DISKS)) {
    try {
      const target = basename(readlinkSync(join(dir, n)));
      out.set(target, [...(out.get(target) ?? []), join(dir, n)]);
    } catch {
      // not a link
    }
  }
  return out;
}

export function listBlockDevices(o: { all: boolean; sys?: string; dev?: string; rootPath?: string }): BlockDevice[] {
  const sys = o.sys ?? '/sys';
  const dev = o.dev ?? '/dev';
  let root: string | undefined;
  try {
    root = diskOf(o.rootPath ?? '/', sys);
  } catch {
    root = undefined;
  }
  const ids = byIdLinks(join(dev, 'disk', 'by-id'));
  const out: BlockDevice[] = [];
  const names = readdirSync(join(sys, 'block')).sort();
  for (const name of names.slice(0, MAX_DISKS)) {
    if (name === root) continue;
    const base = join(sys, 'block', name);
    const size = Number(read(join(base, 'size')) ?? '0') * 512;
    const plumbing = /^(loop|ram|zram|fd|sr)\d+$/.test(name) || size === 0;
    if (plumbing && !o.all) continue;
    const model = read(join(base, 'device', 'model'));
    const vendor = read(join(base, 'device', 'vendor'));
    const serial = read(join(base, 'device', 'serial')) ?? read(join(base, 'serial'));
    out.push({
      name,
      path: join(dev, name),
      size,
      ...(model ? { model } : {}),
      ...(vendor ? { vendor } : {}),
      ...(serial ? { serial } : {}),
      readOnly: read(join(base, 'ro')) === '1',
      removable: read(join(base, 'removable')) === '1',
      byId: (ids.get(name) ?? []).sort(),
      plumbing,
    });
  }
  return out;
}
