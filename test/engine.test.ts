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
