/**
 * LZNT1, the LZ77 variant of NTFS compressed attributes ([MS-XCA] 2.5; ntfs-3g compress.c). A
 * compression unit is a sequence of chunks of at most 4096 output bytes, each with a 16-bit header:
 * bits 0-11 = compressed size - 1, bit 15 = compressed. A compressed chunk is groups of a flag byte
 * and 8 tokens: a literal byte, or a 16-bit back-reference whose offset/length split depends on how
 * far into the chunk we are. Output never exceeds `outSize`; a reference before the chunk start is
 * corrupt, so a hostile unit cannot read outside what it wrote.
 */
import { CorruptStructureError } from '../../util/errors.js';

export const LZNT1_CHUNK = 4096;

/** Decompresses `src` into exactly `outSize` bytes (short chunks and missing tail read as zeros). */
export function decompressLznt1(src: Buffer, outSize: number, where: string): Buffer {
  const out = Buffer.alloc(outSize);
  const bad = (msg: string, data: Record<string, number> = {}) => new CorruptStructureError('E_NTFS_LZNT1', `${where}: LZNT1 ${msg}`, { structure: 'LZNT1', where, ...data });
  let sp = 0;
  let chunkStart = 0;
  while (sp + 2 <= src.length && chunkStart < outSize) {
    const header = src.readUInt16LE(sp);
    if (header === 0) break; // end of the compressed data in this unit
    const size = (header & 0x0fff) + 1;
    const end = sp + 2 + size;
    if (end > src.length) throw bad(`chunk at ${sp} claims ${size} bytes, past the ${src.length} stored`, { offset: sp, value: size });
    const chunkEnd = Math.min(chunkStart + LZNT1_CHUNK, outSize);
    if (!(header & 0x8000)) {
      // stored uncompressed: exactly its bytes
      src.copy(out, chunkStart, sp + 2, sp + 2 + Math.min(size, chunkEnd - chunkStart));
    } else {
      let p = sp + 2;
      let op = chunkStart;
      while (p < end && op < chunkEnd) {
        const flags = src[p++]!;
        for (let bit = 0; bit < 8 && p < end && op < chunkEnd; bit++) {
          if (!(flags & (1 << bit))) {
            out[op++] = src[p++]!;
            continue;
          }
          if (p + 2 > end) throw bad(`back-reference at ${p} cut by the chunk end`, { offset: p });
          const token = src.readUInt16LE(p);
          p += 2;
          // The offset field widens as the position in the chunk grows: 4 bits at 16, 12 at 4096.
          let lengthBits = 12;
          for (let pos = op - chunkStart - 1; pos >= 0x10; pos >>= 1) lengthBits--;
          const offset = (token >>> lengthBits) + 1;
          const length = (token & ((1 << lengthBits) - 1)) + 3;
          if (offset > op - chunkStart) throw bad(`back-reference of ${offset} bytes at chunk position ${op - chunkStart} reaches before the chunk`, { offset: op, value: offset });
          const n = Math.min(length, chunkEnd - op);
          for (let i = 0; i < n; i++, op++) out[op] = out[op - offset]!; // byte by byte: copies may overlap
        }
      }
    }
    sp = end;
    chunkStart += LZNT1_CHUNK; // a short chunk leaves zeros up to the 4 KiB boundary
  }
  return out;
}
