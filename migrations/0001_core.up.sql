-- Core tables. Runs with search_path set to the Wida schema, so names are unqualified.

CREATE TABLE jobs (
  id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  queue            text        NOT NULL DEFAULT 'default',
  task             text        NOT NULL,
  payload          jsonb       NOT NULL DEFAULT 'null',
  -- 0 low, 1 normal, 2 high, 3 critical: claimed highest first
  priority         smallint    NOT NULL DEFAULT 1,
  state            text        NOT NULL DEFAULT 'pending',
  attempt          integer     NOT NULL DEFAULT 0,
  max_attempts     integer     NOT NULL DEFAULT 5,
  run_at           timestamptz NOT NULL DEFAULT now(),
  -- lease: who holds the job, until when, and the fencing token of that claim
  claimed_by       text,
  lease_expires_at timestamptz,
  lease_epoch      integer     NOT NULL DEFAULT 0,
  timeout_ms       integer,
  backoff_strategy text        NOT NULL DEFAULT 'exponential',
  backoff_base_ms  integer     NOT NULL DEFAULT 5000,
  backoff_factor   real        NOT NULL DEFAULT 2,
  backoff_max_ms   integer     NOT NULL DEFAULT 3600000,
  backoff_jitter   real        NOT NULL DEFAULT 0.2,
  idempotency_key  text,
  last_error       text,
  -- failed, rescued and cancelled attempts; the successful one is the row itself
  attempt_log      jsonb       NOT NULL DEFAULT '[]',
  result           jsonb,
  progress         jsonb,
  replay_count     integer     NOT NULL DEFAULT 0,
  -- room for DAG workflows and cron (later issues)
  workflow_id      bigint,
  pending_deps     integer     NOT NULL DEFAULT 0,
  cron_slot        timestamptz,
  created_at       timestamptz NOT NULL DEFAULT now(),
  started_at       timestamptz,
  finished_at      timestamptz,

  CONSTRAINT jobs_state_known CHECK (state IN ('waiting', 'pending', 'running', 'completed', 'dead', 'cancelled')),
  CONSTRAINT jobs_priority_range CHECK (priority BETWEEN 0 AND 3),
  CONSTRAINT jobs_attempts_positive CHECK (max_attempts >= 1 AND attempt >= 0),
  CONSTRAINT jobs_queue_named CHECK (length(queue) BETWEEN 1 AND 128),
  CONSTRAINT jobs_task_named CHECK (length(task) BETWEEN 1 AND 128),
  CONSTRAINT jobs_backoff_known CHECK (backoff_strategy IN ('fixed', 'exponential')),
  CONSTRAINT jobs_timeout_positive CHECK (timeout_ms IS NULL OR timeout_ms > 0),
  -- a lease exists if and only if the job is running
  CONSTRAINT jobs_lease_iff_running CHECK ((state = 'running') = (lease_expires_at IS NOT NULL AND claimed_by IS NOT NULL)),
  -- finished_at is set if and only if the job is in a final state
  CONSTRAINT jobs_finished_iff_final CHECK ((state IN ('completed', 'dead', 'cancelled')) = (finished_at IS NOT NULL))
);

-- No statistics for the lease column: the set of running jobs changes thousands of times a second, so any
-- ANALYZE snapshot of it is wrong, and the usual one (taken while idle or after a bulk enqueue) says no job
-- runs. Believing it, the planner drove each batch completion from a scan of the whole table and compared
-- every row against every run in the batch: 550-880 us per job instead of 12-26. Without statistics,
-- "lease_expires_at IS NOT NULL" gets the default estimate and the batch drives the join through the key.
ALTER TABLE jobs ALTER COLUMN lease_expires_at SET STATISTICS 0;

-- The claim reads this index in claim order; only ready-or-scheduled rows are in it, so it stays small.
CREATE INDEX jobs_claim_order ON jobs (priority DESC, run_at, id) WHERE state = 'pending';
-- The rescuer finds expired leases here.
CREATE INDEX jobs_lease_expiry ON jobs (lease_expires_at) WHERE state = 'running';
-- The DLQ is listed by finish time; dead jobs are few, so this index costs the hot path nothing.
-- No index serves retention or listings by state: every index on jobs is written on every claim and
-- completion, and retention's oldest-first batches find their rows at the start of the heap.
CREATE INDEX jobs_dead_finished ON jobs (finished_at) WHERE state = 'dead';
-- An idempotency key names one job while that job exists (until retention deletes it).
CREATE UNIQUE INDEX jobs_idempotency_key ON jobs (idempotency_key) WHERE idempotency_key IS NOT NULL;

CREATE TABLE queues (
  name              text PRIMARY KEY,
  paused            boolean     NOT NULL DEFAULT false,
  concurrency_limit integer CHECK (concurrency_limit IS NULL OR concurrency_limit > 0),
  updated_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE agents (
  id           text PRIMARY KEY,
  host         text        NOT NULL,
  pid          integer     NOT NULL,
  version      text        NOT NULL,
  queues       text[],
  concurrency  integer     NOT NULL,
  state        text        NOT NULL DEFAULT 'running' CHECK (state IN ('running', 'draining', 'stopped')),
  started_at   timestamptz NOT NULL DEFAULT now(),
  heartbeat_at timestamptz NOT NULL DEFAULT now()
);

-- Delay before the next attempt after `attempt` failed ones. `spread` is a number in [0, 1) (random() in
-- production, fixed in tests): jitter moves the delay by up to +/- jitter x delay so that jobs failing
-- together do not retry together. The exponential form is computed in log space so that a large factor
-- or attempt count reaches the cap instead of overflowing.
CREATE FUNCTION retry_delay(strategy text, base_ms integer, factor real, max_ms integer, jitter real,
                            attempt integer, spread double precision)
RETURNS interval LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT make_interval(secs => greatest(0, least(
    CASE WHEN strategy = 'fixed' OR factor <= 1 OR base_ms <= 0 THEN least(base_ms, max_ms)::double precision
         ELSE exp(least(ln(base_ms) + (greatest(attempt, 1) - 1) * ln(factor::double precision),
                        ln(greatest(max_ms, 1)))) END
    * (1 + jitter * (spread * 2 - 1)),
    max_ms::double precision)) / 1000.0)
$$;
