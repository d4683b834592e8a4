/**
 * The zstd seekable format, declared once with the names of its spec
 * (facebook/zstd contrib/seekable_format/zstd_seekable_compression_format.md, v0.1.0).
 *
 * A seekable stream is a run of ordinary zstd frames followed by one skippable frame that holds the
 * seek table. Stock `zstd -d` skips skippable frames, so the table is invisible to it.
 *
 *   Seek table frame:  Skippable_Magic_Number u32 | Frame_Size u32 | Seek_Table_Entries | Seek_Table_Footer
 *   Seek_Table_Entry:  Compressed_Size u32 | Decompressed_Size u32 | [Checksum u32]
 *   Seek_Table_Footer: Number_Of_Frames u32 | Seek_Table_Descriptor u8 | Seekable_Magic_Number u32
 *
 * All fields little-endian. Frame_Size counts the entries and the footer, not its own 8-byte header.
 */
import { MiB } from '../../util/bounded.js';

/** Skippable_Magic_Number of the seek table frame (one of the 16 skippable magics 0x184D2A50..5F). */
export const SKIPPABLE_MAGIC_NUMBER = 0x184d2a5e;
/** Seekable_Magic_Number: the last four bytes of a seekable stream. */
export const SEEKABLE_MAGIC_NUMBER = 0x8f92eab1;
/** Magic_Number of an ordinary zstd frame (zstd_compression_format.md). */
export const ZSTD_FRAME_MAGIC_NUMBER = 0xfd2fb528;

/** Skippable_Magic_Number + Frame_Size. */
export const SKIPPABLE_HEADER_SIZE = 8;

export const Seek_Table_Footer = {
  size: 9,
  Number_Of_Frames: 0, // u32
  Seek_Table_Descriptor: 4, // u8
  Seekable_Magic_Number: 5, // u32
} as const;

export const Seek_Table_Descriptor = {
  /** bit 7: each entry carries the low 32 bits of the XXH64 of its frame's uncompressed data. */
  Checksum_Flag: 0x80,
  /** bits 6-2 must be zero (reserved for breaking changes); bits 1-0 are unused and not interpreted. */
  Reserved_Bits: 0x7c,
} as const;

export const Seek_Table_Entry = {
  Compressed_Size: 0, // u32
  Decompressed_Size: 4, // u32
  Checksum: 8, // u32, only with Checksum_Flag
  sizeWithoutChecksum: 8,
  sizeWithChecksum: 12,
} as const;

/**
 * Our bounds (not the spec's, which allows 0x8000000 frames of up to 1 GiB): a frame we decompress
 * in one synchronous call and cache must stay small, and the table we hold in memory must too.
 */
export const MAX_FRAME_DECOMPRESSED_SIZE = 8 * MiB;
/** 2^23 frames: 96 MiB of table at most; at 1 MiB frames that is an 8 TiB tar. */
export const MAX_NUMBER_OF_FRAMES = 0x800000;
/** Smallest possible zstd frame: magic (4) + frame header (>= 2) + one block header (3). */
export const MIN_ZSTD_FRAME_SIZE = 9;

/** One entry of the seek table with its frame's position in both streams. */
export interface SeekTableFrame {
  readonly compressedOffset: number;
  readonly compressedSize: number;
  readonly decompressedOffset: number;
  readonly decompressedSize: number;
  /** Low 32 bits of XXH64 of the uncompressed frame, when the table has Checksum_Flag. */
  readonly checksum: number | null;
}

export interface SeekTable {
  readonly frames: readonly SeekTableFrame[];
  readonly checksumFlag: boolean;
  /** Sum of Compressed_Size: where the seek table frame begins. */
  readonly compressedSize: number;
  /** Sum of Decompressed_Size: the size of the uncompressed stream. */
  readonly decompressedSize: number;
  /** Bytes of the seek table frame, header included. */
  readonly tableFrameSize: number;
}

/** Serialises a seek table frame (entries with checksums when every entry has one). */
export function encodeSeekTable(entries: readonly { compressedSize: number; decompressedSize: number; checksum: number | null }[]): Buffer {
  const withChecksum = entries.length > 0 && entries.every((e) => e.checksum !== null);
  const entrySize = withChecksum ? Seek_Table_Entry.sizeWithChecksum : Seek_Table_Entry.sizeWithoutChecksum;
  const frameSize = entries.length * entrySize + Seek_Table_Footer.size;
  const buf = Buffer.alloc(SKIPPABLE_HEADER_SIZE + frameSize);
  buf.writeUInt32LE(SKIPPABLE_MAGIC_NUMBER, 0);
  buf.writeUInt32LE(frameSize, 4);
  let p = SKIPPABLE_HEADER_SIZE;
  for (const e of entries) {
    buf.writeUInt32LE(e.compressedSize, p + Seek_Table_Entry.Compressed_Size);
    buf.writeUInt32LE(e.decompressedSize, p + Seek_Table_Entry.Decompressed_Size);
    if (withChecksum) buf.writeUInt32LE(e.checksum!, p + Seek_Table_Entry.Checksum);
    p += entrySize;
  }
  buf.writeUInt32LE(entries.length, p + Seek_Table_Footer.Number_Of_Frames);
  buf.writeUInt8(withChecksum ? Seek_Table_Descriptor.Checksum_Flag : 0, p + Seek_Table_Footer.Seek_Table_Descriptor);
  buf.writeUInt32LE(SEEKABLE_MAGIC_NUMBER, p + Seek_Table_Footer.Seekable_Magic_Number);
  return buf;
}
