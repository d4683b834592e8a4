import t from 'tap';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { openDisk } from '../../src/disk/open.js';
import { BufferSource, openReadOnly, type ByteSource } from '../../src/disk/file.js';
import { image, qemuRaw, fingerprint } from '../helpers/images.js';
import { compareWithRaw } from '../helpers/oracle.js';

const dir = image('vmdk-chains');
const p = (name: string): string => join(dir, name);
const sources = readdirSync(dir).filter((f) => !f.startsWith('.')).map(p);
const before = await fingerprint(sources);

function scratch(t: { teardown(fn: () => void): void }): string {
  const d = mkdtempSync(join(tmpdir(), 'snapferry-chain-'));
  t.teardown(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

/** A small vmfs descriptor over one FLAT file, with an optional parent. */
function flatDescriptor(cid: string, parentCid: string, flatFile: string, sectors: number, hint?: string): string {
  return [
    '# Disk DescriptorFile',
    'version=1',
    `CID=${cid}`,
    `parentCID=${parentCid}`,
    'createType="vmfs"',
    ...(hint === undefined ? [] : [`parentFileNameHint="${hint}"`]),
    '',
    '# Extent description',
    `RW ${sectors} VMFS "${flatFile}"`,
    '',
  ].join('\n');
}

/** An opener that counts the sources it opened and closed (every error path must close them all). */
function countingOpener(inner: (path: string) => Promise<ByteSource> = openReadOnly) {
  const state = { opened: 0, closed: 0, paths: [] as string[] };
  const opener = async (path: string): Promise<ByteSource> => {
    const s = await inner(path);
    state.opened++;
    state.paths.push(path);
    const close = s.close.bind(s);
    return Object.assign(Object.create(Object.getPrototypeOf(s) as object) as ByteSource, s, {
      close: async () => {
        state.closed++;
        await close();
      },
      readInto: s.readInto.bind(s),
      read: s.read.bind(s),
    });
  };
  return { opener, state };
}

t.test('a missing parent is an error naming the path looked for and the child', async (t) => {
  const d = scratch(t);
  copyFileSync(p('snap3.vmdk'), join(d, 'snap3.vmdk'));
  copyFileSync(p('snap2.vmdk'), join(d, 'snap2.vmdk'));
  const { opener, state } = countingOpener();
  await t.rejects(openDisk(join(d, 'snap3.vmdk'), { opener }), {
    code: 'E_VMDK_PARENT_MISSING',
    exitCode: 6,
    data: { path: join(d, 'snap1.vmdk'), child: join(d, 'snap2.vmdk'), parentFileNameHint: 'snap1.vmdk' },
  });
  t.equal(state.opened, 2);
  t.equal(state.closed, state.opened, 'the members opened before the error are closed');
});

t.test('a CID mismatch names both CIDs and both files; ignoreCidMismatch reads the chain anyway', async (t) => {
  const d = scratch(t);
  copyFileSync(p('stream.vmdk'), join(d, 'stream.vmdk'));
  // Rewrite the child's parentCID in its embedded descriptor (same length, so nothing moves).
  const child = readFileSync(p('stream-child.vmdk'));
  // qemu writes CIDs without leading zeros, so the value may be shorter than 8 digits.
  const at = child.indexOf('parentCID=') + 'parentCID='.length;
  const wantParent = /^[0-9a-f]+/.exec(child.subarray(at, at + 8).toString('latin1'))![0];
  const bogus = ['deadbeef', 'feedface'].map((c) => c.slice(0, wantParent.length)).find((c) => c !== wantParent)!;
  child.write(bogus, at, 'latin1');
  writeFileSync(join(d, 'stream-child.vmdk'), child);
  const parentCid = /CID=([0-9a-f]+)/.exec(readFileSync(p('stream.vmdk')).subarray(0, 4096).toString('latin1'))![1]!.padStart(8, '0');
  t.equal(parentCid, wantParent.padStart(8, '0'), 'the unmodified child matched its parent');

  const { opener, state } = countingOpener();
  await t.rejects(openDisk(join(d, 'stream-child.vmdk'), { opener }), {
    code: 'E_VMDK_CID_MISMATCH',
    exitCode: 6,
    message: new RegExp(`${bogus.padStart(8, '0')}.*CID [0-9a-f]{8}`),
    data: { child: join(d, 'stream-child.vmdk'), childParentCid: bogus.padStart(8, '0'), parent: join(d, 'stream.vmdk'), parentCid },
  });
  t.equal(state.closed, state.opened, 'both members closed');

  const disk = await openDisk(join(d, 'stream-child.vmdk'), { ignoreCidMismatch: true });
  t.teardown(() => disk.close());
  t.same(disk.chain.map((m) => [m.parentCid, m.cid]), [[bogus.padStart(8, '0'), disk.chain[0]!.cid], ['ffffffff', parentCid]]);
  const r = await compareWithRaw(disk, qemuRaw(p('stream-child.vmdk')));
  t.same([r.mismatchAt, r.randomMismatch, r.randomReads], [null, null, 10_000], 'reads as the unmodified chain');
});

t.test('two descriptors naming each other are a cycle, not an endless walk', async (t) => {
  const d = scratch(t);
  writeFileSync(join(d, 'data.bin'), Buffer.alloc(4096, 7));
  writeFileSync(join(d, 'a.vmdk'), flatDescriptor('aaaa', 'bbbb', 'data.bin', 8, 'b.vmdk'));
  writeFileSync(join(d, 'b.vmdk'), flatDescriptor('bbbb', 'aaaa', 'data.bin', 8, 'a.vmdk'));
  const { opener, state } = countingOpener();
  await t.rejects(openDisk(join(d, 'a.vmdk'), { opener }), {
    code: 'E_VMDK_CHAIN_CYCLE',
    exitCode: 6,
    data: { path: join(d, 'a.vmdk'), child: join(d, 'b.vmdk'), first: join(d, 'a.vmdk') },
  });
  t.equal(state.closed, state.opened);
  // The same file under another name (a symlink) is the same file.
  writeFileSync(join(d, 'c.vmdk'), flatDescriptor('cccc', 'cccc', 'data.bin', 8, 'c-link.vmdk'));
  symlinkSync('c.vmdk', join(d, 'c-link.vmdk'));
  await t.rejects(openDisk(join(d, 'c.vmdk')), { code: 'E_VMDK_CHAIN_CYCLE', data: { path: join(d, 'c-link.vmdk'), first: join(d, 'c.vmdk') } });
});

t.test('a chain deeper than maxChainDepth is refused; up to the bound it reads', async (t) => {
  const d = scratch(t);
  const depth = 70;
  for (let i = 0; i < depth; i++) {
    writeFileSync(join(d, `d${i}.bin`), Buffer.alloc(4096, i + 1));
    writeFileSync(join(d, `d${i}.vmdk`), flatDescriptor((i + 1).toString(16), i === 0 ? 'ffffffff' : i.toString(16), `d${i}.bin`, 8, i === 0 ? undefined : `d${i - 1}.vmdk`));
  }
  const top = join(d, `d${depth - 1}.vmdk`);
  const { opener, state } = countingOpener();
  await t.rejects(openDisk(top, { opener }), { code: 'E_VMDK_CHAIN_DEPTH', exitCode: 6, data: { limit: 64, top, path: join(d, `d${depth - 65}.vmdk`) } });
  t.equal(state.closed, state.opened, 'all 64 members (and their extents) closed');
  t.equal(state.opened, 64 * 2, 'a descriptor and an extent file per member, no more');
  const disk = await openDisk(top, { maxChainDepth: depth });
  t.equal(disk.chain.length, depth);
  t.same(disk.chain.map((m) => m.path), Array.from({ length: depth }, (_, i) => join(d, `d${depth - 1 - i}.vmdk`)));
  t.same([...(await disk.read(0, 4))], [depth, depth, depth, depth], 'the top FLAT extent holds every byte');
  await disk.close();
  await t.rejects(openDisk(p('snap3.vmdk'), { maxChainDepth: 3 }), { code: 'E_VMDK_CHAIN_DEPTH', data: { limit: 3, path: p('base.vmdk'), child: p('snap1.vmdk') } });
  const four = await openDisk(p('snap3.vmdk'), { maxChainDepth: 4 });
  t.equal(four.chain.length, 4);
  await four.close();
  await t.rejects(openDisk(p('snap3.vmdk'), { maxChainDepth: 0 }), { code: 'E_USAGE' });
  await t.rejects(openDisk(p('snap3.vmdk'), { maxChainDepth: 1.5 }), { code: 'E_USAGE' });
});

t.test('an injected opener serves the whole chain from memory', async (t) => {
  const files = new Map<string, Buffer>();
  for (const f of ['snap3.vmdk', 'snap2.vmdk', 'snap1.vmdk', 'base.vmdk']) files.set(`/mem/${f}`, readFileSync(p(f)));
  const asked: string[] = [];
  const opener = async (path: string): Promise<ByteSource> => {
    asked.push(path);
    const buf = files.get(path);
    if (!buf) throw Object.assign(new Error(`ENOENT: ${path}`), { code: 'ENOENT', path });
    return new BufferSource(buf, path);
  };
  const disk = await openDisk('/mem/snap3.vmdk', { opener });
  t.teardown(() => disk.close());
  t.same(asked, ['/mem/snap3.vmdk', '/mem/snap2.vmdk', '/mem/snap1.vmdk', '/mem/base.vmdk']);
  const r = await compareWithRaw(disk, qemuRaw(p('snap3.vmdk')));
  t.same([r.mismatchAt, r.randomMismatch, r.randomReads], [null, null, 10_000]);
  files.delete('/mem/snap1.vmdk');
  await t.rejects(openDisk('/mem/snap3.vmdk', { opener }), { code: 'E_VMDK_PARENT_MISSING', data: { path: '/mem/snap1.vmdk', child: '/mem/snap2.vmdk' } });
});

t.test('broken members are typed errors and close what was opened', async (t) => {
  const d = scratch(t);
  writeFileSync(join(d, 'data.bin'), Buffer.alloc(4096, 1));
  writeFileSync(join(d, 'garbage.vmdk'), Buffer.alloc(4096, 0x41));
  const cases: [string, string, Record<string, unknown>][] = [
    // An extent file that is not there.
    [`# Disk DescriptorFile\nCID=1\nparentCID=ffffffff\ncreateType="vmfs"\nRW 8 VMFS "data.bin"\nRW 8 FLAT "gone.bin" 0\n`, 'E_SOURCE_NOT_FOUND', { path: join(d, 'gone.bin'), line: 6 }],
    // A SPARSE extent whose file is none of the sparse formats.
    [`# Disk DescriptorFile\nCID=1\nparentCID=ffffffff\ncreateType="twoGbMaxExtentSparse"\nRW 8 FLAT "data.bin" 0\nRW 8 SPARSE "garbage.vmdk"\n`, 'E_VMDK_EXTENT_MAGIC', { path: join(d, 'garbage.vmdk') }],
    [`# Disk DescriptorFile\nCID=1\nparentCID=ffffffff\ncreateType="vmfs"\nRW 8 VMFS "data.bin"\nNOACCESS 8 VMFS "data.bin"\n`, 'E_VMDK_EXTENT_NOACCESS', { line: 6 }],
    [`# Disk DescriptorFile\nCID=1\nparentCID=ffffffff\ncreateType="vmfs"\nRW 0 VMFS "data.bin"\n`, 'E_VMDK_DESCRIPTOR', { field: 'extents' }],
    [`# Disk DescriptorFile\nCID=1\ncreateType="vmfs"\nRW 8 VMFS "data.bin"\nnonsense\n`, 'E_VMDK_DESCRIPTOR', { line: 5 }],
  ];
  for (const [text, code, data] of cases) {
    writeFileSync(join(d, 'x.vmdk'), text);
    const { opener, state } = countingOpener();
    await t.rejects(openDisk(join(d, 'x.vmdk'), { opener }), { code, data }, code);
    t.equal(state.closed, state.opened, `${code}: everything opened is closed`);
  }
  // A descriptor file past the 1 MiB bound is refused before it is read.
  writeFileSync(join(d, 'huge.vmdk'), Buffer.concat([Buffer.from('# Disk DescriptorFile\n'), Buffer.alloc((1 << 20) + 1, 0x23)]));
  const { opener, state } = countingOpener();
  await t.rejects(openDisk(join(d, 'huge.vmdk'), { opener }), { code: 'E_BOUND', data: { structure: 'VmdkDescriptor', field: 'fileSize', limit: String(1 << 20) } });
  t.equal(state.closed, state.opened);
});

t.test('a parentFileNameHint relative to the child resolves beside the child, wherever it is run from', async (t) => {
  const d = scratch(t);
  for (const f of ['stream.vmdk', 'stream-child.vmdk']) copyFileSync(p(f), join(d, f));
  const cwd = process.cwd();
  process.chdir(tmpdir());
  t.teardown(() => process.chdir(cwd));
  const disk = await openDisk(join(d, 'stream-child.vmdk'));
  t.same(disk.chain.map((m) => basename(m.path)), ['stream-child.vmdk', 'stream.vmdk']);
  t.same(disk.chain.map((m) => m.path), [join(d, 'stream-child.vmdk'), join(d, 'stream.vmdk')]);
  await disk.close();
});

t.test('no source file changed', async (t) => {
  t.same(await fingerprint(sources), before);
});

// A descriptor on a datastore is attacker-controlled input: it must not make the appliance serve
// its own files (keys, /etc/shadow) as "disk data".
t.test('attack: an extent naming an absolute path or climbing out with .. is refused', async (t) => {
  const d = scratch(t);
  mkdirSync(join(d, 'vm'));
  writeFileSync(join(d, 'secret.bin'), Buffer.alloc(4096, 0x5e));
  writeFileSync(join(d, 'vm', 'abs.vmdk'), flatDescriptor('1111', 'ffffffff', join(d, 'secret.bin'), 8));
  writeFileSync(join(d, 'vm', 'up.vmdk'), flatDescriptor('2222', 'ffffffff', '../secret.bin', 8));
  for (const f of ['abs.vmdk', 'up.vmdk']) {
    const { opener, state } = countingOpener();
    await t.rejects(openDisk(join(d, 'vm', f), { opener }), { code: 'E_VMDK_EXTENT_PATH', data: { line: 8 } }, f);
    t.notOk(state.paths.some((p) => p.endsWith('secret.bin')), `${f}: the outside file was never opened`);
    t.equal(state.closed, state.opened);
  }
  const disk = await openDisk(join(d, 'vm', 'up.vmdk'), { allowExternalExtents: true });
  t.teardown(() => disk.close());
  t.equal((await disk.read(0, 1))[0], 0x5e, 'the explicit opt-in reads it');
});

t.test('attack: a parentFileNameHint naming a file that is not a VMDK is refused', async (t) => {
  const d = scratch(t);
  writeFileSync(join(d, 'data.bin'), Buffer.alloc(4096, 1));
  writeFileSync(join(d, 'not-a-disk.txt'), 'root:$6$secret:19000:0:99999:7:::\n'.padEnd(4096, ' '));
  writeFileSync(join(d, 'child.vmdk'), flatDescriptor('3333', 'ffffffff', 'data.bin', 8, 'not-a-disk.txt'));
  const { opener, state } = countingOpener();
  await t.rejects(openDisk(join(d, 'child.vmdk'), { opener }), { code: 'E_VMDK_PARENT_NOT_VMDK', data: { path: join(d, 'not-a-disk.txt') } });
  t.equal(state.closed, state.opened);
});
