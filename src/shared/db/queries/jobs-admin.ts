/**
 * The jobs table for operators: read, list, and the actions on one job (retry, cancel, drop, replay) and
 * on the DLQ. Each action locks the row, checks its state against the allowed list and changes it in one
 * statement, and reports the state it found, so the caller can say why an action did not apply.
 */
import { statement, type SchemaDb, type Statement } from '../sql.js';

export interface JobRow {
  id: number;
  queue: string;
  task: string;
  payload: unknown;
  priority: number;
  state: string;
  attempt: number;
  maxAttempts: number;
  runAt: Date;
  claimedBy: string | null;
  leaseExpiresAt: Date | null;
  leaseEpoch: number;
  timeoutMs: number | null;
  backoff: { strategy: string; baseMs: number; factor: number; maxMs: number; jitter: number };
  idempotencyKey: string | null;
  lastError: string | null;
  attemptLog: AttemptLogEntry[];
  result: unknown;
  progress: unknown;
  replayCount: number;
  workflowId: number | null;
  /** dependencies not yet completed (waiting jobs) */
  pendingDeps: number;
  /** why a waiting job cannot go on, e.g. "blocked: job 42 is dead" */
  blockedReason: string | null;
  createdAt: Date;
  startedAt: Date | null;
  finishedAt: Date | null;
}

export interface AttemptLogEntry {
  attempt?: number;
  agent?: string | null;
  started_at?: string | null;
  finished_at?: string;
  outcome: string;
  error?: string | null;
  stack?: string | null;
  at?: string;
}

function toJobRow(row: any): JobRow {
  return {
    id: Number(row.id),
    queue: row.queue,
    task: row.task,
    payload: row.payload,
    priority: row.priority,
    state: row.state,
    attempt: row.attempt,
    maxAttempts: row.max_attempts,
    runAt: row.run_at,
    claimedBy: row.claimed_by,
    leaseExpiresAt: row.lease_expires_at,
    leaseEpoch: row.lease_epoch,
    timeoutMs: row.timeout_ms,
    backoff: {
      strategy: row.backoff_strategy,
      baseMs: row.backoff_base_ms,
      factor: row.backoff_factor,
      maxMs: row.backoff_max_ms,
      jitter: row.backoff_jitter,
    },
    idempotencyKey: row.idempotency_key,
    lastError: row.last_error,
    attemptLog: row.attempt_log,
    result: row.result,
    progress: row.progress,
    replayCount: row.replay_count,
    workflowId: row.workflow_id === null ? null : Number(row.workflow_id),
    pendingDeps: row.pending_deps,
    blockedReason: row.blocked_reason ?? null,
    createdAt: row.created_at,
    startedAt: row.started_at,
    finishedAt: row.finished_at,
  };
}

const GET = statement('job_get', `SELECT * FROM @.jobs WHERE id = $1`);

export async function jobGet(db: SchemaDb, id: number): Promise<JobRow | undefined> {
  const [row] = await db.rows(GET, [id]);
  return row ? toJobRow(row) : undefined;
}

export interface JobListFilter {
  states?: readonly string[];
  queue?: string;
  task?: string;
  /** matched case-insensitively against the task, the payload and the last error */
  text?: string;
  /** only jobs finished at or after this time */
  finishedSince?: Date;
  limit?: number;
  /** page backwards from this id (exclusive) */
  beforeId?: number;
}

const LIST = statement(
  'job_list',
  `SELECT * FROM @.jobs
    WHERE ($1::text[] IS NULL OR state = ANY($1::text[]))
      AND ($2::text IS NULL OR queue = $2)
      AND ($3::text IS NULL OR task = $3)
      AND ($4::text IS NULL OR task ILIKE '%' || $4 || '%' OR payload::text ILIKE '%' || $4 || '%'
           OR last_error ILIKE '%' || $4 || '%')
      AND ($5::timestamptz IS NULL OR finished_at >= $5)
      AND ($7::bigint IS NULL OR id < $7)
    ORDER BY id DESC
    LIMIT $6`,
);

export async function jobList(db: SchemaDb, filter: JobListFilter = {}): Promise<JobRow[]> {
  const rows = await db.rows(LIST, [
    filter.states ?? null,
    filter.queue ?? null,
    filter.task ?? null,
    filter.text === undefined ? null : filter.text.replace(/[\\%_]/g, '\\$&'), // typed text, not a LIKE pattern
    filter.finishedSince ?? null,
    filter.limit ?? 100,
    filter.beforeId ?? null,
  ]);
  return rows.map(toJobRow);
}

/** What an action found: the job's state before, and whether the action applied. */
export interface ActionOutcome {
  previousState: string;
  changed: boolean;
  claimedBy: string | null;
  queue: string;
}

function action(name: string, change: string, extra = ''): Statement {
  return statement(
    name,
    `WITH RECURSIVE target AS (SELECT id, state, claimed_by, queue FROM @.jobs WHERE id = $1 FOR UPDATE),
     changed AS (${change} RETURNING j.id)${extra}
     SELECT t.state, t.claimed_by, t.queue, (SELECT count(*) FROM changed) > 0 AS changed FROM target t`,
  );
}

/**
 * Cancels, transitively, the waiting dependents of the job the action changed (unless it had completed:
 * its dependents were released already). Each gets the reason in last_error, naming the dependency it
 * waited for. `job_deps` is walked, so for a drop the edges are read before they are deleted (one
 * statement, one snapshot), then deleted.
 */
function cascade(verb: 'cancelled' | 'dropped'): string {
  return `,
     tree(id, cause) AS (
       SELECT d.job_id, d.depends_on FROM @.job_deps d, changed c, target t
        WHERE d.depends_on = c.id AND t.state <> 'completed'
       UNION
       SELECT d.job_id, d.depends_on FROM @.job_deps d JOIN tree ON d.depends_on = tree.id
     ),
     cascaded AS (
       UPDATE @.jobs AS w
          SET state = 'cancelled', finished_at = now(), blocked_reason = NULL,
              last_error = 'cancelled: dependency job ' || x.cause || ' was ' || CASE WHEN x.cause = $1 THEN '${verb}' ELSE 'cancelled' END
         FROM (SELECT DISTINCT ON (id) id, cause FROM tree ORDER BY id, cause) x
        WHERE w.id = x.id AND w.state = 'waiting'
     )`;
}

// A dead job that runs again no longer blocks its dependents (its completion releases them).
const UNBLOCK = `,
     unblocked AS (
       UPDATE @.jobs AS w SET blocked_reason = NULL
         FROM @.job_deps d, changed c
        WHERE d.depends_on = c.id AND w.id = d.job_id AND w.state = 'waiting'
          AND w.blocked_reason = 'blocked: job ' || c.id || ' is dead'
     )`;

const DELETE_EDGES = `,
     edges AS (DELETE FROM @.job_deps WHERE job_id = ANY(ARRAY(SELECT id FROM changed)) OR depends_on = ANY(ARRAY(SELECT id FROM changed)))`;

const RETRY = action(
  'job_retry',
  `UPDATE @.jobs AS j
      SET state = 'pending', run_at = now(), finished_at = NULL,
          attempt = CASE WHEN t.state = 'pending' THEN j.attempt ELSE 0 END,
          attempt_log = CASE WHEN t.state = 'pending' THEN j.attempt_log
                             ELSE j.attempt_log || jsonb_build_object('outcome', 'retried', 'at', now()) END
     FROM target t WHERE j.id = t.id AND t.state = ANY($2::text[])`,
  UNBLOCK,
);

const CANCEL = action(
  'job_cancel',
  `UPDATE @.jobs AS j
      SET state = 'cancelled', finished_at = now(), lease_expires_at = NULL, claimed_by = NULL,
          attempt_log = CASE WHEN t.state = 'running' THEN j.attempt_log || jsonb_build_object(
            'attempt', j.attempt, 'agent', j.claimed_by, 'started_at', j.started_at, 'finished_at', now(),
            'outcome', 'cancelled', 'error', 'cancelled by an operator') ELSE j.attempt_log END
     FROM target t WHERE j.id = t.id AND t.state = ANY($2::text[])`,
  cascade('cancelled'),
);

const DROP = action(
  'job_drop',
  `DELETE FROM @.jobs AS j USING target t WHERE j.id = t.id AND t.state = ANY($2::text[])`,
  cascade('dropped') + DELETE_EDGES,
);

const REPLAY = action(
  'job_replay',
  `UPDATE @.jobs AS j
      SET state = 'pending', run_at = now(), finished_at = NULL, attempt = 0, replay_count = j.replay_count + 1,
          attempt_log = j.attempt_log || jsonb_build_object('outcome', 'replayed', 'at', now())
     FROM target t WHERE j.id = t.id AND t.state = ANY($2::text[])`,
  UNBLOCK,
);

const ACTIONS = { retry: RETRY, cancel: CANCEL, drop: DROP, replay: REPLAY };

/** Applies an operator action to one job if its state allows; undefined when the job does not exist. */
export async function jobApplyAction(
  db: SchemaDb,
  actionName: keyof typeof ACTIONS,
  id: number,
  allowedStates: readonly string[],
): Promise<ActionOutcome | undefined> {
  const [row] = await db.rows(ACTIONS[actionName], [id, allowedStates]);
  return row ? { previousState: row.state, changed: row.changed, claimedBy: row.claimed_by, queue: row.queue } : undefined;
}

export interface DeadFilter {
  ids?: readonly number[];
  queue?: string;
  task?: string;
  finishedSince?: Date;
}

const DEAD_MATCH = `state = 'dead'
      AND ($1::bigint[] IS NULL OR id = ANY($1::bigint[]))
      AND ($2::text IS NULL OR queue = $2)
      AND ($3::text IS NULL OR task = $3)
      AND ($4::timestamptz IS NULL OR finished_at >= $4)`;

const REPLAY_DEAD = statement(
  'job_replay_dead',
  `WITH changed AS (
     UPDATE @.jobs
        SET state = 'pending', run_at = now(), finished_at = NULL, attempt = 0, replay_count = replay_count + 1,
            attempt_log = attempt_log || jsonb_build_object('outcome', 'replayed', 'at', now())
      WHERE ${DEAD_MATCH}
     RETURNING id
   )${UNBLOCK}
   SELECT id FROM changed`,
);

// Purging is dropping: the waiting dependents of the purged jobs are cancelled transitively, as by drop.
const PURGE_DEAD = statement(
  'job_purge_dead',
  `WITH RECURSIVE purged AS (DELETE FROM @.jobs WHERE ${DEAD_MATCH} RETURNING id),
   tree(id, cause, root) AS (
     SELECT d.job_id, d.depends_on, true FROM @.job_deps d, purged p WHERE d.depends_on = p.id
     UNION
     SELECT d.job_id, d.depends_on, false FROM @.job_deps d JOIN tree ON d.depends_on = tree.id
   ),
   cascaded AS (
     UPDATE @.jobs AS w
        SET state = 'cancelled', finished_at = now(), blocked_reason = NULL,
            last_error = 'cancelled: dependency job ' || x.cause || ' was ' || CASE WHEN x.root THEN 'dropped' ELSE 'cancelled' END
       FROM (SELECT DISTINCT ON (id) id, cause, root FROM tree ORDER BY id, root DESC, cause) x
      WHERE w.id = x.id AND w.state = 'waiting'
   ),
   edges AS (DELETE FROM @.job_deps WHERE job_id = ANY(ARRAY(SELECT id FROM purged)) OR depends_on = ANY(ARRAY(SELECT id FROM purged)))
   SELECT id FROM purged`,
);

function deadParams(filter: DeadFilter): unknown[] {
  return [filter.ids ?? null, filter.queue ?? null, filter.task ?? null, filter.finishedSince ?? null];
}

/** Replays every dead job matching the filter; returns their ids. */
export async function jobReplayDead(db: SchemaDb, filter: DeadFilter): Promise<number[]> {
  return (await db.rows(REPLAY_DEAD, deadParams(filter))).map((row) => Number(row.id));
}

/** Deletes every dead job matching the filter; returns their ids. */
export async function jobPurgeDead(db: SchemaDb, filter: DeadFilter): Promise<number[]> {
  return (await db.rows(PURGE_DEAD, deadParams(filter))).map((row) => Number(row.id));
}
