/**
 * Cron schedules, managed: add (an upsert by name), update, list, get, remove, pause, resume, trigger now,
 * and a declarative file the agent applies at start. The client API, the CLI and the console call these,
 * so each operation has one implementation. Slots are enqueued by the leader (src/agent/scheduler/cron-enqueuer.ts).
 */
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { CATCH_UP_POLICIES, CronSchedule, MAX_BACKFILL, type CatchUpPolicy } from './cron-schedule.js';
import { durationField } from './duration.js';
import { ConfigError, CronScheduleNotFoundError, ValidationError } from './errors.js';
import { PRIORITIES, priorityFromNumber, priorityToNumber, type Priority } from './job-state.js';
import { checkPayload, DEFAULT_MAX_PAYLOAD_BYTES, name } from './job-spec.js';
import type { SchemaDb } from './db/sql.js';
import {
  cronScheduleDelete,
  cronScheduleGet,
  cronScheduleList,
  cronScheduleSetEnabled,
  cronScheduleTrigger,
  cronScheduleUpsert,
  databaseNow,
  type CronScheduleRow,
  type CronScheduleWrite,
} from './db/queries/cron-schedules.js';
import { leaderGet, type LeaderInfo } from './db/queries/leader.js';


export const cronScheduleSpecSchema = z
  .object({
    name: name('name'),
    /** 5 fields (minute hour day-of-month month day-of-week) or 6 (seconds first) */
    expression: z.string({ error: 'expression must be a string' }),
    /** an IANA zone such as "Europe/London" (default UTC) */
    timezone: z.string({ error: 'timezone must be a string' }).optional(),
    task: name('task'),
    queue: name('queue').optional(),
    payload: z.unknown().optional(),
    priority: z.enum(PRIORITIES, { error: `priority must be one of ${PRIORITIES.join(', ')}` }).optional(),
    maxAttempts: z.number().int('maxAttempts must be a whole number').min(1, 'maxAttempts must be at least 1').max(1000, 'maxAttempts must be at most 1000').optional(),
    timeout: durationField('timeout', { min: 1 }).optional(),
    /** omitted: a new schedule is enabled; an existing one keeps its paused or running state */
    enabled: z.boolean({ error: 'enabled must be true or false' }).optional(),
    /** what to do with slots missed while no leader ran: skip (default), once, or backfill */
    catchUp: z.enum(CATCH_UP_POLICIES as [CatchUpPolicy, ...CatchUpPolicy[]], { error: 'catchUp must be skip, once or backfill' }).optional(),
    /** for backfill: at most this many missed slots, the newest (default 100) */
    backfillLimit: z.number().int('backfillLimit must be a whole number').min(1, 'backfillLimit must be at least 1').max(MAX_BACKFILL, `backfillLimit must be at most ${MAX_BACKFILL}`).optional(),
  })
  .strict();

export type CronScheduleSpec = z.input<typeof cronScheduleSpecSchema>;

const DEFAULT_BACKFILL_LIMIT = 100;

/** Validates a spec; throws a ValidationError naming the field. */
export function toCronScheduleWrite(input: unknown, where = '', maxPayloadBytes = DEFAULT_MAX_PAYLOAD_BYTES): CronScheduleWrite {
  const parsed = cronScheduleSpecSchema.safeParse(input);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const field = issue.path.join('.') || 'schedule';
    const message = issue.code === 'unrecognized_keys'
      ? `unknown field ${issue.keys.map((k) => JSON.stringify(k)).join(', ')}; expected ${Object.keys(cronScheduleSpecSchema.shape).join(', ')}`
      : issue.message;
    throw new ValidationError(field, `${where}invalid ${field}: ${message}`);
  }
  const spec = parsed.data;
  const timezone = spec.timezone ?? 'UTC';
  try {
    new CronSchedule(spec.expression, timezone);
  } catch (error) {
    if (error instanceof ValidationError) throw new ValidationError(error.field, `${where}${error.message}`);
    throw error;
  }
  const payload = spec.payload === undefined ? null : spec.payload;
  // Every slot copies it into a job, so it is held to a job's rules.
  checkPayload(payload, maxPayloadBytes, where);
  const catchUp = spec.catchUp ?? 'skip';
  if (spec.backfillLimit !== undefined && catchUp !== 'backfill') {
    throw new ValidationError('backfillLimit', `${where}backfillLimit applies only with catchUp "backfill"`);
  }
  return {
    name: spec.name,
    expression: spec.expression.trim(),
    timezone,
    task: spec.task,
    queue: spec.queue ?? 'default',
    payload,
    priority: priorityToNumber(spec.priority ?? 'normal'),
    maxAttempts: spec.maxAttempts ?? null,
    timeoutMs: spec.timeout ?? null,
    enabled: spec.enabled,
    catchUp,
    backfillLimit: catchUp === 'backfill' ? (spec.backfillLimit ?? DEFAULT_BACKFILL_LIMIT) : null,
  };
}

/** A schedule with its next runs, each an instant (print it in the schedule's zone and in local time). */
export interface CronScheduleInfo extends Omit<CronScheduleRow, 'priority'> {
  priority: Priority;
  nextRuns: Date[];
}

function withNextRuns(row: CronScheduleRow, now: Date, count: number): CronScheduleInfo {
  const from = new Date(Math.max(now.getTime(), row.startsAfter.getTime(), row.lastSlot?.getTime() ?? 0));
  const nextRuns = row.enabled && count > 0 ? new CronSchedule(row.expression, row.timezone).upcoming(from, count) : [];
  return { ...row, priority: priorityFromNumber(row.priority), nextRuns };
}

/** Creates the schedule, or updates the one with this name. */
export async function addCronSchedule(
  db: SchemaDb,
  spec: CronScheduleSpec,
  maxPayloadBytes = DEFAULT_MAX_PAYLOAD_BYTES,
): Promise<{ schedule: CronScheduleInfo; created: boolean }> {
  const write = toCronScheduleWrite(spec, '', maxPayloadBytes);
  const { schedule, created } = await cronScheduleUpsert(db, write);
  return { schedule: withNextRuns(schedule, await databaseNow(db), 5), created };
}

/** Changes some fields of an existing schedule. */
export async function updateCronSchedule(
  db: SchemaDb,
  scheduleName: string,
  changes: Partial<Omit<CronScheduleSpec, 'name'>>,
  maxPayloadBytes = DEFAULT_MAX_PAYLOAD_BYTES,
): Promise<CronScheduleInfo> {
  const current = await cronScheduleGet(db, scheduleName);
  if (!current) throw new CronScheduleNotFoundError(scheduleName);
  const spec: CronScheduleSpec = {
    name: current.name,
    expression: current.expression,
    timezone: current.timezone,
    task: current.task,
    queue: current.queue,
    payload: current.payload,
    priority: priorityFromNumber(current.priority),
    ...(current.maxAttempts !== null && { maxAttempts: current.maxAttempts }),
    ...(current.timeoutMs !== null && { timeout: current.timeoutMs }),
    catchUp: current.catchUp,
    ...(current.backfillLimit !== null && { backfillLimit: current.backfillLimit }),
    // A change given as undefined (an optional form field left empty) keeps the stored value, as one not given does.
    ...Object.fromEntries(Object.entries(changes ?? {}).filter(([, value]) => value !== undefined)),
  };
  if (changes.catchUp !== undefined && changes.catchUp !== 'backfill') delete spec.backfillLimit;
  return (await addCronSchedule(db, spec, maxPayloadBytes)).schedule;
}

export async function listCronSchedules(db: SchemaDb, options: { nextRuns?: number } = {}): Promise<CronScheduleInfo[]> {
  const [rows, now] = await Promise.all([cronScheduleList(db), databaseNow(db)]);
  return rows.map((row) => withNextRuns(row, now, options.nextRuns ?? 3));
}

export async function getCronSchedule(db: SchemaDb, scheduleName: string, options: { nextRuns?: number } = {}): Promise<CronScheduleInfo> {
  const row = await cronScheduleGet(db, scheduleName);
  if (!row) throw new CronScheduleNotFoundError(scheduleName);
  return withNextRuns(row, await databaseNow(db), options.nextRuns ?? 5);
}

/** Removes a schedule; jobs it already created stay. */
export async function removeCronSchedule(db: SchemaDb, scheduleName: string): Promise<void> {
  if (!(await cronScheduleDelete(db, scheduleName))) throw new CronScheduleNotFoundError(scheduleName);
}

/** No slots are enqueued while paused, and none of the paused time is caught up on resume. */
export async function pauseCronSchedule(db: SchemaDb, scheduleName: string): Promise<void> {
  if (!(await cronScheduleSetEnabled(db, scheduleName, false))) throw new CronScheduleNotFoundError(scheduleName);
}

export async function resumeCronSchedule(db: SchemaDb, scheduleName: string): Promise<void> {
  if (!(await cronScheduleSetEnabled(db, scheduleName, true))) throw new CronScheduleNotFoundError(scheduleName);
}

/** Enqueues the schedule's job now, outside its slots (works on a paused schedule too). */
export async function triggerCronSchedule(db: SchemaDb, scheduleName: string): Promise<{ jobId: number }> {
  const jobId = await cronScheduleTrigger(db, scheduleName);
  if (jobId === undefined) throw new CronScheduleNotFoundError(scheduleName);
  return { jobId };
}

/**
 * Reads a declarative schedule file: JSON, either an array of specs or `{ "schedules": [...] }`.
 * Every spec is validated before anything is written.
 */
export function readCronFile(path: string): CronScheduleSpec[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new ConfigError(`cannot read the cron schedule file ${path}: ${(error as Error).message}`, { cause: error });
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new ConfigError(`the cron schedule file ${path} is not valid JSON: ${(error as Error).message}`, { cause: error });
  }
  const specs = Array.isArray(parsed) ? parsed : (parsed as { schedules?: unknown })?.schedules;
  if (!Array.isArray(specs)) throw new ConfigError(`the cron schedule file ${path} must hold an array of schedules or { "schedules": [...] }`);
  return specs as CronScheduleSpec[];
}

/**
 * Creates or updates each schedule (by name); schedules not named here are left alone. All are validated
 * first, so one bad entry writes none. A schedule's paused state is kept unless its spec sets `enabled`.
 */
export async function applyCronSchedules(
  db: SchemaDb,
  specs: readonly CronScheduleSpec[],
  maxPayloadBytes = DEFAULT_MAX_PAYLOAD_BYTES,
): Promise<{ created: string[]; updated: string[] }> {
  const writes = specs.map((spec, i) => toCronScheduleWrite(spec, `cron schedule ${i} (${(spec as { name?: string })?.name ?? 'unnamed'}): `, maxPayloadBytes));
  const names = new Set<string>();
  for (const write of writes) {
    if (names.has(write.name)) throw new ValidationError('name', `cron schedule "${write.name}" is defined twice`);
    names.add(write.name);
  }
  const created: string[] = [];
  const updated: string[] = [];
  for (const write of writes) {
    const result = await cronScheduleUpsert(db, write);
    (result.created ? created : updated).push(write.name);
  }
  return { created, updated };
}

/** Who leads the agents now (runs cron, rescue and retention); undefined when nobody does. */
export function getLeader(db: SchemaDb): Promise<LeaderInfo | undefined> {
  return leaderGet(db);
}

export type { CronScheduleRow, LeaderInfo };
