/** The local directory store passes the store conformance suite; a missing location is created only when asked. */
import t from 'tap';
import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LocalStore } from '../../src/store/local.js';
import { storeConformance } from '../conformance/store.js';

const base = mkdtempSync(join(tmpdir(), 'sf-local-store-'));
let n = 0;

t.test('conformance', (t) => storeConformance(t, () => LocalStore.open(join(base, `s${++n}`), { create: true })));

t.test('a missing location is E_STORE_NOT_FOUND unless create', async (t) => {
  await t.rejects(LocalStore.open(join(base, 'nope')), { code: 'E_STORE_NOT_FOUND' });
  const s = await LocalStore.open(join(base, 'made', 'deep'), { create: true });
  t.same(await s.list(), [], 'created empty');
  t.same(readdirSync(join(base, 'made')), ['deep'], 'the directory exists');
});
