import type pg from 'pg';
import type { SchemaDb } from '../../shared/db/sql.js';
import { jobRescueExpired } from '../../shared/db/queries/jobs.js';
import { notifyJobsReady } from '../../shared/db/queries/notifications.js';
import type { Logger } from '../../shared/logger.js';
import { IntervalService } from '../service.js';
import { runExclusively } from './exclusive.js';

const BATCH = 1000;

/** Returns jobs whose lease expired (their agent died) to pending as a failed attempt, or to the DLQ. */
export function createRescuer(options: { pool: pg.Pool; db: SchemaDb; intervalMs: number; logger: Logger }): IntervalService {
  const { pool, db, logger } = options;
  return new IntervalService(
    'rescuer',
    options.intervalMs,
    async () => {
      await runExclusively(pool, `wida_rescuer:${db.schema}`, async () => {
        for (;;) {
          const rescued = await jobRescueExpired(db, { limit: BATCH });
          if (rescued.length > 0) {
            logger.warn('rescued jobs whose lease expired', {
              jobs: rescued.map((job) => job.id),
              dead: rescued.filter((job) => job.state === 'dead').map((job) => job.id),
            });
            await notifyJobsReady(db, [...new Set(rescued.map((job) => job.queue))]);
          }
          if (rescued.length < BATCH) break;
        }
      });
    },
    (error) => logger.error('rescuer failed', { error: (error as Error).message }),
  );
}
