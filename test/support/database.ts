import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, inject } from 'vitest';
import { createClient, type WidaClient } from '../../src/shared/client.js';
import { migrateUp } from '../../src/shared/db/migrate.js';
import { SchemaDb } from '../../src/shared/db/sql.js';

export interface TestSchema {
  url: string;
  schema: string;
  pool: pg.Pool;
  db: SchemaDb;
  client: WidaClient;
}

/**
 * A fresh, migrated schema for one test file, dropped when the file is done. The returned object is
 * filled in beforeAll, so read its fields inside tests and hooks.
 */
export function useTestSchema(prefix = 't'): TestSchema {
  const context = {} as TestSchema;
  beforeAll(async () => {
    context.url = inject('databaseUrl');
    context.schema = `${prefix}_${randomBytes(4).toString('hex')}`;
    await migrateUp(context.url, context.schema);
    context.pool = new pg.Pool({ connectionString: context.url, max: 5 });
    context.db = new SchemaDb(context.pool, context.schema);
    context.client = createClient({ pool: context.pool, schema: context.schema });
  });
  afterAll(async () => {
    if (!context.pool) return;
    await context.pool.query(`DROP SCHEMA IF EXISTS "${context.schema}" CASCADE`);
    await context.pool.end();
  });
  return context;
}

/** Runs `body` in a transaction that is always rolled back: query tests leave nothing behind. */
export async function inRolledBackTransaction<T>(t: TestSchema, body: (db: SchemaDb, client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await t.pool.connect();
  try {
    await client.query('BEGIN');
    return await body(t.db.on(client), client);
  } finally {
    await client.query('ROLLBACK');
    client.release();
  }
}

/** Waits until `check` returns a truthy value, polling every 20 ms; fails with `what` after `timeoutMs`. */
export async function waitFor<T>(what: string, check: () => Promise<T> | T, timeoutMs = 10_000): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Waits until a backend (`waiterPid`, or any) waits for a lock that backend `holderPid` holds: a race set up without sleeps. */
export async function waitUntilBlockedBy(t: TestSchema, holderPid: number, waiterPid?: number): Promise<void> {
  await waitFor(`${waiterPid === undefined ? 'a backend' : `backend ${waiterPid}`} to wait for a lock of backend ${holderPid}`, async () => {
    const { rowCount } = await t.pool.query(
      'SELECT 1 FROM pg_stat_activity WHERE $1::integer = ANY(pg_blocking_pids(pid)) AND ($2::integer IS NULL OR pid = $2)',
      [holderPid, waiterPid ?? null],
    );
    return rowCount !== null && rowCount > 0;
  });
}

/** Counts jobs by state in the test schema. */
export async function countByState(t: TestSchema): Promise<Record<string, number>> {
  const { rows } = await t.pool.query(`SELECT state, count(*)::int AS n FROM "${t.schema}".jobs GROUP BY state`);
  return Object.fromEntries(rows.map((row) => [row.state, row.n]));
}
