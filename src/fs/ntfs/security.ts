/**
 * The owner of a file as a SID string ("S-1-5-21-..."): from the file's own $SECURITY_DESCRIPTOR
 * (NTFS 1.x, and what ntfs-3g writes), else from $Secure's $SDS stream at the entry the $SII index
 * gives for STANDARD_INFORMATION.security_id (NTFS 3.x). Structures: SECURITY_DESCRIPTOR_RELATIVE,
 * SECURITY_DESCRIPTOR_HEADER ([MS-DTYP] 2.4.6; Linux-NTFS layout.h).
 */
import type { Inode, Mft } from './mft.js';
import type { UpCase } from './upcase.js';
import { AT, FILE_Secure, SECURITY_DESCRIPTOR_RELATIVE, SECURITY_DESCRIPTOR_HEADER } from './structs.js';
import { parseViewIndexLookup } from './secure-index.js';

/** A SID at `off` of `b` as text, or undefined when it does not fit. */
export function sidToString(b: Buffer, off: number): string | undefined {
  if (off + 8 > b.length) return undefined;
  const revision = b.readUInt8(off);
  const count = b.readUInt8(off + 1);
  if (revision !== 1 || count > 15 || off + 8 + count * 4 > b.length) return undefined;
  const authority = b.readUIntBE(off + 2, 6);
  const subs: number[] = [];
  for (let i = 0; i < count; i++) subs.push(b.readUInt32LE(off + 8 + i * 4));
  return `S-1-${authority}${subs.map((s) => `-${s}`).join('')}`;
}

export function ownerOfDescriptor(sd: Buffer): string | undefined {
  if (sd.length < SECURITY_DESCRIPTOR_RELATIVE.SIZE) return undefined;
  const owner = sd.readUInt32LE(SECURITY_DESCRIPTOR_RELATIVE.owner);
  return owner ? sidToString(sd, owner) : undefined;
}

/** Owner SIDs by security_id kept per volume: a volume has few descriptors, shared by many files. */
export const MAX_CACHED_SECURITY_IDS = 16384;

export async function ownerSidOf(inode: Inode, mft: Mft, _upcase: UpCase, cache?: Map<number, string | undefined>): Promise<string | undefined> {
  const own = inode.stream(AT.SECURITY_DESCRIPTOR);
  if (own) return ownerOfDescriptor(await own.read(0, Math.min(own.size, 65536)));
  const id = inode.si.securityId;
  if (!id) return undefined;
  if (cache?.has(id)) return cache.get(id);
  const sid = await ownerSidOfSecureId(mft, id);
  if (cache) {
    if (cache.size >= MAX_CACHED_SECURITY_IDS) cache.clear();
    cache.set(id, sid);
  }
  return sid;
}

/** The owner of the descriptor $Secure holds for `id`: $SII maps the id to its place in $SDS. */
async function ownerSidOfSecureId(mft: Mft, id: number): Promise<string | undefined> {
  const secure = await mft.inode(FILE_Secure);
  const entry = await parseViewIndexLookup(secure, '$SII', id);
  if (!entry) return undefined;
  const sds = secure.stream(AT.DATA, '$SDS');
  if (!sds || entry.length < SECURITY_DESCRIPTOR_HEADER.SIZE || entry.length > 65536) return undefined;
  const rec = await sds.read(entry.offset, entry.length);
  if (rec.length < SECURITY_DESCRIPTOR_HEADER.SIZE || rec.readUInt32LE(SECURITY_DESCRIPTOR_HEADER.security_id) !== id) return undefined;
  return ownerOfDescriptor(rec.subarray(SECURITY_DESCRIPTOR_HEADER.SIZE));
}
