/**
 * DAGs of jobs: enqueue (workflows and dependsOn), release by the completing statement, a dependency in the
 * DLQ, retention and getWorkflow. Operator actions on jobs with dependencies (cascades, retry and replay) and
 * their races are in workflow-actions.test.ts.
 */
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { Completer } from '../src/agent/worker/completer.js';
import { jobDeleteFinished } from '../src/shared/db/queries/jobs.js';
import { jobClaimBatch, jobCompleteMany, jobFailMany } from '../src/shared/db/queries/jobs-runs.js';
import { workflowDeleteJobless } from '../src/shared/db/queries/workflows.js';
import { SchemaDb, type Queryable } from '../src/shared/db/sql.js';
import { CycleDetectedError, ValidationError } from '../src/shared/errors.js';
import { PermanentFailure } from '../src/shared/handler-signals.js';
import { createClient } from '../src/shared/client.js';
import type { WorkflowSpec } from '../src/shared/workflow.js';
import { useAgents } from './support/agents.js';
import { dagHelpers } from './support/dag.js';
import { inRolledBackTransaction, useTestSchema, waitFor, waitUntilBlockedBy } from './support/database.js';
import { insertManyJobs } from './support/factories.js';

const t = useTestSchema('dag');
const startAgent = useAgents(t);
const { states, completeReady } = dagHelpers(t);

const ok = () => undefined;

async function jobCount(): Promise<number> {
  const { rows } = await t.pool.query(`SELECT count(*)::int AS n FROM "${t.schema}".jobs`);
  return rows[0].n;
}

/**
 * Which side of a deadlock PostgreSQL fails is whose deadlock check runs first, and a backend checks once,
 * deadlock_timeout after it began to wait. The side meant to lose checks after DEADLOCK_CHECK on a pool of its
 * own; the side meant to win never checks in time. Without this the loser was picked by the machine's load.
 */
const DEADLOCK_CHECK = '3s';

function poolCheckingDeadlocksAfter(timeout: string): pg.Pool {
  return new pg.Pool({ connectionString: t.url, max: 2, options: `-c deadlock_timeout=${timeout}` });
}

/** Raises this transaction's deadlock_timeout so the other side's check runs first; returns its backend pid. */
async function survivesDeadlocks(tx: pg.PoolClient): Promise<number> {
  await tx.query(`SET LOCAL deadlock_timeout = '1min'`);
  return (await tx.query('SELECT pg_backend_pid() AS pid')).rows[0].pid;
}

async function allCompleted(ids: readonly number[], timeoutMs = 20_000): Promise<void> {
  await waitFor(`${ids.length} jobs completed`, async () => (await states(ids)).every((state) => state === 'completed'), timeoutMs);
}

/** Every edge among these jobs: the dependent started only after its dependency finished (database times). */
async function expectDependencyOrder(ids: readonly number[]): Promise<number> {
  const { rows } = await t.pool.query(
    `SELECT d.job_id, d.depends_on, child.started_at >= parent.finished_at AS ordered
       FROM "${t.schema}".job_deps d
       JOIN "${t.schema}".jobs child ON child.id = d.job_id
       JOIN "${t.schema}".jobs parent ON parent.id = d.depends_on
      WHERE d.job_id = ANY($1::bigint[])`,
    [ids],
  );
  expect(rows.filter((row) => !row.ordered)).toEqual([]);
  return rows.length;
}

describe('enqueueWorkflow: shapes run in dependency order', () => {
  it('fan-in: Send Email Summary runs after Calculate Metrics for user A and user B', async () => {
    await startAgent({ handlers: { metrics: ok, summary: ok } });
    const { workflowId, jobs } = await t.client.enqueueWorkflow({
      name: 'daily summary',
      nodes: {
        metricsA: { task: 'metrics', payload: { user: 'A' } },
        metricsB: { task: 'metrics', payload: { user: 'B' } },
        summary: { task: 'summary', dependsOn: ['metricsA', 'metricsB'] },
      },
    });
    expect(workflowId).toBeGreaterThan(0);
    await allCompleted(Object.values(jobs));
    expect(await expectDependencyOrder(Object.values(jobs))).toBe(2);
  });

  it('fan-out: one root releases three dependents at once', async () => {
    await startAgent({ handlers: { step: ok } });
    const { jobs } = await t.client.enqueueWorkflow({
      nodes: { root: { task: 'step' }, a: { task: 'step', dependsOn: ['root'] }, b: { task: 'step', dependsOn: ['root'] }, c: { task: 'step', dependsOn: ['root'] } },
    });
    await allCompleted(Object.values(jobs));
    expect(await expectDependencyOrder(Object.values(jobs))).toBe(3);
  });

  it('diamond: the sink waits for both branches', async () => {
    const { jobs } = await t.client.enqueueWorkflow({
      nodes: {
        sink: { task: 'step', dependsOn: ['left', 'right'] },
        left: { task: 'step', dependsOn: ['top'] },
        right: { task: 'step', dependsOn: ['top'] },
        top: { task: 'step' },
      },
    });
    // Before any agent runs, or the top may already be claimed when the states are read.
    expect(await states([jobs.top, jobs.left, jobs.right, jobs.sink])).toEqual(['pending', 'waiting', 'waiting', 'waiting']);
    await startAgent({ handlers: { step: ok } });
    await allCompleted(Object.values(jobs));
    expect(await expectDependencyOrder(Object.values(jobs))).toBe(4);
  });

  it('across queues: each node on its own queue, served by different agents', async () => {
    await startAgent({ queues: ['extract'], handlers: { step: ok } });
    await startAgent({ queues: ['load'], handlers: { step: ok } });
    const { jobs } = await t.client.enqueueWorkflow({
      nodes: {
        extract: { task: 'step', queue: 'extract', priority: 'high' },
        load: { task: 'step', queue: 'load', dependsOn: ['extract'], maxAttempts: 2 },
        again: { task: 'step', queue: 'extract', dependsOn: ['load'] },
      },
    });
    await allCompleted(Object.values(jobs));
    expect(await expectDependencyOrder(Object.values(jobs))).toBe(2);
    const load = await t.client.getJob(jobs.load);
    expect(load).toMatchObject({ queue: 'load', maxAttempts: 2, pendingDeps: 0, blockedReason: null });
  });

  it('1,000 nodes in 10 layers, each on up to 3 nodes of the layer before: inserted at once and run in order', async () => {
    const nodes: WorkflowSpec['nodes'] = {};
    let seed = 7;
    const random = () => (seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31;
    for (let layer = 0; layer < 10; layer++) {
      for (let i = 0; i < 100; i++) {
        const dependsOn = layer === 0 ? [] : [...new Set([0, 1, 2].map(() => `n${layer - 1}_${Math.floor(random() * 100)}`))];
        nodes[`n${layer}_${i}`] = { task: 'layered', queue: i % 2 === 0 ? 'even' : 'odd', payload: { layer, i }, dependsOn };
      }
    }
    const started = Date.now();
    const { workflowId, jobs } = await t.client.enqueueWorkflow({ name: 'layered', nodes });
    const insertMs = Date.now() - started;
    const ids = Object.values(jobs);
    expect(ids).toHaveLength(1000);
    expect(insertMs).toBeLessThan(5_000);
    await startAgent({ handlers: { layered: ok }, concurrency: 16 });
    await allCompleted(ids, 25_000);
    const edges = await expectDependencyOrder(ids);
    expect(edges).toBeGreaterThan(900);
    const workflow = await t.client.getWorkflow(workflowId);
    expect(workflow.counts).toEqual({ completed: 1000 });
    expect(workflow.edges).toHaveLength(edges);
  });
});

describe('release in the completing statement', () => {
  it('the completion that finishes the last dependency makes the dependent pending in the same statement, and notifies', async () => {
    const { jobs } = await t.client.enqueueWorkflow({
      nodes: { a: { task: 'manual', queue: 'manual' }, b: { task: 'manual', queue: 'manual' }, c: { task: 'manual', queue: 'manual', dependsOn: ['a', 'b'] } },
    });
    expect(await t.client.getJob(jobs.c)).toMatchObject({ state: 'waiting', pendingDeps: 2 });
    const claimed = await jobClaimBatch(t.db, { agentId: 'test', leaseMs: 30_000, queues: ['manual'], tasks: null, limit: 10 });
    expect(claimed.map((job) => job.id).sort()).toEqual([jobs.a, jobs.b].sort());
    const [first, second] = claimed;
    await jobCompleteMany(t.db, [first], null);
    expect(await t.client.getJob(jobs.c)).toMatchObject({ state: 'waiting', pendingDeps: 1 });
    expect(await jobCompleteMany(t.db, [second], null)).toEqual(new Set([second.id]));
    expect(await t.client.getJob(jobs.c)).toMatchObject({ state: 'pending', pendingDeps: 0 });
  });

  it('a completion that starts while an enqueue attaching a dependent is open waits for it, then releases the dependent', async () => {
    const parent = await t.client.enqueue({ task: 'race', queue: 'race1' });
    const [claimed] = await jobClaimBatch(t.db, { agentId: 'test', leaseMs: 30_000, queues: ['race1'], tasks: null, limit: 1 });
    const tx = await t.pool.connect();
    try {
      await tx.query('BEGIN');
      const child = await t.client.enqueue({ task: 'race', queue: 'race1', dependsOn: [parent.id] }, { client: tx });
      let completed = false;
      const completion = jobCompleteMany(t.db, [claimed], null).then((ids) => ((completed = true), ids));
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(completed).toBe(false); // blocked on the dependency's row lock
      await tx.query('COMMIT');
      expect(await completion).toEqual(new Set([parent.id]));
      expect(await t.client.getJob(child.id)).toMatchObject({ state: 'pending', pendingDeps: 0 });
    } finally {
      tx.release();
    }
  });

  it('an enqueue that starts while the completion of its dependency is open waits for it, then starts pending', async () => {
    const parent = await t.client.enqueue({ task: 'race', queue: 'race2' });
    const [claimed] = await jobClaimBatch(t.db, { agentId: 'test', leaseMs: 30_000, queues: ['race2'], tasks: null, limit: 1 });
    const tx = await t.pool.connect();
    try {
      await tx.query('BEGIN');
      await jobCompleteMany(t.db.on(tx), [claimed], null);
      let enqueued = false;
      const enqueue = t.client.enqueue({ task: 'race', queue: 'race2', dependsOn: [parent.id] }).then((result) => ((enqueued = true), result));
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(enqueued).toBe(false);
      await tx.query('COMMIT');
      const child = await enqueue;
      expect(await t.client.getJob(child.id)).toMatchObject({ state: 'pending', pendingDeps: 0 });
    } finally {
      tx.release();
    }
  });

  it('an enqueue that deadlocks with a completion releasing a dependent (ids interleaved) is tried again and goes through', async () => {
    // d1 < w < d2: the enqueue locks w, then d2; the completion of d2 and then d1 holds d2, then needs w to release it.
    const d1 = await t.client.enqueue({ task: 'race', queue: 'dl' });
    const w = await t.client.enqueue({ task: 'race', queue: 'dl-w', dependsOn: [d1.id] });
    const d2 = await t.client.enqueue({ task: 'race', queue: 'dl' });
    const claimed = await jobClaimBatch(t.db, { agentId: 'test', leaseMs: 30_000, queues: ['dl'], tasks: null, limit: 2 });
    const run = (id: number) => claimed.find((job) => job.id === id)!;
    const enqueuer = poolCheckingDeadlocksAfter(DEADLOCK_CHECK);
    const tx = await t.pool.connect();
    try {
      await tx.query('BEGIN');
      const pid = await survivesDeadlocks(tx);
      await jobCompleteMany(t.db.on(tx), [run(d2.id)], null);
      const enqueue = createClient({ pool: enqueuer, schema: t.schema }).enqueue({ task: 'race', queue: 'dl-e', dependsOn: [w.id, d2.id] });
      await waitUntilBlockedBy(t, pid); // the enqueue holds w and waits for d2
      expect(await jobCompleteMany(t.db.on(tx), [run(d1.id)], null)).toEqual(new Set([d1.id]));
      await tx.query('COMMIT');
      const enqueued = await enqueue;
      expect(await t.client.getJob(enqueued.id)).toMatchObject({ state: 'waiting', pendingDeps: 1 });
      expect(await t.client.getJob(w.id)).toMatchObject({ state: 'pending', pendingDeps: 0 });
    } finally {
      await tx.query('ROLLBACK').catch(() => {});
      tx.release();
      await enqueuer.end();
    }
  });

  it("a completion that loses a deadlock to a client attaching a dependent is stored again, logged as a warning", async () => {
    // d1 < w < d2: the completer locks d1 and d2, then needs w to release it; the client holds w and asks for d2.
    const d1 = await t.client.enqueue({ task: 'race', queue: 'cdl' });
    const w = await t.client.enqueue({ task: 'race', queue: 'cdl-w', dependsOn: [d1.id] });
    const d2 = await t.client.enqueue({ task: 'race', queue: 'cdl' });
    const claimed = await jobClaimBatch(t.db, { agentId: 'test', leaseMs: 30_000, queues: ['cdl'], tasks: null, limit: 2 });
    const logged: { level: string; message: string }[] = [];
    const record = (level: string) => (message: string) => void logged.push({ level, message });
    const completing = poolCheckingDeadlocksAfter(DEADLOCK_CHECK);
    const completer = new Completer(new SchemaDb(completing, t.schema), { debug() {}, info() {}, warn: record('warn'), error: record('error') });
    const tx = await t.pool.connect();
    try {
      await tx.query('BEGIN');
      const pid = await survivesDeadlocks(tx);
      await tx.query(`SELECT 1 FROM "${t.schema}".jobs WHERE id = $1 FOR UPDATE`, [w.id]);
      for (const job of claimed) completer.complete(job.id, job.leaseEpoch, undefined, null);
      await waitUntilBlockedBy(t, pid);
      await tx.query(`SELECT 1 FROM "${t.schema}".jobs WHERE id = $1 FOR UPDATE`, [d2.id]);
      await tx.query('COMMIT');
    } finally {
      await tx.query('ROLLBACK').catch(() => {});
      tx.release();
    }
    await waitFor('the completions to be stored', async () => ((await states([d1.id, d2.id, w.id])).join() === 'completed,completed,pending' ? true : undefined));
    completer.close();
    await completing.end();
    expect(logged).toEqual([{ level: 'warn', message: 'storing completions met a deadlock with another transaction; retrying' }]);
  });

  it('a workflow that lists a dependent before its dependency still gives the dependent the higher id', async () => {
    const { jobs } = await t.client.enqueueWorkflow({
      nodes: { sink: { task: 'manual', queue: 'order', dependsOn: ['left', 'right'] }, right: { task: 'manual', queue: 'order', dependsOn: ['root'] }, left: { task: 'manual', queue: 'order', dependsOn: ['root'] }, root: { task: 'manual', queue: 'order' } },
    });
    expect(jobs.root).toBeLessThan(jobs.right);
    expect(jobs.root).toBeLessThan(jobs.left);
    expect(Math.max(jobs.left, jobs.right)).toBeLessThan(jobs.sink);
    expect(jobs.right).toBeLessThan(jobs.left); // among nodes free to go, the order given
  });

  it('a rejected (stale) completion releases nothing', async () => {
    const { jobs } = await t.client.enqueueWorkflow({ nodes: { a: { task: 'manual', queue: 'stale' }, b: { task: 'manual', queue: 'stale', dependsOn: ['a'] } } });
    const [claimed] = await jobClaimBatch(t.db, { agentId: 'test', leaseMs: 30_000, queues: ['stale'], tasks: null, limit: 10 });
    expect(await jobCompleteMany(t.db, [{ id: claimed.id, leaseEpoch: claimed.leaseEpoch + 1 }], null)).toEqual(new Set());
    expect(await t.client.getJob(jobs.b)).toMatchObject({ state: 'waiting', pendingDeps: 1 });
  });
});

describe('plain enqueue with dependsOn', () => {
  it('waits for a pending job; starts pending when every dependency already completed; runs after it', async () => {
    const parent = await t.client.enqueue({ task: 'plain', queue: 'plain' });
    const child = await t.client.enqueue({ task: 'plain', queue: 'plain', dependsOn: [parent.id] });
    expect(child.duplicate).toBe(false);
    expect(await t.client.getJob(child.id)).toMatchObject({ state: 'waiting', pendingDeps: 1 });
    await startAgent({ queues: ['plain'], handlers: { plain: ok } });
    await allCompleted([parent.id, child.id]);
    expect(await expectDependencyOrder([child.id])).toBe(1);
    const [late, mixed] = await t.client.enqueueMany([
      { task: 'plain', queue: 'plain', dependsOn: [parent.id, child.id] },
      { task: 'plain', queue: 'plain' },
    ]);
    await allCompleted([late.id, mixed.id]);
  });

  it('inside the caller\'s transaction: rolled back, nothing is left', async () => {
    const parent = await t.client.enqueue({ task: 'plain_tx', queue: 'plain_tx' });
    const before = await jobCount();
    const client = await t.pool.connect();
    try {
      await client.query('BEGIN');
      await t.client.enqueue({ task: 'plain_tx', queue: 'plain_tx', dependsOn: [parent.id] }, { client });
      await client.query('ROLLBACK');
    } finally {
      client.release();
    }
    expect(await jobCount()).toBe(before);
    const { rows } = await t.pool.query(`SELECT dependents FROM "${t.schema}".jobs WHERE id = $1`, [parent.id]);
    expect(rows[0].dependents).toBeNull();
  });

  it('an unknown job id: ValidationError naming it, nothing inserted', async () => {
    const before = await jobCount();
    const error = await t.client.enqueueMany([{ task: 'x' }, { task: 'x', dependsOn: [987_654_321] }]).catch((e) => e);
    expect(error).toBeInstanceOf(ValidationError);
    expect(error.message).toMatch(/job 1 depends on job 987654321, which does not exist/);
    expect(await jobCount()).toBe(before);
  });

  it('dependsOn with something other than job ids: ValidationError', async () => {
    await expect(t.client.enqueue({ task: 'x', dependsOn: ['a' as unknown as number] })).rejects.toThrow(ValidationError);
  });

  it('dependsOn: [] depends on nothing: a plain job, whose idempotency key works as usual', async () => {
    const first = await t.client.enqueue({ task: 'no_deps', idempotencyKey: 'no-deps-key', dependsOn: [] });
    expect(await t.client.enqueue({ task: 'no_deps', idempotencyKey: 'no-deps-key', dependsOn: [] })).toEqual({ id: first.id, duplicate: true });
    const [again] = await t.client.enqueueMany([{ task: 'no_deps', idempotencyKey: 'no-deps-key', dependsOn: [] }]);
    expect(again).toEqual({ id: first.id, duplicate: true });
  });

  it('a keyed job in a batch that has dependencies is the job with its key, a duplicate; a keyed workflow node: ValidationError', async () => {
    const parent = await t.client.enqueue({ task: 'keyed_parent', idempotencyKey: 'taken-key' });
    const before = await jobCount();
    const [keyed, child] = await t.client.enqueueMany([{ task: 'keyed', idempotencyKey: 'taken-key' }, { task: 'child', dependsOn: [parent.id] }]);
    expect(keyed).toEqual({ id: parent.id, duplicate: true });
    expect(child.duplicate).toBe(false);
    expect(await jobCount()).toBe(before + 1);
    const flow = await t.client.enqueueWorkflow({ nodes: { a: { task: 'a', idempotencyKey: 'taken-key' }, b: { task: 'b', dependsOn: ['a'] } } }).catch((e) => e);
    expect(flow).toBeInstanceOf(ValidationError);
    expect(flow.message).toMatch(/node "a": a job in a workflow cannot have an idempotencyKey/);
    expect(await jobCount()).toBe(before + 1);
  });

  it('a keyed job with dependsOn enqueued again is a duplicate: one job, one edge, listed once among its dependency\'s dependents', async () => {
    const parent = await t.client.enqueue({ task: 'keyed_dep_parent', queue: 'idle' });
    const spec = { task: 'keyed_dep', idempotencyKey: 'keyed-dep', dependsOn: [parent.id] };
    const first = await t.client.enqueue(spec);
    expect(first.duplicate).toBe(false);
    expect(await t.client.enqueue(spec)).toEqual({ id: first.id, duplicate: true });
    // In one batch: the second with the key is the first; a job without a key is its own.
    const other = await t.client.enqueue({ task: 'keyed_dep_other', queue: 'idle' });
    const batch = await t.client.enqueueMany([
      { task: 'keyed_dep', idempotencyKey: 'keyed-dep-2', dependsOn: [other.id] },
      { task: 'keyed_dep', idempotencyKey: 'keyed-dep-2', dependsOn: [parent.id] },
      { task: 'keyed_dep', idempotencyKey: 'keyed-dep', dependsOn: [other.id] },
      { task: 'unkeyed', dependsOn: [parent.id] },
    ]);
    expect(batch.map((result) => result.duplicate)).toEqual([false, true, true, false]);
    expect(batch[1].id).toBe(batch[0].id);
    expect(batch[2].id).toBe(first.id);
    const edges = await t.pool.query(`SELECT job_id, depends_on FROM "${t.schema}".job_deps WHERE job_id = ANY($1) ORDER BY job_id`, [[first.id, batch[0].id]]);
    expect(edges.rows.map((row) => [Number(row.job_id), Number(row.depends_on)])).toEqual([[first.id, parent.id], [batch[0].id, other.id]]);
    const dependents = await t.pool.query(`SELECT dependents FROM "${t.schema}".jobs WHERE id = $1`, [parent.id]);
    expect(dependents.rows[0].dependents.map(Number).sort((a: number, b: number) => a - b)).toEqual([first.id, batch[3].id]);
  });

  it('10 concurrent enqueues of one keyed job with dependsOn make one job and one edge', async () => {
    const parent = await t.client.enqueue({ task: 'race_parent', queue: 'idle' });
    const wide = new pg.Pool({ connectionString: t.url, max: 10 });
    const racing = createClient({ pool: wide, schema: t.schema });
    try {
      await Promise.all(Array.from({ length: 10 }, () => wide.query('SELECT 1')));
      const results = await Promise.all(
        Array.from({ length: 10 }, () => racing.enqueue({ task: 'race_child', idempotencyKey: 'race-key', dependsOn: [parent.id] })),
      );
      expect(results.filter((result) => !result.duplicate)).toHaveLength(1);
      expect(new Set(results.map((result) => result.id)).size).toBe(1);
      const edges = await t.pool.query(`SELECT count(*)::int AS n FROM "${t.schema}".job_deps WHERE depends_on = $1`, [parent.id]);
      expect(edges.rows[0].n).toBe(1);
    } finally {
      await wide.end();
    }
  });
});

describe("rejections inside the caller's transaction: nothing is kept, the transaction stays usable", () => {
  it.each([
    ['an unknown dependency', (id: number) => ({ task: 'in_tx', dependsOn: [id + 1_000_000] }), /which does not exist/],
    ['a cancelled dependency', (id: number) => ({ task: 'in_tx', dependsOn: [id] }), /which is cancelled/],
  ])('%s, caught by the caller, who then commits', async (_what, spec, message) => {
    const cancelled = await t.client.enqueue({ task: 'in_tx_parent', queue: 'idle' });
    await t.client.cancelJob(cancelled.id);
    const before = await jobCount();
    const client = await t.pool.connect();
    try {
      await client.query('BEGIN');
      await expect(t.client.enqueue(spec(cancelled.id), { client })).rejects.toThrow(message);
      await expect(t.client.enqueueWorkflow({ nodes: { a: { task: 'in_tx' }, b: spec(cancelled.id) } }, { client })).rejects.toThrow(message);
      expect((await client.query('SELECT 1 AS ok')).rows).toEqual([{ ok: 1 }]);
      await client.query('COMMIT');
    } finally {
      client.release();
    }
    expect(await jobCount()).toBe(before);
  });

  it('a client outside a transaction: the enqueue runs in one of its own, and a rejection keeps nothing', async () => {
    const before = await jobCount();
    const client = await t.pool.connect();
    try {
      await expect(t.client.enqueue({ task: 'no_tx', dependsOn: [987_654_321] }, { client })).rejects.toThrow(/which does not exist/);
      expect(await jobCount()).toBe(before);
      const parent = await t.client.enqueue({ task: 'no_tx_parent', queue: 'idle' });
      const { id } = await t.client.enqueue({ task: 'no_tx', queue: 'idle', dependsOn: [parent.id] }, { client });
      expect((await t.client.getJob(id)).state).toBe('waiting');
    } finally {
      client.release();
    }
  });
});

describe('rejections: nothing is inserted', () => {
  it('a dependency by id on a job the same call creates (ids are predictable): ValidationError', async () => {
    const { id: last } = await t.client.enqueue({ task: 'id_cycle_marker', queue: 'idle' });
    const before = await jobCount();
    // The next two ids, each depending on the other: a cycle the check by node names cannot see.
    const cycle = await t.client.enqueueMany([{ task: 'x', dependsOn: [last + 2] }, { task: 'x', dependsOn: [last + 1] }]).catch((e) => e);
    expect(cycle).toBeInstanceOf(ValidationError);
    expect(cycle.message).toMatch(/depends on job \d+, which this same call creates/);
    const self = await t.client.enqueue({ task: 'x', dependsOn: [last + 3] }).catch((e) => e);
    expect(self).toBeInstanceOf(ValidationError);
    expect(await jobCount()).toBe(before);
  });

  it('a node named like a number is still named as a node in errors (not as job N of a batch)', async () => {
    await expect(t.client.enqueueWorkflow({ nodes: { '7': { task: 'x', dependsOn: [1_999_999_999] } } })).rejects.toThrow(
      /^node "7" depends on job 1999999999, which does not exist/,
    );
    await expect(t.client.enqueue({ task: 'x', dependsOn: [1_999_999_999] })).rejects.toThrow(/^the job depends on job 1999999999/);
  });

  it('a node name with NUL or an unpaired surrogate: ValidationError', async () => {
    await expect(t.client.enqueueWorkflow({ nodes: { 'a\u0000': { task: 'x' } } })).rejects.toThrow(/node name .* NUL character or an unpaired UTF-16 surrogate/);
    await expect(t.client.enqueueWorkflow({ nodes: { 'b\ud800': { task: 'x' } } })).rejects.toThrow(ValidationError);
  });

  it('an empty node name, or one with a line break or another control character: ValidationError', async () => {
    await expect(t.client.enqueueWorkflow({ nodes: { '': { task: 'x' } } })).rejects.toThrow(/a node name must not be empty/);
    for (const name of ['a\nb', 'tab\there', 'bell\u0007']) {
      await expect(t.client.enqueueWorkflow({ nodes: { [name]: { task: 'x' } } })).rejects.toThrow(/has a control character/);
    }
  });

  it('a cycle: CycleDetectedError naming the path', async () => {
    const before = await jobCount();
    const error = await t.client
      .enqueueWorkflow({ nodes: { a: { task: 'x', dependsOn: ['c'] }, b: { task: 'x', dependsOn: ['a'] }, c: { task: 'x', dependsOn: ['b'] }, d: { task: 'x' } } })
      .catch((e) => e);
    expect(error).toBeInstanceOf(CycleDetectedError);
    expect(error).toMatchObject({ code: 'CYCLE_DETECTED' });
    expect(error.message).toContain('a -> c -> b -> a');
    expect(await jobCount()).toBe(before);
  });

  it('an unknown node name: ValidationError', async () => {
    const before = await jobCount();
    await expect(t.client.enqueueWorkflow({ nodes: { a: { task: 'x', dependsOn: ['missing'] } } })).rejects.toThrow(/"missing", which is not a node/);
    expect(await jobCount()).toBe(before);
  });

  it('a bad node spec names the node', async () => {
    await expect(t.client.enqueueWorkflow({ nodes: { a: { task: 'x' }, b: { task: 'x', priority: 'urgent' as 'high' } } })).rejects.toThrow(/node "b": .*priority/);
  });

  it('atomicity: the last node naming a job that does not exist rolls back the nodes already inserted', async () => {
    const before = await jobCount();
    const { rows: workflowsBefore } = await t.pool.query(`SELECT count(*)::int AS n FROM "${t.schema}".workflows`);
    const nodes: WorkflowSpec['nodes'] = {};
    for (let i = 0; i < 50; i++) nodes[`n${i}`] = { task: 'x', dependsOn: i > 0 ? [`n${i - 1}`] : [] };
    nodes.bad = { task: 'x', dependsOn: ['n49', 2_000_000_000] };
    const error = await t.client.enqueueWorkflow({ nodes }).catch((e) => e);
    expect(error).toBeInstanceOf(ValidationError);
    expect(error.message).toMatch(/node "bad" depends on job 2000000000, which does not exist/);
    expect(await jobCount()).toBe(before);
    const { rows: workflowsAfter } = await t.pool.query(`SELECT count(*)::int AS n FROM "${t.schema}".workflows`);
    expect(workflowsAfter[0].n).toBe(workflowsBefore[0].n);
  });

  it('a dependency that is cancelled: ValidationError', async () => {
    const job = await t.client.enqueue({ task: 'x', queue: 'never' });
    await t.client.cancelJob(job.id);
    await expect(t.client.enqueue({ task: 'x', dependsOn: [job.id] })).rejects.toThrow(/is cancelled/);
  });
});

describe('a dependency in the DLQ', () => {
  it('blocks its dependents with a visible reason; replaying it and its success releases them', async () => {
    let healthy = false;
    await startAgent({
      queues: ['dlq'],
      handlers: {
        fragile: () => {
          if (!healthy) throw new PermanentFailure('upstream down');
        },
        after: ok,
      },
    });
    const { jobs } = await t.client.enqueueWorkflow({
      nodes: {
        fragile: { task: 'fragile', queue: 'dlq' },
        after: { task: 'after', queue: 'dlq', dependsOn: ['fragile'] },
        last: { task: 'after', queue: 'dlq', dependsOn: ['after'] },
      },
    });
    await waitFor('the dependency to be dead', async () => (await t.client.getJob(jobs.fragile)).state === 'dead');
    expect(await t.client.getJob(jobs.after)).toMatchObject({ state: 'waiting', pendingDeps: 1, blockedReason: `blocked: job ${jobs.fragile} is dead` });
    expect(await t.client.getJob(jobs.last)).toMatchObject({ state: 'waiting', blockedReason: null });
    const workflowNode = (await t.client.getWorkflow((await t.client.getJob(jobs.after)).workflowId!)).nodes.find((node) => node.name === 'after');
    expect(workflowNode?.blockedReason).toBe(`blocked: job ${jobs.fragile} is dead`);

    healthy = true;
    await t.client.replayJob(jobs.fragile);
    expect((await t.client.getJob(jobs.after)).blockedReason).toBeNull();
    await allCompleted(Object.values(jobs));
    expect(await expectDependencyOrder(Object.values(jobs))).toBe(2);
  });

  it('a job enqueued on a dead job starts waiting and blocked', async () => {
    const dead = await t.client.enqueue({ task: 'x', queue: 'deadq' });
    const [claimed] = await jobClaimBatch(t.db, { agentId: 'test', leaseMs: 30_000, queues: ['deadq'], tasks: null, limit: 1 });
    await jobFailMany(t.db, [{ ...claimed, error: 'boom', permanent: true, outcome: 'failed' }]);
    const child = await t.client.enqueue({ task: 'x', queue: 'deadq', dependsOn: [dead.id] });
    expect(await t.client.getJob(child.id)).toMatchObject({ state: 'waiting', pendingDeps: 1, blockedReason: `blocked: job ${dead.id} is dead` });
  });
});

describe('retention', () => {
  it('deleting finished jobs deletes their edges', async () => {
    const { jobs } = await t.client.enqueueWorkflow({ nodes: { a: { task: 'x', queue: 'retq' }, b: { task: 'x', queue: 'retq', dependsOn: ['a'] } } });
    for (let i = 0; i < 2; i++) {
      const claimed = await jobClaimBatch(t.db, { agentId: 'test', leaseMs: 30_000, queues: ['retq'], tasks: null, limit: 10 });
      await jobCompleteMany(t.db, claimed, null);
    }
    expect(await states([jobs.a, jobs.b])).toEqual(['completed', 'completed']);
    await jobDeleteFinished(t.db, { retentionMs: 0, limit: 100_000, now: new Date(Date.now() + 60_000) });
    const { rows } = await t.pool.query(`SELECT count(*)::int AS n FROM "${t.schema}".job_deps WHERE job_id = $1`, [jobs.b]);
    expect(rows[0].n).toBe(0);
  });

  it('deletes workflows none of whose jobs exist, a bounded window at a time from a cursor, past live ones', async () => {
    const workflowIds = async () =>
      (await t.pool.query(`SELECT id FROM "${t.schema}".workflows ORDER BY id`)).rows.map((row) => Number(row.id));
    const two = (queue: string) => t.client.enqueueWorkflow({ nodes: { a: { task: 'x', queue }, b: { task: 'x', queue, dependsOn: ['a'] } } });
    const finished = await two('wfret1'); // both completed, then deleted by retention
    const live = await two('wfret2'); // one node left
    const dropped = await two('wfret3'); // dropped by an operator
    const half = await two('wfret4'); // its first node completed and deleted
    await completeReady('wfret1');
    await completeReady('wfret1');
    await completeReady('wfret4');
    await jobDeleteFinished(t.db, { retentionMs: 0, limit: 100_000, now: new Date(Date.now() + 60_000) });
    await t.client.dropJob(live.jobs.a); // b is cancelled by the cascade and stays
    await t.client.dropJob(dropped.jobs.a);
    await t.client.dropJob(dropped.jobs.b);
    const start = finished.workflowId - 1;

    // A window of two: the finished workflow goes, the live one is looked at and kept.
    expect(await workflowDeleteJobless(t.db, { afterId: start, limit: 2 })).toEqual({ deleted: 1, nextAfterId: live.workflowId });
    // The next window starts after it; it holds the last two, so the walk is at the end and starts over.
    expect(await workflowDeleteJobless(t.db, { afterId: live.workflowId, limit: 2 })).toEqual({ deleted: 1, nextAfterId: half.workflowId });
    expect(await workflowDeleteJobless(t.db, { afterId: half.workflowId, limit: 2 })).toEqual({ deleted: 0, nextAfterId: 0 });
    const left = await workflowIds();
    expect(left).toContain(live.workflowId);
    expect(left).toContain(half.workflowId);
    expect(left).not.toContain(finished.workflowId);
    expect(left).not.toContain(dropped.workflowId);
    expect((await t.client.getWorkflow(live.workflowId)).counts).toEqual({ gone: 1, cancelled: 1 });
    await expect(t.client.getWorkflow(finished.workflowId)).rejects.toMatchObject({ code: 'WORKFLOW_NOT_FOUND' });
  });

  it('looks the jobs of a workflow up by id, through the primary key: no scan of jobs (EXPLAIN after ANALYZE)', async () => {
    await inRolledBackTransaction(t, async (db, client) => {
      await insertManyJobs(client, t.schema, 20_000, { task: 'explain', state: 'completed' });
      await client.query(
        `INSERT INTO "${t.schema}".workflows (nodes)
         SELECT jsonb_object_agg('n' || k, (i * 10 + k)::bigint) FROM generate_series(1, 500) i, generate_series(1, 10) k GROUP BY i`,
      );
      await client.query(`ANALYZE "${t.schema}".jobs`);
      await client.query(`ANALYZE "${t.schema}".workflows`);
      let sent: { text: string; values?: unknown[] } | undefined;
      const recorder: Queryable = {
        async query(config) {
          sent = config;
          return { rows: [{ deleted: 0, last_id: null, examined: 0 }] } as any;
        },
      };
      await workflowDeleteJobless(db.on(recorder), { afterId: 0, limit: 1000 });
      const { rows } = await client.query({ text: `EXPLAIN ${sent!.text}`, values: sent!.values });
      const plan = rows.map((row) => row['QUERY PLAN']).join('\n');
      expect(plan).toMatch(/Index (Only )?Scan using jobs_pkey on jobs/);
      expect(plan).not.toMatch(/Seq Scan on jobs/);
    });
  });
});

describe('getWorkflow', () => {
  it('an id that is not a positive whole number: ValidationError naming it, before any statement', async () => {
    for (const id of [1.5, Number.NaN, 2 ** 64, 0, -3, '7', null]) {
      await expect(t.client.getWorkflow(id as number)).rejects.toMatchObject({ code: 'VALIDATION_FAILED', message: expect.stringMatching(/the workflow id must be a workflow id/) });
    }
  });

  it('returns nodes with their states and dependencies, and the edges', async () => {
    const outside = await t.client.enqueue({ task: 'x', queue: 'idle2' });
    const { workflowId, jobs } = await t.client.enqueueWorkflow({
      name: 'report',
      nodes: { fetch: { task: 'x', queue: 'idle2' }, build: { task: 'x', queue: 'idle2', dependsOn: ['fetch', outside.id] } },
    });
    const workflow = await t.client.getWorkflow(workflowId);
    expect(workflow).toMatchObject({ id: workflowId, name: 'report', counts: { pending: 1, waiting: 1 } });
    expect(workflow.nodes).toEqual([
      expect.objectContaining({ name: 'fetch', jobId: jobs.fetch, state: 'pending', dependsOn: [] }),
      expect.objectContaining({ name: 'build', jobId: jobs.build, state: 'waiting', pendingDeps: 2, dependsOn: [outside.id, jobs.fetch].sort((x, y) => x - y) }),
    ]);
    expect(workflow.edges).toHaveLength(2);
    await expect(t.client.getWorkflow(99_999_999)).rejects.toMatchObject({ code: 'WORKFLOW_NOT_FOUND' });
  });
});
