/** The allow-list and the roles: which subcommands and options each role gets, and the typed refusals. */
import t from 'tap';
import { authorize, COMMANDS, ROLES, mayRun, type Role } from '../../src/agent/policy.js';
import { SnapferryError } from '../../src/util/errors.js';

function code(words: string[], role: Role): string | undefined {
  try {
    authorize(words, role);
    return undefined;
  } catch (e) {
    return e instanceof SnapferryError ? e.code : `not typed: ${String(e)}`;
  }
}

t.test('each role runs exactly its subcommands', async (t) => {
  const expect: Record<Role, string[]> = {
    'read-only': ['help', 'inspect', 'ls', 'stat', 'disks', 'snapshots', 'verify', 'jobs', 'job', 'config'],
    restore: ['help', 'inspect', 'ls', 'stat', 'disks', 'snapshots', 'verify', 'jobs', 'job', 'config', 'cat', 'restore'],
    operator: Object.keys(COMMANDS),
  };
  for (const role of ROLES) t.same(Object.keys(COMMANDS).filter((c) => mayRun(role, c)).sort(), expect[role].sort(), role);
  t.equal(code(['backup', 'vm1'], 'read-only'), 'E_AGENT_ROLE', 'read-only cannot back up');
  t.equal(code(['backup', 'vm1'], 'restore'), 'E_AGENT_ROLE', 'restore cannot back up');
  t.equal(code(['cancel', 'x'], 'read-only'), 'E_AGENT_ROLE', 'read-only cannot cancel');
  t.equal(code(['restore', '--repo', 'r', 'latest', '--identity', '-', '--target', '-'], 'read-only'), 'E_AGENT_ROLE', 'read-only cannot restore');
  t.equal(code(['cat', 'd', 'p1/x'], 'read-only'), 'E_AGENT_ROLE', 'read-only cannot cat');
  t.equal(code(['backup', 'vm1', '--json'], 'operator'), undefined, 'operator backs up');
  t.equal(code(['verify', '--repo', 'r', '--identity', '-'], 'read-only'), undefined, 'read-only verifies');
});

t.test('anything outside the allow-list is E_AGENT_COMMAND', async (t) => {
  for (const w of [['sh', '-c', 'id'], ['bash'], ['mount', 'd', '/mnt'], ['umount', '/mnt'], ['export', 'd', '-'], ['jobd'], ['agent', '--role=operator'], ['config', 'apply'], ['scp', '-t', '/'], ['internal-sftp'], ['sftp'], ['rsync', '--server'], ['__proto__'], ['constructor'], ['toString'], []])
    t.equal(code(w, 'operator'), 'E_AGENT_COMMAND', JSON.stringify(w));
  t.equal(code(['ls'], 'operator'), 'E_AGENT_COMMAND', 'missing arguments');
  t.equal(code(['jobs', 'extra'], 'operator'), 'E_AGENT_COMMAND', 'extra arguments');
});

t.test('options that reach outside the disks are not passed through', async (t) => {
  for (const w of [
    ['restore', '--repo', 'r', 'latest', '--identity', '/root/key.txt', '--target', '-'],
    ['restore', '--repo', 'r', 'latest', '--identity', '-', '--target', '/etc'],
    ['restore', '--repo', 'r', 'latest', '--identity', '-', '--target', '-', '--overwrite'],
    ['backup', 'vm1', '--state-dir', '/tmp/x'],
    ['backup', 'vm1', '--ssh-key', '/root/.ssh/id_ed25519'],
    ['backup', 'vm1', '--known-hosts', '/dev/null'],
    ['backup', 'vm1', '--accept-new-host-key'],
    ['backup', 'vm1', '--recipients-file', '/etc/shadow'],
    ['ls', 'd', '--allow-external-extents'],
    ['ls', 'd', '--log', '/x'],
    ['ls', 'd', '--cache-mib', '99999999'],
    ['ls', 'd', '--json=yes'],
    ['ls', 'd', '-Rx'],
    ['ls', 'd', '-f'],
    ['snapshots', '--repo'],
    ['job', 'x', '--__proto__'],
  ])
    t.equal(code(w, 'operator'), 'E_AGENT_OPTION', JSON.stringify(w));
});

t.test('options are normalized: --opt=value, --opt value, -R, --, multi options', async (t) => {
  const r = authorize(['backup', '--repo=nas', 'vm1', '--exclude', 'a', '--exclude=b', '--json'], 'operator');
  t.same([...r.options], [['repo', 'nas'], ['exclude', ['a', 'b']], ['json', true]]);
  t.same(r.positionals, ['vm1']);
  const l = authorize(['ls', '-R', 'd', '--', '-weird'], 'read-only');
  t.same(l.positionals, ['d', '-weird'], 'after -- a word starting with - is an argument');
  t.ok(l.options.get('recursive'));
  t.equal(code(['backup', '--help'], 'read-only'), 'E_AGENT_ROLE', 'help of a command still needs its role');
  t.ok(authorize(['ls', '--help'], 'read-only').help, '--help needs no arguments');
  t.same(authorize(['snapferry', 'ls', 'd'], 'read-only').positionals, ['d'], 'a leading "snapferry" is the same request');
  t.equal(code(['snapferry', 'sh'], 'operator'), 'E_AGENT_COMMAND', 'and changes nothing else');
});
