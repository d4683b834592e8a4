/**
 * fscrypt: an encrypted directory read without its key must look as the kernel shows it without
 * the key: the same no-key names (base64url of the htree hash and the ciphertext, fs/crypto/fname.c),
 * the same types and sizes, symlink targets in their no-key form, and Stat.ext.encrypted set.
 */
import t from 'tap';
import { lstatSync, readdirSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { image } from '../../helpers/images.js';
import { checkAgainstTree } from '../../conformance/fs.js';
import { openExt } from '../../../src/fs/ext/ext.js';
import { resolvePath } from '../../../src/fs/path.js';
import { mountRo, volumeOf } from './helpers.js';

const path = join(image('ext'), 'ext4-encrypt.img');

t.test('an encrypted directory lists the kernel no-key names, types, sizes and link targets', async (t) => {
  const fs = await openExt(await volumeOf(t, path));
  const mnt = mountRo(t, path);
  t.ok(fs.info.notes.some((n) => n.includes('encrypt')), 'info says the filesystem uses encryption');
  // outside /enc everything is plain and compared in full
  await checkAgainstTree(t, fs, mnt, { ignore: (p) => p.startsWith('/enc') });
  const stack: [number, string][] = [[await resolvePath(fs, '/enc'), join(mnt, 'enc')]];
  let seen = 0;
  while (stack.length) {
    const [ino, real] = stack.pop()!;
    t.ok((await fs.stat(ino)).ext!.encrypted, `${real}: flagged encrypted`);
    const theirs = readdirSync(real).sort();
    const ours: string[] = [];
    for await (const e of fs.readdir(ino)) {
      ours.push(e.name);
      const r = lstatSync(join(real, e.name), { throwIfNoEntry: false });
      if (!r) continue;
      seen++;
      const st = await fs.stat(e.ino);
      t.equal(st.mode, r.mode, `${e.name}: mode`);
      t.equal(st.size, r.size, `${e.name}: size`);
      t.equal(st.ext!.encrypted, true, `${e.name}: encrypted`);
      if (st.type === 'symlink') t.equal(await fs.readlink(e.ino), readlinkSync(join(real, e.name)), `${e.name}: no-key link target`);
      if (st.type === 'dir') stack.push([e.ino, join(real, e.name)]);
    }
    t.same(ours.sort(), theirs, `${real}: the kernel's no-key names (${theirs.length})`);
  }
  t.ok(seen >= 150, `${seen} encrypted entries compared`);
});
