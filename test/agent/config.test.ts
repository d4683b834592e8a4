/**
 * The appliance's config file and its schedules. Schedules are checked against systemd itself: the
 * checker's verdict on fixed and seeded random calendar expressions must equal
 * `systemd-analyze calendar`'s. A broken or hostile config gives typed, line-numbered errors, all
 * at once, within bounds (a bounds test for each). `config apply` writes timers that
 * `systemd-analyze verify` accepts with the shipped template service.
 */
import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkCalendar } from '../../src/agent/calendar.js';
import { ConfigError, MAX_CONFIG_BYTES, MAX_LINE_BYTES, MAX_SECTIONS, MAX_VALUES, parseConfig, readConfigFile } from '../../src/agent/config.js';
import { SnapferryError } from '../../src/util/errors.js';
import { prng, requireTool, ROOT } from '../helpers/images.js';
import { snapferry } from '../helpers/cli.js';

requireTool('systemd-analyze', 'age-keygen');
const work = mkdtempSync(join(tmpdir(), 'sf-config-'));
const keyFile = join(work, 'age.txt');
execFileSync('age-keygen', ['-o', keyFile], { stdio: 'ignore' });
const recipient = execFileSync('age-keygen', ['-y', keyFile], { encoding: 'utf8' }).trim();

function systemdAccepts(expr: string): boolean {
  return spawnSync('systemd-analyze', ['calendar', expr], { stdio: 'ignore' }).status === 0;
}

t.test('schedules: the checker agrees with systemd-analyze calendar', async (t) => {
  const fixed = ['minutely', 'hourly', 'daily', 'Daily', 'weekly', 'monthly', 'yearly', 'annually', 'quarterly', 'semiannually', 'weekly UTC', '*-*-* 02:00:00', 'Mon..Fri 12:30', 'Fri..Mon 1:00', 'mon *-*-1 0:0', 'Sat,Sun 8..18/2:00', '*:0/15', '*:*/15', '*/2:00', '2026-13-01', 'Tue 25:00', '*-02~1', '*-05~03..07', 'foo', '12:10 Europe/Berlin', '12:10 Mars/Olympus', '*-*-* 02:00:00 UTC', 'Monday,Wednesday..Friday 08:00', '*-*-* *:*:*.5', '00:00:60', '24:00', '1969-01-01', '2199-12-31', '2200-01-01', '21/3:00', '20/3:00', '*-*-28/5', '*-*-28/2', '20:*:10..10', '20:3..3', '@1700000000', ' daily', 'daily ', '', 'Mon,,Tue 1:00'];
  for (const e of fixed) t.equal(checkCalendar(e) === null, systemdAccepts(e), `${JSON.stringify(e)}: ${checkCalendar(e) ?? 'accepted'}`);
  const rnd = prng(20261205);
  const pick = <T>(a: T[]): T => a[Math.floor(rnd() * a.length)]!;
  const num = (max: number): string => String(Math.floor(rnd() * (max * 1.3)));
  const comp = (max: number): string => pick(['*', num(max), `${num(max)}..${num(max)}`, `${num(max)}/${1 + Math.floor(rnd() * 5)}`, `${num(max)},${num(max)}`, `*/${num(5)}`]);
  let agree = 0;
  let accepted = 0;
  for (let i = 0; i < 300; i++) {
    const parts: string[] = [];
    if (rnd() < 0.3) parts.push(pick(['Mon', 'tue', 'Friday', 'Mon..Fri', 'Sat,Sun', 'Sun..Mon', 'Funday', 'Mon,Wed..Fri']));
    if (rnd() < 0.6) parts.push(rnd() < 0.3 ? `${comp(12)}-${comp(31)}` : `${pick(['*', '2026', '1960', '2300'])}-${comp(12)}-${comp(31)}`);
    if (rnd() < 0.7) parts.push(rnd() < 0.5 ? `${comp(23)}:${comp(59)}` : `${comp(23)}:${comp(59)}:${comp(59)}`);
    if (rnd() < 0.1) parts.push(pick(['UTC', 'Europe/Berlin', 'Nowhere/Land']));
    if (parts.length === 0) parts.push(pick(['daily', 'weekly', 'bogus']));
    const e = parts.join(' ');
    const sd = systemdAccepts(e);
    if (sd) accepted++;
    if ((checkCalendar(e) === null) === sd) agree++;
    else t.fail(`${JSON.stringify(e)}: systemd ${sd ? 'accepts' : 'refuses'}, the checker ${checkCalendar(e) ?? 'accepts'}`);
  }
  t.equal(agree, 300, `300 seeded random expressions: same verdict as systemd (${accepted} accepted by it)`);
});

const good = `# the appliance
concurrency = 3
keep-jobs = 50
exclude = *.tmp

[repository nas]
url = sftp://backup@10.0.0.5/srv/snapferry
recipient = ${recipient}
ssh-key = /etc/snapferry/nas.key
known-hosts = /etc/snapferry/known_hosts

[vm web1]
source = /mnt/ds1/web1/web1.vmx
repository = nas
kind = incremental
exclude = var/cache/**
schedule = *-*-* 02:00:00
schedule = Sat 12:00

[vm db1]
source = /dev/disk/by-id/scsi-0QEMU_QEMU_HARDDISK_db1
source = /dev/disk/by-id/scsi-0QEMU_QEMU_HARDDISK_db1-data
repository = nas
`;

t.test('a valid config', async (t) => {
  const c = parseConfig(good, 'good');
  t.equal(c.concurrency, 3);
  t.equal(c.keepJobs, 50);
  t.same(c.excludes, ['*.tmp']);
  t.same(c.repositories.get('nas'), { name: 'nas', line: 6, url: 'sftp://backup@10.0.0.5/srv/snapferry', recipients: [recipient], sshKey: '/etc/snapferry/nas.key', knownHosts: '/etc/snapferry/known_hosts' });
  t.same(c.vms.get('web1')?.schedules, ['*-*-* 02:00:00', 'Sat 12:00']);
  t.equal(c.vms.get('web1')?.kind, 'incremental');
  t.equal(c.vms.get('db1')?.sources.length, 2);
  t.equal(parseConfig('', 'empty').concurrency, 2, 'an empty file is the defaults (concurrency 2)');
  const f = join(work, 'good.cfg');
  writeFileSync(f, good);
  const r = snapferry(['config', 'check', '--config', f, '--json']);
  t.equal(r.status, 0);
  t.same(JSON.parse(r.stdout), { file: f, ok: true, concurrency: 3, repositories: ['nas'], vms: ['web1', 'db1'], schedules: 2 });
  t.match(snapferry(['config', 'check', '--config', f]).stdout, /ok \(1 repositories, 2 VMs, 2 schedules, concurrency 3\)/);
});

function issues(text: string): { code: string; line: number }[] {
  try {
    parseConfig(text, 'x');
    return [];
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    return e.issues.map((i) => ({ code: i.code, line: i.line }));
  }
}

t.test('every problem, with its line and code, at once', async (t) => {
  const bad = [
    'concurrency = 0', // 1
    'colour = blue', // 2
    'just words', // 3
    '[repository nas]', // 4
    'url = ftp://x/y', // 5
    'recipient = age1notakey', // 6
    'ssh-key = relative/key', // 7
    '[vm web1]', // 8
    'source = /a.vmx', // 9
    'repository = nope', // 10
    'kind = sometimes', // 11
    'schedule = every day at 2', // 12
    'schedule = 25:00', // 13
    '[vm web1]', // 14
    'source = /b.vmx', // 15
    'source = /b.vmx', // 16 (repeatable: fine)
    'repository = nas', // 17
    'repository = nas', // 18
    '[vm a [b]]', // 19: no nesting
    '[vm ../etc]', // 20
    'source = /c', // 21
  ].join('\n');
  const f = join(work, 'bad.cfg');
  writeFileSync(f, bad);
  const r = snapferry(['config', 'check', '--config', f, '--json']);
  t.equal(r.status, 2, 'exit 2');
  const got = (JSON.parse(r.stdout) as { ok: boolean; errors: { code: string; line: number }[] }).errors.map((e) => `${e.line}:${e.code}`);
  t.same(got, ['1:E_CONFIG_VALUE', '2:E_CONFIG_KEY', '3:E_CONFIG_SYNTAX', '5:E_CONFIG_VALUE', '6:E_CONFIG_VALUE', '7:E_CONFIG_VALUE', '10:E_CONFIG_REF', '11:E_CONFIG_VALUE', '12:E_CONFIG_SCHEDULE', '13:E_CONFIG_SCHEDULE', '14:E_CONFIG_DUPLICATE', '18:E_CONFIG_DUPLICATE', '19:E_CONFIG_SYNTAX', '20:E_CONFIG_VALUE'], 'each error named with its line');
  const text = snapferry(['config', 'check', '--config', f]);
  t.match(text.stderr, new RegExp(`${f.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:12: E_CONFIG_SCHEDULE: schedule 'every day at 2' is not a systemd calendar event`), 'text errors are file:line: code: message');
  t.equal(snapferry(['config', 'check', '--config', join(work, 'missing')]).status, 3, 'a missing file is exit 3');
  t.same(issues('[vm x]\nsource = /a\nschedule = daily\n'), [{ code: 'E_CONFIG_REF', line: 1 }], 'a schedule with no repository');
});

t.test('bounds: file size, line length, sections, values, errors', async (t) => {
  const big = join(work, 'big.cfg');
  writeFileSync(big, `# ${'x'.repeat(MAX_CONFIG_BYTES)}\n`);
  let code: string | undefined;
  try {
    readConfigFile(big);
  } catch (e) {
    code = (e as SnapferryError).code;
  }
  t.equal(code, 'E_CONFIG_BOUND', `a file over ${MAX_CONFIG_BYTES} bytes`);
  t.same(issues(`exclude = ${'a'.repeat(MAX_LINE_BYTES)}`), [{ code: 'E_CONFIG_BOUND', line: 1 }], `a line over ${MAX_LINE_BYTES} bytes`);
  t.same(issues(`exclude = ${'a'.repeat(MAX_LINE_BYTES - 10)}`), [], 'a line just under it is fine');
  const sections = Array.from({ length: MAX_SECTIONS + 1 }, (_, i) => `[repository r${i}]\nurl = /r\nrecipient = ${recipient}`).join('\n');
  t.same(issues(sections).map((i) => i.code), ['E_CONFIG_BOUND'], `more than ${MAX_SECTIONS} sections`);
  t.same(issues(Array.from({ length: MAX_VALUES + 1 }, () => 'exclude = x').join('\n')), [{ code: 'E_CONFIG_BOUND', line: MAX_VALUES + 1 }], `more than ${MAX_VALUES} values of one key`);
  t.equal(issues(Array.from({ length: 5000 }, () => 'nonsense').join('\n')).length, 100, 'at most 100 errors are collected');
  t.same(issues('[vm a]\n[[[[[[[[[[[[[[[[vm b]]]]]]]]]]]]]]]]\n'), [{ code: 'E_CONFIG_VALUE', line: 1 }, { code: 'E_CONFIG_SYNTAX', line: 2 }], 'nesting is a syntax error (there is no depth to bound)');
  t.equal(issues('concurrency = 99999999999999999999').at(0)?.code, 'E_CONFIG_VALUE', 'a huge number');
  t.equal(issues('concurrency = 65').at(0)?.code, 'E_CONFIG_VALUE', 'concurrency over 64');
  t.same(issues(`[repository r]\nurl = /r\nrecipient = ${recipient}\n[vm x]\nsource = /a\nrepository = r\nschedule = ${'1,'.repeat(200)}1:00`), [{ code: 'E_CONFIG_SCHEDULE', line: 7 }], 'a schedule over 256 characters');
});

t.test('hostile bytes: typed errors only', async (t) => {
  const rnd = prng(7);
  for (let i = 0; i < 300; i++) {
    const n = Math.floor(rnd() * 2000);
    const b = Buffer.alloc(n);
    for (let k = 0; k < n; k++) b[k] = rnd() < 0.7 ? ' =[]#abvmrepositoryurlsource\n/.'.charCodeAt(Math.floor(rnd() * 33)) : Math.floor(rnd() * 256);
    try {
      parseConfig(b.toString('utf8'), 'fuzz');
    } catch (e) {
      if (!(e instanceof ConfigError)) {
        t.fail(`case ${i}: ${String(e)}`);
        return;
      }
    }
  }
  t.pass('300 random files: parsed or ConfigError');
});

t.test('config apply: timers systemd accepts, stale ones removed, others untouched', async (t) => {
  const units = join(work, 'units');
  mkdirSync(units);
  writeFileSync(join(units, 'other.timer'), '[Timer]\nOnCalendar=daily\n');
  writeFileSync(join(units, 'snapferry-backup-handmade.timer'), '[Timer]\nOnCalendar=daily\n');
  const f = join(work, 'apply.cfg');
  writeFileSync(f, good);
  const r = snapferry(['config', 'apply', '--config', f, '--unit-dir', units, '--no-reload', '--json']);
  t.equal(r.status, 0, r.stderr);
  t.same(JSON.parse(r.stdout), { unitDir: units, written: ['snapferry-backup-web1.timer'], removed: [] });
  const timer = readFileSync(join(units, 'snapferry-backup-web1.timer'), 'utf8');
  t.match(timer, /OnCalendar=\*-\*-\* 02:00:00\nOnCalendar=Sat 12:00\n/);
  t.match(timer, /Unit=snapferry-backup@web1.service/);
  // verify with the shipped template, its ExecStart pointed at an executable that exists here
  const service = readFileSync(join(ROOT, 'appliance', 'systemd', 'snapferry-backup@.service'), 'utf8').replace('/usr/local/bin/snapferry', process.execPath);
  writeFileSync(join(units, 'snapferry-backup@.service'), service);
  copyFileSync(join(ROOT, 'appliance', 'systemd', 'snapferry-jobd.service'), join(units, 'snapferry-jobd.service'));
  const v = spawnSync('systemd-analyze', ['verify', '--man=no', join(units, 'snapferry-backup-web1.timer'), join(units, 'snapferry-backup@web1.service')], { encoding: 'utf8' });
  const complaints = `${v.stdout}${v.stderr}`.split('\n').filter((l) => l.trim() && !/snapferry-jobd\.service: Command \/usr\/local\/bin\/snapferry is not executable/.test(l));
  t.same(complaints, [], 'systemd-analyze verify: the timer and its instance have no complaint');
  const env = spawnSync('systemd-analyze', ['verify', '--man=no', join(units, 'snapferry-backup@web1.service')], { encoding: 'utf8' });
  t.notMatch(`${env.stdout}${env.stderr}`, /Environment|SSH_ORIGINAL_COMMAND/, "the template's Environment= line parses");
  writeFileSync(f, good.replace(/schedule = .*\n/g, ''));
  const again = JSON.parse(snapferry(['config', 'apply', '--config', f, '--unit-dir', units, '--no-reload', '--json']).stdout) as { removed: string[] };
  t.same(again.removed, ['snapferry-backup-web1.timer'], 'the timer of a VM no longer scheduled is removed');
  t.ok(existsSync(join(units, 'other.timer')) && existsSync(join(units, 'snapferry-backup-handmade.timer')), 'files it did not write are untouched');
  t.same(readdirSync(units).filter((n) => n.endsWith('.tmp')), [], 'no temporary files left');
});
