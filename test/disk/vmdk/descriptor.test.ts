import t from 'tap';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  MAX_DESCRIPTOR_BYTES,
  MAX_DESCRIPTOR_LINES,
  MAX_EXTENTS,
  MAX_FILE_NAME,
  MAX_SECTORS,
  NO_PARENT_CID,
  formatCid,
  looksLikeDescriptor,
  parseDescriptor,
} from '../../../src/disk/vmdk/descriptor.js';
import { image, requireTool } from '../../helpers/images.js';

const HEADER = '# Disk DescriptorFile\nversion=1\nCID=1234abcd\nparentCID=ffffffff\ncreateType="vmfs"\n';
const desc = (extents: string, extra = ''): string => `${HEADER}${extra}\n# Extent description\n${extents}\n`;

interface QemuVmdkInfo {
  'virtual-size': number;
  'format-specific': { data: { cid: number; 'parent-cid': number; 'create-type': string; extents: { 'virtual-size': number; filename: string }[] } };
  'backing-filename'?: string;
}

function qemuInfo(path: string): QemuVmdkInfo {
  requireTool('qemu-img');
  return JSON.parse(execFileSync('qemu-img', ['info', '--output=json', path], { encoding: 'utf8' })) as QemuVmdkInfo;
}

t.test('descriptors written by qemu-img parse to what qemu-img info reports', async (t) => {
  const dir = image('vmdk-chains');
  for (const name of ['flat.vmdk', 'twoGbMaxExtentSparse.vmdk', 'twoGbMaxExtentFlat.vmdk', 'abs-child.vmdk']) {
    const path = join(dir, name);
    const d = parseDescriptor(readFileSync(path, 'utf8'), path);
    const q = qemuInfo(path);
    const fs = q['format-specific'].data;
    t.equal(d.createType, fs['create-type'], `${name} createType`);
    t.equal(d.cid, fs.cid, `${name} CID`);
    t.equal(d.parentCid, fs['parent-cid'], `${name} parentCID`);
    t.equal(d.totalSectors * 512, q['virtual-size'], `${name} capacity`);
    t.same(d.extents.map((e) => e.sectors * 512), fs.extents.map((e) => e['virtual-size']), `${name} extent sizes`);
    t.same(d.extents.map((e) => join(dir, e.fileName!)), fs.extents.map((e) => (e.filename.startsWith('/') ? e.filename : join(dir, e.filename))), `${name} extent files`);
    t.equal(d.parentFileNameHint ?? undefined, q['backing-filename'], `${name} parentFileNameHint`);
    t.equal(d.ddb.get('ddb.adapterType'), 'ide');
    t.ok(d.ddb.has('ddb.geometry.cylinders'));
  }
});

t.test('the embedded descriptor of a hosted sparse file parses, NUL padding and all', async (t) => {
  const dir = image('vmdk-chains');
  const path = join(dir, 'snap1.vmdk');
  const bytes = readFileSync(path);
  // SparseExtentHeader.descriptorOffset / descriptorSize (sectors) at bytes 28 and 36.
  const off = Number(bytes.readBigUInt64LE(28)) * 512;
  const size = Number(bytes.readBigUInt64LE(36)) * 512;
  const text = bytes.subarray(off, off + size).toString('utf8');
  t.ok(text.includes('\0'), 'the embedded descriptor is NUL-padded');
  const d = parseDescriptor(text, path);
  const q = qemuInfo(path);
  t.equal(d.createType, 'monolithicSparse');
  t.equal(d.cid, q['format-specific'].data.cid);
  t.equal(d.parentCid, q['format-specific'].data['parent-cid']);
  t.equal(d.parentFileNameHint, 'base.vmdk');
  t.equal(d.extents.length, 1);
  t.equal(d.extents[0]!.type, 'SPARSE');
});

t.test('every extent type, FLAT offsets, ZERO without a file, ddb and unknown keys', async (t) => {
  const d = parseDescriptor(
    desc(
      [
        'RW 2048 FLAT "data.bin" 1024',
        'RW 100 ZERO',
        'RDONLY 1000 VMFS "v-flat.vmdk"',
        'RW 64 SPARSE "s.vmdk"',
        'RW 8 VMFSSPARSE "d-delta.vmdk"',
        'RW 16 SESPARSE "d-sesparse.vmdk"',
        'RW 32 VMFSRDM "rdm.vmdk"',
        'RW 4 VMFSRAW "/dev/sdb" 2',
      ].join('\n'),
      'parentFileNameHint="../base dir/base.vmdk"\nisNativeSnapshot="no"\nchangeTrackPath="x-ctk.vmdk"\nsomeFutureKey = "kept"\n',
    ) + '\n#DDB\nddb.uuid = "60 00 C2 9a"\nddb.geometry.heads = "255"\n',
    '/vm/d.vmdk',
  );
  t.same(
    d.extents.map((e) => [e.access, e.sectors, e.type, e.fileName, e.offset]),
    [
      ['RW', 2048, 'FLAT', 'data.bin', 1024],
      ['RW', 100, 'ZERO', null, 0],
      ['RDONLY', 1000, 'VMFS', 'v-flat.vmdk', 0],
      ['RW', 64, 'SPARSE', 's.vmdk', 0],
      ['RW', 8, 'VMFSSPARSE', 'd-delta.vmdk', 0],
      ['RW', 16, 'SESPARSE', 'd-sesparse.vmdk', 0],
      ['RW', 32, 'VMFSRDM', 'rdm.vmdk', 0],
      ['RW', 4, 'VMFSRAW', '/dev/sdb', 2],
    ],
  );
  t.equal(d.totalSectors, 2048 + 100 + 1000 + 64 + 8 + 16 + 32 + 4);
  t.equal(d.parentFileNameHint, '../base dir/base.vmdk');
  t.equal(d.cid, 0x1234abcd);
  t.equal(d.parentCid, NO_PARENT_CID);
  t.equal(d.version, 1);
  t.equal(d.entries.get('someFutureKey'), 'kept');
  t.equal(d.entries.get('changeTrackPath'), 'x-ctk.vmdk');
  t.equal(d.ddb.get('ddb.uuid'), '60 00 C2 9a');
  t.equal(d.ddb.get('ddb.geometry.heads'), '255');
});

t.test('CRLF line ends, short CIDs and leading whitespace are read as VMware writes them', async (t) => {
  const d = parseDescriptor('# Disk DescriptorFile\r\nversion=3\r\nCID=b9ebb2\r\nparentCID=a826e5b3\r\ncreateType="monolithicSparse"\r\n  RW 16 SPARSE "x.vmdk"\r\n', 'x.vmdk');
  t.equal(d.cid, 0xb9ebb2);
  t.equal(formatCid(d.cid!), '00b9ebb2');
  t.equal(d.parentCid, 0xa826e5b3);
  t.equal(d.extents[0]!.fileName, 'x.vmdk');
});

t.test('looksLikeDescriptor looks at the first KiB only', async (t) => {
  t.ok(looksLikeDescriptor(Buffer.from('# Disk DescriptorFile\n')));
  t.ok(looksLikeDescriptor(Buffer.from('version=1\ncreateType="vmfs"\n')));
  t.notOk(looksLikeDescriptor(Buffer.concat([Buffer.alloc(1024), Buffer.from('createType=')])));
  t.notOk(looksLikeDescriptor(Buffer.from('KDMV')));
});

t.test('a malformed line is a typed error naming its line number', async (t) => {
  const cases: [string, number][] = [
    [desc('RW 2048 FLAT data.bin 0'), 8], // unquoted name
    [desc('RW abc FLAT "d" 0'), 8],
    [desc('RW 2048 SPARSE "s.vmdk" 12'), 8], // a sparse extent takes no offset
    [desc('RW 2048 FLAT'), 8], // no file name
    [desc('RW 2048 FLAT "d" 1 2'), 8],
    [desc(`RW ${'9'.repeat(31)} FLAT "d" 0`), 8], // a digit run longer than any sector count
    [`${HEADER}this is not a key or an extent\n`, 6],
    [`${HEADER}CID=xyz\n`, 6],
    [`${HEADER}CID=123456789\n`, 6], // more than 32 bits
    [`${HEADER}version=one\n`, 6],
  ];
  for (const [text, line] of cases) {
    t.throws(() => parseDescriptor(text, '/vm/bad.vmdk'), { code: 'E_VMDK_DESCRIPTOR', data: { line, path: '/vm/bad.vmdk' } }, JSON.stringify(text.split('\n')[line - 1]));
  }
  t.throws(() => parseDescriptor(desc('RW 16 QCOW2 "d"'), 'b.vmdk'), { code: 'E_VMDK_EXTENT_TYPE', data: { line: 8, type: 'QCOW2' } });
  t.throws(() => parseDescriptor('version=1\nCID=1\n', 'b.vmdk'), { code: 'E_VMDK_DESCRIPTOR', data: { field: 'createType' } });
});

t.test('bounds: text size, line count, extent count, sector counts, names', async (t) => {
  t.throws(() => parseDescriptor(HEADER + '#'.repeat(MAX_DESCRIPTOR_BYTES), 'big.vmdk'), { code: 'E_BOUND', data: { structure: 'VmdkDescriptor', field: 'size', limit: String(MAX_DESCRIPTOR_BYTES) } });
  t.throws(() => parseDescriptor(HEADER + '\n'.repeat(MAX_DESCRIPTOR_LINES), 'lines.vmdk'), { code: 'E_BOUND', data: { field: 'lines', limit: String(MAX_DESCRIPTOR_LINES) } });
  const many = Array.from({ length: MAX_EXTENTS + 1 }, () => 'RW 1 ZERO').join('\n');
  t.throws(() => parseDescriptor(desc(many), 'many.vmdk'), { code: 'E_BOUND', data: { field: 'extents', limit: String(MAX_EXTENTS), line: 8 + MAX_EXTENTS } });
  t.equal(parseDescriptor(desc(Array.from({ length: MAX_EXTENTS }, () => 'RW 1 ZERO').join('\n')), 'ok.vmdk').extents.length, MAX_EXTENTS, 'exactly the limit is accepted');
  t.throws(() => parseDescriptor(desc(`RW ${MAX_SECTORS + 1} FLAT "d" 0`), 's.vmdk'), { code: 'E_BOUND', data: { field: 'sectors', value: String(MAX_SECTORS + 1), line: 8 } });
  t.throws(() => parseDescriptor(desc(`RW 1 FLAT "d" ${MAX_SECTORS + 1}`), 's.vmdk'), { code: 'E_BOUND', data: { field: 'offset' } });
  t.throws(() => parseDescriptor(desc(`RW ${MAX_SECTORS} FLAT "d" 1`), 's.vmdk'), { code: 'E_BOUND', data: { field: 'offset+sectors' } });
  t.throws(() => parseDescriptor(desc(`RW ${MAX_SECTORS} ZERO\nRW 1 ZERO`), 's.vmdk'), { code: 'E_BOUND', data: { field: 'totalSectors', line: 9 } });
  t.throws(() => parseDescriptor(desc(`RW 1 FLAT "${'n'.repeat(MAX_FILE_NAME + 1)}" 0`), 'n.vmdk'), { code: 'E_BOUND', data: { field: 'fileName.length' } });
  t.throws(() => parseDescriptor(`${HEADER}parentFileNameHint="${'n'.repeat(MAX_FILE_NAME + 1)}"\n`, 'n.vmdk'), { code: 'E_BOUND', data: { field: 'parentFileNameHint.length' } });
});
