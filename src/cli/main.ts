import yargs, { type Argv } from 'yargs';
import { hideBin } from 'yargs/helpers';
import { ConfigError, DependencyRefusedError, ValidationError } from '../shared/errors.js';
import { WIDA_VERSION } from '../shared/version.js';
import { UsageError, type CommonFlags } from './context.js';
import { agentCommand } from './commands/agent.js';
import { cronCommand } from './commands/cron.js';
import { dbCommand } from './commands/db.js';
import { demoCommand } from './commands/demo.js';
import { dlqCommand } from './commands/dlq.js';
import { enqueueCommand } from './commands/enqueue.js';
import { jobActionCommands } from './commands/job-actions.js';
import { jobsCommand } from './commands/jobs.js';
import { migrateCommand } from './commands/migrate.js';
import { queueCommands } from './commands/queues.js';
import { workersCommand } from './commands/workers.js';
import { workflowCommand } from './commands/workflow.js';
import { printable } from './format.js';

const EXIT_FAILURE = 1;
const EXIT_USAGE = 2;

type Register = (cli: Argv<CommonFlags>) => Argv<unknown>;
const COMMANDS: Register[] = [enqueueCommand, jobsCommand, jobActionCommands, queueCommands, dlqCommand, cronCommand, workflowCommand, workersCommand, agentCommand, migrateCommand, dbCommand, demoCommand];

let cli = yargs(hideBin(process.argv))
  .scriptName('wida')
  .usage('$0 <command> [options]\n\nWida: a durable job queue on PostgreSQL.')
  .option('database-url', { type: 'string', describe: 'PostgreSQL URL (WIDA_DATABASE_URL)', global: true })
  .option('schema', { type: 'string', describe: 'schema holding Wida\'s tables (WIDA_SCHEMA, default wida)', global: true })
  .option('json', { type: 'boolean', describe: 'print data as JSON', global: true })
  .option('verbose', { type: 'boolean', describe: 'print stack traces on errors', global: true })
  .example('$0 enqueue sendEmail --payload \'{"to":"ada@example.com"}\'', 'add a job')
  .example('$0 jobs list --state dead', 'list dead jobs')
  .example('$0 jobs show 42', 'one job with every attempt and its error')
  .example('$0 retry 42', 'run a dead or cancelled job again')
  .example('$0 cron add nightly --expression "30 2 * * *" --tz Europe/London --task buildReport', 'a cron schedule')
  .example('$0 workflow show 12', 'a workflow as a tree with the state of each node')
  .example('$0 agent --handlers ./tasks.js', 'run the handlers exported by tasks.js')
  .example('$0 CMD --help', 'options and examples of one command')
  .epilogue('Exit status: 0 success, 1 the operation failed or was refused, 2 usage error.\nSettings: flags, then the environment, then .env, then defaults.') as Argv<CommonFlags>;

for (const register of COMMANDS) cli = register(cli) as Argv<CommonFlags>;

/** Flags that may be given more than once; yargs turns any other repeated flag into an array no command expects. */
const REPEATABLE = new Set(['depends-on']);

/** A flag written twice (`--payload a --payload b`) is a usage error, not a crash in the command. */
function refuseRepeatedFlags(words: readonly string[]): void {
  const seen = new Set<string>();
  for (const word of words) {
    if (word === '--') return;
    const flag = /^--(?:no-)?([^=]+)/.exec(word)?.[1];
    if (flag === undefined || REPEATABLE.has(flag)) continue;
    if (seen.has(flag)) throw new UsageError(`--${flag} was given more than once; give it once`);
    seen.add(flag);
  }
}

/**
 * `--delay -1s` reads as the flags -1 and -s: say how to pass a value that starts with a dash. (A negative number
 * such as `--next -1` yargs takes as the value.)
 */
function refuseDashValues(words: readonly string[]): void {
  for (let i = 1; i < words.length; i++) {
    if (words[i - 1] === '--') return;
    if (/^-\d/.test(words[i]) && !/^-\d+(\.\d+)?$/.test(words[i]) && /^--[^=]+$/.test(words[i - 1])) {
      throw new UsageError(`${words[i - 1]} ${words[i]}: a value that starts with "-" is read as flags; write ${words[i - 1]}=${words[i]}`);
    }
  }
}

/** The CLI's boolean flags, every command's: a new switch goes here too. */
const BOOLEAN_FLAGS = new Set(['all', 'json', 'migrate', 'paused', 'verbose', 'yes']);

/** yargs reads `--paused=yes` as false: a switch given a value other than true or false is a usage error. */
function refuseBooleanValues(words: readonly string[]): void {
  for (const word of words) {
    if (word === '--') return;
    const match = /^--([^=]+)=(.*)$/.exec(word);
    if (match && BOOLEAN_FLAGS.has(match[1]) && match[2] !== 'true' && match[2] !== 'false') {
      throw new UsageError(`--${match[1]} is a switch: give it alone (or =true, =false); got ${JSON.stringify(match[2])}`);
    }
  }
}

// `wida jobs list | head`: the reader went away; what is left to print has no one to read it.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  // Nobody reads the rest: it is dropped, and the command finishes with its own exit code (exiting 0 here hid the
  // failure of an action that ran after, or before, the reader went away).
  if (error.code === 'EPIPE') return;
  throw error;
});

const verbose = process.argv.includes('--verbose');

/** Wrong input exits 2 (usage); a refusal or failure of the operation exits 1. */
function isUsageError(error: unknown): boolean {
  if (error instanceof DependencyRefusedError) return false; // well-formed, refused by the jobs' state
  return error instanceof UsageError || error instanceof ValidationError || error instanceof ConfigError;
}

/** The options every command takes (and yargs' own), as they may be written before the command. */
const GLOBAL_FLAGS = new Set(['database-url', 'schema', 'json', 'verbose', 'help', 'h', 'version']);

/**
 * `wida --bogus queues`: an unknown flag before the command takes the command word as its value, and yargs then
 * finds no command at all. Say which flag it was.
 */
function unknownFlagBeforeCommand(): string | undefined {
  const words = hideBin(process.argv);
  const at = words.findIndex((word) => word.startsWith('-') && !GLOBAL_FLAGS.has(word.replace(/^--?(no-)?/, '').split('=')[0]));
  if (at === -1) return undefined;
  const next = words[at + 1];
  const took = next !== undefined && !next.startsWith('-') && !words[at].includes('=') ? ` (it took "${next}" as its value)` : '';
  return `unknown option ${words[at].split('=')[0]}${took}; \`wida --help\` lists the commands and the options they share`;
}

/** yargs' messages, in Wida's words: say what was not understood. */
function describeUsageProblem(message: string): string {
  if (message.startsWith('name a command')) return unknownFlagBeforeCommand() ?? message;
  const words = hideBin(process.argv).filter((word) => !word.startsWith('-'));
  if (message.startsWith('Did you mean')) return `unknown command "${words[0]}"; ${message.replace(/^Did/, 'did')}`;
  const unknown = /^Unknown arguments?: (.*)$/.exec(message);
  if (unknown) return `unknown command or option: ${unknown[1]}`;
  const missingValue = /^Not enough arguments following: (.*)$/.exec(message);
  if (missingValue) return `--${missingValue[1]} needs a value`;
  const missingArgument = /^Not enough non-option arguments: got (\d+), need at least (\d+)$/.exec(message);
  if (missingArgument) {
    const command = hideBin(process.argv).filter((word) => !word.startsWith('-')).join(' ');
    return `${command} is missing an argument (got ${missingArgument[1]}, needs ${missingArgument[2]}); \`wida ${command} --help\` shows what it takes`;
  }
  return message;
}

try {
  refuseRepeatedFlags(hideBin(process.argv));
  refuseDashValues(hideBin(process.argv));
  refuseBooleanValues(hideBin(process.argv));
  await cli
    .demandCommand(1, 'name a command; `wida --help` lists them')
    .recommendCommands()
    .strict()
    .version(WIDA_VERSION)
    .help()
    .alias('h', 'help')
    .wrap(Math.min(110, process.stdout.columns || 100))
    .fail((message: string | null, error: Error | undefined) => {
      // A command's own error comes without a message: rethrown, its type decides the exit status. With a
      // message, yargs' parser or validation refused the words (a flag without its value): a usage error.
      if (error && !message) throw error;
      throw new UsageError(describeUsageProblem(message ?? String(error)));
    })
    .parseAsync();
} catch (error) {
  const usage = isUsageError(error);
  const message = error instanceof Error ? error.message : String(error);
  process.stderr.write(`wida: ${printable(message)}${error instanceof UsageError ? '\n(run `wida --help` for usage)' : ''}\n`);
  if (verbose && error instanceof Error && error.stack) process.stderr.write(`${error.stack}\n`);
  process.exitCode = usage ? EXIT_USAGE : EXIT_FAILURE;
}
