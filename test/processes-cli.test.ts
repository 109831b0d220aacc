/**
 * The real `wida agent` command (bin/wida.js -> dist/cli) in a child process: draining on SIGTERM, and
 * refusing a database migrated by a newer Wida. Handlers come from test/fixtures/cli-handlers.mjs and
 * record every run in "<schema>".executions.
 */
import { describe, expect, it } from 'vitest';
import { migrateUp } from '../src/shared/db/migrate.js';
import { useChildProcessHarness } from './fixtures/harness.js';
import { useTestSchema, waitFor } from './support/database.js';
import {
  CLI_HANDLERS,
  WIDA_BIN,
  spawnChild,
  stopChild,
  waitForExit,
  waitForOutput,
  type Child,
} from './fixtures/children.js';

const t = useTestSchema('proc_cli');

useChildProcessHarness(t);

/** `wida agent` with the test handlers on `schema`; settings through flags and the documented environment. */
function spawnCliAgent(name: string, schema: string, env: Record<string, string> = {}, extraArgs: string[] = []): Child {
  return spawnChild(
    name,
    [WIDA_BIN, 'agent', '--handlers', CLI_HANDLERS, '--database-url', t.url, '--schema', schema, '--concurrency', '2', ...extraArgs],
    {
      // read by the handlers module (the flags above are what the agent uses)
      WIDA_DATABASE_URL: t.url,
      WIDA_SCHEMA: schema,
      WIDA_TEST_AGENT_NAME: name,
      WIDA_LEASE: '5s',
      WIDA_POLL_INTERVAL: '50ms',
      WIDA_HEARTBEAT_INTERVAL: '500ms',
      WIDA_RESCUE_INTERVAL: '200ms',
      ...env,
    },
  );
}

async function startCliAgent(name: string, env: Record<string, string>): Promise<Child> {
  const child = spawnCliAgent(name, t.schema, env);
  await waitForOutput(child, 'stderr', /agent started/, 15_000);
  return child;
}

async function executionCount(jobId: number): Promise<number> {
  const { rows } = await t.pool.query(`SELECT count(*)::int AS n FROM "${t.schema}".executions WHERE job_id = $1`, [jobId]);
  return rows[0].n;
}

async function agentStates(): Promise<string[]> {
  const { rows } = await t.pool.query(`SELECT state FROM "${t.schema}".agents ORDER BY started_at`);
  return rows.map((row) => row.state);
}

describe('wida agent: graceful shutdown on SIGTERM', () => {
  it('finishes running jobs within the grace period, gives back prefetched ones, then exits 0', async () => {
    const agent = await startCliAgent('drainer', { WIDA_SHUTDOWN_GRACE: '10s' });
    // Concurrency 2 with the default prefetch of 2: two jobs run and two wait in the agent's buffer.
    const jobs = await t.client.enqueueMany([0, 1, 2, 3].map((i) => ({ task: 'slow', payload: { ms: 1_500, i } })));
    const ids = jobs.map((job) => job.id);
    await waitFor('two jobs running and two more claimed', async () => {
      const { rows } = await t.pool.query(
        `SELECT (SELECT count(*)::int FROM "${t.schema}".executions) AS started,
                (SELECT count(*)::int FROM "${t.schema}".jobs WHERE state = 'running') AS claimed`,
      );
      return rows[0].started === 2 && rows[0].claimed === 4;
    });

    const exit = await stopChild(agent, 'SIGTERM', 10_000);
    expect(exit).toEqual({ code: 0, signal: null });
    expect(agent.stderr).toMatch(/received SIGTERM; draining/);

    const { rows: ran } = await t.pool.query(`SELECT job_id::int AS id FROM "${t.schema}".executions ORDER BY job_id`);
    const ranIds = ran.map((row) => row.id);
    expect(ranIds).toHaveLength(2);
    expect(new Set(ranIds).size).toBe(2);
    for (const id of ids) {
      const job = await t.client.getJob(id);
      expect(job.attemptLog).toEqual([]);
      if (ranIds.includes(id)) {
        expect(job).toMatchObject({ state: 'completed', attempt: 1, result: { agent: 'drainer', ms: 1_500 }, lastError: null });
      } else {
        // Never started: back to pending at once, without using up an attempt.
        expect(job).toMatchObject({ state: 'pending', attempt: 0, claimedBy: null, leaseExpiresAt: null, startedAt: null });
      }
    }
    expect(await agentStates()).toEqual(['stopped']);
  });

  it('releases a job that outlasts the grace period (its handler honours the signal) back to pending, then exits 0', async () => {
    const agent = await startCliAgent('impatient', { WIDA_SHUTDOWN_GRACE: '300ms' });
    const { id } = await t.client.enqueue({ task: 'slow', payload: { ms: 20_000 } });
    await waitFor('the job running', async () => (await executionCount(id)) === 1);

    const exit = await stopChild(agent, 'SIGTERM', 5_000);
    expect(exit).toEqual({ code: 0, signal: null });

    const job = await t.client.getJob(id);
    // Released, not failed: the attempt is given back and nobody holds it.
    expect(job).toMatchObject({ state: 'pending', attempt: 0, claimedBy: null, leaseExpiresAt: null, startedAt: null, lastError: null });
    expect(job.attemptLog).toEqual([]);
    expect(job.runAt.getTime()).toBeLessThanOrEqual(Date.now() + 1_000);
    expect(await agentStates()).toEqual(['stopped']);
  });

  it('releases a job whose handler ignores the signal, and still exits 0 soon after the grace period', async () => {
    const agent = await startCliAgent('abandoner', { WIDA_SHUTDOWN_GRACE: '300ms' });
    const { id } = await t.client.enqueue({ task: 'stubborn', payload: { ms: 20_000 } });
    await waitFor('the job running', async () => (await executionCount(id)) === 1);

    agent.process.kill('SIGTERM');
    await waitForOutput(agent, 'stderr', /agent stopped/, 5_000);
    const job = await t.client.getJob(id);
    expect(job).toMatchObject({ state: 'pending', attempt: 0, claimedBy: null, leaseExpiresAt: null, startedAt: null });
    expect(job.attemptLog).toEqual([]);

    // The abandoned handler would run 20 s more; a process that waits for it has not drained in its grace period.
    const exit = await waitForExit(agent, 2_000);
    expect(exit).toEqual({ code: 0, signal: null });
  });
});

describe('wida agent: a database migrated by a newer Wida', () => {
  for (const variant of [{ label: 'migrating at start (default)', args: [] }, { label: 'with --no-migrate', args: ['--no-migrate'] }]) {
    it(`refuses to start, ${variant.label}, naming the newer migration and saying to upgrade`, async () => {
      const schema = `${t.schema}_newer`;
      await migrateUp(t.url, schema);
      try {
        await t.pool.query(`INSERT INTO "${schema}".migrations (version, name) VALUES (9999, 'from_the_future')`);

        const agent = spawnCliAgent('too-old', schema, {}, variant.args);
        const exit = await waitForExit(agent, 15_000);
        expect(exit.signal).toBeNull();
        expect(exit.code).not.toBe(0);
        expect(agent.stderr).toMatch(/9999/);
        expect(agent.stderr).toMatch(/upgrade/i);
        expect(agent.stderr).not.toMatch(/agent started/);

        // It registered nothing and changed nothing.
        const { rows: agents } = await t.pool.query(`SELECT count(*)::int AS n FROM "${schema}".agents`);
        expect(agents[0].n).toBe(0);
        const { rows: versions } = await t.pool.query(`SELECT array_agg(version ORDER BY version) AS v FROM "${schema}".migrations`);
        expect(versions[0].v.at(-1)).toBe(9999);
      } finally {
        await t.pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      }
    });
  }
});
