/**
 * Operator actions on jobs with dependencies, and their races: cancel, drop and purge cascade to the waiting
 * dependents; retry and replay re-check the job's own dependencies. Enqueue, release and retention of a DAG
 * are in workflows.test.ts.
 */
import type pg from 'pg';
import { describe, expect, it } from 'vitest';
import { cancelJob, dropJob, purgeDead, replayDead, retryJob } from '../src/shared/admin.js';
import { jobClaimBatch, jobCompleteMany, jobFailMany } from '../src/shared/db/queries/jobs-runs.js';
import { dagHelpers } from './support/dag.js';
import { useTestSchema, waitFor, waitUntilBlockedBy } from './support/database.js';
import { insertJob } from './support/factories.js';

const t = useTestSchema('dagact');
const { states, completeReady, killReady } = dagHelpers(t);

/**
 * Two connections of their own for a race: `holder` opens a transaction that takes a lock, `waiter` runs a
 * statement that must wait for it. Rolled back and released at the end.
 */
async function withTwoConnections(body: (holder: pg.PoolClient, waiter: pg.PoolClient, waitUntilBlocked: () => Promise<unknown>) => Promise<void>) {
  const holder = await t.pool.connect();
  const waiter = await t.pool.connect();
  try {
    const [holderPid, waiterPid] = await Promise.all([holder, waiter].map(async (c) => (await c.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number));
    // Deterministic, no sleeps: the waiter's backend is seen waiting for a lock the holder's backend holds.
    const waitUntilBlocked = () => waitUntilBlockedBy(t, holderPid, waiterPid);
    await body(holder, waiter, waitUntilBlocked);
  } finally {
    await holder.query('ROLLBACK').catch(() => {});
    await waiter.query('ROLLBACK').catch(() => {});
    holder.release();
    waiter.release();
  }
}

describe('cancel and drop cascade', () => {
  const chain = () =>
    t.client.enqueueWorkflow({
      nodes: {
        a: { task: 'x', queue: 'idle' },
        b: { task: 'x', queue: 'idle', dependsOn: ['a'] },
        c: { task: 'x', queue: 'idle', dependsOn: ['b'] },
        d: { task: 'x', queue: 'idle', dependsOn: ['b', 'a'] },
        free: { task: 'x', queue: 'idle' },
      },
    });

  it('cancelling a job cancels its dependents transitively, each with the reason', async () => {
    const { jobs } = await chain();
    await t.client.cancelJob(jobs.a);
    expect(await states([jobs.a, jobs.b, jobs.c, jobs.d, jobs.free])).toEqual(['cancelled', 'cancelled', 'cancelled', 'cancelled', 'pending']);
    expect((await t.client.getJob(jobs.b)).lastError).toBe(`cancelled: dependency job ${jobs.a} was cancelled`);
    expect((await t.client.getJob(jobs.c)).lastError).toBe(`cancelled: dependency job ${jobs.b} was cancelled`);
    expect((await t.client.getJob(jobs.d)).lastError).toMatch(/^cancelled: dependency job \d+ was cancelled$/);
  });

  it('cancelling a middle job leaves its dependencies alone', async () => {
    const { jobs } = await chain();
    await t.client.cancelJob(jobs.b);
    expect(await states([jobs.a, jobs.b, jobs.c, jobs.d])).toEqual(['pending', 'cancelled', 'cancelled', 'cancelled']);
  });

  it('dropping a job cancels its dependents ("was dropped") and deletes its edges', async () => {
    const { jobs } = await chain();
    await t.client.dropJob(jobs.a);
    expect(await states([jobs.a, jobs.b, jobs.c, jobs.d])).toEqual(['gone', 'cancelled', 'cancelled', 'cancelled']);
    expect((await t.client.getJob(jobs.b)).lastError).toBe(`cancelled: dependency job ${jobs.a} was dropped`);
    const { rows } = await t.pool.query(`SELECT count(*)::int AS n FROM "${t.schema}".job_deps WHERE job_id = $1 OR depends_on = $1`, [jobs.a]);
    expect(rows[0].n).toBe(0);
  });

  it('purging a dead job cancels its waiting dependents too', async () => {
    const { jobs } = await t.client.enqueueWorkflow({ nodes: { a: { task: 'x', queue: 'purgeq' }, b: { task: 'x', queue: 'purgeq', dependsOn: ['a'] } } });
    const [claimed] = await jobClaimBatch(t.db, { agentId: 'test', leaseMs: 30_000, queues: ['purgeq'], tasks: null, limit: 1 });
    await jobFailMany(t.db, [{ ...claimed, error: 'boom', permanent: true, outcome: 'failed' }]);
    expect(await t.client.purgeDead({ ids: [jobs.a] })).toEqual([jobs.a]);
    expect(await t.client.getJob(jobs.b)).toMatchObject({ state: 'cancelled', lastError: `cancelled: dependency job ${jobs.a} was dropped` });
  });
});

describe('cancel cascade races: a dependent attached while the cascade runs is cancelled too', () => {
  const actions = {
    cancel: { state: 'pending' as const, verb: 'cancelled', run: (db: typeof t.db, id: number) => cancelJob(db, id) },
    drop: { state: 'pending' as const, verb: 'dropped', run: (db: typeof t.db, id: number) => dropJob(db, id) },
    purge: { state: 'dead' as const, verb: 'dropped', run: (db: typeof t.db, id: number) => purgeDead(db, { ids: [id] }) },
  };

  it.each(Object.keys(actions) as (keyof typeof actions)[])(
    '%s of X waits for the open enqueue of a dependent of X; after it commits, the dependent is cancelled',
    async (name) => {
      const action = actions[name];
      const parent = await insertJob(t.pool, t.schema, { task: 'x', queue: 'never', state: action.state });
      await withTwoConnections(async (enqueuer, canceller, waitUntilBlocked) => {
        await enqueuer.query('BEGIN');
        const child = await t.client.enqueue({ task: 'x', queue: 'never', dependsOn: [parent.id] }, { client: enqueuer });
        const cascade = action.run(t.db.on(canceller), parent.id);
        await waitUntilBlocked(); // on X's row, which the enqueue locked to attach the dependent
        await enqueuer.query('COMMIT');
        await cascade;
        expect(await t.client.getJob(child.id)).toMatchObject({
          state: 'cancelled',
          lastError: `cancelled: dependency job ${parent.id} was ${action.verb}`,
        });
        if (name !== 'cancel') {
          const { rows } = await t.pool.query(`SELECT count(*)::int AS n FROM "${t.schema}".job_deps WHERE depends_on = $1`, [parent.id]);
          expect(rows[0].n).toBe(0); // the edge attached during the wait went with the dropped job
        }
      });
    },
  );

  it('two levels: a job attached to a dependent while the cascade waits for that dependent is cancelled too', async () => {
    const parent = await t.client.enqueue({ task: 'x', queue: 'never' });
    const middle = await t.client.enqueue({ task: 'x', queue: 'never', dependsOn: [parent.id] });
    await withTwoConnections(async (enqueuer, canceller, waitUntilBlocked) => {
      await enqueuer.query('BEGIN');
      const grandchild = await t.client.enqueue({ task: 'x', queue: 'never', dependsOn: [middle.id] }, { client: enqueuer });
      const cancel = cancelJob(t.db.on(canceller), parent.id);
      await waitUntilBlocked(); // the cascade reached the middle job, which the enqueue locked
      await enqueuer.query('COMMIT');
      await cancel;
      expect(await t.client.getJob(middle.id)).toMatchObject({ state: 'cancelled', lastError: `cancelled: dependency job ${parent.id} was cancelled` });
      expect(await t.client.getJob(grandchild.id)).toMatchObject({ state: 'cancelled', lastError: `cancelled: dependency job ${middle.id} was cancelled` });
    });
  });
});

describe('an action racing the end of a run', () => {
  it('a retry that waited while the running job went dead retries it (was a CHECK violation on the old version)', async () => {
    const job = await insertJob(t.pool, t.schema, { task: 'race_dead', state: 'running' });
    await withTwoConnections(async (holder) => {
      await holder.query('BEGIN');
      // What a failure with its attempts used up writes, not yet committed.
      await holder.query(
        `UPDATE "${t.schema}".jobs SET state = 'dead', lease_expires_at = NULL, claimed_by = NULL, finished_at = now() WHERE id = $1`,
        [job.id],
      );
      // The retry's snapshot sees the job running; its row lock waits for the holder.
      const retried = retryJob(t.db, job.id).catch((error) => error);
      await waitForLockWaiter(job.id);
      await holder.query('COMMIT');
      expect(await retried).toEqual({ state: 'pending', pendingDeps: 0, blockedReason: null, restoredDependents: [] });
    });
    expect((await t.client.getJob(job.id)).state).toBe('pending');
  });

  it('cancelling a blocked waiting job clears its blocked reason', async () => {
    const { jobs } = await t.client.enqueueWorkflow({ nodes: { parent: { task: 'x', queue: 'idle' }, child: { task: 'x', queue: 'idle', dependsOn: ['parent'] } } });
    await t.pool.query(`UPDATE "${t.schema}".jobs SET blocked_reason = 'blocked: job ' || $1 || ' is dead' WHERE id = $2`, [jobs.parent, jobs.child]);
    await cancelJob(t.db, jobs.child);
    expect(await t.client.getJob(jobs.child)).toMatchObject({ state: 'cancelled', blockedReason: null });
  });
});

/** Waits until some backend waits for a lock on the job's row (the retry, from the pool). */
async function waitForLockWaiter(jobId: number): Promise<void> {
  await waitFor(`a backend waiting for job ${jobId}'s row`, async () => {
    const { rows } = await t.pool.query(
      `SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%target AS%' AND query LIKE '%' || $1 || '.jobs%'`,
      [`"${t.schema}"`],
    );
    return rows[0].n > 0;
  });
}

describe('retry and replay of a job with dependencies re-check them', () => {
  it('a cascade-cancelled dependent retried while a dependency is pending waits (blocked while one is cancelled), then runs after them', async () => {
    const { jobs } = await t.client.enqueueWorkflow({
      nodes: { x: { task: 'x', queue: 'retry1' }, y: { task: 'x', queue: 'retry1' }, d: { task: 'x', queue: 'retry1', dependsOn: ['x', 'y'] } },
    });
    await t.client.cancelJob(jobs.y);
    expect(await t.client.getJob(jobs.d)).toMatchObject({ state: 'cancelled', lastError: `cancelled: dependency job ${jobs.y} was cancelled` });

    await t.client.retryJob(jobs.d);
    expect(await t.client.getJob(jobs.d)).toMatchObject({ state: 'waiting', pendingDeps: 2, blockedReason: `blocked: job ${jobs.y} is cancelled` });
    await t.client.retryJob(jobs.y);
    expect(await t.client.getJob(jobs.d)).toMatchObject({ state: 'waiting', pendingDeps: 2, blockedReason: null });

    expect((await completeReady('retry1')).sort()).toEqual([jobs.x, jobs.y].sort());
    expect(await t.client.getJob(jobs.d)).toMatchObject({ state: 'pending', pendingDeps: 0 });
    expect(await completeReady('retry1')).toEqual([jobs.d]);
  });

  it('retried while a dependency is dead: waiting and blocked; replaying the dependency clears the reason and its success releases it', async () => {
    const { jobs } = await t.client.enqueueWorkflow({
      nodes: { x: { task: 'x', queue: 'retry2' }, d: { task: 'x', queue: 'retry2', dependsOn: ['x'] } },
    });
    await killReady('retry2');
    await t.client.cancelJob(jobs.d);
    await t.client.retryJob(jobs.d);
    expect(await t.client.getJob(jobs.d)).toMatchObject({ state: 'waiting', pendingDeps: 1, blockedReason: `blocked: job ${jobs.x} is dead` });

    await t.client.replayJob(jobs.x);
    expect(await t.client.getJob(jobs.d)).toMatchObject({ state: 'waiting', pendingDeps: 1, blockedReason: null });
    expect(await completeReady('retry2')).toEqual([jobs.x]);
    expect(await t.client.getJob(jobs.d)).toMatchObject({ state: 'pending', pendingDeps: 0 });
  });

  it('every dependency completed: pending, as before', async () => {
    const { jobs } = await t.client.enqueueWorkflow({
      nodes: { x: { task: 'x', queue: 'retry3' }, d: { task: 'x', queue: 'retry3', dependsOn: ['x'] } },
    });
    await completeReady('retry3');
    await killReady('retry3');
    await t.client.replayJob(jobs.d);
    expect(await t.client.getJob(jobs.d)).toMatchObject({ state: 'pending', pendingDeps: 0, blockedReason: null, replayCount: 1 });
  });

  it('a dependent blocked by two dead jobs stays blocked, by the other one, when one of them is replayed', async () => {
    const { jobs } = await t.client.enqueueWorkflow({
      nodes: { x: { task: 'x', queue: 'retry4' }, y: { task: 'x', queue: 'retry4b' }, d: { task: 'x', queue: 'retry4', dependsOn: ['x', 'y'] } },
    });
    await killReady('retry4');
    await killReady('retry4b');
    expect((await t.client.getJob(jobs.d)).blockedReason).toBe(`blocked: job ${jobs.y} is dead`); // the later one
    await t.client.replayJob(jobs.y);
    expect((await t.client.getJob(jobs.d)).blockedReason).toBe(`blocked: job ${jobs.x} is dead`);
    expect((await t.client.replayDead({ ids: [jobs.x] })).replayed).toEqual([jobs.x]);
    expect((await t.client.getJob(jobs.d)).blockedReason).toBeNull();
  });

  it('a completion of the dependency in flight: the retry waits for it and sees it completed', async () => {
    const x = await t.client.enqueue({ task: 'x', queue: 'retry5' });
    const d = await t.client.enqueue({ task: 'x', queue: 'retry5', dependsOn: [x.id] });
    await t.client.cancelJob(d.id);
    const [claimed] = await jobClaimBatch(t.db, { agentId: 'test', leaseMs: 30_000, queues: ['retry5'], tasks: null, limit: 1 });
    await withTwoConnections(async (completer, retrier, waitUntilBlocked) => {
      await completer.query('BEGIN');
      await jobCompleteMany(t.db.on(completer), [claimed], null); // releases nothing: d is cancelled
      const retry = retryJob(t.db.on(retrier), d.id);
      await waitUntilBlocked();
      await completer.query('COMMIT');
      await retry;
    });
    expect(await t.client.getJob(d.id)).toMatchObject({ state: 'pending', pendingDeps: 0 });
  });

  it('a completion that starts while the retry is open waits for it, then releases the retried job', async () => {
    const x = await t.client.enqueue({ task: 'x', queue: 'retry6' });
    const d = await t.client.enqueue({ task: 'x', queue: 'retry6', dependsOn: [x.id] });
    await t.client.cancelJob(d.id);
    const [claimed] = await jobClaimBatch(t.db, { agentId: 'test', leaseMs: 30_000, queues: ['retry6'], tasks: null, limit: 1 });
    await withTwoConnections(async (retrier, completer, waitUntilBlocked) => {
      await retrier.query('BEGIN');
      await retryJob(t.db.on(retrier), d.id);
      const completion = jobCompleteMany(t.db.on(completer), [claimed], null);
      await waitUntilBlocked(); // on x, which the retry locked FOR SHARE
      await retrier.query('COMMIT');
      expect(await completion).toEqual(new Set([x.id]));
    });
    expect(await t.client.getJob(d.id)).toMatchObject({ state: 'pending', pendingDeps: 0 });
  });

  it('a pending or dead job with a dependency not completed (left so by a retry from before the re-check) waits too, and says so', async () => {
    const x = await t.client.enqueue({ task: 'x', queue: 'retry7x' });
    const pending = await t.client.enqueue({ task: 'x', queue: 'retry7', dependsOn: [x.id] });
    const dead = await t.client.enqueue({ task: 'x', queue: 'retry7dead', dependsOn: [x.id] });
    await t.client.cancelJob(x.id); // cancels both dependents
    // What retry did before migration 0004: pending, whatever the dependencies.
    await t.pool.query(
      `UPDATE "${t.schema}".jobs SET state = 'pending', run_at = now(), finished_at = NULL, attempt = 0 WHERE id = ANY($1::bigint[])`,
      [[pending.id, dead.id]],
    );
    await killReady('retry7dead');
    expect(await states([pending.id, dead.id])).toEqual(['pending', 'dead']);

    const waiting = { state: 'waiting', pendingDeps: 1, blockedReason: `blocked: job ${x.id} is cancelled` };
    expect(await t.client.retryJob(pending.id)).toEqual({ ...waiting, restoredDependents: [] });
    expect(await t.client.replayJob(dead.id)).toEqual({ ...waiting, restoredDependents: [] });
    expect(await t.client.getJob(dead.id)).toMatchObject({ ...waiting, attempt: 0, replayCount: 1 });

    expect(await t.client.retryJob(x.id)).toEqual({ state: 'pending', pendingDeps: 0, blockedReason: null, restoredDependents: [] });
    expect(await completeReady('retry7x')).toEqual([x.id]);
    expect(await states([pending.id, dead.id])).toEqual(['pending', 'pending']);
  });
});

describe('retry and replay bring back the dependents their cancel had cancelled', () => {
  const chain = (queue: string) =>
    t.client.enqueueWorkflow({
      nodes: {
        a: { task: 'x', queue },
        b: { task: 'x', queue, dependsOn: ['a'] },
        c: { task: 'x', queue, dependsOn: ['b'] },
        d: { task: 'x', queue, dependsOn: ['b', 'a'] },
      },
    });
  const waitingFor = (id: number, pendingDeps: number, blockedReason: string | null = null) => ({ id, state: 'waiting', pendingDeps, blockedReason });

  it('a cancel by mistake, then a retry: the whole downstream waits again, as enqueued, and runs in order', async () => {
    const { jobs } = await chain('back1');
    await t.client.cancelJob(jobs.a);
    expect(await states([jobs.b, jobs.c, jobs.d])).toEqual(['cancelled', 'cancelled', 'cancelled']);

    const outcome = await t.client.retryJob(jobs.a);
    expect(outcome).toEqual({
      state: 'pending',
      pendingDeps: 0,
      blockedReason: null,
      restoredDependents: [waitingFor(jobs.b, 1), waitingFor(jobs.c, 1), waitingFor(jobs.d, 2)].sort((x, y) => x.id - y.id),
    });
    const b = await t.client.getJob(jobs.b);
    expect(b).toMatchObject({ state: 'waiting', pendingDeps: 1, blockedReason: null, lastError: null, finishedAt: null });
    expect(b.attemptLog.at(-1)).toMatchObject({ outcome: 'restored', error: `cancelled: dependency job ${jobs.a} was cancelled` });

    expect(await completeReady('back1')).toEqual([jobs.a]);
    expect(await completeReady('back1')).toEqual([jobs.b]);
    expect((await completeReady('back1')).sort()).toEqual([jobs.c, jobs.d].sort());
  });

  it('a dependent an operator cancelled stays cancelled, also after it was retried by itself while cascade-cancelled', async () => {
    const { jobs } = await chain('back2');
    await t.client.cancelJob(jobs.c); // by the operator, while waiting
    await t.client.cancelJob(jobs.a);
    await t.client.retryJob(jobs.d); // by itself: waits, blocked by a; its last error still names a's cancel
    await t.client.cancelJob(jobs.d); // and cancelled by the operator again
    expect((await t.client.getJob(jobs.d)).lastError).toBe('cancelled by an operator');

    const outcome = await t.client.retryJob(jobs.a);
    expect(outcome.restoredDependents).toEqual([waitingFor(jobs.b, 1)]);
    expect(await states([jobs.a, jobs.b, jobs.c, jobs.d])).toEqual(['pending', 'waiting', 'cancelled', 'cancelled']);
  });

  it('cancelling a job the cascade cancelled keeps it cancelled when its dependency is retried', async () => {
    const { jobs } = await chain('back2b');
    await t.client.cancelJob(jobs.a); // cancels b, c and d
    const { finishedAt } = await t.client.getJob(jobs.c);
    await t.client.cancelJob(jobs.c); // the operator's word: c stays cancelled
    expect(await t.client.getJob(jobs.c)).toMatchObject({ state: 'cancelled', lastError: 'cancelled by an operator', finishedAt });
    expect((await t.client.retryJob(jobs.a)).restoredDependents.map((dependent) => dependent.id)).toEqual([jobs.b, jobs.d]);
    expect(await states([jobs.b, jobs.c, jobs.d])).toEqual(['waiting', 'cancelled', 'waiting']);
    // A job an operator cancelled is not cancelled again.
    await expect(t.client.cancelJob(jobs.c)).rejects.toThrow(/is cancelled; only .* can be cancelled/);
  });

  it('a dependent with another cancelled dependency stays cancelled; the retry of that one brings it back', async () => {
    const { jobs } = await t.client.enqueueWorkflow({
      nodes: { x: { task: 'x', queue: 'back3' }, y: { task: 'x', queue: 'back3' }, d: { task: 'x', queue: 'back3', dependsOn: ['x', 'y'] } },
    });
    await t.client.cancelJob(jobs.x); // cancels d
    await t.client.cancelJob(jobs.y); // would have, had d been waiting
    expect((await t.client.retryJob(jobs.x)).restoredDependents).toEqual([]);
    expect((await t.client.getJob(jobs.d)).state).toBe('cancelled');
    expect((await t.client.retryJob(jobs.y)).restoredDependents).toEqual([waitingFor(jobs.d, 2)]);
  });

  it('a dependent cancelled by the cascade of another dependency, dead since, stays cancelled until that one is replayed', async () => {
    const { jobs } = await t.client.enqueueWorkflow({
      nodes: { x: { task: 'x', queue: 'back4x' }, y: { task: 'x', queue: 'back4y' }, d: { task: 'x', queue: 'back4x', dependsOn: ['x', 'y'] } },
    });
    await t.client.cancelJob(jobs.y); // cancels d
    await t.client.cancelJob(jobs.x);
    expect((await t.client.retryJob(jobs.y)).restoredDependents).toEqual([]); // x is still cancelled
    expect(await killReady('back4y')).toBe(jobs.y);
    expect((await t.client.retryJob(jobs.x)).restoredDependents).toEqual([]); // y, whose cancel it was, is dead
    expect((await t.client.getJob(jobs.d)).state).toBe('cancelled');
    expect((await t.client.replayJob(jobs.y)).restoredDependents).toEqual([waitingFor(jobs.d, 2)]);
  });

  it('a dead dependency that did not cancel it: back, and blocked by it, as an enqueue would leave it', async () => {
    const { jobs } = await t.client.enqueueWorkflow({
      nodes: { x: { task: 'x', queue: 'back5x' }, y: { task: 'x', queue: 'back5y' }, d: { task: 'x', queue: 'back5x', dependsOn: ['x', 'y'] } },
    });
    await killReady('back5y');
    await t.client.cancelJob(jobs.x);
    expect((await t.client.retryJob(jobs.x)).restoredDependents).toEqual([waitingFor(jobs.d, 2, `blocked: job ${jobs.y} is dead`)]);
  });

  it('a drop cascade is not undone, but the retry of a job it cancelled brings back that job\'s own downstream', async () => {
    const { jobs } = await chain('back6');
    await t.client.dropJob(jobs.a);
    expect((await t.client.retryJob(jobs.b)).restoredDependents).toEqual([waitingFor(jobs.c, 1)]);
    expect(await states([jobs.b, jobs.c, jobs.d])).toEqual(['pending', 'waiting', 'cancelled']); // d's cause was the drop of a
  });

  it('a dependent retried by itself, blocked by the job brought back, is unblocked', async () => {
    const { jobs } = await chain('back7');
    await t.client.cancelJob(jobs.a);
    await t.client.retryJob(jobs.c);
    expect(await t.client.getJob(jobs.c)).toMatchObject({ state: 'waiting', blockedReason: `blocked: job ${jobs.b} is cancelled` });
    const outcome = await t.client.retryJob(jobs.a);
    expect(outcome.restoredDependents.map((job) => job.id)).toEqual([jobs.b, jobs.d]);
    expect(await t.client.getJob(jobs.c)).toMatchObject({ state: 'waiting', pendingDeps: 1, blockedReason: null });
  });

  it('a completion of another dependency in flight: the retry waits for it, and the dependent counts it completed', async () => {
    const { jobs } = await t.client.enqueueWorkflow({
      nodes: { x: { task: 'x', queue: 'back8x' }, y: { task: 'x', queue: 'back8y' }, d: { task: 'x', queue: 'back8x', dependsOn: ['x', 'y'] } },
    });
    await t.client.cancelJob(jobs.x); // cancels d
    const [claimed] = await jobClaimBatch(t.db, { agentId: 'test', leaseMs: 30_000, queues: ['back8y'], tasks: null, limit: 1 });
    await withTwoConnections(async (completer, retrier, waitUntilBlocked) => {
      await completer.query('BEGIN');
      await jobCompleteMany(t.db.on(completer), [claimed], null); // releases nothing: d is cancelled
      const retry = retryJob(t.db.on(retrier), jobs.x);
      await waitUntilBlocked(); // on y, which the retry locks FOR SHARE before it brings d back
      await completer.query('COMMIT');
      expect((await retry).restoredDependents).toEqual([waitingFor(jobs.d, 1)]);
    });
    expect(await completeReady('back8x')).toEqual([jobs.x]);
    expect(await t.client.getJob(jobs.d)).toMatchObject({ state: 'pending', pendingDeps: 0 });
  });

  it('a completion that starts while the retry is open waits for it, then releases the dependent brought back', async () => {
    const { jobs } = await t.client.enqueueWorkflow({
      nodes: { x: { task: 'x', queue: 'back9x' }, y: { task: 'x', queue: 'back9y' }, d: { task: 'x', queue: 'back9x', dependsOn: ['x', 'y'] } },
    });
    await t.client.cancelJob(jobs.x);
    const [claimed] = await jobClaimBatch(t.db, { agentId: 'test', leaseMs: 30_000, queues: ['back9y'], tasks: null, limit: 1 });
    await withTwoConnections(async (retrier, completer, waitUntilBlocked) => {
      await retrier.query('BEGIN');
      expect((await retryJob(t.db.on(retrier), jobs.x)).restoredDependents).toEqual([waitingFor(jobs.d, 2)]);
      const completion = jobCompleteMany(t.db.on(completer), [claimed], null);
      await waitUntilBlocked();
      await retrier.query('COMMIT');
      await completion;
    });
    expect(await t.client.getJob(jobs.d)).toMatchObject({ state: 'waiting', pendingDeps: 1 });
  });

  it('a dependent that lost a dependency to a drop or a purge after its cascade stays cancelled: it cannot wait for it any more', async () => {
    const twoDependencies = (queue: string) =>
      t.client.enqueueWorkflow({
        nodes: { x: { task: 'x', queue }, y: { task: 'x', queue: `${queue}y` }, d: { task: 'x', queue, dependsOn: ['x', 'y'] } },
      });
    const dropped = (await twoDependencies('back11')).jobs;
    await t.client.cancelJob(dropped.x); // cancels d
    await t.client.dropJob(dropped.y);
    expect((await t.client.retryJob(dropped.x)).restoredDependents).toEqual([]);
    expect(await t.client.getJob(dropped.d)).toMatchObject({ state: 'cancelled', lastError: `cancelled: dependency job ${dropped.y} was dropped` });

    const purged = (await twoDependencies('back12')).jobs;
    expect(await killReady('back12y')).toBe(purged.y);
    await t.client.cancelJob(purged.x); // cancels d
    await t.client.purgeDead({ ids: [purged.y] });
    expect((await t.client.retryJob(purged.x)).restoredDependents).toEqual([]);
    expect(await t.client.getJob(purged.d)).toMatchObject({ state: 'cancelled', lastError: `cancelled: dependency job ${purged.y} was dropped` });
  });

  it('two retries bringing back one dependent from two sides at once both succeed (a deadlock between them is tried again)', async () => {
    for (let round = 0; round < 4; round++) {
      const { jobs } = await t.client.enqueueWorkflow({
        nodes: { x: { task: 'x', queue: 'back13' }, y: { task: 'x', queue: 'back13' }, d: { task: 'x', queue: 'back13', dependsOn: ['x', 'y'] } },
      });
      await t.client.cancelJob(jobs.x); // cancels d
      await t.client.cancelJob(jobs.y);
      const outcomes = await Promise.allSettled([t.client.retryJob(jobs.x), t.client.retryJob(jobs.y)]);
      expect(outcomes.map((outcome) => (outcome.status === 'rejected' ? String(outcome.reason) : 'ok'))).toEqual(['ok', 'ok']);
      expect(await t.client.getJob(jobs.d)).toMatchObject({ state: 'waiting', pendingDeps: 2 });
    }
  }, 30_000);

  it('a bulk replay says which jobs wait instead of running, and brings back what their cancel had cancelled', async () => {
    const { jobs } = await t.client.enqueueWorkflow({
      nodes: { x: { task: 'x', queue: 'back10x' }, y: { task: 'x', queue: 'back10y' }, d: { task: 'x', queue: 'back10x', dependsOn: ['x', 'y'] } },
    });
    const z = await t.client.enqueue({ task: 'x', queue: 'back10z', dependsOn: [jobs.x] });
    await t.client.cancelJob(jobs.y); // cancels d
    await t.client.cancelJob(jobs.x); // cancels z
    // A dead job with a dependency not completed: retried by a version from before the re-check, then failed.
    await t.pool.query(`UPDATE "${t.schema}".jobs SET state = 'pending', run_at = now(), finished_at = NULL WHERE id = $1`, [z.id]);
    await killReady('back10z');
    await t.client.retryJob(jobs.y); // d stays: x is cancelled
    await killReady('back10y');
    await t.client.retryJob(jobs.x); // d stays: y, whose cancel it was, is dead
    expect(await states([jobs.x, jobs.y, z.id, jobs.d])).toEqual(['pending', 'dead', 'dead', 'cancelled']);

    const outcome = await replayDead(t.db, { ids: [jobs.y, z.id] });
    expect(outcome).toEqual({
      replayed: [jobs.y, z.id],
      waiting: [{ id: z.id, pendingDeps: 1, blockedReason: null }],
      restoredDependents: [waitingFor(jobs.d, 2)],
    });
  });
});
