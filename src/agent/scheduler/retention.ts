import type pg from 'pg';
import type { SchemaDb } from '../../shared/db/sql.js';
import { agentDeleteStale } from '../../shared/db/queries/agents.js';
import { jobDeleteFinished } from '../../shared/db/queries/jobs.js';
import { workflowDeleteJobless } from '../../shared/db/queries/workflows.js';
import type { Logger } from '../../shared/logger.js';
import { IntervalService } from '../service.js';
import { asLeader, type LeaderFence } from './fence.js';

const BATCH = 1000;
/** Windows of workflows looked at per pass: 100,000 workflows a pass, the walk going on from there next pass. */
const MAX_WORKFLOW_WINDOWS = 100;
const STALE_AGENT_MS = 24 * 3_600_000;
const PAUSE_MS = 50;

/**
 * Deletes completed and cancelled jobs older than the retention window, in batches of 1,000 with a short
 * pause between them so the hot path never waits behind a long delete. Dead jobs stay until purged.
 * Workflows none of whose jobs are left go too, in windows of 1,000 walking the table from a cursor so that
 * workflows that never finish (a node kept in the DLQ) do not stall the walk: up to 100 windows a pass (one window a
 * pass, 1,000 a minute by default, fell behind any workload finishing more workflows than that).
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
        await pause();
      }
      let workflows = 0;
      for (let window = 0; window < MAX_WORKFLOW_WINDOWS; window++) {
        if (window > 0) await pause();
        const ran = await asLeader(pool, db, fence, async (tx) => {
          const pass = await workflowDeleteJobless(tx, { afterId: workflowCursor, limit: BATCH });
          workflowCursor = pass.nextAfterId;
          workflows += pass.deleted;
        });
        // Back at the start: the whole table was walked.
        if (!ran || workflowCursor === 0) break;
      }
      await asLeader(pool, db, fence, (tx) => agentDeleteStale(tx, STALE_AGENT_MS).then(() => {}));
      if (deleted > 0 || workflows > 0) logger.info('retention deleted finished jobs', { deleted, workflows });
    },
    (error) => logger.error('retention failed', { error: (error as Error).message }),
    // Never urgent: a new leader (just started, or taking over under load) first lets the hot path run,
    // and a pass that finds nothing old enough reads the whole table.
    Math.min(options.intervalMs, 10_000),
  );
}

function pause(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, PAUSE_MS));
}
