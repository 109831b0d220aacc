import type pg from 'pg';
import type { SchemaDb } from '../../shared/db/sql.js';
import { inTransaction } from '../../shared/db/transaction.js';
import { cronScheduleEnqueueSlots, cronScheduleList, databaseNow, type CronScheduleRow } from '../../shared/db/queries/cron-schedules.js';
import { CronSchedule, dueSlots } from '../../shared/cron-schedule.js';
import type { Logger } from '../../shared/logger.js';
import type { Service } from '../service.js';
import type { LeaderFence } from './fence.js';

export interface CronEnqueuerOptions {
  /** the upkeep pool `db` runs on: each enqueue is a transaction of its own, with the leader's limits */
  pool: pg.Pool;
  db: SchemaDb;
  /** the leader's fence; every insert names its term. null only in tests of the unique index. */
  fence: LeaderFence | null;
  logger: Logger;
  /** a slot no older than this is on time and always runs; older ones follow the schedule's catch-up policy */
  graceMs: number;
  /** the longest wait between two looks at the schedules (default 1 s), so new schedules are seen soon */
  maxIntervalMs?: number;
  /** the current time; defaults to the database's now(), never the agent's clock */
  now?: () => Promise<Date>;
}

/** Without a fence (tests only): the leader's default idle limit. */
const DEFAULT_LEADER_LIMIT_MS = 4_000;

/**
 * A leader-only duty: inserts one job per due slot of every enabled schedule, under the unique
 * (schedule, slot) index and the leader's term, and sleeps until the next slot (at most `maxIntervalMs`).
 */
export class CronEnqueuer implements Service {
  readonly name = 'cron';
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;
  private readonly parsed = new Map<string, CronSchedule>();
  private readonly maxIntervalMs: number;

  constructor(private readonly options: CronEnqueuerOptions) {
    this.maxIntervalMs = options.maxIntervalMs ?? 1_000;
  }

  start(): void {
    this.schedule(0);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
  }

  private schedule(delay: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      let next = this.maxIntervalMs;
      this.running = this.tick()
        .then((untilNextSlotMs) => {
          next = Math.min(next, Math.max(untilNextSlotMs, 5));
        })
        .catch((error) => this.options.logger.error('cron enqueuer failed', { error: (error as Error).message }))
        .finally(() => {
          this.running = undefined;
          this.schedule(next);
        });
    }, delay);
  }

  /** One look at every enabled schedule. Returns ms until the next slot of any of them (Infinity if none). */
  async tick(): Promise<number> {
    const { db, fence, logger } = this.options;
    if (fence && !fence.isCurrent()) return Infinity;
    const now = await (this.options.now ? this.options.now() : databaseNow(db));
    const schedules = await cronScheduleList(db, { enabledOnly: true });
    let untilNext = Infinity;
    for (const row of schedules) {
      if (fence && !fence.isCurrent()) return Infinity;
      try {
        const schedule = this.parse(row);
        await this.enqueueDue(row, schedule, now);
        // Only whether a slot comes before the next look matters: next() may search years ahead for a rare
        // schedule (February 29 took 25 ms, a fifth Monday of February 200 ms, on every tick).
        const [next] = schedule.between(now, new Date(now.getTime() + this.maxIntervalMs), 1);
        if (next) untilNext = Math.min(untilNext, next.getTime() - now.getTime());
      } catch (error) {
        logger.error('cron schedule failed', { schedule: row.name, error: (error as Error).message });
      }
    }
    return untilNext;
  }

  private async enqueueDue(row: CronScheduleRow, schedule: CronSchedule, now: Date): Promise<void> {
    const after = new Date(Math.max(row.startsAfter.getTime(), row.lastSlot?.getTime() ?? 0));
    const due = dueSlots(schedule, { after, now, catchUp: { policy: row.catchUp, backfillLimit: row.backfillLimit }, graceMs: this.options.graceMs });
    const newest = due.newest;
    if (!newest) return;
    if (due.skipped) {
      this.options.logger.warn('cron slots were missed while no leader ran; the catch-up policy dropped some', {
        schedule: row.name,
        catchUp: row.catchUp,
        since: after.toISOString(),
        running: due.slots.map((slot) => slot.toISOString()),
      });
    }
    // The statement share-locks the leader row. Waiting on a schedule's row (an operator's open transaction), it
    // held that lock up to the pool's query limit of a minute, past the agent's stop: no other agent could lead.
    // So it waits for locks, and may idle, no longer than the leader's session may (as fence.ts's asLeader).
    const limitMs = this.options.fence?.idleLimitMs ?? DEFAULT_LEADER_LIMIT_MS;
    const result = await inTransaction(
      this.options.pool,
      (client) =>
        cronScheduleEnqueueSlots(this.options.db.on(client), {
          name: row.name,
          slots: due.slots,
          newest,
          leader: this.options.fence?.leader ?? null,
        }),
      { idleLimitMs: limitMs, lockTimeoutMs: limitMs },
    );
    if (result.inserted.length > 0) {
      this.options.logger.debug('cron enqueued', { schedule: row.name, jobs: result.inserted.map((job) => job.id) });
    }
  }

  private parse(row: CronScheduleRow): CronSchedule {
    const key = `${row.timezone} ${row.expression}`;
    let schedule = this.parsed.get(key);
    if (!schedule) {
      schedule = new CronSchedule(row.expression, row.timezone);
      this.parsed.set(key, schedule);
    }
    return schedule;
  }
}
