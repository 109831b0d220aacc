/**
 * Cron slots in time zones across DST changes, and the catch-up policy: pure table tests (time is an
 * argument, nothing waits). The rules are in src/shared/cron-schedule.ts and docs/architecture.md.
 */
import { CronExpressionParser } from 'cron-parser';
import { describe, expect, it } from 'vitest';
import { CronSchedule, dueSlots, type CatchUp } from '../src/shared/cron-schedule.js';
import { ValidationError } from '../src/shared/errors.js';

const iso = (dates: Date[]) => dates.map((d) => d.toISOString().replace('.000Z', 'Z'));
const at = (text: string) => new Date(text);

interface Vector {
  what: string;
  expression: string;
  timezone: string;
  after: string;
  until: string;
  slots: string[];
}

// Each expected instant is worked out by hand from the zone's 2018 rules (comments give the local times).
const VECTORS: Vector[] = [
  // America/New_York: 2018-03-11 02:00 EST -> 03:00 EDT; 2018-11-04 02:00 EDT -> 01:00 EST.
  { what: 'NY gap: a daily 02:30 runs once, at 03:30 EDT', expression: '30 2 * * *', timezone: 'America/New_York',
    after: '2018-03-10T12:00:00Z', until: '2018-03-12T12:00:00Z', slots: ['2018-03-11T07:30:00Z', '2018-03-12T06:30:00Z'] },
  { what: 'NY gap: an hourly job has no 02:00', expression: '0 * * * *', timezone: 'America/New_York',
    after: '2018-03-11T05:30:00Z', until: '2018-03-11T08:30:00Z', slots: ['2018-03-11T06:00:00Z', '2018-03-11T07:00:00Z', '2018-03-11T08:00:00Z'] },
  { what: 'NY gap: 02:30 and 03:30 daily land on one instant, one slot', expression: '30 2,3 * * *', timezone: 'America/New_York',
    after: '2018-03-11T05:00:00Z', until: '2018-03-11T09:00:00Z', slots: ['2018-03-11T07:30:00Z'] },
  { what: 'NY overlap: a daily 01:30 runs once, at 01:30 EDT', expression: '30 1 * * *', timezone: 'America/New_York',
    after: '2018-11-03T12:00:00Z', until: '2018-11-05T12:00:00Z', slots: ['2018-11-04T05:30:00Z', '2018-11-05T06:30:00Z'] },
  { what: 'NY overlap: an hourly job runs at both 01:00s', expression: '0 * * * *', timezone: 'America/New_York',
    after: '2018-11-04T03:30:00Z', until: '2018-11-04T07:30:00Z',
    slots: ['2018-11-04T04:00:00Z', '2018-11-04T05:00:00Z', '2018-11-04T06:00:00Z', '2018-11-04T07:00:00Z'] },
  { what: 'NY overlap: every 30 minutes follows absolute time', expression: '*/30 * * * *', timezone: 'America/New_York',
    after: '2018-11-04T04:45:00Z', until: '2018-11-04T07:00:00Z',
    slots: ['2018-11-04T05:00:00Z', '2018-11-04T05:30:00Z', '2018-11-04T06:00:00Z', '2018-11-04T06:30:00Z', '2018-11-04T07:00:00Z'] },
  // Europe/London: 2018-03-25 01:00 GMT -> 02:00 BST; 2018-10-28 02:00 BST -> 01:00 GMT.
  { what: 'London gap: a daily 01:30 runs at 02:30 BST', expression: '30 1 * * *', timezone: 'Europe/London',
    after: '2018-03-24T12:00:00Z', until: '2018-03-26T12:00:00Z', slots: ['2018-03-25T01:30:00Z', '2018-03-26T00:30:00Z'] },
  { what: 'London overlap: a daily 01:30 runs once, at 01:30 BST', expression: '30 1 * * *', timezone: 'Europe/London',
    after: '2018-10-27T12:00:00Z', until: '2018-10-29T12:00:00Z', slots: ['2018-10-28T00:30:00Z', '2018-10-29T01:30:00Z'] },
  { what: 'London overlap: an hourly job runs every 60 minutes', expression: '0 * * * *', timezone: 'Europe/London',
    after: '2018-10-27T23:30:00Z', until: '2018-10-28T03:30:00Z',
    slots: ['2018-10-28T00:00:00Z', '2018-10-28T01:00:00Z', '2018-10-28T02:00:00Z', '2018-10-28T03:00:00Z'] },
  // Australia/Lord_Howe (a 30-minute shift): 2018-04-01 02:00 +11 -> 01:30 +10:30; 2018-10-07 02:00 +10:30 -> 02:30 +11.
  { what: 'Lord Howe gap: a daily 02:15 runs once, at 02:45 +11', expression: '15 2 * * *', timezone: 'Australia/Lord_Howe',
    after: '2018-10-06T00:00:00Z', until: '2018-10-08T00:00:00Z', slots: ['2018-10-06T15:45:00Z', '2018-10-07T15:15:00Z'] },
  { what: 'Lord Howe gap: every 15 minutes skips 02:00 and 02:15', expression: '*/15 * * * *', timezone: 'Australia/Lord_Howe',
    after: '2018-10-06T15:15:00Z', until: '2018-10-06T16:00:00Z', slots: ['2018-10-06T15:30:00Z', '2018-10-06T15:45:00Z', '2018-10-06T16:00:00Z'] },
  { what: 'Lord Howe overlap: every 15 minutes runs the repeated half hour twice', expression: '*/15 * * * *', timezone: 'Australia/Lord_Howe',
    after: '2018-03-31T14:20:00Z', until: '2018-03-31T15:30:00Z',
    slots: ['2018-03-31T14:30:00Z', '2018-03-31T14:45:00Z', '2018-03-31T15:00:00Z', '2018-03-31T15:15:00Z', '2018-03-31T15:30:00Z'] },
  { what: 'Lord Howe overlap: a daily 01:45 runs once, at 01:45 +11', expression: '45 1 * * *', timezone: 'Australia/Lord_Howe',
    after: '2018-03-31T12:00:00Z', until: '2018-04-02T00:00:00Z', slots: ['2018-03-31T14:45:00Z', '2018-04-01T15:15:00Z'] },
  // America/Sao_Paulo 2018: 2018-02-18 00:00 -02 -> 2018-02-17 23:00 -03; 2018-11-04 00:00 -03 -> 01:00 -02 (no midnight).
  { what: 'Sao Paulo gap: a daily midnight runs at 01:00 on the day without one', expression: '0 0 * * *', timezone: 'America/Sao_Paulo',
    after: '2018-11-02T12:00:00Z', until: '2018-11-05T12:00:00Z',
    slots: ['2018-11-03T03:00:00Z', '2018-11-04T03:00:00Z', '2018-11-05T02:00:00Z'] },
  { what: 'Sao Paulo gap: an hourly :30 has no 00:30', expression: '30 * * * *', timezone: 'America/Sao_Paulo',
    after: '2018-11-04T02:00:00Z', until: '2018-11-04T04:45:00Z', slots: ['2018-11-04T02:30:00Z', '2018-11-04T03:30:00Z', '2018-11-04T04:30:00Z'] },
  { what: 'Sao Paulo overlap: a daily 23:30 runs once, at 23:30 -02', expression: '30 23 * * *', timezone: 'America/Sao_Paulo',
    after: '2018-02-17T12:00:00Z', until: '2018-02-19T12:00:00Z', slots: ['2018-02-18T01:30:00Z', '2018-02-19T02:30:00Z'] },
  { what: 'Sao Paulo overlap: an hourly job runs at both 23:00s', expression: '0 * * * *', timezone: 'America/Sao_Paulo',
    after: '2018-02-18T00:30:00Z', until: '2018-02-18T03:30:00Z', slots: ['2018-02-18T01:00:00Z', '2018-02-18T02:00:00Z', '2018-02-18T03:00:00Z'] },
  // No DST: seconds, weekdays.
  { what: 'UTC, 6 fields: every 20 seconds', expression: '*/20 * * * * *', timezone: 'UTC',
    after: '2024-01-01T00:00:00Z', until: '2024-01-01T00:01:00Z', slots: ['2024-01-01T00:00:20Z', '2024-01-01T00:00:40Z', '2024-01-01T00:01:00Z'] },
  { what: 'weekdays at 09:00 Tokyo', expression: '0 9 * * 1-5', timezone: 'Asia/Tokyo',
    after: '2024-03-01T00:00:00Z', until: '2024-03-04T23:00:00Z', slots: ['2024-03-04T00:00:00Z'] },
];

describe('cron slots across DST changes', () => {
  it.each(VECTORS)('$what', ({ expression, timezone, after, until, slots }) => {
    const schedule = new CronSchedule(expression, timezone);
    expect(iso(schedule.between(at(after), at(until)))).toEqual(slots);
    // next() walks the same slots one at a time
    const stepped: Date[] = [];
    for (let slot = schedule.next(at(after)); slot && slot <= at(until); slot = schedule.next(slot)) stepped.push(slot);
    expect(iso(stepped)).toEqual(slots);
  });

  it('a wide window over a fall-back day, and an object asked about other windows first, give the same slots', () => {
    // A cached "no DST change near" interval was trusted to its edges, where a wall time's second instant (the
    // repeated hour) lies outside it: 01:30 ran in EST instead of EDT, and London lost its 01:00 GMT run.
    const newYork = new CronSchedule('30 1 * * *', 'America/New_York');
    expect(iso(newYork.between(at('2027-11-07T04:00:00Z'), at('2027-11-07T09:00:00Z')))).toEqual(['2027-11-07T05:30:00Z']);
    expect(iso(newYork.between(at('2027-11-07T08:00:00Z'), at('2027-11-07T09:00:00Z')))).toEqual([]);
    expect(iso(newYork.between(at('2027-11-07T06:29:00Z'), at('2027-11-07T06:31:00Z')))).toEqual([]);
    const london = new CronSchedule('0 * * * *', 'Europe/London');
    expect(iso(london.between(at('2026-10-24T22:00:00Z'), at('2026-10-25T04:00:00Z')))).toEqual([
      '2026-10-24T23:00:00Z', '2026-10-25T00:00:00Z', '2026-10-25T01:00:00Z', '2026-10-25T02:00:00Z', '2026-10-25T03:00:00Z', '2026-10-25T04:00:00Z',
    ]);
    const quarter = new CronSchedule('*/15 * * * *', 'Europe/London');
    const listed = iso(quarter.upcoming(at('2026-10-24T23:50:00Z'), 12));
    expect(listed).toContain('2026-10-25T01:00:00Z'); // 01:00 GMT, the repeated hour's first quarter
    expect(listed).toContain('2026-10-25T01:30:00Z');
  });

  it('cron-parser alone gets two of these wrong (why Wida maps wall times itself)', () => {
    const parserSlots = (expression: string, tz: string, after: string, n: number) => {
      const it = CronExpressionParser.parse(expression, { currentDate: at(after), tz });
      return iso(Array.from({ length: n }, () => it.next().toDate()));
    };
    // Lord Howe gap day: the 02:15 run of 2018-10-07 is missing (it jumps to the next day).
    expect(parserSlots('15 2 * * *', 'Australia/Lord_Howe', '2018-10-06T00:00:00Z', 1)).not.toEqual(['2018-10-06T15:45:00Z']);
    // Lord Howe overlap: the second 01:30 and 01:45 are missing.
    expect(parserSlots('*/15 * * * *', 'Australia/Lord_Howe', '2018-03-31T14:20:00Z', 3)).not.toEqual(['2018-03-31T14:30:00Z', '2018-03-31T14:45:00Z', '2018-03-31T15:00:00Z']);
  });

  it('upcoming() and latest() agree with between()', () => {
    const schedule = new CronSchedule('0 */6 * * *', 'Europe/London');
    expect(iso(schedule.upcoming(at('2018-10-27T20:00:00Z'), 3))).toEqual(['2018-10-27T23:00:00Z', '2018-10-28T06:00:00Z', '2018-10-28T12:00:00Z']);
    const daily = new CronSchedule('0 9 * * *', 'UTC');
    expect(iso(daily.latest(at('2020-01-01T00:00:00Z'), at('2024-06-10T12:00:00Z'), 2))).toEqual(['2024-06-09T09:00:00Z', '2024-06-10T09:00:00Z']);
    expect(daily.next(at('2024-06-10T09:00:00Z'))).toEqual(at('2024-06-11T09:00:00Z'));
  });

  // (How long it takes is the bench's business, not a test's: a timed assertion fails on a busy machine.)
  it('a schedule that fires once in four years finds its next slot', () => {
    expect(new CronSchedule('0 0 29 2 *', 'Europe/London').next(at('2024-03-01T00:00:00Z'))).toEqual(at('2028-02-29T00:00:00Z'));
  });

  it('looks ten years ahead: a fifth Monday of February (a Monday 29 February) is found from 2034, not from 2026', () => {
    const schedule = new CronSchedule('0 0 * 2 1#5', 'UTC');
    expect(schedule.next(at('2026-11-24T00:00:00Z'))).toBeNull(); // the CLI says "no run within ten years"
    expect(schedule.next(at('2034-03-01T00:00:00Z'))).toEqual(at('2044-02-29T00:00:00Z'));
  });

  it.each([
    ['* * * *', 'UTC', /has 4 fields/],
    ['* * * * * * *', 'UTC', /has 7 fields/],
    ['61 * * * *', 'UTC', /is invalid/],
    ['0 0 31 2 *', 'UTC', /is invalid/],
    ['0 9 * * *', 'Mars/Olympus', /not an IANA time zone/],
  ])('rejects %s in %s', (expression, timezone, message) => {
    expect(() => new CronSchedule(expression, timezone)).toThrow(ValidationError);
    expect(() => new CronSchedule(expression, timezone)).toThrow(message);
  });
});

describe('catch-up policy for slots missed while no leader ran', () => {
  const everyMinute = new CronSchedule('0 * * * * *', 'UTC');
  const after = at('2024-01-01T10:00:00Z');
  const now = at('2024-01-01T10:05:30Z');
  const due = (catchUp: CatchUp) => dueSlots(everyMinute, { after, now, catchUp, graceMs: 60_000 });

  it.each<[string, CatchUp, string[], boolean]>([
    ['skip runs only the on-time slot', { policy: 'skip' }, ['10:05'], true],
    ['once runs the newest missed slot and the on-time one', { policy: 'once' }, ['10:04', '10:05'], true],
    ['backfill 2 runs the two newest missed slots', { policy: 'backfill', backfillLimit: 2 }, ['10:03', '10:04', '10:05'], true],
    ['backfill 10 runs all four missed slots', { policy: 'backfill', backfillLimit: 10 }, ['10:01', '10:02', '10:03', '10:04', '10:05'], false],
    ['backfill 4 runs exactly the four missed slots: nothing dropped', { policy: 'backfill', backfillLimit: 4 }, ['10:01', '10:02', '10:03', '10:04', '10:05'], false],
  ])('%s', (_what, catchUp, slots, skipped) => {
    const result = due(catchUp);
    expect(result.slots.map((d) => d.toISOString().slice(11, 16))).toEqual(slots);
    expect(result.skipped).toBe(skipped);
    expect(result.newest).toEqual(at('2024-01-01T10:05:00Z'));
  });

  it('once, with exactly one slot missed, drops nothing', () => {
    const result = dueSlots(everyMinute, { after: at('2024-01-01T10:03:00Z'), now, catchUp: { policy: 'once' }, graceMs: 60_000 });
    expect(iso(result.slots)).toEqual(['2024-01-01T10:04:00Z', '2024-01-01T10:05:00Z']);
    expect(result.skipped).toBe(false);
  });

  it('slots within the grace are on time whatever the policy (a leader change is not a miss)', () => {
    const result = dueSlots(everyMinute, { after: at('2024-01-01T10:04:40Z'), now, catchUp: { policy: 'skip' }, graceMs: 60_000 });
    expect(iso(result.slots)).toEqual(['2024-01-01T10:05:00Z']);
    expect(result.skipped).toBe(false);
  });

  it('a daily schedule down for three days: skip records the newest missed slot so it is not looked at again', () => {
    const daily = new CronSchedule('0 9 * * *', 'UTC');
    const result = dueSlots(daily, { after: at('2024-01-01T09:00:00Z'), now: at('2024-01-04T12:00:00Z'), catchUp: { policy: 'skip' }, graceMs: 60_000 });
    expect(result.slots).toEqual([]);
    expect(result.skipped).toBe(true);
    expect(result.newest).toEqual(at('2024-01-04T09:00:00Z'));
    const once = dueSlots(daily, { after: at('2024-01-01T09:00:00Z'), now: at('2024-01-04T12:00:00Z'), catchUp: { policy: 'once' }, graceMs: 60_000 });
    expect(iso(once.slots)).toEqual(['2024-01-04T09:00:00Z']);
  });

  it('a year of every-second slots is not walked one by one', () => {
    const started = performance.now();
    const result = dueSlots(new CronSchedule('* * * * * *', 'UTC'), {
      after: at('2023-01-01T00:00:00Z'), now: at('2024-01-01T00:00:00Z'), catchUp: { policy: 'backfill', backfillLimit: 3 }, graceMs: 2_000,
    });
    expect(iso(result.slots)).toEqual([
      '2023-12-31T23:59:56Z', '2023-12-31T23:59:57Z', '2023-12-31T23:59:58Z', '2023-12-31T23:59:59Z', '2024-01-01T00:00:00Z',
    ]);
    expect(performance.now() - started).toBeLessThan(2_000);
  });
});

describe("cron-parser's H (a random value)", () => {
  it('is refused, naming the expression; day names with an H in them are not', () => {
    for (const expression of ['H H * * *', 'H/5 * * * *', '0 H(0-3) * * *']) {
      expect(() => new CronSchedule(expression, 'UTC')).toThrow(ValidationError);
      expect(() => new CronSchedule(expression, 'UTC')).toThrow(/uses H \(a random value\)/);
    }
    expect(new CronSchedule('0 9 * * THU', 'UTC').next(at('2024-01-01T00:00:00Z'))).toEqual(at('2024-01-04T09:00:00Z'));
  });
});
