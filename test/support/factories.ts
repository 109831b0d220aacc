/**
 * Rows in a given state, for tests that need a job to be running, dead or finished long ago without
 * driving an agent there. Every field has a default that satisfies the table's CHECK constraints for the
 * chosen state (a running job holds a lease; a final job has finished_at).
 */
import type pg from 'pg';
import type { JobState } from '../../src/shared/job-state.js';

/** A pool or a client (inside a test's own transaction, say). */
export type SqlRunner = Pick<pg.Pool, 'query'> | Pick<pg.PoolClient, 'query'>;

export interface JobFields {
  queue?: string;
  task?: string;
  payload?: unknown;
  /** 0 low .. 3 critical */
  priority?: number;
  state?: JobState;
  attempt?: number;
  maxAttempts?: number;
  /** run_at = the database's now() + runInMs (negative: in the past); default 0 */
  runInMs?: number;
  claimedBy?: string;
  /** running jobs only: lease_expires_at = now() + leaseExpiresInMs; default 30 s */
  leaseExpiresInMs?: number;
  leaseEpoch?: number;
  /** final states only: finished_at = now() - finishedAgoMs; default 0 */
  finishedAgoMs?: number;
  timeoutMs?: number | null;
  backoff?: { strategy?: 'fixed' | 'exponential'; baseMs?: number; factor?: number; maxMs?: number; jitter?: number };
  idempotencyKey?: string | null;
  lastError?: string | null;
  attemptLog?: unknown[];
  /** waiting jobs only: how many dependencies are unmet; default 1 (a waiting job waits for something) */
  pendingDeps?: number;
}

export interface CreatedJob {
  id: number;
  leaseEpoch: number;
  attempt: number;
}

const FINAL: readonly string[] = ['completed', 'dead', 'cancelled'];

const COLUMNS =
  'queue text, task text, payload jsonb, priority smallint, state text, attempt integer, max_attempts integer, ' +
  'run_in_ms bigint, claimed_by text, lease_in_ms bigint, lease_epoch integer, started boolean, finished_ago_ms bigint, ' +
  'timeout_ms integer, backoff_strategy text, backoff_base_ms integer, backoff_factor real, backoff_max_ms integer, ' +
  'backoff_jitter real, idempotency_key text, last_error text, attempt_log jsonb, pending_deps integer';
const COLUMN_NAMES = COLUMNS.split(', ')
  .map((column) => column.split(' ')[0])
  .join(', ');

/** Inserts one job in the given state and returns its id and lease epoch. */
export async function insertJob(db: SqlRunner, schema: string, fields: JobFields = {}): Promise<CreatedJob> {
  const [job] = await insertJobs(db, schema, [fields]);
  return job;
}

/** Inserts several jobs in one statement, in input order. */
export async function insertJobs(db: SqlRunner, schema: string, list: readonly JobFields[]): Promise<CreatedJob[]> {
  const rows = list.map((fields) => {
    const state = fields.state ?? 'pending';
    const running = state === 'running';
    const maxAttempts = fields.maxAttempts ?? 5;
    const attempt = fields.attempt ?? (running ? 1 : state === 'dead' ? maxAttempts : state === 'completed' ? 1 : 0);
    return {
      queue: fields.queue ?? 'default',
      task: fields.task ?? 'factory_task',
      payload: fields.payload === undefined ? null : fields.payload,
      priority: fields.priority ?? 1,
      state,
      attempt,
      max_attempts: maxAttempts,
      run_in_ms: fields.runInMs ?? 0,
      claimed_by: running ? (fields.claimedBy ?? 'factory-agent') : (fields.claimedBy ?? null),
      lease_in_ms: running ? (fields.leaseExpiresInMs ?? 30_000) : null,
      lease_epoch: fields.leaseEpoch ?? (attempt > 0 ? attempt : 0),
      started: running || FINAL.includes(state) ? true : false,
      finished_ago_ms: FINAL.includes(state) ? (fields.finishedAgoMs ?? 0) : null,
      timeout_ms: fields.timeoutMs ?? null,
      backoff_strategy: fields.backoff?.strategy ?? 'exponential',
      backoff_base_ms: fields.backoff?.baseMs ?? 5_000,
      backoff_factor: fields.backoff?.factor ?? 2,
      backoff_max_ms: fields.backoff?.maxMs ?? 3_600_000,
      backoff_jitter: fields.backoff?.jitter ?? 0.2,
      idempotency_key: fields.idempotencyKey ?? null,
      last_error: fields.lastError ?? null,
      attempt_log: fields.attemptLog ?? [],
      pending_deps: fields.pendingDeps ?? (state === 'waiting' ? 1 : 0),
    };
  });
  const { rows: inserted } = await db.query(
    `INSERT INTO "${schema}".jobs (queue, task, payload, priority, state, attempt, max_attempts, run_at, claimed_by,
                                  lease_expires_at, lease_epoch, started_at, finished_at, timeout_ms, backoff_strategy,
                                  backoff_base_ms, backoff_factor, backoff_max_ms, backoff_jitter, idempotency_key,
                                  last_error, attempt_log, pending_deps)
     SELECT queue, task, coalesce(payload, 'null'), priority, state, attempt, max_attempts,
            now() + run_in_ms * interval '1 millisecond', claimed_by,
            now() + lease_in_ms * interval '1 millisecond', lease_epoch,
            CASE WHEN started THEN now() - coalesce(finished_ago_ms, 0) * interval '1 millisecond' END,
            now() - finished_ago_ms * interval '1 millisecond', timeout_ms, backoff_strategy,
            backoff_base_ms, backoff_factor, backoff_max_ms, backoff_jitter, idempotency_key, last_error, attempt_log, pending_deps
       FROM ROWS FROM (jsonb_to_recordset($1::jsonb) AS (${COLUMNS})) WITH ORDINALITY AS r(${COLUMN_NAMES}, ord)
      ORDER BY ord
     RETURNING id, lease_epoch, attempt`,
    [JSON.stringify(rows)],
  );
  return inserted
    .map((row) => ({ id: Number(row.id), leaseEpoch: row.lease_epoch as number, attempt: row.attempt as number }))
    .sort((a, b) => a.id - b.id);
}

/** Many identical jobs in one statement (for plans and volume), without building a row per job in JS. */
export async function insertManyJobs(db: SqlRunner, schema: string, count: number, fields: { state?: JobState; queue?: string; task?: string } = {}): Promise<void> {
  const state = fields.state ?? 'pending';
  const final = FINAL.includes(state);
  const running = state === 'running';
  await db.query(
    `INSERT INTO "${schema}".jobs (queue, task, state, priority, run_at, attempt, claimed_by, lease_expires_at, started_at, finished_at)
     SELECT $2, $3, $4, (i % 4)::smallint, now() - (i % 1000) * interval '1 second',
            CASE WHEN $4 = 'pending' THEN 0 ELSE 1 END,
            CASE WHEN $6 THEN 'factory-agent' END, CASE WHEN $6 THEN now() + interval '30 seconds' END,
            CASE WHEN $4 <> 'pending' THEN now() END, CASE WHEN $5 THEN now() END
       FROM generate_series(1, $1::integer) AS i`,
    [count, fields.queue ?? 'default', fields.task ?? 'factory_task', state, final, running],
  );
}

/** The raw row, with columns as stored (snake_case), for assertions on fields JobRow does not expose. */
export async function rawJob(db: SqlRunner, schema: string, id: number): Promise<Record<string, any> | undefined> {
  const { rows } = await db.query(`SELECT * FROM "${schema}".jobs WHERE id = $1`, [id]);
  return rows[0];
}
