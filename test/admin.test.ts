import { hostname } from 'node:os';
import { afterEach, describe, expect, it } from 'vitest';
import type { JobContext } from '../src/agent/worker/executors/executor.js';
import { setTimeout as sleep } from 'node:timers/promises';
import { agentHeartbeat } from '../src/shared/db/queries/agents.js';
import { notifyControl } from '../src/shared/db/queries/notifications.js';
import { InvalidJobStateError, JobNotFoundError, ValidationError } from '../src/shared/errors.js';
import type { JobState } from '../src/shared/job-state.js';
import { WIDA_VERSION } from '../src/shared/version.js';
import { useAgents } from './support/agents.js';
import { useTestSchema, waitFor } from './support/database.js';
import { insertJob, insertJobs, rawJob } from './support/factories.js';

const t = useTestSchema('admin');
const startAgent = useAgents(t);

async function rejection(promise: Promise<unknown>): Promise<any> {
  return promise.then(
    () => {
      throw new Error('expected the call to fail, but it succeeded');
    },
    (error) => error,
  );
}

function deferred() {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

type Action = 'retryJob' | 'cancelJob' | 'dropJob' | 'replayJob';

describe('actions on jobs in the wrong state', () => {
  const retryMessage = 'only pending, dead or cancelled jobs can be retried';
  const cancelMessage = /only waiting, pending or running jobs can be cancell?ed$/;
  const dropMessage = 'only waiting, pending, completed, dead or cancelled jobs can be dropped';
  const replayMessage = 'only dead jobs can be replayed';

  it.each<[Action, JobState, string | RegExp]>([
    ['retryJob', 'running', retryMessage],
    ['retryJob', 'completed', retryMessage],
    ['retryJob', 'waiting', retryMessage],
    ['cancelJob', 'completed', cancelMessage],
    ['cancelJob', 'dead', cancelMessage],
    ['cancelJob', 'cancelled', cancelMessage],
    ['dropJob', 'running', dropMessage],
    ['replayJob', 'pending', replayMessage],
    ['replayJob', 'running', replayMessage],
    ['replayJob', 'completed', replayMessage],
    ['replayJob', 'cancelled', replayMessage],
  ])('%s on a %s job -> InvalidJobStateError, job unchanged', async (action, state, expected) => {
    const job = await insertJob(t.pool, t.schema, { task: 'wrong_state', state });
    const before = await rawJob(t.pool, t.schema, job.id);
    const error = await rejection(t.client[action](job.id));
    expect(error).toBeInstanceOf(InvalidJobStateError);
    expect(error).toMatchObject({ code: 'JOB_STATE_INVALID', jobId: job.id, state, action: action.replace('Job', '') });
    if (typeof expected === 'string') expect(error.message).toBe(`job ${job.id} is ${state}; ${expected}`);
    else {
      expect(error.message).toMatch(new RegExp(`^job ${job.id} is ${state}; `));
      expect(error.message).toMatch(expected);
    }
    expect(await rawJob(t.pool, t.schema, job.id)).toEqual(before);
  });

  it.each<Action | 'getJob'>(['getJob', 'retryJob', 'cancelJob', 'dropJob', 'replayJob'])('%s on an unknown id -> JobNotFoundError', async (action) => {
    const error = await rejection(t.client[action](987_654_321));
    expect(error).toBeInstanceOf(JobNotFoundError);
    expect(error).toMatchObject({ code: 'JOB_NOT_FOUND', jobId: 987_654_321 });
    expect(error.message).toMatch(/^job 987654321 does not exist/);
  });
});

describe('actions on jobs in the right state', () => {
  it('retry of a dead job: pending now, fresh attempts, history kept with a "retried" entry', async () => {
    const job = await insertJob(t.pool, t.schema, {
      task: 'retry_me',
      state: 'dead',
      maxAttempts: 2,
      attempt: 2,
      lastError: 'second failure',
      attemptLog: [{ outcome: 'failed', error: 'first failure' }, { outcome: 'failed', error: 'second failure' }],
    });
    await t.client.retryJob(job.id);
    const row = await t.client.getJob(job.id);
    expect(row).toMatchObject({ state: 'pending', attempt: 0, finishedAt: null, replayCount: 0 });
    expect(row.attemptLog.map((entry) => entry.outcome)).toEqual(['failed', 'failed', 'retried']);
  });

  it('retry of a cancelled job, and of a pending job scheduled later, makes it due now', async () => {
    const [cancelled, later] = await insertJobs(t.pool, t.schema, [
      { task: 'retry_me', state: 'cancelled' },
      { task: 'retry_me', state: 'pending', runInMs: 3_600_000, attempt: 1 },
    ]);
    await t.client.retryJob(cancelled.id);
    await t.client.retryJob(later.id);
    const { rows } = await t.pool.query(
      `SELECT id, state, attempt, run_at <= now() AS due FROM "${t.schema}".jobs WHERE id = ANY($1::bigint[]) ORDER BY id`,
      [[cancelled.id, later.id]],
    );
    expect(rows).toEqual([
      { id: String(cancelled.id), state: 'pending', attempt: 0, due: true },
      // a pending job keeps its attempt count: it has not failed
      { id: String(later.id), state: 'pending', attempt: 1, due: true },
    ]);
  });

  it('cancel of a waiting or pending job: cancelled and finished; an agent never runs it', async () => {
    const ran: string[] = [];
    const [waiting, pending] = await insertJobs(t.pool, t.schema, [
      { task: 'cancel_me', state: 'waiting' },
      { task: 'cancel_me', state: 'pending', payload: 'cancelled one' },
    ]);
    await t.client.cancelJob(waiting.id);
    await t.client.cancelJob(pending.id);
    for (const id of [waiting.id, pending.id]) {
      const row = await t.client.getJob(id);
      expect(row.state).toBe('cancelled');
      expect(row.finishedAt).toBeInstanceOf(Date);
    }
    const marker = await t.client.enqueue({ task: 'cancel_me', payload: 'marker' });
    await startAgent({ handlers: { cancel_me: (payload: string) => void ran.push(payload) } });
    await waitFor('the marker job ran', async () => (await t.client.getJob(marker.id)).state === 'completed');
    expect(ran).toEqual(['marker']);
  });

  it.each<JobState>(['waiting', 'pending', 'completed', 'dead', 'cancelled'])('drop deletes a %s job', async (state) => {
    const job = await insertJob(t.pool, t.schema, { task: 'drop_me', state });
    await t.client.dropJob(job.id);
    expect(await rawJob(t.pool, t.schema, job.id)).toBeUndefined();
    await expect(t.client.dropJob(job.id)).rejects.toBeInstanceOf(JobNotFoundError);
  });
});

describe('cancelling a running job', () => {
  it('fires the handler AbortSignal with the reason; the job ends cancelled and its late completion is ignored', async () => {
    const started = deferred();
    const finishedLate = deferred();
    const reasons: unknown[] = [];
    const agent = await startAgent({
      handlers: {
        long_running: async (_payload, ctx: JobContext) => {
          started.resolve();
          await new Promise((resolve) => ctx.signal.addEventListener('abort', resolve));
          reasons.push(ctx.signal.reason);
          // ignores the cancellation and "completes" anyway
          await new Promise((resolve) => setTimeout(resolve, 100));
          finishedLate.resolve();
          return { late: true };
        },
      },
    });
    const { id } = await t.client.enqueue({ task: 'long_running' });
    await started.promise;
    expect((await t.client.getJob(id)).state).toBe('running');
    await t.client.cancelJob(id);
    await waitFor('the handler signal to fire', () => reasons.length === 1);
    expect(reasons[0]).toBeInstanceOf(Error);
    expect(reasons[0]).toMatchObject({ outcome: 'cancelled', message: 'cancelled by an operator' });
    await finishedLate.promise;
    await agent.stop(); // drains the completer: anything it would write is written now
    const job = await t.client.getJob(id);
    expect(job).toMatchObject({ state: 'cancelled', result: null, leaseExpiresAt: null });
    expect(job.attemptLog).toEqual([expect.objectContaining({ attempt: 1, agent: agent.id, outcome: 'cancelled' })]);
  });
});

describe('bad input to admin operations: a ValidationError naming it, before any statement', () => {
  it.each([Number.NaN, 1.5, 0, -1, 2 ** 63, Number.POSITIVE_INFINITY, undefined, '7'])('job id %s', async (id) => {
    const bad = id as number;
    for (const call of [t.client.getJob(bad), t.client.retryJob(bad), t.client.cancelJob(bad), t.client.dropJob(bad), t.client.replayJob(bad)]) {
      await expect(call).rejects.toThrow(ValidationError);
      await expect(call).rejects.toThrow(/job id must be a job id \(a positive whole number\)/);
    }
  });

  it.each([
    ['empty', ''],
    ['129 characters', 'q'.repeat(129)],
    ['with NUL', 'a\u0000b'],
    ['null', null],
  ])('queue name %s: pause and resume refuse it and write nothing', async (_what, queue) => {
    const before = await t.pool.query(`SELECT count(*)::int AS n FROM "${t.schema}".queues`);
    await expect(t.client.pauseQueue(queue as string)).rejects.toThrow(ValidationError);
    await expect(t.client.resumeQueue(queue as string)).rejects.toThrow(ValidationError);
    const after = await t.pool.query(`SELECT count(*)::int AS n FROM "${t.schema}".queues`);
    expect(after.rows[0].n).toBe(before.rows[0].n);
  });

  it('list and DLQ filters', async () => {
    await expect(t.client.listJobs({ limit: -1 })).rejects.toThrow(/invalid limit: limit must be a whole number from 1 to 1000/);
    await expect(t.client.listJobs({ limit: 100_000_000 })).rejects.toThrow(/invalid limit: limit must be a whole number from 1 to 1000/);
    await expect(t.client.listJobs({ finishedWithinMs: 1e15 })).rejects.toThrow(/invalid finishedWithinMs: .* from 0 to/);
    // A key the filter does not know is refused, not ignored: `{ id: 2 }` would otherwise purge every dead job.
    await expect(t.client.purgeDead({ id: 2 } as never)).rejects.toThrow(/invalid filter: unknown "id"; expected some of ids, queue, task/);
    await expect(t.client.listJobs({ statez: ['dead'] } as never)).rejects.toThrow(/invalid filter: unknown "statez"/);
    await expect(t.client.listJobs({ beforeId: Number.NaN })).rejects.toThrow(/invalid beforeId/);
    await expect(t.client.listJobs({ states: ['finished'] })).rejects.toThrow(/invalid states: states must be among waiting, pending/);
    await expect(t.client.listJobs({ finishedSince: new Date('nope') })).rejects.toThrow(/invalid finishedSince/);
    await expect(t.client.listDead({ queue: '' })).rejects.toThrow(/invalid queue: queue must not be empty/);
    await expect(t.client.purgeDead({ ids: [Number.NaN] })).rejects.toThrow(/invalid ids: each id must be a job id/);
    await expect(t.client.replayDead({ finishedWithinMs: Number.NaN })).rejects.toThrow(/invalid finishedWithinMs/);
    await expect(t.client.purgeDead({ ids: [2 ** 63] })).rejects.toThrow(ValidationError);
  });
});

describe('cancelling a claimed job', () => {
  it('a job claimed but still waiting in the agent buffer never starts', async () => {
    const releaseBlocker = deferred();
    const ran: string[] = [];
    // One slot, one job claimed ahead: the second job waits in the buffer, running in the database.
    await startAgent({
      concurrency: 1,
      prefetch: 1,
      handlers: {
        buffered_cancel: async (name: string) => {
          ran.push(name);
          if (name === 'blocker') await releaseBlocker.promise;
        },
      },
    });
    const blocker = await t.client.enqueue({ task: 'buffered_cancel', payload: 'blocker' });
    await waitFor('the blocker to start', () => ran.length === 1);
    const buffered = await t.client.enqueue({ task: 'buffered_cancel', payload: 'buffered' });
    await waitFor('the second job to be claimed', async () => (await t.client.getJob(buffered.id)).state === 'running');
    await t.client.cancelJob(buffered.id);
    // The agent has room for the marker only once the cancel took the buffered job out (waited for, not a fixed sleep).
    const marker = await t.client.enqueue({ task: 'buffered_cancel', payload: 'marker' });
    await waitFor('the marker to be claimed', async () => (await t.client.getJob(marker.id)).state === 'running');
    releaseBlocker.resolve();
    await waitFor('the blocker to complete', async () => (await t.client.getJob(blocker.id)).state === 'completed');
    await waitFor('the marker to complete', async () => (await t.client.getJob(marker.id)).state === 'completed');
    expect(ran).toEqual(['blocker', 'marker']);
    expect((await t.client.getJob(buffered.id)).state).toBe('cancelled');
  });

  it("a cancel that names an earlier run does not abort the job's next run", async () => {
    const started = deferred();
    const aborted: unknown[] = [];
    const agent = await startAgent({
      handlers: {
        rerun: async (_payload, ctx: JobContext) => {
          ctx.signal.addEventListener('abort', () => aborted.push(ctx.signal.reason));
          started.resolve();
          await sleep(400);
        },
      },
    });
    const { id } = await t.client.enqueue({ task: 'rerun' });
    await started.promise;
    const { leaseEpoch } = await rawJob(t.pool, t.schema, id).then((row) => ({ leaseEpoch: row!.lease_epoch as number }));
    // What a cancel of the run before this one sends when its notification comes late (say, after a retry).
    await notifyControl(t.db, { type: 'cancel', jobId: id, leaseEpoch: leaseEpoch - 1, agentId: agent.id });
    await waitFor('the job to complete', async () => (await t.client.getJob(id)).state === 'completed');
    expect(aborted).toEqual([]);
  });
});

describe('dead letter queue', () => {
  it('a job that exhausts its attempts is dead with every error; replay runs it again from attempt 0', async () => {
    let failing = true;
    const attempts: number[] = [];
    await startAgent({
      handlers: {
        dlq_task: (_payload, ctx: JobContext) => {
          attempts.push(ctx.job.attempt);
          if (failing) throw new Error(`attempt ${ctx.job.attempt} failed`);
          return 'recovered';
        },
      },
    });
    const { id } = await t.client.enqueue({ task: 'dlq_task', queue: 'dlq_e2e', payload: { order: 7 }, maxAttempts: 3, backoff: { strategy: 'fixed', base: 10, jitter: 0 } });
    const dead = await waitFor('the job to be dead', async () => {
      const job = await t.client.getJob(id);
      return job.state === 'dead' ? job : undefined;
    });
    expect(dead.attemptLog.map((entry) => entry.error)).toEqual(['attempt 1 failed', 'attempt 2 failed', 'attempt 3 failed']);
    expect(dead.payload).toEqual({ order: 7 });
    expect((await t.client.listDead({ queue: 'dlq_e2e' })).map((job) => job.id)).toEqual([id]);

    failing = false;
    await t.client.replayJob(id);
    const replayed = await t.client.getJob(id);
    // It may already have been claimed again; what replay wrote is visible in the log and counters either way.
    expect(replayed.replayCount).toBe(1);
    expect(replayed.attemptLog.map((entry) => entry.outcome)).toEqual(['failed', 'failed', 'failed', 'replayed']);

    const done = await waitFor('the replayed job to complete', async () => {
      const job = await t.client.getJob(id);
      return job.state === 'completed' ? job : undefined;
    });
    expect(done).toMatchObject({ attempt: 1, replayCount: 1, result: 'recovered', lastError: null, payload: { order: 7 } });
    expect(done.attemptLog).toHaveLength(4);
    expect(attempts).toEqual([1, 2, 3, 1]);
    expect(await t.client.listDead({ queue: 'dlq_e2e' })).toEqual([]);
  });

  it('gives attempt log entries camelCase keys and Dates, whatever time zone the session that wrote them had', async () => {
    // Written as an agent in India would store them: jsonb text with the session's offset.
    const job = await insertJob(t.pool, t.schema, {
      state: 'dead',
      attempt: 1,
      maxAttempts: 1,
      attemptLog: [
        { attempt: 1, agent: 'a1', started_at: '2026-11-25T00:12:00.805692+05:30', finished_at: '2026-11-25T00:12:01.5+05:30', outcome: 'failed', error: 'boom', stack: null },
        { outcome: 'replayed', at: '2026-11-25T01:00:00+05:30' },
      ],
    });
    const row = await t.client.getJob(job.id);
    expect(row.attemptLog).toEqual([
      {
        attempt: 1,
        agent: 'a1',
        startedAt: new Date('2026-11-24T18:42:00.805Z'),
        finishedAt: new Date('2026-11-24T18:42:01.500Z'),
        outcome: 'failed',
        error: 'boom',
        stack: null,
      },
      { outcome: 'replayed', at: new Date('2026-11-24T19:30:00.000Z') },
    ]);
    expect(JSON.parse(JSON.stringify(row.attemptLog))[0].startedAt).toBe('2026-11-24T18:42:00.805Z');
  });

  it('replayJob sets pending, attempt 0, replay_count + 1 and appends a "replayed" entry', async () => {
    const job = await insertJob(t.pool, t.schema, {
      task: 'dlq_unhandled',
      state: 'dead',
      attempt: 2,
      maxAttempts: 2,
      attemptLog: [{ outcome: 'failed', error: 'a' }, { outcome: 'failed', error: 'b' }],
    });
    await t.client.replayJob(job.id);
    const row = await t.client.getJob(job.id);
    expect(row).toMatchObject({ state: 'pending', attempt: 0, replayCount: 1, finishedAt: null });
    expect(row.attemptLog).toEqual([
      { outcome: 'failed', error: 'a' },
      { outcome: 'failed', error: 'b' },
      expect.objectContaining({ outcome: 'replayed', at: expect.any(Date) }),
    ]);
  });

  async function seedDead() {
    const jobs = await insertJobs(t.pool, t.schema, [
      { queue: 'dlq_a', task: 'dlq_t1', state: 'dead' },
      { queue: 'dlq_a', task: 'dlq_t2', state: 'dead' },
      { queue: 'dlq_b', task: 'dlq_t1', state: 'dead' },
      { queue: 'dlq_b', task: 'dlq_t2', state: 'dead' },
      { queue: 'dlq_a', task: 'dlq_t1', state: 'completed' },
      { queue: 'dlq_a', task: 'dlq_t1', state: 'pending' },
    ]);
    return jobs.map((job) => job.id);
  }

  async function states(ids: number[]): Promise<string[]> {
    const { rows } = await t.pool.query(
      `SELECT i.id, j.state FROM unnest($1::bigint[]) WITH ORDINALITY AS i(id, n) LEFT JOIN "${t.schema}".jobs j ON j.id = i.id ORDER BY i.n`,
      [ids],
    );
    return rows.map((row) => row.state ?? 'gone');
  }

  afterEach(async () => {
    await t.pool.query(`DELETE FROM "${t.schema}".jobs WHERE queue IN ('dlq_a', 'dlq_b')`);
  });

  it('replayDead by queue, by task and by ids replays only matching dead jobs', async () => {
    const [a1, a2, b1, b2, completed, pending] = await seedDead();
    expect((await t.client.replayDead({ queue: 'dlq_a' })).replayed.sort()).toEqual([a1, a2].sort());
    expect(await states([a1, a2, b1, b2, completed, pending])).toEqual(['pending', 'pending', 'dead', 'dead', 'completed', 'pending']);
    expect((await t.client.replayDead({ task: 'dlq_t2' })).replayed).toEqual([b2]);
    expect((await t.client.replayDead({ ids: [b1, completed, pending] })).replayed).toEqual([b1]);
    expect(await states([b1, b2, completed])).toEqual(['pending', 'pending', 'completed']);
    expect((await t.client.getJob(b1)).replayCount).toBe(1);
    expect(await t.client.replayDead({ ids: [] })).toEqual({ replayed: [], waiting: [], restoredDependents: [] });
  });

  it('purgeDead by queue and task, and by ids, deletes only matching dead jobs', async () => {
    const [a1, a2, b1, b2, completed, pending] = await seedDead();
    expect(await t.client.purgeDead({ queue: 'dlq_a', task: 'dlq_t2' })).toEqual([a2]);
    expect(await t.client.purgeDead({ ids: [b1, completed, pending] })).toEqual([b1]);
    expect(await states([a1, a2, b1, b2, completed, pending])).toEqual(['dead', 'gone', 'gone', 'dead', 'completed', 'pending']);
    expect((await t.client.purgeDead({ task: 'dlq_t1', queue: 'dlq_a' })).sort()).toEqual([a1]);
  });

  it('finishedBefore pins a bulk action to the jobs dead by then: one that dies later is left (a purge asked about N removes N)', async () => {
    const [older] = await insertJobs(t.pool, t.schema, [{ task: 'pin', queue: 'dlq_pin', state: 'dead', finishedAgoMs: 60_000 }]);
    const asOf = await t.client.databaseNow();
    const [later] = await insertJobs(t.pool, t.schema, [{ task: 'pin', queue: 'dlq_pin', state: 'dead', finishedAgoMs: -1_000 }]);
    expect(await t.client.countDead({ queue: 'dlq_pin', finishedBefore: asOf })).toBe(1);
    expect(await t.client.purgeDead({ queue: 'dlq_pin', finishedBefore: asOf })).toEqual([older.id]);
    expect((await t.client.getJob(later.id)).state).toBe('dead');
    await expect(t.client.purgeDead({ finishedBefore: new Date('nope') })).rejects.toThrow(/invalid finishedBefore/);
  });

  it('countDead counts the matching dead jobs, no further than its cap', async () => {
    await seedDead();
    expect(await t.client.countDead({ queue: 'dlq_a' })).toBe(2);
    expect(await t.client.countDead({ queue: 'dlq_a' }, 1)).toBe(1);
    expect(await t.client.countDead({ task: 'dlq_t2' })).toBe(2);
    expect(await t.client.countDead({ queue: 'dlq_none' })).toBe(0);
    expect(await t.client.countDead()).toBe(await t.client.countDead({}));
    expect(await t.client.countDead()).toBeGreaterThanOrEqual(4);
    for (const cap of [0, -1, 1.5, Number.NaN]) await expect(t.client.countDead({}, cap)).rejects.toThrow(/invalid cap: cap must be a whole number/);
  });
});

describe('listings', () => {
  it('listJobs filters by states, queue, task and text (task, payload or last error, any case)', async () => {
    const [alphaPending, betaDead, alphaCompleted] = await insertJobs(t.pool, t.schema, [
      { queue: 'list_q', task: 'list_alpha', state: 'pending', payload: { customer: 'ACME Corp' } },
      { queue: 'list_q', task: 'list_beta', state: 'dead', payload: { customer: 'Globex' }, lastError: 'Connection REFUSED by upstream' },
      { queue: 'list_q', task: 'list_alpha', state: 'completed', payload: { customer: 'Initech' } },
      { queue: 'list_other', task: 'list_alpha', state: 'pending', payload: { customer: 'acme elsewhere' } },
    ]);
    const ids = async (filter: Parameters<typeof t.client.listJobs>[0]) => (await t.client.listJobs(filter)).map((job) => job.id);
    expect(await ids({ queue: 'list_q' })).toEqual([alphaCompleted.id, betaDead.id, alphaPending.id]);
    expect(await ids({ queue: 'list_q', states: ['dead', 'completed'] })).toEqual([alphaCompleted.id, betaDead.id]);
    expect(await ids({ queue: 'list_q', task: 'list_alpha' })).toEqual([alphaCompleted.id, alphaPending.id]);
    expect(await ids({ queue: 'list_q', text: 'acme' })).toEqual([alphaPending.id]);
    expect(await ids({ queue: 'list_q', text: 'refused' })).toEqual([betaDead.id]);
    expect(await ids({ queue: 'list_q', text: 'LIST_BETA' })).toEqual([betaDead.id]);
    expect(await ids({ queue: 'list_q', limit: 1 })).toEqual([alphaCompleted.id]);
    expect(await ids({ queue: 'list_q', beforeId: alphaCompleted.id })).toEqual([betaDead.id, alphaPending.id]);
    expect((await t.client.listJobs({ text: 'acme' })).map((job) => job.queue).sort()).toEqual(['list_other', 'list_q']);
  });

  it('the text filter finds payload text with quotes, backslashes and line breaks (escaped in the JSON it searches)', async () => {
    const [job] = await insertJobs(t.pool, t.schema, [
      { queue: 'list_json', payload: { path: 'C:\\dir\\file', quote: 'say "hi"', lines: 'first\nsecond', pct: '100%_done' } },
      { queue: 'list_json', payload: { other: 'C:dir' } },
    ]);
    const ids = async (text: string) => (await t.client.listJobs({ queue: 'list_json', text })).map((found) => found.id);
    expect(await ids('C:\\dir')).toEqual([job.id]);
    expect(await ids('say "hi"')).toEqual([job.id]);
    expect(await ids('first\nsecond')).toEqual([job.id]);
    expect(await ids('100%_d')).toEqual([job.id]);
    expect(await ids('100%%')).toEqual([]);
    // A fragment of the JSON as typed still matches: key and value together.
    expect(await ids('"quote": "say')).toEqual([job.id]);
  });

  it('listQueues counts jobs by state and shows the paused flag, including queues with no jobs', async () => {
    await insertJobs(t.pool, t.schema, [
      { queue: 'lq_counts', state: 'pending' },
      { queue: 'lq_counts', state: 'pending' },
      { queue: 'lq_counts', state: 'running' },
      { queue: 'lq_counts', state: 'dead' },
      { queue: 'lq_counts', state: 'completed' },
    ]);
    const find = async (name: string) => (await t.client.listQueues()).find((queue) => queue.name === name);
    expect(await find('lq_counts')).toEqual({ name: 'lq_counts', paused: false, counts: { waiting: 0, pending: 2, running: 1, completed: 1, dead: 1, cancelled: 0 } });
    await t.client.pauseQueue('lq_counts');
    expect(await find('lq_counts')).toMatchObject({ paused: true, counts: { pending: 2 } });
    await t.client.resumeQueue('lq_counts');
    expect(await find('lq_counts')).toMatchObject({ paused: false });
    await t.client.pauseQueue('lq_empty');
    expect(await find('lq_empty')).toEqual({ name: 'lq_empty', paused: true, counts: { waiting: 0, pending: 0, running: 0, completed: 0, dead: 0, cancelled: 0 } });
  });

  it('listAgents shows a started agent with host, pid, version, queues and a fresh heartbeat; stopped after stop()', async () => {
    const agent = await startAgent({ queues: ['agents_q'], concurrency: 3, handlers: { noop: () => {} } });
    const row = await waitFor('the agent to register', async () => (await t.client.listAgents()).find((a) => a.id === agent.id));
    expect(row).toMatchObject({ host: hostname(), pid: process.pid, version: WIDA_VERSION, queues: ['agents_q'], concurrency: 3, state: 'running' });
    expect(row.heartbeatAt).toBeInstanceOf(Date);
    expect(row.startedAt).toBeInstanceOf(Date);
    expect(row.heartbeatAgeMs).toBeGreaterThanOrEqual(0);
    expect(row.heartbeatAgeMs).toBeLessThan(5_000);
    await agent.stop();
    expect((await t.client.listAgents()).find((a) => a.id === agent.id)).toMatchObject({ state: 'stopped' });
  });
});

describe('paused queues', () => {
  it('an agent does not claim from a paused queue; after resume it does', async () => {
    const ran: string[] = [];
    await t.client.pauseQueue('pause_a');
    const inA = await t.client.enqueueMany([1, 2, 3].map((n) => ({ task: 'pausable', queue: 'pause_a', payload: `a${n}` })));
    const inB = await t.client.enqueueMany([1, 2, 3].map((n) => ({ task: 'pausable', queue: 'pause_b', payload: `b${n}` })));
    await startAgent({ handlers: { pausable: (payload: string) => void ran.push(payload) } });
    await waitFor('queue b done', async () => (await Promise.all(inB.map((job) => t.client.getJob(job.id)))).every((job) => job.state === 'completed'));
    expect(ran.sort()).toEqual(['b1', 'b2', 'b3']);
    for (const job of inA) expect((await t.client.getJob(job.id)).state).toBe('pending');

    await t.client.resumeQueue('pause_a');
    await waitFor('queue a done', async () => (await Promise.all(inA.map((job) => t.client.getJob(job.id)))).every((job) => job.state === 'completed'));
    expect(ran.sort()).toEqual(['a1', 'a2', 'a3', 'b1', 'b2', 'b3']);
  });

  it('pausing a queue gives back jobs the agent had claimed but not started', async () => {
    const release = deferred();
    const started: string[] = [];
    await startAgent({
      concurrency: 1,
      prefetch: 5,
      handlers: {
        blocking: async (payload: string) => {
          started.push(payload);
          await release.promise;
        },
      },
    });
    const jobs = await t.client.enqueueMany([1, 2, 3, 4].map((n) => ({ task: 'blocking', queue: 'pause_buffered', payload: `j${n}` })));
    await waitFor('all four claimed', async () => {
      const { rows } = await t.pool.query(`SELECT count(*)::int AS n FROM "${t.schema}".jobs WHERE queue = 'pause_buffered' AND state = 'running'`);
      return rows[0].n === 4;
    });
    expect(started).toHaveLength(1);
    await t.client.pauseQueue('pause_buffered');
    await waitFor('three buffered jobs released', async () => {
      const { rows } = await t.pool.query(
        `SELECT count(*)::int AS n FROM "${t.schema}".jobs WHERE queue = 'pause_buffered' AND state = 'pending' AND attempt = 0 AND lease_expires_at IS NULL`,
      );
      return rows[0].n === 3;
    });
    release.resolve();
    await waitFor('the started job to complete', async () => (await t.client.getJob(jobs.find((_, i) => `j${i + 1}` === started[0])!.id)).state === 'completed');
    expect(started).toHaveLength(1);
  });
});

describe('pause and resume say when the queue looks like a typo', () => {
  it('pausing a queue nothing uses is kept, and said to be unknown; a job, an agent naming it or a cron schedule makes it known', async () => {
    expect(await t.client.pauseQueue('typo_never_used')).toEqual({ wasPaused: false, unknown: true });
    expect((await t.client.listQueues()).find((queue) => queue.name === 'typo_never_used')).toMatchObject({ paused: true });
    expect(await t.client.pauseQueue('typo_never_used')).toEqual({ wasPaused: true, unknown: true });

    await insertJob(t.pool, t.schema, { queue: 'typo_has_job', state: 'completed' });
    expect(await t.client.pauseQueue('typo_has_job')).toEqual({ wasPaused: false, unknown: false });

    const agent = { host: 'box', pid: 1, version: '0.1.0', concurrency: 1, heartbeatIntervalMs: 5_000 };
    await agentHeartbeat(t.db, { ...agent, id: 'typo-every-queue', queues: null }, 'running'); // serves every queue, names none
    expect((await t.client.pauseQueue('typo_served')).unknown).toBe(true);
    await agentHeartbeat(t.db, { ...agent, id: 'typo-named', queues: ['other', 'typo_served'] }, 'running');
    expect((await t.client.pauseQueue('typo_served')).unknown).toBe(false);

    await t.client.addCronSchedule({ name: 'typo-cron', expression: '0 9 * * *', task: 'report', queue: 'typo_cron' });
    expect(await t.client.pauseQueue('typo_cron')).toEqual({ wasPaused: false, unknown: false });
  });

  it('resuming a queue that was not paused says so, and whether anything uses it', async () => {
    expect(await t.client.resumeQueue('typo_resume_never')).toEqual({ wasPaused: false, unknown: true });
    await insertJob(t.pool, t.schema, { queue: 'typo_resume_job', state: 'pending' });
    expect(await t.client.resumeQueue('typo_resume_job')).toEqual({ wasPaused: false, unknown: false });
    await t.client.pauseQueue('typo_resume_job');
    expect(await t.client.resumeQueue('typo_resume_job')).toEqual({ wasPaused: true, unknown: false });
  });
});
