/**
 * Which paths a key may name as a DISK over SSH. Without this, a key with the restore role could
 * `cat /dev/sda p2/etc/snapferry/nas.key`: the appliance's own root disk holds its repository keys
 * and host keys. A DISK argument is accepted when its real path (symlinks such as
 * /dev/disk/by-id/... resolved) is
 *   - a block device that is not the disk holding the appliance's root filesystem nor one of that
 *     disk's partitions (hot-added guest disks), or
 *   - a file below one of the config's `datastore` directories (default /mnt, /media, /srv: where
 *     NFS or host exports of the hypervisor's datastores are mounted).
 * Anything else is E_AGENT_SOURCE, before any byte of it is read.
 */
import { existsSync, realpathSync, statSync } from 'node:fs';
import { basename, join, sep } from 'node:path';
import { devNumbers } from '../fs/types.js';
import { AgentRefusal } from './errors.js';
import { diskOf } from './disks.js';

export const DEFAULT_DATASTORES = ['/mnt', '/media', '/srv'];

function refuse(arg: string, why: string): AgentRefusal {
  return new AgentRefusal('E_AGENT_SOURCE', `${arg.slice(0, 200)}: ${why}`, { path: arg.slice(0, 200) });
}

/** The whole disk a block device node belongs to (sda for /dev/sda2), from sysfs. */
function wholeDiskOf(real: string, sys: string): string | undefined {
  const st = statSync(real);
  const { major, minor } = devNumbers(st.rdev);
  const link = join(sys, 'dev', 'block', `${major}:${minor}`);
  if (!existsSync(link)) return undefined;
  const node = realpathSync(link);
  return existsSync(join(node, 'partition')) ? basename(join(node, '..')) : basename(node);
}

export function checkDiskArg(arg: string, o: { datastores: string[]; rootPath?: string; sys?: string }): void {
  let real: string;
  try {
    real = realpathSync(arg);
  } catch {
    throw refuse(arg, 'no such file or device');
  }
  const st = statSync(real);
  if (st.isBlockDevice()) {
    const sys = o.sys ?? '/sys';
    let root: string | undefined;
    try {
      root = diskOf(o.rootPath ?? '/', sys);
    } catch {
      root = undefined;
    }
    const whole = wholeDiskOf(real, sys);
    if (root !== undefined && whole === root) throw refuse(arg, "the appliance's own disk is not offered over SSH");
    return;
  }
  const stores = o.datastores.length ? o.datastores : DEFAULT_DATASTORES;
  for (const d of stores) {
    let root: string;
    try {
      root = realpathSync(d);
    } catch {
      continue;
    }
    if (real === root || real.startsWith(root.endsWith(sep) ? root : root + sep)) return;
  }
  throw refuse(arg, `neither an attached disk (a block device) nor below a datastore (${stores.join(', ')}; config: datastore = DIR)`);
}
