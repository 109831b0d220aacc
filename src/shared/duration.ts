import { z } from 'zod';

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/;

/** Parses "250ms", "30s", "5m", "2h", "1d" or a plain number of milliseconds; undefined if it is neither. */
export function parseDuration(input: string | number): number | undefined {
  if (typeof input === 'number') return Number.isFinite(input) ? Math.round(input) : undefined;
  if (typeof input !== 'string') return undefined; // from untyped callers: a handler's snooze(undefined)
  const text = input.trim();
  if (/^\d+$/.test(text)) return Number(text);
  const match = DURATION.exec(text);
  if (!match) return undefined;
  return Math.round(Number(match[1]) * UNIT_MS[match[2]]);
}

/** The longest duration a timer or an integer column holds: 2^31-1 ms, about 24.8 days. */
export const MAX_DURATION_MS = 2 ** 31 - 1;

/** A zod field for a duration: milliseconds as a number, or a string such as "30s". */
export function durationField(what: string, { min = 0, max = MAX_DURATION_MS }: { min?: number; max?: number } = {}) {
  const expected = `${what} must be a duration such as 500ms, 30s, 5m, 2h or 1d, or a number of milliseconds`;
  return z.union([z.number({ error: `${expected}; got a number that is not finite` }), z.string()], { error: expected }).transform((value, ctx) => {
    const ms = parseDuration(value);
    if (ms === undefined) {
      ctx.addIssue({
        code: 'custom',
        message: `${expected}; got ${JSON.stringify(value)}`,
      });
      return z.NEVER;
    }
    if (ms < min) {
      ctx.addIssue({ code: 'custom', message: `${what} must be at least ${min} ms; got ${value}` });
      return z.NEVER;
    }
    if (ms > max) {
      ctx.addIssue({ code: 'custom', message: `${what} must be at most ${max} ms (about ${Math.floor(max / 86_400_000)} days); got ${value}` });
      return z.NEVER;
    }
    return ms;
  });
}
