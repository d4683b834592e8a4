/**
 * The LZ77 match copy shared by the XPRESS and LZX decoders. The caller has checked that
 * 1 <= offset <= op and op + length <= out.length. An overlapping match (offset < length) repeats
 * the last `offset` bytes, so it is copied forwards byte by byte (or in doubling runs).
 */
export function lzCopy(out: Uint8Array, op: number, offset: number, length: number): void {
  const src = op - offset;
  if (length <= 16) {
    for (let i = 0; i < length; i++) out[op + i] = out[src + i]!;
    return;
  }
  if (offset >= length) {
    out.copyWithin(op, src, src + length);
    return;
  }
  if (offset === 1) {
    out.fill(out[src]!, op, op + length);
    return;
  }
  // overlapping: [src, op + done) repeats with period `offset` and done stays a multiple of it, so
  // each step can copy everything written so far (the copied amount doubles)
  let done = 0;
  while (done < length) {
    const n = Math.min(done + offset, length - done);
    out.copyWithin(op + done, src, src + n);
    done += n;
  }
}
