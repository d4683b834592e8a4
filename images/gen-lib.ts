/** What the spec-written image generators (gen-cowd.ts, gen-sesparse.ts) share. */
import { createCipheriv, createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** A required command-line option's value, or an error naming the generator and the option. */
export function need(tool: string, v: string | undefined, what: string): string {
  if (v === undefined || v === '') throw new Error(`${tool}: --${what} is required`);
  return v;
}

/** "first:count,first:count" grain runs. */
export function runList(s: string): [number, number][] {
  return s ? s.split(',').map((r) => r.split(':').map(Number) as [number, number]) : [];
}

/** Seeded bytes: the AES-128-CTR keystream of the seed (as images/lib.sh `seeded` does). */
export function keystream(seed: number, length: number): Buffer {
  const key = Buffer.from(seed.toString(16).padStart(32, '0'), 'hex');
  const c = createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
  return Buffer.concat([c.update(Buffer.alloc(length)), c.final()]);
}

/** A seeded shuffle (xorshift32), so that the file order of grains is reproducible. */
export function shuffle<T>(items: T[], seed: number): T[] {
  let x = seed >>> 0 || 0x9e3779b9;
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    const j = x % (i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

/** The CID of a parent descriptor, as 8 hex digits (qemu writes it without leading zeros). */
export function cidOf(tool: string, descriptor: string): string {
  const m = /^CID=([0-9a-fA-F]{1,8})\s*$/m.exec(descriptor);
  if (!m) throw new Error(`${tool}: the parent descriptor has no CID line`);
  return m[1]!.toLowerCase().padStart(8, '0');
}

/**
 * Writes DIR/NAME.vmdk: the descriptor of a delta whose one extent line is `extent`, chained to
 * DIR/PARENT by parentFileNameHint and the parent's CID; the CIDs derive from the name and seed.
 */
export function writeDeltaDescriptor(tool: string, o: { dir: string; name: string; seed: number | string; parent: string; createType: string; extent: string }): void {
  const parentCid = cidOf(tool, readFileSync(join(o.dir, o.parent), 'latin1'));
  const cid = createHash('sha256').update(`${o.name}:${o.seed}`).digest('hex').slice(0, 8);
  writeFileSync(
    join(o.dir, `${o.name}.vmdk`),
    `# Disk DescriptorFile
version=1
encoding="UTF-8"
CID=${cid}
parentCID=${parentCid}
isNativeSnapshot="no"
createType="${o.createType}"
parentFileNameHint="${o.parent}"
# Extent description
${o.extent}

# The Disk Data Base
#DDB

ddb.longContentID = "${createHash('sha256').update(`${o.name}:${o.seed}:long`).digest('hex').slice(0, 32)}"
`,
  );
}
