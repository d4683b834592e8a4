/**
 * An archive file is age(zstd-seekable(PAX tar)): stock `age -d -i key | zstd -d | tar -x` restores
 * it, and we read any byte range of the tar through ranged reads of the encrypted file.
 *
 *   write: tar bytes → ZstdSeekableSink → AgeSink → inner (a store's sink)
 *   read:  file (RandomAccess) → AgeReader → ZstdSeekableReader → tar bytes
 */
import type { X25519Identity } from './age/keys.js';
import type { ByteSink, RandomAccess } from './types.js';
import { AgeSink, type AgeSinkStats } from './age/writer.js';
import { AgeReader, type AgeReaderStats } from './age/reader.js';
import { ZstdSeekableReader, ZstdSeekableSink, type ZstdReaderStats, type ZstdSinkStats } from './zstd/seekable.js';
import { MiB } from '../util/bounded.js';

export interface ArchiveSinkOptions {
  recipients: string[];
  /** Uncompressed bytes per zstd frame (1 MiB): the unit a ranged read decompresses. */
  frameSize?: number;
  level?: number;
  /** Frames being compressed or written at once (3); each holds ~2 frames of memory. */
  framesInFlight?: number;
}

export interface ArchiveSinkStats {
  /** Tar bytes in. */
  bytesIn: number;
  /** Compressed bytes handed to the age layer. */
  compressedBytes: number;
  /** Encrypted bytes written to the inner sink. */
  bytesOut: number;
  frames: number;
  zstd: ZstdSinkStats;
  age: AgeSinkStats;
}

export type ArchiveSink = ByteSink & { stats(): ArchiveSinkStats };

export function openArchiveSink(inner: ByteSink, opts: ArchiveSinkOptions): ArchiveSink {
  const age = new AgeSink(inner, opts.recipients);
  const zstd = new ZstdSeekableSink(age, { frameSize: opts.frameSize, level: opts.level, framesInFlight: opts.framesInFlight });
  return {
    write: (chunk) => zstd.write(chunk),
    end: () => zstd.end(),
    stats: () => {
      const z = zstd.stats();
      const a = age.stats();
      return { bytesIn: z.bytesIn, compressedBytes: z.bytesOut, bytesOut: a.ciphertextBytes, frames: z.frames, zstd: z, age: a };
    },
  };
}

export interface ArchiveReaderOptions {
  /** Byte budget of decompressed frames (32 MiB); the age layer keeps 1 MiB of decrypted chunks besides. */
  cacheBytes?: number;
}

export interface ArchiveReaderStats {
  /** Bytes read from the archive file (header, chunks, seek table): what a remote store would transfer. */
  bytesFetched: number;
  /** Ranged reads made on the archive file. */
  reads: number;
  age: AgeReaderStats;
  zstd: ZstdReaderStats;
}

export type ArchiveReader = RandomAccess & { readonly frames: number; stats(): ArchiveReaderStats };

export async function openArchiveReader(file: RandomAccess, identities: readonly (string | X25519Identity)[], opts: ArchiveReaderOptions = {}): Promise<ArchiveReader> {
  let bytesFetched = 0;
  let reads = 0;
  const counted: RandomAccess = {
    size: file.size,
    read: async (offset, length) => {
      const b = await file.read(offset, length);
      bytesFetched += b.length;
      reads++;
      return b;
    },
  };
  const age = await AgeReader.open(counted, identities);
  const zstd = await ZstdSeekableReader.open(age, { cacheBytes: opts.cacheBytes ?? 32 * MiB });
  return {
    size: zstd.size,
    frames: zstd.frames,
    read: (offset, length) => zstd.read(offset, length),
    stats: () => ({ bytesFetched, reads, age: age.stats(), zstd: zstd.stats() }),
  };
}
