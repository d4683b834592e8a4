/**
 * verify: read a backup end to end — every age chunk of its archive and index authenticated,
 * every file's bytes hashed against its index line (an image's full disk: its blocksSha256) — and
 * name the archive and entry of any damage.
 * Files an incremental takes from earlier archives are checked there, through the same path a
 * restore takes.
 */
import type { Store } from '../store/types.js';
import { toSnapferryError } from '../util/errors.js';
import { archiveName, readManifest, requireRepository } from './repo.js';
import { Archives, entryData, indexEntries, openEncrypted, type Identities } from './restore.js';
import { verifyDiskMember } from './image-disk.js';

export interface Damage {
  archive: string;
  path?: string;
  code: string;
  message: string;
}

export interface VerifySummary {
  id: string;
  entries: number;
  files: number;
  bytes: number;
  damage: Damage[];
}

/** At most this many damaged entries are listed (the count goes on). */
const MAX_DAMAGE_LISTED = 1000;

export async function runVerify(store: Store, id: string, identities: Identities, onProgress?: (p: { files: number; bytes: number }) => void): Promise<VerifySummary> {
  await requireRepository(store);
  const m = await readManifest(store, id);
  const s: VerifySummary = { id, entries: 0, files: 0, bytes: 0, damage: [] };
  const hit = (d: Damage): void => {
    if (s.damage.length < MAX_DAMAGE_LISTED) s.damage.push(d);
  };
  // Every chunk of the archive itself, including those no file lies in (tar headers, the seek table).
  try {
    const ra = await openEncrypted(store, archiveName(id), identities);
    try {
      for (let off = 0; off < ra.size; off += 1 << 20) await ra.read(off, Math.min(1 << 20, ra.size - off));
    } finally {
      await ra.close();
    }
  } catch (err) {
    const e = toSnapferryError(err);
    hit({ archive: id, code: e.code, message: e.message });
  }
  const archives = new Archives(store, identities);
  try {
    for await (const e of indexEntries(store, m, identities)) {
      s.entries++;
      if (e.type === 'file' && e.header !== undefined && e.blocksSha256) {
        // an image backup's full disk: its digest of 1 MiB blocks (image-hash.ts)
        s.files++;
        try {
          s.bytes += await verifyDiskMember(archives, id, e);
        } catch (err) {
          const x = toSnapferryError(err);
          hit({ archive: e.archive ?? id, path: e.path, code: x.code, message: x.message });
        }
        continue;
      }
      if (e.type !== 'file' || e.header === undefined || !e.sha256) continue;
      s.files++;
      try {
        for await (const b of entryData(archives, id, e)) s.bytes += b.length;
      } catch (err) {
        const x = toSnapferryError(err);
        hit({ archive: e.archive ?? id, path: e.path, code: x.code, message: x.message });
      }
      onProgress?.({ files: s.files, bytes: s.bytes });
    }
  } catch (err) {
    const e = toSnapferryError(err);
    hit({ archive: id, path: '(index)', code: e.code, message: e.message });
  }
  await archives.close();
  return s;
}
