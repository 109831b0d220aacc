/** The queues table: paused flag and limits, and counts of jobs per queue and state. */
import { statement, type SchemaDb } from '../sql.js';

const SET_PAUSED = statement(
  'queue_set_paused',
  `INSERT INTO @.queues (name, paused) VALUES ($1, $2)
   ON CONFLICT (name) DO UPDATE SET paused = EXCLUDED.paused, updated_at = now()
   RETURNING name`,
);

/** Pauses or resumes a queue; a queue that has no row yet gets one. */
export async function queueSetPaused(db: SchemaDb, name: string, paused: boolean): Promise<void> {
  await db.rows(SET_PAUSED, [name, paused]);
}

export interface QueueSummary {
  name: string;
  paused: boolean;
  concurrencyLimit: number | null;
  counts: Record<string, number>;
}

const SUMMARY = statement(
  'queue_summary',
  `WITH counts AS (SELECT queue, state, count(*)::integer AS n FROM @.jobs GROUP BY queue, state),
        names AS (SELECT queue AS name FROM counts UNION SELECT name FROM @.queues)
   SELECT names.name, coalesce(q.paused, false) AS paused, q.concurrency_limit,
          coalesce((SELECT jsonb_object_agg(c.state, c.n) FROM counts c WHERE c.queue = names.name), '{}') AS counts
     FROM names LEFT JOIN @.queues q ON q.name = names.name
    ORDER BY names.name`,
);

/** Every queue that has jobs or settings, with its job counts by state. */
export async function queueSummaries(db: SchemaDb): Promise<QueueSummary[]> {
  const rows = await db.rows(SUMMARY);
  return rows.map((row) => ({ name: row.name, paused: row.paused, concurrencyLimit: row.concurrency_limit, counts: row.counts }));
}
