-- DAG workflows: edges between jobs, the workflows that name a group of them, and why a job waits.
-- Runs with search_path set to the Wida schema.

CREATE TABLE workflows (
  id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name       text CHECK (name IS NULL OR length(name) BETWEEN 1 AND 128),
  -- node name -> job id, as enqueued (jobs.workflow_id points back here)
  nodes      jsonb       NOT NULL DEFAULT '{}',
  created_at timestamptz NOT NULL DEFAULT now()
);

-- The edges: job_id waits until depends_on completed. The record of the graph, read by operators
-- (workflow views, cancel cascades); the completing transaction releases dependents through
-- jobs.dependents instead (see below). No foreign keys to jobs: they would put triggers on every claim
-- and completion and forbid TRUNCATE of jobs; the statements that delete jobs (drop, purge, retention)
-- delete their edges.
CREATE TABLE job_deps (
  job_id     bigint NOT NULL,
  depends_on bigint NOT NULL,
  PRIMARY KEY (job_id, depends_on),
  CONSTRAINT job_deps_not_self CHECK (job_id <> depends_on)
);
CREATE INDEX job_deps_depends_on ON job_deps (depends_on);

-- The ids of the jobs that depend on this one, written by the enqueue of a dependent under this row's
-- lock. Completion and failure read it from the row they update (re-read at its newest version after a
-- lock wait), so a dependent attached while its dependency was completing is seen; a read of job_deps
-- would use the statement's older snapshot and miss it. Null for jobs nobody depends on: the hot path pays
-- nothing for it.
ALTER TABLE jobs ADD COLUMN dependents bigint[];
-- Why a waiting job cannot go on ("blocked: job 42 is dead"); cleared when it is released.
ALTER TABLE jobs ADD COLUMN blocked_reason text;
-- A waiting job waits for something.
ALTER TABLE jobs ADD CONSTRAINT jobs_waiting_has_deps CHECK (state <> 'waiting' OR pending_deps > 0);
ALTER TABLE jobs ADD CONSTRAINT jobs_pending_deps_positive CHECK (pending_deps >= 0);

-- Release and block run in these VOLATILE functions, called by the completion and failure statements only
-- when a finished job has dependents: a volatile function takes a fresh snapshot, so it sees a dependent
-- whose enqueue committed while the completing statement waited for the dependency's row lock (the
-- statement's own snapshot does not contain that row at all).
CREATE FUNCTION release_dependents(ids bigint[], counts integer[]) RETURNS integer
LANGUAGE sql VOLATILE SET search_path FROM CURRENT AS $$
  WITH released AS (
    UPDATE jobs AS w
       SET pending_deps = greatest(w.pending_deps - r.n, 0),
           state = CASE WHEN w.pending_deps <= r.n THEN 'pending' ELSE 'waiting' END,
           run_at = CASE WHEN w.pending_deps <= r.n THEN greatest(w.run_at, now()) ELSE w.run_at END,
           blocked_reason = CASE WHEN w.pending_deps <= r.n THEN NULL ELSE w.blocked_reason END
      FROM unnest(ids, counts) AS r(id, n)
     WHERE w.id = r.id AND w.state = 'waiting'
    RETURNING w.queue, w.state, w.run_at
  )
  SELECT count(pg_notify(current_schema() || '_jobs', queue))::integer
    FROM (SELECT DISTINCT queue FROM released WHERE state = 'pending' AND run_at <= now()) q
$$;

CREATE FUNCTION block_dependents(ids bigint[], dead_ids bigint[]) RETURNS integer
LANGUAGE sql VOLATILE SET search_path FROM CURRENT AS $$
  WITH blocked AS (
    UPDATE jobs AS w SET blocked_reason = 'blocked: job ' || b.dead_id || ' is dead'
      FROM unnest(ids, dead_ids) AS b(id, dead_id)
     WHERE w.id = b.id AND w.state = 'waiting'
    RETURNING 1
  )
  SELECT count(*)::integer FROM blocked
$$;
