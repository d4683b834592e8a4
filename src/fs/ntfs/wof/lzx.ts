/**
 * LZX as WIM archives and WOF's LZX format use it: a 32 KiB window, every chunk (<= 32 KiB)
 * compressed on its own, no Intel E8 header bit (E8 translation is always on, with a "file size"
 * of 12000000), and a block size field that is one bit "32768" or 16 bits. Reference: [MS-PATCH]
 * 2.x (LZX DELTA without the delta) and the WIM variant as wimlib documents it.
 *
 * A chunk is a sequence of blocks. Each block header is 3 bits of type (1 verbatim, 2 aligned
 * offset, 3 uncompressed) and the block size. Verbatim and aligned blocks carry the main code
 * (256 literals + 30 offset slots x 8 length headers) and the length code (249 symbols) as deltas
 * from the previous block's lengths in this chunk, each coded by a 20-symbol pre-code; an aligned
 * block first gives an 8-symbol code for the low 3 bits of long offsets. An uncompressed block
 * aligns to 16 bits, gives the three repeat offsets (R0-R2) as u32s, then raw bytes (+1 pad byte
 * when odd). Matches use offset slots 0-2 for the repeat offsets (swapping with R0), others for
 * explicit offsets (which push R0-R2 down).
 *
 * Hostile input: the output is exactly `outSize` bytes or a typed error; no read past the input,
 * no write past the output, every loop bounded by the output or a code's symbol count.
 */
import { CorruptStructureError } from '../../../util/errors.js';
import { BitReader, HuffmanDecoder } from './huffman.js';
import { lzCopy } from './lzcopy.js';

export const LZX_WINDOW_SIZE = 32768;
export const LZX_NUM_CHARS = 256;
export const LZX_MIN_MATCH_LEN = 2;
export const LZX_MAX_MATCH_LEN = 257;
export const LZX_NUM_PRIMARY_LENS = 7;
export const LZX_NUM_LEN_HEADERS = LZX_NUM_PRIMARY_LENS + 1;
/** Offset slots for a 32 KiB window. */
export const LZX_NUM_OFFSET_SLOTS = 30;
export const LZX_MAINCODE_NUM_SYMBOLS = LZX_NUM_CHARS + LZX_NUM_OFFSET_SLOTS * LZX_NUM_LEN_HEADERS;
export const LZX_LENCODE_NUM_SYMBOLS = LZX_MAX_MATCH_LEN - LZX_MIN_MATCH_LEN + 1 - LZX_NUM_PRIMARY_LENS;
export const LZX_PRECODE_NUM_SYMBOLS = 20;
export const LZX_ALIGNEDCODE_NUM_SYMBOLS = 8;
export const LZX_BLOCKTYPE_VERBATIM = 1;
export const LZX_BLOCKTYPE_ALIGNED = 2;
export const LZX_BLOCKTYPE_UNCOMPRESSED = 3;
/** The block size a header's single "default" bit stands for. */
export const LZX_DEFAULT_BLOCK_SIZE = 32768;
/** The E8 translation's fixed "file size" in WIM/WOF LZX. */
export const LZX_E8_FILE_SIZE = 12000000;

/** First offset of each slot (the +2 bias of explicit offsets is removed after adding the extra bits). */
const OFFSET_SLOT_BASE = new Int32Array(LZX_NUM_OFFSET_SLOTS);
const EXTRA_OFFSET_BITS = new Uint8Array(LZX_NUM_OFFSET_SLOTS);
for (let s = 0, base = 0; s < LZX_NUM_OFFSET_SLOTS; s++) {
  OFFSET_SLOT_BASE[s] = base;
  EXTRA_OFFSET_BITS[s] = s < 4 ? 0 : (s >> 1) - 1;
  base += 1 << EXTRA_OFFSET_BITS[s]!;
}

export class LzxDecoder {
  private readonly main = new HuffmanDecoder(LZX_MAINCODE_NUM_SYMBOLS, 11, 16, 'LZX main');
  private readonly length = new HuffmanDecoder(LZX_LENCODE_NUM_SYMBOLS, 10, 16, 'LZX length');
  private readonly aligned = new HuffmanDecoder(LZX_ALIGNEDCODE_NUM_SYMBOLS, 7, 7, 'LZX aligned');
  private readonly pre = new HuffmanDecoder(LZX_PRECODE_NUM_SYMBOLS, 8, 15, 'LZX pre-code');
  private readonly mainLens = new Uint8Array(LZX_MAINCODE_NUM_SYMBOLS);
  private readonly lengthLens = new Uint8Array(LZX_LENCODE_NUM_SYMBOLS);
  private readonly alignedLens = new Uint8Array(LZX_ALIGNEDCODE_NUM_SYMBOLS);
  private readonly preLens = new Uint8Array(LZX_PRECODE_NUM_SYMBOLS);

  /** Decompresses one chunk `src` into exactly `outSize` (<= 32 KiB) bytes of `out` (or a new buffer). */
  decompress(src: Uint8Array, outSize: number, out: Uint8Array = new Uint8Array(outSize)): Uint8Array {
    const fail = (msg: string) => new CorruptStructureError('E_LZX', `LZX: ${msg}`, { structure: 'LZX', inputSize: src.length, outputSize: outSize });
    if (!Number.isSafeInteger(outSize) || outSize < 0 || outSize > LZX_WINDOW_SIZE) throw fail(`output size ${outSize} is outside 0..${LZX_WINDOW_SIZE}`);
    if (out.length < outSize) throw fail(`output buffer of ${out.length} bytes is smaller than ${outSize}`);
    if (outSize === 0) return out.subarray(0, 0);
    const br = new BitReader(src, 0, src.length, fail);
    // lengths start at zero for the delta coding, once per chunk
    this.mainLens.fill(0);
    this.lengthLens.fill(0);
    let r0 = 1, r1 = 1, r2 = 1;
    let op = 0;
    while (op < outSize) {
      br.ensure(4);
      const type = br.read(3);
      const size = br.read(1) ? LZX_DEFAULT_BLOCK_SIZE : br.read(16);
      if (size < 1 || size > outSize - op) throw fail(`block of ${size} bytes at output position ${op} does not fit the ${outSize}-byte output`);
      if (type === LZX_BLOCKTYPE_UNCOMPRESSED) {
        // align to 16 bits; when already aligned a whole unit is skipped
        br.ensure(1);
        br.align();
        r0 = br.u32();
        r1 = br.u32();
        r2 = br.u32();
        if (r0 === 0 || r1 === 0 || r2 === 0) throw fail('uncompressed block header has a zero repeat offset');
        if (src.length - br.pos < size) throw fail(`uncompressed block of ${size} bytes runs past the end of the input`);
        out.set(src.subarray(br.pos, br.pos + size), op);
        br.pos += size;
        if (size & 1 && br.pos < src.length) br.pos++;
        op += size;
        continue;
      }
      if (type !== LZX_BLOCKTYPE_VERBATIM && type !== LZX_BLOCKTYPE_ALIGNED) throw fail(`block type ${type} is not verbatim, aligned or uncompressed`);
      const isAligned = type === LZX_BLOCKTYPE_ALIGNED;
      if (isAligned) {
        for (let i = 0; i < LZX_ALIGNEDCODE_NUM_SYMBOLS; i++) this.alignedLens[i] = br.read(3);
        this.aligned.build(this.alignedLens, fail);
      }
      this.readLens(br, this.mainLens, 0, LZX_NUM_CHARS, fail);
      this.readLens(br, this.mainLens, LZX_NUM_CHARS, LZX_MAINCODE_NUM_SYMBOLS, fail);
      this.main.build(this.mainLens, fail);
      this.readLens(br, this.lengthLens, 0, LZX_LENCODE_NUM_SYMBOLS, fail);
      this.length.build(this.lengthLens, fail);

      const blockEnd = op + size;
      const main = this.main;
      while (op < blockEnd) {
        let sym = main.decode(br, fail);
        if (sym < LZX_NUM_CHARS) {
          out[op++] = sym;
          continue;
        }
        sym -= LZX_NUM_CHARS;
        let len = sym & 7;
        const slot = sym >>> 3;
        if (len === LZX_NUM_PRIMARY_LENS) len += this.length.decode(br, fail);
        len += LZX_MIN_MATCH_LEN;
        let offset: number;
        if (slot < 3) {
          // repeat offsets: the used one swaps with R0
          if (slot === 0) offset = r0;
          else if (slot === 1) {
            offset = r1;
            r1 = r0;
            r0 = offset;
          } else {
            offset = r2;
            r2 = r0;
            r0 = offset;
          }
        } else {
          const extra = EXTRA_OFFSET_BITS[slot]!;
          offset = OFFSET_SLOT_BASE[slot]!;
          if (isAligned && extra >= 3) {
            offset += br.read(extra - 3) << 3;
            offset += this.aligned.decode(br, fail);
          } else offset += br.read(extra);
          offset -= 2;
          r2 = r1;
          r1 = r0;
          r0 = offset;
        }
        if (len > blockEnd - op) throw fail(`match of ${len} bytes at output position ${op} runs past its block`);
        if (offset > op) throw fail(`match offset ${offset} at output position ${op} reaches before the chunk`);
        lzCopy(out, op, offset, len);
        op += len;
      }
    }
    br.checkNotOverrun();
    undoE8(out, outSize);
    return out.subarray(0, outSize);
  }

  /**
   * Codeword lengths [from, to) of `lens`, coded as deltas from their previous values by the
   * pre-code: 0-16 = (old - value) mod 17; 17 = 4-19 zeros; 18 = 20-51 zeros; 19 = 4-5 copies of
   * one delta-coded length. A run past `to` is corrupt.
   */
  private readLens(br: BitReader, lens: Uint8Array, from: number, to: number, fail: (msg: string) => CorruptStructureError): void {
    for (let i = 0; i < LZX_PRECODE_NUM_SYMBOLS; i++) this.preLens[i] = br.read(4);
    const pre = this.pre;
    pre.build(this.preLens, fail);
    let i = from;
    while (i < to) {
      const sym = pre.decode(br, fail);
      if (sym < 17) {
        lens[i] = (lens[i]! - sym + 17) % 17;
        i++;
        continue;
      }
      let run: number;
      let value: number;
      if (sym === 17) {
        run = 4 + br.read(4);
        value = 0;
      } else if (sym === 18) {
        run = 20 + br.read(5);
        value = 0;
      } else {
        run = 4 + br.read(1);
        const d = pre.decode(br, fail);
        if (d > 16) throw fail(`pre-code run of equal lengths has delta symbol ${d}`);
        value = (lens[i]! - d + 17) % 17;
      }
      if (run > to - i) throw fail(`pre-code run of ${run} lengths overruns the ${to - from} codeword lengths`);
      lens.fill(value, i, i + run);
      i += run;
    }
  }
}

/**
 * Undoes the encoder's E8 preprocessing: x86 CALL targets (a 0xE8 byte then a 32-bit relative
 * offset) were made absolute; the last 10 bytes are never translated.
 */
function undoE8(out: Uint8Array, size: number): void {
  if (size <= 10) return;
  const limit = size - 10;
  let i = out.indexOf(0xe8);
  while (i >= 0 && i < limit) {
    const abs = out[i + 1]! | (out[i + 2]! << 8) | (out[i + 3]! << 16) | (out[i + 4]! << 24);
    let rel: number | undefined;
    if (abs >= 0) {
      if (abs < LZX_E8_FILE_SIZE) rel = abs - i;
    } else if (abs >= -i) rel = abs + LZX_E8_FILE_SIZE;
    if (rel !== undefined) {
      out[i + 1] = rel & 0xff;
      out[i + 2] = (rel >>> 8) & 0xff;
      out[i + 3] = (rel >>> 16) & 0xff;
      out[i + 4] = (rel >>> 24) & 0xff;
    }
    i = out.indexOf(0xe8, i + 5);
  }
}

export function decompressLzx(src: Uint8Array, outSize: number): Uint8Array {
  return new LzxDecoder().decompress(src, outSize);
}
