/**
 * Hostile backups: an index is read with the identity of whoever restores, but its paths are as
 * hostile as any input (a compromised appliance can write any archive). Restore must never write
 * outside its target. Each test is named after the attack it stops (node-tar's habit).
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requireTool } from '../helpers/images.js';
import { LocalStore } from '../../src/store/local.js';
import { openArchiveSink } from '../../src/archive/stack.js';
import { TarWriter } from '../../src/archive/tar/writer.js';
import { encodeIndexLine, INDEX_FORMAT, INDEX_VERSION, type IndexEntry } from '../../src/archive/index.js';
import { archiveName, ensureRepository, indexName, writeManifest } from '../../src/backup/repo.js';
import { runRestore } from '../../src/backup/restore.js';
import { parseIdentityFile } from '../../src/archive/age/keys.js';

requireTool('age-keygen');
const work = mkdtempSync(join(tmpdir(), 'sf-hostile-'));
const keyFile = join(work, 'key.txt');
execFileSync('age-keygen', ['-o', keyFile], { stdio: 'ignore' });
const recipient = execFileSync('age-keygen', ['-y', keyFile], { encoding: 'utf8' }).trim();
const identities = parseIdentityFile(readFileSync(keyFile, 'utf8'));
let n = 0;

const plain = (path: string, type: IndexEntry['type'] = 'file', extra: Partial<IndexEntry> = {}): IndexEntry => ({ path, type, mode: 0o644, uid: 0, gid: 0, size: 0, nlink: 1, mtimeNs: '0', ctimeNs: '0', atimeNs: '0', ...extra });

/** A repository holding one archive with one real member ('good/file') and an index of our choosing. */
async function hostileRepo(entries: (member: { header: number; data: number }) => IndexEntry[]): Promise<{ store: LocalStore; id: string }> {
  const dir = join(work, `repo-${++n}`);
  const store = await LocalStore.open(dir, { create: true });
  await ensureRepository(store);
  const id = `20260101T000000Z-00000${n}`;
  const a = openArchiveSink(await store.put(archiveName(id)), { recipients: [recipient] });
  const tar = new TarWriter(a);
  const body = Buffer.from('payload\n');
  const at = await tar.add({ path: 'good/file', type: 'file', mode: 0o644, uid: 0, gid: 0, mtimeNs: 0n, size: body.length }, body);
  await tar.finish();
  const ix = openArchiveSink(await store.put(indexName(id)), { recipients: [recipient] });
  await ix.write(encodeIndexLine({ format: INDEX_FORMAT, version: INDEX_VERSION, archive: id }));
  for (const e of entries({ header: at.headerOffset, data: at.dataOffset })) await ix.write(encodeIndexLine(e));
  await ix.end();
  await writeManifest(store, { format: 'snapferry-manifest', version: 1, id, vm: 'evil', createdAt: new Date(0).toISOString(), kind: 'full', needs: [], recipients: [], files: 1, bytes: 8, storedBytes: 8, archive: { name: archiveName(id), size: 0 }, index: { name: indexName(id), size: 0 }, errors: 0, durationMs: 0, snapferry: 'test' });
  return { store, id };
}

async function restoreInto(repo: { store: LocalStore; id: string }, devices = false): Promise<{ target: string; outside: string; warnings: { path: string; code: string }[] }> {
  const base = mkdtempSync(join(work, 'restore-'));
  const target = join(base, 'target');
  const outside = join(base, 'outside');
  mkdirSync(outside);
  const warnings: { path: string; code: string }[] = [];
  await runRestore({ store: repo.store, id: repo.id, identities, paths: [], target, overwrite: false, devices, onWarning: (w) => warnings.push(w) }).catch((err: { code: string }) => warnings.push({ path: '(restore)', code: err.code }));
  return { target, outside, warnings };
}

t.test('path traversal: an index path with .. is refused and nothing lands outside the target', async (t) => {
  const r = await restoreInto(await hostileRepo((m) => [plain('../outside/evil', 'file', { size: 8, ...m }), plain('good/../../outside/evil2', 'file', { size: 8, ...m })]));
  t.ok(r.warnings.some((w) => w.code === 'E_RESTORE_PATH'), `refused: ${JSON.stringify(r.warnings)}`);
  t.same(readdirSync(r.outside), [], 'the directory beside the target is untouched');
});

t.test('absolute path: an index path starting with / is refused', async (t) => {
  const victim = join(work, 'absolute-victim');
  const r = await restoreInto(await hostileRepo((m) => [plain(victim, 'file', { size: 8, ...m })]));
  t.ok(r.warnings.some((w) => w.code === 'E_RESTORE_PATH'), 'E_RESTORE_PATH');
  t.notOk(existsSync(victim), 'the absolute path was not written');
});

t.test('symlink then file through it: a restored symlink never carries a later entry out of the target', async (t) => {
  const r0 = mkdtempSync(join(work, 'pre-'));
  const outside = join(r0, 'outside');
  mkdirSync(outside);
  const repo = await hostileRepo((m) => [plain('a', 'symlink', { target: outside }), plain('a/escaped', 'file', { size: 8, ...m })]);
  const warnings: { code: string }[] = [];
  await runRestore({ store: repo.store, id: repo.id, identities, paths: [], target: join(r0, 'target'), overwrite: false, onWarning: (w) => warnings.push(w) }).catch((e: { code: string }) => warnings.push(e));
  t.ok(warnings.some((w) => w.code === 'E_RESTORE_SYMLINK_ESCAPE'), `refused: ${JSON.stringify(warnings)}`);
  t.ok(lstatSync(join(r0, 'target', 'a')).isSymbolicLink(), 'the symlink itself is restored (as a link)');
  t.same(readdirSync(outside), [], 'nothing was written through it');
});

t.test('a symlink planted in the target beforehand is not followed either', async (t) => {
  const base = mkdtempSync(join(work, 'planted-'));
  const outside = join(base, 'outside');
  mkdirSync(outside);
  mkdirSync(join(base, 'target'));
  symlinkSync(outside, join(base, 'target', 'good'));
  const repo = await hostileRepo((m) => [plain('good/file', 'file', { size: 8, ...m })]);
  const warnings: { code: string }[] = [];
  await runRestore({ store: repo.store, id: repo.id, identities, paths: [], target: join(base, 'target'), overwrite: true, onWarning: (w) => warnings.push(w) }).catch((e: { code: string }) => warnings.push(e));
  t.ok(warnings.some((w) => w.code === 'E_RESTORE_SYMLINK_ESCAPE'), 'E_RESTORE_SYMLINK_ESCAPE');
  t.same(readdirSync(outside), [], 'nothing was written through the planted link');
});

t.test('device nodes: a chardev entry is not created without --devices', async (t) => {
  const r = await restoreInto(await hostileRepo(() => [plain('dev-null', 'chardev', { devMajor: 1, devMinor: 3 })]));
  t.ok(r.warnings.some((w) => w.code === 'W_RESTORE_SPECIAL'), 'reported as not restored');
  t.notOk(existsSync(join(r.target, 'dev-null')), 'no device node in the target');
});

t.test('device nodes with --devices: made inside the target only; .. and absolute names are refused', async (t) => {
  if (process.getuid?.() !== 0) {
    if (process.env.CI === 'true') t.fail('mknod needs root, and CI runs as root');
    else t.plan(0, 'needs root (mknod)');
    return;
  }
  const victim = join(work, 'devices-victim');
  const up = await restoreInto(await hostileRepo(() => [plain('../outside/sda', 'blockdev', { devMajor: 8, devMinor: 0 })]), true);
  t.ok(up.warnings.some((w) => w.code === 'E_RESTORE_PATH'), `../outside/sda refused: ${JSON.stringify(up.warnings)}`);
  t.same(readdirSync(up.outside), [], 'nothing beside the target');
  const abs = await restoreInto(await hostileRepo(() => [plain(victim, 'chardev', { devMajor: 1, devMinor: 3 })]), true);
  t.ok(abs.warnings.some((w) => w.code === 'E_RESTORE_PATH'), 'an absolute name refused');
  t.notOk(existsSync(victim), 'nothing at the absolute path');
  const r = await restoreInto(await hostileRepo(() => [plain('dev/zero', 'chardev', { mode: 0o600, devMajor: 1, devMinor: 5 })]), true);
  t.same(r.warnings, [], 'no warning');
  const st = lstatSync(join(r.target, 'dev', 'zero'), { bigint: true });
  t.ok(st.isCharacterDevice() && st.rdev === 0x105n && (st.mode & 0o7777n) === 0o600n, 'dev/zero is a chardev 1:5, mode 0600, inside the target');
  t.same(readdirSync(r.target).filter((f) => f.startsWith('.snapferry-restore-')), [], 'no temporary name left');
});

t.test('an index pointing at another member is caught by the member name check', async (t) => {
  const r = await restoreInto(await hostileRepo((m) => [plain('other/name', 'file', { size: 8, ...m })]));
  t.ok(r.warnings.some((w) => w.code === 'E_RESTORE_INDEX'), `E_RESTORE_INDEX: ${JSON.stringify(r.warnings)}`);
  t.notOk(existsSync(join(r.target, 'other', 'name')), 'no file was given the name');
});

t.test('a sha256 that does not match the bytes fails the file and leaves no file under its name', async (t) => {
  const r = await restoreInto(await hostileRepo((m) => [plain('good/file', 'file', { size: 8, sha256: '0'.repeat(64), ...m })]));
  t.ok(r.warnings.some((w) => w.code === 'E_RESTORE_HASH'), 'E_RESTORE_HASH');
  t.notOk(existsSync(join(r.target, 'good', 'file')), 'no file under the name');
  t.same(readdirSync(join(r.target, 'good')), [], 'and no temporary left behind');
});
