/**
 * The conformance walk must be able to fail: run it over a FileSystem double backed by a real
 * directory (it must pass), then over the same double with one fault injected at a time (it must
 * report exactly that fault, with the path).
 */
import t from 'tap';
import { lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DirEntry, FileExtent, FileSystem, FileType, Stat } from '../../src/fs/types.js';
import { checkAgainstTree } from './fs.js';
import { requireTool } from '../helpers/images.js';

requireTool('getfattr', 'setfattr');
const root = mkdtempSync(join(tmpdir(), 'conf-'));
t.teardown(() => rmSync(root, { recursive: true, force: true }));
mkdirSync(join(root, 'a/b'), { recursive: true });
writeFileSync(join(root, 'a/b/file.txt'), 'hello conformance\n');
writeFileSync(join(root, 'empty'), '');
symlinkSync('a/b/file.txt', join(root, 'link'));
execFileSync('setfattr', ['-n', 'user.colour', '-v', 'blue', join(root, 'empty')]);

type Fault = 'none' | 'byte' | 'name' | 'link' | 'xattr' | 'lookup';

/** A FileSystem over a real directory; inode numbers index a path table. */
function dirFs(fault: Fault): FileSystem {
  const paths: string[] = [root];
  const inoOf = (p: string) => {
    let i = paths.indexOf(p);
    if (i < 0) i = paths.push(p) - 1;
    return i + 1;
  };
  const typeOf = (p: string): FileType => {
    const s = lstatSync(p);
    return s.isDirectory() ? 'dir' : s.isSymbolicLink() ? 'symlink' : 'file';
  };
  const xattrsOf = (p: string): Map<string, Buffer> => {
    const out = execFileSync('getfattr', ['-h', '-d', '-m', '-', '-e', 'hex', '--absolute-names', p], { encoding: 'utf8' });
    const m = new Map<string, Buffer>();
    for (const l of out.split('\n')) if (l.includes('=')) m.set(l.slice(0, l.indexOf('=')), Buffer.from(l.slice(l.indexOf('=') + 3), 'hex'));
    if (fault === 'xattr' && m.has('user.colour')) m.set('user.colour', Buffer.from('red'));
    return m;
  };
  return {
    info: { kind: 'ext4', blockSize: 4096, totalBlocks: 0, freeBlocks: 0, notes: [] },
    rootIno: 1,
    async lookup(dir, name) {
      if (fault === 'lookup' && name === 'empty') return 999;
      const p = join(paths[dir - 1]!, name);
      try {
        lstatSync(p);
      } catch {
        return null;
      }
      return inoOf(p);
    },
    async stat(ino): Promise<Stat> {
      const p = paths[ino - 1]!;
      const s = lstatSync(p, { bigint: true });
      return { ino, type: typeOf(p), mode: Number(s.mode), nlink: Number(s.nlink), uid: Number(s.uid), gid: Number(s.gid), size: Number(s.size), allocatedSize: Number(s.blocks) * 512, atimeNs: s.atimeNs, mtimeNs: s.mtimeNs, ctimeNs: s.ctimeNs };
    },
    async *readdir(dir): AsyncIterable<DirEntry> {
      for (const name of readdirSync(paths[dir - 1]!)) {
        const p = join(paths[dir - 1]!, name);
        yield { name: fault === 'name' && name === 'empty' ? 'Empty' : name, ino: inoOf(p), type: typeOf(p) };
      }
    },
    async read(ino, offset, length) {
      const b = readFileSync(paths[ino - 1]!);
      if (fault === 'byte' && b.length > 3) b[3] = 0x21;
      return b.subarray(offset, Math.min(b.length, offset + length));
    },
    async readlink(ino) {
      return fault === 'link' ? 'elsewhere' : readlinkSync(paths[ino - 1]!);
    },
    async listxattr(ino) {
      return [...xattrsOf(paths[ino - 1]!).keys()];
    },
    async getxattr(ino, name) {
      return xattrsOf(paths[ino - 1]!).get(name)!;
    },
    async *extents(): AsyncIterable<FileExtent> {},
    async close() {},
  };
}

t.test('a faithful filesystem passes', async (t) => {
  const s = await checkAgainstTree(t, dirFs('none'), root, { times: 'ns' });
  t.equal(s.files, 2);
  t.equal(s.symlinks, 1);
  t.equal(s.xattrs, 1);
});

const expected: Record<Exclude<Fault, 'none'>, RegExp> = {
  byte: /^\/a\/b\/file\.txt: sha256/,
  name: /^\/: names/,
  link: /^\/link: symlink target/,
  xattr: /^\/empty: xattr user\.colour/,
  lookup: /^\/empty: lookup ino/,
};
for (const [fault, re] of Object.entries(expected)) {
  t.test(`a ${fault} fault is reported with its path`, async (t) => {
    // Run the walk under a sub-test whose failure we expect, and inspect what it reported.
    const inner = await new Promise<string[]>((resolve) => {
      const fakeT = { same: () => true, ok: () => true } as unknown as Parameters<typeof checkAgainstTree>[0];
      void checkAgainstTree(fakeT, dirFs(fault as Fault), root).then((s) => resolve(s.mismatches));
    });
    t.ok(inner.length >= 1, `reported: ${inner.join(' | ')}`);
    t.match(inner[0], re);
  });
}
