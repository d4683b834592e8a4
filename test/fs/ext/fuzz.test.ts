/**
 * A CI-sized mutation batch: random bytes of the superblock, group descriptors, inode table,
 * directory blocks, extent tree blocks and the xattr block of a real ext4 image are changed, and a
 * full walk (readdir, stat, read, readlink, xattrs, extents) must end in a value or a typed
 * SnapferryError: never a TypeError/RangeError, never a hang.
 */
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { image, prng } from '../../helpers/images.js';
import { SnapferryError } from '../../../src/util/errors.js';
import { openExt, type ExtFileSystem } from '../../../src/fs/ext/ext.js';
import { bufferVolume, debugfs } from './helpers.js';

const path = join(image('ext'), 'ext4-1k.img');
const buf = readFileSync(path);
const BS = 1024;
const CASES = Number(process.env.EXT_FUZZ_CASES ?? 200);
/** Entries looked at per directory: the 3,000-entry htree would otherwise dominate every case. */
const PER_DIR = 64;
const MAX_OPS = 20000;

/** Metadata blocks to aim at, from debugfs (not from the reader under test). */
function targets(): number[] {
  const out = new Set<number>([1, 2]); // superblock, group descriptors
  const imap = debugfs(path, 'imap <2>');
  const it = Number(/located at block (\d+)/.exec(imap)![1]);
  for (let i = 0; i < 64; i++) out.add(it + i); // the first inode table blocks (root, lost+found, the tree)
  for (const d of ['/', '/a', '/htree', '/names', '/links', '/xattr', '/data']) for (const b of debugfs(path, `blocks ${d}`).trim().split(/\s+/).slice(0, 8)) out.add(Number(b));
  const frag = debugfs(path, 'stat /data/fragmented');
  for (const m of frag.matchAll(/\(ETB\d\):(\d+)/g)) out.add(Number(m[1]));
  out.add(Number(/File ACL: (\d+)/.exec(debugfs(path, 'stat /xattr/big'))![1]));
  return [...out].filter((n) => n > 0);
}

async function walk(fs: ExtFileSystem, budget: { ops: number }, codes: Record<string, number>): Promise<void> {
  const tick = () => {
    if (--budget.ops < 0) throw new Error('walk budget exhausted: a hang?');
  };
  const stack = [fs.rootIno];
  const seen = new Set<number>();
  const soft = async (f: () => Promise<unknown>) => {
    try {
      await f();
    } catch (e) {
      if (!(e instanceof SnapferryError)) throw e;
      codes[e.code] = (codes[e.code] ?? 0) + 1;
    }
  };
  while (stack.length) {
    const ino = stack.pop()!;
    if (seen.has(ino)) continue;
    seen.add(ino);
    await soft(async () => {
      let k = 0;
      for await (const e of fs.readdir(ino)) {
        tick();
        if (++k > PER_DIR) break;
        await soft(async () => {
          const st = await fs.stat(e.ino);
          if (st.type === 'dir') stack.push(e.ino);
          if (st.type === 'file') {
            await fs.read(e.ino, 0, Math.min(st.size, 1 << 20));
            for await (const x of fs.extents(e.ino)) {
              tick();
              void x;
            }
          }
          if (st.type === 'symlink') await fs.readlink(e.ino);
          for (const n of await fs.listxattr(e.ino)) await fs.getxattr(e.ino, n);
        });
      }
    });
  }
}

t.test(`${CASES} mutations of metadata blocks end in values or typed errors`, async (t) => {
  const blocks = targets();
  const rand = prng(0xe47);
  const outcomes: Record<string, number> = {};
  for (let c = 0; c < CASES; c++) {
    const block = blocks[Math.floor(rand() * blocks.length)]!;
    const n = 1 + Math.floor(rand() * 8);
    const saved: [number, number][] = [];
    for (let i = 0; i < n; i++) {
      const at = block * BS + Math.floor(rand() * BS);
      saved.push([at, buf[at]!]);
      buf[at] = rand() < 0.3 ? 0xff : Math.floor(rand() * 256);
    }
    try {
      const fs = await openExt(bufferVolume(buf), { cacheBytes: 1 << 20 });
      await walk(fs, { ops: MAX_OPS }, outcomes);
      for (const w of fs.warnings) outcomes[w.code] = (outcomes[w.code] ?? 0) + 1;
      outcomes.opened = (outcomes.opened ?? 0) + 1;
    } catch (e) {
      if (!(e instanceof SnapferryError)) {
        t.fail(`case ${c} (block ${block}, ${n} bytes): ${(e as Error).stack}`);
        break;
      }
      outcomes[e.code] = (outcomes[e.code] ?? 0) + 1;
    } finally {
      for (const [at, v] of saved.reverse()) buf[at] = v;
    }
  }
  t.pass(`outcomes: ${JSON.stringify(outcomes)}`);
});
