/**
 * Shutdown when the database is gone or silent: stop() returns, and the agent stops whole (no heartbeat
 * left ticking, no timers keeping the process alive). The database sits behind a loopback proxy that can
 * reset every connection or stop passing bytes.
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { createAgent, type Agent, type AgentOptions } from '../src/agent/agent.js';
import { Completer } from '../src/agent/worker/completer.js';
import { createPool } from '../src/shared/db/pool.js';
import { SchemaDb } from '../src/shared/db/sql.js';
import type { Logger } from '../src/shared/logger.js';
import { stopWithin } from './support/agents.js';
import { useTestSchema, waitFor } from './support/database.js';
import { REPO_ROOT } from './fixtures/children.js';
import { DatabaseProxy } from './support/proxy.js';

const t = useTestSchema('shut');
const proxies: DatabaseProxy[] = [];

afterEach(async () => {
  await Promise.all(proxies.splice(0).map((proxy) => proxy.close()));
  await t.pool.query(`TRUNCATE "${t.schema}".jobs, "${t.schema}".agents, "${t.schema}".leader`);
});

function recordingLogger(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const record = (level: string) => (message: string) => void lines.push(`${level} ${message}`);
  return { lines, debug: () => {}, info: record('info'), warn: record('warn'), error: record('error') };
}

/** An agent through a proxy, running one job whose handler never settles. */
async function agentWithRunningJob(): Promise<{
  agent: Agent;
  proxy: DatabaseProxy;
  logger: ReturnType<typeof recordingLogger>;
  signals: AbortSignal[];
}> {
  const { proxy, url } = await DatabaseProxy.start(t.url);
  proxies.push(proxy);
  const logger = recordingLogger();
  const signals: AbortSignal[] = [];
  await t.client.enqueue({ task: 'stuck' });
  const agent = createAgent({
    databaseUrl: url,
    schema: t.schema,
    logger,
    pollIntervalMs: 50,
    heartbeatIntervalMs: 100,
    shutdownGraceMs: 200,
    handlers: {
      stuck: (_payload: unknown, context: { signal: AbortSignal }) => {
        signals.push(context.signal);
        return new Promise(() => {});
      },
    },
  });
  await agent.start();
  await waitFor('the job to run', () => agent.runningCount === 1);
  return { agent, proxy, logger, signals };
}

describe('stop() without a database', () => {
  it('with the server gone (connections reset, new ones refused): stop() resolves and nothing keeps ticking', async () => {
    const { agent, proxy, logger } = await agentWithRunningJob();
    proxy.cut();
    await expect(agent.stop()).resolves.toBeUndefined();
    const linesAtStop = logger.lines.length;
    await new Promise((resolve) => setTimeout(resolve, 600)); // six heartbeat intervals
    expect(logger.lines.slice(linesAtStop)).toEqual([]);
    expect(logger.lines).toContain('error could not release running jobs; their leases will expire');
  });

  it('with the server silent (connections open, no answer): stop() returns after the grace period and the step budget', async () => {
    const { agent, proxy, logger, signals } = await agentWithRunningJob();
    proxy.silence();
    const began = performance.now();
    await agent.stop();
    // The grace period ran from the stop, not from whenever the silent database answered: the handler was told.
    expect(signals[0].aborted).toBe(true);
    // 200 ms of grace plus the 5 s budget for the other steps (at least 250 ms each), with room for a slow machine.
    expect(performance.now() - began).toBeLessThan(9_000);
    expect(logger.lines.some((line) => line.startsWith('warn shutdown: gave up'))).toBe(true);
    const linesAtStop = logger.lines.length;
    await new Promise((resolve) => setTimeout(resolve, 600));
    expect(logger.lines.slice(linesAtStop)).toEqual([]);
    // No socket left open: one waiting for a goodbye or an answer would keep an embedding process alive up to the
    // query timeout (the lease, or a minute for upkeep).
    expect(proxy.openConnections).toBe(0);
  }, 15_000);
});

describe('stop() while start() migrates', () => {
  it('a migrator waiting for the migration lock, the server then silent, is stopped: stop() returns, start() says why, no socket left', async () => {
    const schema = `${t.schema}_m`;
    const holder = await t.pool.connect();
    try {
      await holder.query('SELECT pg_advisory_lock(hashtext($1))', [`wida_migrate:${schema}`]);
      const { proxy, url } = await DatabaseProxy.start(t.url);
      proxies.push(proxy);
      const agent = createAgent({ databaseUrl: url, schema, logger: recordingLogger(), handlers: { x: () => {} } });
      const started = agent.start().catch((error) => error);
      await waitFor('the migrator to wait for the lock', async () => {
        const { rowCount } = await t.pool.query(`SELECT 1 FROM pg_stat_activity WHERE application_name = 'wida migrate' AND wait_event = 'advisory'`);
        return rowCount === 1 || undefined;
      });
      proxy.silence();
      // Before, stop() waited for start(), and start() for a migrator with no timeout: for ever.
      expect(await stopWithin(agent, 8_000)).toBe(true);
      expect(await started).toMatchObject({ code: 'MIGRATION_FAILED', message: expect.stringMatching(/migrator was stopped before it finished/) });
      await waitFor('every socket to close', () => proxy.openConnections === 0, 5_000);
    } finally {
      await holder.query('SELECT pg_advisory_unlock_all()');
      holder.release();
    }
  }, 20_000);
});

describe('stop() with a healthy database', () => {
  /** An agent on the test database itself (no proxy), without the leader's duties. */
  function agentOnDatabase(shutdownGraceMs: number, handlers: AgentOptions['handlers']) {
    const logger = recordingLogger();
    const agent = createAgent({ databaseUrl: t.url, schema: t.schema, logger, maintenance: false, pollIntervalMs: 50, shutdownGraceMs, handlers });
    return { agent, logger };
  }

  it('a release of running jobs waiting for a row lock past the step budget is left to finish, not cut off: the job keeps its attempt', async () => {
    let running = false;
    const { agent } = agentOnDatabase(200, { stuck: () => ((running = true), new Promise(() => {})) });
    const { id } = await t.client.enqueue({ task: 'stuck', maxAttempts: 1 });
    await agent.start();
    await waitFor('the job to run', () => running);
    const locker = await t.pool.connect();
    try {
      await locker.query('BEGIN');
      await locker.query(`SELECT id FROM "${t.schema}".jobs WHERE id = $1 FOR UPDATE`, [id]); // a client attaching a dependent, say
      await agent.stop(); // gives up waiting for the release after its 5 s budget
      expect((await t.client.getJob(id)).state).toBe('running');
      // Longer than the server takes to notice a closed connection (client_connection_check_interval, 1 s) and end
      // its statement: the release must still be there when the lock goes.
      await new Promise((resolve) => setTimeout(resolve, 2_000));
    } finally {
      await locker.query('COMMIT');
      locker.release();
    }
    // Cut off, the release would be lost and the job, of one attempt, would go dead when its lease expired.
    await waitFor('the release stored once the lock went', async () => (await t.client.getJob(id)).state === 'pending');
    expect(await t.client.getJob(id)).toMatchObject({ state: 'pending', attempt: 0 });
  }, 20_000);

  it('a claim that lands after the grace period gives its jobs back before the connections close', async () => {
    const { agent, logger } = agentOnDatabase(100, { work: () => 'ok' });
    await agent.start();
    const locker = await t.pool.connect();
    let stopped: Promise<void>;
    let id: number;
    try {
      await locker.query('BEGIN');
      await locker.query(`LOCK TABLE "${t.schema}".queues IN ACCESS EXCLUSIVE MODE`); // the claim reads queues: it waits
      ({ id } = await t.client.enqueue({ task: 'work' }));
      await new Promise((resolve) => setTimeout(resolve, 150)); // a poll's claim is now waiting
      stopped = agent.stop();
      await new Promise((resolve) => setTimeout(resolve, 400)); // past the grace period
    } finally {
      await locker.query('COMMIT');
      locker.release();
    }
    await stopped;
    expect(await t.client.getJob(id)).toMatchObject({ state: 'pending', attempt: 0 });
    expect(logger.lines.filter((line) => !line.startsWith('info'))).toEqual([]);
  });
});

describe('the completer after shutdown gave up on it', () => {
  it('a write still in flight when it was closed fails quietly: no retry, no log after the agent stopped', async () => {
    const { proxy, url } = await DatabaseProxy.start(t.url);
    proxies.push(proxy);
    const pool = createPool(url, { max: 1, queryTimeoutMs: 300 });
    try {
      const logger = recordingLogger();
      const completer = new Completer(new SchemaDb(pool, t.schema), logger);
      await pool.query('SELECT 1'); // connected before the silence
      proxy.silence();
      completer.complete(1, 1, performance.now(), 'done');
      await completer.drain(50); // shutdown's budget ran out with the write in flight
      completer.close();
      await new Promise((resolve) => setTimeout(resolve, 800)); // past the write's query timeout, and a retry's delay
      expect(logger.lines).toEqual([]);
    } finally {
      proxy.cut();
      await pool.end();
    }
  });
});

describe('the completer draining', () => {
  it('leaves no timer behind once the flush it waited for is done: the process exits at once (one left armed kept it alive)', async () => {
    // In a process of its own (the built modules), with nothing else to keep it alive.
    const module = (path: string) => JSON.stringify(fileURLToPath(new URL(`../dist/${path}`, import.meta.url)));
    const script = `
      import pg from 'pg';
      const { Completer } = await import(${module('agent/worker/completer.js')});
      const { SchemaDb } = await import(${module('shared/db/sql.js')});
      const pool = new pg.Pool({ connectionString: ${JSON.stringify(t.url)}, max: 1 });
      const completer = new Completer(new SchemaDb(pool, ${JSON.stringify(t.schema)}), { debug() {}, info() {}, warn() {}, error() {} });
      completer.complete(1, 1, performance.now(), 'done'); // in flight when the drain starts
      await completer.drain(60_000);
      await pool.end();
      console.log('drained');`;
    const began = performance.now();
    // Were the drain's timer still armed, this would run for a minute and be killed by the 20 s timeout.
    const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script], { timeout: 20_000, cwd: REPO_ROOT });
    expect(stdout.trim()).toBe('drained');
    expect(performance.now() - began).toBeLessThan(15_000);
  });
});

describe('connections gone silent while the database is fine', () => {
  it('the agent drops them and goes on: jobs enqueued afterwards complete', async () => {
    const { proxy, url } = await DatabaseProxy.start(t.url);
    proxies.push(proxy);
    const logger = recordingLogger();
    const agent = createAgent({
      databaseUrl: url,
      schema: t.schema,
      logger,
      pollIntervalMs: 50,
      leaseMs: 3_000,
      maintenance: false,
      handlers: { quick: () => {} },
    });
    try {
      await agent.start();
      const first = await t.client.enqueue({ task: 'quick' });
      await waitFor('a first job', async () => (await t.client.getJob(first.id)).state === 'completed');
      proxy.silenceOpen();
      const later = await t.client.enqueueMany(Array.from({ length: 20 }, () => ({ task: 'quick' })));
      // The hot path's queries get 5 s (at least the lease) before their connection is dropped for a new one.
      await waitFor('the jobs enqueued after the silence', async () => {
        const jobs = await Promise.all(later.map((job) => t.client.getJob(job.id)));
        return jobs.every((job) => job.state === 'completed');
      }, 15_000);
    } finally {
      await agent.stop();
    }
  }, 25_000);
});
