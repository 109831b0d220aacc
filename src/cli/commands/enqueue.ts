import type { Argv } from 'yargs';
import { DependencyRefusedError, ValidationError } from '../../shared/errors.js';
import { PRIORITIES } from '../../shared/job-state.js';
import type { DependentJobSpec } from '../../shared/workflow.js';
import { UsageError, withClient, type CommonFlags } from '../context.js';
import { print, printJson } from '../format.js';
import { readDuration, readPayload, readTimestamp } from '../input.js';

export function enqueueCommand(yargs: Argv<CommonFlags>) {
  return yargs.command(
    'enqueue <task>',
    'add a job',
    (y) =>
      y
        .positional('task', { type: 'string', demandOption: true, describe: 'the task name a handler is registered under' })
        .option('payload', { type: 'string', requiresArg: true, describe: 'JSON, @file.json, or - to read stdin' })
        .option('queue', { type: 'string', describe: 'queue (default "default")' })
        .option('priority', { choices: PRIORITIES, describe: 'priority (default normal)' })
        .option('run-at', { type: 'string', describe: 'run at this ISO 8601 time', conflicts: 'delay' })
        .option('delay', { type: 'string', describe: 'run after this long, e.g. 30s, 5m', conflicts: 'run-at' })
        .option('max-attempts', { type: 'number', requiresArg: true, describe: 'attempts before the job goes to the DLQ (default 5)' })
        .option('timeout', { type: 'string', requiresArg: true, describe: 'an attempt running longer is aborted and fails, e.g. 30s, 5m (default: the agent\'s)' })
        .option('idempotency-key', { type: 'string', describe: 'a second enqueue with this key returns the first job' })
        // Not an array option: those swallow the words after them (`--depends-on 7 report` would take the
        // task). Repeated, it is an array.
        .option('depends-on', { type: 'string', describe: 'wait until these jobs completed: ids, repeated or comma separated' })
        .example('$0 enqueue sendEmail --payload \'{"to":"ada@example.com"}\'', 'enqueue one job')
        .example('$0 enqueue buildReport --payload @report.json --queue reports --priority high --delay 10m', 'every option')
        .example('echo \'{"n":1}\' | $0 enqueue count --payload -', 'payload from stdin')
        .example('$0 enqueue sendSummary --depends-on 41,42', 'runs once jobs 41 and 42 completed'),
    async (argv) => {
      const spec: DependentJobSpec = { task: argv.task };
      const payload = readPayload(argv.payload);
      if (payload !== undefined) spec.payload = payload;
      if (argv.queue !== undefined) spec.queue = argv.queue;
      if (argv.priority !== undefined) spec.priority = argv.priority;
      if (argv['run-at'] !== undefined) spec.runAt = readTimestamp('run-at', argv['run-at']).toISOString();
      if (argv.delay !== undefined) spec.delay = readDuration('delay', argv.delay);
      if (argv['max-attempts'] !== undefined) {
        if (!Number.isInteger(argv['max-attempts'])) throw new UsageError('--max-attempts must be a whole number, e.g. --max-attempts 3');
        spec.maxAttempts = argv['max-attempts'];
      }
      if (argv.timeout !== undefined) spec.timeout = readDuration('timeout', argv.timeout);
      if (argv['idempotency-key'] !== undefined) spec.idempotencyKey = argv['idempotency-key'];
      if (argv['depends-on'] !== undefined) spec.dependsOn = readDependsOn([argv['depends-on']].flat());
      const result = await withClient(argv, ({ client }) => client.enqueue(spec)).catch((error: unknown) => {
        throw inFlagWords(error);
      });
      if (argv.json) return printJson(result);
      print(result.duplicate ? `job ${result.id} already exists with idempotency key ${JSON.stringify(spec.idempotencyKey)}` : `enqueued job ${result.id}`);
    },
  );
}

/** The client API's field names, as the flags that set them. */
const FLAG_OF_FIELD: Record<string, string> = {
  queue: '--queue',
  payload: '--payload',
  priority: '--priority',
  runAt: '--run-at',
  delay: '--delay',
  maxAttempts: '--max-attempts',
  timeout: '--timeout',
  idempotencyKey: '--idempotency-key',
  dependsOn: '--depends-on',
};

/** A refusal of the client API, in the words of the command line: "--max-attempts must be at least 1". */
function inFlagWords(error: unknown): unknown {
  // A dependency the jobs' state refuses says so in its own words, and stays a refusal (exit 1).
  if (!(error instanceof ValidationError) || error instanceof DependencyRefusedError) return error;
  const flag = FLAG_OF_FIELD[error.field];
  if (flag === undefined) return error;
  const message = error.message.replace(new RegExp(`^invalid ${error.field}: `), '').replaceAll(error.field, flag);
  return new ValidationError(error.field, message);
}

/** `--depends-on 41 --depends-on 42` or `--depends-on 41,42`: job ids, each checked here so the error names the flag. */
function readDependsOn(values: readonly string[]): number[] {
  return values.flatMap((value) =>
    value.split(',').map((part) => {
      const text = part.trim();
      if (!/^[1-9]\d{0,17}$/.test(text) || !Number.isSafeInteger(Number(text))) {
        throw new UsageError(`--depends-on ${JSON.stringify(text)} is not a job id; give ids of existing jobs, repeated or comma separated, e.g. --depends-on 41,42`);
      }
      return Number(text);
    }),
  );
}
