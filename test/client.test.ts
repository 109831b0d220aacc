import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { createClient, type EnqueueResult, type WidaClient } from '../src/shared/client.js';
import type { Queryable } from '../src/shared/db/sql.js';
import { ConfigError, JobNotFoundError, ValidationError } from '../src/shared/errors.js';
import type { JobSpec } from '../src/shared/job-spec.js';
import { useTestSchema } from './support/database.js';
import { rawJob } from './support/factories.js';

const t = useTestSchema('client');

async function countJobs(where = 'true', values: unknown[] = []): Promise<number> {
  const { rows } = await t.pool.query(`SELECT count(*)::int AS n FROM "${t.schema}".jobs WHERE ${where}`, values);
  return rows[0].n;
}

/** Milliseconds between run_at and created_at: both come from the inserting statement's now(). */
async function runAtAfterCreatedMs(id: number): Promise<number> {
  const { rows } = await t.pool.query(
    `SELECT (extract(epoch FROM run_at - created_at) * 1000)::float8 AS ms FROM "${t.schema}".jobs WHERE id = $1`,
    [id],
  );
  return rows[0].ms;
}

/** A Queryable over the pool that records each statement sent, to count round trips. */
function countingQueryable(): Queryable & { calls: string[] } {
  const calls: string[] = [];
  return {
    calls,
    query(config) {
      calls.push(config.name ?? config.text);
      return t.pool.query(config);
    },
  };
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => undefined,
    (error) => error,
  );
}

describe('enqueue one job', () => {
  it('stores the defaults: queue "default", normal priority, 5 attempts, exponential backoff, runs now', async () => {
    const result = await t.client.enqueue({ task: 'send_email', payload: { to: 'a@example.com', n: 1 } });
    expect(result).toEqual({ id: expect.any(Number), duplicate: false });
    const job = await t.client.getJob(result.id);
    expect(job).toMatchObject({
      id: result.id,
      queue: 'default',
      task: 'send_email',
      payload: { to: 'a@example.com', n: 1 },
      priority: 1,
      state: 'pending',
      attempt: 0,
      maxAttempts: 5,
      timeoutMs: null,
      idempotencyKey: null,
      lastError: null,
      attemptLog: [],
      replayCount: 0,
      claimedBy: null,
      finishedAt: null,
      backoff: { strategy: 'exponential', baseMs: 5000, factor: 2, maxMs: 3_600_000, jitter: expect.closeTo(0.2, 5) },
    });
    expect(await runAtAfterCreatedMs(result.id)).toBe(0);
  });

  it('omitted payload is stored as JSON null; scalar payloads keep their type', async () => {
    const [none, text, number, list] = await t.client.enqueueMany([
      { task: 'p' },
      { task: 'p', payload: 'hello' },
      { task: 'p', payload: 42 },
      { task: 'p', payload: [1, { a: true }] },
    ]);
    expect((await t.client.getJob(none.id)).payload).toBeNull();
    expect((await t.client.getJob(text.id)).payload).toBe('hello');
    expect((await t.client.getJob(number.id)).payload).toBe(42);
    expect((await t.client.getJob(list.id)).payload).toEqual([1, { a: true }]);
  });

  it.each([
    ['low', 0],
    ['normal', 1],
    ['high', 2],
    ['critical', 3],
  ] as const)('priority %s is stored as %i', async (priority, stored) => {
    const { id } = await t.client.enqueue({ task: 'prio', priority });
    expect((await t.client.getJob(id)).priority).toBe(stored);
  });

  it('stores queue, maxAttempts, backoff, timeout and idempotency key as given', async () => {
    const { id } = await t.client.enqueue({
      task: 'resize',
      queue: 'images',
      maxAttempts: 7,
      backoff: { strategy: 'fixed', base: '2s', factor: 3, maxInterval: '1m', jitter: 0 },
      timeout: '45s',
      idempotencyKey: 'resize-photo-17',
    });
    const job = await t.client.getJob(id);
    expect(job).toMatchObject({
      queue: 'images',
      maxAttempts: 7,
      backoff: { strategy: 'fixed', baseMs: 2000, factor: 3, maxMs: 60_000, jitter: 0 },
      timeoutMs: 45_000,
      idempotencyKey: 'resize-photo-17',
    });
  });

  it('delay puts run_at that far after the database now() of the insert', async () => {
    const { id } = await t.client.enqueue({ task: 'later', delay: '90s' });
    expect(await runAtAfterCreatedMs(id)).toBe(90_000);
    const numeric = await t.client.enqueue({ task: 'later', delay: 1500 });
    expect(await runAtAfterCreatedMs(numeric.id)).toBe(1500);
  });

  it('delay uses the database clock: inside a transaction run_at = that transaction now() + delay', async () => {
    const connection = await t.pool.connect();
    try {
      await connection.query('BEGIN');
      const { rows } = await connection.query('SELECT now() AS now');
      const { id } = await t.client.enqueue({ task: 'later', delay: '1m' }, { client: connection });
      const row = await rawJob(connection, t.schema, id);
      expect(row!.run_at.getTime()).toBe(rows[0].now.getTime() + 60_000);
      await connection.query('ROLLBACK');
    } finally {
      connection.release();
    }
  });

  it('runAt as a Date or as an ISO timestamp with an offset is stored as that instant', async () => {
    const at = new Date('2031-05-06T07:08:09.123Z');
    const first = await t.client.enqueue({ task: 'scheduled', runAt: at });
    expect((await t.client.getJob(first.id)).runAt.toISOString()).toBe(at.toISOString());
    const second = await t.client.enqueue({ task: 'scheduled', runAt: '2031-05-06T09:08:09.123+02:00' });
    expect((await t.client.getJob(second.id)).runAt.toISOString()).toBe(at.toISOString());
  });
});

describe('wake-ups', () => {
  /** Listens on the schema's jobs channel while `body` runs; returns the payloads (queue names) received. */
  async function notificationsDuring(body: () => Promise<unknown>): Promise<string[]> {
    const listener = new pg.Client({ connectionString: t.url });
    await listener.connect();
    const received: string[] = [];
    listener.on('notification', (message) => received.push(message.payload ?? ''));
    try {
      await listener.query(`LISTEN "${t.db.channel('jobs')}"`);
      await body();
      // A round trip on the listening connection delivers anything already sent to it.
      await listener.query('SELECT 1');
      return received;
    } finally {
      await listener.end();
    }
  }

  it('a job ready now notifies its queue; a delayed job and a duplicate key do not', async () => {
    expect(await notificationsDuring(() => t.client.enqueue({ task: 'wake', queue: 'wake-a' }))).toEqual(['wake-a']);
    expect(await notificationsDuring(() => t.client.enqueue({ task: 'wake', queue: 'wake-b', delay: 60_000 }))).toEqual([]);
    expect(await notificationsDuring(() => t.client.enqueue({ task: 'wake', queue: 'wake-c', idempotencyKey: 'wake-key' }))).toEqual(['wake-c']);
    expect(await notificationsDuring(() => t.client.enqueue({ task: 'wake', queue: 'wake-c', idempotencyKey: 'wake-key' }))).toEqual([]);
  });

  it('a batch notifies each queue that got a ready job once', async () => {
    const received = await notificationsDuring(() =>
      t.client.enqueueMany([
        { task: 'wake', queue: 'wake-d' },
        { task: 'wake', queue: 'wake-d' },
        { task: 'wake', queue: 'wake-e' },
        { task: 'wake', queue: 'wake-f', delay: 60_000 },
      ]),
    );
    expect(received.sort()).toEqual(['wake-d', 'wake-e']);
  });
});

describe('enqueue many', () => {
  it('returns ids in input order and sends one statement for the whole batch', async () => {
    const recorder = countingQueryable();
    const specs: JobSpec[] = Array.from({ length: 25 }, (_, i) => ({ task: `batch_${i % 3}`, payload: { i }, priority: i % 2 ? 'high' : 'low' }));
    const results = await t.client.enqueueMany(specs, { client: recorder });
    expect(recorder.calls).toHaveLength(1);
    expect(results).toHaveLength(25);
    expect(results.every((r) => r.duplicate === false)).toBe(true);
    const ids = results.map((r) => r.id);
    expect(new Set(ids).size).toBe(25);
    expect([...ids].sort((a, b) => a - b)).toEqual(ids);
    for (const [i, result] of results.entries()) {
      const job = await t.client.getJob(result.id);
      expect(job).toMatchObject({ task: `batch_${i % 3}`, payload: { i }, priority: i % 2 ? 2 : 0 });
    }
  });

  it('a batch whose rows set different fields stores each row with its own fields and defaults for the rest', async () => {
    const before = Date.now();
    const [plain, scheduled, tuned] = await t.client.enqueueMany([
      { task: 'shape_plain' },
      { task: 'shape_scheduled', priority: 'critical', delay: '1h', timeout: '5s' },
      { task: 'shape_tuned', queue: 'shape_q', maxAttempts: 2, backoff: { strategy: 'fixed', base: '3s', factor: 3, maxInterval: '1m', jitter: 0 } },
    ]);
    const defaults = { queue: 'default', max_attempts: 5, timeout_ms: null, backoff_strategy: 'exponential', backoff_base_ms: 5000,
      backoff_factor: 2, backoff_max_ms: 3_600_000, idempotency_key: null };
    expect(await rawJob(t.pool, t.schema, plain.id)).toMatchObject({ ...defaults, priority: 1 });
    const late = await rawJob(t.pool, t.schema, scheduled.id);
    expect(late).toMatchObject({ ...defaults, priority: 3, timeout_ms: 5_000 });
    expect(late!.run_at.getTime()).toBeGreaterThanOrEqual(before + 3_600_000 - 1_000);
    expect(await rawJob(t.pool, t.schema, tuned.id)).toMatchObject({
      ...defaults, queue: 'shape_q', priority: 1, max_attempts: 2, backoff_strategy: 'fixed', backoff_base_ms: 3_000,
      backoff_factor: 3, backoff_max_ms: 60_000, backoff_jitter: 0,
    });
    expect((await rawJob(t.pool, t.schema, plain.id))!.run_at.getTime()).toBeLessThan(before + 60_000);
  });

  it('an empty batch sends nothing and returns []', async () => {
    const recorder = countingQueryable();
    expect(await t.client.enqueueMany([], { client: recorder })).toEqual([]);
    expect(recorder.calls).toHaveLength(0);
  });

  it('maps results to inputs when keyed and unkeyed jobs are mixed', async () => {
    const results = await t.client.enqueueMany([
      { task: 'mixed', payload: 0 },
      { task: 'mixed', payload: 1, idempotencyKey: 'mixed-a' },
      { task: 'mixed', payload: 2 },
      { task: 'mixed', payload: 3, idempotencyKey: 'mixed-b' },
      { task: 'mixed', payload: 4 },
    ]);
    for (const [i, result] of results.entries()) expect((await t.client.getJob(result.id)).payload).toBe(i);
  });
});

describe('idempotency keys', () => {
  it('20 concurrent enqueues with one key make exactly one job; 19 report duplicate with its id', async () => {
    const key = `concurrent-${Date.now()}`;
    // 20 connections, so the 20 inserts really race instead of queueing for the test pool's 5
    const wide = new pg.Pool({ connectionString: t.url, max: 20 });
    const racing = createClient({ pool: wide, schema: t.schema });
    let results: EnqueueResult[];
    try {
      await Promise.all(Array.from({ length: 20 }, () => wide.query('SELECT 1')));
      results = await Promise.all(
        Array.from({ length: 20 }, (_, i) => racing.enqueue({ task: 'charge', payload: { attemptNo: i }, idempotencyKey: key })),
      );
    } finally {
      await wide.end();
    }
    expect(await countJobs('idempotency_key = $1', [key])).toBe(1);
    const created = results.filter((r) => !r.duplicate);
    expect(created).toHaveLength(1);
    expect(results.filter((r) => r.duplicate)).toHaveLength(19);
    expect(new Set(results.map((r) => r.id))).toEqual(new Set([created[0].id]));
  });

  it('concurrent batches sharing keys in opposite orders neither deadlock nor duplicate, and keep ids in input order', async () => {
    const keys = Array.from({ length: 200 }, (_, i) => `opposed-${i}`);
    const batch = (order: string[]) => order.map((key) => ({ task: 'opposed', payload: key, idempotencyKey: key }));
    for (let round = 0; round < 3; round++) {
      const roundKeys = keys.map((key) => `${key}-${round}`);
      const [forward, backward] = await Promise.all([
        t.client.enqueueMany([{ task: 'opposed', payload: 'unkeyed-1' }, ...batch(roundKeys), { task: 'opposed', payload: 'unkeyed-2' }]),
        t.client.enqueueMany(batch([...roundKeys].reverse())),
      ]);
      expect(await countJobs('idempotency_key = ANY($1)', [roundKeys])).toBe(200);
      const created = [...forward.slice(1, -1), ...backward].filter((result) => !result.duplicate);
      expect(created).toHaveLength(200);
      // The jobs each batch created have ids in its input order: the claim runs a batch's jobs in that order.
      for (const results of [forward, backward]) {
        const ids = results.filter((result) => !result.duplicate).map((result) => result.id);
        expect(ids).toEqual([...ids].sort((x, y) => x - y));
      }
      expect((await t.client.getJob(forward[0].id)).payload).toBe('unkeyed-1');
      expect((await t.client.getJob(forward[201].id)).payload).toBe('unkeyed-2');
    }
  });

  it('a role allowed only to use the schema and write its tables can enqueue keyed batches (ids come from the sequence)', async () => {
    const role = `wida_writer_${Date.now()}`;
    await t.pool.query(`CREATE ROLE ${role} LOGIN`);
    await t.pool.query(`GRANT USAGE ON SCHEMA "${t.schema}" TO ${role}; GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA "${t.schema}" TO ${role}`);
    const url = new URL(t.url);
    url.username = role;
    const writer = new pg.Pool({ connectionString: url.toString(), max: 1 });
    try {
      const client = createClient({ pool: writer, schema: t.schema });
      const results = await client.enqueueMany([
        { task: 'as_writer', idempotencyKey: `${role}-b` },
        { task: 'as_writer', idempotencyKey: `${role}-a` },
      ]);
      expect(results.map((result) => result.duplicate)).toEqual([false, false]);
      expect(results[0].id).toBeLessThan(results[1].id);
    } finally {
      await writer.end();
      await t.pool.query(`DROP OWNED BY ${role}; DROP ROLE ${role}`);
    }
  });

  it('a later enqueue with a used key returns the existing job and changes nothing', async () => {
    const first = await t.client.enqueue({ task: 'charge', payload: { v: 1 }, idempotencyKey: 'later-dup' });
    const again = await t.client.enqueue({ task: 'other', payload: { v: 2 }, queue: 'elsewhere', idempotencyKey: 'later-dup' });
    expect(again).toEqual({ id: first.id, duplicate: true });
    expect(await t.client.getJob(first.id)).toMatchObject({ task: 'charge', payload: { v: 1 }, queue: 'default' });
  });

  it.each([
    ['a plain job', [] as number[]],
    ['a job with dependsOn', null],
  ])('at REPEATABLE READ, %s whose key a transaction took after the snapshot fails with 40001; the retried transaction gets the job', async (_what, given) => {
    const dependsOn = given ?? [(await t.client.enqueue({ task: 'snapshot_parent', queue: 'idle' })).id];
    const key = `snapshot-${dependsOn.length}-${Date.now()}`;
    const attempt = async (beforeEnqueue: () => Promise<unknown>) => {
      const client = await t.pool.connect();
      try {
        await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
        await client.query('SELECT 1'); // the snapshot is taken here
        await beforeEnqueue();
        const result = await t.client.enqueue({ task: 'snapshot', idempotencyKey: key, dependsOn }, { client });
        await client.query('COMMIT');
        return result;
      } catch (error) {
        await client.query('ROLLBACK');
        throw error;
      } finally {
        client.release();
      }
    };
    let existing!: EnqueueResult;
    // The existing job is invisible to the snapshot, so the enqueue can neither return it nor insert another.
    await expect(attempt(async () => (existing = await t.client.enqueue({ task: 'snapshot', idempotencyKey: key, dependsOn })))).rejects.toMatchObject({
      code: '40001',
    });
    expect(await attempt(async () => {})).toEqual({ id: existing.id, duplicate: true });
    expect(await countJobs('idempotency_key = $1', [key])).toBe(1);
  });

  it('duplicates within one enqueueMany batch get the first occurrence id', async () => {
    const existing = await t.client.enqueue({ task: 'dup', idempotencyKey: 'batch-existing' });
    const results = await t.client.enqueueMany([
      { task: 'dup', payload: 'a1', idempotencyKey: 'batch-a' },
      { task: 'dup', payload: 'none' },
      { task: 'dup', payload: 'a2', idempotencyKey: 'batch-a' },
      { task: 'dup', payload: 'b', idempotencyKey: 'batch-b' },
      { task: 'dup', payload: 'old', idempotencyKey: 'batch-existing' },
      { task: 'dup', payload: 'a3', idempotencyKey: 'batch-a' },
    ]);
    expect(results[0].duplicate).toBe(false);
    expect(results[1].duplicate).toBe(false);
    expect(results[2]).toEqual({ id: results[0].id, duplicate: true });
    expect(results[3].duplicate).toBe(false);
    expect(results[4]).toEqual({ id: existing.id, duplicate: true });
    expect(results[5]).toEqual({ id: results[0].id, duplicate: true });
    expect((await t.client.getJob(results[0].id)).payload).toBe('a1');
    expect(await countJobs(`idempotency_key = 'batch-a'`)).toBe(1);
    expect(await countJobs(`task = 'dup'`)).toBe(4);
  });
});

describe("enqueue inside the caller's transaction", () => {
  it('rolled back: the job never exists', async () => {
    const connection = await t.pool.connect();
    let id: number;
    try {
      await connection.query('BEGIN');
      ({ id } = await t.client.enqueue({ task: 'in_tx', payload: 'rollback' }, { client: connection }));
      const many = await t.client.enqueueMany([{ task: 'in_tx' }, { task: 'in_tx' }], { client: connection });
      expect(many).toHaveLength(2);
      // invisible to everyone else before the commit
      expect(await countJobs(`task = 'in_tx'`)).toBe(0);
      await connection.query('ROLLBACK');
    } finally {
      connection.release();
    }
    expect(await countJobs(`task = 'in_tx'`)).toBe(0);
    await expect(t.client.getJob(id!)).rejects.toBeInstanceOf(JobNotFoundError);
  });

  it('committed: the job exists and is pending', async () => {
    const connection = await t.pool.connect();
    let id: number;
    try {
      await connection.query('BEGIN');
      ({ id } = await t.client.enqueue({ task: 'in_tx_commit', payload: 'commit' }, { client: connection }));
      expect(await countJobs(`task = 'in_tx_commit'`)).toBe(0);
      await connection.query('COMMIT');
    } finally {
      connection.release();
    }
    expect(await t.client.getJob(id!)).toMatchObject({ task: 'in_tx_commit', payload: 'commit', state: 'pending' });
  });
});

describe('invalid input', () => {
  const circular: Record<string, unknown> = { a: 1 };
  circular.self = circular;

  const cases: { name: string; spec: unknown; field: string; mentions: RegExp }[] = [
    { name: 'unknown priority', spec: { task: 'v', priority: 'urgent' }, field: 'priority', mentions: /priority/ },
    { name: 'priority as a number', spec: { task: 'v', priority: 3 }, field: 'priority', mentions: /priority/ },
    { name: 'negative delay', spec: { task: 'v', delay: -5 }, field: 'delay', mentions: /delay/ },
    { name: 'delay "soon"', spec: { task: 'v', delay: 'soon' }, field: 'delay', mentions: /delay.*soon/ },
    { name: 'delay NaN', spec: { task: 'v', delay: Number.NaN }, field: 'delay', mentions: /delay must be a duration such as 500ms/ },
    { name: 'delay as an object', spec: { task: 'v', delay: { ms: 5 } }, field: 'delay', mentions: /delay must be a duration such as 500ms/ },
    { name: 'runAt and delay', spec: { task: 'v', delay: 1000, runAt: new Date() }, field: 'runAt', mentions: /runAt.*delay/ },
    { name: 'runAt without a time zone', spec: { task: 'v', runAt: '2030-01-01T00:00:00' }, field: 'runAt', mentions: /runAt/ },
    { name: 'runAt an invalid Date', spec: { task: 'v', runAt: new Date('not a date') }, field: 'runAt', mentions: /runAt/ },
    { name: 'unknown field', spec: { task: 'v', retries: 3 }, field: 'job', mentions: /unknown field "retries"/ },
    { name: 'unknown backoff field', spec: { task: 'v', backoff: { delay: 1 } }, field: 'backoff', mentions: /"delay"/ },
    { name: 'BigInt payload', spec: { task: 'v', payload: { amount: 10n } }, field: 'payload', mentions: /payload.*JSON/ },
    { name: 'circular payload', spec: { task: 'v', payload: circular }, field: 'payload', mentions: /payload.*JSON/ },
    { name: 'function payload', spec: { task: 'v', payload: () => 1 }, field: 'payload', mentions: /payload/ },
    { name: 'maxAttempts 0', spec: { task: 'v', maxAttempts: 0 }, field: 'maxAttempts', mentions: /maxAttempts/ },
    { name: 'maxAttempts 2.5', spec: { task: 'v', maxAttempts: 2.5 }, field: 'maxAttempts', mentions: /maxAttempts/ },
    { name: 'empty task', spec: { task: '' }, field: 'task', mentions: /task/ },
    { name: 'missing task', spec: { payload: 1 }, field: 'task', mentions: /task/ },
    { name: 'task too long', spec: { task: 'x'.repeat(129) }, field: 'task', mentions: /task/ },
    { name: 'empty queue', spec: { task: 'v', queue: '' }, field: 'queue', mentions: /queue/ },
    { name: 'timeout 0', spec: { task: 'v', timeout: 0 }, field: 'timeout', mentions: /timeout/ },
    { name: 'backoff jitter 2', spec: { task: 'v', backoff: { jitter: 2 } }, field: 'backoff.jitter', mentions: /backoff\.jitter/ },
    { name: 'not an object', spec: null, field: 'job', mentions: /job/ },
    // Strings PostgreSQL would refuse (NUL) or store changed (an unpaired surrogate becomes U+FFFD)
    { name: 'NUL in the task', spec: { task: 'a\u0000b' }, field: 'task', mentions: /task must not contain the NUL/ },
    { name: 'NUL in the queue', spec: { task: 'v', queue: 'q\u0000' }, field: 'queue', mentions: /queue must not contain the NUL/ },
    { name: 'unpaired surrogate in the task', spec: { task: 'a\ud800' }, field: 'task', mentions: /task must be well-formed Unicode/ },
    { name: 'unpaired surrogate in the key', spec: { task: 'v', idempotencyKey: 'order-1\ud800' }, field: 'idempotencyKey', mentions: /idempotencyKey must be well-formed/ },
    { name: 'unpaired surrogate in the payload', spec: { task: 'v', payload: { note: 'x\udc00y' } }, field: 'payload', mentions: /unpaired UTF-16 surrogate/ },
    { name: 'runAt in the year 10000', spec: { task: 'v', runAt: new Date('+010000-01-01T00:00:00Z') }, field: 'runAt', mentions: /between the years 1 and 9999/ },
    { name: 'runAt before the year 1', spec: { task: 'v', runAt: new Date('-000001-01-01T00:00:00Z') }, field: 'runAt', mentions: /between the years 1 and 9999/ },
    { name: 'a runAt timestamp in year 0 by UTC', spec: { task: 'v', runAt: '0001-01-01T00:30:00+01:00' }, field: 'runAt', mentions: /between the years 1 and 9999/ },
    { name: 'a runAt timestamp in year 10000 by UTC', spec: { task: 'v', runAt: '9999-12-31T23:59:59-05:00' }, field: 'runAt', mentions: /between the years 1 and 9999/ },
    { name: 'delay over 100 years', spec: { task: 'v', delay: Number.MAX_SAFE_INTEGER }, field: 'delay', mentions: /delay must be at most/ },
    { name: 'unknown backoff field lists the backoff fields', spec: { task: 'v', backoff: { retries: 1 } }, field: 'backoff', mentions: /expected strategy, base, factor, maxInterval, jitter$/ },
  ];

  it.each(cases)('$name -> ValidationError naming $field, nothing written', async ({ spec, field, mentions }) => {
    const before = await countJobs();
    const error = await rejection(t.client.enqueue(spec as JobSpec));
    expect(error).toBeInstanceOf(ValidationError);
    expect(error).toMatchObject({ code: 'VALIDATION_FAILED', field });
    expect((error as Error).message).toMatch(mentions);
    expect(await countJobs()).toBe(before);
  });

  it('a payload over maxPayloadBytes -> ValidationError with the size and the limit; at the limit is fine', async () => {
    const small = createClient({ pool: t.pool, schema: t.schema, maxPayloadBytes: 100 });
    const before = await countJobs();
    const error = await rejection(small.enqueue({ task: 'big', payload: 'x'.repeat(200) }));
    expect(error).toBeInstanceOf(ValidationError);
    expect(error).toMatchObject({ code: 'VALIDATION_FAILED', field: 'payload' });
    expect((error as Error).message).toMatch(/payload is 202 bytes; the limit is 100 bytes/);
    expect(await countJobs()).toBe(before);
    // JSON text of a 98-character string is exactly 100 bytes
    await expect(small.enqueue({ task: 'big', payload: 'x'.repeat(98) })).resolves.toMatchObject({ duplicate: false });
    // the limit counts bytes, not characters
    await expect(small.enqueue({ task: 'big', payload: 'é'.repeat(60) })).rejects.toMatchObject({ field: 'payload' });
  });

  it('a payload with a NUL character (valid JSON, not storable in jsonb) -> ValidationError naming payload', async () => {
    const before = await countJobs();
    const error = await rejection(t.client.enqueue({ task: 'nul', payload: { text: 'a\u0000b' } }));
    expect(error).toBeInstanceOf(ValidationError);
    expect(error).toMatchObject({ code: 'VALIDATION_FAILED', field: 'payload' });
    expect(await countJobs()).toBe(before);
  });

  // Numbers the schema accepts must fit the columns they go to; otherwise the caller gets a raw database error.
  it.each([
    ['timeout of 30 days (beyond the integer column)', { task: 'v', timeout: '30d' }, 'timeout'],
    ['backoff.maxInterval of 30 days', { task: 'v', backoff: { maxInterval: '30d' } }, 'backoff.maxInterval'],
    ['fractional delay in ms', { task: 'v', delay: 1.5 }, 'delay'],
    ['fractional timeout in ms', { task: 'v', timeout: 1000.5 }, 'timeout'],
  ] as const)('%s: stored as given or rejected with a ValidationError, never a database error', async (_name, spec, field) => {
    const before = await countJobs();
    const outcome = await t.client.enqueue(spec as JobSpec).then(
      (result) => result,
      (error) => error,
    );
    if (outcome instanceof Error) {
      expect(outcome, `${outcome.name}: ${outcome.message}`).toBeInstanceOf(ValidationError);
      expect(outcome).toMatchObject({ field });
      expect(await countJobs()).toBe(before);
    } else {
      expect(await countJobs()).toBe(before + 1);
    }
  });

  it('one invalid job in a batch writes none of the batch and says which one', async () => {
    const before = await countJobs();
    const error = await rejection(
      t.client.enqueueMany([{ task: 'ok_1' }, { task: 'ok_2' }, { task: 'bad', priority: 'nope' as never }, { task: 'ok_3' }]),
    );
    expect(error).toBeInstanceOf(ValidationError);
    expect(error).toMatchObject({ code: 'VALIDATION_FAILED', field: '2.priority' });
    expect((error as Error).message).toMatch(/^job 2: invalid priority/);
    expect(await countJobs()).toBe(before);
  });

  it("a ValidationError's field is the path in the input, with or without dependencies, in a workflow too", async () => {
    const { id } = await t.client.enqueue({ task: 'dependency' });
    const before = await countJobs();
    const field = (call: Promise<unknown>) => rejection(call).then((error) => (error as ValidationError).field);
    const bad = { task: 'bad', priority: 'nope' as never };
    expect(await field(t.client.enqueue(bad))).toBe('priority');
    expect(await field(t.client.enqueue({ ...bad, dependsOn: [id] }))).toBe('priority');
    expect(await field(t.client.enqueueMany([{ task: 'ok' }, bad]))).toBe('1.priority');
    expect(await field(t.client.enqueueMany([{ task: 'ok' }, { ...bad, dependsOn: [id] }]))).toBe('1.priority');
    expect(await field(t.client.enqueueMany([{ task: 'ok', dependsOn: [id] }, { task: 'big', payload: 'x'.repeat(2 << 20) }]))).toBe('1.payload');
    expect(await field(t.client.enqueueMany([{ task: 'ok' }, { task: 'big', payload: 'x'.repeat(2 << 20) }]))).toBe('1.payload');
    expect(await field(t.client.enqueueWorkflow({ nodes: { a: { task: 'a', idempotencyKey: 'k' } } }))).toBe('nodes.a.idempotencyKey');
    expect(await field(t.client.enqueueMany([{ task: 'ok' }, { task: 'ids', dependsOn: [-1] }]))).toBe('1.dependsOn');
    expect(await field(t.client.enqueueWorkflow({ nodes: { a: { task: 'a' }, b: { ...bad, dependsOn: ['a'] } } }))).toBe('nodes.b.priority');
    expect(await countJobs()).toBe(before);
  });

  it('a paired surrogate (an emoji) is fine in names, keys and payloads', async () => {
    const { id } = await t.client.enqueue({ task: 'emoji_😀', queue: 'q😀', idempotencyKey: 'key-😀', payload: { face: '😀' } });
    expect(await t.client.getJob(id)).toMatchObject({ task: 'emoji_😀', queue: 'q😀', idempotencyKey: 'key-😀', payload: { face: '😀' } });
  });

  it('a batch too large for one statement -> ValidationError before anything is written', async () => {
    const before = await countJobs();
    // 210 payloads of 1 MB (each within the limit): 210 MB of JSON, over the 200 MiB a batch may carry.
    const payload = 'x'.repeat(1_000_000);
    const error = await rejection(t.client.enqueueMany(Array.from({ length: 210 }, () => ({ task: 'huge', payload }))));
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as Error).message).toMatch(/batch of 210 jobs is \d+ MiB as JSON; a batch may be at most 200 MiB/);
    expect(await countJobs()).toBe(before);
  });

  it('a hole in a sparse batch is a missing job spec, named by its position', async () => {
    // eslint-disable-next-line no-sparse-arrays
    const error = await rejection(t.client.enqueueMany([{ task: 'a' }, , { task: 'b' }] as JobSpec[]));
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as Error).message).toMatch(/^job 1: /);
  });

  it('maxPayloadBytes that is not a positive whole number -> ConfigError at createClient', () => {
    for (const bad of [Number.NaN, Number.POSITIVE_INFINITY, 0, -1, 1.5]) {
      expect(() => createClient({ pool: t.pool, schema: t.schema, maxPayloadBytes: bad })).toThrow(ConfigError);
    }
  });

  it('a batch that is not an array -> ValidationError', async () => {
    await expect(t.client.enqueueMany({ task: 'x' } as never)).rejects.toMatchObject({ code: 'VALIDATION_FAILED' });
  });

  it('a client for an invalid schema name is refused before any query', () => {
    expect(() => createClient({ pool: t.pool, schema: 'Bad-Name' })).toThrow(/WIDA_SCHEMA "Bad-Name" is not a valid schema name/);
  });

  it('close() leaves a pool it was given open', async () => {
    const borrowed: WidaClient = createClient({ pool: t.pool, schema: t.schema });
    await borrowed.close();
    await expect(t.pool.query('SELECT 1')).resolves.toBeDefined();
  });
});
