import type pg from 'pg';
import { describe, expect, it } from 'vitest';
import type { AgentOptions } from '../src/agent/agent.js';
import type { Queryable } from '../src/shared/db/sql.js';
import { jobDeleteFinished, jobInsertOne } from '../src/shared/db/queries/jobs.js';
import {
  jobClaimBatch,
  jobCompleteMany,
  jobExtendLeases,
  leaseKey,
  jobFailMany,
  jobFailManySkippingLocked,
  jobReleaseMany,
  jobRescueExpired,
  type ClaimParams,
} from '../src/shared/db/queries/jobs-runs.js';
import { queueSetPaused } from '../src/shared/db/queries/queues.js';
import { useAgents } from './support/agents.js';
import { inRolledBackTransaction, useTestSchema, waitFor } from './support/database.js';
import { insertJob, insertJobs, insertManyJobs, rawJob } from './support/factories.js';

const t = useTestSchema('queries');
const startAgent = useAgents(t);

const claimDefaults = { agentId: 'test-agent', leaseMs: 30_000, queues: null, limit: 100 } as const;

function claim(db: Parameters<typeof jobClaimBatch>[0], params: Partial<ClaimParams> & { tasks: string[] }) {
  return jobClaimBatch(db, { ...claimDefaults, ...params });
}

/** The database's now() in this transaction (the time every default in the factories used). */
async function transactionNow(client: { query: (text: string) => Promise<{ rows: any[] }> }): Promise<Date> {
  const { rows } = await client.query('SELECT now() AS now');
  return rows[0].now;
}

const plus = (date: Date, ms: number) => new Date(date.getTime() + ms);

/**
 * Jobs of one task in a known claim order. Ids grow in insertion order, so `normalLate` has a lower id
 * than `normalEarly` but a later run_at: the claim order must follow run_at, not id.
 */
async function seedClaimOrder(db: Parameters<typeof insertJobs>[0], task: string) {
  const [low, normalLate, normalEarly, high1, critical, normalSame, high2] = await insertJobs(db, t.schema, [
    { task, priority: 0, runInMs: -10_000, payload: 'low' },
    { task, priority: 1, runInMs: -1_000, payload: 'normal-late' },
    { task, priority: 1, runInMs: -5_000, payload: 'normal-early' },
    { task, priority: 2, runInMs: -3_000, payload: 'high-1' },
    { task, priority: 3, runInMs: 0, payload: 'critical' },
    { task, priority: 1, runInMs: -5_000, payload: 'normal-same' },
    { task, priority: 2, runInMs: -3_000, payload: 'high-2' },
  ]);
  const expected = [critical, high1, high2, normalEarly, normalSame, normalLate, low].map((job) => job.id);
  const names = ['critical', 'high-1', 'high-2', 'normal-early', 'normal-same', 'normal-late', 'low'];
  return { expected, names };
}

describe('jobClaimBatch', () => {
  it('claims one at a time in priority order, then run_at, then id', async () => {
    await inRolledBackTransaction(t, async (db, client) => {
      const { expected } = await seedClaimOrder(client, 'order_single');
      const order: number[] = [];
      for (let i = 0; i < expected.length; i++) {
        const jobs = await claim(db, { tasks: ['order_single'], limit: 1 });
        expect(jobs).toHaveLength(1);
        order.push(jobs[0].id);
      }
      expect(order).toEqual(expected);
      expect(await claim(db, { tasks: ['order_single'] })).toEqual([]);
    });
  });

  it('returns a batch in claim order: priority, then run_at, then id', async () => {
    await inRolledBackTransaction(t, async (db, client) => {
      const { expected } = await seedClaimOrder(client, 'order_batch');
      const jobs = await claim(db, { tasks: ['order_batch'], limit: 10 });
      expect(jobs.map((job) => job.id)).toEqual(expected);
    });
  });

  it('with `now` claims only jobs whose run_at is not after now, and leases from that now', async () => {
    await inRolledBackTransaction(t, async (db, client) => {
      const now = await transactionNow(client);
      const future = await insertJob(client, t.schema, { task: 'timed', runInMs: 60_000 });
      expect(await claim(db, { tasks: ['timed'] })).toEqual([]);
      expect(await claim(db, { tasks: ['timed'], now: plus(now, 59_999) })).toEqual([]);
      const claimAt = plus(now, 60_001); // now() has microseconds; a Date only milliseconds
      const [job] = await claim(db, { tasks: ['timed'], now: claimAt, leaseMs: 5_000, agentId: 'agent-x' });
      expect(job).toMatchObject({ id: future.id, attempt: 1, leaseEpoch: 1, task: 'timed' });
      const row = await rawJob(client, t.schema, future.id);
      expect(row).toMatchObject({ state: 'running', claimed_by: 'agent-x', attempt: 1, lease_epoch: 1 });
      expect(row!.started_at.getTime()).toBe(claimAt.getTime());
      expect(row!.lease_expires_at.getTime()).toBe(claimAt.getTime() + 5_000);
    });
  });

  it('respects limit, the queue filter, the task filter and paused queues', async () => {
    await inRolledBackTransaction(t, async (db, client) => {
      await insertJobs(client, t.schema, [
        { task: 'filt', queue: 'q1' },
        { task: 'filt', queue: 'q1' },
        { task: 'filt', queue: 'q2' },
        { task: 'filt_other', queue: 'q1' },
        { task: 'filt', queue: 'paused_q' },
      ]);
      await queueSetPaused(db, 'paused_q', true);
      expect(await claim(db, { tasks: ['filt'], queues: ['q1'], limit: 1 })).toHaveLength(1);
      const q1 = await claim(db, { tasks: ['filt'], queues: ['q1'] });
      expect(q1.map((job) => job.queue)).toEqual(['q1']);
      const rest = await claim(db, { tasks: ['filt'] });
      expect(rest.map((job) => job.queue)).toEqual(['q2']);
      expect(await claim(db, { tasks: ['filt'], queues: ['paused_q'] })).toEqual([]);
      await queueSetPaused(db, 'paused_q', false);
      expect((await claim(db, { tasks: ['filt'] })).map((job) => job.queue)).toEqual(['paused_q']);
      expect((await claim(db, { tasks: ['filt_other'] })).map((job) => job.task)).toEqual(['filt_other']);
    });
  });

  it('uses the partial index jobs_claim_order, not a sequential scan (EXPLAIN after ANALYZE)', async () => {
    await inRolledBackTransaction(t, async (db, client) => {
      await insertManyJobs(client, t.schema, 4000, { task: 'explain', state: 'pending' });
      await insertManyJobs(client, t.schema, 4000, { task: 'explain', state: 'completed' });
      await insertManyJobs(client, t.schema, 200, { task: 'explain', state: 'running' });
      await client.query(`ANALYZE "${t.schema}".jobs`);
      // Capture the exact statement and values the claim sends.
      let sent: { text: string; values?: unknown[] } | undefined;
      const recorder: Queryable = {
        async query(config) {
          sent = config;
          return { rows: [], rowCount: 0 } as never;
        },
      };
      await claim(db.on(recorder), { tasks: ['explain'], limit: 10 });
      expect(sent?.text).toMatch(/FOR UPDATE SKIP LOCKED/);
      const { rows } = await client.query({ text: `EXPLAIN ${sent!.text}`, values: sent!.values });
      const plan = rows.map((row) => row['QUERY PLAN']).join('\n');
      expect(plan).toMatch(/Index Scan using jobs_claim_order on jobs/);
      expect(plan).not.toMatch(/Seq Scan on jobs/);
      expect(plan).not.toMatch(/Sort/);
    });
  });
});

describe('jobInsertOne', () => {
  it('a field present but undefined takes the default and does not pick another statement (with or without ON CONFLICT)', async () => {
    await inRolledBackTransaction(t, async (db, client) => {
      const loose = await jobInsertOne(db, { task: 'undef_fields', payload: null, queue: undefined, priority: undefined, idempotency_key: undefined });
      expect(await rawJob(client, t.schema, loose!.id)).toMatchObject({ queue: 'default', priority: 1, idempotency_key: null });
      const first = await jobInsertOne(db, { task: 'undef_fields', payload: null, idempotency_key: 'undef-key' });
      expect(first).toMatchObject({ idempotencyKey: 'undef-key' });
      // The key is taken: no row, no duplicate-key error.
      expect(await jobInsertOne(db, { task: 'undef_fields', payload: null, idempotency_key: 'undef-key' })).toBeUndefined();
    });
  });
});

describe('jobCompleteMany and jobFailMany', () => {
  /**
   * In a rolled-back transaction: 20,000 pending jobs, ANALYZE (statistics as after a bulk enqueue or while
   * idle: every job pending, none running), a claim of 1,000, and their completion statement run through
   * `explain` (an EXPLAIN prefix), after `setup`. Returns the plan and how many jobs are completed after it.
   */
  async function completionPlan(task: string, explain: string, setup: (client: pg.PoolClient) => Promise<unknown> = async () => {}) {
    return inRolledBackTransaction(t, async (db, client) => {
      await insertManyJobs(client, t.schema, 20_000, { task, state: 'pending' });
      await client.query(`ANALYZE "${t.schema}".jobs`);
      const claimed = await claim(db, { tasks: [task], limit: 1000 });
      let sent: { text: string; values?: unknown[] } | undefined;
      const recorder: Queryable = {
        async query(config) {
          sent = config;
          return { rows: [], rowCount: 0 } as never;
        },
      };
      await jobCompleteMany(db.on(recorder), claimed, null);
      await setup(client);
      const { rows } = await client.query({ text: `${explain} ${sent!.text}`, values: sent!.values });
      const done = await client.query(`SELECT count(*)::int AS n FROM "${t.schema}".jobs WHERE state = 'completed'`);
      return { plan: rows.map((row) => row['QUERY PLAN']).join('\n'), completed: done.rows[0].n as number };
    });
  }

  it('drives a batch completion from the batch into the primary key when statistics say no job runs (EXPLAIN after ANALYZE)', async () => {
    // Left only nested loops to choose from (a hash join wins or loses against the bad plan by a hair,
    // depending on the table's size), the planner shows which side it believes is small.
    const { plan } = await completionPlan('explain_complete', 'EXPLAIN', async (client) => {
      await client.query('SET LOCAL enable_hashjoin = off');
      await client.query('SET LOCAL enable_mergejoin = off');
    });
    // Believing "no job runs", it scanned every job once and compared it with every run of the batch
    // (20 million comparisons per 1,000 completions); lease_expires_at has no statistics to believe, and
    // the ids are an index condition, so even a forced nested loop reads only the batch's rows.
    expect(plan).toMatch(/Index Scan using jobs_pkey on jobs j/);
    expect(plan).not.toMatch(/Seq Scan on jobs j/);
  });

  it('reads only the rows of the batch, not every job, with the planner left to choose (EXPLAIN ANALYZE)', async () => {
    const { plan, completed } = await completionPlan('explain_complete_scan', 'EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF)');
    // Hashing the batch against a scan of all 20,000 jobs (and their old versions) was the plan chosen here.
    expect(plan).not.toMatch(/Seq Scan on jobs j/);
    expect(plan).not.toMatch(/Join Filter: \(\(j\.id = c\.id\)/);
    expect(plan).toMatch(/Index Scan using jobs_pkey on jobs j/);
    expect(completed).toBe(1000);
  });

  it('completes only under the lease epoch the job was claimed with, and only running jobs', async () => {
    await inRolledBackTransaction(t, async (db, client) => {
      const [running, cancelled] = await insertJobs(client, t.schema, [
        { state: 'running', attempt: 2, leaseEpoch: 3 },
        { state: 'cancelled', attempt: 1, leaseEpoch: 1 },
      ]);
      const stale = await jobCompleteMany(db, [{ id: running.id, leaseEpoch: 2 }, { id: cancelled.id, leaseEpoch: 1 }], [JSON.stringify({ late: true }), null]);
      expect(stale.size).toBe(0);
      expect((await rawJob(client, t.schema, running.id))!.state).toBe('running');
      expect((await rawJob(client, t.schema, cancelled.id))!.state).toBe('cancelled');
      const done = await jobCompleteMany(db, [{ id: running.id, leaseEpoch: 3 }], [JSON.stringify({ sum: 5 })]);
      expect([...done]).toEqual([running.id]);
      const row = await rawJob(client, t.schema, running.id);
      expect(row).toMatchObject({ state: 'completed', result: { sum: 5 }, lease_expires_at: null });
      expect(row!.finished_at).toBeInstanceOf(Date);
    });
  });

  it('a failed attempt goes back to pending after the backoff, with the attempt logged', async () => {
    await inRolledBackTransaction(t, async (db, client) => {
      const now = await transactionNow(client);
      const job = await insertJob(client, t.schema, {
        state: 'running',
        attempt: 1,
        maxAttempts: 3,
        claimedBy: 'agent-a',
        backoff: { strategy: 'fixed', baseMs: 10_000, jitter: 0 },
      });
      const states = await jobFailMany(db, [{ ...job, error: 'boom', stack: 'Error: boom\n    at here', outcome: 'failed' }]);
      expect(states.get(job.id)).toBe('pending');
      const row = await rawJob(client, t.schema, job.id);
      expect(row).toMatchObject({ state: 'pending', attempt: 1, last_error: 'boom', lease_expires_at: null, finished_at: null });
      expect(row!.run_at.getTime()).toBe(now.getTime() + 10_000);
      expect(row!.attempt_log).toEqual([
        expect.objectContaining({ attempt: 1, agent: 'agent-a', outcome: 'failed', error: 'boom', stack: 'Error: boom\n    at here' }),
      ]);
    });
  });

  it('jobFailManySkippingLocked stores the runs it can lock and names as busy the one another transaction holds, without waiting', async () => {
    const [locked, free] = await insertJobs(t.pool, t.schema, [
      { state: 'running', queue: 'fail-skip', maxAttempts: 1 },
      { state: 'running', queue: 'fail-skip', maxAttempts: 1 },
    ]);
    const holder = await t.pool.connect();
    const failer = await t.pool.connect();
    try {
      await holder.query('BEGIN');
      await holder.query(`SELECT 1 FROM "${t.schema}".jobs WHERE id = $1 FOR UPDATE`, [locked.id]);
      // Waiting for the lock would end in this error; skipping, the statement never meets it.
      await failer.query(`SET lock_timeout = '10s'; SET statement_timeout = '5s'`);
      const outcome = await jobFailManySkippingLocked(t.db.on(failer), [
        { ...locked, error: 'boom', outcome: 'failed' },
        { ...free, error: 'boom', outcome: 'failed' },
      ]);
      expect(outcome.busy).toEqual(new Set([locked.id]));
      expect(outcome.states).toEqual(new Map([[free.id, 'dead']]));
      await holder.query('ROLLBACK');
      expect((await rawJob(t.pool, t.schema, locked.id))!.state).toBe('running');
      // Once the lock is gone, the same call stores it.
      const again = await jobFailManySkippingLocked(t.db.on(failer), [{ ...locked, error: 'boom', outcome: 'failed' }]);
      expect(again).toEqual({ states: new Map([[locked.id, 'dead']]), busy: new Set() });
    } finally {
      await holder.query('ROLLBACK');
      await failer.query('RESET lock_timeout; RESET statement_timeout');
      holder.release();
      failer.release();
      await t.pool.query(`DELETE FROM "${t.schema}".jobs WHERE queue = 'fail-skip'`);
    }
  });

  it('the last attempt, or a permanent failure, makes the job dead; a snooze gives the attempt back', async () => {
    await inRolledBackTransaction(t, async (db, client) => {
      const now = await transactionNow(client);
      const [last, permanent, snoozed] = await insertJobs(client, t.schema, [
        { state: 'running', attempt: 3, maxAttempts: 3 },
        { state: 'running', attempt: 1, maxAttempts: 5 },
        { state: 'running', attempt: 5, maxAttempts: 5, lastError: 'earlier error' },
      ]);
      const states = await jobFailMany(db, [
        { ...last, error: 'third strike', outcome: 'failed' },
        { ...permanent, error: 'bad input', outcome: 'failed', permanent: true },
        { ...snoozed, error: 'snoozed for 5000 ms', outcome: 'snoozed', snoozeMs: 5_000 },
      ]);
      expect(Object.fromEntries(states)).toEqual({ [last.id]: 'dead', [permanent.id]: 'dead', [snoozed.id]: 'pending' });
      const lastRow = await rawJob(client, t.schema, last.id);
      expect(lastRow!.finished_at.getTime()).toBe(now.getTime());
      expect(lastRow!.attempt_log).toHaveLength(1);
      expect((await rawJob(client, t.schema, permanent.id))!.attempt).toBe(1);
      const snoozedRow = await rawJob(client, t.schema, snoozed.id);
      expect(snoozedRow).toMatchObject({ state: 'pending', attempt: 4, attempt_log: [], last_error: 'earlier error', finished_at: null });
      expect(snoozedRow!.run_at.getTime()).toBe(now.getTime() + 5_000);
    });
  });

  it('a failure under a stale lease epoch is rejected', async () => {
    await inRolledBackTransaction(t, async (db, client) => {
      const job = await insertJob(client, t.schema, { state: 'running', attempt: 2, leaseEpoch: 4 });
      const states = await jobFailMany(db, [{ id: job.id, leaseEpoch: 3, error: 'late', outcome: 'failed' }]);
      expect(states.size).toBe(0);
      expect(await rawJob(client, t.schema, job.id)).toMatchObject({ state: 'running', attempt_log: [], last_error: null });
    });
  });
});

describe('leases', () => {
  it('jobExtendLeases extends from `now` only the leases still held', async () => {
    await inRolledBackTransaction(t, async (db, client) => {
      const now = await transactionNow(client);
      const [held, taken] = await insertJobs(client, t.schema, [
        { state: 'running', leaseEpoch: 2, attempt: 2 },
        { state: 'running', leaseEpoch: 5, attempt: 2 },
      ]);
      const at = plus(now, 10_000);
      const renewal = await jobExtendLeases(db, [held, { id: taken.id, leaseEpoch: 4 }], 20_000, at);
      expect(renewal).toEqual({ renewed: new Set([leaseKey(held)]), busy: new Set() });
      expect((await rawJob(client, t.schema, held.id))!.lease_expires_at.getTime()).toBe(at.getTime() + 20_000);
      expect((await rawJob(client, t.schema, taken.id))!.lease_expires_at.getTime()).toBe(now.getTime() + 30_000);
    });
  });

  it('jobExtendLeases skips a row another transaction holds locked: reported busy (still held), the others renewed', async () => {
    const [locked, free] = await insertJobs(t.pool, t.schema, [
      { state: 'running', leaseEpoch: 1 },
      { state: 'running', leaseEpoch: 1 },
    ]);
    const locker = await t.pool.connect();
    try {
      // As a client enqueueing a dependent of a running job holds that job's row until it commits.
      await locker.query('BEGIN');
      await locker.query(`UPDATE "${t.schema}".jobs SET dependents = '{}' WHERE id = $1`, [locked.id]);
      const renewal = await jobExtendLeases(t.db, [locked, free], 60_000);
      expect(renewal).toEqual({ renewed: new Set([leaseKey(free)]), busy: new Set([leaseKey(locked)]) });
    } finally {
      await locker.query('ROLLBACK');
      locker.release();
      await t.pool.query(`DELETE FROM "${t.schema}".jobs WHERE id = ANY($1)`, [[locked.id, free.id]]);
    }
  });

  it('jobReleaseMany gives a job back without using up an attempt', async () => {
    await inRolledBackTransaction(t, async (db, client) => {
      const job = await insertJob(client, t.schema, { state: 'running', attempt: 2, leaseEpoch: 2 });
      expect(await jobReleaseMany(db, [job])).toBe(1);
      expect(await rawJob(client, t.schema, job.id)).toMatchObject({ state: 'pending', attempt: 1, claimed_by: null, lease_expires_at: null, started_at: null });
      expect(await jobReleaseMany(db, [job])).toBe(0);
    });
  });

  it('jobReleaseMany wakes the queue in the same statement: a connection lost after it cannot make a committed release look failed', async () => {
    const listener = await t.pool.connect();
    const heard: string[] = [];
    listener.on('notification', (message) => heard.push(message.payload ?? ''));
    await listener.query(`LISTEN "${t.db.channel('jobs')}"`);
    const job = await insertJob(t.pool, t.schema, { state: 'running', queue: 'release-wakes', leaseEpoch: 1 });
    try {
      // Answers one statement, then fails as a dropped connection would.
      let statements = 0;
      const once: Queryable = {
        query: (config) => (++statements === 1 ? t.pool.query(config) : Promise.reject(new Error('Connection terminated unexpectedly'))),
      };
      expect(await jobReleaseMany(t.db.on(once), [job])).toBe(1);
      expect(await rawJob(t.pool, t.schema, job.id)).toMatchObject({ state: 'pending' });
      await waitFor('the wake-up of the queue', () => heard.includes('release-wakes'));
    } finally {
      await listener.query(`UNLISTEN *`);
      listener.release();
      await t.pool.query(`DELETE FROM "${t.schema}".jobs WHERE id = $1`, [job.id]);
    }
  });

  it('jobRescueExpired with a future `now` returns expired running jobs to pending, or to dead when attempts are used up', async () => {
    await inRolledBackTransaction(t, async (db, client) => {
      const now = await transactionNow(client);
      const [retryable, exhausted, fresh] = await insertJobs(client, t.schema, [
        { state: 'running', attempt: 1, maxAttempts: 3, claimedBy: 'frozen-agent', leaseExpiresInMs: 30_000, backoff: { strategy: 'fixed', baseMs: 10_000, jitter: 0 } },
        { state: 'running', attempt: 3, maxAttempts: 3, leaseExpiresInMs: 30_000 },
        { state: 'running', attempt: 1, maxAttempts: 3, leaseExpiresInMs: 600_000 },
      ]);
      const ours = <R extends { id: number }>(rows: R[]) => rows.filter((row) => [retryable.id, exhausted.id, fresh.id].includes(row.id));

      expect(ours(await jobRescueExpired(db, { limit: 100 }))).toEqual([]);

      const later = plus(now, 60_000);
      const rescued = ours(await jobRescueExpired(db, { limit: 100, now: later }));
      expect(rescued.map((row) => [row.id, row.state]).sort()).toEqual(
        [
          [retryable.id, 'pending'],
          [exhausted.id, 'dead'],
        ].sort(),
      );

      const pending = await rawJob(client, t.schema, retryable.id);
      expect(pending).toMatchObject({ state: 'pending', attempt: 1, last_error: 'lease expired', lease_expires_at: null, finished_at: null });
      expect(pending!.run_at.getTime()).toBe(later.getTime() + 10_000);
      expect(pending!.attempt_log).toEqual([expect.objectContaining({ attempt: 1, agent: 'frozen-agent', outcome: 'lease_expired', error: 'lease expired' })]);
      expect(new Date(pending!.attempt_log[0].finished_at).getTime()).toBe(later.getTime());

      const dead = await rawJob(client, t.schema, exhausted.id);
      expect(dead).toMatchObject({ state: 'dead', lease_expires_at: null });
      expect(dead!.finished_at.getTime()).toBe(later.getTime());
      expect(dead!.attempt_log).toEqual([expect.objectContaining({ outcome: 'lease_expired' })]);

      expect((await rawJob(client, t.schema, fresh.id))!.state).toBe('running');

      // the rescued job is claimable once its backoff has passed, as a new attempt
      expect(await claim(db, { tasks: ['factory_task'], now: plus(later, 9_000) })).toEqual([]);
      const [again] = await claim(db, { tasks: ['factory_task'], now: plus(later, 10_000) });
      expect(again).toMatchObject({ id: retryable.id, attempt: 2 });
    });
  });
});

describe('jobDeleteFinished', () => {
  it('deletes only completed and cancelled jobs older than the retention, never dead ones', async () => {
    await inRolledBackTransaction(t, async (db, client) => {
      const now = await transactionNow(client);
      const hour = 3_600_000;
      const [oldCompleted, oldCancelled, oldDead, recentCompleted, pending, running] = await insertJobs(client, t.schema, [
        { task: 'retention', state: 'completed', finishedAgoMs: 2 * hour },
        { task: 'retention', state: 'cancelled', finishedAgoMs: 2 * hour },
        { task: 'retention', state: 'dead', finishedAgoMs: 2 * hour },
        { task: 'retention', state: 'completed', finishedAgoMs: 10 * 60_000 },
        { task: 'retention', state: 'pending', runInMs: -2 * hour },
        { task: 'retention', state: 'running' },
      ]);
      const exists = async (id: number) => (await rawJob(client, t.schema, id)) !== undefined;

      expect(await jobDeleteFinished(db, { retentionMs: hour, limit: 100 })).toBe(2);
      expect(await exists(oldCompleted.id)).toBe(false);
      expect(await exists(oldCancelled.id)).toBe(false);
      expect(await exists(oldDead.id)).toBe(true);
      expect(await exists(recentCompleted.id)).toBe(true);

      await jobDeleteFinished(db, { retentionMs: hour, limit: 100, now: plus(now, 24 * hour) });
      expect(await exists(recentCompleted.id)).toBe(false);
      for (const kept of [oldDead, pending, running]) expect(await exists(kept.id)).toBe(true);
    });
  });

  it('deletes at most `limit` jobs per call', async () => {
    await inRolledBackTransaction(t, async (db, client) => {
      const now = await transactionNow(client);
      await insertJobs(client, t.schema, Array.from({ length: 5 }, () => ({ task: 'batch_retention', state: 'completed' as const, finishedAgoMs: 60_000 })));
      const later = plus(now, 86_400_000);
      expect(await jobDeleteFinished(db, { retentionMs: 1_000, limit: 2, now: later })).toBe(2);
      expect(await jobDeleteFinished(db, { retentionMs: 1_000, limit: 2, now: later })).toBe(2);
      const { rows } = await client.query(`SELECT count(*)::int AS n FROM "${t.schema}".jobs WHERE task = 'batch_retention'`);
      expect(rows[0].n).toBe(1);
    });
  });
});

describe('claim order through an agent', () => {
  async function runOrder(task: string, options: Partial<AgentOptions>): Promise<{ ran: string[]; names: string[] }> {
    const { names } = await seedClaimOrder(t.pool, task);
    const ran: string[] = [];
    await startAgent({ concurrency: 1, handlers: { [task]: (payload: string) => void ran.push(payload) }, ...options });
    await waitFor('all seven jobs ran', () => ran.length === names.length);
    return { ran, names };
  }

  it('a concurrency-1 agent without prefetch runs critical, high, normal, low; within a priority by run_at then id', async () => {
    const { ran, names } = await runOrder('agent_order', { prefetch: 0 });
    expect(ran).toEqual(names);
  });

  it('the same order holds when the agent claims several jobs at once (prefetch)', async () => {
    const { ran, names } = await runOrder('agent_order_prefetch', { prefetch: 10 });
    expect(ran).toEqual(names);
  });
});

describe('retention through the agent', () => {
  it('deletes completed and cancelled jobs past the retention window; keeps dead and pending ones', async () => {
    const ran: number[] = [];
    const [oldCancelled, oldDead, waiting] = await insertJobs(t.pool, t.schema, [
      { task: 'kept_around', state: 'cancelled', finishedAgoMs: 1_000 },
      { task: 'kept_around', state: 'dead', finishedAgoMs: 86_400_000 },
      { task: 'kept_around', state: 'pending', runInMs: 3_600_000 },
    ]);
    const jobs = await t.client.enqueueMany([1, 2, 3].map((n) => ({ task: 'short_lived', payload: n })));
    await startAgent({ retentionMs: 0, retentionIntervalMs: 50, handlers: { short_lived: (n: number) => void ran.push(n) } });
    await waitFor('completed jobs deleted by retention', async () => {
      const { rows } = await t.pool.query(`SELECT count(*)::int AS n FROM "${t.schema}".jobs WHERE id = ANY($1::bigint[])`, [
        [...jobs.map((job) => job.id), oldCancelled.id],
      ]);
      return rows[0].n === 0;
    });
    expect(ran.sort()).toEqual([1, 2, 3]);
    expect(await rawJob(t.pool, t.schema, oldDead.id)).toMatchObject({ state: 'dead' });
    expect(await rawJob(t.pool, t.schema, waiting.id)).toMatchObject({ state: 'pending' });
  });
});
