import pg from 'pg';
import { DatabaseUnavailableError } from '../errors.js';
import { withTimeout } from '../with-timeout.js';
import { sessionsAlive } from './queries/sessions.js';

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
  // Every client of the pool, connecting ones too (the pool's 'connect' event comes only once connected), for closePool.
  const clients = new Set<pg.Client>();
  poolConfig.Client = class TrackedClient extends pg.Client {
    constructor(config?: string | pg.ClientConfig) {
      super(config);
      clients.add(this);
      this.on('end', () => clients.delete(this));
    }
  };
  const pool = new pg.Pool(poolConfig);
  pool.on('error', () => {
    // An idle client lost its connection; the pool drops it and the next query opens a new one.
  });
  trackedPools.set(pool, { connectionString, clients });
  return pool;
}

const trackedPools = new WeakMap<pg.Pool, { connectionString: string; clients: Set<pg.Client> }>();

/**
 * Ends a pool made by createPool, waiting up to `ms` for it; then closes outright the connections whose server
 * session is gone or cannot be asked about, since `end()` would wait for each: for a query on a connection gone
 * silent (until its query timeout, the lease or longer) and for every goodbye, and those sockets keep the process
 * alive meanwhile. A connection whose session the server still has is left to finish: it may be a release waiting
 * for a row lock, and cutting it would cost its jobs an attempt. Resolves when the pool has ended, or with such
 * work still going on after another `ms` at most.
 */
export async function closePool(pool: pg.Pool, ms: number): Promise<void> {
  const ended = pool.end();
  const tracked = trackedPools.get(pool);
  if (!tracked) return ended;
  await withTimeout(ended, ms).catch(async () => {
    const live = await liveSessions(tracked.connectionString, [...tracked.clients], ms);
    for (const client of tracked.clients) if (!live.has(processId(client) ?? -1)) destroySocket(client);
    await withTimeout(ended, ms).catch(() => {});
  });
}

/** The backend pids among the clients' that the server still has, asked on a connection of its own (none if it cannot answer). */
async function liveSessions(connectionString: string, clients: pg.Client[], ms: number): Promise<Set<number>> {
  const pids = clients.map(processId).filter((pid): pid is number => pid !== undefined);
  if (pids.length === 0) return new Set();
  const probe = new pg.Client({ connectionString, connectionTimeoutMillis: ms, query_timeout: ms });
  probe.on('error', () => {});
  try {
    await probe.connect();
    return await sessionsAlive(probe, pids);
  } catch {
    return new Set();
  } finally {
    await closeConnection(probe, ms);
  }
}

function processId(client: pg.Client): number | undefined {
  return (client as unknown as { processID?: number }).processID ?? undefined;
}

/** Closes the client's socket at once: what it waits for fails, and the server ends the session when it notices. */
export function destroySocket(client: pg.ClientBase): void {
  (client as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy();
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
  await withTimeout(client.end(), ms).catch(() => destroySocket(client));
}
