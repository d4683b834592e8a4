/**
 * Casefolded directories (EXT4_CASEFOLD_FL): this kernel has no CONFIG_UNICODE, so e2fsprogs made
 * the image and debugfs is the oracle. The entries must be listed exactly as stored, the directory
 * flagged (Stat.ext.casefolded) and the filesystem's note say lookups stay exact.
 */
import t from 'tap';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { image } from '../../helpers/images.js';
import { openExt } from '../../../src/fs/ext/ext.js';
import { resolvePath } from '../../../src/fs/path.js';
import { volumeOf } from './helpers.js';

const path = join(image('ext'), 'ext4-casefold.img');

t.test('a casefolded directory is listed as debugfs lists it, and flagged', async (t) => {
  const fs = await openExt(await volumeOf(t, path));
  t.ok(fs.info.notes.some((n) => n.includes('casefold')), 'info notes the casefold feature');
  const cf = await resolvePath(fs, '/cf');
  t.ok((await fs.stat(cf)).ext!.casefolded, '/cf is flagged casefolded');
  t.notOk((await fs.stat(fs.rootIno)).ext!.casefolded, '/ is not');
  // debugfs ls -p: /ino/mode/uid/gid/name/size/ per line, names as raw bytes
  const out = execFileSync('debugfs', ['-R', 'ls -p /cf', path], { stdio: ['ignore', 'pipe', 'ignore'] }).toString('utf8');
  const theirs = out.split('\n').filter((l) => l.startsWith('/')).map((l) => l.split('/')).map((f) => ({ ino: Number(f[1]), mode: parseInt(f[2]!, 8), name: f[5]! })).filter((e) => e.name !== '.' && e.name !== '..');
  const ours: { ino: number; mode: number; name: string }[] = [];
  for await (const e of fs.readdir(cf)) ours.push({ ino: e.ino, mode: (await fs.stat(e.ino)).mode, name: e.name });
  const key = (a: { name: string }, b: { name: string }) => (a.name < b.name ? -1 : 1);
  t.same(ours.sort(key), theirs.sort(key), `${theirs.length} entries as debugfs lists them`);
  t.equal(theirs.length, 4);
  for (const e of theirs) t.equal(await fs.lookup(cf, e.name), e.ino, `lookup ${e.name}`);
  const f = await resolvePath(fs, '/cf/MixedCase.TXT');
  t.equal((await fs.read(f, 0, 100)).toString(), execFileSync('debugfs', ['-R', 'cat /cf/MixedCase.TXT', path], { stdio: ['ignore', 'pipe', 'ignore'] }).toString());
});
