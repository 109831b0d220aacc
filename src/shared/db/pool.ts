import pg from 'pg';
import { DatabaseUnavailableError } from '../errors.js';

export interface PoolOptions {
  max?: number;
  applicationName?: string;
}

/** A pool with keepalive and a handler for errors on idle clients (which would otherwise crash the process). */
export function createPool(connectionString: string, options: PoolOptions = {}): pg.Pool {
  const pool = new pg.Pool({
    connectionString,
    max: options.max ?? 10,
    application_name: options.applicationName ?? 'wida',
    keepAlive: true,
    connectionTimeoutMillis: 10_000,
  });
  pool.on('error', () => {
    // An idle client lost its connection; the pool drops it and the next query opens a new one.
  });
  return pool;
}

/** Fails fast with a message that names the database when it cannot be reached. */
export async function checkConnection(pool: pg.Pool, connectionString: string): Promise<void> {
  try {
    await pool.query('SELECT 1');
  } catch (error) {
    throw new DatabaseUnavailableError(
      `cannot reach the database at ${redactUrl(connectionString)}: ${(error as Error).message}; ` +
        'check WIDA_DATABASE_URL and that PostgreSQL is running',
      { cause: error },
    );
  }
}

/** The URL without its password, for messages and logs. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return '(unparseable database URL)';
  }
}
