/**
 * A file whose read fails mid-way, while the read ahead of it is still in flight: the backup
 * stores zeros for the rest of that file and says so in its index line, and every other file
 * keeps its exact bytes. Big files are read into two buffers kept for the whole backup
 * (backup.ts, readRange), so a read left in flight by the failure must be waited for before the
 * next file's reads reuse its buffer. Here the read ahead finishes 300 ms after the failure and
 * then scribbles over its buffer, and the next file's reads are held 400 ms each after they land:
 * had that file read into the buffer in the meantime, its bytes (checked against the source's
 * SHA-256 through stock age | zstd | tar) would be wrong.
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requireTool } from '../helpers/images.js';
import { VmTree } from '../../src/vfs/tree.js';
import { LocalStore } from '../../src/store/local.js';
import { runBackup } from '../../src/backup/backup.js';
import { makeSelector } from '../../src/backup/select.js';
import { archiveName, indexName } from '../../src/backup/repo.js';

requireTool('mkfs.ext4', 'age', 'age-keygen', 'zstd', 'tar');

const MiB = 1 << 20;
const work = mkdtempSync(join(tmpdir(), 'sf-read-failure-'));
const key = join(work, 'key.txt');
execFileSync('age-keygen', ['-o', key], { stdio: 'ignore' });
const recipient = execFileSync('age-keygen', ['-y', key], { encoding: 'utf8' }).trim();

/** Seeded bytes (not random: a failure must be reproducible). */
function seeded(n: number, seed: number): Buffer {
  const out = Buffer.alloc(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

const files: Record<string, Buffer> = {
  'a-fails.bin': seeded(6 * MiB + 12345, 1),
  'b-after.bin': seeded(5 * MiB + 777, 2),
  'c-small.txt': Buffer.from('small file after the failure\n'),
  'd-last.bin': seeded(3 * MiB, 3),
};
const tree = join(work, 'tree');
mkdirSync(tree);
for (const [name, bytes] of Object.entries(files)) writeFileSync(join(tree, name), bytes);
const img = join(work, 'fs.img');
execFileSync('mkfs.ext4', ['-q', '-F', '-b', '4096', '-d', tree, img, '64M'], { stdio: 'ignore' });

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

t.test('a read that fails mid-file with the next read in flight: zeros and an error for it, every other file exact', async (t) => {
  const vmTree = await VmTree.open([{ path: img }]);
  t.teardown(() => vmTree.close());
  const volume = vmTree.volumes().find((v) => v.fs)!;
  const fs = volume.fs!;
  const failing = (await fs.lookup(fs.rootIno, 'a-fails.bin'))!;
  const failAt = 2 * MiB + 128 * 1024; // a piece boundary: the head is 128 KiB, then 1 MiB pieces
  const readInto = fs.readInto!.bind(fs);
  let lateWrites = 0;
  const next = (await fs.lookup(fs.rootIno, 'b-after.bin'))!;
  fs.readInto = async (ino, out, offset, stream) => {
    if (ino === next && offset > 0) {
      // the next file's pieces are read, then held: a late write into a shared buffer would land on them
      const n = await readInto(ino, out, offset, stream);
      await new Promise((r) => setTimeout(r, 400));
      return n;
    }
    if (ino !== failing || offset < failAt) return readInto(ino, out, offset, stream);
    if (offset === failAt) throw Object.assign(new Error('injected EIO'), { code: 'EIO' });
    // the read ahead of the failed one: it lands late, and writes its buffer when it does
    await new Promise((r) => setTimeout(r, 300));
    out.fill(0xaa);
    lateWrites++;
    return out.length;
  };

  const repo = join(work, 'repo');
  const store = await LocalStore.open(repo, { create: true });
  t.teardown(() => store.close());
  const warnings: string[] = [];
  const summary = await runBackup(vmTree, {
    store,
    vm: 'read-failure',
    recipients: [recipient],
    kind: 'full',
    includes: [],
    selector: makeSelector([]),
    stateDir: join(work, 'state'),
    version: 'test',
    onWarning: (w) => warnings.push(`${w.path}: ${w.code}`),
  });
  t.equal(lateWrites, 1, 'the read ahead of the failed piece was in flight, and landed late');
  t.equal(summary.errors, 1, 'one error');
  t.match(warnings, [/a-fails\.bin: E_SYS_EIO/], 'named in a warning');

  const archive = join(repo, archiveName(summary.id));
  const extract = join(work, 'extract');
  mkdirSync(extract);
  execFileSync('bash', ['-c', `age -d -i "$1" "$2" | zstd -dq | tar -xf - -C "$3"`, 'x', key, archive, extract]);
  const base = join(extract, volume.diskName, volume.name);
  for (const [name, bytes] of Object.entries(files)) {
    const got = readFileSync(join(base, name));
    if (name === 'a-fails.bin') {
      t.equal(got.length, bytes.length, `${name}: stored at its full size`);
      t.ok(got.subarray(0, failAt).equals(bytes.subarray(0, failAt)), `${name}: the bytes before the failure are the source's`);
      t.ok(got.subarray(failAt).every((b) => b === 0), `${name}: zeros from the failure on`);
    } else t.equal(sha(got), sha(bytes), `${name}: the source's bytes (stock age | zstd | tar)`);
  }

  const index = execFileSync('bash', ['-c', `age -d -i "$1" "$2" | zstd -dq`, 'x', key, join(repo, indexName(summary.id))], { encoding: 'utf8' });
  const lines = index
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { path?: string; error?: { code: string }; sha256?: string });
  const failed = lines.find((l) => l.path?.endsWith('/a-fails.bin'));
  t.equal(failed?.error?.code, 'E_SYS_EIO', 'the index line of the failed file carries the error');
  t.notOk(failed?.sha256, 'and no hash of bytes it does not hold');
  const after = lines.find((l) => l.path?.endsWith('/b-after.bin'));
  t.equal(after?.sha256, sha(files['b-after.bin']!), 'the next file hashes to the source');
});
