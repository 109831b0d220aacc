import { describe, expect, it } from 'vitest';
import { createAgent } from '../src/agent/agent.js';
import type { JobContext } from '../src/agent/worker/executors/executor.js';
import { silentLogger } from '../src/shared/logger.js';
import { useAgents } from './support/agents.js';
import { countByState, useTestSchema, waitFor } from './support/database.js';

const t = useTestSchema('engine');
const startAgent = useAgents(t);

/** A promise a handler can wait on, and the function that settles it. */
function gated(): { gate: Promise<void>; open: () => void } {
  let open!: () => void;
  const gate = new Promise<void>((resolve) => (open = resolve));
  return { gate, open };
}

/** Runs `body` while another transaction holds the job's row locked (as a client attaching a dependent to it would). */
async function whileRowLocked(id: number, body: () => Promise<void>): Promise<void> {
  const locker = await t.pool.connect();
  try {
    await locker.query('BEGIN');
    await locker.query(`UPDATE "${t.schema}".jobs SET dependents = '{}' WHERE id = $1`, [id]);
    await body();
  } finally {
    await locker.query('ROLLBACK');
    locker.release();
  }
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

  it("gives the handler a context it may spread or copy: job, signal, idempotencyKey and logger are its own, the payload is not in it", async () => {
    const views: { keys: string[]; key: unknown; signal: boolean; json: string; jobId: number }[] = [];
    await startAgent({
      handlers: {
        look: (_payload: unknown, context: JobContext) => {
          const copy: Record<string, unknown> = { ...context };
          views.push({ keys: Object.keys(copy).sort(), key: copy.idempotencyKey, signal: copy.signal instanceof AbortSignal, json: JSON.stringify(context), jobId: context.job.id });
        },
      },
    });
    const { id } = await t.client.enqueue({ task: 'look', payload: { secret: 'card-4242' } });
    await waitFor('the job completed', async () => (await t.client.getJob(id)).state === 'completed');
    expect(views).toHaveLength(1);
    expect(views[0]).toMatchObject({ keys: ['idempotencyKey', 'job', 'logger', 'signal'], key: `wida-job-${id}`, signal: true, jobId: id });
    expect(views[0].json).not.toContain('card-4242');
  });
});

describe('concurrency', () => {
  it('a per-queue limit holds within the agent\'s concurrency; queues without one (even one named like an object\'s property) use the rest', async () => {
    const running = new Map<string, number>();
    const most = new Map<string, number>();
    const work = async (_payload: unknown, { job }: JobContext) => {
      running.set(job.queue, (running.get(job.queue) ?? 0) + 1);
      most.set(job.queue, Math.max(most.get(job.queue) ?? 0, running.get(job.queue)!));
      await new Promise((resolve) => setTimeout(resolve, 100));
      running.set(job.queue, running.get(job.queue)! - 1);
    };
    await startAgent({ concurrency: 4, queueConcurrency: { limited: 2 }, handlers: { work } });
    const jobs = await t.client.enqueueMany([
      ...Array.from({ length: 6 }, () => ({ task: 'work', queue: 'limited' })),
      ...Array.from({ length: 4 }, () => ({ task: 'work', queue: 'constructor' })),
    ]);
    await waitFor('every job completed', async () => {
      const states = await Promise.all(jobs.map((job) => t.client.getJob(job.id)));
      return states.every((job) => job.state === 'completed');
    });
    expect(most.get('limited')).toBe(2);
    expect(most.get('constructor')).toBeGreaterThanOrEqual(2);
  });
});

describe('handlers that block the event loop', () => {
  it('between one synchronous CPU-bound job and the next the agent lets timers and sockets run (heartbeats, the leader\'s check)', async () => {
    const block = (ms: number) => {
      const until = Date.now() + ms;
      while (Date.now() < until) {
        // a CPU-bound handler that never awaits
      }
    };
    // The most jobs that started without a 10 ms timer running in between. Counted, not timed: a machine that stalls
    // the process (load, a VM's steal time) stretched the longest gap between timer runs past any bound. After a job's
    // 150 ms the timer is always due, so it runs at the first timers phase that comes.
    let startedSinceTick = 0;
    let mostBetweenTicks = 0;
    const ticker = setInterval(() => (startedSinceTick = 0), 10);
    try {
      await startAgent({
        concurrency: 3,
        prefetch: 9,
        handlers: { crunch: () => ((mostBetweenTicks = Math.max(mostBetweenTicks, ++startedSinceTick)), block(150)) },
      });
      const jobs = await t.client.enqueueMany(Array.from({ length: 12 }, () => ({ task: 'crunch' })));
      await waitFor('the twelve jobs completed', async () => (await Promise.all(jobs.map((job) => t.client.getJob(job.id)))).every((job) => job.state === 'completed'));
    } finally {
      clearInterval(ticker);
    }
    // One job, or two in one turn of the loop (one as a claim lands, the next in that turn's setImmediate); not
    // three (started together) or the whole buffer back to back.
    expect(mostBetweenTicks).toBeGreaterThan(0);
    expect(mostBetweenTicks).toBeLessThanOrEqual(2);
  });
});

describe('notifications', () => {
  it('a NOTIFY on the control channel that is not a message (null, a number, a list, not JSON) is ignored: the agent keeps working', async () => {
    const seen: number[] = [];
    const errors: string[] = [];
    await startAgent({
      handlers: { after: (payload: { n: number }) => void seen.push(payload.n) },
      logger: { ...silentLogger, error: (message) => errors.push(message) },
    });
    for (const payload of ['null', '42', '[]', '"text"', 'not json']) {
      await t.pool.query(`SELECT pg_notify($1, $2)`, [t.db.channel('control'), payload]);
    }
    const { id } = await t.client.enqueue({ task: 'after', payload: { n: 7 } });
    await waitFor('the job enqueued after them completed', async () => (await t.client.getJob(id)).state === 'completed');
    expect(seen).toEqual([7]);
    expect(errors).toEqual([]);
  });
});

describe('start and stop', () => {
  it('a stop() called while start() is in flight waits for it, then drains: every job claimed meanwhile finishes', async () => {
    const jobs = await t.client.enqueueMany(Array.from({ length: 50 }, (_, n) => ({ task: 'early_stop', queue: 'early_stop', payload: { n } })));
    let ran = 0;
    const agent = createAgent({
      databaseUrl: t.url,
      schema: t.schema,
      logger: silentLogger,
      queues: ['early_stop'],
      concurrency: 4,
      handlers: { early_stop: async () => void (await new Promise((resolve) => setTimeout(resolve, 5)), ran++) },
    });
    const started = agent.start();
    const stopped = agent.stop();
    await Promise.all([started, stopped]);
    expect(agent.runningCount).toBe(0);
    // Whatever it claimed is either completed or back to pending, none left running under a lease.
    const states = await Promise.all(jobs.map((job) => t.client.getJob(job.id)));
    expect(states.filter((job) => job.state === 'running')).toEqual([]);
    expect(states.filter((job) => job.state === 'completed').length).toBe(ran);
    // Stopped for good: stop() again is harmless, start() again is refused.
    await agent.stop();
    await expect(agent.start()).rejects.toThrow(/started once/);
  });
});

describe('leases', () => {
  it('renews the leases of running and buffered jobs while they wait past the lease: nothing is rescued', async () => {
    // Lease 2 s, renewed every 300 ms; each job runs 2.3 s on one slot, so the second waits in the buffer for
    // 2.3 s and then runs 2.3 s: both only survive the rescuer (every 100 ms) if renewed. (With a lease of 900 ms a
    // process stalled for 600 ms, as on a loaded machine, really lost a lease; 2 s leaves 1.7 s.)
    const runs: number[] = [];
    await startAgent({
      concurrency: 1,
      prefetch: 5,
      leaseMs: 2_000,
      heartbeatIntervalMs: 300,
      rescueIntervalMs: 100,
      handlers: {
        slow: async (payload: { n: number }) => {
          runs.push(payload.n);
          await new Promise((resolve) => setTimeout(resolve, 2_300));
        },
      },
    });
    const jobs = await t.client.enqueueMany([1, 2].map((n) => ({ task: 'slow', payload: { n } })));
    await waitFor('both slow jobs completed', async () => {
      const states = await Promise.all(jobs.map((job) => t.client.getJob(job.id)));
      return states.every((job) => job.state === 'completed');
    }, 15_000);
    // Either may run first: two claims in flight at once can split the pair, and either may land first.
    expect(runs.sort()).toEqual([1, 2]);
    for (const job of jobs) expect(await t.client.getJob(job.id)).toMatchObject({ attempt: 1, attemptLog: [] });
  });

  it("renews leases while another session holds the agent's own row locked: the heartbeat write waits, the renewal does not", async () => {
    // Before, each beat wrote the agents row first and renewed the leases after: a row lock held the renewal up
    // past the lease, and the rescuer took the job from under its running handler.
    // A lease of 2 s renewed every 300 ms, for a job of 3 s: a stall of up to 1.7 s is survived (with 900 ms, a
    // loaded machine's 600 ms stall lost the lease).
    const runs: number[] = [];
    const agent = await startAgent({
      queues: ['locked_row'],
      leaseMs: 2_000,
      heartbeatIntervalMs: 300,
      rescueIntervalMs: 100,
      handlers: { held: async () => void (runs.push(1), await new Promise((resolve) => setTimeout(resolve, 3_000))) },
    });
    await waitFor('the agent is the leader (its rescuer runs)', () => agent.isLeader);
    const locker = await t.pool.connect();
    try {
      await locker.query('BEGIN');
      await locker.query(`SELECT 1 FROM "${t.schema}".agents WHERE id = $1 FOR UPDATE`, [agent.id]);
      const { id } = await t.client.enqueue({ task: 'held', queue: 'locked_row' });
      await waitFor('the job completed', async () => (await t.client.getJob(id)).state === 'completed', 10_000);
      expect(await t.client.getJob(id)).toMatchObject({ attempt: 1, attemptLog: [] });
      expect(runs).toEqual([1]);
    } finally {
      await locker.query('ROLLBACK');
      locker.release();
    }
  });

  it('a job claimed again while its earlier run still runs here: the earlier run is aborted, the new one completes', async () => {
    // Its lease expired and it was rescued (simulated below), and this same agent claims it again. The runs are
    // tracked by job id: the earlier one must be let go first, or the two would share (and corrupt) one entry.
    const signals: AbortSignal[] = [];
    let releaseAll!: () => void;
    const gate = new Promise<void>((resolve) => (releaseAll = resolve));
    const agent = await startAgent({
      concurrency: 2,
      maintenance: false,
      leaseMs: 120_000,
      heartbeatIntervalMs: 60_000,
      handlers: {
        reclaimed: async (_payload: unknown, context: { signal: AbortSignal }) => {
          const { signal } = context;
          signals.push(signal);
          await Promise.race([gate, new Promise((resolve) => signal.addEventListener('abort', resolve))]);
        },
      },
    });
    const { id } = await t.client.enqueue({ task: 'reclaimed' });
    await waitFor('the first run', () => signals.length === 1);
    await t.pool.query(
      `UPDATE "${t.schema}".jobs SET state = 'pending', lease_expires_at = NULL, claimed_by = NULL, started_at = NULL WHERE id = $1`,
      [id],
    );
    await waitFor('the second run', () => signals.length === 2);
    expect(signals[0].aborted).toBe(true);
    expect(signals[0].reason).toMatchObject({ outcome: 'lease_lost' });
    expect(agent.runningCount).toBe(1);
    releaseAll();
    await waitFor('the job completed', async () => (await t.client.getJob(id)).state === 'completed');
    expect(await t.client.getJob(id)).toMatchObject({ state: 'completed', attempt: 2 });
    expect(agent.runningCount).toBe(0);
  });

  it("a completion whose row another transaction holds locked waits alone: the agent's other completions are stored meanwhile", async () => {
    // As when a client enqueues a dependent of a running job in a long transaction: the job's row stays locked.
    const { gate, open: openGate } = gated();
    await startAgent({ concurrency: 4, handlers: { gated: () => gate, quick: () => {} } });
    const { id: lockedId } = await t.client.enqueue({ task: 'gated' });
    await waitFor('the gated job to run', async () => (await t.client.getJob(lockedId)).state === 'running');
    await whileRowLocked(lockedId, async () => {
      openGate();
      const quick = await t.client.enqueueMany(Array.from({ length: 10 }, () => ({ task: 'quick' })));
      await waitFor('the other jobs completed while the lock is held', async () => {
        const jobs = await Promise.all(quick.map((job) => t.client.getJob(job.id)));
        return jobs.every((job) => job.state === 'completed');
      }, 15_000);
      expect((await t.client.getJob(lockedId)).state).toBe('running');
    });
    await waitFor('the locked job completed once the lock went', async () => (await t.client.getJob(lockedId)).state === 'completed');
  });

  it("a completion the database's statement_timeout cancels while a row lock holds it is kept, and stored once the lock goes", async () => {
    // A statement_timeout below the agent's lock timeout fires first. The completion was taken as refused, and a
    // job of one attempt whose handler had succeeded went dead with "the database refused to store the handler's result".
    const url = new URL(t.url);
    url.searchParams.set('options', '-c statement_timeout=300');
    const { gate, open: openGate } = gated();
    await startAgent({ databaseUrl: url.toString(), concurrency: 2, handlers: { timedOutGate: () => gate.then(() => ({ ok: true })) } });
    const { id } = await t.client.enqueue({ task: 'timedOutGate', maxAttempts: 1 });
    await waitFor('the gated job to run', async () => (await t.client.getJob(id)).state === 'running');
    await whileRowLocked(id, async () => {
      openGate();
      await new Promise((resolve) => setTimeout(resolve, 1_500)); // several statement timeouts
      expect((await t.client.getJob(id)).state).toBe('running');
    });
    await waitFor('the job completed once the lock went', async () => (await t.client.getJob(id)).state === 'completed');
    expect(await t.client.getJob(id)).toMatchObject({ state: 'completed', attempt: 1, result: { ok: true }, attemptLog: [] });
  });

  it("a failure whose row another transaction holds locked waits alone: the agent's other outcomes are stored meanwhile", async () => {
    const { gate, open: openGate } = gated();
    const warnings: string[] = [];
    await startAgent({
      concurrency: 4,
      logger: { ...silentLogger, warn: (message) => warnings.push(message) },
      handlers: {
        gatedFailure: async () => {
          await gate;
          throw new Error('failed behind a lock');
        },
        quickFailure: () => {
          throw new Error('failed at once');
        },
        quick: () => {},
      },
    });
    const { id: lockedId } = await t.client.enqueue({ task: 'gatedFailure', maxAttempts: 1 });
    await waitFor('the gated job to run', async () => (await t.client.getJob(lockedId)).state === 'running');
    await whileRowLocked(lockedId, async () => {
      openGate();
      // Let the locked failure meet the lock first, then give the agent more outcomes of both kinds to store.
      await new Promise((resolve) => setTimeout(resolve, 100));
      const others = await t.client.enqueueMany([
        ...Array.from({ length: 5 }, () => ({ task: 'quick' })),
        ...Array.from({ length: 5 }, () => ({ task: 'quickFailure', maxAttempts: 1 })),
      ]);
      await waitFor('the other outcomes stored while the lock is held', async () => {
        const jobs = await Promise.all(others.map((job) => t.client.getJob(job.id)));
        return jobs.every((job) => job.state === 'completed' || job.state === 'dead');
      }, 15_000);
      expect((await t.client.getJob(lockedId)).state).toBe('running');
      // Held back once, then tried without waiting: before, it waited out the lock timeout in every flush, and every
      // other outcome waited with it.
      expect(warnings).toEqual(['another transaction holds these jobs locked; storing their failures once it lets go']);
    });
    await waitFor('the locked failure stored once the lock went', async () => (await t.client.getJob(lockedId)).state === 'dead');
    expect((await t.client.getJob(lockedId)).lastError).toBe('failed behind a lock');
  });

  it('a completion whose dependent another transaction holds locked waits alone too', async () => {
    // Completing P releases its dependent D, which needs D's row; a client attaching a job to D holds it.
    const { gate, open: openGate } = gated();
    await startAgent({ concurrency: 4, handlers: { parent: () => gate, child: () => {}, other: () => {} } });
    const parent = await t.client.enqueue({ task: 'parent' });
    const child = await t.client.enqueue({ task: 'child', dependsOn: [parent.id] });
    await waitFor('the parent to run', async () => (await t.client.getJob(parent.id)).state === 'running');
    await whileRowLocked(child.id, async () => {
      openGate();
      const others = await t.client.enqueueMany(Array.from({ length: 10 }, () => ({ task: 'other' })));
      await waitFor('the other jobs completed while the lock is held', async () => {
        const jobs = await Promise.all(others.map((job) => t.client.getJob(job.id)));
        return jobs.every((job) => job.state === 'completed');
      }, 20_000); // each try on the locked dependent waits out the 1 s lock timeout: about 3-5 s here
      expect((await t.client.getJob(parent.id)).state).toBe('running');
    });
    await waitFor('the parent completed and the child ran', async () => (await t.client.getJob(child.id)).state === 'completed');
    expect((await t.client.getJob(parent.id)).state).toBe('completed');
  });

  it('shutdown gives buffered jobs back even when one of their rows is locked for a while', async () => {
    // Releases wait for row locks: one that gave up would leave the jobs running until their leases expired.
    const agent = await startAgent({ concurrency: 1, prefetch: 3, shutdownGraceMs: 200, handlers: { held: () => new Promise(() => {}) } });
    const jobs = await t.client.enqueueMany(Array.from({ length: 4 }, () => ({ task: 'held', maxAttempts: 1 })));
    await waitFor('one running, three buffered', async () => {
      const states = await Promise.all(jobs.map((job) => t.client.getJob(job.id)));
      return agent.runningCount === 1 && states.every((job) => job.state === 'running');
    });
    const locker = await t.pool.connect();
    const running = new Set([...(await t.pool.query(`SELECT id FROM "${t.schema}".jobs WHERE id = ANY($1) AND state = 'running'`, [jobs.map((j) => j.id)])).rows.map((r) => Number(r.id))]);
    expect(running.size).toBe(4);
    try {
      await locker.query('BEGIN');
      // Lock every job row: the buffered ones' release must wait for the lock, not give up after a second.
      await locker.query(`SELECT id FROM "${t.schema}".jobs WHERE id = ANY($1) FOR SHARE`, [jobs.map((j) => j.id)]);
      setTimeout(() => void locker.query('COMMIT'), 1_500);
      await agent.stop();
    } finally {
      locker.release();
    }
    const states = await Promise.all(jobs.map((job) => t.client.getJob(job.id)));
    expect(states.map((job) => job.state)).toEqual(['pending', 'pending', 'pending', 'pending']);
    expect(states.map((job) => job.attempt)).toEqual([0, 0, 0, 0]);
  });
});
