/**
 * The two shapes every archive layer speaks, so that tar → zstd → age → store compose as plain
 * decorators (restic's habit: a layer wraps the one below, never reaches into it).
 *
 * Writing: a ByteSink. `write` resolves when the chunk may be reused and the layer below has room
 * (that is the backpressure: a producer awaits every write). `end` flushes and closes the layer and
 * then the one below.
 *
 * Reading: a RandomAccess over bytes of a known size; `read` past the end is an error of the
 * implementation (TruncatedError), never a short buffer.
 */

export interface ByteSink {
  write(chunk: Buffer): Promise<void>;
  end(): Promise<void>;
}

export interface RandomAccess {
  readonly size: number;
  read(offset: number, length: number): Promise<Buffer>;
}
