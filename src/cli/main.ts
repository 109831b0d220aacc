import yargs, { type Argv } from 'yargs';
import { hideBin } from 'yargs/helpers';
import { WIDA_VERSION } from '../shared/version.js';
import { UsageError, type CommonFlags } from './context.js';
import { agentCommand } from './commands/agent.js';
import { migrateCommand } from './commands/migrate.js';

const EXIT_FAILURE = 1;
const EXIT_USAGE = 2;

let cli = yargs(hideBin(process.argv))
  .scriptName('wida')
  .usage('$0 <command> [options]\n\nWida: a durable job queue on PostgreSQL.')
  .option('database-url', { type: 'string', describe: 'PostgreSQL URL (WIDA_DATABASE_URL)', global: true })
  .option('schema', { type: 'string', describe: 'schema holding Wida\'s tables (WIDA_SCHEMA, default wida)', global: true })
  .option('json', { type: 'boolean', describe: 'print data as JSON', global: true })
  .option('verbose', { type: 'boolean', describe: 'print stack traces on errors', global: true }) as Argv<CommonFlags>;

cli = migrateCommand(cli) as Argv<CommonFlags>;
cli = agentCommand(cli) as Argv<CommonFlags>;

const verbose = process.argv.includes('--verbose');

try {
  await cli
    .demandCommand(1, 'name a command; `wida --help` lists them')
    .strict()
    .version(WIDA_VERSION)
    .help()
    .alias('h', 'help')
    .wrap(Math.min(110, process.stdout.columns || 100))
    .fail((message: string, error: Error | undefined) => {
      if (error) throw error;
      throw new UsageError(message);
    })
    .parseAsync();
} catch (error) {
  const usage = error instanceof UsageError;
  const message = error instanceof Error ? error.message : String(error);
  process.stderr.write(`wida: ${message}${usage ? '\n(run `wida --help` for usage)' : ''}\n`);
  if (verbose && error instanceof Error && error.stack) process.stderr.write(`${error.stack}\n`);
  process.exitCode = usage ? EXIT_USAGE : EXIT_FAILURE;
}
