import type pg from 'pg';
import type { SchemaDb } from '../../shared/db/sql.js';
import { agentDeleteStale } from '../../shared/db/queries/agents.js';
import { jobDeleteFinished } from '../../shared/db/queries/jobs.js';
import { workflowDeleteJobless } from '../../shared/db/queries/workflows.js';
import type { Logger } from '../../shared/logger.js';
import { IntervalService } from '../service.js';
import { asLeader, type LeaderFence } from './fence.js';

const BATCH = 1000;
const STALE_AGENT_MS = 24 * 3_600_000;

/**
 * Deletes completed and cancelled jobs older than the retention window, in batches of 1,000 with a short
 * pause between them so the hot path never waits behind a long delete. Dead jobs stay until purged.
 * Workflows none of whose jobs are left go too, a window of 1,000 per pass, walking the table from a cursor
 * so that workflows that never finish (a node kept in the DLQ) do not stall the walk.
 * A leader-only duty: each batch runs in a transaction that checks the leader's term first.
 */
export function createRetention(options: {
  pool: pg.Pool;
  db: SchemaDb;
  fence: LeaderFence;
  retentionMs: number;
  intervalMs: number;
  logger: Logger;
}): IntervalService {
  const { pool, db, fence, retentionMs, logger } = options;
  let workflowCursor = 0;
  return new IntervalService(
    'retention',
    options.intervalMs,
    async () => {
      let deleted = 0;
      for (;;) {
        let n = 0;
        const ran = await asLeader(pool, db, fence, async (tx) => {
          n = await jobDeleteFinished(tx, { retentionMs, limit: BATCH });
        });
        if (!ran) return;
        deleted += n;
        if (n < BATCH) break;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      let workflows = 0;
      await asLeader(pool, db, fence, async (tx) => {
        const pass = await workflowDeleteJobless(tx, { afterId: workflowCursor, limit: BATCH });
        workflowCursor = pass.nextAfterId;
        workflows = pass.deleted;
      });
      await asLeader(pool, db, fence, (tx) => agentDeleteStale(tx, STALE_AGENT_MS).then(() => {}));
      if (deleted > 0 || workflows > 0) logger.info('retention deleted finished jobs', { deleted, workflows });
    },
    (error) => logger.error('retention failed', { error: (error as Error).message }),
    // Never urgent: a new leader (just started, or taking over under load) first lets the hot path run,
    // and a pass that finds nothing old enough reads the whole table.
    Math.min(options.intervalMs, 10_000),
  );
}
