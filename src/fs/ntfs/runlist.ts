/**
 * Runlists ("mapping pairs", Linux-NTFS runlist.c, libyal NTFS "Data runs"): a non-resident
 * attribute's clusters as runs of (length, relative LCN delta). Each pair starts with a header byte
 * whose low nibble is the size of the length field and high nibble the size of the signed LCN delta;
 * a delta of size 0 is a sparse run (a hole). Every run is bounded: positive length, VCNs within the
 * attribute extent's [lowest_vcn, highest_vcn], clusters within the volume.
 */
import { CorruptStructureError } from '../../util/errors.js';

export interface Run {
  vcn: number;
  /** null: sparse (reads as zeros). */
  lcn: number | null;
  length: number;
}

/** No attribute extent holds more pairs than its record has bytes; this caps a whole stream. */
export const MAX_RUNS_PER_STREAM = 1 << 22;

/** `where` names the attribute in errors (a function: the name is only built for an error). */
export function decodeRunlist(buf: Buffer, start: number, end: number, lowestVcn: number, highestVcn: number, totalClusters: number, where: string | (() => string)): Run[] {
  const runs: Run[] = [];
  const bad = (msg: string, data: Record<string, string | number> = {}): CorruptStructureError => {
    const w = typeof where === 'string' ? where : where();
    return new CorruptStructureError('E_NTFS_RUNLIST', `${w}: runlist ${msg}`, { structure: 'mapping pairs', where: w, ...data });
  };
  let pos = start;
  let vcn = lowestVcn;
  let lcn = 0;
  while (pos < end) {
    const header = buf[pos]!;
    if (header === 0) break;
    const lenSize = header & 0x0f;
    const offSize = header >> 4;
    if (lenSize === 0 || lenSize > 8 || offSize > 8) throw bad(`header 0x${header.toString(16)} at byte ${pos - start} has field sizes ${lenSize}/${offSize}`, { field: 'header', value: header });
    if (pos + 1 + lenSize + offSize > end) throw bad(`pair at byte ${pos - start} runs past the attribute`, { field: 'length', value: pos - start });
    let length = 0;
    for (let i = lenSize - 1; i >= 0; i--) length = length * 256 + buf[pos + 1 + i]!;
    if (!Number.isSafeInteger(length) || length <= 0) throw bad(`run at VCN ${vcn} has length ${length}`, { field: 'length', value: length });
    let run: Run;
    if (offSize === 0) run = { vcn, lcn: null, length };
    else {
      let delta = 0;
      for (let i = offSize - 1; i >= 0; i--) delta = delta * 256 + buf[pos + 1 + lenSize + i]!;
      if (buf[pos + lenSize + offSize]! & 0x80) delta -= 2 ** (8 * offSize); // sign-extend
      lcn += delta;
      if (!Number.isSafeInteger(lcn) || lcn < 0 || lcn + length > totalClusters) {
        throw bad(`run at VCN ${vcn} maps clusters ${lcn}..${lcn + length - 1}, outside the volume's ${totalClusters}`, { field: 'lcn', value: lcn, limit: totalClusters });
      }
      run = { vcn, lcn, length };
    }
    vcn += length;
    if (vcn - 1 > highestVcn) throw bad(`runs reach VCN ${vcn - 1}, past highest_vcn ${highestVcn}`, { field: 'highest_vcn', value: vcn - 1, limit: highestVcn });
    runs.push(run);
    pos += 1 + lenSize + offSize;
  }
  return runs;
}

/** The run holding `vcn` (runs sorted by vcn), by binary search; undefined in a gap. */
export function findRun(runs: Run[], vcn: number): Run | undefined {
  let lo = 0;
  let hi = runs.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const r = runs[mid]!;
    if (vcn < r.vcn) hi = mid - 1;
    else if (vcn >= r.vcn + r.length) lo = mid + 1;
    else return r;
  }
  return undefined;
}
