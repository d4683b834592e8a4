/** How the CLI shows things: sizes, tables, progress on a TTY, errors as text or JSON. */
import { toSnapferryError, type SnapferryError } from '../util/errors.js';

export function humanBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${n} B` : `${v.toFixed(v >= 100 ? 0 : v >= 10 ? 1 : 2)} ${units[u]}`;
}

export function table(rows: string[][], indent = '  '): string {
  const widths: number[] = [];
  for (const r of rows) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, c.length)));
  return rows.map((r) => indent + r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n');
}

/** A one-line progress bar on stderr, only when stderr is a TTY. */
export class Progress {
  private readonly started = Date.now();
  private shown = false;
  constructor(
    private readonly label: string,
    private readonly enabled = process.stderr.isTTY === true,
  ) {}

  update(done: number, total: number): void {
    if (!this.enabled) return;
    const secs = Math.max(0.001, (Date.now() - this.started) / 1000);
    const rate = done / secs;
    const pct = total ? Math.floor((done / total) * 100) : 100;
    const width = 24;
    const fill = Math.round((pct / 100) * width);
    const eta = rate > 0 ? Math.ceil((total - done) / rate) : 0;
    const line = `${this.label} [${'#'.repeat(fill)}${'.'.repeat(width - fill)}] ${String(pct).padStart(3)}%  ${humanBytes(done)} / ${humanBytes(total)}  ${humanBytes(rate)}/s  ETA ${eta}s`;
    process.stderr.write(`\r${line.padEnd(100)}`);
    this.shown = true;
  }

  end(): void {
    if (this.shown) process.stderr.write('\n');
  }
}

export function printError(err: unknown, json: boolean): SnapferryError {
  const e = toSnapferryError(err);
  if (json) process.stdout.write(JSON.stringify({ error: e.toJSON() }) + '\n');
  else {
    process.stderr.write(`snapferry: ${e.code}: ${e.message}\n`);
    if (e.code === 'E_INTERNAL' && e.stack) process.stderr.write(e.stack + '\n');
  }
  return e;
}
