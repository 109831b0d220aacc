/** The queues table: paused flag and limits, and counts of jobs per queue and state. */
import { JOB_STATES } from '../../job-state.js';
import { statement, type SchemaDb } from '../sql.js';

// The CTE reads the row as it was before the statement, so each says whether the queue was paused already.
const PAUSE = statement(
  'queue_pause',
  `WITH before AS (SELECT paused FROM @.queues WHERE name = $1)
   INSERT INTO @.queues (name, paused) VALUES ($1, true)
   ON CONFLICT (name) DO UPDATE SET paused = true, updated_at = now()
   RETURNING coalesce((SELECT paused FROM before), false) AS was_paused`,
);

// A queue with no row is not paused: resuming it writes nothing (a typo once got a row, and was listed).
const RESUME = statement(
  'queue_resume',
  `WITH before AS (SELECT paused FROM @.queues WHERE name = $1)
   UPDATE @.queues SET paused = false, updated_at = now() WHERE name = $1
   RETURNING (SELECT paused FROM before) AS was_paused`,
);

/** Pauses (a queue that has no row yet gets one) or resumes a queue; says whether it was paused before. */
export async function queueSetPaused(db: SchemaDb, name: string, paused: boolean): Promise<{ wasPaused: boolean }> {
  const [row] = await db.rows(paused ? PAUSE : RESUME, [name]);
  return { wasPaused: row?.was_paused === true };
}

export interface QueueSummary {
  name: string;
  paused: boolean;
  counts: Record<string, number>;
}

const SUMMARY = statement(
  'queue_summary',
  `WITH counts AS (SELECT queue, state, count(*)::integer AS n FROM @.jobs GROUP BY queue, state),
        names AS (SELECT queue AS name FROM counts UNION SELECT name FROM @.queues)
   SELECT names.name, coalesce(q.paused, false) AS paused,
          coalesce((SELECT jsonb_object_agg(c.state, c.n) FROM counts c WHERE c.queue = names.name), '{}') AS counts
     FROM names LEFT JOIN @.queues q ON q.name = names.name
    ORDER BY names.name`,
);

/** Every queue that has jobs or settings, with its job counts by state. */
export async function queueSummaries(db: SchemaDb): Promise<QueueSummary[]> {
  const rows = await db.rows(SUMMARY);
  // Every state, 0 when none: a script reading counts.running must not get undefined.
  return rows.map((row) => ({ name: row.name, paused: row.paused, counts: { ...Object.fromEntries(JOB_STATES.map((state) => [state, 0])), ...row.counts } }));
}
