/**
 * What a key may ask the agent for: an allow-list of snapferry's own subcommands, each with the
 * least role that may run it and the options it passes through. Anything not listed is refused with
 * a typed error before anything runs.
 *
 * Roles, each including the one before:
 *   read-only  look and check: help, inspect, ls, stat, disks, snapshots, verify, jobs, job, config check
 *   restore    + read files out: cat, restore (to the SSH session's stdout only: --target -)
 *   operator   + change state: backup (queued as a job), cancel
 *
 * Not offered over SSH at all: mount/umount (a FUSE tree on the appliance serves no remote client;
 * restore and cat carry the bytes), export (a whole disk image), config apply and jobd (the
 * appliance's own administration). Options that would make the appliance read or write a path of
 * the client's choosing outside the disks are not passed through: --target other than -, --identity
 * other than - (identities never rest on the appliance), --state-dir, --ssh-key, --known-hosts,
 * --accept-new-host-key, --recipients-file, --overwrite, --force, --log, --allow-external-extents.
 * Repositories' keys and known_hosts come from the configuration (--repo NAME).
 */
import { AgentRefusal } from './errors.js';

export const ROLES = ['read-only', 'restore', 'operator'] as const;
export type Role = (typeof ROLES)[number];
const RANK: Record<Role, number> = { 'read-only': 0, restore: 1, operator: 2 };

export function isRole(s: string): s is Role {
  return (ROLES as readonly string[]).includes(s);
}

interface OptionRule {
  kind: 'flag' | 'value' | 'multi';
  /** A reason to refuse the value, or null to accept it. */
  check?: (value: string) => string | null;
}

interface CommandRule {
  role: Role;
  summary: string;
  options: Record<string, OptionRule>;
  minArgs: number;
  maxArgs: number;
  /** When set, the first positional must be one of these (config check). */
  sub?: readonly string[];
}

const flag: OptionRule = { kind: 'flag' };
const value: OptionRule = { kind: 'value' };
const multi: OptionRule = { kind: 'multi' };
const intIn = (min: number, max: number): OptionRule => ({ kind: 'value', check: (v) => (/^\d{1,9}$/.test(v) && Number(v) >= min && Number(v) <= max ? null : `takes an integer from ${min} to ${max}`) });
const onlyDash: OptionRule = { kind: 'value', check: (v) => (v === '-' ? null : "only '-' is accepted over SSH") };

/** Options of every command that reads disks. */
const DISK = { json: flag, 'cache-mib': intIn(1, 4096), 'no-replay': flag, 'ignore-cid-mismatch': flag, 'max-chain-depth': intIn(1, 4096) };

export const COMMANDS: Record<string, CommandRule> = {
  help: { role: 'read-only', summary: 'what this key may run', options: { json: flag }, minArgs: 0, maxArgs: 0 },
  inspect: { role: 'read-only', summary: 'inspect DISK... [--json]', options: DISK, minArgs: 1, maxArgs: 64 },
  ls: { role: 'read-only', summary: 'ls DISK [VOLUME[/PATH]] [-R] [--sha256] [--json]', options: { ...DISK, recursive: flag, sha256: flag }, minArgs: 1, maxArgs: 2 },
  stat: { role: 'read-only', summary: 'stat DISK VOLUME/PATH [--json]', options: DISK, minArgs: 2, maxArgs: 2 },
  disks: { role: 'read-only', summary: 'disks [--all] [--json]', options: { json: flag, all: flag }, minArgs: 0, maxArgs: 0 },
  snapshots: { role: 'read-only', summary: 'snapshots --repo REPO [--json]', options: { json: flag, repo: value }, minArgs: 0, maxArgs: 0 },
  verify: { role: 'read-only', summary: 'verify --repo REPO [ID] --identity - [--json]', options: { json: flag, repo: value, identity: onlyDash }, minArgs: 0, maxArgs: 1 },
  jobs: { role: 'read-only', summary: 'jobs [--json]', options: { json: flag }, minArgs: 0, maxArgs: 0 },
  job: { role: 'read-only', summary: 'job ID [--follow] [--json]', options: { json: flag, follow: flag }, minArgs: 1, maxArgs: 1 },
  config: { role: 'read-only', summary: 'config check [--json]', options: { json: flag }, minArgs: 1, maxArgs: 1, sub: ['check'] },
  cat: { role: 'restore', summary: 'cat DISK VOLUME/PATH[:STREAM]', options: { 'cache-mib': intIn(1, 4096), 'no-replay': flag, 'ignore-cid-mismatch': flag, 'max-chain-depth': intIn(1, 4096) }, minArgs: 2, maxArgs: 2 },
  restore: { role: 'restore', summary: 'restore --repo REPO ID [PATH...] --identity - --target -', options: { json: flag, repo: value, identity: onlyDash, target: onlyDash }, minArgs: 1, maxArgs: 64 },
  backup: {
    role: 'operator',
    summary: 'backup VM | DISK... [--repo REPO] [--recipient AGE1...] [--incremental|--differential] [--follow] [--json]',
    options: { ...DISK, repo: value, recipient: multi, full: flag, incremental: flag, differential: flag, include: multi, exclude: multi, 'no-default-excludes': flag, vm: value, follow: flag, image: flag },
    minArgs: 1,
    maxArgs: 64,
  },
  cancel: { role: 'operator', summary: 'cancel ID [--json]', options: { json: flag }, minArgs: 1, maxArgs: 1 },
};

const SHORT: Record<string, string> = { R: 'recursive', h: 'help' };

export interface AgentRequest {
  command: string;
  /** Flags as true, values as their (last) value, multi options as every value in order. */
  options: Map<string, true | string | string[]>;
  positionals: string[];
  help: boolean;
}

export function mayRun(role: Role, command: string): boolean {
  const rule = COMMANDS[command];
  return rule !== undefined && RANK[role] >= RANK[rule.role];
}

/** Checks words (from splitCommand) against the allow-list and the role; returns what to run. */
export function authorize(words: string[], role: Role): AgentRequest {
  // `ssh appliance snapferry ls ...` names the program as a local user would; it is the same request
  if (words[0] === 'snapferry') return authorize(words.slice(1), role);
  const [command, ...rest] = words;
  if (command === undefined) throw new AgentRefusal('E_AGENT_COMMAND', 'an empty command: say which subcommand to run (try: help)', {});
  if (command === '--help' || command === '-h') return authorize(['help', ...rest], role);
  const rule = Object.hasOwn(COMMANDS, command) ? COMMANDS[command] : undefined;
  if (!rule) throw new AgentRefusal('E_AGENT_COMMAND', `'${command.slice(0, 64)}' is not a subcommand the agent offers (try: help)`, { command: command.slice(0, 64), allowed: Object.keys(COMMANDS) });
  if (RANK[role] < RANK[rule.role]) throw new AgentRefusal('E_AGENT_ROLE', `a ${role} key may not run ${command} (it needs the ${rule.role} role)`, { command, role, needs: rule.role });
  const options = new Map<string, true | string | string[]>();
  const positionals: string[] = [];
  let help = false;
  for (let i = 0; i < rest.length; i++) {
    const w = rest[i]!;
    if (w === '--') {
      positionals.push(...rest.slice(i + 1));
      break;
    }
    if (w.startsWith('--')) {
      const eq = w.indexOf('=');
      const name = w.slice(2, eq < 0 ? undefined : eq);
      if (name === 'help') {
        help = true;
        continue;
      }
      const opt = Object.hasOwn(rule.options, name) ? rule.options[name] : undefined;
      if (!opt) throw new AgentRefusal('E_AGENT_OPTION', `${command} --${name.slice(0, 64)} is not accepted over SSH`, { command, option: name.slice(0, 64) });
      if (opt.kind === 'flag') {
        if (eq >= 0) throw new AgentRefusal('E_AGENT_OPTION', `--${name} takes no value`, { command, option: name });
        options.set(name, true);
        continue;
      }
      let v: string;
      if (eq >= 0) v = w.slice(eq + 1);
      else {
        if (i + 1 >= rest.length) throw new AgentRefusal('E_AGENT_OPTION', `--${name} needs a value`, { command, option: name });
        v = rest[++i]!;
      }
      const why = opt.check?.(v);
      if (why) throw new AgentRefusal('E_AGENT_OPTION', `--${name} ${why}`, { command, option: name });
      if (opt.kind === 'multi') {
        const list = options.get(name);
        options.set(name, [...(Array.isArray(list) ? list : []), v]);
      } else options.set(name, v);
      continue;
    }
    if (w.length > 1 && w.startsWith('-')) {
      const long = w.length === 2 ? SHORT[w[1]!] : undefined;
      if (long === 'help') {
        help = true;
        continue;
      }
      if (!long || !Object.hasOwn(rule.options, long)) throw new AgentRefusal('E_AGENT_OPTION', `${command} ${w.slice(0, 64)} is not accepted over SSH`, { command, option: w.slice(0, 64) });
      options.set(long, true);
      continue;
    }
    positionals.push(w);
  }
  if (!help) {
    if (positionals.length < rule.minArgs || positionals.length > rule.maxArgs) {
      throw new AgentRefusal('E_AGENT_COMMAND', `${command} takes ${rule.minArgs === rule.maxArgs ? rule.minArgs : `${rule.minArgs} to ${rule.maxArgs}`} argument${rule.maxArgs === 1 ? '' : 's'}, not ${positionals.length}: ${rule.summary}`, { command, args: positionals.length });
    }
    if (rule.sub && !rule.sub.includes(positionals[0]!)) throw new AgentRefusal('E_AGENT_COMMAND', `${command} ${positionals[0]!.slice(0, 64)} is not offered over SSH (only: ${rule.sub.join(', ')})`, { command, sub: positionals[0]!.slice(0, 64) });
  }
  return { command, options, positionals, help };
}

/** The subcommands a role may run, for `help`. */
export function allowedFor(role: Role): { command: string; role: Role; usage: string }[] {
  return Object.entries(COMMANDS)
    .filter(([c]) => mayRun(role, c))
    .map(([command, r]) => ({ command, role: r.role, usage: r.summary }));
}
