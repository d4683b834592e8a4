/**
 * GNU sparse format 1.0 (GNU tar manual, "Storing Sparse Files", format 1.0; sparse.c
 * pax_dump_header_1 / pax_decode_header): the member's data begins with the map in decimal ASCII,
 *
 *   <count>\n <offset>\n <length>\n ... (count pairs)
 *
 * padded with NULs to a block boundary, followed by the data segments' bytes. The
 * PAX header says GNU.sparse.major=1, minor=0, name=<real path>, realsize=<logical size>; the ustar
 * size (or PAX size) is the stored size: map blocks plus the segments, each padded to a block (below).
 *
 * Two facts of GNU tar 1.34's reader (sparse.c) the layout must follow, found against it:
 *  - sparse_extract_region consumes whole blocks per segment: each segment's bytes start on a
 *    block boundary and are NUL-padded to one (GNU's writer does the same, sparse_dump_region);
 *    only the last segment's padding may lie outside the size field (it is the member padding).
 *  - the file is truncated to realsize only when the map's last entry has length 0 ("Last block
 *    of the file is a hole"), so the map always ends with (realsize, 0), as GNU tar writes it.
 */
import { CorruptStructureError } from '../../util/errors.js';
import { BLOCK_SIZE } from './structs.js';
import type { SparseSegment } from './entry.js';

export const SPARSE_LIMITS = {
  /** Map entries we accept: 1 Mi segments is a badly fragmented 4 TiB disk image's worth. */
  maxEntries: 1 << 20,
  /** Digits of one number (2^53 has 16; leading zeros allowed up to 20). */
  maxDigits: 20,
} as const;

export function padToBlock(n: number): number {
  return Math.ceil(n / BLOCK_SIZE) * BLOCK_SIZE;
}

/** The map as stored: decimal lines, NUL-padded to a whole block. */
export function encodeSparseMap(segments: readonly SparseSegment[]): Buffer {
  const text = [String(segments.length), ...segments.flatMap((s) => [String(s.offset), String(s.length)])].join('\n') + '\n';
  const bytes = Buffer.from(text, 'latin1');
  const out = Buffer.alloc(padToBlock(bytes.length));
  bytes.copy(out);
  return out;
}

function sparseError(message: string, offset: number, extra: Record<string, number> = {}): CorruptStructureError {
  return new CorruptStructureError('E_TAR_SPARSE', `sparse map at ${offset}: ${message}`, { structure: 'GNU sparse 1.0 map', offset, ...extra });
}

export interface ParsedSparseMap {
  segments: SparseSegment[];
  /** Bytes the map occupies (whole blocks). */
  mapBytes: number;
}

/**
 * Reads the map a block at a time through `readBlock` (so a hostile count allocates nothing: the
 * array grows only with entries actually present), then checks it against the member: segments
 * sorted, disjoint, inside realsize, their block-padded lengths matching storedSize - mapBytes.
 */
export async function parseSparseMap(readBlock: () => Promise<Buffer>, storedSize: number, realSize: number, dataOffset: number): Promise<ParsedSparseMap> {
  const numbers: number[] = [];
  let count = -1;
  let mapBytes = 0;
  let cur = 0;
  let digits = 0;
  for (;;) {
    if (mapBytes + BLOCK_SIZE > storedSize) throw sparseError(`map runs past the member's stored size of ${storedSize}`, dataOffset, { storedSize });
    const block = await readBlock();
    mapBytes += BLOCK_SIZE;
    for (let i = 0; i < block.length; i++) {
      const c = block[i]!;
      if (c >= 0x30 && c <= 0x39) {
        if (++digits > SPARSE_LIMITS.maxDigits) throw sparseError('a number has too many digits', dataOffset);
        cur = cur * 10 + (c - 0x30);
        continue;
      }
      if (c !== 0x0a || digits === 0) throw sparseError(`byte 0x${c.toString(16)} where a decimal number or newline belongs`, dataOffset, { at: mapBytes - BLOCK_SIZE + i });
      if (!Number.isSafeInteger(cur)) throw sparseError('a number is past 2^53', dataOffset);
      if (count < 0) {
        if (cur > SPARSE_LIMITS.maxEntries) {
          throw new CorruptStructureError('E_TAR_BOUND', `sparse map at ${dataOffset}: ${cur} entries exceed the limit of ${SPARSE_LIMITS.maxEntries}`, {
            structure: 'GNU sparse 1.0 map',
            field: 'count',
            value: cur,
            limit: SPARSE_LIMITS.maxEntries,
            offset: dataOffset,
          });
        }
        count = cur;
      } else numbers.push(cur);
      cur = 0;
      digits = 0;
      if (numbers.length === count * 2) {
        // The rest of this block is padding.
        for (let j = i + 1; j < block.length; j++) if (block[j] !== 0) throw sparseError('bytes after the map in its last block', dataOffset);
        return { segments: checkSegments(numbers, storedSize - mapBytes, realSize, dataOffset), mapBytes };
      }
    }
  }
}

function checkSegments(numbers: number[], dataBytes: number, realSize: number, dataOffset: number): SparseSegment[] {
  const segments: SparseSegment[] = [];
  let end = 0;
  for (let i = 0; i < numbers.length; i += 2) {
    const offset = numbers[i]!;
    const length = numbers[i + 1]!;
    if (offset < end) throw sparseError(`segment ${i / 2} at ${offset} overlaps or precedes the previous one ending at ${end}`, dataOffset);
    if (offset + length > realSize) throw sparseError(`segment ${i / 2} (${offset}+${length}) ends past realsize ${realSize}`, dataOffset);
    end = offset + length;
    segments.push({ offset, length });
  }
  // Stored: each segment padded to a block, the last one's padding optional (see above).
  const max = storedBytes(segments);
  const lastData = [...segments].reverse().find((s) => s.length > 0);
  const min = lastData ? max - (padToBlock(lastData.length) - lastData.length) : 0;
  if (dataBytes < min || dataBytes > max) throw sparseError(`segments need ${min}..${max} stored bytes but the member stores ${dataBytes} after the map`, dataOffset, { min, max, dataBytes });
  return segments;
}

/** Bytes the segments occupy after the map, each padded to a block. */
export function storedBytes(segments: readonly SparseSegment[]): number {
  return segments.reduce((a, s) => a + padToBlock(s.length), 0);
}

/** Validates a writer's segments and adds the final (size, 0) entry when the file ends in a hole. */
export function normalizeSparseSegments(segments: readonly SparseSegment[], size: number): SparseSegment[] | string {
  const out: SparseSegment[] = [];
  let end = 0;
  for (const [i, s] of segments.entries()) {
    if (!Number.isSafeInteger(s.offset) || !Number.isSafeInteger(s.length) || s.offset < 0 || s.length < 0) return `segment ${i} is not a non-negative integer range`;
    if (s.offset < end) return `segment ${i} at ${s.offset} overlaps or precedes the previous one ending at ${end}`;
    if (s.offset + s.length > size) return `segment ${i} (${s.offset}+${s.length}) ends past the size ${size}`;
    end = s.offset + s.length;
    out.push({ offset: s.offset, length: s.length });
  }
  if (out.length > SPARSE_LIMITS.maxEntries) return `${out.length} segments exceed the reader's limit of ${SPARSE_LIMITS.maxEntries}`;
  const last = out[out.length - 1];
  if (!(last && last.length === 0 && last.offset === size)) out.push({ offset: size, length: 0 });
  return out;
}
