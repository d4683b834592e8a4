/**
 * Restore's extended attributes (src/backup/xattr-restore.ts) through a real `setfattr --restore`,
 * read back with getfattr: names of any bytes, values of any bytes (empty included), a symlink's
 * own attributes, and what setfattr refuses coming back as warnings.
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readlinkSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requireTool } from '../helpers/images.js';
import { XattrSetter, dumpEscape } from '../../src/backup/xattr-restore.js';

requireTool('setfattr', 'getfattr');

const dir = mkdtempSync(join(tmpdir(), 'sf-xattr-'));

/**
 * getfattr's hex dump of everything in `dir` (symlinks not followed): path -> name -> value hex,
 * paths and names as their bytes in latin1 (getfattr's \ooo escapes undone). (A name that is not
 * UTF-8 cannot be an argv string, so the directory is dumped whole.)
 */
const unescape = (s: string): string => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
const latin1 = (b: Buffer | string): string => (Buffer.isBuffer(b) ? b : Buffer.from(b)).toString('latin1');

function dumpOf(dir: string): Map<string, Map<string, string>> {
  const out = execFileSync('getfattr', ['-R', '-h', '-d', '-m', '-', '-e', 'hex', '.'], { cwd: dir, encoding: 'latin1' });
  const all = new Map<string, Map<string, string>>();
  let cur = new Map<string, string>();
  for (const l of out.split('\n')) {
    if (l.startsWith('# file: ')) all.set(unescape(l.slice(8)), (cur = new Map()));
    const i = l.indexOf('=');
    if (i > 0 && !l.startsWith('#')) cur.set(unescape(l.slice(0, i)), l.slice(i + 1));
  }
  return all;
}

t.test('dumpEscape writes every byte that is not plain as \\ooo', async (t) => {
  t.equal(dumpEscape(Buffer.from('a b\\c\n=é')), 'a\\040b\\134c\\012\\075\\303\\251');
  t.equal(dumpEscape(Buffer.from('dir/file-1.txt')), 'dir/file-1.txt');
});

t.test('names and values of any bytes, an empty value, and a symlink of its own', async (t) => {
  // a name that is not UTF-8, with a space, a backslash and a newline in it
  const odd = Buffer.concat([Buffer.from('odd \\ name\n'), Buffer.from([0xff, 0xfe])]);
  writeFileSync(Buffer.concat([Buffer.from(dir + '/'), odd]), 'x');
  writeFileSync(join(dir, 'plain'), 'y');
  symlinkSync('plain', join(dir, 'link'));
  const binary = Buffer.from([0, 1, 2, 0x3d, 0x0a, 0xff]);
  const s = new XattrSetter(dir);
  await s.add(odd, [['user.a=b', binary], ['user.empty', Buffer.alloc(0)]]);
  await s.add(Buffer.from('plain'), [['user.p', Buffer.from('value')]]);
  await s.add(Buffer.from('link'), [['trusted.on-link', Buffer.from('L')]]);
  t.same(await s.close(), [], 'no warning');
  t.equal(s.entries, 3, 'three entries given to setfattr');
  // getfattr escapes its output the same way (\ooo), so names are compared in that form
  const all = dumpOf(dir);
  const got = all.get(latin1(odd));
  t.ok(got, `the odd name's bytes are in getfattr's dump: ${[...all.keys()].join(' | ')}`);
  t.equal(got?.get('user.a=b'), `0x${binary.toString('hex')}`, 'a binary value under a name with =');
  t.equal(got?.get('user.empty'), '0x', 'an empty value');
  t.same(Object.fromEntries(all.get('plain') ?? []), { 'user.p': `0x${Buffer.from('value').toString('hex')}` }, 'the symlink did not pass its attribute to its target');
  t.same(Object.fromEntries(all.get('link') ?? []), { 'trusted.on-link': '0x4c' }, "the symlink's own attribute");
  t.equal(readlinkSync(join(dir, 'link')), 'plain', 'the link is untouched');
});

t.test('what setfattr cannot set comes back as E_RESTORE_XATTR warnings naming the path', async (t) => {
  writeFileSync(join(dir, 'w'), 'z');
  const s = new XattrSetter(dir);
  await s.add(Buffer.from('missing'), [['user.x', Buffer.from('1')]]);
  await s.add(Buffer.from('w'), [['nonamespace.x', Buffer.from('1')], ['user.ok', Buffer.from('2')]]);
  const w = await s.close();
  t.same(w.map((x) => [x.code, x.path]), [['E_RESTORE_XATTR', 'missing'], ['E_RESTORE_XATTR', 'w']], `two warnings: ${JSON.stringify(w)}`);
  t.equal(dumpOf(dir).get('w')?.get('user.ok'), '0x32', 'the attribute after a refused one is still set');
});

t.test('no attributes: no setfattr process, no warning', async (t) => {
  const s = new XattrSetter(join(dir, 'does-not-exist'));
  await s.add(Buffer.from('a'), []);
  t.same(await s.close(), [], 'nothing to say');
  t.equal(s.entries, 0);
});
