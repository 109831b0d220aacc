import { loadConfig, type ConfigInput, type WidaConfig } from '../shared/config.js';
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
  return loadConfig({ WIDA_DATABASE_URL: flags['database-url'], WIDA_SCHEMA: flags.schema, ...extra });
}

export function requireDatabaseUrl(config: WidaConfig): string {
  if (!config.WIDA_DATABASE_URL) {
    throw new ConfigError('no database configured: set WIDA_DATABASE_URL (or pass --database-url), e.g. postgres://user@localhost:5432/app');
  }
  return config.WIDA_DATABASE_URL;
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
  const databaseUrl = requireDatabaseUrl(config);
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
