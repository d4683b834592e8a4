/**
 * Hostile input for the tar reader and refused input for the writer: every bound and check,
 * proven with a crafted archive that crosses it and the typed error it must raise (never a crash,
 * a hang or a huge allocation); every truncation of a real archive; and a seeded mutation fuzzer
 * over the headers of a real archive (2000 cases, each ends in entries or a SnapferryError).
 */
import t from 'tap';
import { SnapferryError } from '../../src/util/errors.js';
import { TarWriter, type TarEntry } from '../../src/archive/tar/writer.js';
import { readEntryAt, readMemberRange, readTar } from '../../src/archive/tar/reader.js';
import { encodeHeader, decodeHeader, type UstarFields } from '../../src/archive/tar/header.js';
import { encodePaxRecord, encodePaxRecords, formatPaxTime, parsePaxRecords, parsePaxTime } from '../../src/archive/tar/pax.js';
import { BLOCK_SIZE, TYPEFLAG, USTAR_HEADER } from '../../src/archive/tar/structs.js';
import type { ByteSink, RandomAccess } from '../../src/archive/types.js';
import { prng } from '../helpers/images.js';

class MemorySink implements ByteSink {
  parts: Buffer[] = [];
  async write(chunk: Buffer): Promise<void> {
    this.parts.push(Buffer.from(chunk));
  }
  async end(): Promise<void> {}
  bytes(): Buffer {
    return Buffer.concat(this.parts);
  }
}

const memRA = (b: Buffer): RandomAccess => ({
  size: b.length,
  async read(offset: number, length: number) {
    if (offset < 0 || offset + length > b.length) throw new Error('read past end');
    return Buffer.from(b.subarray(offset, offset + length));
  },
});

async function* chunks(b: Buffer, size = 333): AsyncIterable<Buffer> {
  for (let i = 0; i < b.length; i += size) yield b.subarray(i, i + size);
}

/** Reads every member and its data; returns the member count. */
async function readAll(b: Buffer, chunkSize = 333): Promise<number> {
  let n = 0;
  for await (const m of readTar(chunks(b, chunkSize))) {
    n++;
    for await (const c of m.data) void c;
  }
  return n;
}

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (err) {
    return err instanceof SnapferryError ? err.code : `non-SnapferryError: ${String(err)}`;
  }
}

const base = { mode: 0o644, uid: 0, gid: 0, mtimeNs: 1_700_000_000_000_000_000n };
const END = Buffer.alloc(2 * BLOCK_SIZE);

function header(over: Partial<UstarFields>): Buffer {
  const none = Buffer.alloc(0);
  return encodeHeader({ name: Buffer.from('f'), mode: 0o644, uid: 0, gid: 0, size: 0, mtime: 0, typeflag: TYPEFLAG.REGTYPE, linkname: none, uname: none, gname: none, devmajor: 0, devminor: 0, prefix: none, ...over });
}
const pad = (b: Buffer): Buffer => Buffer.concat([b, Buffer.alloc((BLOCK_SIZE - (b.length % BLOCK_SIZE)) % BLOCK_SIZE)]);
function paxMember(records: Buffer, then: Buffer): Buffer {
  return Buffer.concat([header({ name: Buffer.from('PaxHeaders/f'), typeflag: TYPEFLAG.XHDTYPE, size: records.length }), pad(records), then]);
}

async function sampleArchive(): Promise<{ bytes: Buffer; offsets: { headerOffset: number; dataOffset: number }[] }> {
  const sink = new MemorySink();
  const w = new TarWriter(sink);
  const entries: Array<[TarEntry, Buffer | undefined]> = [
    [{ ...base, path: 'dir', type: 'dir', mode: 0o755 }, undefined],
    [{ ...base, path: `dir/${'long'.repeat(40)}`, type: 'file', size: 700, xattrs: [['user.x', Buffer.from([0, 1, 0])]] }, Buffer.alloc(700, 7)],
    [{ ...base, path: Buffer.from([0x64, 0x2f, 0xff, 0xfe]), type: 'file', size: 3, mtimeNs: -5n }, Buffer.from('abc')],
    [{ ...base, path: 'dir/sparse', type: 'file', size: 1 << 30, sparse: [{ offset: 4096, length: 600 }, { offset: 1 << 20, length: 100 }] }, Buffer.alloc(700, 9)],
    [{ ...base, path: 'dir/link', type: 'symlink', linkTarget: 't'.repeat(200) }, undefined],
    [{ ...base, path: 'dir/hard', type: 'hardlink', linkTarget: 'dir/sparse' }, undefined],
    [{ ...base, path: 'dir/dev', type: 'chardev', devMajor: 4, devMinor: 64, pax: [['SNAPFERRY.k', 'v']] }, undefined],
  ];
  const offsets = [];
  for (const [e, d] of entries) offsets.push(await w.add(e, d));
  await w.finish();
  return { bytes: sink.bytes(), offsets };
}

t.test('PAX records: the length counts its own digits at every digit boundary, and parses back', async (t) => {
  let bad = 0;
  for (let n = 0; n < 1200; n++) {
    const v = Buffer.alloc(n, 0x61);
    const r = encodePaxRecord('k', v);
    const len = Number(r.toString('latin1', 0, r.indexOf(0x20)));
    if (len !== r.length) bad++;
    const [[k, got]] = parsePaxRecords(r, 0) as [[string, Buffer]];
    if (k !== 'k' || !got.equals(v)) bad++;
  }
  t.equal(bad, 0, 'lengths 6..1206: every record is self-consistent');
  t.equal(encodePaxRecord('path', 'x').toString(), '9 path=x\n');
  t.equal(encodePaxRecord('a', Buffer.alloc(3)).length, 8, 'a NUL-holding value: "8 a=\\0\\0\\0\\n"');
  t.equal(encodePaxRecord('a', Buffer.alloc(5)).length, 11, 'the digit boundary: a 1-digit length would be 10, which has 2 digits, so 11');
  // Byte for byte as GNU tar 1.34 writes these records (seen in its --format=pax -cS output).
  t.equal(encodePaxRecord('GNU.sparse.major', '1').toString(), '22 GNU.sparse.major=1\n');
  t.equal(encodePaxRecord('mtime', '1796242261.289879595').toString(), '30 mtime=1796242261.289879595\n');
  const binary = Buffer.from([0, 0x0a, 0x3d, 0xff]);
  t.same(parsePaxRecords(encodePaxRecords([['SCHILY.xattr.user.b', binary], ['path', 'p']]), 0), [['SCHILY.xattr.user.b', binary], ['path', Buffer.from('p')]], 'values with newline, = and NUL');
});

t.test('PAX times: 9 fraction digits, negative times as GNU tar writes and reads them', async (t) => {
  t.equal(formatPaxTime(1_700_000_000_123_456_789n), '1700000000.123456789');
  t.equal(formatPaxTime(-1_500_000_000n), '-1.500000000', '1.5 s before the epoch');
  t.equal(formatPaxTime(-5n), '-0.000000005');
  t.equal(formatPaxTime(0n), '0.000000000');
  for (const ns of [0n, 1n, -1n, -1_500_000_000n, 4_102_444_800_999_999_999n, -31_536_000_500_000_000n]) t.equal(parsePaxTime(Buffer.from(formatPaxTime(ns)), 'mtime', 0), ns, `round trip ${ns}`);
  t.equal(parsePaxTime(Buffer.from('12.5'), 'mtime', 0), 12_500_000_000n, 'short fraction');
  t.equal(parsePaxTime(Buffer.from('12.1234567899'), 'mtime', 0), 12_123_456_789n, 'long fraction truncated');
  t.equal(await codeOf(Promise.resolve().then(() => parsePaxTime(Buffer.from('1e9'), 'mtime', 0))), 'E_TAR_PAX');
});

t.test('writer refuses what would make a wrong archive', async (t) => {
  const fresh = () => new TarWriter(new MemorySink());
  const f = (over: Partial<TarEntry>): TarEntry => ({ ...base, path: 'f', type: 'file', size: 0, ...over });
  t.equal(await codeOf(fresh().add(f({ path: '/etc/passwd' }))), 'E_TAR_PATH', 'absolute path');
  t.equal(await codeOf(fresh().add(f({ path: 'a/../../b' }))), 'E_TAR_PATH', "'..' component");
  t.equal(await codeOf(fresh().add(f({ path: '..' }))), 'E_TAR_PATH', "'..' alone");
  t.equal(await codeOf(fresh().add(f({ path: 'a\0b' }))), 'E_TAR_PATH', 'NUL in a name');
  t.equal(await codeOf(fresh().add(f({ path: '' }))), 'E_TAR_PATH', 'empty');
  t.equal(await codeOf(fresh().add({ ...base, path: 'h', type: 'hardlink', linkTarget: '../x' })), 'E_TAR_PATH', 'hard link target outside');
  t.equal(await codeOf(fresh().add(f({ path: 'a..b/..c' }), Buffer.alloc(0))), 'ok', "'..' inside a name is fine");
  t.equal(await codeOf(fresh().add(f({ size: 10 }), Buffer.alloc(9))), 'E_TAR_SIZE', 'Buffer too short');
  t.equal(await codeOf(fresh().add(f({ size: 10 }), Buffer.alloc(11))), 'E_TAR_SIZE', 'Buffer too long');
  t.equal(await codeOf(fresh().add(f({ size: 1000 }), chunks(Buffer.alloc(999), 100))), 'E_TAR_SIZE', 'iterable too short');
  t.equal(await codeOf(fresh().add(f({ size: 1000 }), chunks(Buffer.alloc(1001), 100))), 'E_TAR_SIZE', 'iterable too long');
  t.equal(await codeOf(fresh().add(f({ size: 1000 }))), 'E_TAR_SIZE', 'no data for a non-empty file');
  t.equal(await codeOf(fresh().add(f({ size: 4096, sparse: [{ offset: 0, length: 10 }] }), Buffer.alloc(11))), 'E_TAR_SIZE', 'sparse data longer than the segments');
  t.equal(await codeOf(fresh().add(f({ size: 4096, sparse: [{ offset: 100, length: 10 }, { offset: 50, length: 10 }] }), Buffer.alloc(20))), 'E_TAR_SPARSE', 'unsorted segments');
  t.equal(await codeOf(fresh().add(f({ size: 100, sparse: [{ offset: 95, length: 10 }] }), Buffer.alloc(10))), 'E_TAR_SPARSE', 'segment past the size');
  t.equal(await codeOf(fresh().add(f({ mode: 0o10000 }))), 'E_TAR_FIELD', 'mode past 07777');
  t.equal(await codeOf(fresh().add({ ...base, path: 'c', type: 'chardev', devMajor: 0o10000000, devMinor: 0 })), 'E_TAR_FIELD', 'device major past the octal field');
  t.equal(await codeOf(fresh().add(f({ pax: [['a=b', 'x']] }))), 'E_TAR_FIELD', "a pax keyword with '='");
  const w = fresh();
  await codeOf(w.add(f({ size: 1 }), Buffer.alloc(2)));
  t.equal(await codeOf(w.add(f({}))), 'E_TAR_STATE', 'a writer that failed refuses more entries');
  t.equal(await codeOf(w.finish()), 'E_TAR_STATE', 'and refuses to finish (the archive is not whole)');
  const mode0 = new MemorySink();
  const w0 = new TarWriter(mode0);
  await w0.add(f({ mode: 0 }));
  await w0.finish();
  t.equal(decodeHeader(mode0.bytes().subarray(0, BLOCK_SIZE), 0).mode, 0, 'mode 0000 stored as 0000');
  t.equal(mode0.bytes().toString('latin1', USTAR_HEADER.mode.offset, USTAR_HEADER.mode.offset + 8), '0000000\0', 'mode field "0000000\\0"');
});

t.test('hostile headers: each bound gives its documented error', async (t) => {
  const { bytes, offsets } = await sampleArchive();
  t.equal(await readAll(bytes), 7, 'the sample archive reads');
  t.equal(await codeOf(readAll(bytes, 1)), 'ok', 'one byte at a time too');

  const bad = Buffer.from(bytes);
  bad[offsets[1]!.headerOffset + 10] ^= 0x01;
  const err = await readAll(bad).catch((e: unknown) => e);
  t.ok(err instanceof SnapferryError && err.code === 'E_TAR_CHECKSUM', 'a flipped name byte: E_TAR_CHECKSUM');
  t.equal((err as SnapferryError).data.offset, offsets[1]!.headerOffset, 'the error names the header offset');
  t.equal(await codeOf(readEntryAt(memRA(bad), offsets[1]!.headerOffset)), 'E_TAR_CHECKSUM', 'readEntryAt too');

  const body = header({ size: 0 });
  t.equal(await codeOf(readAll(paxMember(Buffer.from('99999999 path=x\n'), Buffer.concat([body, END])))), 'E_TAR_PAX', 'a record length of 8 digits');
  t.equal(await codeOf(readAll(paxMember(Buffer.from('9000 path=x\n'), Buffer.concat([body, END])))), 'E_TAR_PAX', 'a record length past the header');
  t.equal(await codeOf(readAll(paxMember(Buffer.from('12 pathx=yz\n'.replace('=', '')), Buffer.concat([body, END])))), 'E_TAR_PAX', "a record without '='");
  t.equal(await codeOf(readAll(paxMember(Buffer.from('7 uid=\n'), Buffer.concat([body, END])))), 'E_TAR_PAX', 'an empty uid');
  t.equal(await codeOf(readAll(paxMember(encodePaxRecord('size', '99999999999999999999'), Buffer.concat([body, END])))), 'E_TAR_PAX', 'a size of 20 digits');
  t.equal(await codeOf(readAll(paxMember(encodePaxRecord('uid', '4294967296'), Buffer.concat([body, END])))), 'E_TAR_BOUND', 'a uid past 32 bits');
  const hugePax = Buffer.concat([header({ typeflag: TYPEFLAG.XHDTYPE, size: 0o77777777777 }), END]);
  t.equal(await codeOf(readAll(hugePax)), 'E_TAR_BOUND', 'a PAX header claiming 8 GiB: refused before reading it');
  const manyX = Buffer.concat([...Array.from({ length: 9 }, () => paxMember(encodePaxRecord('comment', 'c'), Buffer.alloc(0))), body, END]);
  t.equal(await codeOf(readAll(manyX)), 'E_TAR_BOUND', '9 extended headers before one member');
  t.equal(await codeOf(readAll(Buffer.concat([header({ size: 1 << 20 }), Buffer.alloc(1024), END]))), 'E_TAR_TRUNCATED', 'a size past the end of the stream');
  t.equal(await codeOf(readEntryAt(memRA(Buffer.concat([header({ size: 1 << 20 }), Buffer.alloc(1024)])), 0)), 'E_TAR_TRUNCATED', 'readEntryAt: a size past the end');
  t.equal(await codeOf(readAll(Buffer.concat([header({ typeflag: 'V' }), END]))), 'E_TAR_TYPEFLAG', 'an unknown typeflag');
  const notUstar = header({});
  notUstar.fill(0x20, USTAR_HEADER.magic.offset, USTAR_HEADER.magic.offset + 8);
  t.equal(await codeOf(readAll(Buffer.concat([notUstar, END]))), 'E_TAR_CHECKSUM', 'magic changed without the checksum: checksum first');
  const octal = header({});
  octal.write('9', USTAR_HEADER.uid.offset, 'latin1');
  const fixed = encodeHeaderChecksum(octal);
  t.equal(await codeOf(readAll(Buffer.concat([fixed, END]))), 'E_TAR_FIELD', "a non-octal digit in uid (checksum fixed)");

  const sparseRecs = (realsize: number) => encodePaxRecords([['GNU.sparse.major', '1'], ['GNU.sparse.minor', '0'], ['GNU.sparse.name', 's'], ['GNU.sparse.realsize', String(realsize)]]);
  const sparseMember = (map: string, size: number, realsize = 1 << 30) => paxMember(sparseRecs(realsize), Buffer.concat([header({ size }), pad(Buffer.from(map)), Buffer.alloc(Math.max(0, size - 512) + 512), END]));
  t.equal(await codeOf(readAll(sparseMember('99999999999\n', 512))), 'E_TAR_BOUND', 'a sparse map with 10^11 entries: refused before reading them');
  t.equal(await codeOf(readAll(sparseMember('2\n0\n10\n5\n10\n', 1024))), 'E_TAR_SPARSE', 'overlapping segments');
  t.equal(await codeOf(readAll(sparseMember('1\n0\n10\n', 2048))), 'E_TAR_SPARSE', 'stored size disagrees with the segments');
  t.equal(await codeOf(readAll(sparseMember('1\n100\n10\n', 1024, 50))), 'E_TAR_SPARSE', 'a segment past realsize');
  t.equal(await codeOf(readAll(sparseMember('1\n0\nx\n', 1024))), 'E_TAR_SPARSE', 'a non-digit in the map');
  t.equal(await codeOf(readAll(sparseMember('3\n0\n10\n', 512))), 'E_TAR_SPARSE', 'a map longer than the member');
  t.equal(await codeOf(readAll(sparseMember('1\n0\n1' + '0'.repeat(25) + '\n', 1024))), 'E_TAR_SPARSE', 'a 26-digit length');
  const v01 = paxMember(encodePaxRecords([['GNU.sparse.map', '0,10'], ['GNU.sparse.size', '10']]), Buffer.concat([header({ size: 10 }), Buffer.alloc(512), END]));
  t.equal(await codeOf(readAll(v01)), 'E_TAR_TYPEFLAG', 'GNU sparse 0.1: refused by name, not misread');

  t.equal(await codeOf(readAll(Buffer.concat([header({}), Buffer.alloc(512)]))), 'E_TAR_TRUNCATED', 'a lone zero block at the end');
  t.equal(await codeOf(readAll(header({}))), 'E_TAR_TRUNCATED', 'no end-of-archive blocks');
  t.equal(await codeOf(readEntryAt(memRA(bytes), offsets[1]!.headerOffset + 1)), 'E_TAR_FIELD', 'readEntryAt off a block boundary');
  const at = await readEntryAt(memRA(bytes), offsets[3]!.headerOffset);
  t.equal(await codeOf(readMemberRange(memRA(bytes), at, (1 << 30) - 10, 11)), 'E_TAR_RANGE', 'readMemberRange past the file');
  t.equal(await codeOf(readMemberRange(memRA(bytes), at, 0, 65 << 20)), 'E_TAR_RANGE', 'readMemberRange above 64 MiB');

  // Data read twice, or after the reader moved on.
  const it = readTar(chunks(bytes))[Symbol.asyncIterator]();
  await it.next();
  const second = (await it.next()).value!;
  await it.next();
  t.equal(await codeOf((async () => { for await (const c of second.data) void c; })()), 'E_TAR_STATE', 'data of a member the reader has left');
});

/** Recomputes the checksum of a block whose fields were patched. */
function encodeHeaderChecksum(block: Buffer): Buffer {
  const b = Buffer.from(block);
  b.fill(0x20, USTAR_HEADER.chksum.offset, USTAR_HEADER.chksum.offset + 8);
  let sum = 0;
  for (const x of b) sum += x;
  b.write(sum.toString(8).padStart(6, '0') + '\0 ', USTAR_HEADER.chksum.offset, 'latin1');
  return b;
}

t.test('every truncation of a real archive is E_TAR_TRUNCATED, never a hang or a short success', async (t) => {
  const { bytes } = await sampleArchive();
  const codes = new Map<string, number>();
  for (let cut = 0; cut < bytes.length; cut += 61) {
    const c = await codeOf(readAll(bytes.subarray(0, cut), 200));
    codes.set(c, (codes.get(c) ?? 0) + 1);
  }
  t.same([...codes.keys()], ['E_TAR_TRUNCATED'], `${[...codes.values()][0]} cut points, all E_TAR_TRUNCATED`);
});

t.test('mutation fuzzer: 2000 seeded cases over the headers of a real archive', async (t) => {
  const { bytes, offsets } = await sampleArchive();
  // The header regions: from each member's first header to its data (PAX headers and records included).
  const regions = offsets.map((o) => [o.headerOffset, o.dataOffset] as const);
  const rnd = prng(0x7a12);
  const outcomes = new Map<string, number>();
  const failures: string[] = [];
  let slowest = 0;
  for (let i = 0; i < 2000; i++) {
    const m = Buffer.from(bytes);
    const flips = 1 + Math.floor(rnd() * 4);
    for (let f = 0; f < flips; f++) {
      const [s, e] = regions[Math.floor(rnd() * regions.length)]!;
      const at = s + Math.floor(rnd() * (e - s));
      m[at] = rnd() < 0.5 ? m[at]! ^ (1 << Math.floor(rnd() * 8)) : Math.floor(rnd() * 256);
    }
    // Most flips break a checksum; fix it half the time so the fields behind it are reached.
    if (rnd() < 0.5) for (const [s, e] of regions) for (let h = s; h < e; h += 512) if (decodeOk(m, h)) m.set(encodeHeaderChecksum(m.subarray(h, h + 512)), h);
    const t0 = performance.now();
    const run = (async () => {
      const n = await readAll(m, 1 + Math.floor(rnd() * 2000));
      for (const o of offsets) await readEntryAt(memRA(m), o.headerOffset).catch((e: unknown) => { if (!(e instanceof SnapferryError)) throw e; });
      return n;
    })();
    const code = await Promise.race([codeOf(run), new Promise<string>((r) => setTimeout(() => r('TIMEOUT'), 5000).unref())]);
    slowest = Math.max(slowest, performance.now() - t0);
    outcomes.set(code, (outcomes.get(code) ?? 0) + 1);
    if (code === 'TIMEOUT' || code.startsWith('non-SnapferryError')) failures.push(`case ${i}: ${code}`);
  }
  t.same(failures, [], 'every case ends in entries or a SnapferryError within 5 s');
  t.comment(`outcomes: ${JSON.stringify(Object.fromEntries(outcomes))}; slowest case ${slowest.toFixed(1)} ms`);
  t.ok((outcomes.get('ok') ?? 0) > 0 && outcomes.size > 3, 'the fuzzer reaches both successes and several error kinds');
});

/** True when a block looks like a header whose typeflag/magic survived (worth re-checksumming). */
function decodeOk(m: Buffer, h: number): boolean {
  return m.toString('latin1', h + USTAR_HEADER.magic.offset, h + USTAR_HEADER.magic.offset + 5) === 'ustar';
}
