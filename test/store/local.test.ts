/** The local directory store passes the store conformance suite; a missing location is created only when asked. */
import t from 'tap';
import { mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LocalStore } from '../../src/store/local.js';
import { openStore } from '../../src/store/open.js';
import { storeConformance } from '../conformance/store.js';

const base = mkdtempSync(join(tmpdir(), 'sf-local-store-'));
let n = 0;
t.teardown(() => rmSync(base, { recursive: true, force: true }));

t.test('conformance', (t) => storeConformance(t, () => LocalStore.open(join(base, `s${++n}`), { create: true }), (s) => (s as LocalStore).root));

t.test('a missing location is E_STORE_NOT_FOUND unless create', async (t) => {
  await t.rejects(LocalStore.open(join(base, 'nope')), { code: 'E_STORE_NOT_FOUND' });
  const s = await LocalStore.open(join(base, 'made', 'deep'), { create: true });
  t.same(await s.list(), [], 'created empty');
  t.same(readdirSync(join(base, 'made')), ['deep'], 'the directory exists');
  await t.rejects(LocalStore.open(join(base, 'made', 'deep', 'missing'), {}), { code: 'E_STORE_NOT_FOUND' }, 'opening without create never creates');
  const viaUrl = await openStore(`file://${join(base, 'made', 'deep')}`);
  t.same(await viaUrl.list(), [], 'openStore takes file:// URLs');
  await t.rejects(openStore('s3://bucket/x'), { code: 'E_STORE_URL' }, 'an unknown scheme is refused');
});

t.test('a put whose write fails leaves nothing behind, and a directory in the way is not an object', async (t) => {
  const s = await LocalStore.open(join(base, 'dirs'), { create: true });
  mkdirSync(join(s.root, 'adir'));
  t.equal(await s.stat('adir'), null, 'a directory is not an object');
  t.same(await s.list(), [], 'nor listed');
  const h = await s.put('x/y');
  await h.write(Buffer.from('abc'));
  t.equal(readdirSync(join(s.root, 'x')).filter((f) => f.includes('.partial-')).length, 1, 'the partial exists on disk');
  t.same(await s.list(), [], 'but is not listed');
  await h.abort();
  t.same(readdirSync(join(s.root, 'x')), [], 'abort removed it');
  await t.rejects(h.write(Buffer.from('z')), { code: 'E_STORE_STATE' }, 'write after abort is refused');
});
