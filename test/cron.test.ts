/**
 * Cron schedules on a real database: the operations in src/shared/cron-admin.ts, the enqueuer with time
 * moved by the test (nothing waits for a slot), the unique (schedule, slot) index under two enqueuers that
 * both believe they lead, the leader fence, catch-up policies, and schedules applied by an agent at start.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createAgent, type Agent } from '../src/agent/agent.js';
import { CronEnqueuer } from '../src/agent/scheduler/cron-enqueuer.js';
import {
  addCronSchedule,
  applyCronSchedules,
  getCronSchedule,
  listCronSchedules,
  pauseCronSchedule,
  removeCronSchedule,
  resumeCronSchedule,
  triggerCronSchedule,
  updateCronSchedule,
} from '../src/shared/cron-admin.js';
import { cronScheduleEnqueueSlots, cronScheduleGet, cronScheduleUpsert, type CronScheduleWrite } from '../src/shared/db/queries/cron-schedules.js';
import { CronScheduleNotFoundError, ValidationError } from '../src/shared/errors.js';
import { silentLogger } from '../src/shared/logger.js';
import { useTestSchema, waitFor } from './support/database.js';

const t = useTestSchema('cron');

beforeEach(async () => {
  await t.pool.query(`TRUNCATE "${t.schema}".jobs, "${t.schema}".cron_schedules, "${t.schema}".leader`);
});

async function cronJobs(name: string): Promise<{ id: number; slot: string | null; runAt: string; task: string; queue: string; payload: unknown }[]> {
  const { rows } = await t.pool.query(
    `SELECT id::int, cron_slot, run_at, task, queue, payload FROM "${t.schema}".jobs WHERE cron_schedule = $1 ORDER BY cron_slot, id`,
    [name],
  );
  return rows.map((row) => ({ id: row.id, slot: row.cron_slot?.toISOString() ?? null, runAt: row.run_at.toISOString(), task: row.task, queue: row.queue, payload: row.payload }));
}

const base = (overrides: Partial<CronScheduleWrite> = {}): CronScheduleWrite => ({
  name: 'every-minute',
  expression: '* * * * *',
  timezone: 'UTC',
  task: 'report',
  queue: 'default',
  payload: { kind: 'minutely' },
  priority: 1,
  maxAttempts: null,
  timeoutMs: null,
  catchUp: 'skip',
  backfillLimit: null,
  ...overrides,
});

/** An enqueuer whose clock the test sets; no fence (as if it leads), unless given one. */
function enqueuerAt(clock: { now: Date }, graceMs = 60_000) {
  return new CronEnqueuer({ pool: t.pool, db: t.db, fence: null, logger: silentLogger, graceMs, now: async () => clock.now });
}

describe('managing schedules', () => {
  it('add creates, a second add with the same name updates; get and list show the next runs', async () => {
    const first = await addCronSchedule(t.db, { name: 'nightly', expression: '30 2 * * *', timezone: 'America/New_York', task: 'cleanup', payload: { deep: true } });
    expect(first.created).toBe(true);
    expect(first.schedule).toMatchObject({ name: 'nightly', timezone: 'America/New_York', queue: 'default', priority: 'normal', enabled: true, catchUp: 'skip' });
    expect(first.schedule.nextRuns).toHaveLength(5);
    const again = await addCronSchedule(t.db, { name: 'nightly', expression: '45 3 * * *', timezone: 'Europe/London', task: 'cleanup', priority: 'high' });
    expect(again.created).toBe(false);
    const got = await getCronSchedule(t.db, 'nightly', { nextRuns: 2 });
    expect(got).toMatchObject({ expression: '45 3 * * *', timezone: 'Europe/London', priority: 'high', payload: null });
    expect(got.nextRuns).toHaveLength(2);
    for (const run of got.nextRuns) {
      expect(new Intl.DateTimeFormat('en-GB', { timeZone: 'Europe/London', hour: '2-digit', minute: '2-digit' }).format(run)).toBe('03:45');
    }
    expect((await listCronSchedules(t.db)).map((s) => s.name)).toEqual(['nightly']);
    // The client API has the same operations.
    expect((await t.client.listCronSchedules({ nextRuns: 1 }))[0]).toMatchObject({ name: 'nightly', nextRuns: [got.nextRuns[0]] });
  });

  it('update changes some fields; pause and resume; trigger runs now; remove deletes; unknown names say so', async () => {
    await addCronSchedule(t.db, { name: 'hourly', expression: '0 * * * *', task: 'sync', catchUp: 'backfill', backfillLimit: 5 });
    const updated = await updateCronSchedule(t.db, 'hourly', { queue: 'sync', payload: [1, 2] });
    expect(updated).toMatchObject({ expression: '0 * * * *', queue: 'sync', payload: [1, 2], catchUp: 'backfill', backfillLimit: 5 });
    expect(await updateCronSchedule(t.db, 'hourly', { catchUp: 'once' })).toMatchObject({ catchUp: 'once', backfillLimit: null });
    // A change given as undefined keeps the stored value (an optional field left empty is not "back to the default").
    await updateCronSchedule(t.db, 'hourly', { timezone: 'America/New_York' });
    expect(await updateCronSchedule(t.db, 'hourly', { priority: 'critical', queue: undefined, timezone: undefined })).toMatchObject({
      queue: 'sync',
      timezone: 'America/New_York',
      priority: 'critical',
    });

    await pauseCronSchedule(t.db, 'hourly');
    expect(await getCronSchedule(t.db, 'hourly')).toMatchObject({ enabled: false, nextRuns: [] });
    await resumeCronSchedule(t.db, 'hourly');
    expect(await getCronSchedule(t.db, 'hourly')).toMatchObject({ enabled: true });

    const { jobId } = await triggerCronSchedule(t.db, 'hourly');
    expect(await t.client.getJob(jobId)).toMatchObject({ task: 'sync', queue: 'sync', state: 'pending', payload: [1, 2] });
    expect(await cronJobs('hourly')).toEqual([expect.objectContaining({ id: jobId, slot: null })]);

    await removeCronSchedule(t.db, 'hourly');
    expect(await listCronSchedules(t.db)).toEqual([]);
    for (const action of [removeCronSchedule, pauseCronSchedule, resumeCronSchedule, triggerCronSchedule, getCronSchedule]) {
      await expect(action(t.db, 'hourly')).rejects.toThrow(CronScheduleNotFoundError);
    }
    await expect(updateCronSchedule(t.db, 'hourly', { task: 'x' })).rejects.toThrow(/cron schedule "hourly" does not exist/);
  });

  it.each([
    [{ name: 'a', expression: '* * *', task: 'x' }, 'expression', /has 3 fields/],
    [{ name: 'a', expression: '* * * * *', task: 'x', timezone: 'Nowhere/City' }, 'timezone', /IANA/],
    [{ name: 'a', expression: '* * * * *', task: 'x', catchUp: 'always' }, 'catchUp', /skip, once or backfill/],
    [{ name: 'a', expression: '* * * * *', task: 'x', backfillLimit: 3 }, 'backfillLimit', /only with catchUp "backfill"/],
    [{ name: 'a', expression: '* * * * *', task: 'x', command: 'rm -rf' }, 'schedule', /unknown field "command"/],
    [{ name: '', expression: '* * * * *', task: 'x' }, 'name', /must not be empty/],
  ])('rejects %j (%s) and writes nothing', async (spec, field, message) => {
    const error = await addCronSchedule(t.db, spec as never).catch((e) => e);
    expect(error).toBeInstanceOf(ValidationError);
    expect(error).toMatchObject({ field });
    expect(error.message).toMatch(message);
    expect(await listCronSchedules(t.db)).toEqual([]);
  });

  it.each([
    // raw PostgreSQL errors, or a name stored changed, before
    ['NUL in the name', { name: 'a\u0000b' }, 'name', /must not contain the NUL/],
    ['an unpaired surrogate in the name', { name: 'lone\ud800' }, 'name', /well-formed Unicode/],
    ['NUL in the queue', { queue: 'q\u0000' }, 'queue', /must not contain the NUL/],
    ['an unpaired surrogate in the payload', { payload: { a: 'x\ud800' } }, 'payload', /unpaired UTF-16 surrogate/],
    ['a BigInt in the payload', { payload: { n: 1n } }, 'payload', /not serialisable to JSON/],
    // every slot copies it into a job, which would be refused
    ['a payload over the limit', { payload: 'x'.repeat(1_100_000) }, 'payload', /payload is 1100002 bytes; the limit is 1048576 bytes/],
  ])('rejects %s and writes nothing', async (_what, fields, field, message) => {
    const error = await addCronSchedule(t.db, { name: 'a', expression: '* * * * *', task: 'x', ...fields } as never).catch((e) => e);
    expect(error).toBeInstanceOf(ValidationError);
    expect(error).toMatchObject({ field });
    expect(error.message).toMatch(message);
    expect(await listCronSchedules(t.db)).toEqual([]);
  });

  it('applyCronSchedules validates every spec before writing any, and keeps a pause unless the spec sets enabled', async () => {
    await expect(
      applyCronSchedules(t.db, [
        { name: 'ok', expression: '* * * * *', task: 'x' },
        { name: 'bad', expression: 'nope', task: 'x' },
      ]),
    ).rejects.toThrow(/cron schedule 1 \(bad\)/);
    expect(await listCronSchedules(t.db)).toEqual([]);
    expect(await applyCronSchedules(t.db, [{ name: 'ok', expression: '* * * * *', task: 'x' }])).toEqual({ created: ['ok'], updated: [] });
    await pauseCronSchedule(t.db, 'ok');
    expect(await applyCronSchedules(t.db, [{ name: 'ok', expression: '*/2 * * * *', task: 'x' }])).toEqual({ created: [], updated: ['ok'] });
    expect(await getCronSchedule(t.db, 'ok')).toMatchObject({ enabled: false, expression: '*/2 * * * *' });
    await applyCronSchedules(t.db, [{ name: 'ok', expression: '*/2 * * * *', task: 'x', enabled: true }]);
    expect(await getCronSchedule(t.db, 'ok')).toMatchObject({ enabled: true });
  });
});

describe('the cron enqueuer (time set by the test)', () => {
  const t0 = new Date('2030-01-01T00:00:00Z');
  const minutes = (n: number) => new Date(t0.getTime() + n * 60_000);

  it('inserts one job per due slot, carrying the slot in cron_slot and run_at; a second look inserts nothing', async () => {
    await cronScheduleUpsert(t.db, base(), t0);
    const clock = { now: minutes(3.5) };
    const enqueuer = enqueuerAt(clock, 5 * 60_000);
    await enqueuer.tick();
    await enqueuer.tick();
    const jobs = await cronJobs('every-minute');
    expect(jobs.map((job) => job.slot)).toEqual([minutes(1), minutes(2), minutes(3)].map((d) => d.toISOString()));
    expect(jobs.every((job) => job.runAt === job.slot && job.task === 'report')).toBe(true);
    expect(jobs[0].payload).toEqual({ kind: 'minutely' });
    expect((await cronScheduleGet(t.db, 'every-minute'))!.lastSlot).toEqual(minutes(3));
    clock.now = minutes(4);
    await enqueuer.tick();
    expect((await cronJobs('every-minute')).map((job) => job.slot)).toHaveLength(4);
  });

  it.each([
    ['skip', {}, [10]],
    ['once', { catchUp: 'once' as const }, [9, 10]],
    ['backfill', { catchUp: 'backfill' as const, backfillLimit: 3 }, [7, 8, 9, 10]],
  ])('slots missed while no leader ran, policy %s', async (_policy, overrides, expected) => {
    await cronScheduleUpsert(t.db, base(overrides), t0);
    await enqueuerAt({ now: minutes(10.25) }, 30_000).tick();
    expect((await cronJobs('every-minute')).map((job) => job.slot)).toEqual(expected.map((n) => minutes(n).toISOString()));
  });

  it('a paused schedule enqueues nothing, and on resume does not catch up its paused time', async () => {
    await cronScheduleUpsert(t.db, base({ catchUp: 'backfill', backfillLimit: 100 }), t0);
    await t.pool.query(`UPDATE "${t.schema}".cron_schedules SET enabled = false`);
    await enqueuerAt({ now: minutes(5.5) }).tick();
    expect(await cronJobs('every-minute')).toEqual([]);
    await t.pool.query(`UPDATE "${t.schema}".cron_schedules SET enabled = true, starts_after = $1`, [minutes(5.5)]);
    await enqueuerAt({ now: minutes(6.5) }).tick();
    expect((await cronJobs('every-minute')).map((job) => job.slot)).toEqual([minutes(6).toISOString()]);
  });

  it('two enqueuers that both believe they lead, racing on the same slots, insert each slot once (unique index)', async () => {
    await cronScheduleUpsert(t.db, base({ name: 'secondly', expression: '* * * * * *', catchUp: 'backfill', backfillLimit: 1000 }), t0);
    const slots = Array.from({ length: 200 }, (_, i) => new Date(t0.getTime() + (i + 1) * 1000));
    // Each "leader" inserts overlapping windows, in different orders, at the same time.
    const windows = (offset: number) => Array.from({ length: 20 }, (_, i) => slots.slice(Math.max(0, i * 10 - offset), i * 10 + 15));
    const racers = [windows(0), windows(5).reverse()].map(async (batches) => {
      let inserted = 0;
      for (const batch of batches) {
        if (batch.length === 0) continue;
        const result = await cronScheduleEnqueueSlots(t.db, { name: 'secondly', slots: batch, newest: batch.at(-1)!, leader: null });
        inserted += result.inserted.length;
      }
      return inserted;
    });
    const counts = await Promise.all(racers);
    const jobs = await cronJobs('secondly');
    expect(jobs).toHaveLength(200);
    expect(new Set(jobs.map((job) => job.slot)).size).toBe(200);
    expect(counts[0] + counts[1]).toBe(200);
    // And directly: the index refuses a second row for a slot.
    await expect(
      t.pool.query(`INSERT INTO "${t.schema}".jobs (task, cron_schedule, cron_slot) VALUES ('report', 'secondly', $1)`, [slots[0]]),
    ).rejects.toMatchObject({ code: '23505' });
  });

  it('an enqueuer under a term that is not the leader row’s inserts nothing and does not advance the schedule', async () => {
    await cronScheduleUpsert(t.db, base(), t0);
    await t.pool.query(`INSERT INTO "${t.schema}".leader (agent_id, term) VALUES ('agent-new', 8)`);
    const stale = { leader: { agentId: 'agent-old', term: 7 }, isCurrent: () => true, idleLimitMs: 4_000 };
    const enqueuer = new CronEnqueuer({ pool: t.pool, db: t.db, fence: stale, logger: silentLogger, graceMs: 600_000, now: async () => minutes(3.5) });
    await enqueuer.tick();
    expect(await cronJobs('every-minute')).toEqual([]);
    expect((await cronScheduleGet(t.db, 'every-minute'))!.lastSlot).toBeNull();
    const current = { leader: { agentId: 'agent-new', term: 8 }, isCurrent: () => true, idleLimitMs: 4_000 };
    await new CronEnqueuer({ pool: t.pool, db: t.db, fence: current, logger: silentLogger, graceMs: 600_000, now: async () => minutes(3.5) }).tick();
    expect(await cronJobs('every-minute')).toHaveLength(3);
  });

  it("an enqueue that meets a schedule row an operator holds locked gives up after the leader's limit, and does not keep the leader row locked", async () => {
    await cronScheduleUpsert(t.db, base(), t0);
    await t.pool.query(`INSERT INTO "${t.schema}".leader (agent_id, term) VALUES ('agent-new', 8)`);
    const errors: string[] = [];
    const logger = { ...silentLogger, error: (_message: string, fields?: Record<string, unknown>) => errors.push(String(fields?.error)) };
    // The limit is also the duty transaction's idle limit: at 300 ms, a test process stalled that long between two of
    // its statements (a loaded machine) had the server end the transaction, and the last tick enqueued nothing.
    const fence = { leader: { agentId: 'agent-new', term: 8 }, isCurrent: () => true, idleLimitMs: 2_000 };
    const enqueuer = new CronEnqueuer({ pool: t.pool, db: t.db, fence, logger, graceMs: 600_000, now: async () => minutes(3.5) });
    const operator = await t.pool.connect();
    const elector = await t.pool.connect();
    try {
      await operator.query('BEGIN');
      await operator.query(`UPDATE "${t.schema}".cron_schedules SET updated_at = now() WHERE name = 'every-minute'`);
      // Before, the statement waited as long as the operator's transaction lasted (up to the pool's minute).
      await enqueuer.tick();
      expect(errors).toEqual([expect.stringMatching(/lock timeout/)]);
      // While the operator still holds the schedule, nothing of the enqueue holds the leader row: an election could run.
      await expect(elector.query(`SELECT 1 FROM "${t.schema}".leader FOR UPDATE NOWAIT`)).resolves.toMatchObject({ rowCount: 1 });
    } finally {
      await operator.query('ROLLBACK');
      operator.release();
      elector.release();
    }
    await enqueuer.tick();
    expect(await cronJobs('every-minute')).toHaveLength(3);
  });

  it('DST in the database: a daily 02:30 New York schedule fires once on spring-forward day, at 03:30 EDT', async () => {
    await cronScheduleUpsert(t.db, base({ name: 'ny', expression: '30 2 * * *', timezone: 'America/New_York' }), new Date('2018-03-10T12:00:00Z'));
    const enqueuer = enqueuerAt({ now: new Date('2018-03-11T07:30:00Z') });
    await enqueuer.tick();
    expect((await cronJobs('ny')).map((job) => job.slot)).toEqual(['2018-03-11T07:30:00.000Z']);
  });
});

describe('an agent applies schedules at start and, as leader, enqueues them', () => {
  let agent: Agent | undefined;
  let dir: string | undefined;
  afterEach(async () => {
    await agent?.stop();
    agent = undefined;
    if (dir) rmSync(dir, { recursive: true, force: true });
    dir = undefined;
  });

  it('from cronSchedules and a cron file; an every-second schedule fires within about a second', async () => {
    dir = mkdtempSync(join(tmpdir(), 'wida-cron-'));
    const file = join(dir, 'cron.json');
    writeFileSync(file, JSON.stringify({ schedules: [{ name: 'from-file', expression: '0 0 1 1 *', timezone: 'Asia/Tokyo', task: 'yearly' }] }));
    const ran: string[] = [];
    agent = createAgent({
      databaseUrl: t.url,
      schema: t.schema,
      logger: silentLogger,
      pollIntervalMs: 50,
      cronFile: file,
      cronSchedules: [{ name: 'secondly', expression: '* * * * * *', task: 'beat' }],
      handlers: { beat: (_payload, context) => void ran.push(String(context.job.id)), yearly: () => {} },
    });
    await agent.start();
    expect((await listCronSchedules(t.db)).map((s) => s.name)).toEqual(['from-file', 'secondly']);
    await waitFor('two beats to run', () => ran.length >= 2, 5_000);
    expect(agent.isLeader).toBe(true);
  });

  it('createAgent refuses a bad schedule at once', () => {
    expect(() =>
      createAgent({ databaseUrl: t.url, schema: t.schema, cronSchedules: [{ name: 'x', expression: '* * * * *', task: 't', timezone: 'Bad/Zone' }] }),
    ).toThrow(/cron schedule 0: .*IANA/);
  });
});
