DROP FUNCTION block_dependents(bigint[], bigint[]);
DROP FUNCTION release_dependents(bigint[], integer[]);
ALTER TABLE jobs DROP CONSTRAINT jobs_pending_deps_positive;
ALTER TABLE jobs DROP CONSTRAINT jobs_waiting_has_deps;
ALTER TABLE jobs DROP COLUMN blocked_reason;
ALTER TABLE jobs DROP COLUMN dependents;
DROP TABLE job_deps;
DROP TABLE workflows;
-- Without the edges nothing can release a waiting job: cancelled, with the reason, so an operator can retry them.
-- Workflow ids would be handed out again from 1: the jobs' references are cleared.
UPDATE jobs SET state = 'cancelled', pending_deps = 0, finished_at = now(),
                last_error = 'cancelled: it waited for dependencies when the workflows migration was reverted'
 WHERE state = 'waiting';
UPDATE jobs SET pending_deps = 0 WHERE pending_deps <> 0;
UPDATE jobs SET workflow_id = NULL WHERE workflow_id IS NOT NULL;
