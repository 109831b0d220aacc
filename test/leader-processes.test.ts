/**
 * Leader failover across real processes (test/fixtures/scheduler-child.mjs runs the built dist/), with the
 * takeover time measured from the moment the leader is hit to the moment the leader row names another
 * agent under a new term: SIGKILL (< 5 s), pg_terminate_backend of its session (< 5 s), graceful SIGTERM
 * (< 1 s), a frozen leader (SIGSTOP; its idle session is ended by the server). And a cron schedule firing every second across a leader kill: no slot lost, none twice.
 */
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { assertBuilt, childLog, killLeftovers, spawnChild, stopChild, takeSpawned, waitForOutput, type Child } from './fixtures/children.js';
import { useTestSchema, waitFor } from './support/database.js';

const SCHEDULER_CHILD = fileURLToPath(new URL('./fixtures/scheduler-child.mjs', import.meta.url));
const t = useTestSchema('leadproc');
const measured: Record<string, number> = {};

beforeAll(() => assertBuilt());

afterEach(async (context) => {
  const spawned = takeSpawned();
  const leftovers = await killLeftovers();
  if (context.task.result?.state === 'fail') for (const child of spawned) console.error(childLog(child));
  await t.pool.query(`TRUNCATE "${t.schema}".jobs, "${t.schema}".agents, "${t.schema}".cron_schedules, "${t.schema}".leader`);
  if (leftovers.length > 0 && context.task.result?.state !== 'fail') throw new Error(`the test left processes running: ${leftovers.join(', ')}`);
});

afterAll(async () => {
  await killLeftovers();
  console.log(`measured takeover times (ms): ${JSON.stringify(measured)}`);
});

type Agent = Child & { agentId: string };

async function startAgents(count: number, options: Record<string, unknown> = {}): Promise<Agent[]> {
  return Promise.all(
    Array.from({ length: count }, async (_, i) => {
      const name = `agent-${i + 1}`;
      const child = spawnChild(name, [SCHEDULER_CHILD], {
        WIDA_CHILD_CONFIG: JSON.stringify({ databaseUrl: t.url, schema: t.schema, name, ...options }),
      });
      const line = await waitForOutput(child, 'stdout', /\{"ready":true.*\}/, 15_000);
      return Object.assign(child, { agentId: JSON.parse(line).agentId as string });
    }),
  );
}

interface LeaderRow {
  agentId: string | null;
  term: number;
  backendPid: number | null;
}

async function leaderRow(): Promise<LeaderRow | undefined> {
  const { rows } = await t.pool.query(`SELECT agent_id, term, backend_pid FROM "${t.schema}".leader`);
  return rows[0] ? { agentId: rows[0].agent_id, term: Number(rows[0].term), backendPid: rows[0].backend_pid } : undefined;
}

async function currentLeader(agents: Agent[]): Promise<{ agent: Agent; row: LeaderRow }> {
  const row = await waitFor('a leader', async () => {
    const found = await leaderRow();
    return found?.agentId ? found : undefined;
  });
  return { agent: agents.find((agent) => agent.agentId === row.agentId)!, row };
}

/** Polls the leader row every 10 ms until another agent leads under a newer term; returns the ms it took. */
async function timeTakeover(old: LeaderRow, hit: () => unknown): Promise<{ ms: number; row: LeaderRow }> {
  const begin = performance.now();
  await hit();
  const row = await waitFor(
    'another agent to lead under a newer term',
    async () => {
      const found = await leaderRow();
      return found && found.agentId && found.agentId !== old.agentId && found.term > old.term ? found : undefined;
    },
    10_000,
  );
  return { ms: Math.round(performance.now() - begin), row };
}

describe('leader failover across processes', () => {
  it('SIGKILL of the leader: another agent leads within 5 s', async () => {
    const agents = await startAgents(3);
    const { agent, row } = await currentLeader(agents);
    const takeover = await timeTakeover(row, () => agent.process.kill('SIGKILL'));
    measured.sigkill = takeover.ms;
    expect(takeover.ms).toBeLessThan(5_000);
    expect(agents.map((a) => a.agentId)).toContain(takeover.row.agentId);
    await Promise.all(agents.filter((a) => a !== agent).map((a) => stopChild(a)));
  });

  it('pg_terminate_backend of the leader session: the old leader steps down, another leads within 5 s', async () => {
    const agents = await startAgents(3);
    const { agent, row } = await currentLeader(agents);
    const takeover = await timeTakeover(row, () => t.pool.query('SELECT pg_terminate_backend($1)', [row.backendPid]));
    measured.terminateBackend = takeover.ms;
    expect(takeover.ms).toBeLessThan(5_000);
    await waitForOutput(agent, 'stderr', /stepping down as leader/, 3_000);
    // The old leader keeps running jobs and campaigns again, but does not take the lead back by itself.
    expect(agent.exit).toBeUndefined();
    await Promise.all(agents.map((a) => stopChild(a)));
  });

  it('a frozen leader (SIGSTOP): its idle session is ended, another leads, and on SIGCONT it steps down', async () => {
    const agents = await startAgents(3, { leaderIdleLimitMs: 2_000 });
    const { agent, row } = await currentLeader(agents);
    const takeover = await timeTakeover(row, () => agent.process.kill('SIGSTOP'));
    measured.sigstop = takeover.ms;
    expect(takeover.ms).toBeLessThan(5_000);
    agent.process.kill('SIGCONT');
    await waitForOutput(agent, 'stderr', /stepping down as leader/, 3_000);
    expect((await leaderRow())?.agentId).toBe(takeover.row.agentId);
    await Promise.all(agents.map((a) => stopChild(a)));
  });

  it('graceful shutdown (SIGTERM) of the leader: it resigns and another leads within 1 s', async () => {
    // A slow poll, so the takeover can only come from the resignation's NOTIFY.
    const agents = await startAgents(3, { electionPollIntervalMs: 5_000 });
    const { agent, row } = await currentLeader(agents);
    const takeover = await timeTakeover(row, () => agent.process.kill('SIGTERM'));
    measured.gracefulShutdown = takeover.ms;
    expect(takeover.ms).toBeLessThan(1_000);
    expect(await stopChild(agent)).toEqual({ code: 0, signal: null });
    expect(agent.stderr).toMatch(/resigned leadership/);
    await Promise.all(agents.filter((a) => a !== agent).map((a) => stopChild(a)));
  });
});

describe('cron across a leader kill', () => {
  it('a schedule firing every second keeps every slot exactly once while its leader is SIGKILLed', async () => {
    const cronSchedules = [{ name: 'beat', expression: '* * * * * *', task: 'tick' }];
    const agents = await startAgents(3, { cronSchedules });
    const slots = async (): Promise<number[]> => {
      const { rows } = await t.pool.query(`SELECT cron_slot FROM "${t.schema}".jobs WHERE cron_schedule = 'beat' ORDER BY cron_slot`);
      return rows.map((r) => r.cron_slot.getTime());
    };
    await waitFor('three slots', async () => (await slots()).length >= 3, 10_000);
    const { agent, row } = await currentLeader(agents);
    const killedAt = Date.now();
    const takeover = await timeTakeover(row, () => agent.process.kill('SIGKILL'));
    measured.sigkillWithCron = takeover.ms;
    const afterTakeover = Date.now();
    await waitFor('three slots after the takeover', async () => (await slots()).filter((s) => s > afterTakeover).length >= 3, 10_000);
    await Promise.all(agents.filter((a) => a !== agent).map((a) => stopChild(a)));

    const fired = await slots();
    expect(new Set(fired).size).toBe(fired.length);
    const gaps = fired.slice(1).map((slot, i) => slot - fired[i]).filter((gap) => gap !== 1_000);
    expect(gaps, 'slots lost (gaps other than 1 s)').toEqual([]);
    expect(fired[0]).toBeLessThan(killedAt - 1_000);
    expect(fired.at(-1)!).toBeGreaterThan(afterTakeover + 1_000);
  });
});
