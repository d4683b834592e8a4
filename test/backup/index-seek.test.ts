/**
 * Restoring a few paths bisects the index (it is in tree order) instead of reading all of it: the
 * entries found equal a full scan filtered the same way, for every kind of path (first, last, absent,
 * a directory's subtree, siblings that share a prefix with '/', '-' and ' '), and only a few of the
 * index's frames are fetched.
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LocalStore } from '../../src/store/local.js';
import type { Store, StoreFile } from '../../src/store/types.js';
import { openArchiveSink } from '../../src/archive/stack.js';
import { compareTreePaths, encodeIndexLine, INDEX_FORMAT, INDEX_VERSION, type IndexEntry } from '../../src/archive/index.js';
import { INDEX_FRAME_SIZE, indexName, type Manifest } from '../../src/backup/repo.js';
import { indexEntries, selects, subtreeRoots } from '../../src/backup/restore.js';
import { ENCRYPTED_CHUNK_SIZE } from '../../src/archive/age/structs.js';
import { prng, requireTool } from '../helpers/images.js';

requireTool('age-keygen');
const dir = mkdtempSync(join(tmpdir(), 'sf-index-seek-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
execFileSync('age-keygen', ['-o', join(dir, 'key.txt')], { stdio: 'ignore' });
const identity = readFileSync(join(dir, 'key.txt'), 'utf8').split('\n').find((l) => l.startsWith('AGE-SECRET-KEY-'))!;
const recipient = execFileSync('age-keygen', ['-y', join(dir, 'key.txt')], { encoding: 'utf8' }).trim();

/** A store that counts the bytes read from it. */
function counting(inner: Store): Store & { fetched: number } {
  const s = Object.assign(Object.create(inner) as Store, { fetched: 0 });
  s.open = async (name: string): Promise<StoreFile> => {
    const f = await inner.open(name);
    return { size: f.size, close: () => f.close(), read: async (off, len) => ((s.fetched += len), f.read(off, len)) };
  };
  return s;
}

const ID = '20261205T000000Z-abcdef';
const r = prng(7);
/** A random sha256-like value: index lines that compress as real ones do (hashes do not). */
const hex64 = (): string => Array.from({ length: 8 }, () => Math.floor(r() * 2 ** 32).toString(16).padStart(8, '0')).join('');
// a tree of names that stress tree order: '/' sorts before every byte, so "a/..." comes right after
// "a" and before "a b", "a-b", "a.b"
const names = ['a', 'a b', 'a-b', 'a.b', 'ab', 'b', 'é', 'z'];
const paths = new Set<string>();
for (const n of names) {
  paths.add(`vm/vol/${n}`);
  for (let i = 0; i < 15000; i++) paths.add(`vm/vol/${n}/${names[Math.floor(r() * names.length)]}/f${Math.floor(r() * 1e6)}`);
}
for (const p of [...paths]) for (let k = p.indexOf('/', 7); k > 0; k = p.indexOf('/', k + 1)) paths.add(p.slice(0, k));
const entries: IndexEntry[] = [...paths]
  .map((p) => Buffer.from(p))
  .sort(compareTreePaths)
  .map((b) => ({ path: b.toString('utf8'), type: 'file', mode: 0o644, uid: 0, gid: 0, size: 1, nlink: 1, mtimeNs: '0', ctimeNs: '0', atimeNs: '0', sha256: hex64(), header: Math.floor(r() * 2 ** 40), data: 512 }));

t.test('bisected lookups equal a full scan, and fetch a few frames of the index', async (t) => {
  const local = await LocalStore.open(join(dir, 'repo'), { create: true });
  const put = await local.put(indexName(ID));
  const sink = openArchiveSink(put, { recipients: [recipient], frameSize: INDEX_FRAME_SIZE });
  await sink.write(encodeIndexLine({ format: INDEX_FORMAT, version: INDEX_VERSION, archive: ID }));
  for (const e of entries) await sink.write(encodeIndexLine(e));
  await sink.end();
  const size = (await local.stat(indexName(ID)))!.size;
  t.ok(sink.stats().frames >= 200, `the index has ${sink.stats().frames} frames of 128 KiB (${entries.length} entries, ${size} bytes)`);
  const m = { id: ID } as Manifest;
  const bound = (Math.ceil(Math.log2(sink.stats().frames)) + 3) * 2 * ENCRYPTED_CHUNK_SIZE;

  const all: IndexEntry[] = [];
  for await (const e of indexEntries(local, m, [identity])) all.push(e);
  t.same(all.map((e) => e.path), entries.map((e) => e.path), 'a full scan gives every entry in order');

  const queries = [[entries[0]!.path], [entries[entries.length - 1]!.path], ['vm/vol/a'], ['vm/vol/a-b'], ['vm/vol/a b/'], ['/vm/vol/é'], ['vm/vol/aa'], ['vm/vol/zz/none'], ['vm/vol/b', 'vm/vol/a', 'vm/vol/a/b'], [entries[1234]!.path, entries[23456]!.path, 'vm/vol/a.b/a']];
  for (const q of queries) {
    const store = counting(local);
    const got: string[] = [];
    for await (const e of indexEntries(store, m, [identity], q)) got.push(e.path);
    const want = all.filter((e) => selects(q, e)).map((e) => e.path);
    t.same(got, want, `${JSON.stringify(q)}: ${want.length} entries, as a filtered full scan`);
    // a probe decodes one frame (~1-2 age chunks); log2(frames) probes, plus the header, the seek table and the scan
    if (want.length < 50) t.ok(store.fetched < bound && store.fetched < size / 3, `${JSON.stringify(q)}: fetched ${store.fetched} of ${size} index bytes (bound ${bound})`);
  }
  t.same(subtreeRoots(['a/b/', 'a', '/c', 'a b']).map((b) => b.toString()), ['a', 'a b', 'c'], 'nested and repeated paths fold into their subtree');
  await local.close();
});
