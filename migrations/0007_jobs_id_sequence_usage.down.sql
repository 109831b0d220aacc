-- Runs with search_path set to the Wida schema.
REVOKE USAGE ON SEQUENCE jobs_id_seq FROM PUBLIC;
DO $$
BEGIN
  IF has_sequence_privilege('public', 'jobs_id_seq', 'USAGE') THEN
    RAISE EXCEPTION 'could not revoke USAGE on sequence jobs_id_seq from PUBLIC: run the migration as the owner of the Wida schema''s tables';
  END IF;
END $$;
