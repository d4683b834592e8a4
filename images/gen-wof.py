#!/usr/bin/env python3
"""Windows "compact" (WOF) data made by an independent compressor: wimlib (libwim.so.15, Debian
package libwim15 / wimtools) through ctypes. wimlib's XPRESS and LZX are the formats WIM archives
and WOF's FILE provider share.

  gen-wof.py file ALG INPUT STREAM_OUT      WofCompressedData of INPUT -> STREAM_OUT; prints the
                                            reparse point (system.ntfs_reparse_data) as hex
  gen-wof.py raw ALG LEVEL DIR              every DIR/*.in (one chunk each) compressed to DIR/*.out,
                                            an empty .out when it did not compress (decoder vectors)

ALG: xpress4k | xpress8k | xpress16k | lzx. LEVEL: wimlib's compression level (0 = its default 50;
higher levels use near-optimal parsing and, for LZX, aligned-offset blocks).

WofCompressedData layout (see src/fs/ntfs/wof/wof.ts): (nchunks - 1) little-endian u32 entries
(u64 when the uncompressed size is >= 4 GiB), each the start of chunk i+1 counted from the end of
the table; then the chunks; a chunk that does not compress to fewer bytes is stored raw.
"""
import ctypes
import ctypes.util
import glob
import os
import struct
import sys

# alg -> (WOF FILE_PROVIDER_COMPRESSION value, wimlib compression type, chunk size)
WIMLIB_COMPRESSION_TYPE_XPRESS = 1
WIMLIB_COMPRESSION_TYPE_LZX = 2
ALGS = {
    'xpress4k': (0, WIMLIB_COMPRESSION_TYPE_XPRESS, 4096),
    'lzx': (1, WIMLIB_COMPRESSION_TYPE_LZX, 32768),
    'xpress8k': (2, WIMLIB_COMPRESSION_TYPE_XPRESS, 8192),
    'xpress16k': (3, WIMLIB_COMPRESSION_TYPE_XPRESS, 16384),
}
IO_REPARSE_TAG_WOF = 0x80000017


def load_wimlib():
    for name in ('libwim.so.15', ctypes.util.find_library('wim')):
        if not name:
            continue
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        lib.wimlib_create_compressor.argtypes = [ctypes.c_int, ctypes.c_size_t, ctypes.c_uint, ctypes.POINTER(ctypes.c_void_p)]
        lib.wimlib_create_compressor.restype = ctypes.c_int
        lib.wimlib_compress.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
        lib.wimlib_compress.restype = ctypes.c_size_t
        lib.wimlib_free_compressor.argtypes = [ctypes.c_void_p]
        return lib
    sys.exit('gen-wof.py: libwim.so.15 not found (apt-get install wimtools)')


class Compressor:
    def __init__(self, alg, level=0):
        self.lib = load_wimlib()
        _, ctype, self.chunk = ALGS[alg]
        self.handle = ctypes.c_void_p()
        rc = self.lib.wimlib_create_compressor(ctype, self.chunk, level, ctypes.byref(self.handle))
        if rc != 0:
            sys.exit(f'gen-wof.py: wimlib_create_compressor({alg}) failed: {rc}')
        self.out = ctypes.create_string_buffer(self.chunk)

    def chunk_bytes(self, data):
        """The stored form of one chunk: compressed if strictly smaller, else raw (as WOF stores it)."""
        if len(data) == 0:
            return b''
        n = self.lib.wimlib_compress(data, len(data), self.out, len(data) - 1, self.handle)
        return self.out.raw[:n] if n else bytes(data)


def reparse_hex(alg):
    body = struct.pack('<IIII', 1, 2, 1, ALGS[alg][0])  # WOF_EXTERNAL_INFO{1, FILE}, FILE_PROVIDER_EXTERNAL_INFO_V1{1, alg}
    return (struct.pack('<IHH', IO_REPARSE_TAG_WOF, len(body), 0) + body).hex()


def wof_stream(alg, data):
    c = Compressor(alg)
    chunks = [c.chunk_bytes(data[i:i + c.chunk]) for i in range(0, len(data), c.chunk)]
    fmt = '<Q' if len(data) >= 1 << 32 else '<I'
    table, pos = b'', 0
    for ch in chunks[:-1]:
        pos += len(ch)
        table += struct.pack(fmt, pos)
    return table + b''.join(chunks)


def main():
    if len(sys.argv) == 5 and sys.argv[1] == 'file':
        alg, src, dst = sys.argv[2], sys.argv[3], sys.argv[4]
        with open(src, 'rb') as f:
            data = f.read()
        with open(dst, 'wb') as f:
            f.write(wof_stream(alg, data))
        print(reparse_hex(alg))
    elif len(sys.argv) == 5 and sys.argv[1] == 'raw':
        alg, level, d = sys.argv[2], int(sys.argv[3]), sys.argv[4]
        c = Compressor(alg, level)
        for p in sorted(glob.glob(os.path.join(d, '*.in'))):
            with open(p, 'rb') as f:
                data = f.read()
            if len(data) > c.chunk:
                sys.exit(f'gen-wof.py: {p} is larger than one {alg} chunk')
            stored = c.chunk_bytes(data)
            with open(p[:-3] + '.out', 'wb') as f:
                f.write(b'' if stored == data else stored)
    else:
        sys.exit(__doc__)


if __name__ == '__main__':
    main()
