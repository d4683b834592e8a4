import t from 'tap';
import { openChannel, type Channel } from '../../src/util/helper-thread.js';

/** A job that answers each message with the thread it runs on and a running count (its own state). */
const ECHO_JOB = `
const { threadId } = require('node:worker_threads');
let n = 0;
return (m) => {
  if (m === 'exit') process.exit(3);
  n += 1;
  post({ threadId, n, tag: data.tag, m });
};
`;

interface Reply {
  threadId: number;
  n: number;
  tag: string;
  m: unknown;
}

function open(tag: string, source = ECHO_JOB): { ch: Channel; next(): Promise<Reply>; error: Promise<Error> } {
  const queue: Reply[] = [];
  const waiting: ((r: Reply) => void)[] = [];
  let fail!: (e: Error) => void;
  const error = new Promise<Error>((res) => (fail = res));
  const ch = openChannel(
    source,
    { tag },
    (msg) => {
      const w = waiting.shift();
      if (w) w(msg as Reply);
      else queue.push(msg as Reply);
    },
    fail,
  );
  return { ch, next: () => (queue.length ? Promise.resolve(queue.shift()!) : new Promise((res) => waiting.push(res))), error };
}

t.test('two jobs share one thread, each with its own state, answers in order', async (t) => {
  const a = open('a');
  const b = open('b');
  a.ch.busy(true);
  b.ch.busy(true);
  a.ch.post(1);
  b.ch.post(1);
  a.ch.post(2);
  const [a1, b1, a2] = [await a.next(), await b.next(), await a.next()];
  t.not(a1.threadId, 0, 'not the main thread');
  t.equal(b1.threadId, a1.threadId, 'the second job runs on the same thread');
  t.same([a1.n, a1.m, a2.n, a2.m, a1.tag], [1, 1, 2, 2, 'a'], 'job a counts its own messages, in order');
  t.same([b1.n, b1.tag], [1, 'b'], 'job b has its own state');
  await a.ch.close();
  b.ch.post(3);
  t.equal((await b.next()).threadId, a1.threadId, 'the thread lives on while a job is open');
  await b.ch.close();
  const c = open('c');
  c.ch.busy(true);
  c.ch.post(0);
  t.not((await c.next()).threadId, a1.threadId, 'after the last close the thread stopped; a new job gets a new one');
  await c.ch.close();
});

t.test('a handler that does not compile fails its channel with a typed error', async (t) => {
  const bad = open('bad', 'return (m) => { post(m) ');
  const err = await bad.error;
  t.match(err, { code: 'E_HELPER_THREAD', message: /did not compile/ });
  await bad.ch.close();
});

t.test('a thread that dies fails every open channel, and the next job gets a new thread', async (t) => {
  const a = open('a');
  const b = open('b');
  a.ch.busy(true);
  a.ch.post(0);
  const first = (await a.next()).threadId;
  a.ch.post('exit');
  const [ea, eb] = await Promise.all([a.error, b.error]);
  t.match(ea, { code: 'E_HELPER_THREAD', message: /stopped/ });
  t.equal(eb, ea, 'the other channel got the same failure');
  t.throws(() => b.ch.post(1), { code: 'E_HELPER_THREAD' }, 'posting to a dead thread throws');
  await a.ch.close();
  await b.ch.close();
  const c = open('c');
  c.ch.busy(true);
  c.ch.post(0);
  t.not((await c.next()).threadId, first, 'a fresh thread');
  await c.ch.close();
});
