// graphile-worker 0.17 under the bench, in its documented batching mode: a local queue (the pool locks
// `localQueue.size` jobs ahead) and batched completion/failure.
import { Logger, makeWorkerUtils, run } from 'graphile-worker';
import { count, databaseUrl, monitorPool, singleConnectionPool, waitUntilNoneOutstanding } from '../lib/db.js';

const SCHEMA = 'graphile_worker';
const TASK = 'noop';

/**
 * @param {{ concurrency: number, localQueueSize: number, completeJobBatchDelay: number, failJobBatchDelay: number,
 *           maxPoolSize: number, pollInterval?: number }} config
 */
export function create(config) {
  const database = 'wida_bench_graphile';
  const url = databaseUrl(database);
  const pollInterval = config.pollInterval ?? 2000;
  let producerPool, utils, monitor, runner;
  const problems = [];
  // Keep warnings and errors; drop the chatty info/debug lines.
  const logger = new Logger(() => (level, message) => {
    if (level === 'error' || level === 'warning') problems.push({ level, message });
  });

  return {
    name: 'graphile',
    label: 'graphile-worker',
    database,
    settings: {
      concurrency: config.concurrency,
      'localQueue.size': config.localQueueSize,
      completeJobBatchDelay: config.completeJobBatchDelay,
      failJobBatchDelay: config.failJobBatchDelay,
      maxPoolSize: config.maxPoolSize,
      pollInterval,
      producer: 'makeWorkerUtils({ pgPool: pg.Pool max 1 }): addJob / addJobs',
    },
    problems,

    async setup() {
      producerPool = singleConnectionPool(url, 'graphile bench producer');
      utils = await makeWorkerUtils({ pgPool: producerPool, logger });
      await utils.migrate();
      monitor = monitorPool(url);
    },

    async reset() {
      await monitor.query(`TRUNCATE ${SCHEMA}._private_jobs`);
    },

    async analyze() {
      await monitor.query('ANALYZE');
    },

    async enqueueOne(payload) {
      await utils.addJob(TASK, payload);
    },

    async enqueueBatch(payloads) {
      await utils.addJobs(payloads.map((payload) => ({ identifier: TASK, payload })));
    },

    async startWorker(onHandler) {
      runner = await run({
        connectionString: url,
        concurrency: config.concurrency,
        maxPoolSize: config.maxPoolSize,
        pollInterval,
        noHandleSignals: true,
        logger,
        taskList: {
          [TASK]: async (payload) => {
            onHandler(payload);
          },
        },
        preset: {
          worker: {
            localQueue: { size: config.localQueueSize },
            completeJobBatchDelay: config.completeJobBatchDelay,
            failJobBatchDelay: config.failJobBatchDelay,
          },
        },
      });
    },

    async stopWorker() {
      await runner?.stop();
      runner = undefined;
    },

    /** graphile-worker deletes a job when it completes: whatever is left in the table is outstanding. */
    countOutstanding() {
      return count(monitor, `SELECT count(*) FROM ${SCHEMA}._private_jobs`);
    },

    waitAllCompleted(options) {
      return waitUntilNoneOutstanding(() => this.countOutstanding(), options);
    },

    async stateSummary() {
      const { rows } = await monitor.query(
        `SELECT CASE WHEN locked_at IS NOT NULL THEN 'locked' WHEN attempts > 0 THEN 'failed/retrying' ELSE 'queued' END AS state,
                count(*)::int AS n
           FROM ${SCHEMA}._private_jobs GROUP BY 1 ORDER BY 1`,
      );
      return { '(completed = deleted)': null, ...Object.fromEntries(rows.map((r) => [r.state, r.n])) };
    },

    async teardown() {
      await runner?.stop().catch(() => {});
      await utils?.release();
      await producerPool?.end();
      await monitor?.end();
    },
  };
}
