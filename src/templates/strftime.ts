import { HerdError } from '../errors.js';

const MONTHS = ['January', 'February', 'March', 'April', 'May', 'June', 'July', 'August', 'September', 'October', 'November', 'December'];
const WEEKDAYS = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'];

const pad2 = (value: number): string => String(value).padStart(2, '0');

/** Python's strftime directives in the C locale, in local time (as `datetime.now()` is). */
const DIRECTIVES: Readonly<Record<string, (date: Date) => string>> = {
  d: (date) => pad2(date.getDate()),
  m: (date) => pad2(date.getMonth() + 1),
  y: (date) => pad2(date.getFullYear() % 100),
  Y: (date) => String(date.getFullYear()),
  b: (date) => MONTHS[date.getMonth()].slice(0, 3),
  B: (date) => MONTHS[date.getMonth()],
  a: (date) => WEEKDAYS[date.getDay()].slice(0, 3),
  A: (date) => WEEKDAYS[date.getDay()],
  H: (date) => pad2(date.getHours()),
  M: (date) => pad2(date.getMinutes()),
  S: (date) => pad2(date.getSeconds()),
  '%': () => '%',
};

/** Formats a date as Python's `date.strftime(format)` does for the directives above. */
export function strftime(date: Date, format: string): string {
  return format.replace(/%(.)/gs, (directive, letter: string) => {
    const render = DIRECTIVES[letter];
    if (!render) throw new HerdError(`strftime: unsupported directive ${directive}`);
    return render(date);
  });
}
