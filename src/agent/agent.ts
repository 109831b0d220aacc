import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type pg from 'pg';
import { SchemaDb } from '../shared/db/sql.js';
import { checkConnection, closePool, createPool } from '../shared/db/pool.js';
import { withTimeout } from '../shared/with-timeout.js';
import { Listener } from '../shared/db/listen.js';
import { assertSchemaCurrent, migrateUp, schemaIsCurrent } from '../shared/db/migrate.js';
import { agentHeartbeat, type AgentInfo } from '../shared/db/queries/agents.js';
import type { ControlMessage } from '../shared/db/queries/notifications.js';
import { createLogger, type Logger } from '../shared/logger.js';
import { WIDA_VERSION } from '../shared/version.js';
import { JobAbort } from './worker/abort-reasons.js';
import { Completer } from './worker/completer.js';
import { InProcessExecutor, type Executor, type Handlers } from './worker/executors/executor.js';
import { createHeartbeat } from './worker/heartbeat.js';
import { WorkerPool } from './worker/worker-pool.js';
import { createRescuer } from './scheduler/rescuer.js';
import { createRetention } from './scheduler/retention.js';
import { createStatisticsKeeper } from './scheduler/statistics.js';
import { Elector } from './scheduler/elector.js';
import { CronEnqueuer } from './scheduler/cron-enqueuer.js';
import type { LeaderFence } from './scheduler/fence.js';
import { applyCronSchedules, readCronFile, toCronScheduleWrite, type CronScheduleSpec } from '../shared/cron-admin.js';
import type { Service } from './service.js';
import { checkAgentNumbers, cronPayloadLimit, heartbeatRisk, resolveAgentSettings } from './agent-options.js';

export interface AgentOptions {
  /** defaults to WIDA_DATABASE_URL (environment, then .env); so do the options below marked "env" */
  databaseUrl?: string;
  /** env WIDA_SCHEMA, default "wida" */
  schema?: string;
  /** task name -> function; or give an executor */
  handlers?: Handlers;
  executor?: Executor;
  /** queues to serve; omitted: every queue */
  queues?: readonly string[];
  /** jobs running at once on this agent (env WIDA_WORKER_CONCURRENCY, default 10) */
  concurrency?: number;
  /** limits on this agent's running jobs per queue */
  queueConcurrency?: Record<string, number>;
  /** jobs claimed ahead of free slots; defaults to the concurrency */
  prefetch?: number;
  /** the largest payload a cron schedule given to this agent may carry (env WIDA_MAX_PAYLOAD_BYTES, default 1 MiB) */
  maxPayloadBytes?: number;
  /** env WIDA_LEASE, default 30 s */
  leaseMs?: number;
  /** env WIDA_POLL_INTERVAL, default 1 s or the lease if shorter; not longer than the lease */
  pollIntervalMs?: number;
  heartbeatIntervalMs?: number;
  rescueIntervalMs?: number;
  /** env WIDA_RETENTION, default 24 h */
  retentionMs?: number;
  retentionIntervalMs?: number;
  /** timeout of jobs enqueued without their own (env WIDA_JOB_TIMEOUT, default 15 min) */
  defaultTimeoutMs?: number;
  /** env WIDA_SHUTDOWN_GRACE, default 10 s */
  shutdownGraceMs?: number;
  /** apply migrations at start (default); false: refuse to start unless the schema is current */
  migrate?: boolean;
  /**
   * campaign for leadership (default true). The leader alone runs the rescuer, retention, the statistics check and cron; false
   * makes an agent that only runs jobs.
   */
  maintenance?: boolean;
  /** cron schedules created or updated (by name) at start; schedules not listed are left alone */
  cronSchedules?: readonly CronScheduleSpec[];
  /** a JSON file of cron schedules (an array, or { "schedules": [...] }), applied at start like cronSchedules */
  cronFile?: string;
  /** a cron slot no older than this is on time and always runs; older ones follow the catch-up policy (default 60 s) */
  cronGraceMs?: number;
  /** how often an agent that does not lead tries to (default 500 ms) */
  electionPollIntervalMs?: number;
  /** how often the leader checks its own session; a check slower than leaderCheckTimeoutMs fails it (default 500 / 500 ms) */
  leaderCheckIntervalMs?: number;
  leaderCheckTimeoutMs?: number;
  /** a leader session idle this long is ended by the server: a frozen leader loses the lead (default 4 s) */
  leaderIdleLimitMs?: number;
  logger?: Logger;
}

export interface Agent {
  readonly id: string;
  start(): Promise<void>;
  /** Drains: stops claiming, waits for running jobs up to the grace period, releases the rest. */
  stop(): Promise<void>;
  readonly runningCount: number;
  /** true while this agent leads (runs cron, rescue and retention) */
  readonly isLeader: boolean;
}

/**
 * Connections for the hot path. Every backend that touches a page pays for mapping it, and on a machine where
 * a page fault costs 11 us a fresh agent's six rotating connections took 11,000-12,000 faults per 20,000 jobs.
 * Two (a claim and a completion at a time) took about 9,000: database CPU per job 36 -> 29 us, throughput
 * 30,300 -> 34,400 jobs/s (docs/architecture.md).
 */
const JOBS_POOL_SIZE = 2;
/**
 * Claims never wait for a lock (SKIP LOCKED); a completion or failure does when another transaction holds the
 * job's row (a client attaching a dependent to it). Past this, the completer stores the others without that
 * row and tries it again shortly, instead of holding up every completion behind one lock. Releases go through
 * the upkeep connections, which wait: a release that gave up would cost its jobs an attempt.
 */
const JOBS_LOCK_TIMEOUT_MS = 1_000;
/** The upkeep connections' limit on one query's answer (at least the lease). */
const UPKEEP_QUERY_LIMIT_MS = 60_000;
/** Start waits this long at most for the first claims before it starts the rest (a slow claim must not hold it up). */
const FIRST_CLAIM_WAIT_MS = 500;
/** Shutdown's steps other than waiting for running jobs get this long, all together. */
const SHUTDOWN_STEPS_MS = 5_000;
/** How long closing the pools waits for the server's goodbyes before it asks which sessions the server still has. */
const CLOSE_CONNECTIONS_MS = 1_000;

export function createAgent(options: AgentOptions): Agent {
  checkAgentNumbers(options as unknown as Record<string, unknown>);
  const settings = resolveAgentSettings(options);
  const { databaseUrl, schema, concurrency, leaseMs, pollIntervalMs, heartbeatIntervalMs, logger } = settings;
  const executor = options.executor ?? new InProcessExecutor(options.handlers ?? {});
  const id = `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
  // A bad schedule is the caller's error at createAgent, not a failed start.
  const cronPayloadBytes = options.cronSchedules?.length || options.cronFile ? cronPayloadLimit(options.maxPayloadBytes) : undefined;
  options.cronSchedules?.forEach((spec, i) => toCronScheduleWrite(spec, `cron schedule ${i}: `, cronPayloadBytes));
  const risk = heartbeatRisk(heartbeatIntervalMs, leaseMs);
  if (risk) logger.warn(risk);
  const info: AgentInfo = {
    id,
    host: hostname(),
    pid: process.pid,
    version: WIDA_VERSION,
    queues: options.queues ? [...options.queues] : null,
    concurrency,
    heartbeatIntervalMs: Math.ceil(heartbeatIntervalMs),
  };

  /** heartbeats, leader duties and other upkeep */
  let pool: pg.Pool | undefined;
  /** claims, completions and failures only: see JOBS_POOL_SIZE */
  let jobsPool: pg.Pool | undefined;
  let workers: WorkerPool | undefined;
  let completer: Completer | undefined;
  let listener: Listener | undefined;
  let pollTimer: NodeJS.Timeout | undefined;
  let services: Service[] = [];
  let elector: Elector | undefined;
  let leaderServices: Service[] = [];
  let state: 'new' | 'starting' | 'running' | 'draining' | 'stopped' = 'new';
  let starting: Promise<void> | undefined;
  // Stops a migrator that start() is waiting for: it may wait on a lock, or on a server gone silent, for ever.
  const migrating = new AbortController();

  function onControl(payload: string): void {
    let message: ControlMessage;
    try {
      message = JSON.parse(payload);
    } catch {
      return;
    }
    // Any role that may connect may NOTIFY: `null`, a number or an array is not a message.
    if (typeof message !== 'object' || message === null || typeof message.type !== 'string') return;
    if (message.type === 'cancel') {
      if (message.agentId === null || message.agentId === id) {
        workers?.cancelRun({ id: message.jobId, leaseEpoch: message.leaseEpoch }, new JobAbort('cancelled', 'cancelled by an operator'));
      }
    }
    else if (message.type === 'queue_paused') void workers?.releaseQueue(message.queue);
    else if (message.type === 'leader_resigned') elector?.campaignNow();
  }

  return {
    id,
    get runningCount() {
      return workers?.runningCount ?? 0;
    },
    get isLeader() {
      return elector?.leader !== undefined;
    },

    start() {
      if (state !== 'new') return Promise.reject(new Error('an agent can be started once'));
      state = 'starting';
      starting = startServices().then(
        () => {
          state = 'running';
          logger.info('agent started', { agentId: id, schema, queues: info.queues ?? 'all', concurrency });
        },
        async (error) => {
          state = 'draining';
          // Jobs claimed before the failure finish or go back to pending, as in stop().
          await teardown().catch(() => {});
          state = 'stopped';
          throw error;
        },
      );
      return starting;
    },

    async stop() {
      // Jobs may already run while start() is in flight: a stop then waits for it and drains. A start still
      // migrating has run nothing yet: its migrator is stopped, and start() fails saying so.
      if (state === 'starting') {
        migrating.abort();
        await starting?.catch(() => {});
      }
      if (state !== 'running') return;
      state = 'draining';
      logger.info('agent draining', { agentId: id, running: workers!.runningCount });
      await teardown();
      state = 'stopped';
      logger.info('agent stopped', { agentId: id });
    },
  };

  /**
   * Stops whatever startServices got to, in order; a partial start has some of these undefined. Every step
   * is bounded and its failure logged, so with the database down or silent the agent still stops whole
   * (no heartbeat left ticking) and stop() returns: after the jobs' grace period, within SHUTDOWN_STEPS_MS.
   */
  async function teardown(): Promise<void> {
    const graceMs = settings.shutdownGraceMs;
    let budget = SHUTDOWN_STEPS_MS; // for everything but the running jobs' grace period
    const step = async (what: string, work: () => unknown, graceOfStepMs = 0): Promise<void> => {
      const began = Date.now();
      try {
        // A little even when earlier steps used up the budget: marking the agent stopped and closing connections are quick.
        await withTimeout(Promise.resolve().then(work), Math.max(budget, 250) + graceOfStepMs);
      } catch (error) {
        logger.warn(`shutdown: gave up ${what}`, { error: (error as Error).message });
      } finally {
        budget -= Math.max(0, Date.now() - began - graceOfStepMs);
      }
    };
    // First, so another agent takes over the leader's duties while this one drains.
    await step('resigning leadership', () => elector?.stop());
    clearInterval(pollTimer);
    await step('closing the LISTEN connection', () => listener?.stop());
    await step('draining running jobs', () => workers?.stop(graceMs), graceMs);
    // A claim that lands now gives its jobs back through the upkeep pool, which must still be open for it.
    await step('waiting for claims in flight', () => workers?.claimsLanded(Math.max(budget, 250)));
    await step('storing completions', () => completer?.drain(Math.max(budget, 250)));
    completer?.close();
    for (const service of services) await step(`stopping ${service.name}`, () => service.stop());
    if (pool) await step('marking the agent stopped', () => agentHeartbeat(new SchemaDb(pool!, schema), info, 'stopped'));
    // closePool bounds itself (four times `closing` at most), so what it cuts off (a release on a connection gone
    // silent, say) is logged before the agent says it stopped.
    const closing = Math.min(Math.max(budget, 250), CLOSE_CONNECTIONS_MS);
    const closePools = () => Promise.all([pool && closePool(pool, closing), jobsPool && closePool(jobsPool, closing)]);
    await step('closing connections', closePools, 4 * closing);
  }

  async function startServices(): Promise<void> {
    jobsPool = createPool(databaseUrl, {
      max: JOBS_POOL_SIZE,
      applicationName: `wida agent ${id} jobs`,
      lockTimeoutMs: JOBS_LOCK_TIMEOUT_MS,
      // A claim or completion unanswered for a lease is pointless (the lease is gone): drop that connection.
      // At least 5 s, above the lock timeout and a busy server's slow moments.
      queryTimeoutMs: Math.max(leaseMs, 5_000),
    });
    await checkConnection(jobsPool, databaseUrl);
    if (!(await schemaIsCurrent(jobsPool, schema))) {
      if (options.migrate === false) await assertSchemaCurrent(databaseUrl, schema, migrating.signal);
      else await migrateUp(databaseUrl, schema, undefined, { signal: migrating.signal });
    }
    pool = createPool(databaseUrl, {
      max: 4,
      applicationName: `wida agent ${id}`,
      // Upkeep may run longer (an ANALYZE, a retention batch), but not for ever on a connection gone silent.
      queryTimeoutMs: Math.max(leaseMs, UPKEEP_QUERY_LIMIT_MS),
    });
    const db = new SchemaDb(pool, schema);
    const jobsDb = new SchemaDb(jobsPool, schema);
    const cronSpecs = [...(options.cronFile ? readCronFile(options.cronFile) : []), ...(options.cronSchedules ?? [])];
    if (cronSpecs.length > 0) {
      const applied = await applyCronSchedules(db, cronSpecs, cronPayloadBytes);
      logger.info('cron schedules applied', applied);
    }
    completer = new Completer(jobsDb, logger);
    workers = new WorkerPool({
      agentId: id,
      db: jobsDb,
      releaseDb: db,
      executor,
      completer,
      logger,
      queues: options.queues ?? null,
      concurrency,
      prefetch: settings.prefetch,
      leaseMs,
      defaultTimeoutMs: settings.defaultTimeoutMs,
      queueConcurrency: options.queueConcurrency ?? {},
    });
    // Before the first claim, so every lease it grants is renewed.
    const heartbeat = createHeartbeat({
      db,
      agent: info,
      pool: workers,
      leaseMs,
      intervalMs: heartbeatIntervalMs,
      logger,
      state: () => (state === 'draining' || state === 'stopped' ? 'draining' : 'running'),
    });
    services = [heartbeat];
    // Claim first, alone: the first claim on a new connection takes 35-60 ms (catalog, plan, mapping the table's
    // pages), and the heartbeat's first write, the LISTEN connection and the leader's campaign each start a backend
    // that competes with it for the server's CPU. Started after it landed, on 20,000 queued jobs the first handler ran
    // at 52 instead of 76 ms, and throughput rose 2 % (medians of ten alternated runs; 7 of 10 pairs faster). A failed
    // start drains what it claimed.
    workers.wake();
    await workers.claimsLanded(FIRST_CLAIM_WAIT_MS);
    for (const service of services) await service.start();
    const served = options.queues ? new Set(options.queues) : null;
    listener = new Listener({
      connectionString: databaseUrl,
      channels: [db.channel('jobs'), db.channel('control')],
      onNotification: (channel, payload) => {
        if (channel === db.channel('control')) onControl(payload);
        else if (!served || payload === '*' || served.has(payload)) workers!.wake();
      },
      onConnected: () => workers!.wake(),
      onError: (error) => logger.warn('listen connection lost; reconnecting', { error: error.message }),
      onCallbackError: (error) => logger.error('a notification could not be handled', { error: error.message }),
    });
    await listener.start();
    if (options.maintenance !== false) {
      elector = new Elector({
        databaseUrl,
        schema,
        agentId: id,
        logger,
        pollIntervalMs: options.electionPollIntervalMs,
        checkIntervalMs: options.leaderCheckIntervalMs,
        checkTimeoutMs: options.leaderCheckTimeoutMs,
        idleLimitMs: options.leaderIdleLimitMs,
        onElected: (fence) => startLeaderServices(pool!, db, fence),
        onDemoted: stopLeaderServices,
      });
      elector.start();
    }
    pollTimer = setInterval(() => workers!.wake(), pollIntervalMs);
  }

  /** The leader-only duties, started when this agent is elected and stopped when it steps down or resigns. */
  function startLeaderServices(leaderPool: pg.Pool, db: SchemaDb, fence: LeaderFence): void {
    leaderServices = [
      createRescuer({ pool: leaderPool, db, fence, intervalMs: settings.rescueIntervalMs, logger }),
      createRetention({
        pool: leaderPool,
        db,
        fence,
        retentionMs: settings.retentionMs,
        intervalMs: options.retentionIntervalMs ?? 60_000,
        logger,
      }),
      new CronEnqueuer({ pool: leaderPool, db, fence, logger, graceMs: options.cronGraceMs ?? 60_000 }),
      createStatisticsKeeper({ db, intervalMs: 2_000, logger }),
    ];
    for (const service of leaderServices) void service.start();
  }

  async function stopLeaderServices(): Promise<void> {
    const stopping = leaderServices.splice(0);
    await Promise.all(stopping.map((service) => service.stop()));
  }
}

