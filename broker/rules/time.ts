/**
 * Time windows: the day of week and minute of day of `now` in a rule's time zone.
 * Intl formatting is the costly part, so it is done once per decision and zone.
 */
import { DAYS, type TimeMatch } from './schema.ts';

/** Day of week (0 = mon) and minute of day of an instant in one zone. */
export interface LocalTime {
  day: number;
  minute: number;
}

const formatters = new Map<string, Intl.DateTimeFormat>();
const DAY_INDEX: Record<string, number> = { Mon: 0, Tue: 1, Wed: 2, Thu: 3, Fri: 4, Sat: 5, Sun: 6 };

/** Local time of `now` in `tz` (IANA; `UTC` by default). */
export function localTime(now: Date, tz = 'UTC'): LocalTime {
  if (tz === 'UTC') return { day: (now.getUTCDay() + 6) % 7, minute: now.getUTCHours() * 60 + now.getUTCMinutes() };
  let f = formatters.get(tz);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', { timeZone: tz, weekday: 'short', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' });
    formatters.set(tz, f);
  }
  let day = 0;
  let hour = 0;
  let minute = 0;
  for (const p of f.formatToParts(now)) {
    if (p.type === 'weekday') day = DAY_INDEX[p.value] ?? 0;
    else if (p.type === 'hour') hour = Number(p.value) % 24;
    else if (p.type === 'minute') minute = Number(p.value);
  }
  return { day, minute: hour * 60 + minute };
}

function toMinute(hhmm: string): number {
  return Number(hhmm.slice(0, 2)) * 60 + Number(hhmm.slice(3, 5));
}

/** A compiled window: `test(local)` for the rule's zone. */
export interface CompiledWindow {
  readonly tz: string;
  test(t: LocalTime): boolean;
  readonly text: string;
}

/**
 * `from` is inclusive, `to` exclusive; `from > to` wraps past midnight (22:00-06:00), and
 * then `days` names the day the window starts on. Only `from`: until midnight; only `to`: from midnight.
 */
export function compileWindow(m: TimeMatch): CompiledWindow {
  const tz = m.tz ?? 'UTC';
  const days = m.days ? new Set(m.days.map((d) => DAYS.indexOf(d))) : null;
  const from = m.from ? toMinute(m.from) : 0;
  const to = m.to ? toMinute(m.to) : 24 * 60;
  const wraps = from > to;
  const text = `${m.days ? m.days.join(',') : 'every day'} ${m.from ?? '00:00'}-${m.to ?? '24:00'} ${tz}`;
  return {
    tz,
    text,
    test(t: LocalTime): boolean {
      if (!wraps) return (days === null || days.has(t.day)) && t.minute >= from && t.minute < to;
      // After midnight the window belongs to the previous day.
      if (t.minute >= from) return days === null || days.has(t.day);
      if (t.minute < to) return days === null || days.has((t.day + 6) % 7);
      return false;
    },
  };
}
