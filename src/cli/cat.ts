/** snapferry cat: a file's bytes (or an NTFS named stream's) to stdout, 1 MiB at a time. */
import { ExitCode, SnapferryError } from '../util/errors.js';
import { MiB } from '../util/bounded.js';
import type { FileSystem } from '../fs/types.js';
import { planTarget, resolveTargetPath, withTarget, type FsCommandOptions } from './target.js';

/** How much of a file one read asks for: bounds memory whatever the file's size. */
export const CAT_CHUNK = 1 * MiB;

/** The reader of our stdout went away (`snapferry ls -R | head`): the CLI stops quietly. */
export class OutputClosedError extends SnapferryError {
  constructor(cause: unknown) {
    super('E_OUTPUT_CLOSED', `output closed: ${cause instanceof Error ? cause.message : String(cause)}`, {}, ExitCode.failure, { cause });
  }
}

/**
 * Writes to a stream with backpressure: write() resolves once the stream can take more ('drain'),
 * so output of any length never piles up in memory. A stream error (EPIPE) ends every later write
 * with OutputClosedError instead of crashing the process.
 */
export class Sink {
  private failed: unknown = null;
  constructor(private readonly out: NodeJS.WritableStream) {
    out.on('error', (err) => {
      this.failed ??= err;
    });
  }

  async write(chunk: string | Buffer): Promise<void> {
    if (this.failed) throw new OutputClosedError(this.failed);
    if (!this.out.write(chunk)) {
      await new Promise<void>((resolve) => {
        const done = () => {
          this.out.off('drain', done);
          this.out.off('error', done);
          this.out.off('close', done);
          resolve();
        };
        this.out.on('drain', done);
        this.out.on('error', done);
        this.out.on('close', done);
      });
    }
    if (this.failed) throw new OutputClosedError(this.failed);
  }
}

let stdoutSink: Sink | undefined;
/** The process's stdout as a Sink (one per process: it owns stdout's error listener). */
export function stdout(): Sink {
  return (stdoutSink ??= new Sink(process.stdout));
}

/** Streams [0, end) of a file or stream through `fn` in CAT_CHUNK pieces; returns the bytes seen. */
export async function readChunks(fs: FileSystem, ino: number, stream: string | undefined, fn: (chunk: Buffer) => Promise<void> | void): Promise<number> {
  let offset = 0;
  for (;;) {
    const chunk = await fs.read(ino, offset, CAT_CHUNK, stream);
    if (chunk.length === 0) break;
    await fn(chunk);
    offset += chunk.length;
    // read() clips at the end: a short chunk is the last one.
    if (chunk.length < CAT_CHUNK) break;
  }
  return offset;
}

export async function catCommand(diskArg: string, target: string, o: FsCommandOptions): Promise<number> {
  const plan = await planTarget(diskArg, target, o);
  try {
    return await withTarget(plan, o, async (t) => {
      const { ino, stream, path } = await resolveTargetPath(t, true);
      const st = await t.fs.stat(ino);
      const where = `${t.label}${path}`;
      if (stream !== undefined) {
        const streams = st.ntfs?.streams ?? [];
        if (!streams.includes(stream)) {
          throw new SnapferryError('E_FS_NO_STREAM', `${where} has no stream '${stream}'${streams.length ? ` (it has ${streams.join(', ')})` : ' (it has no named streams)'}`, { path: where, stream, streams }, ExitCode.notFound);
        }
      } else if (st.type === 'dir') {
        throw new SnapferryError('E_FS_IS_DIR', `${where} is a directory (use snapferry ls)`, { path: where }, ExitCode.failure);
      } else if (st.type === 'symlink') {
        // cat follows nothing: a target inside a guest may point anywhere (or at the host's paths).
        const linkTarget = await t.fs.readlink(ino);
        throw new SnapferryError('E_FS_IS_SYMLINK', `${where} is a symbolic link to '${linkTarget}'; cat does not follow links (cat the target's path)`, { path: where, target: linkTarget }, ExitCode.failure);
      } else if (st.type !== 'file') {
        throw new SnapferryError('E_FS_NOT_FILE', `${where} is a ${st.type}, which has no bytes to read`, { path: where, type: st.type }, ExitCode.failure);
      }
      const out = stdout();
      await readChunks(t.fs, ino, stream, (chunk) => out.write(chunk));
      return ExitCode.ok;
    });
  } finally {
    await plan.close();
  }
}
