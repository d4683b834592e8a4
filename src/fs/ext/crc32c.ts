/**
 * CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), table-driven. Node's zlib only has the
 * IEEE CRC-32. ext4's ext4_chksum() is the kernel's crc32c() *without* the customary pre- and
 * post-inversion: the caller passes the running value (~0 for the superblock, s_csum_seed for the
 * rest), so crc32cUpdate here is the raw update and never inverts.
 */
const TABLE = (() => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[i] = c >>> 0;
  }
  return t;
})();

/** The raw crc32c update of `crc` over buf[start, end) (Linux crc32c_le semantics). */
export function crc32cUpdate(crc: number, buf: Uint8Array, start = 0, end = buf.length): number {
  let c = crc >>> 0;
  for (let i = start; i < end; i++) c = TABLE[(c ^ buf[i]!) & 0xff]! ^ (c >>> 8);
  return c >>> 0;
}

/** The standard CRC-32C (inverted in and out), as iSCSI and RFC 3720 define it; "123456789" -> 0xE3069283. */
export function crc32c(buf: Uint8Array): number {
  return (crc32cUpdate(0xffffffff, buf) ^ 0xffffffff) >>> 0;
}

/** crc32cUpdate over a little-endian u32 (the inode number, the group number ...). */
export function crc32cU32(crc: number, value: number): number {
  let c = crc >>> 0;
  for (let i = 0, v = value >>> 0; i < 4; i++, v >>>= 8) c = TABLE[(c ^ v) & 0xff]! ^ (c >>> 8);
  return c >>> 0;
}
