import t from 'tap';
import { join } from 'node:path';
import { MAX_VMX_BYTES, MAX_VMX_KEYS, decodeVmxValue, parseVmx, readVmx } from '../../src/disk/vmx.js';
import { openDisk } from '../../src/disk/open.js';
import { BufferSource } from '../../src/disk/file.js';
import { image, qemuRaw } from '../helpers/images.js';
import { compareWithRaw } from '../helpers/oracle.js';

t.test('a VM resolves to its present disks, each the top of its chain, and they read as qemu reads them', async (t) => {
  const dir = image('vmdk-chains');
  const vm = await readVmx(join(dir, 'vm.vmx'));
  t.equal(vm.displayName, 'chain "test" vm', '|22 decodes to a quote');
  t.same(vm.disks, [
    { id: 'scsi0:0', fileName: 'snap3.vmdk', path: join(dir, 'snap3.vmdk') },
    { id: 'sata0:0', fileName: 'flat.vmdk', path: join(dir, 'flat.vmdk') },
  ], 'not the disk marked not present, not the cdroms');
  const top = await openDisk(vm.disks[0]!.path);
  t.teardown(() => top.close());
  t.equal(top.chain.length, 4, 'scsi0:0 names the top of the 4-deep chain');
  const r = await compareWithRaw(top, qemuRaw(join(dir, 'snap3.vmdk')), { randomReads: 1000 });
  t.same([r.mismatchAt, r.randomMismatch], [null, null]);
});

t.test('the sample VM names its snapshot top and skips its ISO', async (t) => {
  const dir = image('sample-vm');
  const vm = await readVmx(join(dir, 'sample.vmx'));
  t.equal(vm.displayName, 'sample-vm');
  t.same(vm.disks.map((d) => [d.id, d.path]), [['scsi0:0', join(dir, 'sample-000002.vmdk')]]);
});

t.test('keys are case-insensitive; present FALSE on a device or its controller, cdroms, floppies and .iso files are not disks', async (t) => {
  const vm = parseVmx(
    [
      '.encoding = "UTF-8"',
      'DisplayName = "vm |7C one"',
      'SCSI0:0.FileName = "a.vmdk"',
      'scsi0:1.present = "false"',
      'scsi0:1.fileName = "b.vmdk"',
      'sata1.present = "FALSE"',
      'sata1:0.fileName = "c.vmdk"',
      'sata0:2.fileName = "/vmfs/volumes/ds1/vm/d-000003.vmdk"',
      'nvme0:0.fileName = "sub/e.vmdk"',
      'ide0:0.fileName = "f.vmdk"',
      'ide1:0.deviceType = "cdrom-raw"',
      'ide1:0.fileName = "auto detect"',
      'sata0:5.fileName = "tools.ISO"',
      'floppy0.fileName = "f.flp"',
      'scsi0:9.deviceType = "scsi-hardDisk"',
      'scsi0:9.fileName = "g.vmdk"',
      'ethernet0.present = "TRUE"',
      '# a comment',
      '',
    ].join('\r\n'),
    '/vms/vm1/vm1.vmx',
  );
  t.equal(vm.displayName, 'vm | one');
  t.same(vm.disks.map((d) => [d.id, d.path]), [
    ['scsi0:0', '/vms/vm1/a.vmdk'],
    ['scsi0:9', '/vms/vm1/g.vmdk'],
    ['sata0:2', '/vmfs/volumes/ds1/vm/d-000003.vmdk'],
    ['nvme0:0', '/vms/vm1/sub/e.vmdk'],
    ['ide0:0', '/vms/vm1/f.vmdk'],
  ]);
  t.equal(vm.entries.get('ethernet0.present'), 'TRUE');
});

t.test('|XX escapes decode byte-wise (UTF-8 sequences included)', async (t) => {
  t.equal(decodeVmxValue('a|22b|7Cc'), 'a"b|c');
  t.equal(decodeVmxValue('caf|C3|A9'), 'café');
  t.equal(decodeVmxValue('no|zz escape|'), 'no|zz escape|');
});

t.test('malformed lines and bounds are typed errors', async (t) => {
  t.throws(() => parseVmx('displayName = "ok"\njust words\n', 'x.vmx'), { code: 'E_VMX_SYNTAX', data: { line: 2 } });
  t.throws(() => parseVmx('displayName = "unterminated\n', 'x.vmx'), { code: 'E_VMX_SYNTAX', data: { line: 1 } });
  const keys = Array.from({ length: MAX_VMX_KEYS + 1 }, (_, i) => `k${i} = "v"`).join('\n');
  t.throws(() => parseVmx(keys, 'many.vmx'), { code: 'E_BOUND', data: { structure: 'Vmx', field: 'keys', limit: String(MAX_VMX_KEYS) } });
  t.equal(parseVmx(Array.from({ length: MAX_VMX_KEYS }, (_, i) => `k${i} = "v"`).join('\n'), 'ok.vmx').entries.size, MAX_VMX_KEYS);
  const big = Buffer.alloc(MAX_VMX_BYTES + 1, 0x23);
  let closed = false;
  const opener = async (path: string) => Object.assign(new BufferSource(big, path), { close: async () => { closed = true; } });
  await t.rejects(readVmx('/vm/big.vmx', { opener }), { code: 'E_BOUND', data: { structure: 'Vmx', field: 'size', limit: String(MAX_VMX_BYTES) } });
  t.ok(closed, 'the file is closed');
  await t.rejects(readVmx('/no/such/dir/vm.vmx'), { code: 'E_SOURCE_NOT_FOUND' });
});
