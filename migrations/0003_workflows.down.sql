DROP FUNCTION block_dependents(bigint[], bigint[]);
DROP FUNCTION release_dependents(bigint[], integer[]);
ALTER TABLE jobs DROP CONSTRAINT jobs_pending_deps_positive;
ALTER TABLE jobs DROP CONSTRAINT jobs_waiting_has_deps;
ALTER TABLE jobs DROP COLUMN blocked_reason;
ALTER TABLE jobs DROP COLUMN dependents;
DROP TABLE job_deps;
DROP TABLE workflows;
