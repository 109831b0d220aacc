import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Completer } from '../src/agent/worker/completer.js';
import { InProcessExecutor } from '../src/agent/worker/executors/executor.js';
import { WorkerPool } from '../src/agent/worker/worker-pool.js';
import { SchemaDb, type Queryable } from '../src/shared/db/sql.js';
import { silentLogger } from '../src/shared/logger.js';
import { useTestSchema, waitFor } from './support/database.js';
import { insertJobs } from './support/factories.js';

const t = useTestSchema('wpool');
let hotPool: pg.Pool;
beforeAll(async () => {
  hotPool = new pg.Pool({ connectionString: t.url, max: 2 });
  // Both connections open before the test, so the two claims go out at once.
  await Promise.all([hotPool.query('SELECT pg_sleep(0.02)'), hotPool.query('SELECT pg_sleep(0.02)')]);
});
afterAll(() => hotPool.end());

/**
 * The real database, with the answers of the first two claims delivered in reverse: the first claim runs
 * (and locks its rows) first, the second runs after it, and the second's answer is handed over first.
 */
function claimsAnsweredInReverse(pool: pg.Pool): Queryable {
  let claims = 0;
  let firstRan!: () => void;
  const firstHasRun = new Promise<void>((resolve) => (firstRan = resolve));
  let secondDelivered!: () => void;
  const secondHasBeenDelivered = new Promise<void>((resolve) => (secondDelivered = resolve));
  return {
    async query(config) {
      if (!config.name?.includes('job_claim_batch')) return pool.query(config);
      const n = ++claims;
      if (n === 1) {
        const result = await pool.query(config);
        firstRan();
        await secondHasBeenDelivered;
        return result;
      }
      if (n === 2) {
        await firstHasRun;
        const result = await pool.query(config);
        setTimeout(secondDelivered, 50); // after the pool has buffered (and started) what it brought
        return result;
      }
      return pool.query(config);
    },
  };
}

describe('the worker pool', () => {
  it('keeps its buffer in claim order when the later of two claims in flight lands first', async () => {
    // Low priority first by id, so only the claim order (priority) puts the critical ones first.
    await insertJobs(t.pool, t.schema, [
      ...['low-1', 'low-2', 'low-3'].map((name) => ({ task: 'ordered', priority: 0, payload: { name } })),
      ...['critical-1', 'critical-2', 'critical-3'].map((name) => ({ task: 'ordered', priority: 3, payload: { name } })),
    ]);
    const started: string[] = [];
    const workers = new WorkerPool({
      agentId: 'worker-pool-test',
      db: new SchemaDb(claimsAnsweredInReverse(hotPool), t.schema),
      releaseDb: t.db,
      executor: new InProcessExecutor({
        ordered: async (payload: { name: string }) => {
          started.push(payload.name);
          await new Promise((resolve) => setTimeout(resolve, 150));
        },
      }),
      completer: new Completer(t.db, silentLogger),
      logger: silentLogger,
      queues: null,
      // capacity 6: two claims of 3 at once
      concurrency: 1,
      prefetch: 5,
      leaseMs: 30_000,
      defaultTimeoutMs: 60_000,
      queueConcurrency: {},
    });
    try {
      workers.wake();
      await waitFor('all six jobs started', () => started.length === 6, 10_000);
    } finally {
      await workers.stop(5_000);
    }
    // The first claim took the critical jobs, the second the low ones and landed first: its first job started
    // at once (the slot was free), and then the critical ones go ahead of the low ones still buffered.
    expect(started).toEqual(['low-1', 'critical-1', 'critical-2', 'critical-3', 'low-2', 'low-3']);
  });
});
