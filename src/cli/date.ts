import { HerdError } from '../errors.js';

/**
 * The --date flag (YYYY-MM-DD, passed to chat templates as date_string); undefined: today.
 * The date is local midnight because the template's strftime formats local time.
 */
export function parseDate(text: string | undefined): Date | undefined {
  if (text === undefined) return undefined;
  const match = /^(\d{4})-(\d{2})-(\d{2})$/.exec(text);
  const [year, month, day] = match ? match.slice(1).map(Number) : [Number.NaN, Number.NaN, Number.NaN];
  const date = new Date(year!, month! - 1, day!);
  if (!match || date.getFullYear() !== year || date.getMonth() !== month! - 1 || date.getDate() !== day) {
    throw new HerdError(`--date must be a real date as YYYY-MM-DD, got "${text}"`);
  }
  return date;
}
