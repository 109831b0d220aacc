/**
 * Leases an agent cannot renew: through a partition (the database silent), the agent's own clock says when its
 * leases ran out, and it stops the handlers and starts none of the jobs it still buffers; on a slow but working
 * network, renewals wait as long as the leases allow instead of giving up. The database sits behind a loopback
 * proxy that can stop passing bytes or delay them.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { JobContext } from '../src/agent/worker/executors/executor.js';
import type { Logger } from '../src/shared/logger.js';
import { useAgents } from './support/agents.js';
import { useTestSchema, waitFor } from './support/database.js';
import { DatabaseProxy } from './support/proxy.js';

const t = useTestSchema('lease_loss');
const startAgent = useAgents(t);
const proxies: DatabaseProxy[] = [];

afterEach(async () => {
  // Reset, so the agents stop at once instead of waiting on a silent database.
  for (const proxy of proxies) proxy.cut();
  await Promise.all(proxies.splice(0).map((proxy) => proxy.close()));
});

async function proxied(): Promise<{ proxy: DatabaseProxy; url: string }> {
  const started = await DatabaseProxy.start(t.url);
  proxies.push(started.proxy);
  return started;
}

function recordingLogger(): Logger & { warnings: { message: string; fields?: Record<string, unknown> }[] } {
  const warnings: { message: string; fields?: Record<string, unknown> }[] = [];
  return { warnings, debug: () => {}, info: () => {}, warn: (message, fields) => void warnings.push({ message, fields }), error: () => {} };
}

describe('leases the agent cannot renew', () => {
  it('through a partition longer than the lease: the running handler is aborted when its lease runs out, and buffered jobs are not started', async () => {
    const { proxy, url } = await proxied();
    const ids = (await t.client.enqueueMany([{ task: 'partitioned' }, { task: 'partitioned' }, { task: 'partitioned' }])).map((job) => job.id);
    const started: number[] = [];
    const aborted: { id: number; reason: unknown; afterMs: number }[] = [];
    const logger = recordingLogger();
    let silencedAt = 0;
    await startAgent({
      databaseUrl: url,
      logger,
      maintenance: false,
      concurrency: 1,
      prefetch: 3,
      leaseMs: 1_500,
      heartbeatIntervalMs: 300,
      handlers: {
        partitioned: (_payload: unknown, context: JobContext) => {
          started.push(context.job.id);
          return new Promise((_resolve, reject) =>
            context.signal.addEventListener('abort', () => {
              aborted.push({ id: context.job.id, reason: context.signal.reason, afterMs: performance.now() - silencedAt });
              reject(context.signal.reason);
            }),
          );
        },
      },
    });
    await waitFor('the first job to run and the others to be buffered', async () => started.length === 1 || undefined);
    silencedAt = performance.now();
    proxy.silence();
    // It ran until the partition healed (if ever), beside the run the rescuer had started elsewhere.
    await waitFor('the handler to be aborted', async () => aborted.length === 1 || undefined, 5_000);
    expect(aborted[0]).toMatchObject({ id: started[0], reason: expect.objectContaining({ outcome: 'lease_lost' }) });
    expect(aborted[0].afterMs).toBeLessThan(1_500 + 1_000);
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(started).toHaveLength(1); // the two buffered jobs' leases ran out too: not started
    const notStarted = logger.warnings.flatMap((warning) => (warning.fields?.notStarted as number[] | undefined) ?? []);
    expect(new Set(notStarted)).toEqual(new Set(ids.filter((id) => id !== started[0])));
  });

  it('on a slow but working network (300 ms each way), renewals wait for their answer: a job twice its lease completes, beside a completion a client keeps locked', async () => {
    const { proxy, url } = await proxied();
    const logger = recordingLogger();
    let finishHeld: (() => void) | undefined;
    await startAgent({
      databaseUrl: url,
      logger,
      maintenance: false,
      concurrency: 2,
      leaseMs: 6_000,
      heartbeatIntervalMs: 1_000,
      handlers: {
        held: () => new Promise((resolve) => (finishHeld = () => resolve('held'))),
        slowNetwork: () => new Promise((resolve) => setTimeout(() => resolve('done'), 12_000)),
      },
    });
    // The leader (rescuing) reaches the database directly: its self-check would not survive the slow network.
    await startAgent({ queues: ['elsewhere'], handlers: {}, rescueIntervalMs: 200 });
    const held = await t.client.enqueue({ task: 'held' });
    await waitFor('the first job to run', async () => finishHeld);
    // A client holds the first job's row (attaching a dependent, say): its completion waits, its lease not renewed.
    const locker = await t.pool.connect();
    try {
      await locker.query('BEGIN');
      await locker.query(`SELECT 1 FROM "${t.schema}".jobs WHERE id = $1 FOR UPDATE`, [held.id]);
      proxy.slow(300);
      finishHeld!();
      const { id } = await t.client.enqueue({ task: 'slowNetwork', maxAttempts: 1 });
      // Given up after half a beat (less than a round trip here), every renewal went unanswered although the server
      // had made it, and the agent's own clock saw the lease run out: the handler was aborted and the job, out of
      // attempts, went dead. Bounded by the oldest lease, the held-back completion's cut every renewal to 250 ms.
      await waitFor('the job to finish', async () => ['completed', 'dead'].includes((await t.client.getJob(id)).state) || undefined, 25_000);
      expect(await t.client.getJob(id)).toMatchObject({ state: 'completed', attempt: 1, result: 'done', attemptLog: [] });
      expect(logger.warnings.filter((warning) => warning.message.startsWith('leases ran out'))).toEqual([]);
    } finally {
      await locker.query('ROLLBACK');
      locker.release();
    }
  }, 40_000);

  it('jobs whose leases ran out while a handler blocked the event loop are given back, not started, and run again at once', async () => {
    const logger = recordingLogger();
    const runs: string[] = [];
    await startAgent({
      logger,
      maintenance: false, // no rescuer: only the agent's own give-back brings them back
      concurrency: 1,
      prefetch: 2,
      leaseMs: 1_500,
      heartbeatIntervalMs: 300,
      handlers: {
        blocking: () => {
          const until = performance.now() + 2_000;
          while (performance.now() < until); // a handler that never yields, for longer than a lease
          runs.push('blocking');
        },
        quick: (_payload: unknown, context: JobContext) => void runs.push(`quick ${context.job.id} attempt ${context.job.attempt}`),
      },
    });
    const [blocking, ...quick] = await t.client.enqueueMany([{ task: 'blocking', priority: 'high' }, { task: 'quick' }, { task: 'quick' }]);
    await waitFor('every job to complete', async () => {
      const states = await Promise.all([blocking, ...quick].map(async (job) => (await t.client.getJob(job.id)).state));
      return states.every((state) => state === 'completed') || undefined;
    }, 10_000);
    const notStarted = logger.warnings.flatMap((warning) => (warning.fields?.notStarted as number[] | undefined) ?? []);
    // At least the one claimed beside the blocking job (the other may have been claimed after the block).
    expect(notStarted.length).toBeGreaterThan(0);
    expect(quick.map((job) => job.id)).toEqual(expect.arrayContaining(notStarted));
    // Given back without using up an attempt, claimed again: each ran once, in its first attempt.
    expect(runs.sort()).toEqual(['blocking', ...quick.map((job) => `quick ${job.id} attempt 1`)].sort());
  });
});
