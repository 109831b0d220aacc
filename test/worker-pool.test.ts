import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JobAbort } from '../src/agent/worker/abort-reasons.js';
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

/**
 * The real database, with the answers of claims held back until `deliver()`; `ran` resolves once a claim that
 * brought jobs has run (and committed). Both claims in flight are held: either may be the one that brings them.
 */
function claimsHeld(pool: pg.Pool): { queryable: Queryable; ran: Promise<void>; deliver: () => void } {
  let ranResolve!: () => void;
  const ran = new Promise<void>((resolve) => (ranResolve = resolve));
  let deliver!: () => void;
  const delivered = new Promise<void>((resolve) => (deliver = resolve));
  return {
    ran,
    deliver,
    queryable: {
      async query(config) {
        if (!config.name?.includes('job_claim_batch')) return pool.query(config);
        const result = await pool.query(config);
        if (result.rows.length > 0) ranResolve();
        await delivered;
        return result;
      },
    },
  };
}

function workerPool(db: SchemaDb, handlers: Record<string, (payload: any) => unknown>, logger = silentLogger): WorkerPool {
  return new WorkerPool({
    agentId: 'worker-pool-test',
    db,
    releaseDb: t.db,
    executor: new InProcessExecutor(handlers),
    completer: new Completer(t.db, silentLogger),
    logger,
    queues: null,
    concurrency: 2,
    prefetch: 2,
    leaseMs: 30_000,
    defaultTimeoutMs: 60_000,
    queueConcurrency: {},
  });
}

describe('what a claim in flight brings', () => {
  it('a run cancelled while the claim travelled does not start; the others do', async () => {
    const [keep, cancel] = await insertJobs(t.pool, t.schema, [
      { task: 'travel_cancel', payload: 'keep' },
      { task: 'travel_cancel', payload: 'cancel' },
    ]);
    const held = claimsHeld(hotPool);
    const started: string[] = [];
    const workers = workerPool(new SchemaDb(held.queryable, t.schema), { travel_cancel: (name: string) => void started.push(name) });
    try {
      workers.wake();
      await held.ran;
      // Claimed (committed) by whichever claim took it, its answer still held.
      await waitFor('both jobs claimed', async () => {
        const { rows } = await t.pool.query(`SELECT count(*)::int AS n FROM "${t.schema}".jobs WHERE id = ANY($1) AND state = 'running'`, [[keep.id, cancel.id]]);
        return rows[0].n === 2;
      });
      const { rows } = await t.pool.query(`SELECT lease_epoch FROM "${t.schema}".jobs WHERE id = $1`, [cancel.id]);
      // As the control message of an operator's cancel does, while the claim's answer is still on its way.
      workers.cancelRun({ id: cancel.id, leaseEpoch: rows[0].lease_epoch }, new JobAbort('cancelled', 'cancelled by an operator'));
      held.deliver();
      await waitFor('the kept job to run', () => started.includes('keep'));
      await new Promise((resolve) => setTimeout(resolve, 100));
    } finally {
      await workers.stop(5_000);
    }
    expect(started).toEqual(['keep']);
    expect(keep.id).toBeLessThan(cancel.id);
  });

  it('jobs of a queue paused while the claim travelled go back to pending, not to a handler', async () => {
    const jobs = await insertJobs(t.pool, t.schema, [
      { task: 'travel_pause', queue: 'travel_paused', payload: 'paused-1' },
      { task: 'travel_pause', queue: 'travel_paused', payload: 'paused-2' },
    ]);
    const held = claimsHeld(hotPool);
    const started: string[] = [];
    const workers = workerPool(new SchemaDb(held.queryable, t.schema), { travel_pause: (name: string) => void started.push(name) });
    try {
      workers.wake();
      await held.ran;
      // As the control message of pauseQueue does.
      await workers.releaseQueue('travel_paused');
      held.deliver();
      await waitFor('both jobs back to pending', async () => {
        const { rows } = await t.pool.query(`SELECT count(*)::int AS n FROM "${t.schema}".jobs WHERE id = ANY($1) AND state = 'pending'`, [jobs.map((job) => job.id)]);
        return rows[0].n === 2;
      });
    } finally {
      await workers.stop(5_000);
    }
    expect(started).toEqual([]);
  });
});

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

describe('claims failing', () => {
  it('with the database unreachable, a failed claim is logged once (then at most every 30 s, with a count), and its return once', async () => {
    let down = true;
    const lines: string[] = [];
    const logger = { ...silentLogger, error: (message: string) => lines.push(`error: ${message}`), info: (message: string) => lines.push(`info: ${message}`) };
    const flaky: Queryable = {
      query: (config) => (down && config.name?.includes('job_claim_batch') ? Promise.reject(new Error('connect ECONNREFUSED')) : t.pool.query(config)),
    };
    const workers = workerPool(new SchemaDb(flaky, t.schema), {}, logger);
    try {
      for (let poll = 0; poll < 10; poll++) {
        workers.wake();
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
      expect(lines).toEqual(['error: claiming jobs failed; will retry on the next poll']);
      down = false;
      workers.wake();
      await waitFor('the claim to work again', () => lines.length === 2);
      expect(lines[1]).toBe('info: claiming jobs works again');
    } finally {
      await workers.stop(0);
    }
  });
});
