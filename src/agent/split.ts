/**
 * Splits SSH_ORIGINAL_COMMAND into words. No shell is ever run: sshd hands the client's command line
 * to the forced command as one string, and this is the only thing that reads it.
 *
 * The grammar is a strict subset of POSIX sh (XCU 2.2 Quoting, 2.3 Token Recognition): every line
 * it accepts splits into the same words sh would give, with nothing expanded. Whatever sh would
 * expand, redirect, chain or glob is refused (E_AGENT_SYNTAX) rather than taken literally, so a user
 * who thought a shell was there learns at once that it is not:
 *
 *   - words are separated by runs of spaces and tabs;
 *   - '...' : every character up to the next ' is literal (as in sh);
 *   - "..." : literal, except that \" and \\ stand for " and \ ; $ and ` inside are refused
 *             (sh would expand them), any other backslash is kept as it is (as sh does);
 *   - \c outside quotes: the character c, literally;
 *   - outside quotes these are refused: ; | & ` $ < > ( ) { } * ? [ ] and # or ~ at a word's start
 *     (sh's operators, expansions, globs and comments); quote them to pass them as plain characters
 *     ('*.tmp', 'a;b');
 *   - control characters (newline, CR, NUL, ESC ...: below 0x20 except tab, and 0x7f) are refused
 *     anywhere, quoted or not: no argument of ours needs one, and a newline is a command separator.
 *
 * Bounds: the line at most MAX_COMMAND_BYTES (UTF-8), at most MAX_WORDS words of MAX_WORD_BYTES.
 */
import { AgentRefusal } from './errors.js';

export const MAX_COMMAND_BYTES = 8192;
export const MAX_WORDS = 256;
export const MAX_WORD_BYTES = 4096;

/** Characters sh treats specially outside quotes (XCU 2.2, 2.6, 2.13), refused there. */
const UNQUOTED_REFUSED = new Set([';', '|', '&', '`', '$', '<', '>', '(', ')', '{', '}', '*', '?', '[', ']']);
/** Special only at the start of a word: a comment, tilde expansion. */
const WORD_START_REFUSED = new Set(['#', '~']);

function isControl(code: number): boolean {
  return (code < 0x20 && code !== 0x09) || code === 0x7f;
}

function syntax(message: string, at: number, char?: string): AgentRefusal {
  return new AgentRefusal('E_AGENT_SYNTAX', `command line, column ${at + 1}: ${message}`, { column: at + 1, ...(char !== undefined ? { char: JSON.stringify(char) } : {}) });
}

export function splitCommand(line: string): string[] {
  const bytes = Buffer.byteLength(line, 'utf8');
  if (bytes > MAX_COMMAND_BYTES) throw new AgentRefusal('E_AGENT_BOUND', `the command line is ${bytes} bytes, more than the ${MAX_COMMAND_BYTES} accepted`, { structure: 'command', field: 'bytes', value: bytes, limit: MAX_COMMAND_BYTES });
  const words: string[] = [];
  let word: string | null = null; // null between words; '' is an empty quoted word ('')
  const push = (): void => {
    if (word === null) return;
    if (Buffer.byteLength(word, 'utf8') > MAX_WORD_BYTES) throw new AgentRefusal('E_AGENT_BOUND', `word ${words.length + 1} is longer than ${MAX_WORD_BYTES} bytes`, { structure: 'command', field: 'wordBytes', value: Buffer.byteLength(word, 'utf8'), limit: MAX_WORD_BYTES });
    words.push(word);
    if (words.length > MAX_WORDS) throw new AgentRefusal('E_AGENT_BOUND', `the command line has more than ${MAX_WORDS} words`, { structure: 'command', field: 'words', value: words.length, limit: MAX_WORDS });
    word = null;
  };
  let i = 0;
  while (i < line.length) {
    const c = line[i]!;
    const code = c.charCodeAt(0);
    if (isControl(code)) throw syntax(`control character 0x${code.toString(16).padStart(2, '0')} (a newline would end a command in a shell; none is run here)`, i);
    if (c === ' ' || c === '\t') {
      push();
      i++;
      continue;
    }
    if (c === "'") {
      const end = line.indexOf("'", i + 1);
      if (end < 0) throw syntax("unterminated '...'", i);
      const body = line.slice(i + 1, end);
      for (let k = 0; k < body.length; k++) if (isControl(body.charCodeAt(k))) throw syntax(`control character 0x${body.charCodeAt(k).toString(16).padStart(2, '0')} inside quotes`, i + 1 + k);
      word = (word ?? '') + body;
      i = end + 1;
      continue;
    }
    if (c === '"') {
      let j = i + 1;
      let body = '';
      for (;;) {
        if (j >= line.length) throw syntax('unterminated "..."', i);
        const d = line[j]!;
        if (isControl(d.charCodeAt(0))) throw syntax(`control character 0x${d.charCodeAt(0).toString(16).padStart(2, '0')} inside quotes`, j);
        if (d === '"') break;
        if (d === '$' || d === '`') throw syntax(`'${d}' inside "..." (a shell would expand it; use '...' to pass it literally)`, j, d);
        if (d === '\\' && (line[j + 1] === '"' || line[j + 1] === '\\')) {
          body += line[j + 1];
          j += 2;
          continue;
        }
        body += d;
        j++;
      }
      word = (word ?? '') + body;
      i = j + 1;
      continue;
    }
    if (c === '\\') {
      if (i + 1 >= line.length) throw syntax('a backslash at the end of the line', i);
      const next = line[i + 1]!;
      if (isControl(next.charCodeAt(0))) throw syntax(`control character 0x${next.charCodeAt(0).toString(16).padStart(2, '0')} after a backslash`, i + 1);
      word = (word ?? '') + next;
      i += 2;
      continue;
    }
    if (UNQUOTED_REFUSED.has(c)) throw syntax(`'${c}' outside quotes: no shell runs here, so the agent refuses what a shell would treat specially (quote it to pass it as a plain character)`, i, c);
    if (word === null && WORD_START_REFUSED.has(c)) throw syntax(`'${c}' at the start of a word outside quotes (a shell would read a comment or a home directory)`, i, c);
    word = (word ?? '') + c;
    i++;
  }
  push();
  return words;
}
