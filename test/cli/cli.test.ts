/**
 * The command line end to end on the sample VM (GPT with ext4 and NTFS behind a 3-deep chain):
 * inspect agrees with qemu-img and sfdisk, export equals qemu-img convert, errors carry their codes
 * and exit codes, and no command changes a byte of any source file.
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { ROOT, fingerprint, image, qemuRaw, requireTool, sha256File } from '../helpers/images.js';
import { snapferry } from '../helpers/cli.js';

requireTool('qemu-img', 'sfdisk');
const vm = image('sample-vm');
const sources = readdirSync(vm).filter((f) => /\.(vmdk|vmx)$/.test(f)).map((f) => join(vm, f));
const top = join(vm, 'sample-000002.vmdk');
const tmp = mkdtempSync(join(tmpdir(), 'snapferry-cli-'));
t.teardown(() => rmSync(tmp, { recursive: true, force: true }));

let before: Record<string, string>;
t.before(async () => {
  before = await fingerprint(sources);
});

t.test('inspect --json shows the chain top first, with CIDs linking each child to its parent', async (t) => {
  const r = snapferry(['inspect', '--json', top]);
  t.equal(r.status, 0, r.stderr);
  const { disks } = JSON.parse(r.stdout);
  const d = disks[0];
  t.equal(d.capacity, 256 * 1024 * 1024);
  t.same(d.chain.map((m: { path: string }) => m.path.split('/').pop()), ['sample-000002.vmdk', 'sample-000001.vmdk', 'sample.vmdk']);
  for (let i = 0; i + 1 < d.chain.length; i++) t.equal(d.chain[i].parentCid, d.chain[i + 1].cid, `member ${i}'s parentCID is its parent's CID`);
  t.ok(d.allocated.data > 0 && d.allocated.data < d.capacity, 'allocation counts only what the chain holds');
});

t.test('inspect --json volumes equal sfdisk --json of qemu-img raw output, with the filesystems found', async (t) => {
  const raw = qemuRaw(top);
  const sf = JSON.parse(execFileSync('sfdisk', ['--json', raw], { encoding: 'utf8' })).partitiontable;
  const { disks } = JSON.parse(snapferry(['inspect', '--json', top]).stdout);
  const vols = disks[0].partitions.volumes;
  t.equal(disks[0].partitions.scheme, 'gpt');
  t.equal(vols.length, sf.partitions.length);
  sf.partitions.forEach((p: { start: number; size: number; type: string; uuid: string; name: string }, i: number) => {
    t.equal(vols[i].name, `p${i + 1}`);
    t.equal(vols[i].start, p.start * 512);
    t.equal(vols[i].size, p.size * 512);
    t.equal(vols[i].type.id.toLowerCase(), p.type.toLowerCase());
  });
  t.same(vols.map((v: { filesystem: { kind: string } }) => v.filesystem.kind), ['ext4', 'ntfs']);
  t.equal(vols[0].filesystem.label, 'guestroot');
});

t.test('inspect of the .vmx resolves the VM to the top of its chain and skips the cdrom', async (t) => {
  const r = snapferry(['inspect', '--json', join(vm, 'sample.vmx')]);
  t.equal(r.status, 0, r.stderr);
  const { disks } = JSON.parse(r.stdout);
  t.equal(disks.length, 1);
  t.equal(disks[0].id, 'scsi0:0');
  t.equal(disks[0].chain.length, 3);
  const text = snapferry(['inspect', join(vm, 'sample.vmx')]);
  t.match(text.stdout, /scsi0:0: .*sample-000002\.vmdk/);
  t.match(text.stdout, /p1 .*ext4/);
});

t.test('export writes a sparse raw image byte-identical to qemu-img convert -O raw', async (t) => {
  const out = join(tmp, 'sample.raw');
  const r = snapferry(['export', '--json', top, out]);
  t.equal(r.status, 0, r.stderr);
  const summary = JSON.parse(r.stdout);
  t.equal(await sha256File(out), await sha256File(qemuRaw(top)));
  t.ok(statSync(out).blocks * 512 < statSync(out).size / 2, 'the output is sparse');
  t.ok(summary.written < summary.size, 'holes were not written');
  t.equal(snapferry(['export', '--no-progress', top, out]).status, 2, 'an existing OUT is refused without --force');
});

t.test('export to stdout streams every byte', async (t) => {
  snapferry(['--version']); // builds dist/ if src/ is newer
  const r = execFileSync('sh', ['-c', `node '${join(ROOT, 'bin', 'snapferry.js')}' export '${top}' - | sha256sum`], { encoding: 'utf8' });
  t.equal(r.slice(0, 64), await sha256File(qemuRaw(top)));
});

t.test('export refuses to write over a file of its own source, even with --force', async (t) => {
  const r = snapferry(['export', '--force', '--json', top, join(vm, 'sample.vmdk')]);
  t.equal(r.status, 2);
  t.equal(JSON.parse(r.stdout).error.code, 'E_EXPORT_IS_SOURCE');
});

t.test('errors print their code, as text or JSON, with the documented exit code', async (t) => {
  const missing = snapferry(['inspect', join(tmp, 'nope.vmdk')]);
  t.equal(missing.status, 3);
  t.match(missing.stderr, /E_SOURCE_NOT_FOUND/);
  const json = snapferry(['inspect', '--json', join(tmp, 'nope.vmdk')]);
  t.equal(JSON.parse(json.stdout).error.code, 'E_SOURCE_NOT_FOUND');
  const usage = snapferry(['frobnicate']);
  t.equal(usage.status, 2);
  t.match(usage.stderr, /E_USAGE/);
  t.equal(snapferry(['inspect', '--bogus']).status, 2);
  const help = snapferry(['--help']);
  t.equal(help.status, 0);
  t.match(help.stdout, /Exit codes:/);
});

// Subtests run in order: this one runs after every command above.
t.test('no command changed a byte of any source file', async (t) => {
  t.same(await fingerprint(sources), before, 'every source file kept its sha256 through every command');
});
