import { loadConfig, type ConfigInput, type WidaConfig } from '../shared/config.js';
import { ConfigError, WidaError } from '../shared/errors.js';

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
