import { afterEach } from 'vitest';
import { createAgent, type Agent, type AgentOptions } from '../../src/agent/agent.js';
import { silentLogger } from '../../src/shared/logger.js';
import type { TestSchema } from './database.js';

/** Stops an agent, or reports that it did not stop in time (it is then left behind, and the test says so). */
export async function stopWithin(agent: Agent, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const stopped = await Promise.race([
    agent.stop().then(() => true),
    new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), ms))),
  ]);
  clearTimeout(timer);
  return stopped;
}

/**
 * In-process agents on the file's test schema, stopped after each test. The leak guard: an agent that
 * does not stop within `stopWithinMs` fails the test that started it.
 */
export function useAgents(t: TestSchema, { stopWithinMs = 10_000 }: { stopWithinMs?: number } = {}) {
  const agents: Agent[] = [];
  afterEach(async () => {
    const results = await Promise.all(agents.splice(0).map((agent) => stopWithin(agent, stopWithinMs)));
    if (results.includes(false)) throw new Error(`an agent did not stop within ${stopWithinMs} ms`);
  });
  return function startAgent(options: Partial<AgentOptions> = {}): Promise<Agent> {
    const agent = createAgent({ databaseUrl: t.url, schema: t.schema, logger: silentLogger, pollIntervalMs: 50, ...options });
    agents.push(agent);
    return agent.start().then(() => agent);
  };
}
