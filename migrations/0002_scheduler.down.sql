-- A job's cron_slot (a column of 0001) means nothing without its schedule: cleared, or 0002 up would fail its
-- check on these rows.
UPDATE jobs SET cron_slot = NULL WHERE cron_slot IS NOT NULL;
DROP INDEX jobs_cron_slot;
ALTER TABLE jobs DROP CONSTRAINT jobs_cron_slot_has_schedule;
ALTER TABLE jobs DROP COLUMN cron_schedule;
DROP TABLE cron_schedules;
DROP TABLE leader;
