// pg-boss 10 under the bench. v10 has no LISTEN/NOTIFY wake-up and no per-worker concurrency option:
// each work() call is one polling loop that fetches up to `batchSize` jobs per round and then waits out
// the rest of pollingIntervalSeconds (minimum 0.5 s). Concurrency N = N work() loops; each runs its batch
// one job after another. Completion is issued by pg-boss after the batch handler resolves (not awaited
// by the loop), so the bench waits for the database to show every job completed.
import PgBoss from 'pg-boss';
import { count, databaseUrl, monitorPool, waitUntilNoneOutstanding } from '../lib/db.js';

const SCHEMA = 'pgboss';
const QUEUE = 'noop';

/**
 * @param {{ concurrency: number, batchSize: number, pollingIntervalSeconds: number, max: number }} config
 */
export function create(config) {
  const database = 'wida_bench_pgboss';
  const url = databaseUrl(database);
  let boss, producer, monitor;
  const problems = [];
  const onError = (error) => problems.push({ level: 'error', message: error?.message ?? String(error) });

  return {
    name: 'pgboss',
    label: 'pg-boss',
    database,
    settings: {
      concurrency: `${config.concurrency} work() loops`,
      batchSize: config.batchSize,
      'jobs held locally (loops x batchSize)': config.concurrency * config.batchSize,
      pollingIntervalSeconds: config.pollingIntervalSeconds,
      max: config.max,
      producer: 'separate PgBoss({ max: 1, supervise: false, schedule: false }): send / insert',
      note: 'no LISTEN/NOTIFY in v10: idle pick-up is by polling',
    },
    problems,

    async setup() {
      // The worker instance: pg-boss defaults (maintenance and cron monitoring on).
      boss = new PgBoss({ connectionString: url, schema: SCHEMA, max: config.max, application_name: 'pgboss bench worker' });
      boss.on('error', onError);
      await boss.start();
      await boss.createQueue(QUEUE);
      // The producer: one connection, nothing else running on it.
      producer = new PgBoss({
        connectionString: url,
        schema: SCHEMA,
        max: 1,
        supervise: false,
        schedule: false,
        migrate: false,
        application_name: 'pgboss bench producer',
      });
      producer.on('error', onError);
      await producer.start();
      monitor = monitorPool(url);
    },

    async reset() {
      await boss.clearStorage();
    },

    async analyze() {
      await monitor.query('ANALYZE');
    },

    async enqueueOne(payload) {
      await producer.send(QUEUE, payload);
    },

    async enqueueBatch(payloads) {
      await producer.insert(payloads.map((data) => ({ name: QUEUE, data })));
    },

    async startWorker(onHandler) {
      const options = { batchSize: config.batchSize, pollingIntervalSeconds: config.pollingIntervalSeconds };
      const handler = async (jobs) => {
        for (const job of jobs) await noop(job.data, onHandler);
      };
      for (let i = 0; i < config.concurrency; i++) await boss.work(QUEUE, options, handler);
    },

    async stopWorker() {
      await boss.offWork(QUEUE);
    },

    countOutstanding() {
      return count(monitor, `SELECT count(*) FROM ${SCHEMA}.job WHERE name = $1 AND state <> 'completed'`, [QUEUE]);
    },

    waitAllCompleted(options) {
      return waitUntilNoneOutstanding(() => this.countOutstanding(), options);
    },

    async stateSummary() {
      const { rows } = await monitor.query(
        `SELECT state::text, count(*)::int AS n FROM ${SCHEMA}.job WHERE name = $1 GROUP BY state ORDER BY state`,
        [QUEUE],
      );
      return Object.fromEntries(rows.map((r) => [r.state, r.n]));
    },

    async teardown() {
      await producer?.stop({ graceful: false, wait: true }).catch(onError);
      await boss?.stop({ graceful: false, wait: true }).catch(onError);
      await monitor?.end();
    },
  };
}

// The per-job handler, as for the other systems: report the start, do nothing.
async function noop(payload, onHandler) {
  onHandler(payload);
}
