/**
 * Checks a schedule written in systemd's calendar event syntax (systemd.time(7), "CALENDAR EVENTS"),
 * the OnCalendar= value of the timer it becomes, so that a typo is a line-numbered config error and
 * not a timer that systemd refuses at boot. The accepted language is the common subset:
 *
 *   shorthands   minutely hourly daily weekly monthly yearly annually quarterly semiannually
 *   normalized   [WEEKDAYS] [[YEAR-]MONTH-DAY] [HOUR:MINUTE[:SECOND]] [UTC | Area/City]
 *   weekdays     Mon..Sun or Monday..Sunday, lists (Mon,Fri) and ranges (Mon..Fri)
 *   a component  * or a number, lists (1,15), ranges (8..18), repetitions (*:0/15, 8..18/2);
 *                a day may count from the month's end (*-02~1)
 *
 * test/agent/calendar.test.ts holds this checker's verdicts against `systemd-analyze calendar`.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';

export const MAX_SCHEDULE_LENGTH = 256;

const SHORTHANDS = new Set(['minutely', 'hourly', 'daily', 'weekly', 'monthly', 'yearly', 'annually', 'quarterly', 'semiannually']);
const DAYS = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'];
const DAY_NAMES = ['monday', 'tuesday', 'wednesday', 'thursday', 'friday', 'saturday', 'sunday'];

function dayIndex(s: string): number {
  const l = s.toLowerCase();
  const i = DAYS.indexOf(l);
  return i >= 0 ? i : DAY_NAMES.indexOf(l);
}

function checkWeekdays(s: string): string | null {
  for (const part of s.split(',')) {
    const range = part.split('..');
    if (range.length > 2) return `weekday range '${part}'`;
    for (const d of range) if (dayIndex(d) < 0) return `weekday '${d}'`;
    if (range.length === 2 && dayIndex(range[0]!) > dayIndex(range[1]!)) return `weekday range '${part}' runs backwards`;
  }
  return null;
}

/** One component (month, day, hour ...): * or values in [min,max], lists, ranges, /repeat. */
function checkComponent(s: string, min: number, max: number, what: string, fraction = false): string | null {
  if (s === '') return `empty ${what}`;
  for (const part of s.split(',')) {
    const [base, repeat, extra] = part.split('/');
    if (extra !== undefined) return `${what} '${part}'`;
    if (repeat !== undefined && !/^\d{1,4}$/.test(repeat)) return `${what} repetition '${repeat}'`;
    if (repeat !== undefined && Number(repeat) === 0) return `${what} repetition 0`;
    if (base === '*') {
      if (repeat !== undefined) return `${what} '${part}': a repetition needs a start value (0/15, not */15)`;
      continue;
    }
    const ends = base!.split('..');
    if (ends.length > 2) return `${what} '${part}'`;
    const nums: number[] = [];
    for (const e of ends) {
      const re = fraction ? /^\d{1,4}(\.\d{1,6})?$/ : /^\d{1,4}$/;
      if (!re.test(e)) return `${what} '${e}'`;
      const n = Number(e);
      if (n < min || n > max) return `${what} ${e} outside ${min}..${max}`;
      nums.push(n);
    }
    if (nums.length === 2 && nums[0]! > nums[1]!) return `${what} range ${part} runs backwards`;
    // systemd (252) refuses an empty seconds range such as 10..10 (minutes and hours take it)
    if (fraction && nums.length === 2 && nums[0] === nums[1]) return `${what} range ${part} is empty`;
    // systemd refuses a repetition that can never fire a second time (hour 21/3: 24 is no hour)
    if (repeat !== undefined && nums.length === 1 && nums[0]! + Number(repeat) > max) return `${what} ${part} never repeats within ${min}..${max}`;
  }
  return null;
}

/** null when systemd would accept `expr` as an OnCalendar= value; otherwise why not. */
export function checkCalendar(expr: string): string | null {
  if (expr.length > MAX_SCHEDULE_LENGTH) return `longer than ${MAX_SCHEDULE_LENGTH} characters`;
  const s = expr;
  if (s.trim() === '') return 'empty';
  if (s !== s.trim()) return 'leading or trailing blanks';
  if (/^@\d{1,12}$/.test(s)) return null; // a point in time: seconds since the epoch
  const words = s.split(/\s+/);
  // a time zone may end any expression: UTC, or an Area/City systemd finds in the tz database
  const last = words[words.length - 1]!;
  if (words.length > 1 && (last === 'UTC' || (/^[A-Za-z]+(\/[A-Za-z0-9_+-]+)+$/.test(last) && existsSync(join('/usr/share/zoneinfo', last))))) words.pop();
  if (words.length === 1 && SHORTHANDS.has(words[0]!.toLowerCase())) return null;
  if (words.length > 4) return 'more than weekdays, a date, a time and a time zone';
  let i = 0;
  if (/^[A-Za-z]/.test(words[i]!) && words[i] !== 'UTC') {
    const why = checkWeekdays(words[i]!);
    if (why) return why;
    i++;
  }
  let sawDate = false;
  let sawTime = false;
  if (i < words.length && words[i]!.includes('-')) {
    const w = words[i]!;
    const tilde = w.includes('~');
    const parts = w.split(/[-~]/);
    if (parts.length === 3) {
      const why = checkComponent(parts[0]!, 1970, 2199, 'year') ?? checkComponent(parts[1]!, 1, 12, 'month') ?? checkComponent(parts[2]!, 1, 31, 'day');
      if (why) return why;
    } else if (parts.length === 2) {
      const why = checkComponent(parts[0]!, 1, 12, 'month') ?? checkComponent(parts[1]!, 1, 31, 'day');
      if (why) return why;
    } else return `date '${w}'`;
    if (tilde && (w.split('~').length !== 2 || w.indexOf('~') < w.lastIndexOf('-'))) return `date '${w}'`;
    sawDate = true;
    i++;
  }
  if (i < words.length && words[i]!.includes(':')) {
    const parts = words[i]!.split(':');
    if (parts.length < 2 || parts.length > 3) return `time '${words[i]}'`;
    const why = checkComponent(parts[0]!, 0, 23, 'hour') ?? checkComponent(parts[1]!, 0, 59, 'minute') ?? (parts[2] !== undefined ? checkComponent(parts[2], 0, 59, 'second', true) : null);
    if (why) return why;
    sawTime = true;
    i++;
  }
  if (i < words.length) return `'${words[i]}' is not a weekday, date, time or time zone`;
  if (!sawDate && !sawTime && i === 0) return 'nothing to schedule';
  return null;
}
