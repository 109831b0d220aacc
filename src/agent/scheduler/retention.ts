import type pg from 'pg';
import type { SchemaDb } from '../../shared/db/sql.js';
import { agentDeleteStale } from '../../shared/db/queries/agents.js';
import { jobDeleteFinished } from '../../shared/db/queries/jobs.js';
import type { Logger } from '../../shared/logger.js';
import { IntervalService } from '../service.js';
import { runExclusively } from './exclusive.js';

const BATCH = 1000;
const STALE_AGENT_MS = 24 * 3_600_000;

/**
 * Deletes completed and cancelled jobs older than the retention window, in batches of 1,000 with a short
 * pause between them so the hot path never waits behind a long delete. Dead jobs stay until purged.
 */
export function createRetention(options: {
  pool: pg.Pool;
  db: SchemaDb;
  retentionMs: number;
  intervalMs: number;
  logger: Logger;
}): IntervalService {
  const { pool, db, retentionMs, logger } = options;
  return new IntervalService(
    'retention',
    options.intervalMs,
    async () => {
      await runExclusively(pool, `wida_retention:${db.schema}`, async () => {
        let deleted = 0;
        for (;;) {
          const n = await jobDeleteFinished(db, { retentionMs, limit: BATCH });
          deleted += n;
          if (n < BATCH) break;
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
        await agentDeleteStale(db, STALE_AGENT_MS);
        if (deleted > 0) logger.info('retention deleted finished jobs', { deleted });
      });
    },
    (error) => logger.error('retention failed', { error: (error as Error).message }),
  );
}
