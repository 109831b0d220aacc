/**
 * Leader election in one process: several agents on one schema, one leads; the fence refuses a stale term;
 * a leader whose session is terminated steps down. Failover across real processes, with measured times,
 * is in test/leader-processes.test.ts.
 */
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { createAgent, type Agent, type AgentOptions } from '../src/agent/agent.js';
import { asLeader } from '../src/agent/scheduler/fence.js';
import { listAgents } from '../src/shared/admin.js';
import { getLeader } from '../src/shared/cron-admin.js';
import { SchemaDb } from '../src/shared/db/sql.js';
import { leaderAttemptElect, leaderCheckSession, leaderTryLock, leaderUnlock } from '../src/shared/db/queries/leader.js';
import { silentLogger } from '../src/shared/logger.js';
import { useTestSchema, waitFor } from './support/database.js';

const t = useTestSchema('lead');
const started: Agent[] = [];

afterEach(async () => {
  await Promise.all(started.splice(0).map((agent) => agent.stop()));
});

async function startAgent(options: Partial<AgentOptions> = {}): Promise<Agent> {
  const agent = createAgent({ databaseUrl: t.url, schema: t.schema, logger: silentLogger, pollIntervalMs: 50, ...options });
  started.push(agent);
  await agent.start();
  return agent;
}

async function dedicatedSession(): Promise<{ db: SchemaDb; client: pg.Client }> {
  const client = new pg.Client({ connectionString: t.url });
  await client.connect();
  return { db: new SchemaDb(client, t.schema), client };
}

describe('leader election', () => {
  it('of three agents exactly one leads, and the leader row names it with a term', async () => {
    const agents = await Promise.all([startAgent(), startAgent(), startAgent()]);
    const leader = await waitFor('a leader', () => agents.find((agent) => agent.isLeader));
    await new Promise((resolve) => setTimeout(resolve, 600)); // a full poll: nobody else takes over
    expect(agents.filter((agent) => agent.isLeader)).toEqual([leader]);
    const row = await getLeader(t.db);
    expect(row).toMatchObject({ agentId: leader.id });
    expect(row!.term).toBeGreaterThanOrEqual(1);
    expect(row!.backendPid).toEqual(expect.any(Number));
    expect(await t.client.getLeader()).toEqual(row);
    await waitFor('the agents to register', async () => (await t.client.listAgents()).length >= 3);
    const listed = (await t.client.listAgents()).filter((agent) => agents.some((a) => a.id === agent.id));
    expect(listed.filter((agent) => agent.isLeader).map((agent) => agent.id)).toEqual([leader.id]);
  });

  it('an agent started with maintenance: false never leads', async () => {
    const worker = await startAgent({ maintenance: false });
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(worker.isLeader).toBe(false);
    expect((await getLeader(t.db))?.agentId).not.toBe(worker.id);
  });

  it('stop() resigns: another agent leads under a higher term within a second', async () => {
    const agents = await Promise.all([startAgent(), startAgent()]);
    const first = await waitFor('a leader', () => agents.find((agent) => agent.isLeader));
    const { term } = (await getLeader(t.db))!;
    const other = agents.find((agent) => agent !== first)!;
    const begin = performance.now();
    await first.stop();
    await waitFor('the other agent to lead', () => other.isLeader, 2_000);
    expect(performance.now() - begin).toBeLessThan(1_000);
    expect(await getLeader(t.db)).toMatchObject({ agentId: other.id, term: term + 1 });
  });

  it('a leader whose session is terminated steps down; another takes over', async () => {
    const agents = await Promise.all([startAgent({ leaderCheckIntervalMs: 200 }), startAgent({ leaderCheckIntervalMs: 200 })]);
    const first = await waitFor('a leader', () => agents.find((agent) => agent.isLeader));
    const { backendPid } = (await getLeader(t.db))!;
    await t.pool.query('SELECT pg_terminate_backend($1)', [backendPid]);
    await waitFor('the old leader to step down', () => !first.isLeader, 2_000);
    const other = agents.find((agent) => agent !== first)!;
    await waitFor('the other agent to lead', () => other.isLeader, 3_000);
    expect((await getLeader(t.db))?.agentId).toBe(other.id);
  });
});

describe('the leader lock and the fence', () => {
  it('only one session gets the lock; the self-check sees it, and fails once it is released', async () => {
    const a = await dedicatedSession();
    const b = await dedicatedSession();
    try {
      expect(await leaderTryLock(a.db)).toBe(true);
      expect(await leaderTryLock(b.db)).toBe(false);
      const term = await leaderAttemptElect(a.db, 'agent-a');
      expect(await leaderCheckSession(a.db, term)).toBe(true);
      expect(await leaderCheckSession(b.db, term)).toBe(false); // b does not hold the lock
      await leaderUnlock(a.db);
      expect(await leaderCheckSession(a.db, term)).toBe(false);
    } finally {
      await a.client.end();
      await b.client.end();
    }
  });

  it('a leader whose session is gone is not reported as leading, though its row stays until the next election', async () => {
    const a = await dedicatedSession();
    const ended = { value: false };
    a.client.on('error', () => {});
    try {
      expect(await leaderTryLock(a.db)).toBe(true);
      await leaderAttemptElect(a.db, 'agent-gone');
      await t.pool.query(`INSERT INTO "${t.schema}".agents (id, host, pid, version, concurrency, state) VALUES ('agent-gone', 'h', 1, 'v', 1, 'running')`);
      expect(await getLeader(t.db)).toMatchObject({ agentId: 'agent-gone' });
      expect((await listAgents(t.db)).find((agent) => agent.id === 'agent-gone')).toMatchObject({ isLeader: true });
      // As when its process is killed outright: the session ends, and the lock with it.
      const { rows } = await a.client.query('SELECT pg_backend_pid() AS pid');
      await t.pool.query('SELECT pg_terminate_backend($1)', [rows[0].pid]);
      ended.value = true;
      await waitFor('the session is gone', async () => (await t.pool.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [rows[0].pid])).rowCount === 0);
      expect((await t.pool.query(`SELECT agent_id FROM "${t.schema}".leader`)).rows).toEqual([{ agent_id: 'agent-gone' }]);
      expect(await getLeader(t.db)).toBeUndefined();
      expect((await listAgents(t.db)).find((agent) => agent.id === 'agent-gone')).toMatchObject({ isLeader: false });
    } finally {
      if (!ended.value) await a.client.end();
      await t.pool.query(`DELETE FROM "${t.schema}".agents WHERE id = 'agent-gone'`);
      await t.pool.query(`UPDATE "${t.schema}".leader SET agent_id = NULL`);
    }
  });

  it('a duty under a stale term writes nothing', async () => {
    const a = await dedicatedSession();
    try {
      expect(await leaderTryLock(a.db)).toBe(true);
      const old = await leaderAttemptElect(a.db, 'agent-a');
      const current = await leaderAttemptElect(a.db, 'agent-b'); // a newer election
      expect(current.term).toBe(old.term + 1);
      let ran = 0;
      const work = async () => void ran++;
      expect(await asLeader(t.pool, t.db, { leader: old, isCurrent: () => true, idleLimitMs: 4_000 }, work)).toBe(false);
      expect(await asLeader(t.pool, t.db, { leader: current, isCurrent: () => false, idleLimitMs: 4_000 }, work)).toBe(false);
      expect(ran).toBe(0);
      expect(await asLeader(t.pool, t.db, { leader: current, isCurrent: () => true, idleLimitMs: 4_000 }, work)).toBe(true);
      expect(ran).toBe(1);
      await leaderUnlock(a.db);
    } finally {
      await a.client.end();
    }
  });

  it('a leader frozen inside a duty holds up no election: the server ends its transaction after the idle limit', async () => {
    const a = await dedicatedSession();
    const b = await dedicatedSession();
    try {
      const leader = await leaderAttemptElect(a.db, 'agent-a');
      let entered!: () => void;
      const inside = new Promise<void>((resolve) => (entered = resolve));
      const frozen = asLeader(t.pool, t.db, { leader, isCurrent: () => true, idleLimitMs: 300 }, async () => {
        entered();
        await new Promise((resolve) => setTimeout(resolve, 3_000)); // stalled with the leader row share-locked
      });
      await inside;
      // Without the limit, this election would wait on the row for the whole 3 s and be cancelled at 2 s.
      await b.client.query('SET statement_timeout = 2000');
      const next = await leaderAttemptElect(b.db, 'agent-b');
      expect(next).toEqual({ agentId: 'agent-b', term: leader.term + 1 });
      // The stalled duty learns its transaction is gone (and the process does not crash on the dead session).
      await expect(frozen).rejects.toThrow(/idle-in-transaction|not queryable|terminat/);
    } finally {
      await a.client.end();
      await b.client.end();
    }
  });
});
