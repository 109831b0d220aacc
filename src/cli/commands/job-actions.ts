import type { Argv } from 'yargs';
import type { RestoredDependent, RunAgainOutcome, WaitingJob } from '../../shared/admin.js';
import type { WidaClient } from '../../shared/client.js';
import { InvalidJobStateError, WidaError } from '../../shared/errors.js';
import { withClient, type CommonFlags } from '../context.js';
import { print, printJson } from '../format.js';
import { readJobIds } from '../input.js';

interface JobAction {
  command: string;
  pastTense: string;
  describe: string;
  /** retry says where the job went (it may wait for its dependencies); cancel and drop return nothing */
  run: (client: WidaClient, id: number) => Promise<RunAgainOutcome | void>;
  /** whether a refusal means this very command already did it (a cancel's cascade reached a job named later) */
  doneBefore?: (client: WidaClient, error: WidaError, done: readonly number[]) => Promise<boolean>;
  example: string;
}

/**
 * `wida cancel 17 18` where 18 depends on 17: the cancel of 17 cancels 18 too, and 18's own cancel is then refused.
 * It was this command that cancelled it: follow its reason ("cancelled: dependency job 17 was cancelled") back,
 * level by level, to a job the command cancelled.
 */
async function cancelledByThisCommand(client: WidaClient, error: WidaError, done: readonly number[]): Promise<boolean> {
  if (!(error instanceof InvalidJobStateError) || error.state !== 'cancelled' || done.length === 0) return false;
  let id = error.jobId;
  for (let level = 0; level < 100; level++) {
    // A job of the chain may be gone (dropped, or deleted by retention): then it was not this command, and the
    // refusal stands; the ids after it are still acted on.
    const job = await client.getJob(id).catch((lookup: unknown) => {
      if (lookup instanceof WidaError) return undefined;
      throw lookup;
    });
    const cause = /^cancelled: dependency job (\d+) was cancelled$/.exec(job?.lastError ?? '');
    if (!cause) return false;
    id = Number(cause[1]);
    if (done.includes(id)) return true;
  }
  return false;
}

const ACTIONS: JobAction[] = [
  {
    command: 'retry',
    pastTense: 'retried',
    describe: 'run pending jobs now; give dead or cancelled jobs a fresh attempt budget',
    run: (client, id) => client.retryJob(id),
    example: 'retry two jobs',
  },
  {
    command: 'cancel',
    pastTense: 'cancelled',
    describe: 'cancel waiting, pending or running jobs (a running handler gets its abort signal)',
    run: (client, id) => client.cancelJob(id),
    doneBefore: cancelledByThisCommand,
    example: 'cancel two jobs',
  },
  {
    command: 'drop',
    pastTense: 'dropped',
    describe: 'delete jobs that are not running (cancel a running job first)',
    run: (client, id) => client.dropJob(id),
    example: 'delete two jobs',
  },
];

/** `wida retry|cancel|drop ID...`: each id on its own; one refusal does not stop the others, but exits 1. */
export function jobActionCommands(yargs: Argv<CommonFlags>) {
  let result = yargs;
  for (const action of ACTIONS) {
    result = result.command(
      `${action.command} <ids..>`,
      action.describe,
      (y) => y.positional('ids', { type: 'string', array: true, demandOption: true, describe: 'job ids' }).example(`$0 ${action.command} 41 42`, action.example),
      async (argv) => {
        const ids = readJobIds(argv.ids);
        const outcome = await withClient(argv, ({ client }) =>
          applyEach(ids, (id) => action.run(client, id), action.doneBefore && ((error, done) => action.doneBefore!(client, error, done))),
        );
        printDone(argv, action.pastTense, outcome, { runsAgain: action.command === 'retry' });
        reportFailures(outcome.failed);
      },
    ) as Argv<CommonFlags>;
  }
  return result;
}

export type { WaitingJob };

/** The dependents a retry or replay of job `id` brought back (its cancel had cancelled them). */
export interface RestoredBy {
  id: number;
  dependents: RestoredDependent[];
}

export interface EachOutcome {
  done: number[];
  /** those of `done` that a retry or replay left waiting */
  waiting: WaitingJob[];
  /** per job retried or replayed, the dependents it brought back (only jobs that brought back some) */
  restored: RestoredBy[];
  failed: { id: number; code: string; error: string }[];
}

/**
 * Applies `act` to each id in turn; refusals (typed Wida errors) are collected, anything else is thrown. A refusal
 * `doneBefore` says this command itself brought about counts as done, and so does one of a job an earlier id of
 * this command brought back (`wida retry 17 18`, where 18 was cancelled by 17's cancel: it waits again already).
 */
export async function applyEach(
  ids: readonly number[],
  act: (id: number) => Promise<RunAgainOutcome | void>,
  doneBefore?: (error: WidaError, done: readonly number[]) => Promise<boolean>,
): Promise<EachOutcome> {
  const outcome: EachOutcome = { done: [], waiting: [], restored: [], failed: [] };
  const broughtBack = new Set<number>();
  for (const id of ids) {
    try {
      const result = await act(id);
      outcome.done.push(id);
      if (result?.state === 'waiting') outcome.waiting.push({ id, pendingDeps: result.pendingDeps, blockedReason: result.blockedReason });
      if (result && result.restoredDependents.length > 0) {
        outcome.restored.push({ id, dependents: result.restoredDependents });
        for (const dependent of result.restoredDependents) broughtBack.add(dependent.id);
      }
    } catch (error) {
      if (!(error instanceof WidaError)) throw error;
      const cameBack = error instanceof InvalidJobStateError && broughtBack.has(id);
      if (cameBack || (doneBefore && (await doneBefore(error, outcome.done)))) outcome.done.push(id);
      else outcome.failed.push({ id, code: error.code, error: error.message });
    }
  }
  return outcome;
}

/**
 * What a per-id action did: a line per job, or JSON. Retry and replay (`runsAgain`) say which jobs wait for
 * their dependencies instead of running: "retried job 43: waiting for 1 dependency (blocked: job 42 is
 * cancelled)", and `waiting` in JSON; and which dependents came back with a job: "retried job 42; brought back 2
 * dependents its cancel had cancelled: 43, 44", and `restored` in JSON.
 */
export function printDone(flags: { json?: boolean }, pastTense: string, outcome: EachOutcome, { runsAgain = false } = {}): void {
  if (flags.json) {
    printJson({ [pastTense]: outcome.done, ...(runsAgain ? { waiting: outcome.waiting, restored: outcome.restored } : {}), failed: outcome.failed });
    return;
  }
  const waiting = new Map(outcome.waiting.map((job) => [job.id, job]));
  const restored = new Map(outcome.restored.map((job) => [job.id, job.dependents]));
  // A job named after one that brought it back was not acted on itself (its own action was refused: it waits again).
  const broughtBackBy = new Map(outcome.restored.flatMap(({ id, dependents }) => dependents.map((dependent) => [dependent.id, { by: id, dependent }] as const)));
  for (const id of outcome.done) {
    const back = broughtBackBy.get(id);
    if (back) {
      print(`job ${id} came back with job ${back.by}${back.dependent.state === 'waiting' ? `: ${describeWaiting(back.dependent)}` : ''}`);
      continue;
    }
    const job = waiting.get(id);
    const dependents = restored.get(id);
    print(`${pastTense} job ${id}${job ? `: ${describeWaiting(job)}` : ''}${dependents ? `; ${describeRestored(dependents, 'its')}` : ''}`);
  }
}

export function describeWaiting(job: WaitingJob): string {
  const count = `${job.pendingDeps} ${job.pendingDeps === 1 ? 'dependency' : 'dependencies'}`;
  return `waiting for ${count}${job.blockedReason ? ` (${job.blockedReason})` : ''}`;
}

/** "brought back 2 dependents its cancel had cancelled: 43, 44" (`whose`: its, or their for a bulk replay) */
export function describeRestored(dependents: readonly RestoredDependent[], whose: 'its' | 'their'): string {
  const count = `${dependents.length} ${dependents.length === 1 ? 'dependent' : 'dependents'}`;
  return `brought back ${count} ${whose} cancel had cancelled: ${dependents.map((dependent) => dependent.id).join(', ')}`;
}

/** One line per refusal on stderr, and exit status 1 if there was any. */
export function reportFailures(failed: EachOutcome['failed']): void {
  for (const failure of failed) process.stderr.write(`wida: ${failure.error}\n`);
  if (failed.length > 0) process.exitCode = 1;
}
