/**
 * OpenSSH's known_hosts, as sshd(8) "SSH_KNOWN_HOSTS FILE FORMAT" describes it:
 *
 *   [@revoked|@cert-authority] hostpatterns keytype base64-key [comment]
 *
 * hostpatterns is a comma list of names, `[host]:port` for a port other than 22, `*`/`?`
 * wildcards, `!` negations, or one hashed name `|1|base64(salt)|base64(HMAC-SHA1(salt, name))`
 * (HashKnownHosts). We check a host key the way StrictHostKeyChecking=yes / accept-new do: a
 * matching entry with the same key is known; a revoked key is refused; a host that has entries but
 * none with this key is *changed* (refused, even with accept-new: that is what a man in the middle
 * looks like); no entry is unknown. @cert-authority lines are ignored (we do not do certificates).
 */
import { createHmac } from 'node:crypto';

export type HostKeyVerdict = 'known' | 'changed' | 'unknown' | 'revoked';

/** The name under which OpenSSH records a host: `host`, or `[host]:port` for another port. */
export function knownHostName(host: string, port: number): string {
  return port === 22 ? host : `[${host}]:${port}`;
}

function glob(pattern: string, name: string): boolean {
  const re = new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`, 'i');
  return re.test(name);
}

function hashedMatch(entry: string, name: string): boolean {
  const [, , salt, hash] = entry.split('|');
  if (!salt || !hash) return false;
  return createHmac('sha1', Buffer.from(salt, 'base64')).update(name).digest('base64') === hash;
}

/** Whether a host-pattern list matches `name` (a negated match wins, as in OpenSSH's match_hostname). */
function patternsMatch(patterns: string, name: string): boolean {
  if (patterns.startsWith('|1|')) return hashedMatch(patterns, name);
  let matched = false;
  for (const p of patterns.split(',')) {
    if (p.startsWith('!')) {
      if (glob(p.slice(1), name)) return false;
    } else if (glob(p, name)) matched = true;
  }
  return matched;
}

export interface KnownHostsEntry {
  marker: '' | '@revoked' | '@cert-authority';
  patterns: string;
  keyType: string;
  key: string;
}

export function parseKnownHosts(text: string): KnownHostsEntry[] {
  const out: KnownHostsEntry[] = [];
  for (const line of text.split('\n')) {
    const fields = line.trim().split(/\s+/);
    if (!fields[0] || fields[0].startsWith('#')) continue;
    const marker = fields[0] === '@revoked' || fields[0] === '@cert-authority' ? (fields.shift() as KnownHostsEntry['marker']) : '';
    const [patterns, keyType, key] = fields;
    if (!patterns || !keyType || !key) continue;
    out.push({ marker, patterns, keyType, key });
  }
  return out;
}

/** The key types known for a host, in file order (to prefer them in the key exchange, as OpenSSH does). */
export function knownKeyTypes(text: string, host: string, port: number): string[] {
  const name = knownHostName(host, port);
  const types = parseKnownHosts(text)
    .filter((e) => e.marker === '' && patternsMatch(e.patterns, name))
    .map((e) => e.keyType);
  return [...new Set(types)];
}

export function checkKnownHosts(text: string, host: string, port: number, keyType: string, blob: Buffer): HostKeyVerdict {
  const name = knownHostName(host, port);
  const b64 = blob.toString('base64');
  let hostSeen = false;
  let known = false;
  for (const e of parseKnownHosts(text)) {
    if (e.marker === '@cert-authority') continue;
    if (e.marker === '@revoked') {
      if (e.key === b64) return 'revoked';
      continue;
    }
    if (!patternsMatch(e.patterns, name)) continue;
    hostSeen = true;
    if (e.keyType === keyType && e.key === b64) known = true;
  }
  return known ? 'known' : hostSeen ? 'changed' : 'unknown';
}

/** The line accept-new appends (unhashed, like OpenSSH with HashKnownHosts no). */
export function knownHostsLine(host: string, port: number, keyType: string, blob: Buffer): string {
  return `${knownHostName(host, port)} ${keyType} ${blob.toString('base64')}\n`;
}
