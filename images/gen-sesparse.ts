/**
 * Writes an seSparse delta: a descriptor NAME.vmdk (createType "seSparse", parentCID = the parent's
 * CID, parentFileNameHint) and NAME-sesparse.vmdk laid out as qemu's block/vmdk.c reads it
 * (VMDKSESparseConstHeader, VMDKSESparseVolatileHeader, 64-bit GDEs and GTEs; see
 * src/disk/vmdk/structs-sesparse.ts). qemu-img cannot create seSparse; it reads it, and is the oracle.
 *
 *   npx tsx images/gen-sesparse.ts --dir DIR --name snap1 --parent base.vmdk --sectors N --seed S \
 *       --runs FIRST:COUNT,... [--zero FIRST:COUNT,...] [--unmapped FIRST:COUNT,...]
 *       [--empty-gt GT,...] [--first-grain-index I]
 *
 * Runs are in 4 KiB grains. Data runs get seeded content, written in a seeded shuffled order;
 * --first-grain-index leaves a hole before the first grain of the grains area so that grain indexes
 * use both halves of the GTE's shuffled index bits. Grain tables are numbered in descending order of
 * the disk range they map, so the directory (not the file order) must be followed.
 */
import { keystream, need, runList, shuffle, writeDeltaDescriptor } from './gen-lib.js';
import { closeSync, ftruncateSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import {
  encodeSeSparseConstHeader,
  encodeSeSparseGde,
  encodeSeSparseGte,
  encodeSeSparseVolatileHeader,
  SESPARSE_CONST_HEADER_MAGIC,
  SESPARSE_GRAIN_SECTORS,
  SESPARSE_GT_BYTES,
  SESPARSE_GT_SECTORS,
  SESPARSE_GTES_PER_GT,
  SESPARSE_VERSION_HI,
  SESPARSE_VERSION_LO,
  SESPARSE_VOLATILE_HEADER_MAGIC,
  seSparseGdEntriesNeeded,
} from '../src/disk/vmdk/structs-sesparse.js';

const SECTOR = 512;
const GRAIN = SESPARSE_GRAIN_SECTORS * SECTOR;
const { values: a } = parseArgs({
  options: {
    dir: { type: 'string' },
    name: { type: 'string' },
    parent: { type: 'string' },
    sectors: { type: 'string' },
    seed: { type: 'string' },
    runs: { type: 'string' },
    zero: { type: 'string', default: '' },
    unmapped: { type: 'string', default: '' },
    'empty-gt': { type: 'string', default: '' },
    'first-grain-index': { type: 'string', default: '0' },
  },
});
const dir = need('gen-sesparse', a.dir, 'dir');
const name = need('gen-sesparse', a.name, 'name');
const parent = need('gen-sesparse', a.parent, 'parent');
const capacity = Number(need('gen-sesparse', a.sectors, 'sectors'));
const seed = Number(need('gen-sesparse', a.seed, 'seed'));
const runs = runList(need('gen-sesparse', a.runs, 'runs'));
const zeroRuns = runList(a.zero ?? '');
const unmappedRuns = runList(a.unmapped ?? '');
const emptyGts = a['empty-gt'] ? a['empty-gt'].split(',').map(Number) : [];
const firstGrainIndex = Number(a['first-grain-index']);


const totalGrains = Math.ceil(capacity / SESPARSE_GRAIN_SECTORS);
for (const [first, count] of [...runs, ...zeroRuns, ...unmappedRuns]) {
  if (!(first >= 0 && count >= 1 && first + count <= totalGrains)) throw new Error(`gen-sesparse: run ${first}:${count} is outside 0..${totalGrains}`);
}
const gdEntries = seSparseGdEntriesNeeded(capacity);
const usedGds = new Set<number>(emptyGts);
for (const [first, count] of [...runs, ...zeroRuns, ...unmappedRuns]) {
  for (let g = first; g < first + count; g++) usedGds.add(Math.floor(g / SESPARSE_GTES_PER_GT));
}
// Grain table index for each directory entry: descending disk order.
const gtIndexOf = new Map<number, number>([...usedGds].sort((x, y) => y - x).map((gd, i) => [gd, i]));
const gts = [...usedGds].map(() => Buffer.alloc(SESPARSE_GT_BYTES));
const setGte = (g: number, v: bigint): void => {
  gts[gtIndexOf.get(Math.floor(g / SESPARSE_GTES_PER_GT))!]!.writeBigUInt64LE(v, (g % SESPARSE_GTES_PER_GT) * 8);
};
const dataGrains = runs.reduce((n, [, c]) => n + c, 0);

// Layout in sectors: const header 0, volatile header 1, journal header 2..3, journal 4..7, grain
// directory (one spare sector), grain tables (one spare table), free bitmap, backmap, grains.
const grainDirSize = Math.ceil((gdEntries * 8) / SECTOR) + 1;
const grainTablesSize = (gts.length + 1) * SESPARSE_GT_SECTORS;
const grainsSize = (firstGrainIndex + dataGrains + 1) * SESPARSE_GRAIN_SECTORS;
const L = {
  volatile_header_offset: 1n, volatile_header_size: 1n,
  journal_header_offset: 2n, journal_header_size: 2n,
  journal_offset: 4n, journal_size: 4n,
  grain_dir_offset: 8n, grain_dir_size: BigInt(grainDirSize),
  grain_tables_offset: BigInt(8 + grainDirSize), grain_tables_size: BigInt(grainTablesSize),
  free_bitmap_offset: BigInt(8 + grainDirSize + grainTablesSize), free_bitmap_size: 1n,
  backmap_offset: BigInt(9 + grainDirSize + grainTablesSize), backmap_size: 1n,
  grains_offset: BigInt(10 + grainDirSize + grainTablesSize), grains_size: BigInt(grainsSize),
};

const path = join(dir, `${name}-sesparse.vmdk`);
const fd = openSync(path, 'w');
const grainsBase = Number(L.grains_offset) * SECTOR;
let nextGrain = firstGrainIndex;
let contentSeed = seed * 1000;
for (const [first, count] of shuffle(runs, seed)) {
  const data = keystream(++contentSeed, count * GRAIN);
  writeSync(fd, data, 0, data.length, grainsBase + nextGrain * GRAIN);
  for (let i = 0; i < count; i++) setGte(first + i, encodeSeSparseGte('allocated', nextGrain + i));
  nextGrain += count;
}
for (const [first, count] of zeroRuns) for (let g = first; g < first + count; g++) setGte(g, encodeSeSparseGte('zero'));
for (const [first, count] of unmappedRuns) for (let g = first; g < first + count; g++) setGte(g, encodeSeSparseGte('unmapped'));

const gd = Buffer.alloc(grainDirSize * SECTOR);
for (const [gdIndex, gtIndex] of gtIndexOf) gd.writeBigUInt64LE(encodeSeSparseGde(gtIndex), gdIndex * 8);
writeSync(fd, gd, 0, gd.length, Number(L.grain_dir_offset) * SECTOR);
gts.forEach((gt, i) => writeSync(fd, gt, 0, gt.length, (Number(L.grain_tables_offset) + i * SESPARSE_GT_SECTORS) * SECTOR));
const constHeader = encodeSeSparseConstHeader({
  magic: BigInt(SESPARSE_CONST_HEADER_MAGIC),
  version: (BigInt(SESPARSE_VERSION_HI) << 32n) | BigInt(SESPARSE_VERSION_LO),
  capacity: BigInt(capacity),
  grain_size: BigInt(SESPARSE_GRAIN_SECTORS),
  grain_table_size: BigInt(SESPARSE_GT_SECTORS),
  flags: 0n,
  reserved: [0n, 0n, 0n, 0n],
  ...L,
});
writeSync(fd, constHeader, 0, constHeader.length, 0);
const vh = encodeSeSparseVolatileHeader({ magic: BigInt(SESPARSE_VOLATILE_HEADER_MAGIC), free_gt_number: BigInt(gts.length), next_txn_seq_number: 1n, replay_journal: 0n });
writeSync(fd, vh, 0, vh.length, Number(L.volatile_header_offset) * SECTOR);
// The file ends after the last grain written; the spare grain stays beyond it (grains_size is the area's reservation).
ftruncateSync(fd, grainsBase + nextGrain * GRAIN);
closeSync(fd);

writeDeltaDescriptor('gen-sesparse', { dir, name, seed, parent, createType: 'seSparse', extent: `RW ${capacity} SESPARSE "${name}-sesparse.vmdk"` });
