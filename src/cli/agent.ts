/**
 * snapferry agent: the forced command of the appliance's authorized_keys. It reads
 * SSH_ORIGINAL_COMMAND, splits it itself (src/agent/split.ts: no shell), checks it against the
 * allow-list and the key's role (src/agent/policy.ts), logs the request, and runs it: in this
 * process for what answers at once, as a queued job (jobd) for a backup.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { ExitCode, SnapferryError, UsageError, toSnapferryError } from '../util/errors.js';
import { AgentRefusal } from '../agent/errors.js';
import { defaultConfig, loadConfig, type Config } from '../agent/config.js';
import { identitiesFromSecret, readSecret } from '../agent/identity.js';
import { allowedFor, authorize, isRole, ROLES, type AgentRequest, type Role } from '../agent/policy.js';
import { splitCommand, MAX_COMMAND_BYTES } from '../agent/split.js';
import { StateDir } from '../agent/state.js';
import { checkDiskArg } from '../agent/sources.js';

export const AGENT_HELP = `snapferry agent --role=operator|restore|read-only [--config FILE]

The forced command of an SSH key on the appliance. sshd runs it for every login with that key and
puts the client's command line in SSH_ORIGINAL_COMMAND; the agent splits that line itself (no shell
is ever run), accepts only the subcommands below, and only those the key's role allows:

  read-only   help, inspect, ls, stat, disks, snapshots, verify, jobs, job, config check
  restore     the above + cat, restore (--target - : the files come back on the SSH session)
  operator    the above + backup (queued as a job, answered at once with its id), cancel

authorized_keys (one line per key; 'restrict' refuses PTYs, port, agent and X11 forwarding):
  command="/usr/local/bin/snapferry agent --role=operator",restrict ssh-ed25519 AAAA... admin@laptop
  command="/usr/local/bin/snapferry agent --role=read-only",restrict ssh-ed25519 AAAA... monitoring

Quoting (a strict subset of sh: what is accepted means what it would mean to sh, nothing expands):
words split on spaces and tabs; '...' is literal; "..." is literal except \\" and \\\\; \\c is c.
Outside quotes ; | & \` $ < > ( ) { } * ? [ ] (and # or ~ starting a word) are refused, as are
control characters anywhere, and "$" or "\`" inside double quotes: quote a glob ('*.tmp') to pass it.
The line is at most ${MAX_COMMAND_BYTES} bytes, 256 words of 4096 bytes.

Over SSH, --repo takes a repository name from the config (its url, recipients, ssh key and
known_hosts are used) or a URL; --identity and --target take only '-' (a restore key comes on stdin
and is wiped from memory after the command; files go to stdout). backup VM backs up a [vm VM] of the
config. Options that name paths on the appliance (--state-dir, --ssh-key, --known-hosts, --log,
--recipients-file ...) are refused.

Refusals are one JSON line on stdout, {"error":{"code","message","data"}}, one line on stderr, and a
line in the state dir's agent.log (as is every accepted request). Codes:
  E_AGENT_INTERACTIVE  no command (an interactive login, or sftp/scp without one)
  E_AGENT_SYNTAX       a quoting error, a shell metacharacter or a control character
  E_AGENT_BOUND        the command line is too long or has too many or too long words
  E_AGENT_COMMAND      not a subcommand the agent offers, or the wrong number of arguments
  E_AGENT_OPTION       an option not accepted over SSH, or a value it does not accept
  E_AGENT_SOURCE       a DISK that is neither an attached block device nor a file below a datastore
                       (config 'datastore = DIR'; default /mnt, /media, /srv), or the appliance's own disk
  E_AGENT_ROLE         the key's role may not run the subcommand, or the key has no valid --role

When not run as root, the agent re-runs itself through 'sudo -n' (the appliance's sudoers lets the
snapferry user run exactly '/usr/local/bin/snapferry agent --role=...' as root, keeping
SSH_ORIGINAL_COMMAND): disks and FUSE need root; the unprivileged half parses nothing.

Exit codes: those of the subcommand (see snapferry --help); 2 for a refusal.

Examples:  (from an administrator's machine)
  ssh snapferry@appliance disks --json
  ssh snapferry@appliance backup vm1 --json                    queue a backup of [vm vm1]; prints its job id
  ssh snapferry@appliance job 20261205T103700Z-1a2b3c4d --follow
  ssh snapferry@appliance "ls /dev/disk/by-id/scsi-0QEMU_QEMU_HARDDISK_vm1 p1/etc"
  ssh snapferry@appliance restore --repo nas latest scsi0:0/p1/etc/hostname --identity - --target - < key.txt
  ansible appliances -m raw -a 'backup vm1 --json'
`;

const SUDO = ['/usr/bin/sudo', '/bin/sudo'];

/** Who runs the request: the uid, and the login sudo came from when the agent re-ran itself. */
function via(): { uid: number | null; sudoUser?: string } {
  return { uid: process.getuid?.() ?? null, ...(process.env.SUDO_USER ? { sudoUser: process.env.SUDO_USER } : {}) };
}

function refuse(e: SnapferryError, state: StateDir, role: string | undefined, words: string[] | undefined): number {
  const c = process.env.SSH_CONNECTION?.split(' ');
  state.audit({ event: 'refused', code: e.code, message: e.message, role: role ?? null, client: c ? `${c[0]}:${c[1]}` : null, ...via(), ...(words ? { command: words.slice(0, 32) } : { line: (process.env.SSH_ORIGINAL_COMMAND ?? '').slice(0, 512) }) });
  process.stdout.write(JSON.stringify({ error: e.toJSON() }) + '\n');
  process.stderr.write(`snapferry-agent[${process.pid}]: refused ${e.code}: ${e.message}\n`);
  return e.exitCode;
}

export async function agentCommand(argv: string[]): Promise<number> {
  let values: { role?: string; config?: string; help?: boolean };
  try {
    ({ values } = parseArgs({ args: argv, options: { role: { type: 'string' }, config: { type: 'string' }, help: { type: 'boolean', short: 'h' } }, strict: true, allowPositionals: false }));
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  if (values.help && process.env.SSH_ORIGINAL_COMMAND === undefined) {
    process.stdout.write(AGENT_HELP);
    return ExitCode.ok;
  }
  if (process.getuid?.() !== 0 && process.env.SNAPFERRY_AGENT_SUDO !== '0') {
    const sudo = SUDO.find((p) => existsSync(p));
    if (sudo) {
      const r = spawnSync(sudo, ['-n', '/usr/local/bin/snapferry', 'agent', ...argv], { stdio: 'inherit' });
      return r.status ?? ExitCode.failure;
    }
  }
  const state = new StateDir();
  const role = values.role;
  const line = process.env.SSH_ORIGINAL_COMMAND;
  let words: string[] | undefined;
  try {
    if (role === undefined || !isRole(role)) throw new AgentRefusal('E_AGENT_ROLE', `this key has no valid role (its forced command needs --role=${ROLES.join('|')})`, { role: role ?? null });
    if (line === undefined) throw new AgentRefusal('E_AGENT_INTERACTIVE', 'interactive logins are not offered: give a command, e.g. ssh snapferry@appliance help', {});
    words = splitCommand(line);
    const req = authorize(words, role);
    const c = process.env.SSH_CONNECTION?.split(' ');
    state.audit({ event: 'accepted', role, client: c ? `${c[0]}:${c[1]}` : null, ...via(), command: words });
    // loaded only by what needs it: a broken config must not keep jobs, job or disks from answering
    let cfg: Config | undefined;
    return await dispatch(req, role, () => (cfg ??= loadConfig(values.config)), state, values.config);
  } catch (err) {
    if (err instanceof AgentRefusal) return refuse(err, state, role, words);
    const e = toSnapferryError(err);
    process.stdout.write(JSON.stringify({ error: e.toJSON() }) + '\n');
    return e.exitCode;
  }
}

function str(req: AgentRequest, name: string): string | undefined {
  const v = req.options.get(name);
  return typeof v === 'string' ? v : undefined;
}

/** --repo NAME from the config becomes its url, ssh key and known_hosts; a URL stays as it is. */
function repoArgs(req: AgentRequest, cfg: Config): string[] {
  const name = str(req, 'repo');
  if (name === undefined) return [];
  const r = cfg.repositories.get(name);
  if (!r) return ['--repo', name];
  return ['--repo', r.url, ...(r.sshKey ? ['--ssh-key', r.sshKey] : []), ...(r.knownHosts ? ['--known-hosts', r.knownHosts] : [])];
}

/** The request as the CLI's own argv (options in their long form, values as given). */
function cliArgv(req: AgentRequest, cfg: Config, skip: string[] = []): string[] {
  const out = [req.command];
  for (const [k, v] of req.options) {
    if (skip.includes(k) || k === 'repo') continue;
    if (v === true) out.push(`--${k}`);
    else if (Array.isArray(v)) for (const x of v) out.push(`--${k}`, x);
    else out.push(`--${k}`, v);
  }
  out.push(...repoArgs(req, cfg));
  if (req.positionals.length) out.push('--', ...req.positionals);
  return out;
}

async function dispatch(req: AgentRequest, role: Role, cfg: () => Config, state: StateDir, configFlag: string | undefined): Promise<number> {
  const json = req.options.has('json');
  if (req.help || req.command === 'help') {
    if (req.command !== 'help') return (await import('./main.js')).main([req.command, '--help']);
    const list = allowedFor(role);
    process.stdout.write(json ? JSON.stringify({ role, commands: list }) + '\n' : `role ${role}: you may run\n${list.map((c) => `  ${c.usage}`).join('\n')}\n`);
    return ExitCode.ok;
  }
  const jobs = await import('./jobs.js');
  // DISK arguments: attached disks and datastore files only, never the appliance's own disk
  const disks = req.command === 'inspect' ? req.positionals : ['ls', 'stat', 'cat'].includes(req.command) ? req.positionals.slice(0, 1) : [];
  for (const d of disks) checkDiskArg(d, { datastores: cfg().datastores });
  switch (req.command) {
    case 'jobs':
      return jobs.jobsCommand(json, state);
    case 'job':
      return jobs.jobCommand(req.positionals[0]!, { follow: req.options.has('follow'), json }, state);
    case 'cancel':
      return jobs.cancelCommand(req.positionals[0]!, json, state);
    case 'backup': {
      const spec = jobs.backupJob(req, cfg(), state, role);
      jobs.queueJob(spec, state, json || req.options.has('follow'));
      if (req.options.has('follow')) return jobs.jobCommand(spec.id, { follow: true, json: true }, state);
      return ExitCode.ok;
    }
    case 'config':
      return (await import('./config.js')).configCommand(['check', ...(json ? ['--json'] : []), ...(configFlag ? ['--config', configFlag] : [])]);
    case 'disks':
      return (await import('./disks.js')).disksCommand([...(json ? ['--json'] : []), ...(req.options.has('all') ? ['--all'] : [])]);
    case 'restore':
    case 'verify':
      if (str(req, 'identity') === '-') return identityFromStdin(req, cfg());
      return (await import('./main.js')).main(cliArgv(req, cfg()));
    default:
      return (await import('./main.js')).main(cliArgv(req, req.options.has('repo') ? cfg() : defaultConfig()));
  }
}

/**
 * restore/verify with --identity -: the key is read from the SSH session's stdin into a Buffer
 * that is zeroed once the identities are made (src/agent/identity.ts), then the layers are called
 * directly, so no string copy of the key is ever made.
 */
async function identityFromStdin(req: AgentRequest, cfg: Config): Promise<number> {
  const ids = identitiesFromSecret(readSecret(0));
  const repo = repoArgs(req, cfg);
  if (!repo.length) throw new UsageError('--repo REPO is needed');
  const at = (flag: string): string | undefined => {
    const i = repo.indexOf(flag);
    return i >= 0 ? repo[i + 1] : undefined;
  };
  const { openStore } = await import('../store/open.js');
  const { resolveArchiveId, listManifests } = await import('../backup/repo.js');
  const sshKey = at('--ssh-key');
  const knownHosts = at('--known-hosts');
  const store = await openStore(at('--repo')!, { create: false, ...(sshKey ? { sshKey } : {}), ...(knownHosts ? { knownHostsFile: knownHosts } : {}), acceptNewHostKey: false });
  const json = req.options.has('json');
  try {
    if (req.command === 'verify') {
      const { runVerify } = await import('../backup/verify.js');
      const list = req.positionals[0] ? [await resolveArchiveId(store, req.positionals[0])] : (await listManifests(store)).map((m) => m.id);
      let bad = 0;
      for (const id of list) {
        const s = await runVerify(store, id, ids);
        bad += s.damage.length;
        process.stdout.write(json ? JSON.stringify({ event: 'verified', ...s, ok: s.damage.length === 0 }) + '\n' : `${id}: ${s.damage.length ? `DAMAGED\n${s.damage.map((d) => `  ${d.archive}${d.path ? ` ${d.path}` : ''}: ${d.code}: ${d.message}`).join('\n')}` : `ok (${s.entries} entries, ${s.files} files)`}\n`);
      }
      return bad ? ExitCode.corrupt : ExitCode.ok;
    }
    if (str(req, 'target') !== '-') throw new UsageError('restore over SSH needs --target - (the files come back on stdout)');
    const { restoreToStream } = await import('../backup/restore.js');
    const [archive, ...paths] = req.positionals;
    const id = await resolveArchiveId(store, archive!);
    const s = await restoreToStream({ store, id, identities: ids, paths }, (b) => new Promise((res, rej) => process.stdout.write(b, (err) => (err ? rej(err) : res()))));
    if (s.entries === 0 && paths.length) {
      process.stderr.write(`snapferry: E_RESTORE_NOT_FOUND: nothing in ${id} matches ${paths.join(', ')}\n`);
      return ExitCode.notFound;
    }
    return s.errors ? ExitCode.failure : ExitCode.ok;
  } finally {
    await store.close();
  }
}

/** The appliance's commands, each parsing its own arguments: main routes argv here when argv[0] names one. */
export const APPLIANCE_COMMANDS = new Set(['agent', 'jobd', 'jobs', 'job', 'cancel', 'disks', 'config']);

export async function applianceCommand(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  const jobs = async (): Promise<typeof import('./jobs.js')> => import('./jobs.js');
  const small = (a: string[]): { json: boolean; help: boolean; follow: boolean; positionals: string[] } => {
    const { values, positionals } = parseArgs({ args: a, options: { json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' }, follow: { type: 'boolean' } }, strict: true, allowPositionals: true });
    return { json: values.json === true, help: values.help === true, follow: values.follow === true, positionals };
  };
  switch (command) {
    case 'agent':
      return agentCommand(rest);
    case 'jobd':
      return (await jobs()).jobdCommand(rest);
    case 'disks':
      return (await import('./disks.js')).disksCommand(rest);
    case 'config':
      return (await import('./config.js')).configCommand(rest);
    default: {
      const a = small(rest);
      const j = await jobs();
      if (a.help) {
        process.stdout.write(j.JOBS_HELP);
        return ExitCode.ok;
      }
      if (command === 'jobs') {
        if (a.positionals.length || a.follow) throw new UsageError('jobs takes only --json');
        return j.jobsCommand(a.json);
      }
      if (a.positionals.length !== 1) throw new UsageError(`${command} takes one job ID`);
      if (command === 'job') return j.jobCommand(a.positionals[0]!, { follow: a.follow, json: a.json });
      return j.cancelCommand(a.positionals[0]!, a.json);
    }
  }
}
