-- Each agent records how often it beats, so "alive" (three beats missed at most) is judged by the agent's own
-- interval rather than by whatever settings the reader (the CLI, the console) happens to run with. Null for
-- rows written before this migration: readers assume the default interval, 5 s.
-- Runs with search_path set to the Wida schema.
ALTER TABLE agents ADD COLUMN heartbeat_interval_ms integer
  CONSTRAINT agents_heartbeat_interval_positive CHECK (heartbeat_interval_ms IS NULL OR heartbeat_interval_ms > 0);
