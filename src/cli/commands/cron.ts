import { DateTime } from 'luxon';
import type { Argv } from 'yargs';
import { toCronScheduleWrite, type CronScheduleInfo, type CronScheduleSpec } from '../../shared/cron-admin.js';
import { CATCH_UP_POLICIES, type CatchUpPolicy } from '../../shared/cron-schedule.js';
import { ValidationError } from '../../shared/errors.js';
import { PRIORITIES } from '../../shared/job-state.js';
import { UsageError, configFromFlags, withClient, type CommonFlags } from '../context.js';
import { formatDuration, formatRelative, formatTime, print, printJson, printTable } from '../format.js';
import { readDuration, readPayload } from '../input.js';

const MAX_NEXT = 100;

/** Spec fields as the flags that set them, so a validation error names what the operator typed. */
const FLAG_OF_FIELD: Record<string, string> = {
  name: 'NAME',
  expression: '--expression',
  timezone: '--tz',
  task: '--task',
  queue: '--queue',
  payload: '--payload',
  priority: '--priority',
  maxAttempts: '--max-attempts',
  timeout: '--timeout',
  catchUp: '--catch-up',
  backfillLimit: '--backfill-limit',
};

/** Validates a spec before connecting; a ValidationError is rewritten to name the flag (exit 2). */
function validateSpec(spec: CronScheduleSpec, maxPayloadBytes: number): void {
  try {
    toCronScheduleWrite(spec, '', maxPayloadBytes);
  } catch (error) {
    if (!(error instanceof ValidationError)) throw error;
    const flag = FLAG_OF_FIELD[error.field];
    if (!flag) throw error;
    const message = error.message
      .replace(new RegExp(`^invalid ${error.field}: `), '')
      .replace(/\bmaxAttempts\b/g, '--max-attempts')
      .replace(/\bbackfillLimit\b/g, '--backfill-limit')
      .replace(/\bcatchUp "backfill"/g, '--catch-up backfill')
      .replace(/\bcatchUp\b/g, '--catch-up');
    throw new ValidationError(error.field, message.startsWith(flag) || flag === 'NAME' ? message : `${flag}: ${message}`);
  }
}

/** A whole-number flag, checked before it reaches the spec (yargs turns "abc" into NaN). */
function readWholeNumber(flag: string, value: number, { min, max }: { min: number; max: number }): number {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new UsageError(`--${flag} must be a whole number from ${min} to ${max}; got ${Number.isNaN(value) ? 'something else' : value}`);
  }
  return value;
}

function readNext(value: number | undefined, fallback: number): number {
  return value === undefined ? fallback : readWholeNumber('next', value, { min: 0, max: MAX_NEXT });
}

/** "2026-03-08 03:30:00 EDT" in the schedule's zone. */
export function formatInZone(date: Date, timezone: string): string {
  return DateTime.fromJSDate(date, { zone: timezone }).setLocale('en-US').toFormat('yyyy-MM-dd HH:mm:ss ZZZZ');
}

/** The same instant on this machine's clock (TZ), with its zone. */
export function formatLocal(date: Date): string {
  return DateTime.fromJSDate(date).setLocale('en-US').toFormat('yyyy-MM-dd HH:mm:ss ZZZZ');
}

/** The JSON form: the client's schedule, plus the next runs written in the schedule's zone. */
function toJson(schedule: CronScheduleInfo) {
  return {
    ...schedule,
    nextRunsInZone: schedule.nextRuns.map((run) => DateTime.fromJSDate(run, { zone: schedule.timezone }).toISO()),
  };
}

function describeCatchUp(schedule: Pick<CronScheduleInfo, 'catchUp' | 'backfillLimit'>): string {
  return schedule.catchUp === 'backfill' ? `backfill (at most ${schedule.backfillLimit})` : schedule.catchUp;
}

/** `now`: the database's clock, which relative times are measured from (this machine's may be off). */
function printScheduleTable(schedules: readonly CronScheduleInfo[], now: Date): void {
  const runs = (schedule: CronScheduleInfo, format: (run: Date) => string) =>
    !schedule.enabled ? '(paused)' : schedule.nextRuns.length > 0 ? schedule.nextRuns.map(format).join(', ') : '(none within ten years)';
  printTable(
    schedules,
    [
      { header: 'NAME', value: (s) => s.name },
      { header: 'STATE', value: (s) => (s.enabled ? 'active' : 'paused') },
      { header: 'EXPRESSION', value: (s) => s.expression },
      { header: 'ZONE', value: (s) => s.timezone },
      { header: 'TASK', value: (s) => s.task },
      { header: 'QUEUE', value: (s) => s.queue },
      { header: 'CATCH-UP', value: (s) => describeCatchUp(s) },
      { header: 'NEXT RUN (ZONE)', value: (s) => runs(s, (run) => formatInZone(run, s.timezone)) },
      { header: 'NEXT RUN (LOCAL)', value: (s) => runs(s, formatLocal) },
      { header: 'LAST ENQUEUED', value: (s) => (s.lastEnqueuedAt ? formatRelative(s.lastEnqueuedAt, now.getTime()) : '') },
    ],
    '(no cron schedules: add one with `wida cron add NAME --expression EXPR --task T`)',
  );
}

function printScheduleDetail(schedule: CronScheduleInfo, now: Date): void {
  const field = (name: string, value: string | number | null | undefined) => {
    if (value !== null && value !== undefined && value !== '') print(`${`${name}:`.padEnd(16)}${value}`);
  };
  field('schedule', schedule.name);
  field('state', schedule.enabled ? 'active' : 'paused (no slots are enqueued; `wida cron resume` restarts it)');
  field('expression', schedule.expression);
  field('time zone', schedule.timezone);
  field('task', schedule.task);
  field('queue', schedule.queue);
  field('priority', schedule.priority);
  field('payload', JSON.stringify(schedule.payload));
  field('max attempts', schedule.maxAttempts ?? 'default');
  field('timeout', schedule.timeoutMs === null ? 'default' : formatDuration(schedule.timeoutMs));
  field('catch-up', describeCatchUp(schedule));
  field('last slot', schedule.lastSlot ? `${formatInZone(schedule.lastSlot, schedule.timezone)} (${formatTime(schedule.lastSlot)})` : 'none yet');
  field('last enqueued', schedule.lastEnqueuedAt ? `${formatTime(schedule.lastEnqueuedAt)} (${formatRelative(schedule.lastEnqueuedAt, now.getTime())})` : 'never');
  field('created', formatTime(schedule.createdAt));
  field('updated', formatTime(schedule.updatedAt));
  print();
  if (!schedule.enabled) {
    print('next runs: none while paused');
    return;
  }
  print(`next runs (in ${schedule.timezone}, and on this machine's clock):`);
  printTable(
    schedule.nextRuns,
    [
      { header: 'IN ZONE', value: (run) => formatInZone(run, schedule.timezone) },
      { header: 'LOCAL', value: (run) => formatLocal(run) },
      { header: 'IN', value: (run) => formatRelative(run, now.getTime()) },
    ],
    '  (none within ten years)',
  );
}

function nameArgument<T>(y: Argv<T>) {
  return y.positional('name', { type: 'string', demandOption: true, describe: 'the schedule\'s name' });
}

export function cronCommand(yargs: Argv<CommonFlags>) {
  return yargs.command('cron', 'cron schedules: add, list, show, rm, pause, resume, trigger', (y) =>
    y
      .command(
        'add <name>',
        'create a cron schedule, or update the one with this name',
        (add) =>
          nameArgument(add)
            .option('expression', { type: 'string', demandOption: true, requiresArg: true, describe: '5 fields (minute hour day-of-month month day-of-week), or 6 with seconds first' })
            .option('tz', { type: 'string', requiresArg: true, describe: 'IANA time zone the expression is read in (default UTC)' })
            .option('task', { type: 'string', demandOption: true, requiresArg: true, describe: 'the task each slot enqueues' })
            .option('queue', { type: 'string', requiresArg: true, describe: 'queue (default "default")' })
            .option('payload', { type: 'string', requiresArg: true, describe: 'JSON, @file.json, or - to read stdin' })
            .option('priority', { choices: PRIORITIES, describe: 'priority of the jobs (default normal)' })
            .option('max-attempts', { type: 'number', requiresArg: true, describe: 'attempts before a job goes to the DLQ (default 5)' })
            .option('timeout', { type: 'string', requiresArg: true, describe: 'per-attempt timeout, e.g. 30s, 5m' })
            .option('catch-up', { choices: CATCH_UP_POLICIES as CatchUpPolicy[], describe: 'slots missed while no agent led: skip (default), once, backfill' })
            .option('backfill-limit', { type: 'number', requiresArg: true, describe: 'with --catch-up backfill: at most this many missed slots (default 100)' })
            .option('paused', { type: 'boolean', describe: 'create it paused (--no-paused: resume it); omitted, an existing schedule keeps its state' })
            .example('$0 cron add nightly-report --expression "30 2 * * *" --tz America/New_York --task buildReport', 'every night at 02:30 New York time')
            .example('$0 cron add tick --expression "*/10 * * * * *" --task tick --queue fast --catch-up once', 'every 10 seconds'),
        async (argv) => {
          const spec: CronScheduleSpec = { name: argv.name, expression: argv.expression, task: argv.task };
          if (argv.tz !== undefined) spec.timezone = argv.tz;
          if (argv.queue !== undefined) spec.queue = argv.queue;
          const payload = readPayload(argv.payload);
          if (payload !== undefined) spec.payload = payload;
          if (argv.priority !== undefined) spec.priority = argv.priority;
          if (argv['max-attempts'] !== undefined) spec.maxAttempts = readWholeNumber('max-attempts', argv['max-attempts'], { min: 1, max: 1000 });
          if (argv.timeout !== undefined) spec.timeout = readDuration('timeout', argv.timeout);
          if (argv['catch-up'] !== undefined) spec.catchUp = argv['catch-up'];
          if (argv['backfill-limit'] !== undefined) spec.backfillLimit = readWholeNumber('backfill-limit', argv['backfill-limit'], { min: 1, max: 1000 });
          if (argv.paused !== undefined) spec.enabled = !argv.paused;
          validateSpec(spec, configFromFlags(argv).WIDA_MAX_PAYLOAD_BYTES);
          const { schedule, created } = await withClient(argv, ({ client }) => client.addCronSchedule(spec));
          if (argv.json) return printJson({ created, schedule: toJson(schedule) });
          const next = schedule.nextRuns[0];
          const when = !schedule.enabled
            ? 'paused'
            : next
              ? `next run ${formatInZone(next, schedule.timezone)} (${formatLocal(next)} local)`
              : 'no run within ten years';
          print(`${created ? 'created' : 'updated'} cron schedule ${schedule.name}; ${when}`);
        },
      )
      .command(
        'list',
        'list cron schedules with their next runs, in each schedule\'s zone and in local time',
        (list) =>
          list
            .option('next', { type: 'number', requiresArg: true, describe: 'next runs to show per schedule (default 1)' })
            .example('$0 cron list', 'every schedule and its next run')
            .example('$0 cron list --next 3', 'the next three runs of each'),
        async (argv) => {
          const nextRuns = readNext(argv.next, 1);
          const [schedules, now] = await withClient(argv, ({ client }) => Promise.all([client.listCronSchedules({ nextRuns }), client.databaseNow()]));
          if (argv.json) return printJson(schedules.map(toJson));
          printScheduleTable(schedules, now);
        },
      )
      .command(
        'show <name>',
        'show one schedule: every setting, its last slot, and its next runs',
        (show) =>
          nameArgument(show)
            .option('next', { type: 'number', requiresArg: true, describe: 'next runs to show (default 5)' })
            .example('$0 cron show nightly-report', 'one schedule'),
        async (argv) => {
          const nextRuns = readNext(argv.next, 5);
          const [schedule, now] = await withClient(argv, ({ client }) => Promise.all([client.getCronSchedule(argv.name, { nextRuns }), client.databaseNow()]));
          if (argv.json) return printJson(toJson(schedule));
          printScheduleDetail(schedule, now);
        },
      )
      .command(
        'rm <name>',
        'remove a schedule (jobs it already enqueued stay)',
        (rm) => nameArgument(rm).example('$0 cron rm nightly-report', 'remove one schedule'),
        async (argv) => {
          await withClient(argv, ({ client }) => client.removeCronSchedule(argv.name));
          if (argv.json) return printJson({ name: argv.name, removed: true });
          print(`removed cron schedule ${argv.name}`);
        },
      )
      .command(
        'pause <name>',
        'stop enqueuing a schedule\'s slots (the paused time is not caught up on resume)',
        (pause) => nameArgument(pause).example('$0 cron pause nightly-report', 'pause one schedule'),
        async (argv) => {
          await withClient(argv, ({ client }) => client.pauseCronSchedule(argv.name));
          if (argv.json) return printJson({ name: argv.name, paused: true });
          print(`paused cron schedule ${argv.name}`);
        },
      )
      .command(
        'resume <name>',
        'enqueue a paused schedule\'s slots again, from now on',
        (resume) => nameArgument(resume).example('$0 cron resume nightly-report', 'resume one schedule'),
        async (argv) => {
          await withClient(argv, ({ client }) => client.resumeCronSchedule(argv.name));
          if (argv.json) return printJson({ name: argv.name, paused: false });
          print(`resumed cron schedule ${argv.name}`);
        },
      )
      .command(
        'trigger <name>',
        'enqueue the schedule\'s job now, outside its slots (paused schedules too); prints the job id',
        (trigger) => nameArgument(trigger).example('$0 cron trigger nightly-report', 'run it now'),
        async (argv) => {
          const { jobId } = await withClient(argv, ({ client }) => client.triggerCronSchedule(argv.name));
          if (argv.json) return printJson({ name: argv.name, jobId });
          print(`enqueued job ${jobId} from cron schedule ${argv.name}`);
        },
      )
      .demandCommand(1, 'name a cron command: add, list, show, rm, pause, resume or trigger'),
  );
}
