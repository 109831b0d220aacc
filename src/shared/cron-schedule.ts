/**
 * Cron expressions evaluated in an IANA time zone, and the catch-up policy for missed slots. Pure: no I/O,
 * every time is an argument, so the DST vectors are table tests that never wait.
 *
 * cron-parser parses the expression and walks the calendar in UTC, where no clock ever jumps. Wida maps
 * each wall-clock match to instants itself, because cron-parser's own time-zone walk has DST bugs (found
 * by test/cron-schedule.test.ts: it drops the day's run of "15 2 * * *" on Lord Howe's spring-forward day,
 * and drops the repeated half hour of "*\/15 * * * *" on Lord Howe's fall-back). The rules (also in
 * docs/architecture.md, "Cron and DST"):
 * - A wall time in a spring-forward gap does not exist. A schedule with fixed hours runs it once, shifted
 *   forward by the gap (02:30 in New York becomes 03:30 EDT); a schedule that runs every hour follows
 *   absolute time, so the gap simply has no slots.
 * - A wall time in a fall-back overlap exists twice. A schedule with fixed hours runs at the first one
 *   only; a schedule that runs every hour runs at both (it follows absolute time).
 * Slots are instants, so a shifted slot that lands on a real one is one slot.
 */
import { CronExpressionParser, type CronExpression } from 'cron-parser';
import { IANAZone } from 'luxon';
import { ValidationError } from './errors.js';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
// Wider than any DST shift in the tz database (2 h), so a scan that starts this far back misses nothing.
const SHIFT_MARGIN = 3 * HOUR;
const MAX_SHIFT = 2 * HOUR;
const MAX_SCAN = 2_000_000;

export type CatchUpPolicy = 'skip' | 'once' | 'backfill';
export const CATCH_UP_POLICIES: readonly CatchUpPolicy[] = ['skip', 'once', 'backfill'];
export const MAX_BACKFILL = 1000;

export function isValidTimezone(timezone: string): boolean {
  return typeof timezone === 'string' && timezone.length > 0 && IANAZone.isValidZone(timezone);
}

/** A parsed cron expression bound to a time zone. */
export class CronSchedule {
  readonly expression: string;
  readonly timezone: string;
  /** every hour of the day matches: the schedule follows absolute time across DST changes */
  readonly everyHour: boolean;
  private readonly zone: IANAZone;
  private readonly utc: CronExpression;

  constructor(expression: string, timezone = 'UTC') {
    const trimmed = typeof expression === 'string' ? expression.trim() : '';
    const fields = trimmed.split(/\s+/).length;
    if (!trimmed.startsWith('@') && fields !== 5 && fields !== 6) {
      throw new ValidationError(
        'expression',
        `cron expression "${expression}" has ${fields} fields; expected 5 (minute hour day-of-month month day-of-week) or 6 (with seconds first)`,
      );
    }
    // cron-parser reads H as a random value drawn at each parse: every leader, listing and client would draw its own
    // minute, and a daily schedule ran three times one day and not at all another.
    if (/(^|[^A-Za-z])[Hh]($|[^A-Za-z])/.test(trimmed)) {
      throw new ValidationError('expression', `cron expression "${expression}" uses H (a random value); write the minute and hour you want, e.g. "17 3 * * *"`);
    }
    if (!isValidTimezone(timezone)) {
      throw new ValidationError('timezone', `"${timezone}" is not an IANA time zone; use a name such as "Europe/London" or "UTC"`);
    }
    try {
      this.utc = CronExpressionParser.parse(trimmed, { tz: 'UTC', strict: false });
    } catch (error) {
      throw new ValidationError('expression', `cron expression "${expression}" is invalid: ${(error as Error).message}`);
    }
    this.expression = trimmed;
    this.timezone = timezone;
    this.zone = IANAZone.create(timezone);
    this.everyHour = this.utc.fields.hour.values.length === 24;
  }

  /** The zone's offset from UTC at an instant, in ms. */
  private offset(instantMs: number): number {
    return this.zone.offset(instantMs) * 60_000;
  }

  // An interval of instants around which the offset is known not to change (luxon's offset costs ~16 us,
  // and an every-second schedule maps thousands of wall times per look-back).
  private stable = { from: 0, until: -1, offset: 0 };

  /** How far the offset moves within SHIFT_MARGIN of an instant (0 when no DST change is near). */
  private shiftNear(instantMs: number): number {
    const offsets = [this.offset(instantMs - SHIFT_MARGIN), this.offset(instantMs), this.offset(instantMs + SHIFT_MARGIN)];
    const shift = Math.max(...offsets) - Math.min(...offsets);
    // Trusted only MAX_SHIFT inside the interval checked: a wall time whose instant lies near its edge may have a
    // second instant (the repeated hour of a fall-back) up to a shift away, outside it. Trusting the whole
    // interval lost the 01:00 GMT slot of London's fall-back day and ran 01:30 EST instead of EDT in New York.
    if (shift === 0) this.stable = { from: instantMs - SHIFT_MARGIN + MAX_SHIFT, until: instantMs + SHIFT_MARGIN - MAX_SHIFT, offset: offsets[0] };
    return shift;
  }

  /** The instants at which a wall-clock match (as ms of a naive UTC clock) runs, by the DST rules above. */
  private instantsOf(wallMs: number): number[] {
    const guess = wallMs - this.stable.offset;
    if (guess >= this.stable.from && guess <= this.stable.until) return [guess];
    if (this.shiftNear(wallMs - this.offset(wallMs)) === 0) {
      const instant = wallMs - this.stable.offset;
      if (instant >= this.stable.from && instant <= this.stable.until) return [instant];
    }
    const before = this.offset(wallMs - DAY);
    const after = this.offset(wallMs + DAY);
    const real = [...new Set([wallMs - before, wallMs - after])].filter((instant) => instant + this.offset(instant) === wallMs);
    if (real.length === 0) return this.everyHour ? [] : [wallMs - before]; // in a gap: shifted forward by it
    real.sort((a, b) => a - b);
    return this.everyHour ? real : [real[0]];
  }

  /**
   * Slots s with after < s <= until, oldest first; at most `limit` (the oldest ones).
   * Walks wall-clock matches in order; near a DST change it starts earlier and ends later by the size of
   * the shift, because there wall order and instant order can differ.
   */
  between(after: Date, until: Date, limit = Infinity): Date[] {
    const afterMs = after.getTime();
    const untilMs = until.getTime();
    if (!(untilMs > afterMs)) return [];
    const startWall = afterMs + this.offset(afterMs) - this.shiftNear(afterMs);
    const endWall = untilMs + this.offset(untilMs) + this.shiftNear(untilMs);
    let stopWall = endWall;
    const found: number[] = [];
    this.utc.reset(new Date(startWall - 1));
    for (let steps = 0; ; steps++) {
      if (steps > MAX_SCAN) throw new Error(`cron "${this.expression}" in ${this.timezone}: too many slots between ${after.toISOString()} and ${until.toISOString()}`);
      if (!this.utc.hasNext()) break;
      const wall = this.utc.next().getTime();
      if (wall > stopWall) break;
      for (const instant of this.instantsOf(wall)) if (instant > afterMs && instant <= untilMs) found.push(instant);
      // Matches further on the wall clock than the local shift cannot be earlier instants than these.
      if (found.length >= limit && stopWall === endWall) stopWall = Math.min(endWall, wall + this.shiftNear(wall - this.offset(wall)));
    }
    const unique = [...new Set(found)].sort((a, b) => a - b);
    return unique.slice(0, limit).map((ms) => new Date(ms));
  }

  /** The first slot after `after`, or null if there is none within ten years. */
  next(after: Date): Date | null {
    for (const horizon of [HOUR, DAY, 32 * DAY, 400 * DAY, 3653 * DAY]) {
      const [slot] = this.between(after, new Date(after.getTime() + horizon), 1);
      if (slot) return slot;
    }
    return null;
  }

  /** The next `count` slots after `after`. */
  upcoming(after: Date, count: number): Date[] {
    const slots: Date[] = [];
    let from = after;
    while (slots.length < count) {
      const slot = this.next(from);
      if (!slot) break;
      slots.push(slot);
      from = slot;
    }
    return slots;
  }

  /**
   * The newest `count` slots s with after < s <= until, oldest first. Looks back from `until` in doubling
   * windows, so a schedule that last ran a year ago is not walked slot by slot.
   */
  latest(after: Date, until: Date, count: number): Date[] {
    if (count <= 0) return [];
    const afterMs = after.getTime();
    const untilMs = until.getTime();
    for (let window = HOUR; ; window *= 2) {
      const from = Math.max(afterMs, untilMs - window);
      const slots = this.between(new Date(from), until);
      if (slots.length >= count || from === afterMs) return slots.slice(-count);
    }
  }
}

export interface CatchUp {
  policy: CatchUpPolicy;
  /** for backfill: at most this many missed slots, the newest */
  backfillLimit?: number | null;
}

export interface DueSlots {
  /** slots to enqueue now, oldest first */
  slots: Date[];
  /** true when the policy dropped missed slots */
  skipped: boolean;
  /** the newest slot considered, to store as the schedule's last slot; null if none was due */
  newest: Date | null;
}

/**
 * What a schedule owes at `now`, given that every slot up to `after` was dealt with. A slot no older than
 * `graceMs` is on time and always runs (a leader change takes seconds; its slots are not "missed"); older
 * ones were missed while no leader ran and follow the policy: skip them, run the newest once, or backfill
 * up to `backfillLimit` of the newest.
 */
export function dueSlots(schedule: CronSchedule, params: { after: Date; now: Date; catchUp: CatchUp; graceMs: number }): DueSlots {
  const { after, now, catchUp, graceMs } = params;
  const onTimeFrom = new Date(Math.max(after.getTime(), now.getTime() - graceMs));
  const onTime = schedule.between(onTimeFrom, now);
  if (onTimeFrom.getTime() === after.getTime()) {
    return { slots: onTime, skipped: false, newest: onTime.at(-1) ?? null };
  }
  const wanted = catchUp.policy === 'skip' ? 0 : catchUp.policy === 'once' ? 1 : Math.min(catchUp.backfillLimit ?? MAX_BACKFILL, MAX_BACKFILL);
  // At least one, to know the newest missed slot (stored as the last slot so it is not looked at again).
  const missed = schedule.latest(after, onTimeFrom, Math.max(wanted, 1));
  const run = missed.slice(missed.length - Math.min(wanted, missed.length));
  // latest() returned at most `wanted` slots when wanted > 0: any older one was dropped.
  const skipped = wanted === 0 ? missed.length > 0 : missed.length === wanted && schedule.between(after, new Date(missed[0].getTime() - 1), 1).length > 0;
  return { slots: [...run, ...onTime], skipped, newest: onTime.at(-1) ?? missed.at(-1) ?? null };
}
