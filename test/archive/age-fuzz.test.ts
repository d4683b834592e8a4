/** Mutation fuzzer of the age header parser and key unwrap: every case ends in data or a SnapferryError. */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AgeSink } from '../../src/archive/age/writer.js';
import { AgeReader } from '../../src/archive/age/reader.js';
import { parseHeader } from '../../src/archive/age/structs.js';
import type { RandomAccess } from '../../src/archive/types.js';
import { SnapferryError } from '../../src/util/errors.js';
import { prng, requireTool } from '../helpers/images.js';

requireTool('age-keygen');
const dir = mkdtempSync(join(tmpdir(), 'snapferry-agefuzz-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
execFileSync('age-keygen', ['-o', join(dir, 'k')], { stdio: 'ignore' });
const identity = readFileSync(join(dir, 'k'), 'utf8').split('\n').find((l) => l.startsWith('AGE-SECRET-KEY-1'))!;
const recipient = execFileSync('age-keygen', ['-y', join(dir, 'k')], { encoding: 'utf8' }).trim();
execFileSync('age-keygen', ['-o', join(dir, 'k2')], { stdio: 'ignore' });
const other = execFileSync('age-keygen', ['-y', join(dir, 'k2')], { encoding: 'utf8' }).trim();

const r = prng(0xa9e1);
const input = Buffer.alloc(70_000);
for (let i = 0; i < input.length; i++) input[i] = (r() * 256) | 0;
const parts: Buffer[] = [];
const sink = new AgeSink({ async write(c) { parts.push(Buffer.from(c)); }, async end() {} }, [other, recipient]);
await sink.write(input);
await sink.end();
const seed = Buffer.concat(parts);
const headerLength = parseHeader(seed)!.length;

function source(b: Buffer): RandomAccess {
  return {
    size: b.length,
    async read(offset, length) {
      if (offset < 0 || length < 0 || offset + length > b.length) throw new Error(`fuzz source: read past end ${offset}+${length}`);
      return b.subarray(offset, offset + length);
    },
  };
}

const TOKENS = ['\n', ' ', '-> ', '--- ', 'X25519', 'scrypt', '=', 'A'.repeat(64) + '\n', '\n\n', 'age-encryption.org/v1\n', '\x00', '\xff'];

function mutate(b: Buffer): Buffer {
  let m = Buffer.from(b);
  const n = 1 + Math.floor(r() * 3);
  for (let k = 0; k < n; k++) {
    const pos = Math.floor(r() * (headerLength + 16)); // the header and the payload nonce
    switch (Math.floor(r() * 6)) {
      case 0:
        m[pos]! ^= 1 << Math.floor(r() * 8);
        break;
      case 1:
        m[pos] = (r() * 256) | 0;
        break;
      case 2:
        m = Buffer.concat([m.subarray(0, pos), Buffer.from(TOKENS[Math.floor(r() * TOKENS.length)]!, 'latin1'), m.subarray(pos)]);
        break;
      case 3:
        m = Buffer.concat([m.subarray(0, pos), m.subarray(pos + 1 + Math.floor(r() * 8))]);
        break;
      case 4: {
        // Duplicate a line: a repeated stanza or body line.
        const start = m.lastIndexOf(0x0a, pos) + 1;
        const end = m.indexOf(0x0a, pos) + 1;
        if (end > start) m = Buffer.concat([m.subarray(0, end), m.subarray(start, end), m.subarray(end)]);
        break;
      }
      default:
        m = m.subarray(0, pos);
    }
  }
  return m;
}

t.test('2000 mutated age headers end in data or a SnapferryError', async (t) => {
  const N = 2000;
  let data = 0;
  const untyped: string[] = [];
  const wrongData: number[] = [];
  const codes: Record<string, number> = {};
  for (let i = 0; i < N; i++) {
    const m = mutate(seed);
    try {
      parseHeader(m, true);
      const reader = await AgeReader.open(source(m), [identity]);
      const all = await reader.read(0, reader.size);
      if (!all.equals(input)) wrongData.push(i);
      data++;
    } catch (e) {
      if (e instanceof SnapferryError) codes[e.code] = (codes[e.code] ?? 0) + 1;
      else untyped.push(`${i}: ${String(e)}`);
    }
  }
  t.same(untyped, [], 'no untyped error');
  t.same(wrongData, [], 'whatever is accepted decrypts to the original (the header MAC and the tags hold)');
  t.ok(data < N / 20, `${N - data} refused (${JSON.stringify(codes)}), ${data} accepted`);
});
