/**
 * The ustar header block, declared once with the field names of POSIX.1-2001 (IEEE Std 1003.1,
 * `pax` utility, "ustar Interchange Format", Table: ustar Header Block). Every header is one
 * 512-byte block; numeric fields are octal ASCII terminated by NUL or space, or (GNU extension,
 * read only) base-256 when the high bit of the first byte is set.
 *
 *   offset size field
 *        0  100 name       NUL-terminated unless it fills the field
 *      100    8 mode       octal, permission bits only (07777)
 *      108    8 uid        octal
 *      116    8 gid        octal
 *      124   12 size       octal: the bytes of data that follow (max 8 GiB - 1 in octal)
 *      136   12 mtime      octal seconds since the epoch
 *      148    8 chksum     octal sum of the header's bytes with chksum taken as 8 spaces
 *      156    1 typeflag
 *      157  100 linkname
 *      257    6 magic      "ustar\0" (POSIX); GNU's old format writes "ustar " + version " \0"
 *      263    2 version    "00"
 *      265   32 uname
 *      297   32 gname
 *      329    8 devmajor   octal
 *      337    8 devminor   octal
 *      345  155 prefix     joined to name with '/' when non-empty (POSIX ustar only)
 *      500   12 (pad)
 */

export const BLOCK_SIZE = 512;

export interface HeaderField {
  readonly offset: number;
  readonly length: number;
}

export const USTAR_HEADER = {
  name: { offset: 0, length: 100 },
  mode: { offset: 100, length: 8 },
  uid: { offset: 108, length: 8 },
  gid: { offset: 116, length: 8 },
  size: { offset: 124, length: 12 },
  mtime: { offset: 136, length: 12 },
  chksum: { offset: 148, length: 8 },
  typeflag: { offset: 156, length: 1 },
  linkname: { offset: 157, length: 100 },
  magic: { offset: 257, length: 6 },
  version: { offset: 263, length: 2 },
  uname: { offset: 265, length: 32 },
  gname: { offset: 297, length: 32 },
  devmajor: { offset: 329, length: 8 },
  devminor: { offset: 337, length: 8 },
  prefix: { offset: 345, length: 155 },
} as const satisfies Record<string, HeaderField>;

export type UstarField = keyof typeof USTAR_HEADER;

/** POSIX ustar magic and version ("ustar\0", "00"). */
export const TMAGIC = Buffer.from('ustar\0', 'latin1');
export const TVERSION = Buffer.from('00', 'latin1');
/** GNU's pre-POSIX magic+version ("ustar  \0" across both fields): prefix is not a prefix there. */
export const GNU_MAGIC = Buffer.from('ustar  \0', 'latin1');

/** typeflag values (POSIX names; 'L'/'K' are GNU long name/link, read only). */
export const TYPEFLAG = {
  REGTYPE: '0',
  AREGTYPE: '\0',
  LNKTYPE: '1',
  SYMTYPE: '2',
  CHRTYPE: '3',
  BLKTYPE: '4',
  DIRTYPE: '5',
  FIFOTYPE: '6',
  CONTTYPE: '7',
  XHDTYPE: 'x',
  XGLTYPE: 'g',
  GNUTYPE_LONGNAME: 'L',
  GNUTYPE_LONGLINK: 'K',
} as const;

/** Largest values an octal field of each width holds (width - 1 digits, then NUL). */
export const OCTAL_MAX = {
  8: 0o7777777,
  12: 0o77777777777,
} as const;

/** Permission bits a mode field carries (setuid, setgid, sticky, rwx x 3). */
export const MODE_BITS = 0o7777;

/** The end of an archive: two zero blocks (POSIX: "at least two consecutive 512-byte blocks of zeros"). */
export const END_OF_ARCHIVE_BLOCKS = 2;
