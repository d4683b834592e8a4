// Prints the 64 KiB-aligned ranges ("offset length" per line) where two equal-sized raw images
// differ: what a snapshot delta made by a running guest would hold.
import { openSync, readSync, fstatSync } from 'node:fs';
const [a, b] = process.argv.slice(2).map((p) => openSync(p, 'r'));
const size = fstatSync(a).size;
const C = 64 * 1024, ba = Buffer.alloc(C), bb = Buffer.alloc(C);
let start = -1;
for (let off = 0; off <= size; off += C) {
  let differs = false;
  if (off < size) {
    const n = Math.min(C, size - off);
    readSync(a, ba, 0, n, off); readSync(b, bb, 0, n, off);
    differs = !ba.subarray(0, n).equals(bb.subarray(0, n));
  }
  if (differs && start < 0) start = off;
  if (!differs && start >= 0) { console.log(`${start} ${Math.min(off, size) - start}`); start = -1; }
}
