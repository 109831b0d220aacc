import { describe, expect, it } from 'vitest';
import type { JobContext } from '../src/agent/worker/executors/executor.js';
import type { JobRow } from '../src/shared/db/queries/jobs-admin.js';
import type { JobSpec } from '../src/shared/job-spec.js';
import { PermanentFailure, Snooze, failPermanently, snooze } from '../src/shared/handler-signals.js';
import { silentLogger } from '../src/shared/logger.js';
import { useAgents } from './support/agents.js';
import { useTestSchema, waitFor } from './support/database.js';

const t = useTestSchema('retries');
const startAgent = useAgents(t, { stopWithinMs: 2000 });

async function enqueue(spec: JobSpec): Promise<number> {
  return (await t.client.enqueue(spec)).id;
}

function waitForState(id: number, states: string[], timeoutMs = 10_000): Promise<JobRow> {
  return waitFor(
    `job ${id} to reach ${states.join(' or ')}`,
    async () => {
      const job = await t.client.getJob(id);
      return states.includes(job.state) ? job : undefined;
    },
    timeoutMs,
  );
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const fast = { strategy: 'fixed', base: 10, jitter: 0 } as const;

describe('retry_delay(strategy, base_ms, factor, max_ms, jitter, attempt, spread)', () => {
  async function retryDelayMs(strategy: string, base: number, factor: number, max: number, jitter: number, attempt: number, spread: number) {
    const { rows } = await t.pool.query(
      `SELECT (extract(epoch FROM "${t.schema}".retry_delay($1::text, $2::integer, $3::real, $4::integer, $5::real, $6::integer, $7::float8)) * 1000)::float8 AS ms`,
      [strategy, base, factor, max, jitter, attempt, spread],
    );
    return rows[0].ms as number;
  }

  const hour = 3_600_000;
  it.each([
    // strategy, base, factor, max, jitter, attempt, spread -> ms
    ['exponential', 5000, 2, hour, 0, 1, 0.5, 5_000],
    ['exponential', 5000, 2, hour, 0, 2, 0.5, 10_000],
    ['exponential', 5000, 2, hour, 0, 3, 0.5, 20_000],
    ['exponential', 5000, 2, hour, 0, 4, 0.5, 40_000],
    ['exponential', 5000, 2, hour, 0, 5, 0.5, 80_000],
    ['exponential', 5000, 2, hour, 0, 0, 0.5, 5_000],
    ['exponential', 1000, 1.5, hour, 0, 3, 0.5, 2_250],
    ['exponential', 5000, 2, 60_000, 0, 5, 0.5, 60_000],
    ['exponential', 5000, 2, 60_000, 0, 30, 0.5, 60_000],
    ['fixed', 1000, 2, hour, 0, 1, 0.5, 1_000],
    ['fixed', 1000, 2, hour, 0, 9, 0.5, 1_000],
    ['fixed', 5000, 2, 2_000, 0, 1, 0.5, 2_000],
    ['fixed', 0, 2, hour, 0.5, 3, 0.9, 0],
    ['fixed', 10_000, 2, hour, 0.2, 1, 0, 8_000],
    ['fixed', 10_000, 2, hour, 0.2, 1, 0.5, 10_000],
    ['exponential', 10_000, 2, hour, 0.2, 1, 0.999999, 12_000],
    ['exponential', 5000, 2, 60_000, 0.5, 10, 0, 30_000],
    ['exponential', 5000, 2, 60_000, 0.5, 10, 0.999999, 60_000],
    ['fixed', 10_000, 2, hour, 1, 1, 0, 0],
    // large attempt numbers must cap at max, not overflow double precision
    ['exponential', 5000, 10, hour, 0, 400, 0.5, hour],
    ['exponential', 5000, 100, hour, 0.2, 1000, 0.5, hour],
  ] as const)('%s base %i factor %d max %i jitter %d attempt %i spread %d -> %i ms', async (strategy, base, factor, max, jitter, attempt, spread, expected) => {
    expect(await retryDelayMs(strategy, base, factor, max, jitter, attempt, spread)).toBeCloseTo(expected, 0);
  });

  it('jitter keeps every delay within +/- jitter of the base delay', async () => {
    const { rows } = await t.pool.query(
      `SELECT min(ms)::float8 AS low, max(ms)::float8 AS high FROM (
         SELECT extract(epoch FROM "${t.schema}".retry_delay('exponential', 10000, 2, 3600000, 0.25, 2, s / 1000.0)) * 1000 AS ms
           FROM generate_series(0, 999) AS s) d`,
    );
    expect(rows[0].low).toBeCloseTo(15_000, 0);
    expect(rows[0].high).toBeLessThanOrEqual(25_000);
    expect(rows[0].high).toBeGreaterThan(24_900);
  });
});

describe('failing handlers', () => {
  it('a failed attempt goes back to pending, due again after the backoff', async () => {
    await startAgent({
      handlers: {
        flaky: () => {
          throw new Error('upstream said 503');
        },
      },
    });
    const fixedId = await enqueue({ task: 'flaky', maxAttempts: 3, backoff: { strategy: 'fixed', base: '1m', jitter: 0 } });
    const jitteredId = await enqueue({ task: 'flaky', maxAttempts: 3, backoff: { strategy: 'exponential', base: '10s', jitter: 0.2 } });
    const failedOnce = (id: number) =>
      waitFor(`job ${id} failed once`, async () => {
        const job = await t.client.getJob(id);
        return job.attemptLog.length === 1 && job.state === 'pending' ? job : undefined;
      });

    const fixed = await failedOnce(fixedId);
    expect(fixed).toMatchObject({ attempt: 1, lastError: 'upstream said 503', leaseExpiresAt: null, finishedAt: null });
    const failedAt = fixed.attemptLog[0].finishedAt!.getTime();
    expect(fixed.runAt.getTime() - failedAt).toBe(60_000);

    const jittered = await failedOnce(jitteredId);
    const delay = jittered.runAt.getTime() - jittered.attemptLog[0].finishedAt!.getTime();
    expect(delay).toBeGreaterThanOrEqual(8_000);
    expect(delay).toBeLessThanOrEqual(12_000);
  });

  it('after maxAttempts the job is dead, with every attempt’s error message and stack kept', async () => {
    const seen: number[] = [];
    const agent = await startAgent({
      handlers: {
        always_fails: (_payload, ctx: JobContext) => {
          seen.push(ctx.job.attempt);
          throw new Error(`failure number ${ctx.job.attempt}`);
        },
      },
    });
    const id = await enqueue({ task: 'always_fails', maxAttempts: 3, backoff: fast });
    const job = await waitForState(id, ['dead']);
    expect(seen).toEqual([1, 2, 3]);
    expect(job).toMatchObject({ attempt: 3, maxAttempts: 3, lastError: 'failure number 3' });
    expect(job.finishedAt).toBeInstanceOf(Date);
    expect(job.attemptLog).toHaveLength(3);
    job.attemptLog.forEach((entry, i) => {
      expect(entry).toMatchObject({ attempt: i + 1, agent: agent.id, outcome: 'failed', error: `failure number ${i + 1}` });
      expect(entry.stack).toMatch(new RegExp(`^Error: failure number ${i + 1}\\n\\s+at `));
      expect(entry.finishedAt!.getTime()).toBeGreaterThanOrEqual(entry.startedAt!.getTime());
    });
  });

  it('a rejected promise is a failed attempt with its message and stack', async () => {
    await startAgent({ handlers: { rejects: () => Promise.reject(new TypeError('cannot read the thing')) } });
    const job = await waitForState(await enqueue({ task: 'rejects', maxAttempts: 1 }), ['dead']);
    expect(job.lastError).toBe('cannot read the thing');
    expect(job.attemptLog[0]).toMatchObject({ outcome: 'failed', error: 'cannot read the thing' });
    expect(job.attemptLog[0].stack).toMatch(/^TypeError: cannot read the thing/);
  });

  it('throwing a string or a plain object is a failed attempt with a readable error; the agent carries on', async () => {
    await startAgent({
      handlers: {
        throws_string: () => {
          throw 'disk full';
        },
        throws_object: () => {
          throw { code: 'E_QUOTA', detail: 'over quota' };
        },
        throws_null: () => {
          throw null;
        },
        rejects_string: () => Promise.reject('rate limited'),
        fine: () => 'ok',
      },
    });
    const [stringId, objectId, nullId, rejectId] = await Promise.all(
      ['throws_string', 'throws_object', 'throws_null', 'rejects_string'].map((task) => enqueue({ task, maxAttempts: 1 })),
    );
    const byString = await waitForState(stringId, ['dead']);
    expect(byString.lastError).toBe('disk full');
    expect(byString.attemptLog[0]).toMatchObject({ outcome: 'failed', error: 'disk full' });
    const byObject = await waitForState(objectId, ['dead']);
    expect(byObject.lastError).toMatch(/E_QUOTA/);
    expect(byObject.lastError).toMatch(/over quota/);
    expect((await waitForState(nullId, ['dead'])).lastError).toMatch(/null/);
    expect((await waitForState(rejectId, ['dead'])).lastError).toBe('rate limited');
    const fine = await waitForState(await enqueue({ task: 'fine' }), ['completed']);
    expect(fine.result).toBe('ok');
  });

  it('throwing undefined, or rejecting with undefined, is a failed attempt, not a success', async () => {
    await startAgent({
      handlers: {
        throws_undefined: () => {
          throw undefined;
        },
        rejects_undefined: () => Promise.reject(),
      },
    });
    const thrown = await waitForState(await enqueue({ task: 'throws_undefined', maxAttempts: 1 }), ['dead', 'completed']);
    const rejected = await waitForState(await enqueue({ task: 'rejects_undefined', maxAttempts: 1 }), ['dead', 'completed']);
    for (const job of [thrown, rejected]) {
      expect(job.state).toBe('dead');
      expect(job.attemptLog).toEqual([expect.objectContaining({ outcome: 'failed', error: expect.stringMatching(/undefined/) })]);
    }
  });

  it('a thrown value that breaks when read (non-text message or stack, throwing getters, a hostile Proxy, a cycle without prototype, a Symbol) is a failed attempt; the agent carries on', async () => {
    const hostile: Record<string, () => unknown> = {
      numeric_message: () => Object.assign(new Error('x'), { message: 503 }),
      numeric_stack: () => Object.assign(new Error('stack is a number'), { stack: 42 }),
      throwing_message: () => {
        const error = new Error('hidden');
        Object.defineProperty(error, 'message', { get: () => { throw new Error('no message for you'); } });
        return error;
      },
      throwing_stack: () => {
        const error = new Error('stack getter throws');
        Object.defineProperty(error, 'stack', { get: () => { throw new Error('no stack'); } });
        return error;
      },
      proxy: () => new Proxy({}, { getPrototypeOf: () => { throw new Error('no prototype'); } }),
      null_prototype_cycle: () => {
        const value = Object.create(null);
        value.self = value;
        return value;
      },
      symbol: () => Symbol('boom'),
    };
    await startAgent({
      handlers: {
        ...Object.fromEntries(Object.entries(hostile).map(([task, make]) => [task, () => { throw make(); }])),
        fine: () => 'ok',
      },
    });
    const ids = await Promise.all(Object.keys(hostile).map((task) => enqueue({ task, maxAttempts: 1 })));
    const jobs = await Promise.all(ids.map((id) => waitForState(id, ['dead'])));
    const errors = Object.fromEntries(jobs.map((job) => [job.task, job.lastError]));
    expect(errors).toEqual({
      numeric_message: '503',
      numeric_stack: 'stack is a number',
      throwing_message: 'Error',
      throwing_stack: 'stack getter throws',
      proxy: expect.stringMatching(/^non-Error thrown: /),
      null_prototype_cycle: expect.stringMatching(/^non-Error thrown: .*self.*Circular/),
      symbol: 'non-Error thrown: Symbol(boom)',
    });
    expect(jobs.every((job) => job.attemptLog.length === 1 && job.attemptLog[0].outcome === 'failed')).toBe(true);
    expect((await waitForState(await enqueue({ task: 'fine' }), ['completed'])).result).toBe('ok');
  });

  it('PermanentFailure and failPermanently() make the job dead after one attempt', async () => {
    await startAgent({
      handlers: {
        permanent: () => {
          throw new PermanentFailure('the account was deleted');
        },
        permanent_fn: () => failPermanently('payload is malformed'),
      },
    });
    const first = await waitForState(await enqueue({ task: 'permanent', maxAttempts: 5, backoff: fast }), ['dead']);
    const second = await waitForState(await enqueue({ task: 'permanent_fn', maxAttempts: 5, backoff: fast }), ['dead']);
    expect(first).toMatchObject({ attempt: 1, lastError: 'the account was deleted' });
    expect(first.attemptLog).toEqual([expect.objectContaining({ attempt: 1, outcome: 'failed', error: 'the account was deleted' })]);
    expect(second).toMatchObject({ attempt: 1, lastError: 'payload is malformed' });
    expect(second.attemptLog).toHaveLength(1);
  });

  it('snooze("1s") puts the job back to pending a second later without using up an attempt', async () => {
    const calls: number[] = [];
    await startAgent({
      handlers: {
        snoozy: (_payload, ctx: JobContext) => {
          calls.push(ctx.job.attempt);
          if (calls.length === 1) snooze('1s');
          return 'woke up';
        },
      },
    });
    const id = await enqueue({ task: 'snoozy', maxAttempts: 1 });
    // The delay is read only while the job is still pending from the snooze: read after, a busy machine could have
    // claimed it again in between (its second start came after its run_at, and the delay read negative).
    const snoozed = await waitFor('the job snoozed', async () => {
      const job = await t.client.getJob(id);
      if (calls.length !== 1 || job.state !== 'pending') return undefined;
      const { rows } = await t.pool.query(
        `SELECT (extract(epoch FROM run_at - started_at) * 1000)::float8 AS ms FROM "${t.schema}".jobs WHERE id = $1 AND state = 'pending'`,
        [id],
      );
      return rows.length === 1 ? { job, delayMs: rows[0].ms as number } : undefined;
    });
    expect(snoozed.job).toMatchObject({ attempt: 0, attemptLog: [], lastError: null, finishedAt: null });
    // From the start of the run (not from now(), which a busy machine reaches late): a second after the
    // snooze was written, which came after the start.
    expect(snoozed.delayMs).toBeGreaterThanOrEqual(1_000);
    expect(snoozed.delayMs).toBeLessThan(11_000);
    // maxAttempts 1: had the snooze used up the attempt, the job would be dead now
    const done = await waitForState(id, ['completed', 'dead']);
    expect(done).toMatchObject({ state: 'completed', attempt: 1, result: 'woke up' });
    expect(calls).toEqual([1, 1]);
  });

  it('a snooze that is not a duration from 0 to 100 years is a failed attempt naming the value, at once (not left to the lease)', async () => {
    expect(() => new Snooze(undefined as unknown as string)).toThrow('snooze delay must be a duration from 0 to 100 years, such as 30s or a number of milliseconds; got undefined');
    expect(() => new Snooze({} as unknown as string)).toThrow(/got \[object Object\]$/);
    expect(() => new Snooze(1e300)).toThrow(/from 0 to 100 years.*got 1e\+300/);
    expect(() => new Snooze('-5s')).toThrow(/got "-5s"/);
    expect(new Snooze(100 * 365 * 86_400_000).delayMs).toBe(100 * 365 * 86_400_000);
    expect(new Snooze(0).delayMs).toBe(0);

    await startAgent({ handlers: { snooze_forever: () => snooze(1e16) } });
    const job = await waitForState(await enqueue({ task: 'snooze_forever', maxAttempts: 1 }), ['dead'], 5_000);
    expect(job.attemptLog).toEqual([expect.objectContaining({ outcome: 'failed', error: expect.stringMatching(/snooze delay must be a duration from 0 to 100 years.*got 10000000000000000$/) })]);
  });

  it('throw new Snooze(ms) works the same way', async () => {
    let first = true;
    await startAgent({
      handlers: {
        snooze_class: () => {
          if (first) {
            first = false;
            throw new Snooze(100);
          }
          return 'done';
        },
      },
    });
    const job = await waitForState(await enqueue({ task: 'snooze_class', maxAttempts: 1 }), ['completed', 'dead']);
    expect(job).toMatchObject({ state: 'completed', attempt: 1 });
  });
});

describe('timeouts', () => {
  it('fires the AbortSignal with a timed_out reason and records the attempt as timed_out', async () => {
    const reasons: unknown[] = [];
    await startAgent({
      handlers: {
        waits_for_signal: (_payload, ctx: JobContext) =>
          new Promise((_resolve, reject) => {
            ctx.signal.addEventListener('abort', () => {
              reasons.push(ctx.signal.reason);
              reject(ctx.signal.reason);
            });
          }),
      },
    });
    const job = await waitForState(await enqueue({ task: 'waits_for_signal', timeout: 200, maxAttempts: 1 }), ['dead']);
    expect(reasons).toHaveLength(1);
    expect(reasons[0]).toBeInstanceOf(Error);
    expect(reasons[0]).toMatchObject({ name: 'JobAbort', outcome: 'timed_out', message: 'timed out after 200 ms' });
    expect(job.attemptLog).toEqual([expect.objectContaining({ attempt: 1, outcome: 'timed_out', error: 'timed out after 200 ms' })]);
    const entry = job.attemptLog[0];
    expect(entry.finishedAt!.getTime() - entry.startedAt!.getTime()).toBeGreaterThanOrEqual(195);
  });

  it('a handler that never settles is failed by its timeout and the agent keeps working', async () => {
    await startAgent({
      concurrency: 1,
      handlers: {
        hangs: () => new Promise(() => {}),
        quick: (n: number) => n * 2,
      },
    });
    const hung = await enqueue({ task: 'hangs', timeout: 200, maxAttempts: 1 });
    const quick = await enqueue({ task: 'quick', payload: 21 });
    const dead = await waitForState(hung, ['dead']);
    expect(dead.attemptLog).toEqual([expect.objectContaining({ outcome: 'timed_out' })]);
    expect(await waitForState(quick, ['completed'])).toMatchObject({ result: 42 });
  });

  it('a long default timeout (30 days) does not cut a 150 ms job short', async () => {
    await startAgent({
      defaultTimeoutMs: 30 * 86_400_000,
      handlers: {
        steady: async () => {
          await sleep(150);
          return 'finished';
        },
      },
    });
    const job = await waitForState(await enqueue({ task: 'steady', maxAttempts: 1 }), ['completed', 'dead']);
    expect(job.attemptLog).toEqual([]);
    expect(job).toMatchObject({ state: 'completed', result: 'finished' });
  });
});

describe('outcomes the database cannot store', () => {
  it('a result that is not JSON-serialisable (BigInt) does not block other jobs’ completions', async () => {
    await startAgent({
      concurrency: 2,
      handlers: {
        returns_bigint: () => ({ total: 10n }),
        returns_ok: (n: number) => n,
      },
    });
    const bad = await enqueue({ task: 'returns_bigint', maxAttempts: 1 });
    await sleep(50);
    const good = await Promise.all([1, 2, 3].map((n) => enqueue({ task: 'returns_ok', payload: n })));
    for (const id of good) expect((await waitForState(id, ['completed'], 2_000)).state).toBe('completed');
    const job = await waitForState(bad, ['completed', 'dead', 'pending'], 2_000);
    if (job.state !== 'completed') expect(job.lastError).toMatch(/BigInt|serial|JSON/i);
  });

  it('an outcome the database refuses is recorded as a failed attempt with the reason, not left to the lease', async () => {
    // A real refusal: a trigger raising a data error (class 22) for these tasks' outcomes, as PostgreSQL does for a
    // result string past jsonb's 256 MB.
    await t.pool.query(`
      CREATE FUNCTION "${t.schema}".refuse_outcome() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF NEW.task = 'refused_result' AND NEW.state = 'completed' THEN RAISE EXCEPTION 'result refused' USING ERRCODE = '22023'; END IF;
        IF NEW.task = 'refused_failure' AND NEW.last_error = 'original error' THEN RAISE EXCEPTION 'failure refused' USING ERRCODE = '22023'; END IF;
        IF NEW.task = 'refused_always' AND NEW.state <> 'running' THEN RAISE EXCEPTION 'always refused' USING ERRCODE = '22023'; END IF;
        RETURN NEW;
      END $$;
      CREATE TRIGGER refuse_outcome BEFORE UPDATE ON "${t.schema}".jobs FOR EACH ROW EXECUTE FUNCTION "${t.schema}".refuse_outcome();`);
    const errors: { message: string; jobId?: unknown }[] = [];
    const logger = { ...silentLogger, error: (message: string, fields?: Record<string, unknown>) => void errors.push({ message, jobId: fields?.jobId }) };
    try {
      await startAgent({
        leaseMs: 60_000,
        logger,
        handlers: {
          refused_result: () => 'fine',
          refused_failure: () => {
            throw new Error('original error');
          },
          refused_always: () => {
            throw new Error('nothing will do');
          },
          fine: () => 'ok',
        },
      });
      const [result, failure, always] = await Promise.all(['refused_result', 'refused_failure', 'refused_always'].map((task) => enqueue({ task, maxAttempts: 1 })));
      const byResult = await waitForState(result, ['dead'], 5_000);
      expect(byResult.attemptLog).toEqual([expect.objectContaining({ outcome: 'failed', error: "the database refused to store the handler's result: result refused" })]);
      const byFailure = await waitForState(failure, ['dead'], 5_000);
      expect(byFailure.lastError).toBe("the database refused to store this attempt's outcome (failed: original error): failure refused");
      // Refused twice: said once, left to its lease (a minute here), still running, and the agent carries on.
      await waitFor('the second refusal to be logged', () => errors.some((error) => error.jobId === always && /refused a job's outcome twice/.test(error.message)));
      expect((await waitForState(await enqueue({ task: 'fine' }), ['completed'])).result).toBe('ok');
      const stillRunning = await t.client.getJob(always);
      expect(stillRunning).toMatchObject({ state: 'running', attempt: 1, attemptLog: [] });
      expect(errors.filter((error) => error.jobId === always)).toHaveLength(1);
    } finally {
      await t.pool.query(`DROP TRIGGER refuse_outcome ON "${t.schema}".jobs; DROP FUNCTION "${t.schema}".refuse_outcome()`);
    }
  });

  it('an error message with a NUL character does not block other jobs’ failures', async () => {
    await startAgent({
      concurrency: 2,
      handlers: {
        nul_error: () => {
          throw new Error('bad byte \u0000 here');
        },
        plain_error: () => {
          throw new Error('plain failure');
        },
      },
    });
    const nul = await enqueue({ task: 'nul_error', maxAttempts: 1 });
    await sleep(50);
    const plain = await enqueue({ task: 'plain_error', maxAttempts: 1 });
    expect((await waitForState(plain, ['dead'], 2_000)).lastError).toBe('plain failure');
    const job = await waitForState(nul, ['dead'], 2_000);
    expect(job.lastError).toMatch(/bad byte/);
  });

  it('an unpaired UTF-16 surrogate in an error or a result is stored as U+FFFD, and holds up no other outcome', async () => {
    // JSON.stringify writes it as an escape that jsonb refuses, which would fail the whole batch of outcomes.
    await startAgent({
      concurrency: 4,
      handlers: {
        surrogate_error: () => {
          throw new Error('half a pair \ud83d here');
        },
        surrogate_result: () => ({ text: 'half \udc00 pair' }),
        plain_error: () => {
          throw new Error('plain failure');
        },
        returns_ok: (n: number) => n,
      },
    });
    const failing = await enqueue({ task: 'surrogate_error', maxAttempts: 1 });
    const returning = await enqueue({ task: 'surrogate_result' });
    const others = [await enqueue({ task: 'plain_error', maxAttempts: 1 }), await enqueue({ task: 'returns_ok', payload: 7 })];
    expect((await waitForState(others[0], ['dead'], 3_000)).lastError).toBe('plain failure');
    expect((await waitForState(others[1], ['completed'], 3_000)).result).toBe(7);
    expect((await waitForState(failing, ['dead'], 3_000)).lastError).toBe('half a pair \ufffd here');
    expect((await waitForState(returning, ['completed'], 3_000)).result).toEqual({ text: 'half \ufffd pair' });
  });
});
