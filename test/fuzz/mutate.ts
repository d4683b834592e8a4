/**
 * Copy-on-write mutations of in-memory image files for the fuzzers: a case never copies a whole
 * seed image, it overlays a few patched bytes (and maybe a shorter length) on the shared original.
 */
import { TruncatedError } from '../../src/util/errors.js';
import type { ByteSource } from '../../src/disk/file.js';

export interface Patch {
  offset: number;
  bytes: Buffer;
}

export interface FileMutation {
  patches: Patch[];
  /** A shorter length: the file was truncated. */
  truncateTo?: number;
}

export class MutatedSource implements ByteSource {
  readonly isBlockDevice = false;
  readonly size: number;
  constructor(
    readonly path: string,
    private readonly base: Buffer,
    private readonly mutation: FileMutation = { patches: [] },
  ) {
    this.size = Math.min(base.length, mutation.truncateTo ?? base.length);
  }
  async readInto(out: Buffer, outOffset: number, length: number, position: number): Promise<void> {
    if (position < 0 || length < 0 || position + length > this.size) throw new TruncatedError(this.path, position, length, this.size);
    this.base.copy(out, outOffset, position, position + length);
    for (const p of this.mutation.patches) {
      const s = Math.max(p.offset, position);
      const e = Math.min(p.offset + p.bytes.length, position + length);
      if (s < e) p.bytes.copy(out, outOffset + (s - position), s - p.offset, e - p.offset);
    }
  }
  async read(position: number, length: number): Promise<Buffer> {
    const out = Buffer.allocUnsafe(length);
    await this.readInto(out, 0, length, position);
    return out;
  }
  async close(): Promise<void> {}
}

const INTERESTING_U32 = [0, 1, 2, 0x7f, 0x80, 0xff, 0x100, 0x200, 0x1000, 0xffff, 0x10000, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff];

/** Picks mutations for one file: biased towards `hot` regions (headers, tables, footers). */
export function mutateFile(rand: () => number, size: number, hot: { offset: number; length: number }[], text: boolean): FileMutation {
  const m: FileMutation = { patches: [] };
  const pickOffset = (): number => {
    if (hot.length && rand() < 0.85) {
      const h = hot[Math.floor(rand() * hot.length)]!;
      return Math.min(size - 1, h.offset + Math.floor(rand() * h.length));
    }
    return Math.floor(rand() * size);
  };
  const n = 1 + Math.floor(rand() * 4);
  for (let i = 0; i < n && size > 0; i++) {
    const kind = rand();
    const at = pickOffset();
    // Descriptors, and the descriptors embedded in sparse files, get text mutations.
    if (text || rand() < 0.1) {
      // Digits become other (often huge) numbers, quotes and '=' appear and vanish.
      const choices = ['9999999999999999', '0', '-1', '"', '=', '\n', 'ffffffff', '18446744073709551615', '../', ' SPARSE ', ' ZERO ', ' FLAT '];
      m.patches.push({ offset: at, bytes: Buffer.from(choices[Math.floor(rand() * choices.length)]!) });
    } else if (kind < 0.35) {
      m.patches.push({ offset: at, bytes: Buffer.from([Math.floor(rand() * 256)]) });
    } else if (kind < 0.75) {
      const b = Buffer.alloc(4);
      b.writeUInt32LE(INTERESTING_U32[Math.floor(rand() * INTERESTING_U32.length)]!);
      m.patches.push({ offset: at & ~3, bytes: b });
    } else if (kind < 0.9) {
      const b = Buffer.alloc(8);
      b.writeBigUInt64LE(rand() < 0.5 ? 0xffffffffffffffffn : BigInt(Math.floor(rand() * 2 ** 40)));
      m.patches.push({ offset: at & ~7, bytes: b });
    } else {
      m.truncateTo = Math.floor(rand() * size);
    }
  }
  return m;
}
