import type { SchemaDb } from '../../shared/db/sql.js';
import { jobAnalyze, jobPlannerView } from '../../shared/db/queries/jobs.js';
import type { Logger } from '../../shared/logger.js';
import { IntervalService } from '../service.js';

/** Below this many pages (about 1,000 jobs) every plan is cheap, whatever the planner believes. */
const MIN_PAGES = 32;
/**
 * Plans made for a table believed this small (1 MB, about 4,000 jobs) may scan it whole; for a larger one
 * they already go through the indexes, and growing further does not change that. So a table that grows
 * from dead row versions (autovacuum off) is not analyzed again and again.
 */
const SMALL_PAGES = 128;

/**
 * ANALYZEs jobs when the planner believes it small and it is now more than twice that size. A plan cached
 * for a small table outlives it until the statistics change: after an agent polled an empty queue, a burst
 * of 50,000 jobs was claimed 512 at a time in 160-200 ms per claim (the cached plan read the whole table to
 * find the claimed ids) instead of about 10 ms after an ANALYZE. Autovacuum gets there too, but only after 10 %
 * of the table changed, checking once a minute, and not at all where it is off.
 */
export async function refreshStaleStatistics(db: SchemaDb, logger: Logger): Promise<'analyzed' | 'current' | 'not allowed'> {
  const view = await jobPlannerView(db);
  if (view.pages < MIN_PAGES || view.believedPages >= SMALL_PAGES || view.pages <= 2 * view.believedPages) return 'current';
  // Before PostgreSQL 17 an ANALYZE the role may not run only warns, and would be repeated every check.
  if (!view.mayAnalyze) return 'not allowed';
  const started = performance.now();
  await jobAnalyze(db);
  logger.info('analyzed the jobs table: it had outgrown what the planner believed', {
    believedPages: view.believedPages,
    pages: view.pages,
    ms: Math.round(performance.now() - started),
  });
  return 'analyzed';
}

/** The leader checks every few seconds; a check is one read of pg_class. */
export function createStatisticsKeeper(options: { db: SchemaDb; intervalMs: number; logger: Logger }): IntervalService {
  const { db, logger } = options;
  let warned = false;
  return new IntervalService(
    'statistics',
    options.intervalMs,
    async () => {
      const outcome = await refreshStaleStatistics(db, logger);
      if (outcome === 'not allowed' && !warned) {
        warned = true;
        logger.warn(
          "the jobs table has outgrown the planner's statistics and this role may not ANALYZE it (only its owner may): " +
            'claims can be slow until autovacuum analyzes it; run the agent as the owner, or ANALYZE after large enqueues',
        );
      }
    },
    (error) => logger.error('statistics check failed', { error: (error as Error).message }),
    options.intervalMs,
  );
}
