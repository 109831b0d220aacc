import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type pg from 'pg';
import { SchemaDb } from '../shared/db/sql.js';
import { checkConnection, createPool } from '../shared/db/pool.js';
import { Listener } from '../shared/db/listen.js';
import { assertSchemaCurrent, migrateUp } from '../shared/db/migrate.js';
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
import { Elector } from './scheduler/elector.js';
import { CronEnqueuer } from './scheduler/cron-enqueuer.js';
import type { LeaderFence } from './scheduler/fence.js';
import { applyCronSchedules, readCronFile, toCronScheduleWrite, type CronScheduleSpec } from '../shared/cron-admin.js';
import type { Service } from './service.js';

export interface AgentOptions {
  databaseUrl: string;
  schema?: string;
  /** task name -> function; or give an executor */
  handlers?: Handlers;
  executor?: Executor;
  /** queues to serve; omitted: every queue */
  queues?: readonly string[];
  /** jobs running at once on this agent */
  concurrency?: number;
  /** limits on this agent's running jobs per queue */
  queueConcurrency?: Record<string, number>;
  /** jobs claimed ahead of free slots; defaults to the concurrency */
  prefetch?: number;
  leaseMs?: number;
  pollIntervalMs?: number;
  heartbeatIntervalMs?: number;
  rescueIntervalMs?: number;
  retentionMs?: number;
  retentionIntervalMs?: number;
  defaultTimeoutMs?: number;
  shutdownGraceMs?: number;
  /** apply migrations at start (default); false: refuse to start unless the schema is current */
  migrate?: boolean;
  /**
   * campaign for leadership (default true). The leader alone runs the rescuer, retention and cron; false
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

export function createAgent(options: AgentOptions): Agent {
  const schema = options.schema ?? 'wida';
  const logger = options.logger ?? createLogger();
  const concurrency = options.concurrency ?? 10;
  const leaseMs = options.leaseMs ?? 30_000;
  const pollIntervalMs = options.pollIntervalMs ?? 1_000;
  const executor = options.executor ?? new InProcessExecutor(options.handlers ?? {});
  const id = `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
  // A bad schedule is the caller's error at createAgent, not a failed start.
  options.cronSchedules?.forEach((spec, i) => toCronScheduleWrite(spec, `cron schedule ${i}: `));
  const heartbeatIntervalMs = options.heartbeatIntervalMs ?? Math.min(5_000, leaseMs / 3);
  const info: AgentInfo = {
    id,
    host: hostname(),
    pid: process.pid,
    version: WIDA_VERSION,
    queues: options.queues ? [...options.queues] : null,
    concurrency,
    heartbeatIntervalMs: Math.ceil(heartbeatIntervalMs),
  };

  let pool: pg.Pool | undefined;
  let workers: WorkerPool | undefined;
  let completer: Completer | undefined;
  let listener: Listener | undefined;
  let pollTimer: NodeJS.Timeout | undefined;
  let services: Service[] = [];
  let elector: Elector | undefined;
  let leaderServices: Service[] = [];
  let state: 'new' | 'starting' | 'running' | 'draining' | 'stopped' = 'new';

  function onControl(payload: string): void {
    let message: ControlMessage;
    try {
      message = JSON.parse(payload);
    } catch {
      return;
    }
    if (message.type === 'cancel') workers?.abort(message.jobId, new JobAbort('cancelled', 'cancelled by an operator'));
    else if (message.type === 'queue_paused') void workers?.releaseQueue(message.queue).catch(() => {});
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

    async start() {
      if (state !== 'new') throw new Error('an agent can be started once');
      state = 'starting';
      try {
        await startServices();
      } catch (error) {
        state = 'stopped';
        await elector?.stop().catch(() => {});
        await pool?.end().catch(() => {});
        await listener?.stop();
        throw error;
      }
      state = 'running';
      logger.info('agent started', { agentId: id, schema, queues: info.queues ?? 'all', concurrency });
    },

    async stop() {
      if (state !== 'running') return;
      state = 'draining';
      logger.info('agent draining', { agentId: id, running: workers!.runningCount });
      // First, so another agent takes over the leader's duties while this one drains.
      await elector?.stop();
      clearInterval(pollTimer);
      await listener!.stop();
      await workers!.stop(options.shutdownGraceMs ?? 10_000);
      await completer!.drain();
      for (const service of services) await service.stop();
      const db = new SchemaDb(pool!, schema);
      await agentHeartbeat(db, info, 'stopped').catch(() => {});
      await pool!.end();
      state = 'stopped';
      logger.info('agent stopped', { agentId: id });
    },
  };

  async function startServices(): Promise<void> {
    if (options.migrate === false) await assertSchemaCurrent(options.databaseUrl, schema);
    else await migrateUp(options.databaseUrl, schema);
    pool = createPool(options.databaseUrl, { max: 6, applicationName: `wida agent ${id}` });
    await checkConnection(pool, options.databaseUrl);
    const db = new SchemaDb(pool, schema);
    const cronSpecs = [...(options.cronFile ? readCronFile(options.cronFile) : []), ...(options.cronSchedules ?? [])];
    if (cronSpecs.length > 0) {
      const applied = await applyCronSchedules(db, cronSpecs);
      logger.info('cron schedules applied', applied);
    }
    completer = new Completer(db, logger);
    workers = new WorkerPool({
      agentId: id,
      db,
      executor,
      completer,
      logger,
      queues: options.queues ?? null,
      concurrency,
      prefetch: options.prefetch ?? concurrency,
      leaseMs,
      defaultTimeoutMs: options.defaultTimeoutMs ?? 15 * 60_000,
      queueConcurrency: options.queueConcurrency ?? {},
    });
    const served = options.queues ? new Set(options.queues) : null;
    listener = new Listener({
      connectionString: options.databaseUrl,
      channels: [db.channel('jobs'), db.channel('control')],
      onNotification: (channel, payload) => {
        if (channel === db.channel('control')) onControl(payload);
        else if (!served || payload === '*' || served.has(payload)) workers!.wake();
      },
      onConnected: () => workers!.wake(),
      onError: (error) => logger.warn('listen connection lost; reconnecting', { error: error.message }),
    });
    await listener.start();
    const heartbeat = createHeartbeat({
      db,
      agent: info,
      pool: workers,
      leaseMs,
      intervalMs: heartbeatIntervalMs,
      logger,
      state: () => (state === 'running' ? 'running' : 'draining'),
    });
    services = [heartbeat];
    for (const service of services) await service.start();
    if (options.maintenance !== false) {
      elector = new Elector({
        databaseUrl: options.databaseUrl,
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
    workers.wake();
  }

  /** The leader-only duties, started when this agent is elected and stopped when it steps down or resigns. */
  function startLeaderServices(leaderPool: pg.Pool, db: SchemaDb, fence: LeaderFence): void {
    leaderServices = [
      createRescuer({ pool: leaderPool, db, fence, intervalMs: options.rescueIntervalMs ?? 5_000, logger }),
      createRetention({
        pool: leaderPool,
        db,
        fence,
        retentionMs: options.retentionMs ?? 86_400_000,
        intervalMs: options.retentionIntervalMs ?? 60_000,
        logger,
      }),
      new CronEnqueuer({ db, fence, logger, graceMs: options.cronGraceMs ?? 60_000 }),
    ];
    for (const service of leaderServices) void service.start();
  }

  async function stopLeaderServices(): Promise<void> {
    const stopping = leaderServices.splice(0);
    await Promise.all(stopping.map((service) => service.stop()));
  }
}

