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

  it('on a slow but working network (300 ms each way), renewals wait for their answer and a job longer than its lease completes', async () => {
    const { proxy, url } = await proxied();
    await startAgent({
      databaseUrl: url,
      maintenance: false,
      concurrency: 1,
      leaseMs: 6_000,
      heartbeatIntervalMs: 1_000,
      handlers: { slowNetwork: () => new Promise((resolve) => setTimeout(() => resolve('done'), 7_000)) },
    });
    // The leader (rescuing) reaches the database directly: its self-check would not survive the slow network.
    await startAgent({ queues: ['elsewhere'], handlers: {}, rescueIntervalMs: 200 });
    proxy.slow(300);
    const { id } = await t.client.enqueue({ task: 'slowNetwork', maxAttempts: 1 });
    // With each renewal given up after half a beat (less than a round trip here), the agent's own clock saw every
    // lease run out (the server had extended it, but no answer said so): the handler was aborted and the job, out of
    // attempts, went dead. Bounded by the time the lease has left, the answers arrive and the job completes.
    await waitFor('the job to finish', async () => ['completed', 'dead'].includes((await t.client.getJob(id)).state) || undefined, 20_000);
    expect(await t.client.getJob(id)).toMatchObject({ state: 'completed', attempt: 1, result: 'done', attemptLog: [] });
  }, 30_000);
});
