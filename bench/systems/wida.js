// Wida under the bench. Attempt history, heartbeats, leases and maintenance stay on (defaults).
import { createAgent, createClient, migrateUp } from '../../dist/index.js';
import { count, databaseUrl, monitorPool, singleConnectionPool, waitUntilNoneOutstanding } from '../lib/db.js';

const SCHEMA = 'wida';
const TASK = 'noop';
const silentLogger = { debug() {}, info() {}, warn() {}, error() {} };

/**
 * @param {{ concurrency: number, prefetch: number, pollIntervalMs?: number, onLog?: (message: string) => void }} config
 */
export function create(config) {
  const database = 'wida_bench_wida';
  const url = databaseUrl(database);
  const pollIntervalMs = config.pollIntervalMs ?? 1000;
  let producerPool, client, monitor, agent;
  // Warnings and errors from the agent are counted and kept (the bench must not hide a misbehaving agent).
  const problems = [];
  const logger = {
    ...silentLogger,
    warn: (message, fields) => problems.push({ level: 'warn', message, fields: brief(fields) }),
    error: (message, fields) => problems.push({ level: 'error', message, fields: brief(fields) }),
  };

  return {
    name: 'wida',
    label: 'wida',
    database,
    settings: {
      concurrency: config.concurrency,
      prefetch: config.prefetch,
      pollIntervalMs,
      producer: 'createClient({ pool: pg.Pool max 1 })',
      agentPool: 'agent-internal: 2 connections for claims and completions, up to 4 for upkeep, 1 LISTEN, 1 leader',
      note: 'attempt history, heartbeats, leases, rescuer and retention on (defaults)',
    },
    problems,

    async setup() {
      await migrateUp(url, SCHEMA);
      producerPool = singleConnectionPool(url, 'wida bench producer');
      client = createClient({ pool: producerPool, schema: SCHEMA });
      monitor = monitorPool(url);
    },

    async reset() {
      await monitor.query(`TRUNCATE "${SCHEMA}".jobs`);
    },

    async analyze() {
      await monitor.query('ANALYZE');
    },

    async enqueueOne(payload) {
      await client.enqueue({ task: TASK, payload });
    },

    async enqueueBatch(payloads) {
      await client.enqueueMany(payloads.map((payload) => ({ task: TASK, payload })));
    },

    async startWorker(onHandler) {
      agent = createAgent({
        databaseUrl: url,
        schema: SCHEMA,
        handlers: {
          [TASK]: async (payload) => {
            onHandler(payload);
          },
        },
        concurrency: config.concurrency,
        prefetch: config.prefetch,
        pollIntervalMs,
        logger,
      });
      await agent.start();
    },

    async stopWorker() {
      await agent?.stop();
      agent = undefined;
    },

    /** Jobs not (yet) completed in the database. */
    countOutstanding() {
      return count(monitor, `SELECT count(*) FROM "${SCHEMA}".jobs WHERE state <> 'completed'`);
    },

    waitAllCompleted(options) {
      return waitUntilNoneOutstanding(() => this.countOutstanding(), options);
    },

    async stateSummary() {
      const { rows } = await monitor.query(`SELECT state, count(*)::int AS n FROM "${SCHEMA}".jobs GROUP BY state ORDER BY state`);
      return Object.fromEntries(rows.map((r) => [r.state, r.n]));
    },

    async teardown() {
      await agent?.stop().catch(() => {});
      await client?.close();
      await producerPool?.end();
      await monitor?.end();
    },
  };
}

/** Log fields without the long lists (a rescue lists every job id). */
function brief(fields) {
  if (!fields) return fields;
  return Object.fromEntries(
    Object.entries(fields).map(([k, v]) => [k, Array.isArray(v) && v.length > 5 ? `[${v.length} items: ${v.slice(0, 3).join(', ')}, ...]` : v]),
  );
}
