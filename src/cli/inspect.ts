/** snapferry inspect: what a disk is made of and what is on it. */
import { readVolumes, type VolumeTable } from '../volume/index.js';
import type { ChainMember } from '../disk/types.js';
import { ExitCode } from '../util/errors.js';
import type { CommonOptions } from './main.js';
import { humanBytes, table } from './output.js';
import { expandSources, withDisk } from './sources.js';

export interface DiskReport {
  source: string;
  id?: string;
  path: string;
  capacity: number;
  allocated: { data: number; zero: number; unallocated: number };
  chain: ChainMember[];
  partitions: VolumeTable;
}

export async function inspectDisk(path: string, o: CommonOptions): Promise<Omit<DiskReport, 'source' | 'id'>> {
  return withDisk(path, o, async (disk) => {
    const allocated = { data: 0, zero: 0, unallocated: 0 };
    for (const r of await disk.allocation()) allocated[r.state] += r.length;
    const partitions = await readVolumes(disk);
    return { path, capacity: disk.size, allocated, chain: [...disk.chain], partitions };
  });
}

function render(r: DiskReport): string {
  const lines: string[] = [];
  lines.push(`${r.id ? `${r.id}: ` : ''}${r.path}`);
  lines.push(`  capacity   ${humanBytes(r.capacity)} (${r.capacity} bytes)`);
  lines.push(`  allocated  ${humanBytes(r.allocated.data)} data, ${humanBytes(r.allocated.zero)} known zero, ${humanBytes(r.allocated.unallocated)} unallocated`);
  lines.push(`  chain (top first, ${r.chain.length} file${r.chain.length === 1 ? '' : 's'}):`);
  lines.push(
    table(
      r.chain.map((m, i) => [`${i}`, m.kind, m.cid ? `CID ${m.cid}` : '', m.parentCid && m.parentCid !== 'ffffffff' ? `parent ${m.parentCid}` : 'base', m.path]),
      '    ',
    ),
  );
  const pt = r.partitions;
  lines.push(`  partitions ${pt.scheme}${pt.diskGuid ? ` (disk GUID ${pt.diskGuid})` : ''}, ${pt.sectorSize}-byte sectors`);
  for (const w of pt.warnings) lines.push(`  warning    ${w.code}: ${w.message}`);
  const rows = [['NAME', 'START', 'SIZE', 'TYPE', 'FILESYSTEM', 'LABEL']];
  for (const v of pt.volumes) {
    rows.push([v.name, String(v.start), humanBytes(v.size), `${v.type.name} (${v.type.id})`, v.filesystem.kind, v.filesystem.label ?? v.label ?? '']);
  }
  lines.push(table(rows, '    '));
  return lines.join('\n');
}

export async function inspectCommand(args: string[], o: CommonOptions): Promise<number> {
  const reports: DiskReport[] = [];
  for (const s of await expandSources(args)) {
    const r = await inspectDisk(s.path, o);
    const report: DiskReport = { source: s.arg, ...(s.id ? { id: s.id } : {}), ...r };
    reports.push(report);
    if (!o.json) process.stdout.write(render(report) + '\n');
  }
  if (o.json) process.stdout.write(JSON.stringify({ disks: reports }, null, 2) + '\n');
  return ExitCode.ok;
}
