import type { Argv } from 'yargs';
import { JOB_STATES } from '../../shared/job-state.js';
import { withClient, type CommonFlags } from '../context.js';
import { print, printable, printJson, printTable } from '../format.js';

export function queueCommands(yargs: Argv<CommonFlags>) {
  return yargs
    .command(
      'queues',
      'list queues: jobs by state, and whether paused',
      (y) => y.example('$0 queues', 'a table of every queue').example('$0 queues --json', 'as JSON'),
      async (argv) => {
        const queues = await withClient(argv, ({ client }) => client.listQueues());
        if (argv.json) return printJson(queues);
        printTable(
          queues,
          [
            { header: 'QUEUE', value: (queue) => queue.name },
            { header: 'PAUSED', value: (queue) => (queue.paused ? 'yes' : 'no') },
            ...JOB_STATES.map((state) => ({ header: state.toUpperCase(), value: (queue: { counts: Record<string, number> }) => queue.counts[state] ?? 0, right: true })),
          ],
          '(no queues yet: enqueue a job with `wida enqueue TASK`)',
        );
      },
    )
    .command(
      'pause <queue>',
      'stop agents from claiming jobs of a queue (running jobs finish)',
      (y) => y.positional('queue', { type: 'string', demandOption: true }).example('$0 pause emails', 'pause the emails queue'),
      async (argv) => {
        const { wasPaused, unknown } = await withClient(argv, ({ client }) => client.pauseQueue(argv.queue));
        if (unknown) {
          warn(`queue ${argv.queue} is unknown: no job, agent or cron schedule uses it; paused it all the same (check the name with \`wida queues\`)`);
        }
        if (argv.json) return printJson({ queue: argv.queue, paused: true, wasPaused, unknown });
        print(wasPaused ? `queue ${argv.queue} was already paused` : `paused queue ${argv.queue}`);
      },
    )
    .command(
      'resume <queue>',
      'let agents claim jobs of a paused queue again',
      (y) => y.positional('queue', { type: 'string', demandOption: true }).example('$0 resume emails', 'resume the emails queue'),
      async (argv) => {
        const { wasPaused, unknown } = await withClient(argv, ({ client }) => client.resumeQueue(argv.queue));
        if (!wasPaused) {
          const typo = unknown ? ', and no job, agent or cron schedule uses it (a typo?)' : '';
          warn(`queue ${argv.queue} was not paused${typo}; nothing changed (see \`wida queues\`)`);
        }
        if (argv.json) return printJson({ queue: argv.queue, paused: false, wasPaused, unknown });
        if (wasPaused) print(`resumed queue ${argv.queue}`);
      },
    );
}

/** A warning on stderr: the command did what was asked (exit 0), but the operator may have meant something else. */
function warn(message: string): void {
  process.stderr.write(`wida: warning: ${printable(message)}\n`);
}
