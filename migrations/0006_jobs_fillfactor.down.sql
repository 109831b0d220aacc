-- Runs with search_path set to the Wida schema.
ALTER TABLE jobs RESET (fillfactor);
