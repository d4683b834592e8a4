/**
 * Restore identities read from stdin into a Buffer: the keys made from it are age-keygen's (the
 * recipient `age-keygen -y` prints), the Buffer is all zeros afterwards (also when the input is
 * bad), stdin is bounded, and bad input gives typed errors that do not carry the key.
 */
import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bech32Encode } from '../../src/archive/age/keys.js';
import { identitiesFromSecret, MAX_IDENTITY_BYTES } from '../../src/agent/identity.js';
import { SnapferryError } from '../../src/util/errors.js';
import { requireTool, ROOT } from '../helpers/images.js';

requireTool('age-keygen');
const work = mkdtempSync(join(tmpdir(), 'sf-identity-'));

function keygen(name: string): { file: string; text: string; recipient: string } {
  const file = join(work, name);
  execFileSync('age-keygen', ['-o', file], { stdio: 'ignore' });
  return { file, text: readFileSync(file, 'utf8'), recipient: execFileSync('age-keygen', ['-y', file], { encoding: 'utf8' }).trim() };
}

t.test("identities from a Buffer are age-keygen's, and the Buffer is wiped", async (t) => {
  const a = keygen('a.txt');
  const b = keygen('b.txt');
  const secret = Buffer.from(`${a.text}\r\n\n# another\n  ${b.text.trim().split('\n').at(-1)!.toLowerCase()}  \n`);
  const ids = identitiesFromSecret(secret);
  t.same(
    ids.map((i) => bech32Encode('age', i.publicRaw)),
    [a.recipient, b.recipient],
    'the recipients of the keys made are those age-keygen -y prints (comments, CRLF, blanks, lower case handled)',
  );
  t.ok(secret.every((x) => x === 0), 'the Buffer holds only zeros afterwards');
});

t.test('bad input: typed errors without the key, and the Buffer still wiped', async (t) => {
  const a = keygen('c.txt');
  const line = a.text.trim().split('\n').at(-1)!;
  const flipped = line.slice(0, -1) + (line.at(-1) === 'Q' ? 'P' : 'Q');
  for (const [what, text] of [
    ['a checksum error', flipped],
    ['mixed case', line.slice(0, 20) + line.slice(20).toLowerCase()],
    ['not a key', 'hello world'],
    ['a recipient, not an identity', a.recipient],
    ['nothing', '# only a comment\n'],
    ['a short key', 'AGE-SECRET-KEY-1QQQQQQQQQQQQQQQ'],
  ] as const) {
    const buf = Buffer.from(text);
    let err: unknown;
    try {
      identitiesFromSecret(buf);
    } catch (e) {
      err = e;
    }
    t.ok(err instanceof SnapferryError && err.code === 'E_AGE_KEY', `${what}: E_AGE_KEY`);
    t.notOk(JSON.stringify((err as SnapferryError).toJSON()).includes(line.slice(16, 40)), `${what}: the error does not carry the key`);
    t.ok(buf.every((x) => x === 0), `${what}: the Buffer is wiped`);
  }
});

t.test(`stdin is bounded to ${MAX_IDENTITY_BYTES} bytes`, async (t) => {
  // restore --identity - through the agent reads stdin with this bound before it opens the repository
  const emptyConfig = join(work, 'config');
  writeFileSync(emptyConfig, '');
  const r = spawnSync(process.execPath, [join(ROOT, 'bin', 'snapferry.js'), 'agent', '--role=restore'], {
    input: Buffer.alloc(MAX_IDENTITY_BYTES + 10, 0x41),
    env: { ...process.env, SSH_ORIGINAL_COMMAND: `restore --repo ${work} latest --identity - --target -`, SNAPFERRY_STATE_DIR: join(work, 'state'), SNAPFERRY_CONFIG: emptyConfig },
    encoding: 'utf8',
  });
  t.equal((JSON.parse(r.stdout.trim().split('\n')[0]!) as { error: { code: string } }).error.code, 'E_BOUND', 'a larger stdin is E_BOUND');
});
