-- Runs with search_path set to the Wida schema.
ALTER TABLE agents DROP COLUMN heartbeat_interval_ms;
