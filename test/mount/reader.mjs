// One reader of test/mount/mount.test.ts's parallel test: for SECONDS, random ranges of random files,
// read through the snapferry mount and through the oracle mount, compared byte for byte.
// Prints {reads, bytes, mismatches} as JSON. Usage: node reader.mjs PAIRS.json SECONDS SEED
import { openSync, readSync, fstatSync, closeSync, readFileSync } from 'node:fs';

const [pairsFile, secondsArg, seedArg] = process.argv.slice(2);
const pairs = JSON.parse(readFileSync(pairsFile, 'utf8'));
let s = Number(seedArg) >>> 0 || 1;
const rand = () => {
  // xorshift32
  s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
  return s / 2 ** 32;
};
const until = Date.now() + Number(secondsArg) * 1000;
const a = Buffer.alloc(1 << 20);
const b = Buffer.alloc(1 << 20);
let reads = 0;
let bytes = 0;
const mismatches = [];
while (Date.now() < until && mismatches.length < 10) {
  const p = pairs[Math.floor(rand() * pairs.length)];
  const fo = openSync(p.ours, 'r');
  const fw = openSync(p.oracle, 'r');
  try {
    const size = fstatSync(fw).size;
    for (let i = 0; i < 16; i++) {
      const len = rand() < 0.8 ? 4096 : 1 + Math.floor(rand() * (1 << 20));
      const off = Math.floor(rand() * size);
      const n1 = readSync(fo, a, 0, len, off);
      const n2 = readSync(fw, b, 0, len, off);
      reads++;
      bytes += n1;
      if (n1 !== n2 || !a.subarray(0, n1).equals(b.subarray(0, n2))) {
        mismatches.push(`${p.ours} @${off}+${len}: ${n1} vs ${n2} bytes${n1 === n2 ? ', contents differ' : ''}`);
        break;
      }
    }
  } finally {
    closeSync(fo);
    closeSync(fw);
  }
}
process.stdout.write(JSON.stringify({ reads, bytes, mismatches }));
