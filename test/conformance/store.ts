/**
 * The store contract (src/store/types.ts), stated once: every store passes this suite (restic's
 * internal/backend/test habit). `make` returns a fresh, empty store; `dirOf` the local directory
 * that holds its objects (the SFTP tests' sshd is on this machine), so the suite can look at the
 * bytes a store has really handed to its sink while a put runs.
 */
import type { Test } from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Store } from '../../src/store/types.js';
import { prng } from '../helpers/images.js';

async function putAll(s: Store, name: string, body: Buffer, piece = 100_003): Promise<void> {
  const h = await s.put(name);
  for (let at = 0; at < body.length; at += piece) await h.write(body.subarray(at, at + piece));
  await h.end();
}

/** Size of the partial upload(s) of `name` in `dir` (0 if none yet). */
function partialBytes(dir: string, name: string): number {
  let total = 0;
  for (const f of readdirSync(dir)) if (f.startsWith(`${name}.partial-`)) total += statSync(join(dir, f)).size;
  return total;
}

export async function storeConformance(t: Test, make: () => Promise<Store>, dirOf: (s: Store) => string): Promise<void> {
  const s = await make();
  const dir = dirOf(s);
  t.teardown(() => s.close());

  await t.test('put then get: sizes 0, 1, 1 MiB + 3, 20 MiB, byte for byte', async (t) => {
    for (const size of [0, 1, (1 << 20) + 3, 20 << 20]) {
      const body = randomBytes(size);
      const name = `objects/size-${size}`;
      await putAll(s, name, body);
      const st = await s.stat(name);
      t.equal(st?.size, size, `${name}: stat gives its size`);
      if (size) t.ok((await s.get(name, 0, size)).equals(body), `${name}: get of the whole equals`);
      const ra = await s.open(name);
      t.equal(ra.size, size, 'open gives the size');
      const rand = prng(size + 1);
      let ok = true;
      for (let i = 0; i < 50 && size > 0; i++) {
        const off = Math.floor(rand() * size);
        const len = Math.min(size - off, 1 + Math.floor(rand() * 300_000));
        if (!(await ra.read(off, len)).equals(body.subarray(off, off + len))) ok = false;
      }
      await ra.close();
      t.ok(ok, `${name}: 50 random ranged reads equal`);
    }
  });

  await t.test('a range past the end is a typed error, not a short buffer', async (t) => {
    await putAll(s, 'objects/short', Buffer.from('0123456789'));
    await t.rejects(s.get('objects/short', 5, 6), { code: 'E_TRUNCATED' });
    await t.rejects(s.get('objects/short', 11, 0), { code: 'E_TRUNCATED' }, 'an empty range past the end too');
    t.equal((await s.get('objects/short', 10, 0)).length, 0, 'an empty range at the end is empty');
    const f = await s.open('objects/short');
    await t.rejects(f.read(8, 3), { code: 'E_TRUNCATED' }, 'through open() as well');
    await f.close();
    await t.rejects(s.get('objects/missing', 0, 1), { code: 'E_STORE_NOT_FOUND' }, 'get of a missing object');
    await t.rejects(s.open('objects/missing'), { code: 'E_STORE_NOT_FOUND' }, 'open of a missing object');
    await t.rejects(s.get('objects/short', -1, 2), { code: 'E_STORE_RANGE' });
  });

  await t.test('a put in progress or aborted is never listed; the object appears at end()', async (t) => {
    const h = await s.put('objects/in-progress');
    await h.write(randomBytes(1000));
    t.notOk((await s.list('objects/')).some((o) => o.name.includes('in-progress')), 'not listed while in progress');
    t.equal(await s.stat('objects/in-progress'), null, 'stat does not see it');
    await h.abort();
    t.notOk((await s.list()).some((o) => o.name.includes('in-progress')), 'not listed after abort');
    const h2 = await s.put('objects/completed');
    await h2.write(Buffer.from('x'));
    await h2.end();
    t.ok((await s.list('objects/')).some((o) => o.name === 'objects/completed'), 'listed after end');
  });

  await t.test('objects are immutable: a second put of a name is refused', async (t) => {
    await t.rejects(s.put('objects/completed'), { code: 'E_STORE_EXISTS' });
    // and a racing put that finishes second does not replace the first
    const a = await s.put('objects/race');
    const b = await s.put('objects/race');
    await a.write(Buffer.from('first'));
    await b.write(Buffer.from('second'));
    await a.end();
    await t.rejects(b.end(), { code: 'E_STORE_EXISTS' }, 'the second finisher fails');
    t.equal((await s.get('objects/race', 0, 5)).toString(), 'first', 'the first stays');
    t.notOk((await s.list('objects/')).some((o) => o.name.startsWith('objects/race') && o.name !== 'objects/race'), 'no partial left listed');
  });

  await t.test('names that could escape are refused', async (t) => {
    const bad = ['../x', '/abs', 'a//b', 'a/./b', 'a/../b', '', 'nul\0byte', 'trailing/', 'x.partial-0123456789abcdef', 'back\\slash'];
    for (const n of bad) await t.rejects(s.put(n), { code: 'E_STORE_NAME' }, `put ${JSON.stringify(n)}`);
    for (const n of bad) await t.rejects(s.get(n, 0, 1), { code: 'E_STORE_NAME' }, `get ${JSON.stringify(n)}`);
    await t.rejects(s.stat('../etc/passwd'), { code: 'E_STORE_NAME' });
    await t.rejects(s.delete('../x'), { code: 'E_STORE_NAME' });
    await t.rejects(s.list('../'), { code: 'E_STORE_NAME' });
  });

  await t.test('list with a prefix, delete, stat of a missing object', async (t) => {
    await putAll(s, 'other/one', Buffer.from('1'));
    const objs = await s.list('objects/');
    t.ok(objs.length > 0 && objs.every((o) => o.name.startsWith('objects/')), 'list honours the prefix');
    t.ok((await s.list()).some((o) => o.name === 'other/one'), 'list of everything');
    await s.delete('other/one');
    t.equal(await s.stat('other/one'), null, 'deleted');
    t.equal(await s.stat('never/was'), null, 'stat of a missing object is null');
    await s.delete('never/was');
    t.pass('delete of a missing object resolves');
    t.same((await s.list('objects/size-1')).map((o) => o.name), ['objects/size-1', 'objects/size-1048579'], 'a prefix that is not a directory');
  });

  await t.test('concurrent puts of different names', async (t) => {
    const bodies = Array.from({ length: 4 }, () => randomBytes(3 << 20));
    await Promise.all(bodies.map((b, i) => putAll(s, `concurrent/${i}`, b, 65536)));
    for (const [i, b] of bodies.entries()) t.ok((await s.get(`concurrent/${i}`, 0, b.length)).equals(b), `concurrent/${i} equals`);
  });

  await t.test('backpressure: write() resolves only while the store holds few unsunk bytes', async (t) => {
    // One buffer, refilled after every write: also proves a store copies what it still needs.
    const size = 32 << 20;
    const chunk = Buffer.allocUnsafe(256 << 10);
    const rand = prng(7);
    const sha = createHash('sha256');
    const before = process.memoryUsage().arrayBuffers;
    let maxAhead = 0;
    let maxMem = 0;
    const h = await s.put('backpressure/obj');
    for (let at = 0; at < size; at += chunk.length) {
      for (let i = 0; i < chunk.length; i += 4) chunk.writeUInt32LE((rand() * 2 ** 32) >>> 0, i);
      sha.update(chunk);
      await h.write(chunk);
      maxAhead = Math.max(maxAhead, h.written - partialBytes(join(dir, 'backpressure'), 'obj'));
      maxMem = Math.max(maxMem, process.memoryUsage().arrayBuffers - before);
    }
    t.equal(h.written, size, 'written counts every byte');
    t.ok(maxAhead <= 4 << 20, `at most 4 MiB accepted ahead of the sink (measured ${(maxAhead / 2 ** 20).toFixed(2)} MiB)`);
    t.ok(maxMem <= 24 << 20, `buffer memory grew by at most 24 MiB for a 32 MiB put (measured ${(maxMem / 2 ** 20).toFixed(1)} MiB)`);
    await h.end();
    const back = createHash('sha256');
    const f = await s.open('backpressure/obj');
    for (let at = 0; at < size; at += 4 << 20) back.update(await f.read(at, 4 << 20));
    await f.close();
    t.equal(back.digest('hex'), sha.digest('hex'), 'the bytes read back equal what was written, though the buffer was reused');
  });
}
