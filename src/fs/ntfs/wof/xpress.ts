/**
 * XPRESS Huffman ([MS-XCA] 2.1 "Plain LZ77 + Huffman", 2.2 decompression), as WOF's XPRESS4K/8K/16K
 * and WIM use it: one block per chunk (a chunk is at most 64 KiB). A block starts with 256 bytes
 * holding the 512 codeword lengths as nibbles (symbol 2k in the low nibble of byte k, 2k+1 in the
 * high one); then the bit stream of symbols. Symbols 0-255 are literals; 256-511 are matches:
 * bits 0-3 = length header, bits 4-7 = log2 of the offset, whose low bits follow in the stream.
 * A length header of 15 continues in an interleaved byte (+15), and a byte of 255 in a 16-bit
 * length. Matches are at least 3 bytes. The order of the reads (offset bits before the length
 * bytes) is what Windows' and wimlib's encoders produce.
 *
 * Hostile input: the output is exactly `outSize` bytes or a typed error; a match may not reach
 * before the output's start nor past its end; every loop ends because every symbol makes output.
 */
import { CorruptStructureError } from '../../../util/errors.js';
import { BitReader, HuffmanDecoder } from './huffman.js';
import { lzCopy } from './lzcopy.js';

export const XPRESS_NUM_SYMBOLS = 512;
/** The nibble-packed codeword length table that starts every block. */
export const XPRESS_LENGTH_TABLE_BYTES = XPRESS_NUM_SYMBOLS / 2;
export const XPRESS_MAX_CODEWORD_LEN = 15;
export const XPRESS_MIN_MATCH_LEN = 3;
/** Output bytes per Huffman block ([MS-XCA] 2.1): the largest chunk we decode in one block. */
export const XPRESS_BLOCK_SIZE = 65536;

const TABLE_BITS = 11;

/** Reusable decoder state (the Huffman table is the only sizeable allocation; keep one per reader). */
export class XpressDecoder {
  private readonly huffman = new HuffmanDecoder(XPRESS_NUM_SYMBOLS, TABLE_BITS, XPRESS_MAX_CODEWORD_LEN, 'XPRESS');
  private readonly lens = new Uint8Array(XPRESS_NUM_SYMBOLS);

  /** Decompresses `src` (one XPRESS Huffman block) into exactly `outSize` bytes of `out` (or a new buffer). */
  decompress(src: Uint8Array, outSize: number, out: Uint8Array = new Uint8Array(outSize)): Uint8Array {
    const fail = (msg: string) => new CorruptStructureError('E_XPRESS', `XPRESS: ${msg}`, { structure: 'XPRESS', inputSize: src.length, outputSize: outSize });
    if (!Number.isSafeInteger(outSize) || outSize < 0 || outSize > XPRESS_BLOCK_SIZE) throw fail(`output size ${outSize} is outside 0..${XPRESS_BLOCK_SIZE}`);
    if (out.length < outSize) throw fail(`output buffer of ${out.length} bytes is smaller than ${outSize}`);
    if (outSize === 0) return out.subarray(0, 0);
    if (src.length < XPRESS_LENGTH_TABLE_BYTES) throw fail(`${src.length} bytes cannot hold the ${XPRESS_LENGTH_TABLE_BYTES}-byte codeword length table`);
    const lens = this.lens;
    for (let i = 0; i < XPRESS_LENGTH_TABLE_BYTES; i++) {
      const b = src[i]!;
      lens[2 * i] = b & 0x0f;
      lens[2 * i + 1] = b >>> 4;
    }
    const huff = this.huffman;
    huff.build(lens, fail);
    const br = new BitReader(src, XPRESS_LENGTH_TABLE_BYTES, src.length, fail);
    let op = 0;
    while (op < outSize) {
      const sym = huff.decode(br, fail);
      if (sym < 256) {
        out[op++] = sym;
        continue;
      }
      let length = sym & 0x0f;
      const log2Offset = (sym >>> 4) & 0x0f;
      // 16 bits are made available before the offset bits are taken, so the interleaved length
      // bytes come after that unit: where the encoder put them
      br.ensure(16);
      const offset = (1 << log2Offset) | br.read(log2Offset);
      if (length === 0x0f) {
        length += br.byte();
        if (length === 0x0f + 0xff) length = br.u16();
      }
      length += XPRESS_MIN_MATCH_LEN;
      if (offset > op) throw fail(`match offset ${offset} at output position ${op} reaches before the start`);
      if (length > outSize - op) throw fail(`match of ${length} bytes at output position ${op} runs past the ${outSize}-byte output`);
      lzCopy(out, op, offset, length);
      op += length;
    }
    br.checkNotOverrun();
    return out.subarray(0, outSize);
  }
}

/** One-shot convenience for tests and tools. */
export function decompressXpress(src: Uint8Array, outSize: number): Uint8Array {
  return new XpressDecoder().decompress(src, outSize);
}
