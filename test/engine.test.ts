import { describe, expect, it } from 'vitest';
import { useAgents } from './support/agents.js';
import { countByState, useTestSchema, waitFor } from './support/database.js';

const t = useTestSchema('engine');
const startAgent = useAgents(t);

describe('agent processing', () => {
  it('runs enqueued jobs and records completion', async () => {
    const seen: number[] = [];
    await startAgent({ handlers: { smoke: (payload: { n: number }) => void seen.push(payload.n) } });
    const jobs = await t.client.enqueueMany([1, 2, 3].map((n) => ({ task: 'smoke', payload: { n } })));
    await waitFor('three jobs completed', async () => {
      const states = await Promise.all(jobs.map((job) => t.client.getJob(job.id)));
      return states.every((job) => job.state === 'completed');
    });
    expect(seen.sort()).toEqual([1, 2, 3]);
    expect((await countByState(t)).completed).toBeGreaterThanOrEqual(3);
  });
});

describe('leases', () => {
  it('renews the leases of running and buffered jobs while they wait past the lease: nothing is rescued', async () => {
    // Lease 900 ms, renewed every 300 ms; each job runs 1.2 s on one slot, so the second waits in the
    // buffer for 1.2 s and then runs 1.2 s: both only survive the rescuer (every 100 ms) if renewed.
    const runs: number[] = [];
    await startAgent({
      concurrency: 1,
      prefetch: 5,
      leaseMs: 900,
      heartbeatIntervalMs: 300,
      rescueIntervalMs: 100,
      handlers: {
        slow: async (payload: { n: number }) => {
          runs.push(payload.n);
          await new Promise((resolve) => setTimeout(resolve, 1_200));
        },
      },
    });
    const jobs = await t.client.enqueueMany([1, 2].map((n) => ({ task: 'slow', payload: { n } })));
    await waitFor('both slow jobs completed', async () => {
      const states = await Promise.all(jobs.map((job) => t.client.getJob(job.id)));
      return states.every((job) => job.state === 'completed');
    }, 10_000);
    expect(runs).toEqual([1, 2]);
    for (const job of jobs) expect(await t.client.getJob(job.id)).toMatchObject({ attempt: 1, attemptLog: [] });
  });
});
