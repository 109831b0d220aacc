import type { Argv } from 'yargs';
import { type DeadFilter, type RestoredDependent, type RunAgainOutcome, type WaitingJob } from '../../shared/admin.js';
import type { WidaClient } from '../../shared/client.js';
import { RefusedError, UsageError, withClient, type CommonFlags } from '../context.js';
import { confirm } from '../confirm.js';
import { print, printJson } from '../format.js';
import { readBeforeId, readJobIds, readLimit, readSince } from '../input.js';
import { applyEach, describeRestored, describeWaiting, printDone, reportFailures } from './job-actions.js';
import { printJobDetail, printJobTable } from './jobs.js';

interface FilterFlags {
  queue?: string;
  task?: string;
  since?: string;
}

function filterOptions<T>(y: Argv<T>) {
  return y
    .option('queue', { type: 'string', describe: 'only dead jobs of this queue' })
    .option('task', { type: 'string', describe: 'only dead jobs of this task' })
    .option('since', { type: 'string', describe: 'only jobs that died since: a duration ago (1h) or an ISO 8601 time' });
}

function toDeadFilter(flags: FilterFlags): DeadFilter {
  return { queue: flags.queue, task: flags.task, ...readSince(flags.since) };
}

function describeFilter(flags: FilterFlags): string {
  const parts = [flags.queue && `queue ${flags.queue}`, flags.task && `task ${flags.task}`, flags.since && `died since ${flags.since}`].filter(Boolean);
  return parts.length > 0 ? ` (${parts.join(', ')})` : '';
}

interface BulkAction {
  name: 'replay' | 'purge';
  pastTense: string;
  describe: string;
  /** replay says where the job went (it may wait for its dependencies); purge returns nothing */
  one: (client: WidaClient, id: number) => Promise<RunAgainOutcome | void>;
  many: (client: WidaClient, filter: DeadFilter) => Promise<BulkOutcome>;
}

/** What a bulk action did; a replay also says which jobs wait for dependencies, and which dependents came back. */
interface BulkOutcome {
  done: number[];
  waiting?: WaitingJob[];
  restoredDependents?: RestoredDependent[];
}

const REPLAY: BulkAction = {
  name: 'replay',
  pastTense: 'replayed',
  describe: 'put dead jobs back to pending with a fresh attempt budget (their history stays)',
  one: (client, id) => client.replayJob(id),
  many: async (client, filter) => {
    const { replayed, waiting, restoredDependents } = await client.replayDead(filter);
    return { done: replayed, waiting, restoredDependents };
  },
};

const PURGE: BulkAction = {
  name: 'purge',
  pastTense: 'purged',
  describe: 'delete dead jobs for good',
  one: async (client, id) => {
    const [purged] = await client.purgeDead({ ids: [id] });
    if (purged === undefined) {
      const job = await client.getJob(id); // throws JobNotFoundError for an unknown id
      const instead = job.state === 'running' ? `\`wida cancel ${id}\` stops it first` : `\`wida drop ${id}\` deletes others`;
      throw new RefusedError(`job ${id} is ${job.state}, not dead; only dead jobs can be purged (${instead})`);
    }
  },
  many: async (client, filter) => ({ done: await client.purgeDead(filter) }),
};

function bulkCommand(yargs: Argv<CommonFlags>, action: BulkAction) {
  return yargs.command(
    `${action.name} [ids..]`,
    action.describe,
    (y) =>
      filterOptions(y)
        .positional('ids', { type: 'string', array: true, describe: 'dead job ids' })
        .option('all', { type: 'boolean', describe: 'every dead job (narrowed by --queue, --task, --since); asks first' })
        .option('yes', { alias: 'y', type: 'boolean', describe: 'do not ask for confirmation' })
        .example(`$0 dlq ${action.name} 41 42`, 'two dead jobs')
        .example(`$0 dlq ${action.name} --all --queue emails --since 1h`, 'every job of a queue that died in the last hour (asks first)')
        .example(`$0 dlq ${action.name} --all --yes`, 'every dead job, without asking'),
    async (argv) => {
      const ids = readJobIds(argv.ids ?? []);
      const hasFilter = argv.queue !== undefined || argv.task !== undefined || argv.since !== undefined;
      if (ids.length > 0 && (argv.all || hasFilter)) throw new UsageError('give dead job ids, or --all with filters, not both');
      if (ids.length === 0 && !argv.all) {
        throw new UsageError(`name dead job ids, or use --all (narrowed by --queue, --task, --since) to ${action.name} every match`);
      }
      await withClient(argv, async ({ client }) => {
        if (ids.length > 0) {
          const outcome = await applyEach(ids, (id) => action.one(client, id));
          printDone(argv, action.pastTense, outcome, { runsAgain: action.name === 'replay' });
          return reportFailures(outcome.failed);
        }
        // Pinned to the database's time of the count: jobs that die while the question waits are not in what was asked.
        const filter = { ...toDeadFilter(argv), finishedBefore: await client.databaseNow() };
        const matching = await client.countDead(filter, 10_001);
        const count = matching > 10_000 ? 'more than 10000' : String(matching);
        const question = `${action.name} ${count} dead job${matching === 1 ? '' : 's'}${describeFilter(argv)}?`;
        if (!(await confirm(question, argv.yes))) throw new RefusedError(`not confirmed; nothing was ${action.pastTense}`);
        const { done, waiting, restoredDependents } = await action.many(client, filter);
        if (argv.json) return printJson({ [action.pastTense]: done, ...(waiting && { waiting }), ...(restoredDependents && { restored: restoredDependents }) });
        print(`${action.pastTense} ${done.length} dead job${done.length === 1 ? '' : 's'}${describeFilter(argv)}`);
        for (const job of waiting ?? []) print(`job ${job.id}: ${describeWaiting(job)}`);
        if (restoredDependents && restoredDependents.length > 0) print(describeRestored(restoredDependents, 'their'));
      });
    },
  );
}

export function dlqCommand(yargs: Argv<CommonFlags>) {
  return yargs.command('dlq', 'the dead-letter queue: list, show, replay, purge', (y) => {
    const withList = y.command(
      'list',
      'list dead jobs, newest first',
      (list) =>
        filterOptions(list)
          .option('limit', { type: 'number', requiresArg: true, default: 50, describe: 'at most this many (up to 1000)' })
          .option('before', { type: 'string', requiresArg: true, describe: 'only jobs older than this id: the next page after a listing' })
          .example('$0 dlq list --queue emails --since 1d', 'what died in a queue today'),
      async (argv) => {
        const filter = { ...toDeadFilter(argv), limit: readLimit(argv.limit), beforeId: readBeforeId(argv.before) };
        const [jobs, now] = await withClient(argv, ({ client }) => Promise.all([client.listDead(filter), client.databaseNow()]));
        if (argv.json) return printJson(jobs);
        printJobTable(jobs, now, '(the DLQ is empty)');
      },
    );
    const withShow = withList.command(
      'show <id>',
      'show a dead job: payload and every attempt with its error',
      (show) => show.positional('id', { type: 'string', demandOption: true, describe: 'job id' }).example('$0 dlq show 42', 'one dead job'),
      async (argv) => {
        const [id] = readJobIds([argv.id]);
        const [job, now] = await withClient(argv, ({ client }) => Promise.all([client.getJob(id), client.databaseNow()]));
        if (job.state !== 'dead') throw new RefusedError(`job ${id} is ${job.state}, not in the DLQ; \`wida jobs show ${id}\` shows any job`);
        if (argv.json) return printJson(job);
        printJobDetail(job, now);
      },
    );
    return bulkCommand(bulkCommand(withShow as Argv<CommonFlags>, REPLAY), PURGE).demandCommand(1, 'name a dlq command: list, show, replay or purge');
  });
}
