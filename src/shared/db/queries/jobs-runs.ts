/**
 * A job's runs on the jobs table: claim, complete, fail, renew and give back leases, rescue expired ones. The
 * hot path. Every statement after the claim names runs by (id, lease_epoch), the fencing token.
 */
import { statement, type SchemaDb } from '../sql.js';

export interface ClaimedJob {
  id: number;
  queue: string;
  task: string;
  payload: unknown;
  priority: number;
  attempt: number;
  maxAttempts: number;
  leaseEpoch: number;
  timeoutMs: number | null;
  /** run_at in microseconds since the epoch, for ordering a batch */
  runAtMicros: number;
}

// ANY(ARRAY(...)) rather than IN (...): on PostgreSQL 15 the IN form scanned the whole table per claim.
const CLAIM = statement(
  'job_claim_batch',
  `UPDATE @.jobs
      SET state = 'running', attempt = attempt + 1, lease_epoch = lease_epoch + 1, claimed_by = $1,
          lease_expires_at = coalesce($5::timestamptz, now()) + $2 * interval '1 millisecond',
          started_at = coalesce($5::timestamptz, now())
    WHERE id = ANY(ARRAY(
      SELECT id FROM @.jobs
       WHERE state = 'pending' AND run_at <= coalesce($5::timestamptz, now())
         AND ($3::text[] IS NULL OR queue = ANY($3::text[]))
         AND ($6::text[] IS NULL OR task = ANY($6::text[]))
         -- coalesce keeps the planner on the index: with one distinct queue it reads a bare "queue <> ALL(...)"
         -- as matching no rows and picks a seq scan and sort of every pending job (17 ms instead of 2 ms).
         AND coalesce(queue <> ALL(ARRAY(SELECT name FROM @.queues WHERE paused)), true)
       ORDER BY priority DESC, run_at, id
       LIMIT $4
       FOR UPDATE SKIP LOCKED))
   RETURNING id, queue, task, payload, priority, attempt, max_attempts, lease_epoch, timeout_ms,
             (extract(epoch FROM run_at) * 1000000)::bigint AS run_at_us`,
);

export interface ClaimParams {
  agentId: string;
  leaseMs: number;
  /** null: every queue */
  queues: readonly string[] | null;
  /** null: every task */
  tasks: readonly string[] | null;
  limit: number;
  now?: Date;
}

/** Claims up to `limit` ready jobs, highest priority first, then oldest run_at, then lowest id. */
export async function jobClaimBatch(db: SchemaDb, params: ClaimParams): Promise<ClaimedJob[]> {
  const rows = await db.arrays(CLAIM, [params.agentId, params.leaseMs, params.queues, params.limit, params.now ?? null, params.tasks]);
  // In the order of CLAIM's RETURNING list.
  const jobs = rows.map(
    ([id, queue, task, payload, priority, attempt, maxAttempts, leaseEpoch, timeoutMs, runAtMicros]): ClaimedJob => ({
      id: Number(id),
      queue: queue as string,
      task: task as string,
      payload,
      priority: priority as number,
      attempt: attempt as number,
      maxAttempts: maxAttempts as number,
      leaseEpoch: leaseEpoch as number,
      timeoutMs: timeoutMs as number | null,
      runAtMicros: Number(runAtMicros),
    }),
  );
  // RETURNING has no order: put the batch back in claim order.
  return jobs.sort(compareClaimOrder);
}

/** The claim order: higher priority first, then earlier run_at, then lower id. */
export function compareClaimOrder(a: ClaimedJob, b: ClaimedJob): number {
  return b.priority - a.priority || a.runAtMicros - b.runAtMicros || a.id - b.id;
}

/*
 * The statements below match runs by (id, lease_epoch) and test "still running" as
 * `lease_expires_at IS NOT NULL`, which the jobs_lease_iff_running CHECK makes the same thing. Naming
 * `state = 'running'` instead lets the planner use the partial lease index: when statistics say no job is
 * running (as after a bulk enqueue) the cached plan scanned every running row for each run in the batch,
 * 26.5 million row pairs and 5.2 s to complete 5,152 jobs. Without it the only path is the primary key.
 *
 * They also repeat the ids as `j.id = ANY($1)`. On a table of a few thousand pages the planner hashed the batch
 * against a scan of the whole table (every version of every row, for each batch); with the ids as an index
 * condition it reads just those rows: 2 us less database CPU per job and 3-8 % more jobs/s in the bench. On a
 * table of a million rows both forms read the primary key (15.5 and 15.7 ms for 2,000 completions).
 */

/** A finished run: the job id and the lease epoch it was claimed under (the fencing token). */
export interface LeaseRef {
  id: number;
  leaseEpoch: number;
}

/** One run of a job: the same job claimed again (after its lease expired) is another run, under a new epoch. */
export function leaseKey(ref: LeaseRef): string {
  return `${ref.id}/${ref.leaseEpoch}`;
}

// The release rides in the completing statement: dependents listed in a completed row's `dependents`
// lose one unmet dependency each, and those left with none go from waiting to pending and wake their
// queues (release_dependents, a volatile function: see migration 0003 for why). A job nobody depends on has
// `dependents` null; a batch without dependents never calls the function.
const RELEASE_DEPENDENTS_OF_COMPLETED = `released AS (
     SELECT @.release_dependents(array_agg(r.id), array_agg(r.n)) AS n
       FROM (SELECT d.id, count(*)::integer AS n
               FROM completed, unnest(completed.dependents) AS d(id)
              GROUP BY d.id) AS r
     HAVING count(*) > 0
   )`;

const COMPLETE = statement(
  'job_complete_many',
  `WITH completed AS (
     UPDATE @.jobs AS j
        SET state = 'completed', finished_at = now(), lease_expires_at = NULL, last_error = NULL,
            result = ($3::jsonb[])[c.n]
       FROM unnest($1::bigint[], $2::integer[]) WITH ORDINALITY AS c(id, lease_epoch, n)
      WHERE j.id = c.id AND j.lease_epoch = c.lease_epoch AND j.lease_expires_at IS NOT NULL AND j.id = ANY($1::bigint[])
     RETURNING j.id, j.dependents
   ),
   ${RELEASE_DEPENDENTS_OF_COMPLETED}
   SELECT completed.id FROM completed LEFT JOIN released ON true`,
);

// The same, skipping rows another transaction holds locked instead of waiting for them (as the lease renewal
// does): for a batch that met such a lock, so one job row held by a client's long transaction does not hold up
// every other completion of the agent. A skipped run still this agent's comes back as busy. Not the usual
// statement: locking first and joining back cost about 2 us more per job (8.7-10 against 7.2-7.6 ms for 1,000).
const COMPLETE_SKIPPING_LOCKED = statement(
  'job_complete_many_skipping_locked',
  `WITH lockable AS (
     SELECT j.id, c.n FROM @.jobs AS j, unnest($1::bigint[], $2::integer[]) WITH ORDINALITY AS c(id, lease_epoch, n)
      WHERE j.id = c.id AND j.lease_epoch = c.lease_epoch AND j.lease_expires_at IS NOT NULL AND j.id = ANY($1::bigint[])
      FOR NO KEY UPDATE OF j SKIP LOCKED
   ),
   completed AS (
     UPDATE @.jobs AS j
        SET state = 'completed', finished_at = now(), lease_expires_at = NULL, last_error = NULL,
            result = ($3::jsonb[])[l.n]
       FROM lockable AS l
      WHERE j.id = l.id
     RETURNING j.id, j.dependents
   ),
   ${RELEASE_DEPENDENTS_OF_COMPLETED}
   SELECT completed.id, true AS done FROM completed LEFT JOIN released ON true
   UNION ALL
   -- Looked for only when some run could not be locked (or was refused): not on the usual batch.
   SELECT j.id, false FROM @.jobs AS j, unnest($1::bigint[], $2::integer[]) AS c(id, lease_epoch)
    WHERE (SELECT count(*) FROM lockable) < cardinality($1::bigint[])
      AND j.id = c.id AND j.lease_epoch = c.lease_epoch AND j.lease_expires_at IS NOT NULL AND j.id = ANY($1::bigint[])
      AND NOT EXISTS (SELECT 1 FROM lockable AS l WHERE l.id = j.id)`,
);

/**
 * Marks jobs completed, but only where the lease is still the one they were claimed under: a completion
 * from an agent whose lease was taken over is rejected. Returns the ids that were completed. Waits for rows
 * another transaction holds locked, as long as the session's lock_timeout allows.
 */
export async function jobCompleteMany(
  db: SchemaDb,
  runs: readonly LeaseRef[],
  /** JSON text per run (null for none), or null when no run has a result */
  results: readonly (string | null)[] | null,
): Promise<Set<number>> {
  const rows = await db.arrays(COMPLETE, completionParams(runs, results));
  return new Set(rows.map(([id]) => Number(id)));
}

export interface CompletionOutcome {
  /** completed now */
  done: Set<number>;
  /** still running under this lease, but locked by another transaction: try again shortly */
  busy: Set<number>;
}

/** jobCompleteMany for runs that met a row lock: stores what it can lock now and says which are still locked. */
export async function jobCompleteManySkippingLocked(
  db: SchemaDb,
  runs: readonly LeaseRef[],
  results: readonly (string | null)[] | null,
): Promise<CompletionOutcome> {
  const rows = await db.rows(COMPLETE_SKIPPING_LOCKED, completionParams(runs, results));
  const outcome: CompletionOutcome = { done: new Set(), busy: new Set() };
  for (const row of rows) (row.done ? outcome.done : outcome.busy).add(Number(row.id));
  return outcome;
}

/**
 * The batch in id order, which is the order the statement locks the rows in: an enqueue attaching dependents
 * locks its dependencies in id order too, and a batch in any other order could deadlock with it.
 */
function completionParams(runs: readonly LeaseRef[], results: readonly (string | null)[] | null): unknown[] {
  const order = runs.map((_, i) => i);
  if (!isAscending(runs)) order.sort((a, b) => runs[a].id - runs[b].id);
  const ids = new Array<number>(runs.length);
  const epochs = new Array<number>(runs.length);
  const orderedResults = results === null ? null : new Array<string | null>(runs.length);
  for (let k = 0; k < order.length; k++) {
    const i = order[k];
    ids[k] = runs[i].id;
    epochs[k] = runs[i].leaseEpoch;
    if (orderedResults !== null) orderedResults[k] = results![i];
  }
  return [integerArrayLiteral(ids), integerArrayLiteral(epochs), orderedResults];
}

/**
 * `{1,2,3}`: an array parameter as PostgreSQL's text form, made in one join. pg's own conversion builds it
 * element by element, about 450 bytes of garbage per completed job in a profile of the bench.
 */
function integerArrayLiteral(values: readonly number[]): string {
  return `{${values.join(',')}}`;
}

function isAscending(runs: readonly LeaseRef[]): boolean {
  for (let i = 1; i < runs.length; i++) if (runs[i].id < runs[i - 1].id) return false;
  return true;
}

export interface FailedRun extends LeaseRef {
  error: string;
  stack?: string;
  /** no more attempts: straight to the DLQ */
  permanent?: boolean;
  /** run again after this long without using up an attempt */
  snoozeMs?: number;
  /** timed_out, failed, aborted */
  outcome: string;
}

/**
 * A CTE named `blocked` that marks the waiting dependents of jobs in `source` that just went dead
 * ("blocked: job N is dead"); `source` is a CTE returning (id, state, dependents). Calls nothing when no
 * dead job has dependents.
 */
function blockDependentsOf(source: string): string {
  return `blocked AS (
     SELECT @.block_dependents(array_agg(b.id), array_agg(b.dead_id)) AS n
       FROM (SELECT DISTINCT ON (d.id) d.id, x.id AS dead_id
               FROM ${source} AS x, unnest(x.dependents) AS d(id)
              WHERE x.state = 'dead'
              ORDER BY d.id, x.id) AS b
     HAVING count(*) > 0
   )`;
}

// A job that goes dead leaves its waiting dependents waiting, with the reason on them (blocked CTE); a
// replay that completes releases them through the completion statement.
function failStatement(skipLocked: boolean) {
  // As the completion's: a run whose row another transaction holds locked is skipped instead of waited for, and
  // comes back as busy while it is still this agent's.
  const lockable = `lockable AS (
     SELECT j.id FROM @.jobs AS j, f
      WHERE j.id = f.id AND j.lease_epoch = f.lease_epoch AND j.lease_expires_at IS NOT NULL
      FOR NO KEY UPDATE OF j SKIP LOCKED
   ),`;
  const busy = `
   UNION ALL
   SELECT j.id, j.state, false FROM @.jobs AS j, f
    WHERE (SELECT count(*) FROM lockable) < (SELECT count(*) FROM f)
      AND j.id = f.id AND j.lease_epoch = f.lease_epoch AND j.lease_expires_at IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM lockable AS l WHERE l.id = j.id)`;
  return statement(
    skipLocked ? 'job_fail_many_skipping_locked' : 'job_fail_many',
    `WITH f AS (
     SELECT * FROM jsonb_to_recordset($1::jsonb)
       AS f(id bigint, lease_epoch integer, error text, stack text, permanent boolean, snooze_ms bigint, outcome text)
   ),
   ${skipLocked ? lockable : ''}
   failed AS (
   UPDATE @.jobs AS j
      SET state = CASE WHEN f.snooze_ms IS NOT NULL THEN 'pending'
                       WHEN f.permanent OR j.attempt >= j.max_attempts THEN 'dead' ELSE 'pending' END,
          attempt = CASE WHEN f.snooze_ms IS NOT NULL THEN j.attempt - 1 ELSE j.attempt END,
          run_at = CASE WHEN f.snooze_ms IS NOT NULL THEN now() + f.snooze_ms * interval '1 millisecond'
                        ELSE now() + @.retry_delay(j.backoff_strategy, j.backoff_base_ms, j.backoff_factor,
                                                   j.backoff_max_ms, j.backoff_jitter, j.attempt, random()) END,
          finished_at = CASE WHEN f.snooze_ms IS NULL AND (f.permanent OR j.attempt >= j.max_attempts) THEN now() END,
          lease_expires_at = NULL, claimed_by = NULL,
          last_error = CASE WHEN f.snooze_ms IS NULL THEN f.error ELSE j.last_error END,
          attempt_log = CASE WHEN f.snooze_ms IS NOT NULL THEN j.attempt_log ELSE j.attempt_log || jsonb_build_object(
            'attempt', j.attempt, 'agent', j.claimed_by, 'started_at', j.started_at, 'finished_at', now(),
            'outcome', f.outcome, 'error', f.error, 'stack', f.stack) END
     FROM f
    WHERE j.id = f.id AND j.lease_epoch = f.lease_epoch AND j.lease_expires_at IS NOT NULL
          ${skipLocked ? 'AND j.id IN (SELECT id FROM lockable)' : ''}
   RETURNING j.id, j.state, j.dependents
   ),
   ${blockDependentsOf('failed')}
   SELECT failed.id, failed.state, true AS done FROM failed LEFT JOIN blocked ON true${skipLocked ? busy : ''}`,
  );
}

const FAIL = failStatement(false);
const FAIL_SKIPPING_LOCKED = failStatement(true);

function failParams(runs: readonly FailedRun[]): unknown[] {
  return [
    JSON.stringify(
      runs.map((r) => ({
        id: r.id,
        lease_epoch: r.leaseEpoch,
        error: r.error,
        stack: r.stack ?? null,
        permanent: r.permanent ?? false,
        snooze_ms: r.snoozeMs ?? null,
        outcome: r.outcome,
      })),
    ),
  ];
}

/**
 * Records failed attempts: back to pending after the backoff, or dead when attempts are used up. Returns the new
 * state of each job recorded. Waits for rows another transaction holds locked, as long as lock_timeout allows.
 */
export async function jobFailMany(db: SchemaDb, runs: readonly FailedRun[]): Promise<Map<number, string>> {
  const rows = await db.rows(FAIL, failParams(runs));
  return new Map(rows.map((row) => [Number(row.id), row.state as string]));
}

/** jobFailMany for runs that met a row lock: records what it can lock now and says which are still locked. */
export async function jobFailManySkippingLocked(
  db: SchemaDb,
  runs: readonly FailedRun[],
): Promise<{ states: Map<number, string>; busy: Set<number> }> {
  const rows = await db.rows(FAIL_SKIPPING_LOCKED, failParams(runs));
  const outcome = { states: new Map<number, string>(), busy: new Set<number>() };
  for (const row of rows) {
    if (row.done) outcome.states.set(Number(row.id), row.state);
    else outcome.busy.add(Number(row.id));
  }
  return outcome;
}

// Rows another transaction has locked are skipped, not waited for: one job row held by a long transaction (a
// client enqueueing a dependent of it commits late, or froze) must not hold up the renewal of every other lease
// until they all expire. A skipped row that is still ours shows as held but not renewed (read from the
// statement's snapshot, which needs no lock); the next beat renews it.
const EXTEND_LEASES = statement(
  'job_extend_leases',
  `WITH held AS (
     SELECT j.id, j.lease_epoch FROM @.jobs AS j, unnest($1::bigint[], $2::integer[]) AS h(id, lease_epoch)
      WHERE j.id = h.id AND j.lease_epoch = h.lease_epoch AND j.lease_expires_at IS NOT NULL AND j.id = ANY($1::bigint[])
   ),
   -- The conditions again, not just the ids: a row changed since the snapshot is re-checked as it is now.
   lockable AS (
     SELECT j.id, j.lease_epoch FROM @.jobs AS j, unnest($1::bigint[], $2::integer[]) AS h(id, lease_epoch)
      WHERE j.id = h.id AND j.lease_epoch = h.lease_epoch AND j.lease_expires_at IS NOT NULL AND j.id = ANY($1::bigint[])
      FOR NO KEY UPDATE OF j SKIP LOCKED
   ),
   renewed AS (
     UPDATE @.jobs AS j
        SET lease_expires_at = coalesce($4::timestamptz, now()) + $3 * interval '1 millisecond'
      WHERE j.id = ANY(ARRAY(SELECT id FROM lockable))
     RETURNING j.id, j.lease_epoch
   )
   SELECT id, lease_epoch, true AS renewed FROM renewed
   UNION ALL
   SELECT id, lease_epoch, false FROM held WHERE id <> ALL(ARRAY(SELECT id FROM lockable))`,
);

/** Runs by leaseKey, so an older run of a job claimed again is never mistaken for the current one. */
export interface LeaseRenewal {
  /** leases extended now */
  renewed: Set<string>;
  /** still this agent's, but another transaction has the row locked: renew at the next beat */
  busy: Set<string>;
}

/** Extends the leases an agent holds. A run in neither set was cancelled or taken over. */
export async function jobExtendLeases(db: SchemaDb, runs: readonly LeaseRef[], leaseMs: number, now?: Date): Promise<LeaseRenewal> {
  const rows = await db.rows(EXTEND_LEASES, [runs.map((r) => r.id), runs.map((r) => r.leaseEpoch), leaseMs, now ?? null]);
  const renewal: LeaseRenewal = { renewed: new Set(), busy: new Set() };
  for (const row of rows) (row.renewed ? renewal.renewed : renewal.busy).add(leaseKey({ id: Number(row.id), leaseEpoch: row.lease_epoch }));
  return renewal;
}

// The wake-up rides in the statement: sent after it, a notify that failed (a dropped connection) made the release
// look failed though it had committed, and the agent ran jobs that were pending again for another agent to run.
const RELEASE = statement(
  'job_release_many',
  `WITH released AS (
     UPDATE @.jobs AS j
        SET state = 'pending', attempt = j.attempt - 1, lease_expires_at = NULL, claimed_by = NULL, started_at = NULL
       FROM unnest($1::bigint[], $2::integer[]) AS r(id, lease_epoch)
      WHERE j.id = r.id AND j.lease_epoch = r.lease_epoch AND j.lease_expires_at IS NOT NULL AND j.id = ANY($1::bigint[])
     RETURNING j.id, j.queue
   ),
   woken AS (SELECT count(pg_notify('@channel_jobs', q.queue)) AS n FROM (SELECT DISTINCT queue FROM released) q)
   SELECT released.id FROM released, woken`,
);

/** Gives claimed jobs back without using up an attempt (shutdown, or claimed but never started). */
export async function jobReleaseMany(db: SchemaDb, runs: readonly LeaseRef[]): Promise<number> {
  if (runs.length === 0) return 0;
  return db.rowCount(RELEASE, [runs.map((r) => r.id), runs.map((r) => r.leaseEpoch)]);
}

const RESCUE_EXPIRED = statement(
  'job_rescue_expired',
  `WITH rescued AS (
   UPDATE @.jobs AS j
      SET state = CASE WHEN j.attempt >= j.max_attempts THEN 'dead' ELSE 'pending' END,
          run_at = coalesce($2::timestamptz, now()) + @.retry_delay(j.backoff_strategy, j.backoff_base_ms,
                     j.backoff_factor, j.backoff_max_ms, j.backoff_jitter, j.attempt, random()),
          finished_at = CASE WHEN j.attempt >= j.max_attempts THEN coalesce($2::timestamptz, now()) END,
          lease_expires_at = NULL, claimed_by = NULL,
          last_error = 'lease expired',
          attempt_log = j.attempt_log || jsonb_build_object(
            'attempt', j.attempt, 'agent', j.claimed_by, 'started_at', j.started_at,
            'finished_at', coalesce($2::timestamptz, now()), 'outcome', 'lease_expired', 'error', 'lease expired')
    WHERE j.id = ANY(ARRAY(
      SELECT id FROM @.jobs
       WHERE state = 'running' AND lease_expires_at < coalesce($2::timestamptz, now())
       LIMIT $1 FOR UPDATE SKIP LOCKED))
   RETURNING j.id, j.state, j.queue, j.dependents
   ),
   ${blockDependentsOf('rescued')}
   SELECT rescued.id, rescued.state, rescued.queue FROM rescued LEFT JOIN blocked ON true`,
);

/** Returns jobs whose lease expired (their agent died or froze) to pending as a failed attempt, or to the DLQ. */
export async function jobRescueExpired(
  db: SchemaDb,
  params: { limit: number; now?: Date },
): Promise<{ id: number; state: string; queue: string }[]> {
  const rows = await db.rows(RESCUE_EXPIRED, [params.limit, params.now ?? null]);
  return rows.map((row) => ({ id: Number(row.id), state: row.state, queue: row.queue }));
}
