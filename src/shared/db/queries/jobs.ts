/**
 * The jobs table on the hot path: insert, claim, complete, fail, lease upkeep, rescue and retention.
 * Operator actions on single jobs live in jobs-admin.ts.
 */
import { JOB_DEFAULTS, type JobInsertRow } from '../../job-spec.js';
import { statement, type SchemaDb, type Statement } from '../sql.js';
import { notifyJobsReady } from './notifications.js';

export interface InsertedJob {
  id: number;
  idempotencyKey: string | null;
}

const INSERT_COLUMNS = `task, queue, payload, priority, run_at, max_attempts, timeout_ms, backoff_strategy,
  backoff_base_ms, backoff_factor, backoff_max_ms, backoff_jitter, idempotency_key`;
// ON CONFLICT makes every row a speculative insertion, so jobs without an idempotency key go without it.
const ON_KEY_CONFLICT = 'ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING';

/** An insert into `columns` of the rows `source` produces, with a NOTIFY per queue that got a job ready now. */
function insertStatement(name: string, source: string, onConflict: string, columns = INSERT_COLUMNS) {
  return statement(
    name,
    `WITH inserted AS (
       INSERT INTO @.jobs (${columns})
       ${source}
       ${onConflict}
       RETURNING id, idempotency_key, queue, run_at
     ),
     woken AS (
       SELECT count(pg_notify('@channel_jobs', queue)) AS n
         FROM (SELECT DISTINCT queue FROM inserted WHERE run_at <= now()) q
     )
     SELECT inserted.id, inserted.idempotency_key FROM inserted, woken`,
  );
}

// How a batch row's optional fields are read from its JSON element `s` (omitted ones take JOB_DEFAULTS),
// as [column, the JobInsertRow keys that need it, expression]. task and payload are always read.
const OPTIONAL_COLUMNS: readonly (readonly [string, readonly string[], string])[] = [
  ['queue', ['queue'], `coalesce(s->>'queue', '${JOB_DEFAULTS.queue}')`],
  ['priority', ['priority'], `coalesce((s->>'priority')::smallint, ${JOB_DEFAULTS.priority})`],
  ['run_at', ['run_at', 'delay_ms'], `coalesce((s->>'run_at')::timestamptz, now() + coalesce((s->>'delay_ms')::bigint, 0) * interval '1 millisecond')`],
  ['max_attempts', ['max_attempts'], `coalesce((s->>'max_attempts')::integer, ${JOB_DEFAULTS.maxAttempts})`],
  ['timeout_ms', ['timeout_ms'], `(s->>'timeout_ms')::integer`],
  ['backoff_strategy', ['backoff_strategy'], `coalesce(s->>'backoff_strategy', '${JOB_DEFAULTS.backoffStrategy}')`],
  ['backoff_base_ms', ['backoff_base_ms'], `coalesce((s->>'backoff_base_ms')::integer, ${JOB_DEFAULTS.backoffBaseMs})`],
  ['backoff_factor', ['backoff_factor'], `coalesce((s->>'backoff_factor')::real, ${JOB_DEFAULTS.backoffFactor})`],
  ['backoff_max_ms', ['backoff_max_ms'], `coalesce((s->>'backoff_max_ms')::integer, ${JOB_DEFAULTS.backoffMaxMs})`],
  ['backoff_jitter', ['backoff_jitter'], `coalesce((s->>'backoff_jitter')::real, ${JOB_DEFAULTS.backoffJitter})`],
  ['idempotency_key', ['idempotency_key'], `s->>'idempotency_key'`],
];

// jsonb_array_elements with ->> measured faster than jsonb_to_recordset (about 170,000 against 130,000
// rows/s for 20,000 rows); ordinality keeps ids in input order.
function fromJsonArray(columns: readonly (readonly [string, readonly string[], string])[]): string {
  return `SELECT s->>'task', coalesce(s->'payload', 'null')${columns.map(([, , expression]) => `, ${expression}`).join('')}
    FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS spec(s, ord)
   ORDER BY ord`;
}

const SPEC_COLUMNS = `s->>'task', coalesce(s->'payload', 'null'), ${OPTIONAL_COLUMNS.map(([, , expression]) => expression).join(', ')}`;
const ALL_COLUMNS = `task, payload, ${OPTIONAL_COLUMNS.map(([column]) => column).join(', ')}`;

/**
 * The batch insert for the fields these rows set: a column no row sets is left out and takes the table's
 * default (the same values as JOB_DEFAULTS; test/migrations.test.ts checks). Reading thirteen fields of every
 * element cost about 3 µs per row: 20,000 rows of task and payload took 155-165 ms with every column, 89-96
 * with two. One prepared statement per combination of fields, made when first needed.
 */
const batchInserts = new Map<number, Statement>();
function batchInsertFor(rows: readonly JobInsertRow[], keyed: boolean): Statement {
  const present = new Set<string>();
  for (const row of rows) for (const key in row) present.add(key);
  let mask = keyed ? 1 : 0;
  const columns: (typeof OPTIONAL_COLUMNS)[number][] = [];
  OPTIONAL_COLUMNS.forEach((entry, i) => {
    if (!entry[1].some((key) => present.has(key))) return;
    columns.push(entry);
    mask |= 2 << i;
  });
  let found = batchInserts.get(mask);
  if (!found) {
    const names = ['task', 'payload', ...columns.map(([column]) => column)].join(', ');
    found = insertStatement(`job_insert_many_${mask}`, fromJsonArray(columns), keyed ? ON_KEY_CONFLICT : '', names);
    batchInserts.set(mask, found);
  }
  return found;
}

// One job: the same columns and defaults, from bound parameters (cheaper than a JSON document).
const FROM_PARAMETERS = `VALUES ($1, coalesce($2, '${JOB_DEFAULTS.queue}'), $3::jsonb, coalesce($4::smallint, ${JOB_DEFAULTS.priority}),
         coalesce($5::timestamptz, now() + coalesce($6::bigint, 0) * interval '1 millisecond'),
         coalesce($7::integer, ${JOB_DEFAULTS.maxAttempts}), $8::integer,
         coalesce($9, '${JOB_DEFAULTS.backoffStrategy}'), coalesce($10::integer, ${JOB_DEFAULTS.backoffBaseMs}),
         coalesce($11::real, ${JOB_DEFAULTS.backoffFactor}), coalesce($12::integer, ${JOB_DEFAULTS.backoffMaxMs}),
         coalesce($13::real, ${JOB_DEFAULTS.backoffJitter}), $14)`;

const INSERT_ONE = insertStatement('job_insert_one', FROM_PARAMETERS, '');
const INSERT_ONE_KEYED = insertStatement('job_insert_one_keyed', FROM_PARAMETERS, ON_KEY_CONFLICT);

// Jobs with dependencies (and workflow nodes): the same source plus state, pending_deps and workflow_id.
// Only rows that start pending wake agents; waiting ones are woken by the release.
const INSERT_WITH_DEPENDENCIES = statement(
  'job_insert_with_dependencies',
  `WITH inserted AS (
     INSERT INTO @.jobs (${ALL_COLUMNS}, state, pending_deps, workflow_id)
     SELECT ${SPEC_COLUMNS}, coalesce(s->>'state', 'pending'), coalesce((s->>'pending_deps')::integer, 0),
            (s->>'workflow_id')::bigint
       FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS spec(s, ord)
      ORDER BY ord
     RETURNING id, queue, run_at, state
   ),
   woken AS (
     SELECT count(pg_notify('@channel_jobs', queue)) AS n
       FROM (SELECT DISTINCT queue FROM inserted WHERE state = 'pending' AND run_at <= now()) q
   )
   SELECT inserted.id FROM inserted, woken`,
);

export interface DependentInsertRow extends JobInsertRow {
  state: 'waiting' | 'pending';
  /** the number of dependencies the job starts waiting for */
  pending_deps: number;
  workflow_id?: number;
}

/** Inserts jobs that may wait for others (no idempotency keys), in one statement; ids in input order. */
export async function jobInsertWithDependencies(db: SchemaDb, rows: readonly DependentInsertRow[]): Promise<number[]> {
  const result = await db.rows(INSERT_WITH_DEPENDENCIES, [JSON.stringify(rows)]);
  return result.map((row) => Number(row.id)).sort((a, b) => a - b);
}

// Adds the new dependents to each dependency's `dependents` and records the edges. The UPDATE locks every
// dependency row and returns its newest state: a completion in flight finishes first (and is seen as
// completed), and a completion that starts later waits for this transaction and then reads the new
// `dependents` from the row it updates. So a release can be neither early nor lost.
const ATTACH_DEPENDENTS = statement(
  'job_attach_dependents',
  `WITH e AS (SELECT * FROM unnest($1::bigint[], $2::bigint[]) AS e(job_id, depends_on)),
   parents AS (
     UPDATE @.jobs AS p SET dependents = coalesce(p.dependents, '{}') || g.ids
       FROM (SELECT depends_on, array_agg(job_id ORDER BY job_id) AS ids FROM e GROUP BY depends_on) g
      WHERE p.id = g.depends_on
     RETURNING p.id, p.state
   ),
   edges AS (
     INSERT INTO @.job_deps (job_id, depends_on)
     SELECT e.job_id, e.depends_on FROM e WHERE e.depends_on IN (SELECT id FROM parents)
     ON CONFLICT DO NOTHING
   )
   SELECT id, state FROM parents`,
);

/** Records edges; returns the state of every dependency that exists (an id missing from the map does not). */
export async function jobAttachDependents(db: SchemaDb, edges: readonly { jobId: number; dependsOn: number }[]): Promise<Map<number, string>> {
  const rows = await db.rows(ATTACH_DEPENDENTS, [edges.map((e) => e.jobId), edges.map((e) => e.dependsOn)]);
  return new Map(rows.map((row) => [Number(row.id), row.state as string]));
}

export interface WaitingSettlement {
  id: number;
  /** dependencies not yet completed; 0 makes the job pending */
  unmet: number;
  blockedReason: string | null;
}

const SETTLE_WAITING = statement(
  'job_settle_waiting',
  `WITH s AS (SELECT * FROM jsonb_to_recordset($1::jsonb) AS s(id bigint, unmet integer, blocked_reason text)),
   settled AS (
     UPDATE @.jobs AS j
        SET state = CASE WHEN s.unmet = 0 THEN 'pending' ELSE 'waiting' END, pending_deps = s.unmet,
            blocked_reason = s.blocked_reason, run_at = CASE WHEN s.unmet = 0 THEN greatest(j.run_at, now()) ELSE j.run_at END
       FROM s WHERE j.id = s.id AND j.state = 'waiting'
     RETURNING j.queue, j.state, j.run_at
   ),
   woken AS (
     SELECT count(pg_notify('@channel_jobs', queue)) AS n
       FROM (SELECT DISTINCT queue FROM settled WHERE state = 'pending' AND run_at <= now()) q
   )
   SELECT n FROM woken`,
);

/** Sets how many dependencies of just-inserted jobs are unmet (some already completed) and why they are blocked. */
export async function jobSettleWaiting(db: SchemaDb, settlements: readonly WaitingSettlement[]): Promise<void> {
  if (settlements.length === 0) return;
  await db.rows(SETTLE_WAITING, [JSON.stringify(settlements.map((x) => ({ id: x.id, unmet: x.unmet, blocked_reason: x.blockedReason })))]);
}

/** Inserts jobs in one statement, in input order. Jobs whose idempotency key is taken are left out of the result. */
export async function jobInsertMany(db: SchemaDb, rows: readonly JobInsertRow[]): Promise<InsertedJob[]> {
  const keyed = rows.some((row) => row.idempotency_key !== undefined);
  const result = await db.rows(batchInsertFor(rows, keyed), [JSON.stringify(rows)]);
  const jobs = result.map((row) => ({ id: Number(row.id), idempotencyKey: row.idempotency_key as string | null }));
  return jobs.sort((a, b) => a.id - b.id);
}

/** Inserts one job; undefined when its idempotency key is taken. */
export async function jobInsertOne(db: SchemaDb, row: JobInsertRow): Promise<InsertedJob | undefined> {
  const [inserted] = await db.rows(row.idempotency_key === undefined ? INSERT_ONE : INSERT_ONE_KEYED, [
    row.task,
    row.queue ?? null,
    JSON.stringify(row.payload),
    row.priority ?? null,
    row.run_at ?? null,
    row.delay_ms ?? null,
    row.max_attempts ?? null,
    row.timeout_ms ?? null,
    row.backoff_strategy ?? null,
    row.backoff_base_ms ?? null,
    row.backoff_factor ?? null,
    row.backoff_max_ms ?? null,
    row.backoff_jitter ?? null,
    row.idempotency_key ?? null,
  ]);
  return inserted ? { id: Number(inserted.id), idempotencyKey: inserted.idempotency_key } : undefined;
}

const FIND_BY_KEYS = statement(
  'job_find_by_idempotency_keys',
  `SELECT id, idempotency_key FROM @.jobs WHERE idempotency_key = ANY($1::text[])`,
);

export async function jobFindByIdempotencyKeys(db: SchemaDb, keys: readonly string[]): Promise<InsertedJob[]> {
  const result = await db.rows(FIND_BY_KEYS, [keys]);
  return result.map((row) => ({ id: Number(row.id), idempotencyKey: row.idempotency_key }));
}

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
  const rows = await db.rows(CLAIM, [params.agentId, params.leaseMs, params.queues, params.limit, params.now ?? null, params.tasks]);
  const jobs = rows.map(
    (row): ClaimedJob => ({
    id: Number(row.id),
    queue: row.queue,
    task: row.task,
    payload: row.payload,
    priority: row.priority,
    attempt: row.attempt,
    maxAttempts: row.max_attempts,
    leaseEpoch: row.lease_epoch,
    timeoutMs: row.timeout_ms,
      runAtMicros: Number(row.run_at_us),
    }),
  );
  // RETURNING has no order: put the batch back in claim order.
  return jobs.sort((a, b) => b.priority - a.priority || a.runAtMicros - b.runAtMicros || a.id - b.id);
}

/*
 * The statements below match runs by (id, lease_epoch) and test "still running" as
 * `lease_expires_at IS NOT NULL`, which the jobs_lease_iff_running CHECK makes the same thing. Naming
 * `state = 'running'` instead lets the planner use the partial lease index: when statistics say no job is
 * running (as after a bulk enqueue) the cached plan scanned every running row for each run in the batch,
 * 26.5 million row pairs and 5.2 s to complete 5,152 jobs. Without it the only path is the primary key.
 */

/** A finished run: the job id and the lease epoch it was claimed under (the fencing token). */
export interface LeaseRef {
  id: number;
  leaseEpoch: number;
}

// The release rides in the completing statement: dependents listed in a completed row's `dependents`
// lose one unmet dependency each, and those left with none go from waiting to pending and wake their
// queues (release_dependents, a volatile function: see migration 0003 for why). A job nobody depends on has
// `dependents` null; a batch without dependents never calls the function.
const COMPLETE = statement(
  'job_complete_many',
  `WITH completed AS (
     UPDATE @.jobs AS j
        SET state = 'completed', finished_at = now(), lease_expires_at = NULL, last_error = NULL,
            result = ($3::jsonb[])[c.n]
       FROM unnest($1::bigint[], $2::integer[]) WITH ORDINALITY AS c(id, lease_epoch, n)
      WHERE j.id = c.id AND j.lease_epoch = c.lease_epoch AND j.lease_expires_at IS NOT NULL
     RETURNING j.id, j.dependents
   ),
   released AS (
     SELECT @.release_dependents(array_agg(r.id), array_agg(r.n)) AS n
       FROM (SELECT d.id, count(*)::integer AS n
               FROM completed, unnest(completed.dependents) AS d(id)
              GROUP BY d.id) AS r
     HAVING count(*) > 0
   )
   SELECT completed.id FROM completed LEFT JOIN released ON true`,
);

/**
 * Marks jobs completed, but only where the lease is still the one they were claimed under: a completion
 * from an agent whose lease was taken over is rejected. Returns the ids that were completed.
 */
export async function jobCompleteMany(
  db: SchemaDb,
  runs: readonly LeaseRef[],
  /** JSON text per run (null for none), or null when no run has a result */
  results: readonly (string | null)[] | null,
): Promise<Set<number>> {
  const ids = new Array<number>(runs.length);
  const epochs = new Array<number>(runs.length);
  for (let i = 0; i < runs.length; i++) {
    ids[i] = runs[i].id;
    epochs[i] = runs[i].leaseEpoch;
  }
  const rows = await db.rows(COMPLETE, [ids, epochs, results]);
  return new Set(rows.map((row) => Number(row.id)));
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
const FAIL = statement(
  'job_fail_many',
  `WITH f AS (
     SELECT * FROM jsonb_to_recordset($1::jsonb)
       AS f(id bigint, lease_epoch integer, error text, stack text, permanent boolean, snooze_ms bigint, outcome text)
   ),
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
   RETURNING j.id, j.state, j.dependents
   ),
   ${blockDependentsOf('failed')}
   SELECT failed.id, failed.state FROM failed LEFT JOIN blocked ON true`,
);

/** Records failed attempts: back to pending after the backoff, or dead when attempts are used up. */
export async function jobFailMany(db: SchemaDb, runs: readonly FailedRun[]): Promise<Map<number, string>> {
  const rows = await db.rows(FAIL, [
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
  ]);
  return new Map(rows.map((row) => [Number(row.id), row.state as string]));
}

const EXTEND_LEASES = statement(
  'job_extend_leases',
  `UPDATE @.jobs AS j
      SET lease_expires_at = coalesce($4::timestamptz, now()) + $3 * interval '1 millisecond'
     FROM unnest($1::bigint[], $2::integer[]) AS h(id, lease_epoch)
    WHERE j.id = h.id AND j.lease_epoch = h.lease_epoch AND j.lease_expires_at IS NOT NULL
   RETURNING j.id`,
);

/** Extends the leases an agent holds; returns the ids it still holds (the others were cancelled or taken over). */
export async function jobExtendLeases(db: SchemaDb, runs: readonly LeaseRef[], leaseMs: number, now?: Date): Promise<Set<number>> {
  const rows = await db.rows(EXTEND_LEASES, [runs.map((r) => r.id), runs.map((r) => r.leaseEpoch), leaseMs, now ?? null]);
  return new Set(rows.map((row) => Number(row.id)));
}

const RELEASE = statement(
  'job_release_many',
  `UPDATE @.jobs AS j
      SET state = 'pending', attempt = j.attempt - 1, lease_expires_at = NULL, claimed_by = NULL, started_at = NULL
     FROM unnest($1::bigint[], $2::integer[]) AS r(id, lease_epoch)
    WHERE j.id = r.id AND j.lease_epoch = r.lease_epoch AND j.lease_expires_at IS NOT NULL
   RETURNING j.id, j.queue`,
);

/** Gives claimed jobs back without using up an attempt (shutdown, or claimed but never started). */
export async function jobReleaseMany(db: SchemaDb, runs: readonly LeaseRef[]): Promise<number> {
  if (runs.length === 0) return 0;
  const rows = await db.rows(RELEASE, [runs.map((r) => r.id), runs.map((r) => r.leaseEpoch)]);
  const queues = [...new Set(rows.map((row) => row.queue as string))];
  await notifyJobsReady(db, queues);
  return rows.length;
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

// Deletes the edges of the deleted jobs too (job_deps has no foreign keys; see migration 0003). A deleted
// cancelled job can still have waiting dependents (retried while it stayed cancelled): nothing can release
// them any more, so they are cancelled as if it had been dropped (cancel_dependents, migration 0004; only
// for cancelled roots: a completed job's dependents were released long ago and may wait for others).
const DELETE_FINISHED = statement(
  'job_delete_finished',
  `WITH deleted AS (
     DELETE FROM @.jobs
      WHERE id = ANY(ARRAY(
        SELECT id FROM @.jobs
         WHERE state IN ('completed', 'cancelled')
           AND finished_at < coalesce($2::timestamptz, now()) - $1 * interval '1 millisecond'
         LIMIT $3 FOR UPDATE SKIP LOCKED))
     RETURNING id, state
   ),
   cascaded AS (SELECT @.cancel_dependents(ARRAY(SELECT id FROM deleted WHERE state = 'cancelled'), 'dropped') AS n),
   edges AS (SELECT @.delete_edges(ARRAY(SELECT id FROM deleted)) AS n FROM cascaded)
   SELECT (SELECT count(*) FROM deleted)::integer AS n FROM edges`,
);

/** Deletes up to `limit` completed or cancelled jobs that finished more than `retentionMs` ago. */
export async function jobDeleteFinished(db: SchemaDb, params: { retentionMs: number; limit: number; now?: Date }): Promise<number> {
  const [row] = await db.rows(DELETE_FINISHED, [params.retentionMs, params.now ?? null, params.limit]);
  return row.n;
}
