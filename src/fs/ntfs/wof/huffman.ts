/**
 * What XPRESS Huffman ([MS-XCA] 2.1-2.2) and LZX (the WIM/WOF variant, [MS-PATCH] LZX DELTA minus
 * the delta) share: a bit stream read as little-endian 16-bit units, most significant bit first,
 * with literal bytes interleaved at the byte position after the units already loaded; and
 * canonical prefix codes given by their codeword lengths.
 *
 * Both treat the input as hostile. Peeking past the input yields zero bits (a valid stream's last
 * codeword may be shorter than the peek), but *consuming* one of those bits, or reading an
 * interleaved byte past the end, is corrupt. A code whose lengths over- or under-fill the code
 * space is refused when it is built, except the all-zero (empty) code, which the formats allow for
 * codes a block never uses; decoding a symbol with it is corrupt.
 */
import { CorruptStructureError } from '../../../util/errors.js';

export class BitReader {
  /** Next unread byte of `src`. */
  pos: number;
  /** Up to 32 bits, left-justified: the next bit is bit 31. */
  buf = 0;
  /** How many bits of `buf` are valid. */
  bits = 0;
  /** Zero bits appended past the end of the input (allowed to be peeked, never consumed). */
  private phantom = 0;

  constructor(
    readonly src: Uint8Array,
    start: number,
    readonly end: number,
    private readonly fail: (msg: string) => CorruptStructureError,
  ) {
    this.pos = start;
  }

  /** Makes at least n (<= 16) bits available. */
  ensure(n: number): void {
    if (this.bits >= n) return;
    let unit = 0;
    if (this.end - this.pos >= 2) {
      unit = this.src[this.pos]! | (this.src[this.pos + 1]! << 8);
      this.pos += 2;
    } else {
      // a phantom unit: fine to peek at, but if earlier phantom bits were already consumed the stream is short
      if (this.phantom > this.bits) throw this.fail('bit stream runs past the end of the input');
      this.phantom += 16;
    }
    this.buf = (this.buf | (unit << (16 - this.bits))) >>> 0;
    this.bits += 16;
  }

  /** Removes and returns the next n (0..16) bits. */
  read(n: number): number {
    if (n === 0) return 0;
    this.ensure(n);
    const v = this.buf >>> (32 - n);
    this.buf = (this.buf << n) >>> 0;
    this.bits -= n;
    return v;
  }

  /** Drops n bits already made available by ensure(). */
  skip(n: number): void {
    this.buf = (this.buf << n) >>> 0;
    this.bits -= n;
  }

  /** Discards the buffered bits: the stream continues at the next whole 16-bit unit. */
  align(): void {
    this.buf = 0;
    this.bits = 0;
  }

  /** An interleaved literal byte (at the byte position after the loaded units). */
  byte(): number {
    if (this.pos >= this.end) throw this.fail('a literal byte lies past the end of the input');
    return this.src[this.pos++]!;
  }

  u16(): number {
    if (this.end - this.pos < 2) throw this.fail('a 16-bit field lies past the end of the input');
    const v = this.src[this.pos]! | (this.src[this.pos + 1]! << 8);
    this.pos += 2;
    return v;
  }

  u32(): number {
    if (this.end - this.pos < 4) throw this.fail('a 32-bit field lies past the end of the input');
    const v = (this.src[this.pos]! | (this.src[this.pos + 1]! << 8) | (this.src[this.pos + 2]! << 16) | (this.src[this.pos + 3]! << 24)) >>> 0;
    this.pos += 4;
    return v;
  }

  /** Throws if any phantom bit past the input was consumed. */
  checkNotOverrun(): void {
    if (this.phantom > this.bits) throw this.fail('bit stream runs past the end of the input');
  }
}

/**
 * A table-driven decoder for one canonical prefix code. The first `tableBits` bits of the input
 * index the primary table; codewords longer than that continue in a sub-table of
 * 2^(maxLen - tableBits) entries per distinct prefix. Entry: (symbol << 5) | length, length >= 1;
 * 0 is "no codeword" (only in an empty code); a negative entry is ~(sub-table start).
 */
export class HuffmanDecoder {
  readonly table: Int32Array;
  private readonly count: Uint16Array;
  private readonly nextCode: Uint32Array;
  private readonly subBits: number;
  private readonly subMask: number;

  constructor(
    readonly numSymbols: number,
    readonly tableBits: number,
    readonly maxLen: number,
    private readonly name: string,
  ) {
    this.subBits = maxLen - tableBits;
    this.subMask = (1 << this.subBits) - 1;
    // the primary table plus at most one sub-table per symbol longer than tableBits
    this.table = new Int32Array((1 << tableBits) + numSymbols * (1 << this.subBits));
    this.count = new Uint16Array(maxLen + 1);
    this.nextCode = new Uint32Array(maxLen + 2);
  }

  /** Builds the table from codeword lengths (0 = unused); throws unless they form a complete (or empty) prefix code. */
  build(lens: Uint8Array, fail: (msg: string) => CorruptStructureError): void {
    const { numSymbols: n, tableBits, maxLen, table, count, nextCode, subBits } = this;
    count.fill(0);
    for (let s = 0; s < n; s++) {
      const l = lens[s]!;
      if (l > maxLen) throw fail(`${this.name} code: codeword length ${l} exceeds ${maxLen}`);
      count[l]!++;
    }
    let left = 1;
    for (let l = 1; l <= maxLen; l++) {
      left = left * 2 - count[l]!;
      if (left < 0) throw fail(`${this.name} code is over-subscribed`);
    }
    if (left !== 0) {
      if (count[0] === n) {
        table.fill(0, 0, 1 << tableBits); // the empty code: any use of it is corrupt
        return;
      }
      throw fail(`${this.name} code is incomplete`);
    }
    table.fill(0, 0, 1 << tableBits);
    // canonical codes: shorter first, then by symbol
    let code = 0;
    for (let l = 1; l <= maxLen; l++) {
      nextCode[l] = code;
      code = (code + count[l]!) << 1;
    }
    let nextSub = 1 << tableBits;
    for (let s = 0; s < n; s++) {
      const l = lens[s]!;
      if (l === 0) continue;
      const c = nextCode[l]!++;
      if (l <= tableBits) {
        const start = c << (tableBits - l);
        table.fill((s << 5) | l, start, start + (1 << (tableBits - l)));
      } else {
        const prefix = c >>> (l - tableBits);
        let e = table[prefix]!;
        // a primary slot not yet claimed by a short codeword becomes a sub-table pointer;
        // canonical order guarantees no short codeword shares this prefix
        if (e >= 0) {
          e = ~nextSub;
          table[prefix] = e;
          nextSub += 1 << subBits;
        }
        const sub = ~e;
        const tail = c & ((1 << (l - tableBits)) - 1);
        const start = sub + (tail << (maxLen - l));
        table.fill((s << 5) | l, start, start + (1 << (maxLen - l)));
      }
    }
  }

  /** Decodes one symbol. */
  decode(br: BitReader, fail: (msg: string) => CorruptStructureError): number {
    br.ensure(this.maxLen);
    const buf = br.buf;
    let e = this.table[buf >>> (32 - this.tableBits)]!;
    if (e < 0) e = this.table[~e + ((buf >>> (32 - this.maxLen)) & this.subMask)]!;
    const l = e & 31;
    if (l === 0) throw fail(`${this.name} code: a symbol was read with an empty code`);
    br.buf = (buf << l) >>> 0;
    br.bits -= l;
    return e >>> 5;
  }
}
