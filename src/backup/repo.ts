/**
 * A repository: a store location holding self-describing archives. Each backup writes three
 * objects, the manifest last:
 *
 *   archives/<id>.tar.zst.age      the archive: PAX tar in zstd frames (seek table at the end), in age
 *   archives/<id>.index.zst.age    its index (src/archive/index.ts), encrypted the same way
 *   archives/<id>.manifest.json    plaintext, no file names: VM, time, kind, parent, sizes, recipients
 *
 * A backup exists once its manifest does (a store's put is atomic), so a backup cut short leaves at
 * most unlisted objects. There is no repository-wide index to lose: losing one archive or index
 * costs that backup (and the incrementals that point into it), no other.
 */
import { createHash, randomBytes } from 'node:crypto';
import { ExitCode, SnapferryError, CorruptStructureError } from '../util/errors.js';
import type { Store, PutHandle } from '../store/types.js';
import { openArchiveSink, type ArchiveSink } from '../archive/stack.js';
import { INDEX_FORMAT, INDEX_VERSION, encodeIndexLine } from '../archive/index.js';

export const REPO_MARKER = 'snapferry-repository.json';
export const MANIFEST_FORMAT = 'snapferry-manifest';
export const MANIFEST_VERSION = 1;
/** A manifest is small; anything larger is not ours. */
export const MAX_MANIFEST_BYTES = 1 << 20;

export type BackupKind = 'full' | 'incremental' | 'differential' | 'image';

export interface Manifest {
  format: typeof MANIFEST_FORMAT;
  version: number;
  id: string;
  vm: string;
  createdAt: string;
  kind: BackupKind;
  /** The archive an incremental or differential was taken against (its index points into the chain). */
  parent?: string;
  /** Every archive this one's index points into, itself excluded (restore needs them all). */
  needs: string[];
  /** sha256 of each age recipient string: which keys can read it, without the keys. */
  recipients: string[];
  files: number;
  /** Logical bytes of the files present at this point in time, and of those stored in this archive. */
  bytes: number;
  storedBytes: number;
  archive: { name: string; size: number };
  index: { name: string; size: number };
  errors: number;
  durationMs: number;
  snapferry: string;
}

export class RepoError extends SnapferryError {}

export function newArchiveId(now = new Date()): string {
  const t = now.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
  return `${t}-${randomBytes(3).toString('hex')}`;
}

export const archiveName = (id: string): string => `archives/${id}.tar.zst.age`;
export const indexName = (id: string): string => `archives/${id}.index.zst.age`;
export const manifestName = (id: string): string => `archives/${id}.manifest.json`;

export function recipientFingerprint(recipient: string): string {
  return createHash('sha256').update(recipient).digest('hex').slice(0, 16);
}

async function putAll(store: Store, name: string, body: Buffer): Promise<void> {
  const h = await store.put(name);
  try {
    await h.write(body);
    await h.end();
  } catch (err) {
    await h.abort().catch(() => {});
    throw err;
  }
}

/** Makes sure the location is a repository: marks a new one, accepts an existing one. */
export async function ensureRepository(store: Store): Promise<void> {
  if (await store.stat(REPO_MARKER)) return;
  const existing = await store.list('archives/');
  if (existing.length > 0) throw new RepoError('E_REPO_MARKER', `${store.url} holds archives but no ${REPO_MARKER}`, { url: store.url }, ExitCode.corrupt);
  await putAll(store, REPO_MARKER, Buffer.from(`${JSON.stringify({ format: 'snapferry-repository', version: 1, createdAt: new Date().toISOString() })}\n`));
}

/** A backup's archive and index being written (file-level and image backups alike). */
export interface BackupObjects {
  archive: ArchiveSink;
  /** Its header line is written already. */
  index: ArchiveSink;
  /** Abandons both uploads (nothing is listed: the manifest is never written). */
  abort(): Promise<void>;
}

/** Opens archives/<id>.tar.zst.age and its index for writing, both encrypted to `recipients`. */
/** Uncompressed bytes per zstd frame of an index: ~64 KiB compressed, one age chunk. */
export const INDEX_FRAME_SIZE = 128 * 1024;

export async function openBackupObjects(store: Store, id: string, o: { recipients: string[]; frameSize?: number }): Promise<BackupObjects> {
  const puts: PutHandle[] = [];
  const abort = async (): Promise<void> => {
    for (const h of puts) await h.abort().catch(() => {});
  };
  try {
    puts.push(await store.put(archiveName(id)));
    puts.push(await store.put(indexName(id)));
    const sinkOpts = { recipients: o.recipients, ...(o.frameSize ? { frameSize: o.frameSize } : {}) };
    const archive = openArchiveSink(puts[0]!, sinkOpts);
    // the index trickles in beside the archive: one frame in flight is enough; small frames, so that
    // a restore's bisection of the index (restore.ts) fetches little more than an age chunk a probe
    const index = openArchiveSink(puts[1]!, { ...sinkOpts, frameSize: Math.min(o.frameSize ?? INDEX_FRAME_SIZE, INDEX_FRAME_SIZE), framesInFlight: 1 });
    await index.write(encodeIndexLine({ format: INDEX_FORMAT, version: INDEX_VERSION, archive: id }));
    return { archive, index, abort };
  } catch (err) {
    await abort();
    throw err;
  }
}

export async function requireRepository(store: Store): Promise<void> {
  if (!(await store.stat(REPO_MARKER))) throw new RepoError('E_REPO_NOT_FOUND', `${store.url} is not a snapferry repository (no ${REPO_MARKER})`, { url: store.url }, ExitCode.notFound);
}

export async function writeManifest(store: Store, m: Manifest): Promise<void> {
  await putAll(store, manifestName(m.id), Buffer.from(`${JSON.stringify(m, null, 1)}\n`));
}

export async function readManifest(store: Store, id: string): Promise<Manifest> {
  const st = await store.stat(manifestName(id));
  if (!st) throw new RepoError('E_ARCHIVE_NOT_FOUND', `no archive '${id}' in ${store.url}`, { id, url: store.url }, ExitCode.notFound);
  if (st.size > MAX_MANIFEST_BYTES) throw new CorruptStructureError('E_MANIFEST', `${manifestName(id)}: ${st.size} bytes, over ${MAX_MANIFEST_BYTES}`, { id });
  const raw = await store.get(manifestName(id), 0, st.size);
  let m: Partial<Manifest>;
  try {
    m = JSON.parse(raw.toString('utf8')) as Partial<Manifest>;
  } catch {
    throw new CorruptStructureError('E_MANIFEST', `${manifestName(id)} is not JSON`, { id });
  }
  if (m.format !== MANIFEST_FORMAT || m.id !== id || !Array.isArray(m.needs) || !m.archive || !m.index) throw new CorruptStructureError('E_MANIFEST', `${manifestName(id)} is not a snapferry manifest for '${id}'`, { id });
  if (m.version !== MANIFEST_VERSION) throw new CorruptStructureError('E_MANIFEST_VERSION', `${manifestName(id)}: version ${String(m.version)}; this snapferry reads ${MANIFEST_VERSION}`, { id });
  return m as Manifest;
}

/** Every backup in the repository, oldest first (ids sort by time). */
export async function listManifests(store: Store): Promise<Manifest[]> {
  const names = (await store.list('archives/')).map((o) => o.name).filter((n) => n.endsWith('.manifest.json'));
  const ids = names.map((n) => n.slice('archives/'.length, -'.manifest.json'.length)).sort();
  const out: Manifest[] = [];
  for (const id of ids) out.push(await readManifest(store, id));
  return out;
}

/** An archive id as the user gave it: an id, a unique prefix of one, or 'latest'. */
export async function resolveArchiveId(store: Store, given: string): Promise<string> {
  const ids = (await store.list('archives/')).map((o) => o.name).filter((n) => n.endsWith('.manifest.json')).map((n) => n.slice('archives/'.length, -'.manifest.json'.length)).sort();
  if (given === 'latest') {
    const last = ids[ids.length - 1];
    if (!last) throw new RepoError('E_ARCHIVE_NOT_FOUND', `${store.url} holds no backup yet`, { url: store.url }, ExitCode.notFound);
    return last;
  }
  const hits = ids.filter((id) => id === given || id.startsWith(given));
  if (hits.includes(given)) return given;
  if (hits.length === 1) return hits[0]!;
  if (hits.length === 0) throw new RepoError('E_ARCHIVE_NOT_FOUND', `no archive '${given}' in ${store.url}`, { id: given, url: store.url }, ExitCode.notFound);
  throw new RepoError('E_ARCHIVE_AMBIGUOUS', `'${given}' names ${hits.length} archives: ${hits.slice(0, 5).join(', ')}`, { id: given }, ExitCode.usage);
}
