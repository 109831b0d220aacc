-- DAG fixes: the operator cascades (cancel, drop, purge, and the unblock on retry or replay) run in
-- VOLATILE functions, so each of their statements takes a fresh snapshot.
-- Runs with search_path set to the Wida schema.

-- Cancels, level by level, the waiting dependents of root_ids (jobs just cancelled or deleted), then
-- theirs, and so on; returns how many. An action's own statement takes its snapshot BEFORE it waits for the
-- root's row lock, and an enqueue that attaches a dependent holds exactly that lock (it writes the root's
-- `dependents`), so a walk of job_deps in that snapshot misses the dependent the enqueue committed while we
-- waited. Here every level is its own statement with its own snapshot, taken after the level before has
-- updated (and so waited for the locks of) the jobs whose dependents it reads: a dependent attached to any
-- of them while we waited is visible one level down. An enqueue that comes after our update waits for our
-- commit and then finds its dependency cancelled, and is refused. The first level names the roots with
-- `verb` ('cancelled: dependency job 7 was dropped'); deeper levels say 'cancelled'.
CREATE FUNCTION cancel_dependents(root_ids bigint[], verb text) RETURNS integer
LANGUAGE plpgsql VOLATILE SET search_path FROM CURRENT AS $$
DECLARE
  frontier bigint[] := root_ids;
  cause_verb text := verb;
  total integer := 0;
BEGIN
  WHILE cardinality(frontier) > 0 LOOP
    WITH hit AS (
      UPDATE jobs AS w
         SET state = 'cancelled', finished_at = now(), blocked_reason = NULL,
             last_error = 'cancelled: dependency job ' || x.cause || ' was ' || cause_verb
        FROM (SELECT DISTINCT ON (d.job_id) d.job_id AS dependent, d.depends_on AS cause
                FROM job_deps d
               WHERE d.depends_on = ANY(frontier)
               ORDER BY d.job_id, d.depends_on) AS x
       WHERE w.id = x.dependent AND w.state = 'waiting'
      RETURNING w.id
    )
    SELECT array_agg(hit.id) INTO frontier FROM hit;
    total := total + coalesce(cardinality(frontier), 0);
    cause_verb := 'cancelled';
  END LOOP;
  RETURN total;
END
$$;

-- The edges of deleted jobs (no foreign keys do it; see 0003). In a fresh snapshot for the same reason: an
-- edge attached while the deleting statement waited for the row lock is not in that statement's snapshot.
CREATE FUNCTION delete_edges(ids bigint[]) RETURNS integer
LANGUAGE sql VOLATILE SET search_path FROM CURRENT AS $$
  WITH deleted AS (
    DELETE FROM job_deps WHERE job_id = ANY(ids) OR depends_on = ANY(ids)
    RETURNING 1
  )
  SELECT count(*)::integer FROM deleted
$$;

-- ids run again (retry, replay): their waiting dependents blocked by them ('blocked: job 7 is dead' or
-- 'is cancelled') are blocked by them no longer. The reason moves to another dead or cancelled dependency
-- if there is one (lowest id), else it is cleared. Fresh snapshot: a dependent attached while the action
-- waited for the row lock is seen.
CREATE FUNCTION unblock_dependents(ids bigint[]) RETURNS integer
LANGUAGE sql VOLATILE SET search_path FROM CURRENT AS $$
  WITH unblocked AS (
    UPDATE jobs AS w
       SET blocked_reason = (SELECT 'blocked: job ' || p.id || ' is ' || p.state
                               FROM job_deps o JOIN jobs p ON p.id = o.depends_on
                              WHERE o.job_id = w.id AND p.state IN ('dead', 'cancelled') AND p.id <> ALL(ids)
                              ORDER BY p.id LIMIT 1)
      FROM job_deps d
     WHERE d.depends_on = ANY(ids) AND w.id = d.job_id AND w.state = 'waiting'
       AND w.blocked_reason IN ('blocked: job ' || d.depends_on || ' is dead', 'blocked: job ' || d.depends_on || ' is cancelled')
    RETURNING 1
  )
  SELECT count(*)::integer FROM unblocked
$$;
