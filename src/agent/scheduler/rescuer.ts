import type pg from 'pg';
import type { SchemaDb } from '../../shared/db/sql.js';
import { jobRescueExpired } from '../../shared/db/queries/jobs-runs.js';
import { notifyJobsReady } from '../../shared/db/queries/notifications.js';
import type { Logger } from '../../shared/logger.js';
import { IntervalService } from '../service.js';
import { asLeader, type LeaderFence } from './fence.js';

const BATCH = 1000;

/**
 * Returns jobs whose lease expired (their agent died) to pending as a failed attempt, or to the DLQ.
 * A leader-only duty: each batch runs in a transaction that checks the leader's term first.
 */
export function createRescuer(options: { pool: pg.Pool; db: SchemaDb; fence: LeaderFence; intervalMs: number; logger: Logger }): IntervalService {
  const { pool, db, fence, logger } = options;
  return new IntervalService(
    'rescuer',
    options.intervalMs,
    async () => {
      for (let more = true; more; ) {
        more = false;
        const ran = await asLeader(pool, db, fence, async (tx) => {
          const rescued = await jobRescueExpired(tx, { limit: BATCH });
          if (rescued.length > 0) {
            logger.warn('rescued jobs whose lease expired', {
              jobs: rescued.map((job) => job.id),
              dead: rescued.filter((job) => job.state === 'dead').map((job) => job.id),
            });
            await notifyJobsReady(tx, [...new Set(rescued.map((job) => job.queue))]);
          }
          more = rescued.length === BATCH;
        });
        if (!ran) return;
      }
    },
    (error) => logger.error('rescuer failed', { error: (error as Error).message }),
  );
}
