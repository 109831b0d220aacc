import type { Argv } from 'yargs';
import type { WidaClient } from '../../shared/client.js';
import { WidaError } from '../../shared/errors.js';
import { withClient, type CommonFlags } from '../context.js';
import { print, printJson } from '../format.js';
import { readJobIds } from '../input.js';

interface JobAction {
  command: string;
  pastTense: string;
  describe: string;
  run: (client: WidaClient, id: number) => Promise<void>;
  example: string;
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
        const outcome = await withClient(argv, ({ client }) => applyEach(ids, (id) => action.run(client, id)));
        if (argv.json) printJson({ [action.pastTense]: outcome.done, failed: outcome.failed });
        else for (const id of outcome.done) print(`${action.pastTense} job ${id}`);
        reportFailures(outcome.failed);
      },
    ) as Argv<CommonFlags>;
  }
  return result;
}

export interface EachOutcome {
  done: number[];
  failed: { id: number; code: string; error: string }[];
}

/** Applies `act` to each id in turn; refusals (typed Wida errors) are collected, anything else is thrown. */
export async function applyEach(ids: readonly number[], act: (id: number) => Promise<void>): Promise<EachOutcome> {
  const outcome: EachOutcome = { done: [], failed: [] };
  for (const id of ids) {
    try {
      await act(id);
      outcome.done.push(id);
    } catch (error) {
      if (!(error instanceof WidaError)) throw error;
      outcome.failed.push({ id, code: error.code, error: error.message });
    }
  }
  return outcome;
}

/** One line per refusal on stderr, and exit status 1 if there was any. */
export function reportFailures(failed: EachOutcome['failed']): void {
  for (const failure of failed) process.stderr.write(`wida: ${failure.error}\n`);
  if (failed.length > 0) process.exitCode = 1;
}
