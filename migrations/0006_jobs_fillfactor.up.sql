-- Room on each page for a job's next versions. A claim and a completion each write a new version of the row;
-- on a full page that version goes to another page, and PostgreSQL first WAL-logs a lock on the old one (3 lock
-- records per job instead of 2, 1,087 bytes of WAL per job instead of 970 at 70). With room, pruning reuses
-- the dead versions' space on the same page. Fresh agent, 20,000 jobs: about 5 % more jobs/s in nine paired
-- rounds, and the table of completed jobs ends smaller (1,288 pages against 1,404); a backlog of pending jobs
-- takes about 1.4x the pages, and a batch insert of 20,000 is 5-10 % slower. See docs/architecture.md.
-- Applies to pages written from now on. Runs with search_path set to the Wida schema.
ALTER TABLE jobs SET (fillfactor = 70);
