/**
 * The jobs table: inserts (one, many, with dependencies), retention and the planner's statistics. A job's runs
 * (claim, complete, fail, leases, rescue) live in jobs-runs.ts, operator actions in jobs-admin.ts.
 */
import { ValidationError } from '../../errors.js';
import { JOB_DEFAULTS, type JobInsertRow } from '../../job-spec.js';
import { statement, type SchemaDb, type Statement } from '../sql.js';
import { notifyJobsReady } from './notifications.js';

export interface InsertedJob {
  id: number;
  idempotencyKey: string | null;
}

// ON CONFLICT makes every row a speculative insertion, so jobs without an idempotency key go without it.
const ON_KEY_CONFLICT = 'ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING';

/** An insert into `columns` of the rows `source` produces, with a NOTIFY per queue that got a job ready now. */
function insertStatement(name: string, source: string, onConflict: string, columns: string) {
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

interface OptionalColumn {
  column: string;
  /** the JobInsertRow keys that set it: a row that sets none leaves it to the table's default */
  keys: readonly (keyof JobInsertRow)[];
  /** the value read from a batch's JSON element `s`, JOB_DEFAULTS when the element omits it */
  fromJson: string;
  /** the value from bound parameters; `p(key)` names the parameter that holds `key` */
  fromParameters: (p: (key: keyof JobInsertRow) => string) => string;
}

// The fields a job may set besides task and payload (which every row has); omitted ones take JOB_DEFAULTS.
const OPTIONAL_COLUMNS: readonly OptionalColumn[] = [
  { column: 'queue', keys: ['queue'], fromJson: `coalesce(s->>'queue', '${JOB_DEFAULTS.queue}')`, fromParameters: (p) => p('queue') },
  { column: 'priority', keys: ['priority'], fromJson: `coalesce((s->>'priority')::smallint, ${JOB_DEFAULTS.priority})`, fromParameters: (p) => `${p('priority')}::smallint` },
  {
    column: 'run_at',
    keys: ['run_at', 'delay_ms'],
    fromJson: `coalesce((s->>'run_at')::timestamptz, now() + coalesce((s->>'delay_ms')::bigint, 0) * interval '1 millisecond')`,
    fromParameters: (p) => `coalesce(${p('run_at')}::timestamptz, now() + coalesce(${p('delay_ms')}::bigint, 0) * interval '1 millisecond')`,
  },
  { column: 'max_attempts', keys: ['max_attempts'], fromJson: `coalesce((s->>'max_attempts')::integer, ${JOB_DEFAULTS.maxAttempts})`, fromParameters: (p) => `${p('max_attempts')}::integer` },
  { column: 'timeout_ms', keys: ['timeout_ms'], fromJson: `(s->>'timeout_ms')::integer`, fromParameters: (p) => `${p('timeout_ms')}::integer` },
  { column: 'backoff_strategy', keys: ['backoff_strategy'], fromJson: `coalesce(s->>'backoff_strategy', '${JOB_DEFAULTS.backoffStrategy}')`, fromParameters: (p) => p('backoff_strategy') },
  { column: 'backoff_base_ms', keys: ['backoff_base_ms'], fromJson: `coalesce((s->>'backoff_base_ms')::integer, ${JOB_DEFAULTS.backoffBaseMs})`, fromParameters: (p) => `${p('backoff_base_ms')}::integer` },
  { column: 'backoff_factor', keys: ['backoff_factor'], fromJson: `coalesce((s->>'backoff_factor')::real, ${JOB_DEFAULTS.backoffFactor})`, fromParameters: (p) => `${p('backoff_factor')}::real` },
  { column: 'backoff_max_ms', keys: ['backoff_max_ms'], fromJson: `coalesce((s->>'backoff_max_ms')::integer, ${JOB_DEFAULTS.backoffMaxMs})`, fromParameters: (p) => `${p('backoff_max_ms')}::integer` },
  { column: 'backoff_jitter', keys: ['backoff_jitter'], fromJson: `coalesce((s->>'backoff_jitter')::real, ${JOB_DEFAULTS.backoffJitter})`, fromParameters: (p) => `${p('backoff_jitter')}::real` },
  { column: 'idempotency_key', keys: ['idempotency_key'], fromJson: `s->>'idempotency_key'`, fromParameters: (p) => p('idempotency_key') },
];

/** The optional columns some of these rows set, and a bit mask naming that combination. */
function columnsSetBy(rows: readonly JobInsertRow[]): { columns: OptionalColumn[]; mask: number } {
  const present = new Set<string>();
  for (const row of rows) {
    for (const key in row) if (row[key as keyof JobInsertRow] !== undefined) present.add(key);
  }
  const columns: OptionalColumn[] = [];
  let mask = 0;
  OPTIONAL_COLUMNS.forEach((entry, i) => {
    if (!entry.keys.some((key) => present.has(key))) return;
    columns.push(entry);
    mask |= 1 << i;
  });
  return { columns, mask };
}

// jsonb_array_elements with ->> measured faster than jsonb_to_recordset (about 170,000 against 130,000
// rows/s for 20,000 rows); ordinality keeps ids in input order.
function fromJsonArray(columns: readonly OptionalColumn[]): string {
  return `SELECT s->>'task', coalesce(s->'payload', 'null')${columns.map((c) => `, ${c.fromJson}`).join('')}
    FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS spec(s, ord)
   ORDER BY ord`;
}

/**
 * A keyed batch inserts in key order, so two batches sharing keys wait for each other's keys in one order:
 * in input order, one holding k1 and wanting k2 while the other held k2 and wanted k1 was a deadlock (8 of 40
 * calls with 200 keys in opposite orders). The ids are still taken in input order first (the subquery is not
 * flattened, having a volatile function), because the claim runs a batch's jobs in id order.
 */
function fromJsonArrayByKey(columns: readonly OptionalColumn[]): string {
  return `OVERRIDING SYSTEM VALUE
  SELECT id, s->>'task', coalesce(s->'payload', 'null')${columns.map((c) => `, ${c.fromJson}`).join('')}
    FROM (SELECT nextval('@.jobs_id_seq') AS id, s, ord
            FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS spec(s, ord)) numbered
   ORDER BY s->>'idempotency_key' NULLS FIRST, ord`;
}

const SPEC_COLUMNS = `s->>'task', coalesce(s->'payload', 'null'), ${OPTIONAL_COLUMNS.map((c) => c.fromJson).join(', ')}`;
const ALL_COLUMNS = `task, payload, ${OPTIONAL_COLUMNS.map((c) => c.column).join(', ')}`;

/**
 * The batch insert for the fields these rows set: a column no row sets is left out and takes the table's
 * default (the same values as JOB_DEFAULTS; test/migrations.test.ts checks). Reading thirteen fields of every
 * element cost about 3 µs per row: 20,000 rows of task and payload took 155-165 ms with every column, 89-96
 * with two. One prepared statement per combination of fields, made when first needed.
 */
const batchInserts = new Map<number, Statement>();
function batchInsertFor(rows: readonly JobInsertRow[], keyed: boolean): Statement {
  const { columns, mask: columnMask } = columnsSetBy(rows);
  const mask = (columnMask << 1) | (keyed ? 1 : 0);
  let found = batchInserts.get(mask);
  if (!found) {
    const names = [...(keyed ? ['id'] : []), 'task', 'payload', ...columns.map((c) => c.column)].join(', ');
    const source = keyed ? fromJsonArrayByKey(columns) : fromJsonArray(columns);
    found = insertStatement(`job_insert_many_${mask}`, source, keyed ? ON_KEY_CONFLICT : '', names);
    batchInserts.set(mask, found);
  }
  return found;
}

/*
 * One job: bound parameters for task, payload and only the fields the job sets (one prepared statement per
 * combination, like the batch), and the NOTIFY in RETURNING. Measured against the earlier form (all fourteen
 * fields as parameters with coalesce to the defaults, and the batch's DISTINCT-and-count CTE for the NOTIFY):
 * the CTE cost about 115 us more of database CPU per call (290 against 175 us) and 0.2 ms of a 0.64 ms round
 * trip; RETURNING instead of a CTE around the insert another 12 us (200 -> 188 us).
 */
interface SingleInsert {
  statement: Statement;
  /** the row's keys bound to $3, $4, ... */
  keys: (keyof JobInsertRow)[];
}
const singleInserts = new Map<number, SingleInsert>();
function singleInsertFor(row: JobInsertRow): SingleInsert {
  const { columns, mask } = columnsSetBy([row]);
  let found = singleInserts.get(mask);
  if (!found) {
    const keys: (keyof JobInsertRow)[] = [];
    const p = (key: keyof JobInsertRow) => {
      keys.push(key);
      return `$${keys.length + 2}`;
    };
    const values = ['$1', '$2::jsonb', ...columns.map((c) => c.fromParameters(p))].join(', ');
    const names = ['task', 'payload', ...columns.map((c) => c.column)].join(', ');
    // The mask includes idempotency_key, so statements with and without ON CONFLICT never share a name.
    const onConflict = row.idempotency_key === undefined ? '' : ON_KEY_CONFLICT;
    const text = `INSERT INTO @.jobs (${names}) VALUES (${values}) ${onConflict}
      RETURNING id, idempotency_key, CASE WHEN run_at <= now() THEN pg_notify('@channel_jobs', queue) END AS woke`;
    found = { statement: statement(`job_insert_one_${mask}`, text), keys };
    singleInserts.set(mask, found);
  }
  return found;
}

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
  const result = await db.rows(INSERT_WITH_DEPENDENCIES, [batchJson(rows)]);
  return result.map((row) => Number(row.id)).sort((a, b) => a - b);
}

// Adds the new dependents to each dependency's `dependents` and records the edges. The UPDATE locks every
// dependency row and returns its newest state: a completion in flight finishes first (and is seen as
// completed), and a completion that starts later waits for this transaction and then reads the new
// `dependents` from the row it updates. So a release can be neither early nor lost. The rows are locked first, in
// id order, as completions lock their batch (then its dependents): in the order of the aggregate, an enqueue of a
// dependent of X and D, while X completed and released D, deadlocked. A dependent whose id falls between a batch's
// can still deadlock; the client tries the enqueue again (see docs/architecture.md).
const ATTACH_DEPENDENTS = statement(
  'job_attach_dependents',
  `WITH e AS (SELECT * FROM unnest($1::bigint[], $2::bigint[]) AS e(job_id, depends_on)),
   locked AS (
     SELECT id FROM @.jobs WHERE id = ANY(ARRAY(SELECT DISTINCT depends_on FROM e)) ORDER BY id FOR NO KEY UPDATE
   ),
   parents AS (
     UPDATE @.jobs AS p SET dependents = coalesce(p.dependents, '{}') || g.ids
       FROM (SELECT depends_on, array_agg(job_id ORDER BY job_id) AS ids FROM e GROUP BY depends_on) g, locked l
      WHERE p.id = g.depends_on AND l.id = g.depends_on
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

/**
 * A batch travels as one JSON array, and PostgreSQL holds a jsonb value of at most 256 MiB (and V8 a string of
 * about 512 M characters). Each payload is within its own limit, so only a batch of very many or very large
 * ones gets here; it is refused whole, before anything is written.
 */
const MAX_BATCH_JSON_BYTES = 200 * 1024 * 1024;

function batchJson(rows: readonly object[]): string {
  const tooLarge = (size: string) =>
    new ValidationError('jobs', `the batch of ${rows.length} jobs is ${size} as JSON; a batch may be at most 200 MiB: enqueue it in smaller batches`);
  let text: string;
  try {
    text = JSON.stringify(rows);
  } catch (error) {
    if (error instanceof RangeError) throw tooLarge('more than 512 M characters');
    throw error;
  }
  // UTF-8 takes at most 3 bytes per UTF-16 unit: most batches need no byte count.
  if (text.length * 3 > MAX_BATCH_JSON_BYTES) {
    const bytes = Buffer.byteLength(text);
    if (bytes > MAX_BATCH_JSON_BYTES) throw tooLarge(`${(bytes / 1024 / 1024).toFixed(0)} MiB`);
  }
  return text;
}

/** Inserts jobs in one statement, in input order. Jobs whose idempotency key is taken are left out of the result. */
export async function jobInsertMany(db: SchemaDb, rows: readonly JobInsertRow[]): Promise<InsertedJob[]> {
  const keyed = rows.some((row) => row.idempotency_key !== undefined);
  const result = await db.rows(batchInsertFor(rows, keyed), [batchJson(rows)]);
  const jobs = result.map((row) => ({ id: Number(row.id), idempotencyKey: row.idempotency_key as string | null }));
  return jobs.sort((a, b) => a.id - b.id);
}

/** Inserts one job; undefined when its idempotency key is taken. */
export async function jobInsertOne(db: SchemaDb, row: JobInsertRow): Promise<InsertedJob | undefined> {
  const { statement: insert, keys } = singleInsertFor(row);
  const values: unknown[] = [row.task, JSON.stringify(row.payload)];
  for (const key of keys) values.push(row[key] ?? null);
  const [inserted] = await db.rows(insert, values);
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

// The size of jobs the planner believes (pg_class.relpages, from the last ANALYZE or VACUUM; 0 before any)
// against its size on disk now (no statistics collector in between, so a burst shows at once), and whether
// this role may ANALYZE it (the owner, a member of the owner role, or, from PostgreSQL 17, MAINTAIN).
const PLANNER_VIEW = statement(
  'job_planner_view',
  `SELECT relpages::float8 AS believed_pages,
          (pg_relation_size(oid) / current_setting('block_size')::integer)::float8 AS pages,
          reltuples::float8 AS believed_rows,
          pg_has_role(current_user, relowner, 'USAGE')
            OR CASE WHEN current_setting('server_version_num')::integer >= 170000
                    THEN has_table_privilege(oid, 'MAINTAIN') ELSE false END AS may_analyze
     FROM pg_class WHERE oid = '@.jobs'::regclass`,
);

export interface PlannerView {
  believedPages: number;
  pages: number;
  /** -1 before the first ANALYZE */
  believedRows: number;
  mayAnalyze: boolean;
}

export async function jobPlannerView(db: SchemaDb): Promise<PlannerView> {
  const [row] = await db.rows(PLANNER_VIEW);
  return { believedPages: row.believed_pages, pages: row.pages, believedRows: row.believed_rows, mayAnalyze: row.may_analyze };
}

// SKIP_LOCKED: behind a VACUUM or a migration's lock it skips the table instead of waiting (and holding up the
// leader's shutdown); the next check tries again.
const ANALYZE_JOBS = statement('job_analyze', 'ANALYZE (SKIP_LOCKED) @.jobs');

export async function jobAnalyze(db: SchemaDb): Promise<void> {
  await db.rows(ANALYZE_JOBS);
}

// jobs has no index on queue: for a queue no job names, this reads the whole table (as `wida queues` does).
const IN_QUEUE = statement('job_in_queue_exists', `SELECT EXISTS (SELECT 1 FROM @.jobs WHERE queue = $1) AS found`);

/** Whether any job (in any state) is in the queue. */
export async function jobInQueueExists(db: SchemaDb, queue: string): Promise<boolean> {
  const [row] = await db.rows(IN_QUEUE, [queue]);
  return row.found === true;
}
