/**
 * The migrations table (which versions are applied) and the migrator's session: its lock and limits. These run on
 * the migrator's own connection, before the schema may exist, so they name the schema directly (validated by the
 * caller) and are not prepared: DDL cannot be, and each runs once per migrator session.
 */
import type pg from 'pg';
import type { Queryable } from '../sql.js';

/** How long the migrator's session waits: idle inside a transaction before the server ends it, and for locks. */
export async function migratorSessionLimits(client: pg.Client, limits: { idleInTransactionMs: number; lockMs: number }): Promise<void> {
  await client.query(`SELECT set_config('idle_in_transaction_session_timeout', $1, false), set_config('lock_timeout', $2, false)`, [
    String(limits.idleInTransactionMs),
    String(limits.lockMs),
  ]);
}

/** The lock wait for the migrations themselves, shorter than the wait for another migrator. */
export async function migratorLockTimeout(client: pg.Client, ms: number): Promise<void> {
  await client.query(`SELECT set_config('lock_timeout', $1, false)`, [String(ms)]);
}

// A session-level advisory lock per schema: two migrators of one schema never interleave; of two schemas, never wait.
export async function migrationLockTake(client: pg.Client, schema: string): Promise<void> {
  await client.query(`SELECT pg_advisory_lock(hashtext($1))`, [`wida_migrate:${schema}`]);
}

export async function migrationLockRelease(client: pg.Client, schema: string): Promise<void> {
  await client.query(`SELECT pg_advisory_unlock(hashtext($1))`, [`wida_migrate:${schema}`]);
}

/**
 * The schema and its migrations table, if not there yet. The schema's existence is asked first: PostgreSQL checks
 * the right to create schemas before IF NOT EXISTS, so a role without it could not even find nothing to do.
 */
export async function migrationsTableCreate(client: pg.Client, schema: string): Promise<void> {
  const { rows } = await client.query(
    `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1) AS schema, to_regclass(format('%I.migrations', $1::text)) IS NOT NULL AS "table"`,
    [schema],
  );
  if (!rows[0].schema) await client.query(`CREATE SCHEMA "${schema}"`);
  if (!rows[0].table) {
    await client.query(
      `CREATE TABLE IF NOT EXISTS "${schema}".migrations (
         version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`,
    );
  }
}

/** Whether the schema has a migrations table, asked without failing when it has none. */
export async function migrationsTablePresent(client: pg.Client, schema: string): Promise<boolean> {
  const { rows } = await client.query(`SELECT to_regclass($1) IS NOT NULL AS present`, [`"${schema}".migrations`]);
  return rows[0].present;
}

export interface AppliedMigration {
  /** the name it was applied under, to compare with this build's file of the same version */
  name: string;
  appliedAt: Date;
}

/** Applied versions, their names and when, oldest first. Fails (42P01, 3F000) when there is no table or schema. */
export async function migrationsApplied(client: Queryable, schema: string): Promise<Map<number, AppliedMigration>> {
  const { rows } = await client.query({ text: `SELECT version, name, applied_at FROM "${schema}".migrations ORDER BY version` });
  return new Map(rows.map((row) => [row.version as number, { name: row.name as string, appliedAt: row.applied_at as Date }]));
}

/**
 * Runs a migration file's SQL inside the caller's transaction, with the schema as the search path. No `public`: no
 * migration uses anything from it, and a function made with `SET search_path FROM CURRENT` would look there (those of
 * 0003 and 0004, migrated by earlier builds, did until 0008). pg_temp is named last so that a temporary table cannot
 * stand in for one of ours.
 */
export async function migrationScriptRun(client: pg.Client, schema: string, sql: string): Promise<void> {
  await client.query(`SET LOCAL search_path TO "${schema}", pg_temp`);
  await client.query(sql);
}

export async function migrationRecordApplied(client: pg.Client, schema: string, version: number, name: string): Promise<void> {
  await client.query(`INSERT INTO "${schema}".migrations (version, name) VALUES ($1, $2)`, [version, name]);
}

export async function migrationRecordReverted(client: pg.Client, schema: string, version: number): Promise<void> {
  await client.query(`DELETE FROM "${schema}".migrations WHERE version = $1`, [version]);
}
