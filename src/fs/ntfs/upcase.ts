/**
 * The volume's $UpCase table: the upper-case of every UTF-16 code unit, as the Windows that
 * formatted the volume saw it. Directory B+trees are collated by it (COLLATION_FILE_NAME), and
 * case-insensitive lookup must use it rather than JavaScript's toUpperCase, which differs for
 * hundreds of code points and changes between Unicode versions.
 */
import { CorruptStructureError } from '../../util/errors.js';

export const UPCASE_UNITS = 0x10000;

export class UpCase {
  private constructor(private readonly table: Uint16Array) {}

  /** From $UpCase's unnamed $DATA: 2 bytes per code unit; a short table maps the rest to itself. */
  static fromBuffer(b: Buffer): UpCase {
    if (b.length === 0 || b.length % 2 !== 0 || b.length > UPCASE_UNITS * 2) {
      throw new CorruptStructureError('E_NTFS_UPCASE', `$UpCase is ${b.length} bytes: not an even size up to ${UPCASE_UNITS * 2}`, { structure: '$UpCase', field: 'data_size', value: b.length, limit: UPCASE_UNITS * 2 });
    }
    const t = new Uint16Array(UPCASE_UNITS);
    for (let i = 0; i < UPCASE_UNITS; i++) t[i] = i * 2 < b.length ? b.readUInt16LE(i * 2) : i;
    return new UpCase(t);
  }

  upper(u: number): number {
    return this.table[u]!;
  }

  /** Collation of file names ignoring case (ntfs_names_full_collate, IGNORE_CASE): by upcased units, then length. */
  compare(a: Uint16Array, b: Uint16Array): number {
    const n = Math.min(a.length, b.length);
    for (let i = 0; i < n; i++) {
      const x = this.table[a[i]!]!;
      const y = this.table[b[i]!]!;
      if (x !== y) return x < y ? -1 : 1;
    }
    return a.length - b.length;
  }
}

export function toUnits(s: string): Uint16Array {
  const u = new Uint16Array(s.length);
  for (let i = 0; i < s.length; i++) u[i] = s.charCodeAt(i);
  return u;
}

export function unitsEqual(a: Uint16Array, b: Uint16Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
