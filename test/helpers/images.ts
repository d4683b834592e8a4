/**
 * Test images come from the scripts in images/ (real tools, seeded, cached). A missing tool is a
 * failure, never a skip: the test that needs it cannot prove anything without it.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, mkdirSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const CACHE = process.env.SNAPFERRY_IMAGE_CACHE ?? join(ROOT, 'images', 'cache');

/** Runs images/<script>.sh (idempotent; cached) and returns its output directory. */
export function image(script: string): string {
  const r = spawnSync('bash', [join(ROOT, 'images', `${script}.sh`)], { stdio: ['ignore', 'inherit', 'inherit'], env: { ...process.env, SNAPFERRY_IMAGE_CACHE: CACHE } });
  if (r.status !== 0) throw new Error(`images/${script}.sh failed with status ${r.status}`);
  return join(CACHE, script);
}

/** Throws (the test fails) when a tool the test needs is not installed. */
export function requireTool(...tools: string[]): void {
  for (const t of tools) {
    const r = spawnSync('sh', ['-c', `command -v ${t}`], { stdio: 'ignore' });
    if (r.status !== 0) throw new Error(`required tool '${t}' is missing: install it (see .ci/run); this test does not skip`);
  }
}

/** qemu's reading of an image as raw bytes: the oracle. Cached beside the image, keyed by its mtime+size. */
export function qemuRaw(path: string, format?: string): string {
  requireTool('qemu-img');
  const st = statSync(path);
  const dir = join(CACHE, 'oracle');
  mkdirSync(dir, { recursive: true });
  const key = createHash('sha256').update(`${path}:${st.size}:${st.mtimeMs}:${format ?? ''}`).digest('hex').slice(0, 16);
  const out = join(dir, `${key}.raw`);
  if (!existsSync(out)) {
    const args = ['convert', ...(format ? ['-f', format] : []), '-O', 'raw', path, `${out}.tmp`];
    execFileSync('qemu-img', args, { stdio: 'inherit' });
    execFileSync('mv', [`${out}.tmp`, out]);
  }
  return out;
}

export async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

/** sha256 of every file in `paths`: take before a command, compare after (sources stay byte-identical). */
export async function fingerprint(paths: string[]): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const p of paths) out[p] = await sha256File(p);
  return out;
}

/** A seeded PRNG (xorshift32) for random-read tests and fuzzers: the same seed, the same cases. */
export function prng(seed: number): () => number {
  let x = seed >>> 0 || 0x9e3779b9;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 0x100000000;
  };
}
