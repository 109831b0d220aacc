/**
 * The core engine across real processes: several agents in child processes (test/fixtures/agent-child.mjs,
 * which runs the built dist/) against one schema. Every handler run is recorded in "<schema>".executions,
 * so "ran exactly once" and "ran again after its agent died" are read from the database, not assumed.
 */
import { describe, expect, it } from 'vitest';
import { jobClaimBatch, jobCompleteMany, jobExtendLeases, jobFailMany, jobRescueExpired } from '../src/shared/db/queries/jobs-runs.js';
import { useChildProcessHarness } from './fixtures/harness.js';
import { useTestSchema, waitFor } from './support/database.js';
import { startAgentChild, stopChild, waitForOutput } from './fixtures/children.js';

const t = useTestSchema('proc');

interface Execution {
  job_id: number;
  agent: string;
  pid: number;
  attempt: number;
  at: Date;
}

useChildProcessHarness(t);

function childConfig(name: string, options: Record<string, unknown> = {}) {
  return { databaseUrl: t.url, schema: t.schema, name, pollIntervalMs: 50, rescueIntervalMs: 200, ...options };
}

async function executions(jobId?: number): Promise<Execution[]> {
  const { rows } = await t.pool.query(
    `SELECT job_id::int, agent, pid, attempt, at FROM "${t.schema}".executions
      WHERE $1::bigint IS NULL OR job_id = $1 ORDER BY at, job_id`,
    [jobId ?? null],
  );
  return rows;
}

// Rescued jobs wait for their backoff before the next attempt; keep it short so the tests stay fast.
const QUICK_RETRY = { strategy: 'fixed', base: 50, jitter: 0 } as const;

describe('agents in separate processes', () => {
  it('4 agent processes x concurrency 8 run 2,000 jobs, every job exactly once', async () => {
    const agents = await Promise.all(
      [1, 2, 3, 4].map((i) => startAgentChild(childConfig(`agent-${i}`, { concurrency: 8, leaseMs: 10_000 }))),
    );
    const enqueued = await t.client.enqueueMany(Array.from({ length: 2000 }, (_, i) => ({ task: 'quick', payload: { i } })));
    expect(enqueued).toHaveLength(2000);

    await waitFor(
      '2,000 jobs completed',
      async () => {
        const { rows } = await t.pool.query(`SELECT count(*)::int AS n FROM "${t.schema}".jobs WHERE state = 'completed'`);
        return rows[0].n === 2000;
      },
      30_000,
    );

    const { rows: perJob } = await t.pool.query(
      `SELECT job_id::int, count(*)::int AS runs FROM "${t.schema}".executions GROUP BY job_id HAVING count(*) <> 1`,
    );
    expect(perJob, 'jobs that did not run exactly once').toEqual([]);
    const { rows: totals } = await t.pool.query(
      `SELECT count(*)::int AS runs, count(DISTINCT job_id)::int AS jobs, count(DISTINCT agent)::int AS agents
         FROM "${t.schema}".executions`,
    );
    expect(totals[0].runs).toBe(2000);
    expect(totals[0].jobs).toBe(2000);
    expect(totals[0].agents, 'agents that ran jobs').toBeGreaterThan(1);
    const { rows: ran } = await t.pool.query(`SELECT array_agg(job_id::int ORDER BY job_id) AS ids FROM "${t.schema}".executions`);
    expect(ran[0].ids).toEqual(enqueued.map((job) => job.id).sort((a, b) => a - b));

    // Each job was completed by the agent that ran it, on its first attempt, with nothing in its attempt log.
    const { rows: consistent } = await t.pool.query(
      `SELECT count(*)::int AS n FROM "${t.schema}".jobs j JOIN "${t.schema}".executions e ON e.job_id = j.id
        WHERE j.state = 'completed' AND j.attempt = 1 AND j.attempt_log = '[]' AND j.result->>'agent' = e.agent
          AND j.finished_at IS NOT NULL AND j.lease_expires_at IS NULL`,
    );
    expect(consistent[0].n).toBe(2000);

    const exits = await Promise.all(agents.map((agent) => stopChild(agent)));
    expect(exits).toEqual(agents.map(() => ({ code: 0, signal: null })));
  }, 50_000);

  it('a job whose agent is killed with SIGKILL runs again on another agent once its lease expires', async () => {
    const leaseMs = 2_000;
    // The victim's `slow` jobs would take a minute; the survivor's finish at once.
    const victim = await startAgentChild(childConfig('victim', { concurrency: 2, leaseMs, heartbeatIntervalMs: 500, slowMs: 60_000 }));
    const jobs = await t.client.enqueueMany([0, 1, 2].map((i) => ({ task: 'slow', payload: { i }, backoff: QUICK_RETRY })));
    const ids = jobs.map((job) => job.id);
    // Two run, the third waits in the victim's prefetch buffer: both kinds must survive the kill.
    await waitFor('the victim running two jobs and holding the third', async () => {
      const running = await executions();
      const { rows } = await t.pool.query(
        `SELECT count(*)::int AS n FROM "${t.schema}".jobs WHERE state = 'running' AND claimed_by = $1`,
        [victim.agentId],
      );
      return running.length === 2 && rows[0].n === 3;
    });
    const survivor = await startAgentChild(childConfig('survivor', { concurrency: 2, leaseMs, slowMs: 0 }));

    victim.process.kill('SIGKILL');
    expect(await victim.exited).toEqual({ code: null, signal: 'SIGKILL' });

    await waitFor(
      'the three jobs completed',
      async () => {
        const rows = await Promise.all(ids.map((id) => t.client.getJob(id)));
        return rows.every((row) => row.state === 'completed');
      },
      15_000,
    );

    const ranOnVictim = new Set((await executions()).filter((e) => e.agent === 'victim').map((e) => e.job_id));
    expect(ranOnVictim.size).toBe(2);
    for (const id of ids) {
      const job = await t.client.getJob(id);
      expect(job.state).toBe('completed');
      expect(job.attempt).toBe(2);
      expect(job.claimedBy).toBe(survivor.agentId);
      expect(job.result).toEqual({ agent: 'survivor' });
      expect(job.attemptLog).toHaveLength(1);
      expect(job.attemptLog[0]).toMatchObject({ attempt: 1, agent: victim.agentId, outcome: 'lease_expired', error: 'lease expired' });

      const runs = await executions(id);
      expect(runs.map((run) => run.agent)).toEqual(ranOnVictim.has(id) ? ['victim', 'survivor'] : ['survivor']);
      // Taken over only after the lease ran out, not before: the lease started when the victim claimed it.
      const claimedByVictimAt = job.attemptLog[0].startedAt!.getTime();
      const rerunAt = runs[runs.length - 1].at.getTime();
      expect(rerunAt - claimedByVictimAt).toBeGreaterThanOrEqual(leaseMs - 1);
    }

    expect(await stopChild(survivor)).toEqual({ code: 0, signal: null });
  }, 30_000);
});

describe('fencing: a late completion from an agent whose lease was taken over', () => {
  it('is rejected by the query layer; the new holder keeps the job and completes it', async () => {
    const db = t.db;
    const [{ id }] = await t.client.enqueueMany([{ task: 'fenced' }]);
    const claim = (agentId: string, now?: Date) =>
      jobClaimBatch(db, { agentId, leaseMs: 30_000, queues: null, tasks: ['fenced'], limit: 10, now });

    const [runA] = await claim('agent-a');
    expect(runA).toMatchObject({ id, attempt: 1 });

    // Agent A freezes; time passes beyond its lease and the rescuer takes the job back.
    const later = new Date(Date.now() + 10 * 60_000);
    const rescued = await jobRescueExpired(db, { limit: 100, now: later });
    expect(rescued).toEqual([{ id, state: 'pending', queue: 'default' }]);

    // Agent B claims it (after its backoff, hence even later).
    const [runB] = await claim('agent-b', new Date(later.getTime() + 60 * 60_000));
    expect(runB).toMatchObject({ id, attempt: 2 });
    expect(runB.leaseEpoch).toBeGreaterThan(runA.leaseEpoch);

    // A wakes up and reports: its completion, failure and lease extension are all refused.
    const refRunA = { id, leaseEpoch: runA.leaseEpoch };
    expect(await jobCompleteMany(db, [refRunA], [JSON.stringify({ by: 'a' })])).toEqual(new Set());
    expect(await jobFailMany(db, [{ ...refRunA, outcome: 'failed', error: 'late failure from A' }])).toEqual(new Map());
    expect(await jobExtendLeases(db, [refRunA], 30_000)).toEqual({ renewed: new Set(), busy: new Set() });
    let row = await t.client.getJob(id);
    expect(row).toMatchObject({ state: 'running', claimedBy: 'agent-b', leaseEpoch: runB.leaseEpoch, attempt: 2, result: null });
    expect(row.finishedAt).toBeNull();
    expect(row.attemptLog).toHaveLength(1);
    expect(row.attemptLog[0]).toMatchObject({ attempt: 1, agent: 'agent-a', outcome: 'lease_expired' });

    // B's completion is the one that counts.
    expect(await jobCompleteMany(db, [{ id, leaseEpoch: runB.leaseEpoch }], [JSON.stringify({ by: 'b' })])).toEqual(new Set([id]));
    // And A, later still, cannot overwrite it.
    expect(await jobCompleteMany(db, [refRunA], [JSON.stringify({ by: 'a' })])).toEqual(new Set());
    row = await t.client.getJob(id);
    expect(row).toMatchObject({ state: 'completed', claimedBy: 'agent-b', result: { by: 'b' }, attempt: 2 });
  });

  it('an agent process frozen with SIGSTOP and resumed with SIGCONT has its late completion rejected', async () => {
    const leaseMs = 2_000;
    // No maintenance on the agent to be frozen: a frozen rescuer would hold the rescuer's advisory lock.
    // Its heartbeat is slow on purpose, so that on resume the handler finishes before a heartbeat could
    // notice the lost lease: the completion itself must be refused.
    const frozen = await startAgentChild(
      childConfig('frozen', { concurrency: 1, leaseMs, heartbeatIntervalMs: 60_000, maintenance: false, slowMs: 1_000 }),
    );
    const [{ id }] = await t.client.enqueueMany([{ task: 'slow', backoff: QUICK_RETRY }]);
    await waitFor('the job running on the agent to be frozen', async () => (await executions(id)).length === 1);
    frozen.process.kill('SIGSTOP');

    const other = await startAgentChild(childConfig('other', { concurrency: 1, leaseMs, slowMs: 3_000 }));
    await waitFor('the job running again on the other agent', async () => (await executions(id)).length === 2, 10_000);
    const runs = await executions(id);
    expect(runs.map((run) => run.agent)).toEqual(['frozen', 'other']);

    frozen.process.kill('SIGCONT');
    // The frozen agent's handler finishes first thing after the resume and reports a completion...
    await waitForOutput(frozen, 'stderr', new RegExp(`completion rejected.*"jobId":${id}\\b`), 5_000);
    // ...which changed nothing: the job still runs under the other agent (which sleeps 3 s).
    const during = await t.client.getJob(id);
    expect(during).toMatchObject({ state: 'running', claimedBy: other.agentId, attempt: 2, result: null });

    await waitFor('the job completed by the other agent', async () => (await t.client.getJob(id)).state === 'completed', 10_000);
    const job = await t.client.getJob(id);
    expect(job).toMatchObject({ state: 'completed', claimedBy: other.agentId, attempt: 2, result: { agent: 'other' } });
    expect(job.attemptLog).toHaveLength(1);
    expect(job.attemptLog[0]).toMatchObject({ attempt: 1, agent: frozen.agentId, outcome: 'lease_expired', error: 'lease expired' });
    expect((await executions(id)).map((run) => run.agent)).toEqual(['frozen', 'other']);

    const exits = await Promise.all([stopChild(frozen), stopChild(other)]);
    expect(exits).toEqual([
      { code: 0, signal: null },
      { code: 0, signal: null },
    ]);
  }, 30_000);
});
