import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createAgent, type Agent } from '../src/agent/agent.js';
import { createClient, type WidaClient } from '../src/shared/client.js';
import { silentLogger } from '../src/shared/logger.js';
import { stopWithin } from './support/agents.js';
import { useTestSchema, waitFor } from './support/database.js';
import { configErrorFrom } from './support/errors.js';

const t = useTestSchema('env');
const KEYS = [
  'WIDA_DATABASE_URL',
  'WIDA_SCHEMA',
  'WIDA_JOB_TIMEOUT',
  'WIDA_POLL_INTERVAL',
  'WIDA_LEASE',
  'WIDA_HEARTBEAT_INTERVAL',
  'WIDA_WORKER_CONCURRENCY',
  'WIDA_MAX_PAYLOAD_BYTES',
] as const;
const saved = Object.fromEntries(KEYS.map((key) => [key, process.env[key]]));
const opened: { agent?: Agent; client?: WidaClient } = {};

afterEach(async () => {
  for (const key of KEYS) {
    if (saved[key] === undefined) delete process.env[key];
    else process.env[key] = saved[key];
  }
  if (opened.agent) expect(await stopWithin(opened.agent, 10_000)).toBe(true);
  await opened.client?.close();
  opened.agent = opened.client = undefined;
});

describe('createAgent and createClient configured by the environment', () => {
  it('an agent and a client given no options meet in the schema WIDA_SCHEMA names, and the agent takes its settings from the environment', async () => {
    Object.assign(process.env, {
      WIDA_DATABASE_URL: t.url,
      WIDA_SCHEMA: t.schema,
      WIDA_JOB_TIMEOUT: '300ms',
      WIDA_POLL_INTERVAL: '50ms',
      WIDA_HEARTBEAT_INTERVAL: '700ms',
      WIDA_WORKER_CONCURRENCY: '3',
    });
    const ran: number[] = [];
    opened.agent = createAgent({
      logger: silentLogger,
      handlers: {
        quick: async (_payload, { job }) => void ran.push(job.id),
        forever: () => new Promise(() => {}),
      },
    });
    await opened.agent.start();
    opened.client = createClient();
    const quick = await opened.client.enqueue({ task: 'quick' });
    const stuck = await opened.client.enqueue({ task: 'forever', maxAttempts: 1 });

    await waitFor('the quick job to run', () => ran.includes(quick.id));
    const dead = await waitFor('the stuck job to time out', async () => {
      const job = await t.client.getJob(stuck.id);
      return job.state === 'dead' ? job : undefined;
    });
    expect(dead.lastError).toContain('timed out after 300 ms');
    const [row] = (await t.client.listAgents()).filter((agent) => agent.id === opened.agent!.id);
    expect(row).toMatchObject({ concurrency: 3, heartbeatIntervalMs: 700 });
  });

  it('options still win over the environment', async () => {
    Object.assign(process.env, { WIDA_DATABASE_URL: 'postgres://nobody@127.0.0.1:1/none', WIDA_SCHEMA: 'elsewhere', WIDA_POLL_INTERVAL: '50ms' });
    const ran: number[] = [];
    opened.agent = createAgent({
      databaseUrl: t.url,
      schema: t.schema,
      logger: silentLogger,
      handlers: { quick: async (_payload, { job }) => void ran.push(job.id) },
    });
    await opened.agent.start();
    const { id } = await t.client.enqueue({ task: 'quick' });
    await waitFor('the job to run', () => ran.includes(id));
  });

  it('with no database anywhere, createAgent says how to name one', () => {
    delete process.env.WIDA_DATABASE_URL;
    const error = configErrorFrom(() => createAgent({ handlers: {} }));
    expect(error.message).toBe('no database configured: pass databaseUrl to createAgent, or set WIDA_DATABASE_URL');
  });

  it('the poll interval in effect must not pass the lease in effect, whichever of option or variable gave each', () => {
    Object.assign(process.env, { WIDA_DATABASE_URL: t.url, WIDA_POLL_INTERVAL: '45s' });
    expect(() => createAgent({ handlers: {}, leaseMs: 60_000, logger: silentLogger })).not.toThrow();
    expect(configErrorFrom(() => createAgent({ handlers: {} })).message).toBe('WIDA_POLL_INTERVAL (45000 ms) must not be longer than WIDA_LEASE (30000 ms)');
    Object.assign(process.env, { WIDA_POLL_INTERVAL: '1s', WIDA_LEASE: '5s' });
    expect(configErrorFrom(() => createAgent({ handlers: {}, pollIntervalMs: 6_000 })).message).toBe('pollIntervalMs (6000 ms) must not be longer than WIDA_LEASE (5000 ms)');
    expect(configErrorFrom(() => createAgent({ handlers: {}, leaseMs: 500 })).message).toBe('WIDA_POLL_INTERVAL (1000 ms) must not be longer than leaseMs (500 ms)');
    // Not set anywhere, the poll interval is 1 s or the lease if that is shorter.
    delete process.env.WIDA_POLL_INTERVAL;
    expect(() => createAgent({ handlers: {}, leaseMs: 500, logger: silentLogger })).not.toThrow();
  });

  it('createClient takes WIDA_MAX_PAYLOAD_BYTES unless given maxPayloadBytes, also when given a pool and a schema', async () => {
    process.env.WIDA_MAX_PAYLOAD_BYTES = '100';
    const limited = createClient({ pool: t.pool, schema: t.schema });
    await expect(limited.enqueue({ task: 'big', payload: 'x'.repeat(200) })).rejects.toThrow(/payload is 202 bytes; the limit is 100 bytes/);
    const roomy = createClient({ pool: t.pool, schema: t.schema, maxPayloadBytes: 1_000 });
    expect((await roomy.enqueue({ task: 'big', payload: 'x'.repeat(200) })).duplicate).toBe(false);
  });

  it("an agent's cron schedules take WIDA_MAX_PAYLOAD_BYTES unless given maxPayloadBytes, from cronSchedules and from a cron file", async () => {
    process.env.WIDA_MAX_PAYLOAD_BYTES = '100';
    const big = { name: 'big', expression: '0 0 1 1 *', task: 'yearly', payload: 'x'.repeat(200) };
    const options = { databaseUrl: t.url, schema: t.schema, handlers: {}, logger: silentLogger };
    expect(() => createAgent({ ...options, cronSchedules: [big] })).toThrow(/cron schedule 0: payload is 202 bytes; the limit is 100 bytes/);
    expect(() => createAgent({ ...options, cronSchedules: [big], maxPayloadBytes: 1_000 })).not.toThrow();

    const dir = mkdtempSync(join(tmpdir(), 'wida-env-cron-'));
    try {
      const file = join(dir, 'cron.json');
      writeFileSync(file, JSON.stringify([big]));
      opened.agent = createAgent({ ...options, cronFile: file });
      await expect(opened.agent.start()).rejects.toThrow(/payload is 202 bytes; the limit is 100 bytes/);
      expect(await t.client.listCronSchedules()).toEqual([]);
      opened.agent = undefined;
      process.env.WIDA_MAX_PAYLOAD_BYTES = '1000';
      opened.agent = createAgent({ ...options, cronFile: file, maintenance: false });
      await opened.agent.start();
      expect((await t.client.listCronSchedules()).map((schedule) => schedule.name)).toEqual(['big']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a bad variable whose option is given, or that the caller does not use, is not read', () => {
    Object.assign(process.env, { WIDA_DATABASE_URL: t.url, WIDA_LEASE: '500ms', WIDA_WORKER_CONCURRENCY: 'abc', WIDA_MAX_PAYLOAD_BYTES: 'lots' });
    expect(() => createClient({ pool: t.pool, schema: t.schema, maxPayloadBytes: 1_000 })).not.toThrow();
    expect(() => createAgent({ handlers: {}, leaseMs: 5_000, concurrency: 2, logger: silentLogger })).not.toThrow();
    expect(configErrorFrom(() => createAgent({ handlers: {}, concurrency: 2 })).message).toMatch(/WIDA_LEASE must be at least 1000 ms/);
    expect(configErrorFrom(() => createClient({ pool: t.pool, schema: t.schema })).message).toMatch(/WIDA_MAX_PAYLOAD_BYTES must be a whole number/);
  });

  it('a bad environment value is named before anything connects', () => {
    Object.assign(process.env, { WIDA_DATABASE_URL: t.url, WIDA_JOB_TIMEOUT: 'soon' });
    expect(configErrorFrom(() => createAgent({ handlers: {} })).message).toContain('WIDA_JOB_TIMEOUT');
  });
});
