import t from 'tap';
import { createCipheriv, randomBytes } from 'node:crypto';
import { released, reclaimCollections, RECLAIM_BYTES } from '../../src/util/reclaim.js';

/**
 * The garbage reclaim() exists for: one fresh 64 KiB buffer per age chunk from node:crypto. Without
 * released() this loop held ~32 MiB of dead array buffers here (V8's own external-memory trigger);
 * with it, about RECLAIM_BYTES.
 */
async function pump(chunks: number, reclaim: boolean): Promise<number> {
  const key = randomBytes(32);
  const data = randomBytes(64 * 1024);
  let max = 0;
  for (let i = 0; i < chunks; i++) {
    const nonce = Buffer.alloc(12);
    nonce.writeUInt32BE(i, 8);
    const c = createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: 16 });
    const out = c.update(data);
    c.final();
    if (reclaim) released(out.length);
    if (i % 4 === 0) await new Promise((r) => setImmediate(r));
    max = Math.max(max, process.memoryUsage().arrayBuffers);
  }
  return max;
}

t.test('released() bounds the dead buffers a byte pump leaves behind', async (t) => {
  const before = reclaimCollections();
  const max = await pump(4000, true);
  const runs = reclaimCollections() - before;
  t.ok(runs >= Math.floor((4000 * 64 * 1024) / RECLAIM_BYTES) - 1, `a minor collection every ${RECLAIM_BYTES} bytes released (${runs})`);
  t.ok(max < 3 * RECLAIM_BYTES, `array buffers peaked at ${(max / 2 ** 20).toFixed(1)} MiB, under ${(3 * RECLAIM_BYTES) / 2 ** 20} MiB`);
  const without = await pump(4000, false);
  t.comment(`the same loop without released(): ${(without / 2 ** 20).toFixed(1)} MiB`);
});
