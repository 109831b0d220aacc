/**
 * The jobs table for operators: read, list, and the actions on one job (retry, cancel, drop, replay) and
 * on the DLQ. Each action locks the row, checks its state against the allowed list and changes it in one
 * statement, and reports the state it found, so the caller can say why an action did not apply. Retry and
 * replay lock the job's dependencies first, with a statement of their own in the same transaction.
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

/** One entry of a job's attempt log: a run that did not succeed, or an operator's retry or replay. */
export interface AttemptLogEntry {
  /** the run's attempt number (absent on retry and replay entries) */
  attempt?: number;
  agent?: string | null;
  startedAt?: Date | null;
  finishedAt?: Date;
  /** failed, timed_out, lease_expired, cancelled, ... for runs; retried or replayed for an operator's action */
  outcome: string;
  error?: string | null;
  stack?: string | null;
  /** when an operator retried or replayed the job */
  at?: Date;
}

/**
 * The log is stored as jsonb with snake_case keys and times as the database session printed them (in its time
 * zone); readers get the same shape as the rest of the row: camelCase keys and Dates.
 */
function toAttemptLogEntry(stored: Record<string, unknown>): AttemptLogEntry {
  const entry: AttemptLogEntry = { outcome: String(stored.outcome) };
  if (stored.attempt !== undefined) entry.attempt = Number(stored.attempt);
  if (stored.agent !== undefined) entry.agent = stored.agent as string | null;
  if (stored.started_at !== undefined) entry.startedAt = toDate(stored.started_at);
  if (stored.finished_at !== undefined && stored.finished_at !== null) entry.finishedAt = toDate(stored.finished_at)!;
  if (stored.error !== undefined) entry.error = stored.error as string | null;
  if (stored.stack !== undefined) entry.stack = stored.stack as string | null;
  if (stored.at !== undefined && stored.at !== null) entry.at = toDate(stored.at)!;
  return entry;
}

function toDate(value: unknown): Date | null {
  return value === null ? null : new Date(value as string);
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
    attemptLog: (row.attempt_log as Record<string, unknown>[]).map(toAttemptLogEntry),
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
  /** only jobs finished in the last this many ms, by the database's clock */
  finishedWithinMs?: number;
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
           OR payload::text ILIKE '%' || $9 || '%'
           OR last_error ILIKE '%' || $4 || '%')
      AND ($5::timestamptz IS NULL OR finished_at >= $5)
      AND ($8::bigint IS NULL OR finished_at >= now() - $8 * interval '1 millisecond')
      AND ($7::bigint IS NULL OR id < $7)
    ORDER BY id DESC
    LIMIT $6`,
);

/** Typed text, not a LIKE pattern: %, _ and the escape character match themselves. */
function likeLiteral(text: string): string {
  return text.replace(/[\\%_]/g, '\\$&');
}

export async function jobList(db: SchemaDb, filter: JobListFilter = {}): Promise<JobRow[]> {
  const rows = await db.rows(LIST, [
    filter.states ?? null,
    filter.queue ?? null,
    filter.task ?? null,
    filter.text === undefined ? null : likeLiteral(filter.text),
    filter.finishedSince ?? null,
    filter.limit ?? 100,
    filter.beforeId ?? null,
    filter.finishedWithinMs ?? null,
    // The payload is matched in its JSON text as typed (a fragment: `"orderId": 1234`) and as the JSON of a string
    // value, where a quote, a backslash or a line break is escaped (`say "hi"` is `say \"hi\"` there).
    filter.text === undefined ? null : likeLiteral(JSON.stringify(filter.text).slice(1, -1)),
  ]);
  return rows.map(toJobRow);
}

/** What an action found: the job's state before, and whether the action applied. */
export interface ActionOutcome {
  previousState: string;
  changed: boolean;
  /** the job's state after the action (null when it did not apply); a retry may leave it waiting */
  newState: string | null;
  claimedBy: string | null;
  /** the run the action found (a cancel names it, so that only that run is aborted) */
  leaseEpoch: number;
  queue: string;
}

/**
 * A CTE run for its effect after `changed`: a SELECT of a volatile function, which takes a fresh snapshot
 * (see migration 0004). The action's final SELECT joins it, since PostgreSQL skips a SELECT CTE nobody reads.
 */
interface SideEffect {
  name: string;
  cte: string;
}

function action(name: string, change: string, sideEffects: readonly SideEffect[] = []): Statement {
  return statement(
    name,
    `WITH target AS (SELECT id, state, claimed_by, lease_epoch, queue FROM @.jobs WHERE id = $1 FOR UPDATE),
     changed AS (${change} RETURNING j.id, j.state)${sideEffects.map((effect) => `,\n     ${effect.cte}`).join('')}
     SELECT t.state, t.claimed_by, t.lease_epoch, t.queue, (SELECT count(*) FROM changed) > 0 AS changed, (SELECT state FROM changed) AS new_state
       FROM target t${sideEffects.map((effect) => ` LEFT JOIN ${effect.name} ON true`).join('')}`,
  );
}

/**
 * Cancels, transitively, the waiting dependents of what `ids` selects (cancel_dependents, migration 0004:
 * level by level, each level in a fresh snapshot, so dependents attached while the action waited for a
 * lock are cancelled too). Each gets the reason in last_error, naming the dependency it waited for.
 */
function cascade(verb: 'cancelled' | 'dropped', ids: string): SideEffect {
  return { name: 'cascaded', cte: `cascaded AS (SELECT @.cancel_dependents(ARRAY(${ids}), '${verb}') AS n)` };
}

/*
 * A dependent that an earlier cascade cancelled, and that loses its edge to a job deleted now (dropped, purged), gets
 * the deleted job in its reason instead: a retry of the cascade's root brings back only jobs whose reason says "was
 * cancelled" (jobLockRestorableDependents), and this one would otherwise come back without the dependency it lost.
 * Read in the statement's snapshot, where the edges are still there whatever order the CTEs run in.
 */
function markDependentsOfDeleted(ids: string): SideEffect {
  return {
    name: 'marked',
    cte: `marking AS (
       UPDATE @.jobs AS w SET last_error = 'cancelled: dependency job ' || d.depends_on || ' was dropped'
         FROM @.job_deps AS d
        WHERE d.depends_on = ANY(ARRAY(${ids})) AND w.id = d.job_id AND w.state = 'cancelled'
          AND w.last_error LIKE ${CASCADE_REASON_PATTERN}
       RETURNING w.id
     ),
     marked AS (SELECT count(*) AS n FROM marking)`,
  };
}

// After the cascade (which reads the edges: `FROM cascaded` orders the two), in a fresh snapshot too.
function deleteEdges(ids: string): SideEffect {
  return { name: 'edges', cte: `edges AS (SELECT @.delete_edges(ARRAY(${ids})) AS n FROM cascaded)` };
}

// A dead or cancelled job that runs again no longer blocks its dependents (its completion releases them).
const UNBLOCK: SideEffect = { name: 'unblocked', cte: `unblocked AS (SELECT @.unblock_dependents(ARRAY(SELECT id FROM changed)) AS n)` };

/*
 * Retry and replay re-check the job's own dependencies: it waits for those not completed, blocked by a dead
 * or cancelled one, and is pending only when none is left. A dependency completing meanwhile must not be
 * missed: its completion locks its row and then (release_dependents) ours, and releases only a job that is
 * waiting. So jobLockDependencies first locks every dependency FOR SHARE, in id order, the same order as a
 * completion (dependency, then dependent) and never the reverse (a deadlock); a completion in flight has
 * committed by then, and one that starts later waits for our commit and then finds us waiting. This
 * statement runs after the lock in the same transaction, so its snapshot holds the final states.
 */
const recheck = (jobId: string) => `LATERAL (
       SELECT count(*) FILTER (WHERE p.state <> 'completed')::integer AS unmet,
              (array_agg('blocked: job ' || p.id || ' is ' || p.state ORDER BY p.id)
                 FILTER (WHERE p.state IN ('dead', 'cancelled')))[1] AS reason
         FROM @.job_deps d JOIN @.jobs p ON p.id = d.depends_on
        WHERE d.job_id = ${jobId}) AS u`;
const RECHECK = recheck('t.id');
// The lease columns too, though the allowed states have none: the UPDATE starts from its snapshot's version of the
// row, and when the job went dead or cancelled from running meanwhile (its lock taken by `target` after that),
// the CHECKs are evaluated on that old version's lease before the row is read again.
const RUN_AGAIN = `state = CASE WHEN u.unmet > 0 THEN 'waiting' ELSE 'pending' END, pending_deps = u.unmet,
          blocked_reason = u.reason, run_at = now(), finished_at = NULL, lease_expires_at = NULL, claimed_by = NULL`;

const LOCK_DEPENDENCIES = statement(
  'job_lock_dependencies',
  `SELECT p.id FROM @.jobs p
    WHERE p.id = ANY(ARRAY(SELECT depends_on FROM @.job_deps WHERE job_id = $1))
    ORDER BY p.id FOR SHARE`,
);

/** Locks the dependencies of a job before a retry or replay of it, in the same transaction (see above). */
export async function jobLockDependencies(db: SchemaDb, id: number): Promise<void> {
  await db.rows(LOCK_DEPENDENCIES, [id]);
}

const RETRY = action(
  'job_retry',
  `UPDATE @.jobs AS j
      SET ${RUN_AGAIN},
          attempt = CASE WHEN t.state = 'pending' THEN j.attempt ELSE 0 END,
          attempt_log = CASE WHEN t.state = 'pending' THEN j.attempt_log
                             ELSE j.attempt_log || jsonb_build_object('outcome', 'retried', 'at', now()) END
     FROM target t, ${RECHECK} WHERE j.id = t.id AND t.state = ANY($2::text[])`,
  [UNBLOCK],
);

/** What cancel_dependents writes to last_error (migration 0004), as a LIKE pattern; and the one a retry undoes. */
const CASCADE_REASON_PATTERN = `'cancelled: dependency job % was %'`;
const RESTORABLE_REASON_PATTERN = `'cancelled: dependency job % was cancelled'`;

// A cascade's reason left by an earlier cascade (the job was retried by itself since) is replaced: this job is now
// cancelled by an operator, and a retry of that dependency must not bring it back (jobRestoreDependents). For the
// same reason a job a cancel's cascade cancelled may be cancelled again: only its reason changes, and it stays
// cancelled. (One a drop's cascade cancelled can come back only by its own retry: cancelling it again is refused.)
const CANCEL = action(
  'job_cancel',
  `UPDATE @.jobs AS j
      SET state = 'cancelled', finished_at = coalesce(j.finished_at, now()), lease_expires_at = NULL, claimed_by = NULL, blocked_reason = NULL,
          last_error = CASE WHEN j.last_error LIKE ${CASCADE_REASON_PATTERN} THEN 'cancelled by an operator' ELSE j.last_error END,
          attempt_log = CASE WHEN t.state = 'running' THEN j.attempt_log || jsonb_build_object(
            'attempt', j.attempt, 'agent', j.claimed_by, 'started_at', j.started_at, 'finished_at', now(),
            'outcome', 'cancelled', 'error', 'cancelled by an operator') ELSE j.attempt_log END
     FROM target t
    WHERE j.id = t.id AND (t.state = ANY($2::text[]) OR (t.state = 'cancelled' AND j.last_error LIKE ${RESTORABLE_REASON_PATTERN}))`,
  [cascade('cancelled', 'SELECT id FROM changed')],
);

// The dependents of a completed job were released already: dropping it cancels none of them.
const DROP = action(
  'job_drop',
  `DELETE FROM @.jobs AS j USING target t WHERE j.id = t.id AND t.state = ANY($2::text[])`,
  [
    cascade('dropped', `SELECT c.id FROM changed c, target t WHERE t.state <> 'completed'`),
    markDependentsOfDeleted(`SELECT c.id FROM changed c, target t WHERE t.state <> 'completed'`),
    deleteEdges('SELECT id FROM changed'),
  ],
);

const REPLAY = action(
  'job_replay',
  `UPDATE @.jobs AS j
      SET ${RUN_AGAIN}, attempt = 0, replay_count = j.replay_count + 1,
          attempt_log = j.attempt_log || jsonb_build_object('outcome', 'replayed', 'at', now())
     FROM target t, ${RECHECK} WHERE j.id = t.id AND t.state = ANY($2::text[])`,
  [UNBLOCK],
);

const ACTIONS = { retry: RETRY, cancel: CANCEL, drop: DROP, replay: REPLAY };

/*
 * Bringing back the dependents a cancel cascaded to, when the job whose cancel it was runs again (retry, replay).
 * cancel_dependents (migration 0004) leaves its mark in last_error only: "cancelled: dependency job N was
 * cancelled", N being the dependency whose cancel reached the job (a drop says "was dropped" at its first level,
 * and a job dropped cannot run again). An operator's cancel never writes that text (CANCEL replaces an old one),
 * so the reason tells the two apart. A dependent comes back when
 *   - its reason names a dependency of its own (an edge in job_deps) that is neither cancelled nor dead now: the
 *     job just run again, or one run again earlier while another dependency kept this one cancelled; and
 *   - none of its dependencies is cancelled now: had it been waiting, that cancel would have cascaded to it (and
 *     an enqueue refuses a cancelled dependency).
 * It comes back as an enqueue would have left it: waiting for its dependencies not completed (blocked by a dead
 * one), or pending when none is left; its reason moves from last_error to an attempt log entry ("restored").
 * Level by level, like the cascade: the jobs brought back are the next level's roots.
 *
 * The race is the retry's (see RECHECK): a dependency completing meanwhile releases only a waiting job, and ours
 * is still cancelled until we write it. So jobLockRestorableDependents first finds the candidates and locks all
 * their dependencies FOR SHARE in id order (dependency before dependent, as a completion); jobRestoreDependents
 * then runs as a new statement of the same transaction, whose snapshot holds their final states, and re-checks
 * each candidate there. A candidate gains no dependency meanwhile (edges are written by the dependent's enqueue).
 */
const LOCK_RESTORABLE_DEPENDENTS = statement(
  'job_lock_restorable_dependents',
  `WITH candidate AS (
     SELECT DISTINCT w.id FROM @.job_deps d JOIN @.jobs w ON w.id = d.job_id
      WHERE d.depends_on = ANY($1::bigint[]) AND w.state = 'cancelled' AND w.last_error LIKE ${RESTORABLE_REASON_PATTERN}
   ),
   locked AS (
     SELECT p.id FROM @.jobs p
      WHERE p.id = ANY(ARRAY(SELECT o.depends_on FROM @.job_deps o WHERE o.job_id IN (SELECT id FROM candidate)))
      ORDER BY p.id FOR SHARE
   )
   SELECT coalesce((SELECT array_agg(id ORDER BY id) FROM candidate), '{}') AS ids, (SELECT count(*) FROM locked) AS locked`,
);

/**
 * The cancelled dependents of `ids` that a cancel cascade may have cancelled, with every dependency of theirs
 * locked FOR SHARE; pass them to jobRestoreDependents in the same transaction.
 */
export async function jobLockRestorableDependents(db: SchemaDb, ids: readonly number[]): Promise<number[]> {
  const [row] = await db.rows(LOCK_RESTORABLE_DEPENDENTS, [ids]);
  return (row.ids as string[]).map(Number);
}

const RESTORE_DEPENDENTS = statement(
  'job_restore_dependents',
  `WITH restorable AS (
     SELECT w.id FROM @.jobs w
      WHERE w.id = ANY($1::bigint[]) AND w.state = 'cancelled'
        AND EXISTS (SELECT 1 FROM @.job_deps c JOIN @.jobs n ON n.id = c.depends_on
                     WHERE c.job_id = w.id AND w.last_error = 'cancelled: dependency job ' || c.depends_on || ' was cancelled'
                       AND n.state NOT IN ('cancelled', 'dead'))
        AND NOT EXISTS (SELECT 1 FROM @.job_deps o JOIN @.jobs p ON p.id = o.depends_on WHERE o.job_id = w.id AND p.state = 'cancelled')
   ),
   restored AS (
     UPDATE @.jobs AS j
        SET state = CASE WHEN u.unmet > 0 THEN 'waiting' ELSE 'pending' END, pending_deps = u.unmet, blocked_reason = u.reason,
            run_at = CASE WHEN u.unmet > 0 THEN j.run_at ELSE greatest(j.run_at, now()) END, finished_at = NULL, last_error = NULL,
            attempt_log = j.attempt_log || jsonb_build_object('outcome', 'restored', 'at', now(), 'error', j.last_error)
       FROM restorable r, ${recheck('r.id')} WHERE j.id = r.id AND j.state = 'cancelled'
     RETURNING j.id, j.state, j.pending_deps, j.blocked_reason, j.queue
   ),
   unblocked AS (SELECT @.unblock_dependents(ARRAY(SELECT id FROM restored)) AS n)
   SELECT restored.* FROM restored LEFT JOIN unblocked ON true ORDER BY restored.id`,
);

/** A dependent brought back, and the queue to wake when it is pending. */
export interface RestoredRow extends RunAgainRow {
  queue: string;
}

/**
 * Brings back those of `candidates` (from jobLockRestorableDependents, same transaction) that the cascade of a
 * job now run again had cancelled (see above); they no longer block their own waiting dependents.
 */
export async function jobRestoreDependents(db: SchemaDb, candidates: readonly number[]): Promise<RestoredRow[]> {
  return (await db.rows(RESTORE_DEPENDENTS, [candidates])).map((row) => ({ ...toRunAgainRow(row), queue: row.queue }));
}

/**
 * Applies an operator action to one job if its state allows; undefined when the job does not exist. Run
 * jobLockDependencies first, in the same transaction, for retry and replay.
 */
export async function jobApplyAction(
  db: SchemaDb,
  actionName: keyof typeof ACTIONS,
  id: number,
  allowedStates: readonly string[],
): Promise<ActionOutcome | undefined> {
  const [row] = await db.rows(ACTIONS[actionName], [id, allowedStates]);
  return row
    ? { previousState: row.state, changed: row.changed, newState: row.new_state, claimedBy: row.claimed_by, leaseEpoch: row.lease_epoch, queue: row.queue }
    : undefined;
}

export interface DeadFilter {
  ids?: readonly number[];
  queue?: string;
  task?: string;
  finishedSince?: Date;
  /** died in the last this many ms, by the database's clock (the operator's may be off) */
  finishedWithinMs?: number;
  /** died no later than this: a bulk action pinned to what the operator was shown (jobs dying meanwhile are left) */
  finishedBefore?: Date;
}

const DEAD_MATCH = `state = 'dead'
      AND ($1::bigint[] IS NULL OR id = ANY($1::bigint[]))
      AND ($2::text IS NULL OR queue = $2)
      AND ($3::text IS NULL OR task = $3)
      AND ($4::timestamptz IS NULL OR finished_at >= $4)
      AND ($5::bigint IS NULL OR finished_at >= now() - $5 * interval '1 millisecond')
      AND ($6::timestamptz IS NULL OR finished_at <= $6)`;

const LOCK_DEPENDENCIES_OF_DEAD = statement(
  'job_lock_dependencies_of_dead',
  `SELECT p.id FROM @.jobs p
    WHERE p.id = ANY(ARRAY(SELECT d.depends_on FROM @.job_deps d JOIN @.jobs ON jobs.id = d.job_id WHERE ${DEAD_MATCH}))
    ORDER BY p.id FOR SHARE`,
);

/** Locks the dependencies of the dead jobs matching the filter, before replayDead (as jobLockDependencies). */
export async function jobLockDependenciesOfDead(db: SchemaDb, filter: DeadFilter): Promise<void> {
  await db.rows(LOCK_DEPENDENCIES_OF_DEAD, deadParams(filter));
}

const REPLAY_DEAD = statement(
  'job_replay_dead',
  `WITH target AS (SELECT id FROM @.jobs WHERE ${DEAD_MATCH} ORDER BY id FOR UPDATE),
   changed AS (
     UPDATE @.jobs AS j
        SET ${RUN_AGAIN}, attempt = 0, replay_count = j.replay_count + 1,
            attempt_log = j.attempt_log || jsonb_build_object('outcome', 'replayed', 'at', now())
       FROM target t, ${RECHECK} WHERE j.id = t.id
     RETURNING j.id, j.state, j.pending_deps, j.blocked_reason
   ),
   ${UNBLOCK.cte}
   SELECT changed.* FROM changed LEFT JOIN unblocked ON true ORDER BY changed.id`,
);

// Purging is dropping: the waiting dependents of the purged jobs are cancelled transitively, as by drop. Both bulk
// actions lock their rows in id order: in scan order, a replay and a purge running together deadlocked (10 of 15 tries).
const PURGE_DEAD = statement(
  'job_purge_dead',
  `WITH target AS (SELECT id FROM @.jobs WHERE ${DEAD_MATCH} ORDER BY id FOR UPDATE),
   changed AS (DELETE FROM @.jobs AS j USING target t WHERE j.id = t.id RETURNING j.id),
   ${cascade('dropped', 'SELECT id FROM changed').cte},
   ${markDependentsOfDeleted('SELECT id FROM changed').cte},
   ${deleteEdges('SELECT id FROM changed').cte}
   SELECT changed.id FROM changed LEFT JOIN marked ON true LEFT JOIN edges ON true`,
);

function deadParams(filter: DeadFilter): unknown[] {
  return [filter.ids ?? null, filter.queue ?? null, filter.task ?? null, filter.finishedSince ?? null, filter.finishedWithinMs ?? null, filter.finishedBefore ?? null];
}

const COUNT_DEAD = statement('job_count_dead', `SELECT count(*)::integer AS n FROM (SELECT 1 FROM @.jobs WHERE ${DEAD_MATCH} LIMIT $7) AS m`);

/** How many dead jobs match the filter, counting no further than `cap` (nothing but the count is read). */
export async function jobCountDead(db: SchemaDb, filter: DeadFilter, cap: number): Promise<number> {
  const [row] = await db.rows(COUNT_DEAD, [...deadParams(filter), cap]);
  return row.n;
}

/** Where a job that was run again (or brought back) went: pending, or waiting for the dependencies it counts. */
export interface RunAgainRow {
  id: number;
  state: 'pending' | 'waiting';
  /** dependencies not completed; 0 when pending */
  pendingDeps: number;
  /** e.g. "blocked: job 42 is dead" while a dependency is dead or cancelled */
  blockedReason: string | null;
}

function toRunAgainRow(row: any): RunAgainRow {
  return { id: Number(row.id), state: row.state, pendingDeps: row.pending_deps, blockedReason: row.blocked_reason ?? null };
}

/** Replays every dead job matching the filter; returns where each went, by id. Run jobLockDependenciesOfDead first. */
export async function jobReplayDead(db: SchemaDb, filter: DeadFilter): Promise<RunAgainRow[]> {
  return (await db.rows(REPLAY_DEAD, deadParams(filter))).map(toRunAgainRow);
}

/** Deletes every dead job matching the filter; returns their ids. */
export async function jobPurgeDead(db: SchemaDb, filter: DeadFilter): Promise<number[]> {
  return (await db.rows(PURGE_DEAD, deadParams(filter))).map((row) => Number(row.id));
}
