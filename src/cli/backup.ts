/** backup, snapshots, restore, verify: argument handling and printing over src/backup. */
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { ExitCode, UsageError } from '../util/errors.js';
import { VmTree } from '../vfs/tree.js';
import { openStore } from '../store/open.js';
import type { Store } from '../store/types.js';
import { parseRecipient, parseIdentityFile, type X25519Identity } from '../archive/age/keys.js';
import { runBackup, type BackupProgress } from '../backup/backup.js';
import { DEFAULT_EXCLUDES, makeSelector } from '../backup/select.js';
import { defaultStateDir } from '../backup/state.js';
import { listManifests, resolveArchiveId } from '../backup/repo.js';
import { restoreToStream, runRestore } from '../backup/restore.js';
import { runVerify } from '../backup/verify.js';
import { runImageBackup, type ImageSource } from '../backup/image.js';
import { restoreImageDisks } from '../backup/image-restore.js';
import { openDisk } from '../disk/open.js';
import { humanBytes } from './output.js';
import { diskOptions, expandSources, treeSources } from './sources.js';
import type { CommonOptions } from './main.js';

export interface RepoCliOptions extends CommonOptions {
  repo?: string;
  sshKey?: string;
  knownHosts?: string;
  acceptNewHostKey: boolean;
}

export interface BackupCliOptions extends RepoCliOptions {
  recipients: string[];
  recipientsFile?: string;
  includes: string[];
  excludes: string[];
  defaultExcludes: boolean;
  kind: 'full' | 'incremental' | 'differential';
  stateDir?: string;
  vm?: string;
  replay: boolean;
  version: string;
  /** --image: every disk whole (image.ts), not the files. */
  image?: boolean;
}

export interface RestoreCliOptions extends RepoCliOptions {
  identity?: string;
  target?: string;
  overwrite: boolean;
  /** restore: make device nodes too (root). */
  devices?: boolean;
  /** restore --image: the disks of an image backup as sparse raw files (--vmdk: monolithicSparse VMDKs). */
  image?: boolean;
  vmdk?: boolean;
}

async function repoOf(o: RepoCliOptions, create: boolean): Promise<Store> {
  if (!o.repo) throw new UsageError('--repo REPO is needed (a directory, or sftp://user@host[:port]/path)');
  return openStore(o.repo, { create, ...(o.sshKey ? { sshKey: o.sshKey } : {}), ...(o.knownHosts ? { knownHostsFile: o.knownHosts } : {}), acceptNewHostKey: o.acceptNewHostKey });
}

function emit(o: CommonOptions, record: Record<string, unknown>, text: string): void {
  if (o.json) process.stdout.write(`${JSON.stringify(record)}\n`);
  else if (text) process.stdout.write(`${text}\n`);
}

function status(line: string): void {
  if (process.stderr.isTTY) process.stderr.write(`\r${line.slice(0, 118).padEnd(118)}`);
}

export function identities(o: { identity?: string }): X25519Identity[] {
  // the key is read for this one command and not kept (`-` is stdin: the appliance's way)
  if (!o.identity) throw new UsageError('--identity KEYFILE is needed to read an archive (an age identity file; - reads it from stdin)');
  const text = readFileSync(o.identity === '-' ? 0 : o.identity, 'utf8');
  return parseIdentityFile(text);
}

export async function backupCommand(args: string[], o: BackupCliOptions): Promise<number> {
  const recipients = [...o.recipients];
  if (o.recipientsFile) for (const l of readFileSync(o.recipientsFile, 'utf8').split('\n')) if (l.trim() && !l.trim().startsWith('#')) recipients.push(l.trim());
  if (recipients.length === 0) throw new UsageError('backup needs at least one --recipient age1... (or --recipients-file F): the appliance encrypts to public keys only');
  for (const r of recipients) parseRecipient(r);
  if (o.image) return imageBackupCommand(args, recipients, o);
  // the SSH connection (on the store's thread) and the sources' opening overlap: ~0.6 s and ~0.2 s here
  const [opened, read] = await Promise.allSettled([repoOf(o, true), treeSources(args).then((s) => VmTree.open(s, { cacheBytes: o.cacheBytes, disk: diskOptions(o), replayJournal: o.replay }))]);
  if (opened.status === 'rejected' || read.status === 'rejected') {
    if (opened.status === 'fulfilled') await opened.value.close();
    if (read.status === 'fulfilled') await read.value.close();
    throw opened.status === 'rejected' ? opened.reason : (read as PromiseRejectedResult).reason;
  }
  const store = opened.value;
  const tree = read.value;
  const started = Date.now();
  try {
    const vm = o.vm ?? basename(args[0]!).replace(/\.(vmx|vmdk|raw|img)$/i, '');
    const progress = (p: BackupProgress): void => {
      const secs = Math.max(0.001, (Date.now() - started) / 1000);
      if (o.json) emit(o, { event: 'progress', ...p }, '');
      else status(`${p.files} files, ${humanBytes(p.bytesRead)} read (${humanBytes(p.bytesRead / secs)}/s), ${humanBytes(p.bytesStored)} stored, ${p.unchanged} unchanged  ${p.path}`);
    };
    const summary = await runBackup(tree, {
      store,
      vm,
      recipients,
      kind: o.kind,
      includes: o.includes,
      selector: makeSelector([...(o.defaultExcludes ? DEFAULT_EXCLUDES : []), ...o.excludes]),
      stateDir: o.stateDir ?? defaultStateDir(),
      version: o.version,
      onProgress: progress,
      onWarning: (w) => (o.json ? emit(o, { event: 'warning', ...w }, '') : process.stderr.write(`${process.stderr.isTTY ? '\n' : ''}warning: ${w.path}: ${w.code}: ${w.message}\n`)),
    });
    if (!o.json && process.stderr.isTTY) process.stderr.write('\n');
    for (const n of summary.notes) if (!o.json) process.stderr.write(`note: ${n}\n`);
    emit(
      o,
      { event: 'summary', ...summary },
      `backup ${summary.id} (${summary.kind}${summary.parent ? ` on ${summary.parent}` : ''}): ${summary.files} files, ${summary.entries} entries, ${humanBytes(summary.bytesRead)} read, ${summary.unchanged} unchanged, archive ${humanBytes(summary.archiveBytes)}, index ${humanBytes(summary.indexBytes)}, ${summary.errors} errors, ${(summary.durationMs / 1000).toFixed(1)} s`,
    );
    return summary.errors ? ExitCode.failure : ExitCode.ok;
  } finally {
    await tree.close();
    await store.close();
  }
}

/** backup --image: each disk of the VM whole, as one sparse member of one archive (src/backup/image.ts). */
async function imageBackupCommand(args: string[], recipients: string[], o: BackupCliOptions): Promise<number> {
  if (o.kind === 'differential') throw new UsageError('--image takes --incremental (or a full backup), not --differential');
  if (o.includes.length || o.excludes.length) throw new UsageError('--image backs up whole disks: --include and --exclude are for file-level backups');
  const named = await expandSources(args);
  const disks: ImageSource[] = [];
  const store = await repoOf(o, true);
  try {
    const used = new Set<string>();
    for (const s of named) {
      // the tree's name of the disk (src/vfs/tree.ts): the .vmx's device id, else the base name
      const base = s.id ?? (basename(s.path).replace(/\.[^.]*$/, '') || 'disk');
      let id = base;
      for (let i = 2; used.has(id); i++) id = `${base}-${i}`;
      used.add(id);
      disks.push({ id, path: s.path, disk: await openDisk(s.path, diskOptions(o)) });
    }
    const vm = o.vm ?? basename(args[0]!).replace(/\.(vmx|vmdk|raw|img)$/i, '');
    const vmx = args.find((a) => a.toLowerCase().endsWith('.vmx'));
    const started = Date.now();
    const summary = await runImageBackup(disks, {
      store,
      vm,
      recipients,
      incremental: o.kind === 'incremental',
      stateDir: o.stateDir ?? defaultStateDir(),
      ...(vmx ? { vmx } : {}),
      version: o.version,
      onProgress: (p) => {
        const secs = Math.max(0.001, (Date.now() - started) / 1000);
        if (o.json) emit(o, { event: 'progress', ...p }, '');
        else status(`${p.disk}: ${humanBytes(p.bytesRead)} read (${humanBytes(p.bytesRead / secs)}/s), ${humanBytes(p.bytesStored)} stored`);
      },
    });
    if (!o.json && process.stderr.isTTY) process.stderr.write('\n');
    for (const n of summary.notes) if (!o.json) process.stderr.write(`note: ${n}\n`);
    emit(
      o,
      { event: 'summary', ...summary },
      `image backup ${summary.id} (${summary.incremental ? `incremental on ${summary.parent}` : 'full'}): ${summary.disks.map((d) => `${d.id} ${humanBytes(d.size)} (${humanBytes(d.storedBytes)} stored, ${d.how})`).join(', ')}, archive ${humanBytes(summary.archiveBytes)}, ${(summary.durationMs / 1000).toFixed(1)} s`,
    );
    return ExitCode.ok;
  } finally {
    for (const d of disks) await d.disk.close().catch(() => {});
    await store.close();
  }
}

export async function snapshotsCommand(o: RepoCliOptions): Promise<number> {
  const store = await repoOf(o, false);
  try {
    const all = await listManifests(store);
    for (const m of all) emit(o, m as unknown as Record<string, unknown>, `${m.id}  ${m.kind.padEnd(12)} ${m.vm.padEnd(16)} ${m.createdAt}  ${String(m.files).padStart(7)} files  ${humanBytes(m.archive.size).padStart(9)}${m.parent ? `  on ${m.parent}` : ''}${m.errors ? `  ${m.errors} errors` : ''}`);
    if (!o.json && all.length === 0) process.stderr.write(`${store.url}: no backups yet\n`);
    return ExitCode.ok;
  } finally {
    await store.close();
  }
}

export async function restoreCommand(archive: string, paths: string[], o: RestoreCliOptions): Promise<number> {
  if (!o.target) throw new UsageError('--target DIR is needed (or - to write one file to stdout)');
  const ids = identities(o);
  const store = await repoOf(o, false);
  try {
    const id = await resolveArchiveId(store, archive);
    if (o.image) {
      if (o.target === '-') throw new UsageError('restore --image writes files <DISKID>.raw: --target DIR');
      const s = await restoreImageDisks({ store, id, identities: ids, target: o.target, overwrite: o.overwrite, disks: paths, vmdk: o.vmdk === true, onProgress: (p) => (o.json ? undefined : status(`${p.disk}: ${humanBytes(p.done)} of ${humanBytes(p.total)}`)) });
      if (!o.json && process.stderr.isTTY) process.stderr.write('\n');
      emit(o, { event: 'summary', ...s }, `restored ${s.disks.map((d) => `${d.path} (${humanBytes(d.size)}, ${humanBytes(d.written)} written)`).join(', ')} from ${id}; fetched ${humanBytes(s.bytesFetched)}`);
      return ExitCode.ok;
    }
    if (o.target === '-') {
      const s = await restoreToStream({ store, id, identities: ids, paths }, (b) => new Promise((res, rej) => process.stdout.write(b, (err) => (err ? rej(err) : res()))));
      process.stderr.write(o.json ? '' : `restored ${humanBytes(s.bytes)} from ${id}, fetched ${humanBytes(s.bytesFetched)}\n`);
      return ExitCode.ok;
    }
    const s = await runRestore({
      store,
      id,
      identities: ids,
      paths,
      target: o.target,
      overwrite: o.overwrite,
      devices: o.devices === true,
      onProgress: (p) => (o.json ? undefined : status(`${p.files} files, ${humanBytes(p.bytes)}  ${p.path}`)),
      onWarning: (w) => (o.json ? emit(o, { event: 'warning', ...w }, '') : process.stderr.write(`${process.stderr.isTTY ? '\n' : ''}${w.code.startsWith('W_') ? 'note' : 'error'}: ${w.path}: ${w.code}: ${w.message}\n`)),
    });
    if (!o.json && process.stderr.isTTY) process.stderr.write('\n');
    emit(o, { event: 'summary', ...s }, `restored ${s.entries} entries (${s.files} files, ${humanBytes(s.bytes)}) from ${id} into ${o.target}; fetched ${humanBytes(s.bytesFetched)}; ${s.skipped} skipped, ${s.errors} errors`);
    if (s.entries === 0 && paths.length) {
      emit(o, { error: { code: 'E_RESTORE_NOT_FOUND', message: `nothing in ${id} matches ${paths.join(', ')}` } }, `nothing in ${id} matches ${paths.join(', ')}`);
      return ExitCode.notFound;
    }
    return s.errors ? ExitCode.failure : ExitCode.ok;
  } finally {
    await store.close();
  }
}

export async function verifyCommand(archive: string | undefined, o: RestoreCliOptions): Promise<number> {
  const ids = identities(o);
  const store = await repoOf(o, false);
  try {
    const list = archive ? [await resolveArchiveId(store, archive)] : (await listManifests(store)).map((m) => m.id);
    let bad = 0;
    for (const id of list) {
      const s = await runVerify(store, id, ids, (p) => (o.json ? undefined : status(`${id}: ${p.files} files, ${humanBytes(p.bytes)}`)));
      if (!o.json && process.stderr.isTTY) process.stderr.write('\n');
      bad += s.damage.length;
      emit(o, { event: 'verified', ...s, ok: s.damage.length === 0 }, s.damage.length === 0 ? `${id}: ok (${s.entries} entries, ${s.files} files, ${humanBytes(s.bytes)} checked)` : `${id}: DAMAGED\n${s.damage.map((d) => `  ${d.archive}${d.path ? ` ${d.path}` : ''}: ${d.code}: ${d.message}`).join('\n')}`);
    }
    return bad ? ExitCode.corrupt : ExitCode.ok;
  } finally {
    await store.close();
  }
}
