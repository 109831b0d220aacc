import pg from 'pg';
import { DatabaseUnavailableError } from '../errors.js';
import { withTimeout } from '../with-timeout.js';

export interface PoolOptions {
  max?: number;
  applicationName?: string;
  /** a statement waiting longer than this for a lock fails with 55P03 (default: waits as long as it takes) */
  lockTimeoutMs?: number;
  /**
   * a query with no answer after this long fails and its connection is dropped (default: waits as long as it
   * takes): over a connection gone silent (a partition, a frozen host) the next query then opens a new one
   */
  queryTimeoutMs?: number;
}

const CLIENT_CHECK_MS = 1_000;

/** A pool with keepalive and a handler for errors on idle clients (which would otherwise crash the process). */
export function createPool(connectionString: string, options: PoolOptions = {}): pg.Pool {
  // Run on each new connection before its first query. Not the startup `options` parameter: a URL's own
  // ?options= or PGOPTIONS would silently replace it, and poolers such as PgBouncer refuse it. Not a query sent
  // from the 'connect' event either: the pool's first query would queue behind it on the client, which pg
  // warns about on stderr (and pg 9 will refuse).
  const settings: string[] = [];
  if (options.lockTimeoutMs !== undefined) settings.push(`SET lock_timeout = ${Math.round(options.lockTimeoutMs)}`);
  // A statement given up here (query_timeout drops its connection) is given up by the server too: a backend waiting
  // for a row lock otherwise waits on with no one to answer, one more for every statement given up (PostgreSQL 14+).
  if (options.queryTimeoutMs !== undefined) settings.push(`SET client_connection_check_interval = ${CLIENT_CHECK_MS}`);
  const setup = settings.length === 0 ? undefined : settings.join('; ');
  const poolConfig: pg.PoolConfig & { onConnect?: (client: pg.PoolClient) => Promise<unknown> } = {
    connectionString,
    max: options.max ?? 10,
    application_name: options.applicationName ?? 'wida',
    keepAlive: true,
    // Probes after 10 s of silence, not the system's default of hours.
    keepAliveInitialDelayMillis: 10_000,
    connectionTimeoutMillis: 10_000,
    ...(options.queryTimeoutMs === undefined ? {} : { query_timeout: Math.round(options.queryTimeoutMs) }),
    // A failed setup ends the connection and fails the query that asked for it.
    ...(setup === undefined ? {} : { onConnect: (client) => client.query(setup) }),
  };
  const pool = new pg.Pool(poolConfig);
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
    throw unreachable(connectionString, error);
  }
}

/** The error for a database that could not be reached: it names the database (without its password) and what to check. */
export function unreachable(connectionString: string, error: unknown): DatabaseUnavailableError {
  return new DatabaseUnavailableError(
    `cannot reach the database at ${redactUrl(connectionString)}: ${(error as Error).message}; ` +
      'check WIDA_DATABASE_URL and that PostgreSQL is running',
    { cause: error },
  );
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

/**
 * Ends a dedicated client, and closes its socket outright if the server has not answered the goodbye within
 * `ms`: a server that stopped answering would keep `end()` waiting, and its session (with its locks) ends
 * only when the socket goes.
 */
export async function closeConnection(client: pg.Client, ms: number): Promise<void> {
  await withTimeout(client.end(), ms).catch(() =>
    (client as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy(),
  );
}
