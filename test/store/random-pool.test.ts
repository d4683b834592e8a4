/**
 * The pooled randomFillSync of the SFTP store's thread (src/store/random-pool.ts): small fills come
 * from a CSPRNG pool, each byte given once, exactly where asked; anything else goes to Node's own.
 */
import t from 'tap';
import crypto from 'node:crypto';
import { POOLED_MAX, poolSmallRandomFills } from '../../src/store/random-pool.js';

const real = crypto.randomFillSync;
poolSmallRandomFills();

t.test('it replaces randomFillSync (once; installing twice changes nothing)', async (t) => {
  t.not(crypto.randomFillSync, real, 'replaced');
  const installed = crypto.randomFillSync;
  poolSmallRandomFills();
  t.equal(crypto.randomFillSync, installed, 'the second install is a no-op');
});

t.test('a small fill writes exactly [offset, offset+size) and nothing else', async (t) => {
  for (const [offset, size] of [[5, 4], [0, 19], [100, POOLED_MAX], [7, 0]] as const) {
    const buf = Buffer.alloc(400, 0xaa);
    t.equal(crypto.randomFillSync(buf, offset, size), buf, 'returns the buffer');
    t.ok(buf.subarray(0, offset).every((b) => b === 0xaa) && buf.subarray(offset + size).every((b) => b === 0xaa), `offset ${offset} size ${size}: the bytes around are untouched`);
  }
  const whole = Buffer.alloc(32);
  crypto.randomFillSync(whole);
  t.not(whole.toString('hex'), '0'.repeat(64), 'no offset or size: the whole buffer');
});

t.test('pooled bytes are never given twice, across pool refills, and look uniform', async (t) => {
  const seen = new Set<string>();
  let repeats = 0;
  const counts = new Array<number>(256).fill(0);
  // 16-byte fills over 3 MiB: ~48 refills of the 64 KiB pool
  for (let i = 0; i < 3 * 65536; i++) {
    const b = Buffer.alloc(16);
    crypto.randomFillSync(b, 0, 16);
    const k = b.toString('hex');
    if (seen.has(k)) repeats++;
    seen.add(k);
    for (const x of b) counts[x]!++;
  }
  t.equal(repeats, 0, 'no 16-byte fill repeats another');
  const expected = (3 * 65536 * 16) / 256;
  const worst = Math.max(...counts.map((c) => Math.abs(c - expected) / expected));
  t.ok(worst < 0.05, `every byte value within 5% of its expected count (worst ${(worst * 100).toFixed(2)}%)`);
});

t.test('large fills, bad arguments and typed arrays go to Node own randomFillSync', async (t) => {
  const big = Buffer.alloc(POOLED_MAX + 1);
  crypto.randomFillSync(big);
  t.ok(big.some((b) => b !== 0), 'a fill past POOLED_MAX is filled');
  const u8 = new Uint8Array(16);
  crypto.randomFillSync(u8);
  t.ok(u8.some((b) => b !== 0), 'a Uint8Array is filled');
  t.throws(() => crypto.randomFillSync(Buffer.alloc(4), 2, 8), { code: 'ERR_OUT_OF_RANGE' }, 'past the end: Node own range error');
  t.throws(() => crypto.randomFillSync(Buffer.alloc(4), -1, 2), { code: 'ERR_OUT_OF_RANGE' }, 'a negative offset: Node own range error');
});
