/** Runs the built snapferry bin (rebuilding dist/ first when src/ is newer) and captures its output. */
import { execFileSync, spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './images.js';

function newestMtime(dir: string): number {
  let newest = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    newest = Math.max(newest, e.isDirectory() ? newestMtime(p) : statSync(p).mtimeMs);
  }
  return newest;
}

let built = false;
function ensureBuilt(): void {
  if (built) return;
  let distTime = 0;
  try {
    distTime = statSync(join(ROOT, 'dist', 'src', 'cli', 'main.js')).mtimeMs;
  } catch {}
  if (distTime < newestMtime(join(ROOT, 'src'))) execFileSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: ROOT, stdio: 'inherit' });
  built = true;
}

export interface CliResult {
  status: number;
  stdout: string;
  stderr: string;
}

export function snapferry(args: string[], opts: { env?: Record<string, string> } = {}): CliResult {
  ensureBuilt();
  const r = spawnSync('node', [join(ROOT, 'bin', 'snapferry.js'), ...args], { encoding: 'utf8', env: { ...process.env, ...opts.env }, maxBuffer: 64 << 20 });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}
