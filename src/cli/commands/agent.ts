import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Argv } from 'yargs';
import { createAgent } from '../../agent/agent.js';
import { checkPollWithinLease } from '../../agent/agent-options.js';
import type { Handlers } from '../../agent/worker/executors/executor.js';
import { readCronFile, toCronScheduleWrite } from '../../shared/cron-admin.js';
import { ConfigError } from '../../shared/errors.js';
import { createLogger } from '../../shared/logger.js';
import { UsageError, configFromFlags, resolveDatabaseUrl, type CommonFlags } from '../context.js';

export function agentCommand(yargs: Argv<CommonFlags>) {
  return yargs.command(
    'agent',
    'run a worker agent: claims and runs jobs until SIGTERM or SIGINT',
    (y) =>
      y
        .option('handlers', { type: 'string', requiresArg: true, describe: 'a JavaScript module whose exports are task handlers (default export object, or named functions)' })
        .option('queues', { type: 'string', describe: 'comma-separated queues to serve (default: all)' })
        .option('concurrency', { type: 'number', requiresArg: true, describe: 'jobs running at once (WIDA_WORKER_CONCURRENCY, default 10)' })
        .option('queue-concurrency', {
          type: 'string',
          requiresArg: true,
          describe: 'limits on this agent\'s running jobs per queue, as QUEUE=N,... (within --concurrency)',
        })
        .option('cron-file', { type: 'string', requiresArg: true, describe: 'a JSON file of cron schedules (an array, or { "schedules": [...] }) created or updated at start' })
        .option('migrate', { type: 'boolean', default: true, describe: 'apply migrations at start (--no-migrate: refuse unless current)' })
        .example('$0 agent --handlers ./tasks.js', 'run the handlers exported by tasks.js on every queue')
        .example('$0 agent --handlers ./tasks.js --queues email,reports --concurrency 32', 'serve two queues, 32 jobs at a time')
        .example('$0 agent --handlers ./tasks.js --queue-concurrency reports=2', 'at most 2 report jobs at once on this agent')
        .example('$0 agent --handlers ./tasks.js --cron-file ./cron.json', 'also create or update the schedules in cron.json'),
    async (argv) => {
      const config = configFromFlags(argv, { WIDA_WORKER_CONCURRENCY: argv.concurrency });
      if (config.WIDA_POLL_INTERVAL !== undefined) checkPollWithinLease(config.WIDA_POLL_INTERVAL, config.WIDA_LEASE);
      const queueConcurrency = argv['queue-concurrency'] === undefined ? undefined : parseQueueConcurrency(argv['queue-concurrency']);
      const handlers = argv.handlers ? await loadHandlers(argv.handlers) : {};
      if (argv['cron-file']) checkCronFile(argv['cron-file'], config.WIDA_MAX_PAYLOAD_BYTES);
      const logger = createLogger(config.WIDA_LOG_LEVEL);
      const agent = createAgent({
        databaseUrl: await resolveDatabaseUrl(config, { migrate: false }), // the agent migrates (or checks) itself
        schema: config.WIDA_SCHEMA,
        handlers,
        queues: argv.queues ? argv.queues.split(',').map((q) => q.trim()).filter(Boolean) : undefined,
        concurrency: config.WIDA_WORKER_CONCURRENCY,
        queueConcurrency,
        leaseMs: config.WIDA_LEASE,
        pollIntervalMs: config.WIDA_POLL_INTERVAL,
        retentionMs: config.WIDA_RETENTION,
        defaultTimeoutMs: config.WIDA_JOB_TIMEOUT,
        shutdownGraceMs: config.WIDA_SHUTDOWN_GRACE,
        migrate: argv.migrate,
        cronFile: argv['cron-file'],
        heartbeatIntervalMs: config.WIDA_HEARTBEAT_INTERVAL,
        rescueIntervalMs: config.WIDA_RESCUE_INTERVAL,
        prefetch: config.WIDA_PREFETCH,
        maxPayloadBytes: config.WIDA_MAX_PAYLOAD_BYTES,
        logger,
      });
      // Listening before start(): jobs are claimed while it runs, and a stop() during it waits and then drains.
      const stopped = new Promise<void>((done) => {
        let stopping = false;
        const stop = (signal: string) => {
          if (stopping) {
            logger.warn(`received ${signal} again; exiting now`);
            process.exit(1);
          }
          stopping = true;
          logger.info(`received ${signal}; draining`);
          agent.stop().then(done, (error) => {
            logger.error('shutdown failed', { error: (error as Error).message });
            process.exitCode = 1;
            done();
          });
        };
        process.on('SIGTERM', () => stop('SIGTERM'));
        process.on('SIGINT', () => stop('SIGINT'));
      });
      await agent.start();
      if (Object.keys(handlers).length === 0) logger.warn('no handlers loaded (--handlers FILE): this agent claims nothing');
      await stopped;
      // A handler that ignored its abort signal may still hold timers or sockets; its job is already
      // released, so it must not outlive the agent.
      process.exit(process.exitCode ?? 0);
    },
  );
}

/** "reports=2,emails=1" -> { reports: 2, emails: 1 }; anything else is a usage error naming the flag. */
export function parseQueueConcurrency(text: string): Record<string, number> {
  const limits = new Map<string, number>();
  for (const part of text.split(',').map((item) => item.trim()).filter(Boolean)) {
    const match = /^([^=\s]+)\s*=\s*(\d+)$/.exec(part);
    const limit = match ? Number(match[2]) : 0;
    if (!match || !Number.isSafeInteger(limit) || limit < 1) {
      throw new UsageError(`--queue-concurrency takes QUEUE=N pairs separated by commas, N a whole number of at least 1 (e.g. reports=2,emails=5); got ${JSON.stringify(part)}`);
    }
    if (limits.has(match[1])) throw new UsageError(`--queue-concurrency names queue "${match[1]}" twice`);
    limits.set(match[1], limit);
  }
  if (limits.size === 0) throw new UsageError('--queue-concurrency names no queue; expected QUEUE=N pairs such as reports=2,emails=5');
  return Object.fromEntries(limits);
}

/** A bad schedule file is a usage error before anything starts (the agent reads it again at start). */
function checkCronFile(file: string, maxPayloadBytes: number): void {
  readCronFile(file).forEach((spec, i) => toCronScheduleWrite(spec, `${file}: cron schedule ${i} (${(spec as { name?: string })?.name ?? 'unnamed'}): `, maxPayloadBytes));
}

export async function loadHandlers(file: string): Promise<Handlers> {
  let module: Record<string, unknown>;
  try {
    module = await import(pathToFileURL(resolve(file)).href);
  } catch (error) {
    throw new ConfigError(`cannot load handlers from ${file}: ${(error as Error).message}`, { cause: error });
  }
  const source = (module.default && typeof module.default === 'object' ? module.default : module) as Record<string, unknown>;
  const handlers: Handlers = {};
  for (const [task, handler] of Object.entries(source)) {
    if (typeof handler === 'function') handlers[task] = handler as Handlers[string];
  }
  if (Object.keys(handlers).length === 0) {
    throw new ConfigError(`${file} exports no functions; export task handlers, e.g. \`export async function sendEmail(payload) {}\``);
  }
  return handlers;
}
