/**
 * Retention and workflows: what the agent's retention pass does to the graph around the jobs it deletes.
 */
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { createRetention } from '../src/agent/scheduler/retention.js';
import { leaderAttemptElect, leaderTryLock } from '../src/shared/db/queries/leader.js';
import { jobDeleteFinished } from '../src/shared/db/queries/jobs.js';
import { SchemaDb } from '../src/shared/db/sql.js';
import { silentLogger } from '../src/shared/logger.js';
import { useAgents } from './support/agents.js';
import { useTestSchema, waitFor } from './support/database.js';

const t = useTestSchema('retention');
const startAgent = useAgents(t);

async function job(id: number): Promise<{ state: string; last_error: string | null } | undefined> {
  const { rows } = await t.pool.query(`SELECT state, last_error FROM "${t.schema}".jobs WHERE id = $1`, [id]);
  return rows[0];
}

describe('retention of workflows', () => {
  it('deleting an old cancelled job cancels the dependents still waiting for it (nothing could release them)', async () => {
    const { jobs } = await t.client.enqueueWorkflow({
      nodes: { a: { task: 'x', queue: 'ret_cancel', delay: 3_600_000 }, b: { task: 'x', queue: 'ret_cancel', dependsOn: ['a'] } },
    });
    await t.client.cancelJob(jobs.a);
    await t.client.retryJob(jobs.b); // waits again, blocked by the cancelled a
    expect(await job(jobs.b)).toMatchObject({ state: 'waiting' });

    expect(await jobDeleteFinished(t.db, { retentionMs: 0, limit: 100, now: new Date(Date.now() + 60_000) })).toBe(1);
    expect(await job(jobs.a)).toBeUndefined();
    expect(await job(jobs.b)).toEqual({ state: 'cancelled', last_error: `cancelled: dependency job ${jobs.a} was dropped` });
  });

  it('a completed job deleted by retention does not cancel a dependent that waits for others', async () => {
    const { jobs } = await t.client.enqueueWorkflow({
      nodes: {
        a: { task: 'quick', queue: 'ret_done' },
        later: { task: 'x', queue: 'ret_later', delay: 3_600_000 },
        c: { task: 'x', queue: 'ret_later', dependsOn: ['a', 'later'] },
      },
    });
    await startAgent({ queues: ['ret_done'], retentionMs: 0, retentionIntervalMs: 50, handlers: { quick: () => undefined } });
    await waitFor('the completed job deleted by retention', async () => (await job(jobs.a)) === undefined);
    expect(await job(jobs.c)).toMatchObject({ state: 'waiting' });
  });

  it('the agent deletes workflows none of whose jobs are left', async () => {
    const { workflowId } = await t.client.enqueueWorkflow({
      nodes: { a: { task: 'quick', queue: 'ret_wf' }, b: { task: 'quick', queue: 'ret_wf', dependsOn: ['a'] } },
    });
    await startAgent({ queues: ['ret_wf'], retentionMs: 0, retentionIntervalMs: 50, handlers: { quick: () => undefined } });
    await waitFor('the workflow row deleted', async () => {
      const { rows } = await t.pool.query(`SELECT 1 FROM "${t.schema}".workflows WHERE id = $1`, [workflowId]);
      return rows.length === 0;
    });
    await expect(t.client.getWorkflow(workflowId)).rejects.toMatchObject({ code: 'WORKFLOW_NOT_FOUND' });
  });

  it('one pass walks past the first 1,000 workflows: 5,000 whose jobs are gone all go in one pass', async () => {
    // Nodes naming jobs that no longer exist, as after retention deleted them.
    await t.pool.query(`INSERT INTO "${t.schema}".workflows (name, nodes) SELECT 'gone' || i, jsonb_build_object('a', 1000000000 + i) FROM generate_series(1, 5000) AS i`);
    const session = new pg.Client({ connectionString: t.url });
    await session.connect();
    try {
      const db = new SchemaDb(session, t.schema);
      expect(await leaderTryLock(db)).toBe(true);
      const leader = await leaderAttemptElect(db, 'retention-test');
      const retention = createRetention({ pool: t.pool, db: t.db, fence: { leader, isCurrent: () => true, idleLimitMs: 10_000 }, retentionMs: 86_400_000, intervalMs: 3_600_000, logger: silentLogger });
      retention.trigger();
      await new Promise((resolve) => setTimeout(resolve, 0)); // the pass has begun
      await retention.stop(); // and has ended
      const { rows } = await t.pool.query(`SELECT count(*)::int AS n FROM "${t.schema}".workflows WHERE name LIKE 'gone%'`);
      expect(rows[0].n).toBe(0);
    } finally {
      await session.end();
    }
  });
});

