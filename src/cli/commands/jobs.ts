import type { Argv } from 'yargs';
import type { JobRow } from '../../shared/admin.js';
import { FINAL_STATES, priorityFromNumber } from '../../shared/job-state.js';
import { withClient, type CommonFlags } from '../context.js';
import { formatDuration, formatRelative, formatTime, print, printJson, printTable, truncate } from '../format.js';
import { readBeforeId, readJobIds, readLimit, readStates } from '../input.js';

export function jobsCommand(yargs: Argv<CommonFlags>) {
  return yargs.command('jobs', 'list jobs, or show one with its attempts', (y) =>
    y
      .command(
        'list',
        'list jobs, newest first',
        (list) =>
          list
            .option('state', { type: 'string', requiresArg: true, describe: 'only these states, comma-separated (pending, running, dead, ...)' })
            .option('queue', { type: 'string', describe: 'only this queue' })
            .option('task', { type: 'string', describe: 'only this task' })
            .option('text', { type: 'string', requiresArg: true, describe: 'only jobs whose task, payload or last error contains this text' })
            .option('limit', { type: 'number', requiresArg: true, default: 50, describe: 'at most this many (up to 1000)' })
            .option('before', { type: 'string', requiresArg: true, describe: 'only jobs older than this id: the next page after a listing' })
            .example('$0 jobs list --state dead,cancelled --queue emails', 'failed work in one queue')
            .example('$0 jobs list --limit 1000 --before 51234', 'the next 1000 after job 51234')
            .example('$0 jobs list --task sendEmail --limit 10 --json', 'as JSON')
            .example('$0 jobs list --text "connection refused"', 'jobs whose payload or error mentions it'),
        async (argv) => {
          const filter = {
            states: readStates(argv.state),
            queue: argv.queue,
            task: argv.task,
            text: argv.text,
            limit: readLimit(argv.limit),
            beforeId: readBeforeId(argv.before),
          };
          const [jobs, now] = await withClient(argv, ({ client }) => Promise.all([client.listJobs(filter), client.databaseNow()]));
          if (argv.json) return printJson(jobs);
          printJobTable(jobs, now);
        },
      )
      .command(
        'show <id>',
        'show one job: payload, every attempt with its error, timings, lease holder',
        (show) => show.positional('id', { type: 'string', demandOption: true, describe: 'job id' }).example('$0 jobs show 42', 'one job'),
        async (argv) => {
          const [id] = readJobIds([argv.id]);
          const [job, now] = await withClient(argv, ({ client }) => Promise.all([client.getJob(id), client.databaseNow()]));
          if (argv.json) return printJson(job);
          printJobDetail(job, now);
        },
      )
      .demandCommand(1, 'name a jobs command: list or show'),
  );
}

/** `now`: the database's clock, which relative times ("in 5m") are measured from, as the agents measure them. */
export function printJobTable(jobs: readonly JobRow[], now: Date, empty = '(no jobs)'): void {
  printTable(
    jobs,
    [
      { header: 'ID', value: (job) => job.id, right: true },
      { header: 'QUEUE', value: (job) => job.queue },
      { header: 'TASK', value: (job) => job.task },
      { header: 'STATE', value: (job) => job.state },
      { header: 'PRIORITY', value: (job) => priorityFromNumber(job.priority) },
      { header: 'ATTEMPT', value: (job) => `${job.attempt}/${job.maxAttempts}` },
      { header: 'RUN AT', value: (job) => (job.state === 'pending' ? formatRelative(job.runAt, now.getTime()) : '') },
      { header: 'CREATED', value: (job) => formatRelative(job.createdAt, now.getTime()) },
      { header: 'LAST ERROR', value: (job) => truncate(job.lastError, 50) },
    ],
    empty,
  );
}

export function printJobDetail(job: JobRow, now: Date): void {
  const field = (name: string, value: string | number | null | undefined) => {
    if (value !== null && value !== undefined && value !== '') print(`${`${name}:`.padEnd(17)}${value}`);
  };
  field('job', job.id);
  field('task', job.task);
  field('queue', job.queue);
  field('state', job.state);
  field('priority', priorityFromNumber(job.priority));
  field('attempt', `${job.attempt} of ${job.maxAttempts}${job.replayCount > 0 ? ` (replayed ${job.replayCount}x)` : ''}`);
  field('created', formatTime(job.createdAt));
  // A finished job will not run again: its run_at (the last backoff's) is not a time to wait for.
  const finished = (FINAL_STATES as readonly string[]).includes(job.state);
  field('run at', finished ? formatTime(job.runAt) : `${formatTime(job.runAt)} (${formatRelative(job.runAt, now.getTime())})`);
  if (job.state === 'waiting') field('waiting for', `${job.pendingDeps} unfinished ${job.pendingDeps === 1 ? 'dependency' : 'dependencies'}`);
  field('blocked', job.blockedReason);
  field('started', job.startedAt ? formatTime(job.startedAt) : null);
  field('finished', job.finishedAt ? formatTime(job.finishedAt) : null);
  if (job.startedAt && job.finishedAt) field('took', formatDuration(new Date(job.finishedAt).getTime() - new Date(job.startedAt).getTime()));
  // claimed_by stays after a run ends (who ran it last); only a running job holds a lease.
  if (job.state === 'running' && job.claimedBy) field('lease holder', `${job.claimedBy} until ${formatTime(job.leaseExpiresAt)} (epoch ${job.leaseEpoch})`);
  field('timeout', job.timeoutMs === null ? null : formatDuration(job.timeoutMs));
  field('backoff', `${job.backoff.strategy}, base ${formatDuration(job.backoff.baseMs)}, factor ${job.backoff.factor}, max ${formatDuration(job.backoff.maxMs)}`);
  field('idempotency key', job.idempotencyKey);
  field('payload', JSON.stringify(job.payload));
  if (job.result !== null && job.result !== undefined) field('result', JSON.stringify(job.result));
  field('last error', job.lastError);
  print();
  print(`attempt log (${job.attemptLog.length} ${job.attemptLog.length === 1 ? 'entry' : 'entries'}; a successful run is the job itself):`);
  printTable(
    job.attemptLog,
    [
      { header: 'ATTEMPT', value: (entry) => entry.attempt, right: true },
      { header: 'OUTCOME', value: (entry) => entry.outcome },
      { header: 'AGENT', value: (entry) => entry.agent },
      { header: 'AT', value: (entry) => formatTime(entry.finishedAt ?? entry.at) },
      {
        header: 'TOOK',
        value: (entry) => (entry.startedAt && entry.finishedAt ? formatDuration(entry.finishedAt.getTime() - entry.startedAt.getTime()) : ''),
      },
      { header: 'ERROR', value: (entry) => entry.error },
    ],
    '  (no failed attempts)',
  );
}
