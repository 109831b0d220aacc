import type { Argv } from 'yargs';
import { latestVersion, migrateDown, migrateUp, migrationStatus } from '../../shared/db/migrate.js';
import { confirm } from '../confirm.js';
import { configFromFlags, RefusedError, resolveDatabaseUrl, UsageError, type CommonFlags } from '../context.js';

/** What reverting a migration deletes; the others change only the schema. */
const DELETES: Record<number, string> = {
  1: 'every job, queue and agent record',
  2: 'the cron schedules',
  3: 'the workflows and job dependencies (waiting jobs are cancelled)',
};

export function migrateCommand(yargs: Argv<CommonFlags>) {
  return yargs.command(
    'migrate [direction]',
    'apply, revert or list the schema migrations',
    (y) =>
      y
        .positional('direction', { choices: ['up', 'down', 'status'] as const, default: 'up' as const, describe: 'up: apply all pending; down: revert the newest; status: list' })
        .option('steps', { type: 'number', requiresArg: true, describe: 'with down: how many migrations to revert (default 1)' })
        .option('yes', { alias: 'y', type: 'boolean', describe: 'with down: do not ask before reverting a migration that deletes data' })
        .example('$0 migrate', 'apply every pending migration')
        .example('$0 migrate down --steps 2', 'revert the two newest migrations')
        .example('$0 migrate status --json', 'list migrations and when each was applied'),
    async (argv) => {
      if (argv.steps !== undefined && (!Number.isInteger(argv.steps) || argv.steps < 1)) {
        throw new UsageError('--steps must be a whole number of at least 1: how many of the newest migrations to revert');
      }
      if (argv.steps !== undefined && argv.direction !== 'down') throw new UsageError(`--steps applies to "migrate down" only; "migrate ${argv.direction}" takes none`);
      const config = configFromFlags(argv);
      const url = await resolveDatabaseUrl(config, { migrate: false });
      const schema = config.WIDA_SCHEMA;
      if (argv.direction === 'status') {
        const status = await migrationStatus(url, schema);
        if (argv.json) return print(JSON.stringify(status, null, 2));
        for (const m of status) print(`${String(m.version).padStart(4, '0')}  ${m.name.padEnd(24)}  ${m.appliedAt ? `applied ${m.appliedAt.toISOString()}` : 'pending'}`);
        return;
      }
      if (argv.direction === 'down') await confirmDataLoss(url, schema, argv.steps ?? 1, argv.yes);
      const versions = argv.direction === 'up' ? await migrateUp(url, schema) : await migrateDown(url, schema, argv.steps ?? 1);
      if (argv.json) return print(JSON.stringify({ direction: argv.direction, versions }));
      if (versions.length === 0) print(`schema "${schema}" is up to date (migration ${latestVersion()})`);
      else print(`${argv.direction === 'up' ? 'applied' : 'reverted'} migration${versions.length > 1 ? 's' : ''} ${versions.join(', ')} in schema "${schema}"`);
    },
  );
}

/** Reverting 0001-0003 drops tables with data in them: asked first, as dlq purge does. */
async function confirmDataLoss(url: string, schema: string, steps: number, yes: boolean | undefined): Promise<void> {
  const applied = (await migrationStatus(url, schema)).filter((m) => m.appliedAt !== null).map((m) => m.version);
  const reverted = applied.sort((a, b) => b - a).slice(0, steps); // too many: migrateDown says so, reverting nothing
  const lost = reverted.filter((version) => DELETES[version] !== undefined).map((version) => DELETES[version]);
  if (lost.length === 0 || reverted.length < steps) return;
  const question = `revert migration${reverted.length > 1 ? 's' : ''} ${reverted.join(', ')} of schema "${schema}", deleting ${lost.join(', ')}?`;
  if (!(await confirm(question, yes))) throw new RefusedError('not confirmed; nothing was reverted');
}

function print(line: string): void {
  process.stdout.write(`${line}\n`);
}
