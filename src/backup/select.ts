/**
 * What a backup takes: --include subtrees and --exclude globs, and the default excludes (files a
 * guest recreates at boot, whose bytes are worthless in a backup and often huge).
 *
 * Globs match a path inside its volume ('/'-separated, no leading '/'): `*` any run of characters
 * but '/', `**` any run including '/', `?` one character. A glob without '/' matches a name at any
 * depth; one with '/' is anchored at the volume's root. A matched directory is left out whole.
 */
import { UsageError } from '../util/errors.js';

export const DEFAULT_EXCLUDES: readonly string[] = [
  // Windows: paging, hibernation and swap files; the volume shadow copy store
  'pagefile.sys',
  'hiberfil.sys',
  'swapfile.sys',
  'System Volume Information/*{3808876B-C176-4e48-B7AE-04046E6CC752}',
  // Linux: kernel and runtime trees (empty mount points on disk, but never worth their contents)
  'proc/**',
  'sys/**',
  'run/**',
  'dev/shm/**',
  'tmp/**',
  'var/tmp/**',
  'var/cache/apt/archives/*.deb',
  'swapfile',
  'swap.img',
];

export interface Selector {
  /** Whether a tree path (<disk>/<volume>/<rel>) is left out, given the path inside its volume. */
  excluded(rel: string): boolean;
}

function globToRegExp(glob: string): RegExp {
  if (glob.length === 0 || glob.length > 4096) throw new UsageError(`--exclude '${glob}': a glob of 1 to 4096 characters`);
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*') {
      if (glob[i + 1] === '*') {
        re += '.*';
        i++;
      } else re += '[^/]*';
    } else if (c === '?') re += '[^/]';
    else if (c === '{' && glob.indexOf('}', i) > i) {
      // a literal brace group (GUID names) — braces are not alternatives here
      re += c.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    } else re += c.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(glob.includes('/') ? `^${re}$` : `(^|/)${re}$`, 'i');
}

export function makeSelector(excludes: readonly string[]): Selector {
  const res = excludes.map((g) => globToRegExp(g.replace(/^\/+/, '')));
  return { excluded: (rel) => rel !== '' && res.some((r) => r.test(rel)) };
}
