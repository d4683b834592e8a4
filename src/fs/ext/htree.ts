/**
 * The htree name hashes (fs/ext4/hash.c, ext4fs_dirhash): legacy (dx_hack_hash), half-MD4 and TEA,
 * each in a signed-char and an unsigned-char flavour chosen by s_flags. Written from the kernel's
 * description of the algorithms; checked against names whose hashes debugfs prints (`dx_hash`).
 * Used for the no-key names of encrypted directories, which embed the entry's hash.
 */
import { EXT2_FLAGS_UNSIGNED_HASH, DX_HASH } from './structs.js';
import type { Ext4SuperBlock } from './superblock.js';

const EXT4_HTREE_EOF_32BIT = 0x7fffffff;

function rol32(x: number, s: number): number {
  return ((x << s) | (x >>> (32 - s))) >>> 0;
}

function teaTransform(buf: Uint32Array, inp: Uint32Array): void {
  let sum = 0;
  let b0 = buf[0]!;
  let b1 = buf[1]!;
  const a = inp[0]!, b = inp[1]!, c = inp[2]!, d = inp[3]!;
  for (let n = 0; n < 16; n++) {
    sum = (sum + 0x9e3779b9) >>> 0;
    b0 = (b0 + ((((b1 << 4) >>> 0) + a) ^ (b1 + sum) ^ ((b1 >>> 5) + b))) >>> 0;
    b1 = (b1 + ((((b0 << 4) >>> 0) + c) ^ (b0 + sum) ^ ((b0 >>> 5) + d))) >>> 0;
  }
  buf[0] = buf[0]! + b0;
  buf[1] = buf[1]! + b1;
}

const F = (x: number, y: number, z: number) => (z ^ (x & (y ^ z))) >>> 0;
const G = (x: number, y: number, z: number) => ((x & y) + ((x ^ y) & z)) >>> 0;
const H = (x: number, y: number, z: number) => (x ^ y ^ z) >>> 0;
const K2 = 0o13240474631;
const K3 = 0o15666365641;

function halfMd4Transform(buf: Uint32Array, inp: Uint32Array): void {
  let a = buf[0]!, b = buf[1]!, c = buf[2]!, d = buf[3]!;
  const R = (f: typeof F, w: number, x: number, y: number, z: number, k: number, s: number) => rol32((w + f(x, y, z) + k) >>> 0, s);
  const i = (n: number, k: number) => (inp[n]! + k) >>> 0;
  a = R(F, a, b, c, d, i(0, 0), 3); d = R(F, d, a, b, c, i(1, 0), 7); c = R(F, c, d, a, b, i(2, 0), 11); b = R(F, b, c, d, a, i(3, 0), 19);
  a = R(F, a, b, c, d, i(4, 0), 3); d = R(F, d, a, b, c, i(5, 0), 7); c = R(F, c, d, a, b, i(6, 0), 11); b = R(F, b, c, d, a, i(7, 0), 19);
  a = R(G, a, b, c, d, i(1, K2), 3); d = R(G, d, a, b, c, i(3, K2), 5); c = R(G, c, d, a, b, i(5, K2), 9); b = R(G, b, c, d, a, i(7, K2), 13);
  a = R(G, a, b, c, d, i(0, K2), 3); d = R(G, d, a, b, c, i(2, K2), 5); c = R(G, c, d, a, b, i(4, K2), 9); b = R(G, b, c, d, a, i(6, K2), 13);
  a = R(H, a, b, c, d, i(3, K3), 3); d = R(H, d, a, b, c, i(7, K3), 9); c = R(H, c, d, a, b, i(2, K3), 11); b = R(H, b, c, d, a, i(6, K3), 15);
  a = R(H, a, b, c, d, i(1, K3), 3); d = R(H, d, a, b, c, i(5, K3), 9); c = R(H, c, d, a, b, i(0, K3), 11); b = R(H, b, c, d, a, i(4, K3), 15);
  buf[0] = buf[0]! + a;
  buf[1] = buf[1]! + b;
  buf[2] = buf[2]! + c;
  buf[3] = buf[3]! + d;
}

function dxHackHash(name: Buffer, signed: boolean): number {
  let hash0 = 0x12a3fe2d;
  let hash1 = 0x37abe8f9;
  for (const byte of name) {
    const c = signed && byte >= 0x80 ? byte - 256 : byte;
    let hash = (hash1 + ((hash0 ^ Math.imul(c, 7152373)) >>> 0)) >>> 0;
    if (hash & 0x80000000) hash = (hash - 0x7fffffff) >>> 0;
    hash1 = hash0;
    hash0 = hash;
  }
  return (hash0 << 1) >>> 0;
}

/** str2hashbuf_signed / _unsigned: `num` words from the name, padded with the length pattern. */
function str2hashbuf(msg: Buffer, start: number, len: number, out: Uint32Array, num: number, signed: boolean): void {
  let pad = (len | (len << 8)) >>> 0;
  pad = (pad | (pad << 16)) >>> 0;
  let val = pad;
  let o = 0;
  const n = Math.min(len, num * 4);
  for (let i = 0; i < n; i++) {
    const byte = msg[start + i]!;
    const c = signed && byte >= 0x80 ? byte - 256 : byte;
    val = (c + ((val << 8) >>> 0)) >>> 0;
    if (i % 4 === 3) {
      out[o++] = val;
      val = pad;
      num--;
    }
  }
  if (--num >= 0) out[o++] = val;
  while (--num >= 0) out[o++] = pad;
}

/** The hash version a directory without its own dx_root uses: s_def_hash_version, +3 for unsigned-char filesystems. */
export function hashVersionOf(sb: Ext4SuperBlock, rootVersion?: number): number {
  const v = rootVersion ?? sb.s_def_hash_version;
  return v <= DX_HASH.TEA && sb.s_flags & EXT2_FLAGS_UNSIGNED_HASH ? v + 3 : v;
}

/** __ext4fs_dirhash: the major (even) and minor hash of a name. Unknown versions hash to 0 as the kernel's do. */
export function dirHash(name: Buffer, version: number, seed: number[]): { hash: number; minorHash: number } {
  const buf = new Uint32Array([0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476]);
  if (seed.some((s) => s !== 0)) for (let i = 0; i < 4; i++) buf[i] = seed[i]!;
  let hash: number;
  let minorHash = 0;
  const signed = version === DX_HASH.LEGACY || version === DX_HASH.HALF_MD4 || version === DX_HASH.TEA;
  switch (version) {
    case DX_HASH.LEGACY:
    case DX_HASH.LEGACY_UNSIGNED:
      hash = dxHackHash(name, signed);
      break;
    case DX_HASH.HALF_MD4:
    case DX_HASH.HALF_MD4_UNSIGNED: {
      const inp = new Uint32Array(8);
      for (let p = 0, len = name.length; len > 0; len -= 32, p += 32) {
        str2hashbuf(name, p, len, inp, 8, signed);
        halfMd4Transform(buf, inp);
      }
      minorHash = buf[2]!;
      hash = buf[1]!;
      break;
    }
    case DX_HASH.TEA:
    case DX_HASH.TEA_UNSIGNED: {
      const inp = new Uint32Array(4);
      for (let p = 0, len = name.length; len > 0; len -= 16, p += 16) {
        str2hashbuf(name, p, len, inp, 4, signed);
        teaTransform(buf, inp);
      }
      hash = buf[0]!;
      minorHash = buf[1]!;
      break;
    }
    default:
      return { hash: 0, minorHash: 0 };
  }
  hash = (hash & ~1) >>> 0;
  if (hash === EXT4_HTREE_EOF_32BIT * 2) hash = (EXT4_HTREE_EOF_32BIT - 1) * 2;
  return { hash, minorHash };
}
