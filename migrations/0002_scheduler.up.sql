-- The scheduler: who leads, and cron schedules. Runs with search_path set to the Wida schema.

-- One row: the current leadership. `term` grows by one with every election and never goes back, so a
-- leader-only write that names its term is refused once another agent has been elected.
CREATE TABLE leader (
  singleton   boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
  -- null after the leader resigned and before the next election
  agent_id    text,
  term        bigint      NOT NULL CHECK (term >= 1),
  elected_at  timestamptz NOT NULL DEFAULT now(),
  -- the backend of the leader's dedicated session (for operators: pg_terminate_backend)
  backend_pid integer
);

CREATE TABLE cron_schedules (
  name          text        PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 128),
  expression    text        NOT NULL,
  timezone      text        NOT NULL DEFAULT 'UTC',
  task          text        NOT NULL CHECK (length(task) BETWEEN 1 AND 128),
  queue         text        NOT NULL DEFAULT 'default' CHECK (length(queue) BETWEEN 1 AND 128),
  payload       jsonb       NOT NULL DEFAULT 'null',
  priority      smallint    NOT NULL DEFAULT 1 CHECK (priority BETWEEN 0 AND 3),
  max_attempts  integer     CHECK (max_attempts IS NULL OR max_attempts >= 1),
  timeout_ms    integer     CHECK (timeout_ms IS NULL OR timeout_ms > 0),
  enabled       boolean     NOT NULL DEFAULT true,
  catch_up      text        NOT NULL DEFAULT 'skip' CHECK (catch_up IN ('skip', 'once', 'backfill')),
  backfill_limit integer    CHECK (backfill_limit IS NULL OR backfill_limit BETWEEN 1 AND 1000),
  -- slots at or before this are never enqueued: set at creation, on resume and when the timing changes
  starts_after  timestamptz NOT NULL DEFAULT now(),
  -- the newest slot the leader dealt with (enqueued, or skipped by the catch-up policy)
  last_slot     timestamptz,
  last_enqueued_at timestamptz,
  created_at    timestamptz NOT NULL DEFAULT now(),
  updated_at    timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT cron_schedules_backfill_limit CHECK ((catch_up = 'backfill') = (backfill_limit IS NOT NULL))
);

-- Each fire of a schedule is one job under a unique (schedule, slot): a second insert of a slot, from a
-- restarted leader or from two agents that both believe they lead, is a conflict and inserts nothing.
-- Partial, so ordinary jobs never write this index.
ALTER TABLE jobs ADD COLUMN cron_schedule text;
ALTER TABLE jobs ADD CONSTRAINT jobs_cron_slot_has_schedule CHECK (cron_slot IS NULL OR cron_schedule IS NOT NULL);
CREATE UNIQUE INDEX jobs_cron_slot ON jobs (cron_schedule, cron_slot) WHERE cron_slot IS NOT NULL;
