/** snapferry disks: the block devices attached to the appliance and the volumes on each (read-only). */
import { parseArgs } from 'node:util';
import { ExitCode, UsageError, toSnapferryError } from '../util/errors.js';
import { listBlockDevices, type BlockDevice } from '../agent/disks.js';
import { readVolumes, type VolumeTable } from '../volume/index.js';
import { openDisk } from '../disk/open.js';
import { humanBytes, table } from './output.js';

export const DISKS_HELP = `snapferry disks [--all] [--json]

The block devices attached to this machine (/sys/block) — on the appliance, the VM disks hot-added to
it — with size, model, serial, /dev/disk/by-id names and the volumes on each (partition table and
filesystem, read as 'snapferry inspect' does). The appliance's own root disk is left out, and so are
loop, ram and zram devices and devices without media unless --all is given. Devices are opened
O_RDONLY, always; nothing is mounted, activated or written.

Exit codes: 0 success (a device whose volumes cannot be read carries an 'error' and does not fail
the listing)  2 usage error

Examples:
  snapferry disks
  snapferry disks --json | jq '.disks[] | {path, byId, volumes: [.volumes.volumes[].filesystem.kind]}'
  ssh snapferry@appliance disks --json
`;

interface DiskRow extends BlockDevice {
  volumes?: VolumeTable;
  error?: { code: string; message: string };
}

export async function disksCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, options: { json: { type: 'boolean' }, all: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } }, strict: true, allowPositionals: true });
  if (values.help) {
    process.stdout.write(DISKS_HELP);
    return ExitCode.ok;
  }
  if (positionals.length) throw new UsageError('disks takes no arguments');
  const rows: DiskRow[] = [];
  for (const d of listBlockDevices({ all: values.all === true })) {
    const row: DiskRow = { ...d };
    if (d.size > 0) {
      try {
        const disk = await openDisk(d.path, { cacheBytes: 4 << 20 });
        try {
          row.volumes = await readVolumes(disk);
        } finally {
          await disk.close();
        }
      } catch (e) {
        const err = toSnapferryError(e);
        row.error = { code: err.code, message: err.message };
      }
    }
    rows.push(row);
  }
  if (values.json) {
    process.stdout.write(JSON.stringify({ disks: rows }, null, 2) + '\n');
    return ExitCode.ok;
  }
  if (rows.length === 0) process.stderr.write('no attached disks (the root disk, loop and ram devices are left out; --all shows them)\n');
  for (const r of rows) {
    process.stdout.write(`${r.path}  ${humanBytes(r.size)}${r.vendor || r.model ? `  ${[r.vendor, r.model].filter(Boolean).join(' ')}` : ''}${r.serial ? `  serial ${r.serial}` : ''}${r.readOnly ? '  read-only' : ''}\n`);
    for (const id of r.byId) process.stdout.write(`  ${id}\n`);
    if (r.error) process.stdout.write(`  error ${r.error.code}: ${r.error.message}\n`);
    if (r.volumes) {
      process.stdout.write(`  partitions ${r.volumes.scheme}\n`);
      const vols = [['NAME', 'START', 'SIZE', 'TYPE', 'FILESYSTEM', 'LABEL'], ...r.volumes.volumes.map((v) => [v.name, String(v.start), humanBytes(v.size), v.type.name, v.filesystem.kind, v.filesystem.label ?? v.label ?? ''])];
      process.stdout.write(table(vols, '    ') + '\n');
    }
  }
  return ExitCode.ok;
}
