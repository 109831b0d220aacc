// Database housekeeping for the bench: one fresh database per system on the same server.
import pg from 'pg';

const DEFAULT_SERVER = 'postgres://postgres@127.0.0.1:5432/postgres';

/** The server under test: BENCH_DATABASE_URL (any database on it), else the local PostgreSQL. */
export function serverUrl() {
  return process.env.BENCH_DATABASE_URL || DEFAULT_SERVER;
}

/** The URL of database `name` on the bench server. */
export function databaseUrl(name) {
  const url = new URL(serverUrl());
  url.pathname = `/${name}`;
  return url.toString();
}

async function withAdmin(work) {
  const client = new pg.Client({ connectionString: databaseUrl('postgres'), application_name: 'wida bench admin' });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

/** Drops (kicking out any leftover sessions) and creates database `name`. */
export async function recreateDatabase(name) {
  await withAdmin(async (client) => {
    await client.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
    await client.query(`CREATE DATABASE "${name}"`);
  });
}

export async function dropDatabase(name) {
  await withAdmin((client) => client.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`));
}

export async function serverVersion() {
  return withAdmin(async (client) => (await client.query('SHOW server_version')).rows[0].server_version);
}

/** Flushes dirty buffers so one system's writes are not paid for by the next one's timed phase. */
export async function checkpoint() {
  await withAdmin((client) => client.query('CHECKPOINT')).catch(() => {});
}

/** A one-connection pool for the bench's own queries (counts, resets) on a system's database. */
export function monitorPool(url) {
  const pool = new pg.Pool({ connectionString: url, max: 1, application_name: 'wida bench monitor' });
  pool.on('error', () => {});
  return pool;
}

/** A one-connection pool for producers (sequential enqueues on one connection). */
export function singleConnectionPool(url, applicationName) {
  const pool = new pg.Pool({ connectionString: url, max: 1, application_name: applicationName });
  pool.on('error', () => {});
  pool.on('connect', (client) => client.on('error', () => {}));
  return pool;
}

export async function count(pool, sql, values = []) {
  const { rows } = await pool.query(sql, values);
  return Number(rows[0].count);
}

/**
 * Polls `outstanding()` until it returns 0. Resolves with the time it did so, or rejects after
 * `timeoutMs` with the last count in the message.
 */
export async function waitUntilNoneOutstanding(outstanding, { timeoutMs = 60_000, intervalMs = 5 } = {}) {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const left = await outstanding();
    if (left === 0) return performance.now();
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms with ${left} jobs not yet completed in the database`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}
