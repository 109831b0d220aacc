DROP INDEX jobs_cron_slot;
ALTER TABLE jobs DROP CONSTRAINT jobs_cron_slot_has_schedule;
ALTER TABLE jobs DROP COLUMN cron_schedule;
DROP TABLE cron_schedules;
DROP TABLE leader;
