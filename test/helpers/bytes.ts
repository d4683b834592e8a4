/** In-memory ends of the archive layers' two shapes (src/archive/types.ts), for tests. */
import type { ByteSink, RandomAccess } from '../../src/archive/types.js';

/** A sink that keeps a copy of everything written to it. */
export function memorySink(): ByteSink & { bytes(): Buffer; ended: boolean } {
  const parts: Buffer[] = [];
  const s = {
    ended: false,
    async write(c: Buffer) {
      parts.push(Buffer.from(c));
    },
    async end() {
      s.ended = true;
    },
    bytes: () => Buffer.concat(parts),
  };
  return s;
}

/** A buffer as a RandomAccess that counts the bytes read from it; a read past the end throws. */
export function bufferSource(b: Buffer): RandomAccess & { fetched: number } {
  const ra = {
    size: b.length,
    fetched: 0,
    async read(offset: number, length: number) {
      if (offset < 0 || length < 0 || offset + length > b.length) throw new Error(`test source: read past end ${offset}+${length} > ${b.length}`);
      ra.fetched += length;
      return b.subarray(offset, offset + length);
    },
  };
  return ra;
}
