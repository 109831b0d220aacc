import { fileURLToPath } from 'node:url';
import type { Argv } from 'yargs';
import { createAgent } from '../../agent/agent.js';
import { createClient } from '../../shared/client.js';
import { createPool, redactUrl } from '../../shared/db/pool.js';
import { createLogger } from '../../shared/logger.js';
import { UsageError, configFromFlags, resolveDatabaseUrl, type CommonFlags } from '../context.js';
import { ProgressPrinter } from '../demo/progress.js';
import { sampleJobs } from '../demo/workload.js';
import { print } from '../format.js';
import { loadHandlers } from './agent.js';

const DEMO_HANDLERS = fileURLToPath(new URL('../../../examples/demo-tasks.js', import.meta.url));
const FIRST_BATCH = 40;
/** npm forwards the terminal's Ctrl-C to its child, so one keypress can arrive as two signals. */
const SAME_KEYPRESS_MS = 1_000;

export function demoCommand(yargs: Argv<CommonFlags>) {
  return yargs.command(
    'demo',
    'run an agent with the sample handlers of examples/demo-tasks.js on a sample workload, with live progress, until Ctrl-C',
    (y) =>
      y
        .option('rate', { type: 'number', requiresArg: true, default: 5, describe: 'sample jobs enqueued per second (0: only the first batch)' })
        .option('concurrency', { type: 'number', requiresArg: true, default: 8, describe: 'jobs the demo agent runs at once' })
        .example('$0 demo', 'on the embedded database, or WIDA_DATABASE_URL if set')
        .example('$0 demo --rate 50 --concurrency 32', 'a busier shop'),
    async (argv) => {
      if (!Number.isInteger(argv.rate) || argv.rate < 0) throw new UsageError('--rate must be a whole number of jobs per second, 0 or more');
      const config = configFromFlags(argv, { WIDA_WORKER_CONCURRENCY: argv.concurrency });
      const databaseUrl = await resolveDatabaseUrl(config, { migrate: false }); // the agent migrates at start
      const schema = config.WIDA_SCHEMA;
      const agent = createAgent({
        databaseUrl,
        schema,
        handlers: await loadHandlers(DEMO_HANDLERS),
        concurrency: config.WIDA_WORKER_CONCURRENCY,
        leaseMs: config.WIDA_LEASE,
        pollIntervalMs: config.WIDA_POLL_INTERVAL,
        shutdownGraceMs: config.WIDA_SHUTDOWN_GRACE,
        logger: createLogger(config.WIDA_LOG_LEVEL ?? 'error'),
      });
      await agent.start();
      const pool = createPool(databaseUrl, { max: 2, applicationName: 'wida demo' });
      const client = createClient({ pool, schema });
      print(`wida demo: database ${redactUrl(databaseUrl)}, schema "${schema}", agent ${agent.id} running examples/demo-tasks.js`);
      print('in another terminal: `wida queues`, `wida jobs list --state dead`, `wida dlq show ID`, `wida workers`');

      let next = 1;
      const enqueue = async (count: number) => {
        await client.enqueueMany(sampleJobs(next, count));
        next += count;
      };
      await enqueue(FIRST_BATCH);
      const started = Date.now();
      const printer = new ProgressPrinter();
      let tick: Promise<void> = Promise.resolve();
      const timer = setInterval(() => {
        tick = tick
          .then(async () => {
            if (argv.rate > 0) await enqueue(argv.rate);
            printer.show(await client.listQueues(), Date.now() - started);
          })
          .catch((error) => {
            process.stderr.write(`wida demo: ${(error as Error).message}\n`);
          });
      }, 1_000);

      await untilInterrupted();
      clearInterval(timer);
      await tick;
      print('stopping: no more sample jobs; draining the agent (running jobs finish, the rest go back to pending)');
      await agent.stop();
      print(printer.summary(await client.listQueues()));
      await client.close();
      await pool.end();
      process.exit(0);
    },
  );
}

/** Resolves on SIGINT or SIGTERM; a second signal (a real second one, not npm's echo of the first) exits at once. */
function untilInterrupted(): Promise<void> {
  return new Promise((done) => {
    let firstAt = 0;
    const onSignal = (signal: NodeJS.Signals) => {
      if (firstAt === 0) {
        firstAt = Date.now();
        done();
      } else if (Date.now() - firstAt > SAME_KEYPRESS_MS) {
        process.stderr.write(`wida demo: ${signal} again; exiting without draining\n`);
        process.exit(1);
      }
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
}
