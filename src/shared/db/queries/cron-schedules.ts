/**
 * The cron_schedules table, and the one write it makes to jobs: the fire of a slot, inserted under the
 * unique (cron_schedule, cron_slot) index so that no slot ever becomes two jobs.
 */
import type { CatchUpPolicy } from '../../cron-schedule.js';
import { JOB_DEFAULTS } from '../../job-spec.js';
import { statement, type SchemaDb } from '../sql.js';
import type { LeaderTerm } from './leader.js';

/** The fields a caller sets; validated by src/shared/cron-admin.ts. */
export interface CronScheduleWrite {
  name: string;
  expression: string;
  timezone: string;
  task: string;
  queue: string;
  payload: unknown;
  priority: number;
  maxAttempts: number | null;
  timeoutMs: number | null;
  /** undefined: a new schedule is enabled, an existing one keeps its state (a config file does not undo a pause) */
  enabled?: boolean;
  catchUp: CatchUpPolicy;
  backfillLimit: number | null;
}

/** A schedule as stored: what a caller sets, and what the scheduler keeps. */
export interface CronScheduleRow extends Omit<CronScheduleWrite, 'enabled'> {
  enabled: boolean;
  /** slots at or before this are never enqueued (creation, resume, or a change of expression or zone) */
  startsAfter: Date;
  /** the newest slot dealt with */
  lastSlot: Date | null;
  lastEnqueuedAt: Date | null;
  createdAt: Date;
  updatedAt: Date;
}

function toRow(row: any): CronScheduleRow {
  return {
    name: row.name,
    expression: row.expression,
    timezone: row.timezone,
    task: row.task,
    queue: row.queue,
    payload: row.payload,
    priority: row.priority,
    maxAttempts: row.max_attempts,
    timeoutMs: row.timeout_ms,
    enabled: row.enabled,
    catchUp: row.catch_up,
    backfillLimit: row.backfill_limit,
    startsAfter: row.starts_after,
    lastSlot: row.last_slot,
    lastEnqueuedAt: row.last_enqueued_at,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}


// A changed expression or zone, or a resume, starts counting slots from now: slots of the old timing, or
// of the paused time, are not "missed".
const UPSERT = statement(
  'cron_schedule_upsert',
  `INSERT INTO @.cron_schedules AS s (name, expression, timezone, task, queue, payload, priority, max_attempts, timeout_ms,
                                      enabled, catch_up, backfill_limit, starts_after)
   VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8, $9, coalesce($10::boolean, true), $11, $12, coalesce($13::timestamptz, now()))
   ON CONFLICT (name) DO UPDATE SET
     expression = EXCLUDED.expression, timezone = EXCLUDED.timezone, task = EXCLUDED.task, queue = EXCLUDED.queue,
     payload = EXCLUDED.payload, priority = EXCLUDED.priority, max_attempts = EXCLUDED.max_attempts,
     timeout_ms = EXCLUDED.timeout_ms, enabled = coalesce($10::boolean, s.enabled), catch_up = EXCLUDED.catch_up,
     backfill_limit = EXCLUDED.backfill_limit,
     starts_after = CASE WHEN s.expression <> EXCLUDED.expression OR s.timezone <> EXCLUDED.timezone
                              OR (NOT s.enabled AND coalesce($10::boolean, s.enabled))
                         THEN greatest(s.starts_after, EXCLUDED.starts_after) ELSE s.starts_after END,
     updated_at = coalesce($13::timestamptz, now())
   RETURNING *, (xmax = 0) AS created`,
);

/** Creates or updates a schedule by name; `created` says which. */
export async function cronScheduleUpsert(
  db: SchemaDb,
  schedule: CronScheduleWrite,
  now?: Date,
): Promise<{ schedule: CronScheduleRow; created: boolean }> {
  const [row] = await db.rows(UPSERT, [
    schedule.name,
    schedule.expression,
    schedule.timezone,
    schedule.task,
    schedule.queue,
    JSON.stringify(schedule.payload ?? null),
    schedule.priority,
    schedule.maxAttempts,
    schedule.timeoutMs,
    schedule.enabled ?? null,
    schedule.catchUp,
    schedule.backfillLimit,
    now ?? null,
  ]);
  return { schedule: toRow(row), created: row.created };
}

const GET = statement('cron_schedule_get', `SELECT * FROM @.cron_schedules WHERE name = $1`);

export async function cronScheduleGet(db: SchemaDb, name: string): Promise<CronScheduleRow | undefined> {
  const [row] = await db.rows(GET, [name]);
  return row ? toRow(row) : undefined;
}

const LIST = statement('cron_schedule_list', `SELECT * FROM @.cron_schedules WHERE NOT $1::boolean OR enabled ORDER BY name`);

export async function cronScheduleList(db: SchemaDb, filter: { enabledOnly?: boolean } = {}): Promise<CronScheduleRow[]> {
  return (await db.rows(LIST, [filter.enabledOnly ?? false])).map(toRow);
}

const DELETE = statement('cron_schedule_delete', `DELETE FROM @.cron_schedules WHERE name = $1`);

/** Removes a schedule; its jobs stay. False if there was none. */
export async function cronScheduleDelete(db: SchemaDb, name: string): Promise<boolean> {
  return (await db.rowCount(DELETE, [name])) === 1;
}

const SET_ENABLED = statement(
  'cron_schedule_set_enabled',
  `UPDATE @.cron_schedules
      SET enabled = $2,
          starts_after = CASE WHEN $2 AND NOT enabled THEN greatest(starts_after, coalesce($3::timestamptz, now())) ELSE starts_after END,
          updated_at = coalesce($3::timestamptz, now())
    WHERE name = $1
   RETURNING *`,
);

/** Pauses or resumes; a resumed schedule does not catch up the slots of its pause. Undefined if there is none. */
export async function cronScheduleSetEnabled(db: SchemaDb, name: string, enabled: boolean, now?: Date): Promise<CronScheduleRow | undefined> {
  const [row] = await db.rows(SET_ENABLED, [name, enabled, now ?? null]);
  return row ? toRow(row) : undefined;
}

// The fence: with a leader term, nothing is written unless the leader row still names it (share-locked, so
// an election in flight waits for this statement). The unique index makes a slot inserted twice, by a
// restarted leader or by two agents that both believe they lead, a conflict that inserts nothing.
const ENQUEUE_SLOTS = statement(
  'cron_schedule_enqueue_slots',
  `WITH fence AS (SELECT 1 FROM @.leader WHERE agent_id = $4 AND term = $5 FOR SHARE),
   s AS (SELECT * FROM @.cron_schedules
          WHERE name = $1 AND enabled AND ($4::text IS NULL OR EXISTS (SELECT 1 FROM fence))),
   inserted AS (
     INSERT INTO @.jobs (task, queue, payload, priority, run_at, max_attempts, timeout_ms, cron_schedule, cron_slot)
     SELECT s.task, s.queue, s.payload, s.priority, slot, coalesce(s.max_attempts, ${JOB_DEFAULTS.maxAttempts}), s.timeout_ms, s.name, slot
       FROM s, unnest($2::timestamptz[]) AS slot
     ON CONFLICT (cron_schedule, cron_slot) WHERE cron_slot IS NOT NULL DO NOTHING
     RETURNING id, queue, cron_slot
   ),
   advanced AS (
     UPDATE @.cron_schedules c
        SET last_slot = greatest(c.last_slot, $3::timestamptz),
            last_enqueued_at = CASE WHEN EXISTS (SELECT 1 FROM inserted) THEN now() ELSE c.last_enqueued_at END
       FROM s WHERE c.name = s.name
     RETURNING c.name
   ),
   woken AS (SELECT count(pg_notify('@channel_jobs', q.queue)) AS n FROM (SELECT DISTINCT queue FROM inserted) q)
   SELECT (SELECT count(*) FROM s)::integer AS allowed,
          (SELECT coalesce(json_agg(json_build_object('id', id, 'slot', cron_slot) ORDER BY cron_slot), '[]') FROM inserted) AS inserted,
          (SELECT n FROM woken) AS woken`,
);

export interface EnqueueSlotsResult {
  /** false when the fence refused (the term is over) or the schedule is gone or paused: nothing was written */
  allowed: boolean;
  /** the jobs created; a slot that already had its job is not among them */
  inserted: { id: number; slot: Date }[];
}

/**
 * Inserts one job per slot (run_at and cron_slot = the slot) and records `newest` as the schedule's last
 * slot, in one statement. `leader` is the fence; null skips it (only for tests of the unique index).
 */
export async function cronScheduleEnqueueSlots(
  db: SchemaDb,
  params: { name: string; slots: readonly Date[]; newest: Date; leader: LeaderTerm | null },
): Promise<EnqueueSlotsResult> {
  const [row] = await db.rows(ENQUEUE_SLOTS, [
    params.name,
    params.slots.map((slot) => slot.toISOString()),
    params.newest.toISOString(),
    params.leader?.agentId ?? null,
    params.leader?.term ?? null,
  ]);
  return {
    allowed: row.allowed === 1,
    inserted: (row.inserted as { id: number; slot: string }[]).map((job) => ({ id: Number(job.id), slot: new Date(job.slot) })),
  };
}

const TRIGGER = statement(
  'cron_schedule_trigger',
  `WITH inserted AS (
     INSERT INTO @.jobs (task, queue, payload, priority, max_attempts, timeout_ms, cron_schedule)
     SELECT task, queue, payload, priority, coalesce(max_attempts, ${JOB_DEFAULTS.maxAttempts}), timeout_ms, name
       FROM @.cron_schedules WHERE name = $1
     RETURNING id, queue
   )
   SELECT id, pg_notify('@channel_jobs', queue) FROM inserted`,
);

/** Runs a schedule's job now, outside its slots (cron_slot stays null). Undefined if there is no such schedule. */
export async function cronScheduleTrigger(db: SchemaDb, name: string): Promise<number | undefined> {
  const [row] = await db.rows(TRIGGER, [name]);
  return row ? Number(row.id) : undefined;
}

const NOW = statement('cron_database_now', `SELECT now() AS now`);

/** The database's clock: cron slots are due against it, never the agent's. */
export async function databaseNow(db: SchemaDb): Promise<Date> {
  const [row] = await db.rows(NOW);
  return row.now;
}

const NAME_QUEUE = statement('cron_schedule_names_queue', `SELECT EXISTS (SELECT 1 FROM @.cron_schedules WHERE queue = $1) AS named`);

/** Whether some cron schedule enqueues to the queue. */
export async function cronScheduleNamesQueue(db: SchemaDb, queue: string): Promise<boolean> {
  const [row] = await db.rows(NAME_QUEUE, [queue]);
  return row.named === true;
}
