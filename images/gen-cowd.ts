/**
 * Writes a vmfsSparse delta (an ESX Server sparse extent, "COWD") from the VMware Virtual Disk
 * Format 1.1 specification, "ESX Server Sparse Extents": a descriptor NAME.vmdk (createType
 * "vmfsSparse", parentCID = the parent's CID, parentFileNameHint) and NAME-delta.vmdk holding seeded
 * grains at the given runs. qemu-img cannot create COWD; it reads it, and is the oracle in tests.
 *
 *   npx tsx images/gen-cowd.ts --dir DIR --name snap1 --parent base.vmdk --sectors N --grain G \
 *       --seed S --runs FIRST:COUNT[,FIRST:COUNT...] [--empty-gt GT[,GT...]]
 *
 * Runs are in grains. Grain tables are allocated only for the GT coverages that hold a grain (and
 * for --empty-gt: a table of zero entries); runs are written to the file in a seeded shuffled order,
 * so contiguous disk grains are not always contiguous in the file.
 */
import { keystream, need, runList, shuffle, writeDeltaDescriptor } from './gen-lib.js';
import { closeSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import {
  COWD_GT_BYTES,
  COWD_GTES_PER_GT,
  COWD_MAGIC,
  COWD_VERSION,
  cowdGdEntriesNeeded,
  encodeCowdHeader,
} from '../src/disk/vmdk/structs-cowd.js';

const SECTOR = 512;
const { values: a } = parseArgs({
  options: {
    dir: { type: 'string' },
    name: { type: 'string' },
    parent: { type: 'string' },
    sectors: { type: 'string' },
    grain: { type: 'string' },
    seed: { type: 'string' },
    runs: { type: 'string' },
    'empty-gt': { type: 'string', default: '' },
  },
});
const dir = need('gen-cowd', a.dir, 'dir');
const name = need('gen-cowd', a.name, 'name');
const parent = need('gen-cowd', a.parent, 'parent');
const numSectors = Number(need('gen-cowd', a.sectors, 'sectors'));
const grainSize = Number(need('gen-cowd', a.grain, 'grain'));
const seed = Number(need('gen-cowd', a.seed, 'seed'));
const runs = runList(need('gen-cowd', a.runs, 'runs'));
const emptyGts = a['empty-gt'] ? a['empty-gt'].split(',').map(Number) : [];

const totalGrains = Math.ceil(numSectors / grainSize);
const grainBytes = grainSize * SECTOR;
for (const [first, count] of runs) {
  if (!(first >= 0 && count >= 1 && first + count <= totalGrains)) throw new Error(`gen-cowd: run ${first}:${count} is outside 0..${totalGrains}`);
}
const numGDEntries = cowdGdEntriesNeeded(numSectors, grainSize);

// Layout (spec): header in sectors 0..3, the grain directory at sector 4, then grain tables, then grains.
const gdOffset = 4;
const gdSectors = Math.ceil((numGDEntries * 4) / SECTOR);
const usedGts = new Set<number>(emptyGts);
for (const [first, count] of runs) for (let g = first; g < first + count; g++) usedGts.add(Math.floor(g / COWD_GTES_PER_GT));
const gtSector = new Map<number, number>();
let next = gdOffset + gdSectors;
// Grain tables in descending coverage order: the directory, not the file order, maps them.
for (const gt of [...usedGts].sort((x, y) => y - x)) {
  gtSector.set(gt, next);
  next += COWD_GT_BYTES / SECTOR;
}
const gts = new Map<number, Buffer>([...usedGts].map((gt) => [gt, Buffer.alloc(COWD_GT_BYTES)]));
const path = join(dir, `${name}-delta.vmdk`);
const fd = openSync(path, 'w');
let contentSeed = seed * 1000;
for (const [first, count] of shuffle(runs, seed)) {
  const data = keystream(++contentSeed, count * grainBytes);
  writeSync(fd, data, 0, data.length, next * SECTOR);
  for (let i = 0; i < count; i++) {
    const g = first + i;
    gts.get(Math.floor(g / COWD_GTES_PER_GT))!.writeUInt32LE(next + i * grainSize, (g % COWD_GTES_PER_GT) * 4);
  }
  next += count * grainSize;
}
const gd = Buffer.alloc(gdSectors * SECTOR);
for (const [gt, sector] of gtSector) {
  gd.writeUInt32LE(sector, gt * 4);
  writeSync(fd, gts.get(gt)!, 0, COWD_GT_BYTES, sector * SECTOR);
}
writeSync(fd, gd, 0, gd.length, gdOffset * SECTOR);
const header = encodeCowdHeader({
  magicNumber: COWD_MAGIC,
  version: COWD_VERSION,
  flags: 3, // the spec's value for ESX Server sparse extents
  numSectors,
  grainSize,
  gdOffset,
  numGDEntries,
  freeSector: next,
  parentFileName: parent,
  parentGeneration: 0,
  generation: 0,
  name: name,
  description: 'snapferry test redo log',
  savedGeneration: 0,
  uncleanShutdown: 0,
});
writeSync(fd, header, 0, header.length, 0);
closeSync(fd);

writeDeltaDescriptor('gen-cowd', { dir, name, seed, parent, createType: 'vmfsSparse', extent: `RW ${numSectors} VMFSSPARSE "${name}-delta.vmdk"` });
