/**
 * The appliance's one configuration file (/etc/snapferry/config, or --config FILE, or
 * SNAPFERRY_CONFIG): INI-style lines, because an administrator edits it by hand over SSH and it has
 * no nesting to get wrong.
 *
 *   # comments and blank lines are ignored
 *   concurrency = 2                 jobs running at once (1..64; default 2)
 *   keep-jobs = 100                 finished jobs kept with their logs (1..10000; default 100)
 *   job-log-max-kib = 4096          a job's log is rotated past this size (16..1048576; default 4096)
 *   exclude = *.tmp                 excluded from every VM's backup (repeatable)
 *   datastore = /mnt/ds1            files below it may be named as DISK over SSH (repeatable;
 *                                   default /mnt, /media, /srv; block devices always may)
 *
 *   [repository nas]                a name the agent's --repo accepts
 *   url = sftp://backup@nas/srv/sf  a directory or sftp://user@host[:port]/path
 *   recipient = age1...             encrypt to (repeatable; at least one)
 *   ssh-key = /etc/snapferry/nas.key        SFTP login key (a file on the appliance, root-only)
 *   known-hosts = /etc/snapferry/known_hosts
 *
 *   [vm web1]                       `backup web1` over SSH
 *   source = /mnt/ds1/web1/web1.vmx (repeatable: a .vmx, VMDKs or /dev/disk/by-id/... devices)
 *   repository = nas
 *   kind = incremental              full | incremental | differential (default full)
 *   exclude = var/cache/**          (repeatable)
 *   schedule = *-*-* 02:00:00       systemd OnCalendar syntax (repeatable): a timer per VM
 *
 * Hostile or broken files end in typed, line-numbered errors (E_CONFIG_*), all of them at once,
 * within bounds: the file ≤ MAX_CONFIG_BYTES, a line ≤ MAX_LINE_BYTES, ≤ MAX_SECTIONS sections, ≤
 * MAX_VALUES values of one key in a section. The grammar has no nesting, so there is no depth to
 * bound: '[vm a [b]]' is a syntax error.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { parseRecipient } from '../archive/age/keys.js';
import { ExitCode, SnapferryError } from '../util/errors.js';
import { checkCalendar } from './calendar.js';
import { VM_NAME_RE } from './state.js';

export const DEFAULT_CONFIG = '/etc/snapferry/config';
export const MAX_CONFIG_BYTES = 1024 * 1024;
export const MAX_LINE_BYTES = 4096;
export const MAX_SECTIONS = 1024;
export const MAX_VALUES = 256;
export const MAX_ERRORS = 100;

export function configPath(flag?: string): string {
  return flag ?? (process.env.SNAPFERRY_CONFIG || DEFAULT_CONFIG);
}

export interface ConfigIssue {
  code: string;
  line: number;
  message: string;
  key?: string;
  value?: string;
  limit?: number;
}

export class ConfigError extends SnapferryError {
  constructor(
    readonly file: string,
    readonly issues: ConfigIssue[],
  ) {
    const first = issues[0]!;
    super(first.code, `${file}:${first.line}: ${first.message}${issues.length > 1 ? ` (and ${issues.length - 1} more)` : ''}`, { file, line: first.line, errors: issues.map((i) => `${i.line}: ${i.code}: ${i.message}`) }, ExitCode.usage);
  }
}

export interface Repository {
  name: string;
  line: number;
  url: string;
  recipients: string[];
  sshKey?: string;
  knownHosts?: string;
}

export interface VmConfig {
  name: string;
  line: number;
  sources: string[];
  repository?: string;
  kind: 'full' | 'incremental' | 'differential';
  excludes: string[];
  schedules: string[];
}

export interface Config {
  file: string;
  concurrency: number;
  keepJobs: number;
  jobLogMaxBytes: number;
  excludes: string[];
  /** Directories whose files a key may name as DISK over SSH (default /mnt, /media, /srv). */
  datastores: string[];
  repositories: Map<string, Repository>;
  vms: Map<string, VmConfig>;
}

export function defaultConfig(file = '(defaults)'): Config {
  return { file, concurrency: 2, keepJobs: 100, jobLogMaxBytes: 4096 * 1024, excludes: [], datastores: [], repositories: new Map(), vms: new Map() };
}

const KEYS: Record<'global' | 'repository' | 'vm', Record<string, 'one' | 'many'>> = {
  global: { concurrency: 'one', 'keep-jobs': 'one', 'job-log-max-kib': 'one', exclude: 'many', datastore: 'many' },
  repository: { url: 'one', recipient: 'many', 'ssh-key': 'one', 'known-hosts': 'one' },
  vm: { source: 'many', repository: 'one', kind: 'one', exclude: 'many', schedule: 'many' },
};

/** Reads at most MAX_CONFIG_BYTES + 1 bytes: a bigger file is refused without reading it all. */
export function readConfigFile(file: string): Config {
  const fd = openSync(file, 'r');
  let text: string;
  try {
    const size = fstatSync(fd).size;
    if (size > MAX_CONFIG_BYTES) throw new ConfigError(file, [{ code: 'E_CONFIG_BOUND', line: 0, message: `the file is ${size} bytes, more than the ${MAX_CONFIG_BYTES} accepted`, key: 'size', value: String(size), limit: MAX_CONFIG_BYTES }]);
    const buf = Buffer.alloc(Math.min(size, MAX_CONFIG_BYTES) + 1);
    let got = 0;
    for (;;) {
      const n = readSync(fd, buf, got, buf.length - got, null);
      if (n === 0) break;
      got += n;
      if (got === buf.length) break;
    }
    if (got > MAX_CONFIG_BYTES) throw new ConfigError(file, [{ code: 'E_CONFIG_BOUND', line: 0, message: `the file holds more than the ${MAX_CONFIG_BYTES} bytes accepted`, key: 'size', limit: MAX_CONFIG_BYTES }]);
    text = buf.subarray(0, got).toString('utf8');
  } finally {
    closeSync(fd);
  }
  return parseConfig(text, file);
}

export function parseConfig(text: string, file = 'config'): Config {
  const issues: ConfigIssue[] = [];
  const issue = (i: ConfigIssue): void => {
    if (issues.length < MAX_ERRORS) issues.push(i);
  };
  const cfg = defaultConfig(file);
  if (Buffer.byteLength(text, 'utf8') > MAX_CONFIG_BYTES) throw new ConfigError(file, [{ code: 'E_CONFIG_BOUND', line: 0, message: `more than ${MAX_CONFIG_BYTES} bytes`, key: 'size', limit: MAX_CONFIG_BYTES }]);
  type Section = { kind: 'global' | 'repository' | 'vm'; name: string; line: number; values: Map<string, { line: number; value: string }[]> };
  const sections: Section[] = [{ kind: 'global', name: '', line: 0, values: new Map() }];
  const lines = text.split('\n');
  for (let n = 0; n < lines.length; n++) {
    const lineNo = n + 1;
    const raw = lines[n]!.replace(/\r$/, '');
    if (Buffer.byteLength(raw, 'utf8') > MAX_LINE_BYTES) {
      issue({ code: 'E_CONFIG_BOUND', line: lineNo, message: `line is longer than ${MAX_LINE_BYTES} bytes`, key: 'line', limit: MAX_LINE_BYTES });
      continue;
    }
    const l = raw.trim();
    if (l === '' || l.startsWith('#') || l.startsWith(';')) continue;
    if (/[\x00-\x08\x0b-\x1f\x7f]/.test(l)) {
      issue({ code: 'E_CONFIG_SYNTAX', line: lineNo, message: 'control character' });
      continue;
    }
    if (l.startsWith('[')) {
      const m = /^\[\s*(repository|vm)\s+([^\s\]\[]+)\s*\]$/.exec(l);
      if (!m) {
        issue({ code: 'E_CONFIG_SYNTAX', line: lineNo, message: `'${l.slice(0, 80)}' is not a section header ([repository NAME] or [vm NAME])` });
        sections.push({ kind: 'global', name: '?', line: lineNo, values: new Map() }); // swallow its keys without more noise
        continue;
      }
      const kind = m[1] as 'repository' | 'vm';
      const name = m[2]!;
      if (sections.length > MAX_SECTIONS) {
        issue({ code: 'E_CONFIG_BOUND', line: lineNo, message: `more than ${MAX_SECTIONS} sections`, key: 'sections', limit: MAX_SECTIONS });
        break;
      }
      if (!VM_NAME_RE.test(name)) issue({ code: 'E_CONFIG_VALUE', line: lineNo, message: `${kind} name '${name.slice(0, 80)}': letters, digits, . _ - (at most 64, not starting with . _ -)`, key: kind, value: name.slice(0, 80) });
      if (sections.some((s) => s.kind === kind && s.name === name)) issue({ code: 'E_CONFIG_DUPLICATE', line: lineNo, message: `[${kind} ${name}] is defined twice`, key: kind, value: name });
      sections.push({ kind, name, line: lineNo, values: new Map() });
      continue;
    }
    const eq = l.indexOf('=');
    if (eq <= 0) {
      issue({ code: 'E_CONFIG_SYNTAX', line: lineNo, message: `'${l.slice(0, 80)}' is not 'key = value'` });
      continue;
    }
    const key = l.slice(0, eq).trim();
    const value = l.slice(eq + 1).trim();
    const sec = sections[sections.length - 1]!;
    if (sec.name === '?') continue;
    const allowed = KEYS[sec.kind][key];
    if (!allowed) {
      issue({ code: 'E_CONFIG_KEY', line: lineNo, message: `'${key.slice(0, 64)}' is not a key of ${sec.kind === 'global' ? 'the top level' : `a [${sec.kind}] section`} (known: ${Object.keys(KEYS[sec.kind]).join(', ')})`, key: key.slice(0, 64) });
      continue;
    }
    const list = sec.values.get(key) ?? [];
    if (allowed === 'one' && list.length) {
      issue({ code: 'E_CONFIG_DUPLICATE', line: lineNo, message: `'${key}' is set twice (first on line ${list[0]!.line})`, key });
      continue;
    }
    if (list.length >= MAX_VALUES) {
      issue({ code: 'E_CONFIG_BOUND', line: lineNo, message: `more than ${MAX_VALUES} '${key}' values`, key, limit: MAX_VALUES });
      continue;
    }
    if (value === '') {
      issue({ code: 'E_CONFIG_VALUE', line: lineNo, message: `'${key}' has no value`, key });
      continue;
    }
    list.push({ line: lineNo, value });
    sec.values.set(key, list);
  }

  const int = (sec: Section, key: string, min: number, max: number, fallback: number): number => {
    const v = sec.values.get(key)?.[0];
    if (!v) return fallback;
    if (!/^\d{1,10}$/.test(v.value) || Number(v.value) < min || Number(v.value) > max) {
      issue({ code: 'E_CONFIG_VALUE', line: v.line, message: `${key} takes an integer from ${min} to ${max}, not '${v.value.slice(0, 40)}'`, key, value: v.value.slice(0, 40), limit: max });
      return fallback;
    }
    return Number(v.value);
  };
  const all = (sec: Section, key: string): string[] => (sec.values.get(key) ?? []).map((v) => v.value);
  const path = (sec: Section, key: string): string | undefined => {
    const v = sec.values.get(key)?.[0];
    if (v && !v.value.startsWith('/')) issue({ code: 'E_CONFIG_VALUE', line: v.line, message: `${key} must be an absolute path`, key, value: v.value.slice(0, 80) });
    return v?.value;
  };

  const global = sections[0]!;
  cfg.concurrency = int(global, 'concurrency', 1, 64, 2);
  cfg.keepJobs = int(global, 'keep-jobs', 1, 10000, 100);
  cfg.jobLogMaxBytes = int(global, 'job-log-max-kib', 16, 1048576, 4096) * 1024;
  cfg.excludes = all(global, 'exclude');
  cfg.datastores = all(global, 'datastore');
  for (const d of global.values.get('datastore') ?? []) if (!d.value.startsWith('/')) issue({ code: 'E_CONFIG_VALUE', line: d.line, message: 'datastore must be an absolute path', key: 'datastore', value: d.value.slice(0, 80) });

  for (const sec of sections.slice(1)) {
    if (sec.name === '?') continue;
    if (sec.kind === 'repository') {
      const url = sec.values.get('url')?.[0];
      if (!url) issue({ code: 'E_CONFIG_VALUE', line: sec.line, message: `[repository ${sec.name}] has no url`, key: 'url' });
      else if (!url.value.startsWith('/') && !/^sftp:\/\/[^/@\s]+@[^/\s]+\/./.test(url.value)) issue({ code: 'E_CONFIG_VALUE', line: url.line, message: `url must be an absolute directory or sftp://user@host[:port]/path, not '${url.value.slice(0, 80)}'`, key: 'url', value: url.value.slice(0, 80) });
      const recipients = sec.values.get('recipient') ?? [];
      if (recipients.length === 0) issue({ code: 'E_CONFIG_VALUE', line: sec.line, message: `[repository ${sec.name}] has no recipient (backups are encrypted to public keys only)`, key: 'recipient' });
      for (const r of recipients) {
        try {
          parseRecipient(r.value);
        } catch (e) {
          issue({ code: 'E_CONFIG_VALUE', line: r.line, message: `recipient: ${(e as Error).message}`, key: 'recipient', value: r.value.slice(0, 80) });
        }
      }
      const sshKey = path(sec, 'ssh-key');
      const knownHosts = path(sec, 'known-hosts');
      cfg.repositories.set(sec.name, { name: sec.name, line: sec.line, url: url?.value ?? '', recipients: recipients.map((r) => r.value), ...(sshKey ? { sshKey } : {}), ...(knownHosts ? { knownHosts } : {}) });
    } else if (sec.kind === 'vm') {
      const sources = all(sec, 'source');
      if (sources.length === 0) issue({ code: 'E_CONFIG_VALUE', line: sec.line, message: `[vm ${sec.name}] has no source`, key: 'source' });
      for (const s of sec.values.get('source') ?? []) if (!s.value.startsWith('/')) issue({ code: 'E_CONFIG_VALUE', line: s.line, message: 'source must be an absolute path', key: 'source', value: s.value.slice(0, 80) });
      const kind = sec.values.get('kind')?.[0];
      if (kind && !['full', 'incremental', 'differential'].includes(kind.value)) issue({ code: 'E_CONFIG_VALUE', line: kind.line, message: `kind is full, incremental or differential, not '${kind.value.slice(0, 40)}'`, key: 'kind', value: kind.value.slice(0, 40) });
      for (const s of sec.values.get('schedule') ?? []) {
        const why = checkCalendar(s.value);
        if (why) issue({ code: 'E_CONFIG_SCHEDULE', line: s.line, message: `schedule '${s.value.slice(0, 80)}' is not a systemd calendar event: ${why}`, key: 'schedule', value: s.value.slice(0, 80) });
      }
      const repo = sec.values.get('repository')?.[0];
      cfg.vms.set(sec.name, {
        name: sec.name,
        line: sec.line,
        sources,
        ...(repo ? { repository: repo.value } : {}),
        kind: (kind?.value as VmConfig['kind'] | undefined) ?? 'full',
        excludes: all(sec, 'exclude'),
        schedules: all(sec, 'schedule'),
      });
    }
  }
  // references, once every section is known
  for (const sec of sections.slice(1)) {
    if (sec.kind !== 'vm' || sec.name === '?') continue;
    const repo = sec.values.get('repository')?.[0];
    if (repo && !cfg.repositories.has(repo.value)) issue({ code: 'E_CONFIG_REF', line: repo.line, message: `repository '${repo.value.slice(0, 64)}' is not defined (no [repository ${repo.value.slice(0, 64)}])`, key: 'repository', value: repo.value.slice(0, 64) });
    if (!repo && (sec.values.get('schedule') ?? []).length) issue({ code: 'E_CONFIG_REF', line: sec.line, message: `[vm ${sec.name}] has a schedule but no repository to back up to`, key: 'repository' });
  }
  // in file order, whichever pass found them
  if (issues.length) throw new ConfigError(file, issues.sort((x, y) => x.line - y.line));
  return cfg;
}

/** The configuration, or the defaults when the file does not exist (a fresh appliance). */
export function loadConfig(flag?: string): Config {
  const file = configPath(flag);
  try {
    return readConfigFile(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT' && flag === undefined && !process.env.SNAPFERRY_CONFIG) return defaultConfig(file);
    throw e;
  }
}
