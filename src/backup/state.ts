/**
 * The local state an incremental backup compares against. The appliance holds only public keys,
 * so it cannot read its own indexes back: it keeps, per repository and VM, what the last backup
 * (and the last full one) recorded of each entry — the index lines themselves, with the archive
 * that holds each entry's bytes. Lost state only costs the next backup being full.
 *
 * A state file is JSON lines in tree order (src/archive/index.ts compareTreePaths): the backup
 * walks the tree in the same order and reads the state alongside it, one line ahead, so memory
 * does not grow with the number of files.
 */
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, mkdirSync } from 'node:fs';
import { open, rename, rm } from 'node:fs/promises';
import { homedir, userInfo } from 'node:os';
import { join } from 'node:path';
import { compareTreePaths, encodeIndexLine, entryPathBytes, lines, parseIndexEntry, type IndexEntry } from '../archive/index.js';

export interface StateHeader {
  format: 'snapferry-state';
  version: 1;
  repo: string;
  vm: string;
  archive: string;
  kind: string;
}

export function defaultStateDir(): string {
  if (process.getuid?.() === 0) return '/var/lib/snapferry/state';
  let home: string;
  try {
    home = userInfo().homedir;
  } catch {
    home = homedir();
  }
  return join(home, '.local', 'state', 'snapferry');
}

/** The state files of one repository and VM: `last` (any kind) and `full` (the last full). */
export function statePaths(dir: string, repoUrl: string, vm: string): { last: string; full: string } {
  const key = createHash('sha256').update(`${repoUrl}\0${vm}`).digest('hex').slice(0, 20);
  return { last: join(dir, `${key}.last.jsonl`), full: join(dir, `${key}.full.jsonl`) };
}

/** Reads a state file alongside a walk in tree order: `find(path)` must be called with rising paths. */
export class StateCursor {
  private it: AsyncIterator<string> | null = null;
  private head: { key: Buffer; entry: IndexEntry } | null = null;
  private lineNo = 0;
  header: StateHeader | null = null;

  static async open(path: string): Promise<StateCursor | null> {
    if (!existsSync(path)) return null;
    const c = new StateCursor();
    c.it = lines(createReadStream(path, { highWaterMark: 256 * 1024 }) as AsyncIterable<Buffer>, path)[Symbol.asyncIterator]();
    const first = await c.it.next();
    if (first.done) return null;
    try {
      const h = JSON.parse(first.value) as StateHeader;
      if (h.format !== 'snapferry-state' || h.version !== 1) return null;
      c.header = h;
    } catch {
      return null;
    }
    await c.advance();
    return c;
  }

  private async advance(): Promise<void> {
    const n = await this.it!.next();
    if (n.done) {
      this.head = null;
      return;
    }
    const entry = parseIndexEntry(n.value, ++this.lineNo);
    this.head = { key: entryPathBytes(entry), entry };
  }

  /** The state's entry for `path`, or null; skips the state's entries that sort before it. */
  async find(path: Buffer): Promise<IndexEntry | null> {
    while (this.head && compareTreePaths(this.head.key, path) < 0) await this.advance();
    if (this.head && compareTreePaths(this.head.key, path) === 0) return this.head.entry;
    return null;
  }
}

/** Writes a new state file beside the old ones; `commit` renames it into place. */
export class StateWriter {
  private fh: Awaited<ReturnType<typeof open>> | null = null;
  private buf: Buffer[] = [];
  private bytes = 0;
  private constructor(private readonly tmp: string) {}

  static async create(dir: string, header: StateHeader): Promise<StateWriter> {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const w = new StateWriter(join(dir, `.state-${process.pid}-${Date.now()}.tmp`));
    w.fh = await open(w.tmp, 'wx', 0o600);
    await w.add(header);
    return w;
  }

  async add(v: IndexEntry | StateHeader): Promise<void> {
    await this.addLine(encodeIndexLine(v as IndexEntry));
  }

  /** An entry already encoded (the backup writes the same line to the index). */
  async addLine(b: Buffer): Promise<void> {
    this.buf.push(b);
    this.bytes += b.length;
    if (this.bytes >= 256 * 1024) await this.flush();
  }

  private async flush(): Promise<void> {
    if (!this.bytes) return;
    const all = Buffer.concat(this.buf);
    this.buf = [];
    this.bytes = 0;
    await this.fh!.write(all);
  }

  async commit(...targets: string[]): Promise<void> {
    await this.flush();
    await this.fh!.sync();
    await this.fh!.close();
    this.fh = null;
    for (const [i, t] of targets.entries()) {
      if (i === targets.length - 1) await rename(this.tmp, t);
      else {
        // every target but the last gets a copy
        const { copyFile } = await import('node:fs/promises');
        await copyFile(this.tmp, `${t}.tmp`);
        await rename(`${t}.tmp`, t);
      }
    }
  }

  async discard(): Promise<void> {
    if (this.fh) await this.fh.close().catch(() => {});
    await rm(this.tmp, { force: true });
  }
}
