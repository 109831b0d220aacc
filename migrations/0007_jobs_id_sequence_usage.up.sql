-- A keyed batch insert draws its job ids with nextval() in input order, then inserts in key order, so two batches
-- sharing keys cannot deadlock (docs/architecture.md, "Hot path"). An identity column's default needs no right on
-- its sequence but an explicit nextval() does: without this, a role allowed to insert into jobs could not enqueue
-- a keyed batch. USAGE allows nextval and currval only. Runs with search_path set to the Wida schema.
GRANT USAGE ON SEQUENCE jobs_id_seq TO PUBLIC;
-- A role that does not own the sequence gets only a warning from GRANT, and the migration would be recorded as done.
DO $$
BEGIN
  IF NOT has_sequence_privilege('public', 'jobs_id_seq', 'USAGE') THEN
    RAISE EXCEPTION 'could not grant USAGE on sequence jobs_id_seq to PUBLIC: run the migration as the owner of the Wida schema''s tables';
  END IF;
END $$;
