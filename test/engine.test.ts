import { afterEach, describe, expect, it } from 'vitest';
import { createAgent, type Agent } from '../src/agent/agent.js';
import { silentLogger } from '../src/shared/logger.js';
import { countByState, useTestSchema, waitFor } from './support/database.js';

const t = useTestSchema('engine');
const agents: Agent[] = [];

afterEach(async () => {
  await Promise.all(agents.splice(0).map((agent) => agent.stop()));
});

function startAgent(options: Partial<Parameters<typeof createAgent>[0]> = {}) {
  const agent = createAgent({ databaseUrl: t.url, schema: t.schema, logger: silentLogger, pollIntervalMs: 50, ...options });
  agents.push(agent);
  return agent.start().then(() => agent);
}

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
