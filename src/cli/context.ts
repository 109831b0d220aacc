import { resolve } from 'node:path';
import { loadConfig, readDotEnv, type ConfigInput, type WidaConfig } from '../shared/config.js';
import { ensureEmbeddedDatabase } from '../shared/db/embedded.js';
import { migrateUp } from '../shared/db/migrate.js';
import { createClient, type WidaClient } from '../shared/client.js';
import { checkConnection, createPool, redactUrl } from '../shared/db/pool.js';
import { ConfigError, MigrationError, WidaError, isUndefinedTable, sqlState } from '../shared/errors.js';

/** Flags every command shares, mapped onto config keys: flags win over environment and .env. */
export interface CommonFlags {
  'database-url'?: string;
  schema?: string;
  verbose?: boolean;
  json?: boolean;
}

export function configFromFlags(flags: CommonFlags, extra: ConfigInput = {}): WidaConfig {
  // Given empty (`--schema ''`, or `--schema "$UNSET"`) is a mistake, not a request for the default: the empty value
  // counted as unset, and the command went to the wida schema.
  for (const [flag, value] of [['schema', flags.schema], ['database-url', flags['database-url']]] as const) {
    if (typeof value === 'string' && value.trim() === '') {
      throw new ConfigError(`--${flag} was given empty; give a value, or leave the flag out to use the environment or the default`);
    }
  }
  return loadConfig({ WIDA_DATABASE_URL: flags['database-url'], WIDA_SCHEMA: flags.schema, ...extra });
}

/** Where the embedded database lives: WIDA_HOME (environment, then .env), else `.wida` here. */
export function widaHome(): string {
  return resolve(process.env.WIDA_HOME || readDotEnv().WIDA_HOME || '.wida');
}

/**
 * The configured database; with none configured, the embedded one (started, or joined if running), with
 * the schema migrated (unless `migrate` is false) so every command works on a fresh machine.
 */
export async function resolveDatabaseUrl(config: WidaConfig, { migrate = true } = {}): Promise<string> {
  if (config.WIDA_DATABASE_URL) return config.WIDA_DATABASE_URL;
  const embedded = await ensureEmbeddedDatabase(widaHome());
  if (embedded.started) {
    process.stderr.write(`wida: started the embedded PostgreSQL (data in ${embedded.home}, port ${embedded.port}); it keeps running until \`wida db stop\`\n`);
  }
  if (migrate) await migrateUp(embedded.url, config.WIDA_SCHEMA);
  return embedded.url;
}

/** Usage errors exit 2; operational refusals and failures exit 1. */
export class UsageError extends WidaError {
  constructor(message: string) {
    super('USAGE', message);
  }
}

/** A command's view of the database: the client, the config it came from, and where it points. */
export interface CommandContext {
  config: WidaConfig;
  client: WidaClient;
  databaseUrl: string;
}

/**
 * Opens a client on the configured database, checks that it answers, runs `work`, and closes the client.
 * A schema that was never migrated is reported with the command that fixes it.
 */
export async function withClient<T>(flags: CommonFlags, work: (context: CommandContext) => Promise<T>): Promise<T> {
  const config = configFromFlags(flags);
  const databaseUrl = await resolveDatabaseUrl(config);
  const pool = createPool(databaseUrl, { max: 2, applicationName: 'wida cli' });
  const client = createClient({ pool, schema: config.WIDA_SCHEMA, maxPayloadBytes: config.WIDA_MAX_PAYLOAD_BYTES });
  try {
    await checkConnection(pool, databaseUrl);
    return await work({ config, client, databaseUrl });
  } catch (error) {
    if (isUndefinedTable(error) || sqlState(error) === '3F000') {
      throw new MigrationError(
        `schema "${config.WIDA_SCHEMA}" has no Wida tables in ${redactUrl(databaseUrl)}; run \`wida migrate\` (or check WIDA_SCHEMA)`,
        { cause: error },
      );
    }
    throw error;
  } finally {
    await pool.end();
  }
}

/** An operator action the CLI would not take as asked (exit 1), e.g. a bulk action nobody confirmed. */
export class RefusedError extends WidaError {
  constructor(message: string) {
    super('REFUSED', message);
  }
}
