-- Runs with search_path set to the Wida schema.
REVOKE USAGE ON SEQUENCE jobs_id_seq FROM PUBLIC;
