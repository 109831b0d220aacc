import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { MigrationError, SchemaTooNewError } from '../errors.js';
import { validateSchemaName } from './sql.js';

export interface Migration {
  version: number;
  name: string;
  up: string;
  down: string;
}

const MIGRATIONS_DIR = fileURLToPath(new URL('../../../migrations/', import.meta.url));
const FILE = /^(\d{4})_([a-z0-9_]+)\.(up|down)\.sql$/;

/** The migrations shipped with this version, in order. Every up has a down. */
export function loadMigrations(dir = MIGRATIONS_DIR): Migration[] {
  const byVersion = new Map<number, Partial<Migration>>();
  for (const file of readdirSync(dir)) {
    const match = FILE.exec(file);
    if (!match) continue;
    const version = Number(match[1]);
    const entry = byVersion.get(version) ?? { version, name: match[2] };
    entry[match[3] as 'up' | 'down'] = readFileSync(`${dir}/${file}`, 'utf8');
    byVersion.set(version, entry);
  }
  const migrations = [...byVersion.values()].sort((a, b) => a.version! - b.version!);
  for (const m of migrations) {
    if (m.up === undefined || m.down === undefined) {
      throw new MigrationError(`migration ${m.version} (${m.name}) needs both an .up.sql and a .down.sql file`);
    }
  }
  return migrations as Migration[];
}

export function latestVersion(migrations = loadMigrations()): number {
  return migrations.length === 0 ? 0 : migrations[migrations.length - 1].version;
}

export interface MigrationStatus {
  version: number;
  name: string;
  appliedAt: Date | null;
}

/** Runs `work` on a dedicated connection holding the schema's migration lock, so two migrators never interleave. */
async function withMigrationLock<T>(connectionString: string, schema: string, work: (client: pg.Client) => Promise<T>): Promise<T> {
  validateSchemaName(schema);
  const client = new pg.Client({ connectionString, application_name: 'wida migrate' });
  await client.connect();
  try {
    await client.query(`SELECT pg_advisory_lock(hashtext($1))`, [`wida_migrate:${schema}`]);
    await client.query(`CREATE SCHEMA IF NOT EXISTS "${schema}"`);
    await client.query(
      `CREATE TABLE IF NOT EXISTS "${schema}".migrations (
         version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`,
    );
    return await work(client);
  } finally {
    await client.query(`SELECT pg_advisory_unlock(hashtext($1))`, [`wida_migrate:${schema}`]).catch(() => {});
    await client.end();
  }
}

async function appliedVersions(client: pg.Client, schema: string): Promise<Map<number, Date>> {
  const { rows } = await client.query(`SELECT version, applied_at FROM "${schema}".migrations ORDER BY version`);
  return new Map(rows.map((row) => [row.version as number, row.applied_at as Date]));
}

async function inTransaction(client: pg.Client, schema: string, sql: string, record: string, values: unknown[]): Promise<void> {
  await client.query('BEGIN');
  try {
    await client.query(`SET LOCAL search_path TO "${schema}", public`);
    await client.query(sql);
    await client.query(record, values);
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK');
    throw error;
  }
}

/** Applies every migration not yet applied, each in its own transaction. Returns the versions applied. */
export async function migrateUp(connectionString: string, schema: string, migrations = loadMigrations()): Promise<number[]> {
  return withMigrationLock(connectionString, schema, async (client) => {
    const applied = await appliedVersions(client, schema);
    const known = latestVersion(migrations);
    const newest = Math.max(0, ...applied.keys());
    if (newest > known) throw new SchemaTooNewError(newest, known);
    const done: number[] = [];
    for (const m of migrations) {
      if (applied.has(m.version)) continue;
      try {
        await inTransaction(client, schema, m.up, `INSERT INTO "${schema}".migrations (version, name) VALUES ($1, $2)`, [m.version, m.name]);
      } catch (error) {
        throw new MigrationError(`migration ${m.version} (${m.name}) failed: ${(error as Error).message}`, { cause: error });
      }
      done.push(m.version);
    }
    return done;
  });
}

/** Reverts the newest `steps` applied migrations. Returns the versions reverted. */
export async function migrateDown(connectionString: string, schema: string, steps = 1, migrations = loadMigrations()): Promise<number[]> {
  return withMigrationLock(connectionString, schema, async (client) => {
    const applied = [...(await appliedVersions(client, schema)).keys()].sort((a, b) => b - a);
    const reverted: number[] = [];
    for (const version of applied.slice(0, steps)) {
      const m = migrations.find((candidate) => candidate.version === version);
      if (!m) throw new SchemaTooNewError(version, latestVersion(migrations));
      try {
        await inTransaction(client, schema, m.down, `DELETE FROM "${schema}".migrations WHERE version = $1`, [version]);
      } catch (error) {
        throw new MigrationError(`reverting migration ${m.version} (${m.name}) failed: ${(error as Error).message}`, { cause: error });
      }
      reverted.push(version);
    }
    return reverted;
  });
}

/** Every known migration and whether it is applied. Reads only: a schema that does not exist is all pending. */
export async function migrationStatus(connectionString: string, schema: string, migrations = loadMigrations()): Promise<MigrationStatus[]> {
  validateSchemaName(schema);
  const client = new pg.Client({ connectionString, application_name: 'wida migrate' });
  await client.connect();
  let applied = new Map<number, Date>();
  try {
    const { rows } = await client.query(`SELECT to_regclass($1) IS NOT NULL AS present`, [`"${schema}".migrations`]);
    if (rows[0].present) applied = await appliedVersions(client, schema);
  } finally {
    await client.end();
  }
  const known = migrations.map((m) => ({ version: m.version, name: m.name, appliedAt: applied.get(m.version) ?? null }));
  const unknown = [...applied.keys()]
    .filter((v) => !migrations.some((m) => m.version === v))
    .map((v) => ({ version: v, name: '(unknown to this version)', appliedAt: applied.get(v)! }));
  return [...known, ...unknown];
}

/** For an agent started without migrating: refuses a schema that is behind or ahead of this version. */
export async function assertSchemaCurrent(connectionString: string, schema: string): Promise<void> {
  const status = await migrationStatus(connectionString, schema);
  const known = latestVersion();
  const newest = Math.max(0, ...status.filter((s) => s.appliedAt).map((s) => s.version));
  if (newest > known) throw new SchemaTooNewError(newest, known);
  if (status.some((s) => s.appliedAt === null)) {
    throw new MigrationError(`the database schema "${schema}" is at migration ${newest} but this Wida needs ${known}; run \`wida migrate\``);
  }
}
