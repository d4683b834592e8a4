/**
 * Compares a Disk with qemu's raw output of the same image: every byte in order, then 10,000
 * random reads of random lengths (crossing grain, extent and layer boundaries).
 */
import { open } from 'node:fs/promises';
import type { Disk } from '../../src/disk/types.js';
import { prng } from './images.js';

export interface Asserts { equal(found: unknown, wanted: unknown, message: string): unknown }

export interface OracleResult {
  size: number;
  mismatchAt: number | null;
  randomReads: number;
  randomMismatch: { offset: number; length: number } | null;
}

export async function compareWithRaw(disk: Disk, rawPath: string, opts: { randomReads?: number; seed?: number; maxReadLength?: number } = {}): Promise<OracleResult> {
  const fh = await open(rawPath, 'r');
  try {
    const { size } = await fh.stat();
    const result: OracleResult = { size, mismatchAt: null, randomReads: 0, randomMismatch: null };
    if (disk.size !== size) throw new Error(`disk size ${disk.size} != qemu raw size ${size}`);
    const chunk = 4 * 1024 * 1024;
    const want = Buffer.alloc(chunk);
    for (let off = 0; off < size && result.mismatchAt === null; off += chunk) {
      const len = Math.min(chunk, size - off);
      const got = await disk.read(off, len);
      await fh.read(want, 0, len, off);
      if (!got.equals(want.subarray(0, len))) {
        for (let i = 0; i < len; i++) if (got[i] !== want[i]) { result.mismatchAt = off + i; break; }
      }
    }
    const rand = prng(opts.seed ?? 1);
    const n = opts.randomReads ?? 10_000;
    const maxLen = Math.min(opts.maxReadLength ?? 300_000, size);
    for (let i = 0; i < n; i++) {
      const length = 1 + Math.floor(rand() * maxLen);
      const offset = Math.floor(rand() * (size - length + 1));
      const got = await disk.read(offset, length);
      const exp = Buffer.alloc(length);
      await fh.read(exp, 0, length, offset);
      result.randomReads++;
      if (!got.equals(exp)) { result.randomMismatch = { offset, length }; break; }
    }
    return result;
  } finally {
    await fh.close();
  }
}

/** compareWithRaw, asserted: every byte in order, then `randomReads` random reads, equal qemu's raw. */
export async function assertEqualsRaw(t: Asserts, disk: Disk, rawPath: string, opts: { randomReads?: number; seed?: number; label?: string } = {}): Promise<void> {
  const n = opts.randomReads ?? 10_000;
  const at = opts.label ? `${opts.label}: ` : '';
  const r = await compareWithRaw(disk, rawPath, { randomReads: n, ...(opts.seed !== undefined ? { seed: opts.seed } : {}) });
  t.equal(r.mismatchAt, null, `${at}sequential read equals qemu-img convert -O raw`);
  t.equal(r.randomReads, n, `${at}${n} random reads`);
  t.equal(r.randomMismatch, null, `${at}random reads equal qemu`);
}
