/** snapferry config check | apply: validate the appliance's configuration; turn schedules into systemd timers. */
import { parseArgs } from 'node:util';
import { ExitCode, UsageError } from '../util/errors.js';
import { ConfigError, configPath, readConfigFile } from '../agent/config.js';
import { applyTimers, DEFAULT_UNIT_DIR } from '../agent/timers.js';

export const CONFIG_HELP = `snapferry config check [--config FILE] [--json]
snapferry config apply [--config FILE] [--unit-dir DIR] [--no-reload]

check validates the configuration (default /etc/snapferry/config, or SNAPFERRY_CONFIG) and names
every problem with its line: E_CONFIG_SYNTAX, E_CONFIG_KEY (unknown key), E_CONFIG_VALUE,
E_CONFIG_DUPLICATE, E_CONFIG_REF (a VM's repository is not defined), E_CONFIG_SCHEDULE (not a systemd
calendar event), E_CONFIG_BOUND (file > 1 MiB, line > 4096 bytes, > 1024 sections, > 256 values).

apply writes one timer per VM schedule into DIR (default ${DEFAULT_UNIT_DIR}):
snapferry-backup-VM.timer (OnCalendar= each schedule, Persistent=true) starting the shipped template
snapferry-backup@VM.service, which queues 'backup VM' for jobd; timers of VMs no longer scheduled are
removed. Then 'systemctl daemon-reload' and 'systemctl enable --now' of each timer (not with --no-reload).

The file (INI-style; see appliance/README.md):
  concurrency = 2
  exclude = *.tmp
  datastore = /mnt/datastore1      files below it may be named as DISK over SSH (default /mnt /media /srv)
  [repository nas]
  url = sftp://backup@nas.example/srv/snapferry
  recipient = age1...
  ssh-key = /etc/snapferry/nas.key
  known-hosts = /etc/snapferry/known_hosts
  [vm web1]
  source = /mnt/datastore1/web1/web1.vmx
  repository = nas
  kind = incremental
  schedule = *-*-* 02:00:00

Exit codes: 0 valid (apply: timers written)  2 the configuration has errors (all listed)  3 no such file

Examples:
  snapferry config check
  snapferry config check --json --config /tmp/new-config && sudo cp /tmp/new-config /etc/snapferry/config
  ssh snapferry@appliance config check --json
  snapferry config apply
`;

export async function configCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, options: { json: { type: 'boolean' }, config: { type: 'string' }, 'unit-dir': { type: 'string' }, 'no-reload': { type: 'boolean' }, help: { type: 'boolean', short: 'h' } }, strict: true, allowPositionals: true });
  if (values.help || positionals.length === 0) {
    process.stdout.write(CONFIG_HELP);
    return values.help ? ExitCode.ok : ExitCode.usage;
  }
  const [sub, ...rest] = positionals;
  if (rest.length) throw new UsageError(`config ${sub} takes no arguments`);
  const file = configPath(values.config);
  if (sub === 'check') {
    try {
      const cfg = readConfigFile(file);
      const summary = { file, ok: true, concurrency: cfg.concurrency, repositories: [...cfg.repositories.keys()], vms: [...cfg.vms.keys()], schedules: [...cfg.vms.values()].reduce((n, v) => n + v.schedules.length, 0) };
      process.stdout.write(values.json ? JSON.stringify(summary) + '\n' : `${file}: ok (${summary.repositories.length} repositories, ${summary.vms.length} VMs, ${summary.schedules} schedules, concurrency ${cfg.concurrency})\n`);
      return ExitCode.ok;
    } catch (e) {
      if (!(e instanceof ConfigError)) throw e;
      if (values.json) process.stdout.write(JSON.stringify({ file, ok: false, errors: e.issues }) + '\n');
      else for (const i of e.issues) process.stderr.write(`${file}:${i.line}: ${i.code}: ${i.message}\n`);
      return ExitCode.usage;
    }
  }
  if (sub === 'apply') {
    const cfg = readConfigFile(file);
    const r = applyTimers(cfg, { unitDir: values['unit-dir'] ?? DEFAULT_UNIT_DIR, reload: !values['no-reload'] });
    process.stdout.write(values.json ? JSON.stringify(r) + '\n' : `${r.written.length} timers written, ${r.removed.length} removed in ${r.unitDir}\n`);
    return ExitCode.ok;
  }
  throw new UsageError(`config ${sub}: check or apply`);
}
