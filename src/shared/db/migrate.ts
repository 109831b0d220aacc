import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { MigrationError, MigrationMismatchError, SchemaTooNewError, ValidationError } from '../errors.js';
import { closeConnection, destroySocket, unreachable } from './pool.js';
import {
  type AppliedMigration,
  migrationLockRelease,
  migrationLockTake,
  migrationRecordApplied,
  migrationRecordReverted,
  migrationScriptRun,
  migrationsApplied,
  migrationsTableCreate,
  migrationsTablePresent,
  migratorLockTimeout,
  migratorSessionLimits,
} from './queries/migrations.js';
import { validateSchemaName, type Queryable } from './sql.js';

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

/**
 * Refuses a schema in which a version this build knows was applied under another name: a fork or another branch
 * migrated it, and this build's later migrations, down scripts and queries would meet tables it did not make.
 * Checked before "too new", whose advice (use the newer Wida) would be wrong for such a schema.
 */
function assertAppliedByThisBuild(applied: Map<number, AppliedMigration>, migrations: Migration[], schema: string): void {
  for (const m of migrations) {
    const recorded = applied.get(m.version);
    if (recorded !== undefined && recorded.name !== m.name) throw new MigrationMismatchError(schema, m.version, recorded.name, m.name);
  }
}

export interface MigrationStatus {
  version: number;
  name: string;
  appliedAt: Date | null;
}

/**
 * A dedicated connection for migrating. It listens for errors: when the server ends the session between two
 * statements (a DBA's pg_terminate_backend, a failover), pg emits 'error', which unheard would crash the
 * process; the statement in flight or the next one fails instead.
 */
function migrationClient(connectionString: string): pg.Client {
  // No query timeout: a migration may rightly run long. Keepalive finds a connection dropped on the way.
  const client = new pg.Client({ connectionString, application_name: 'wida migrate', connectionTimeoutMillis: 10_000, keepAlive: true });
  client.on('error', () => {});
  return client;
}

/**
 * Connects, or says which database could not be reached (a bare "ECONNREFUSED" named nothing). Aborting `signal`
 * closes the connection outright, whatever it waits for (a lock, a server gone silent): the call in progress fails
 * and the server rolls back a migration's open transaction.
 */
async function connectMigrationClient(connectionString: string, signal?: AbortSignal): Promise<pg.Client> {
  if (signal?.aborted) throw stoppedError(signal.reason);
  const client = migrationClient(connectionString);
  const cut = () => destroySocket(client);
  signal?.addEventListener('abort', cut, { once: true });
  client.once('end', () => signal?.removeEventListener('abort', cut));
  try {
    await client.connect();
  } catch (error) {
    throw signal?.aborted ? stoppedError(error) : unreachable(connectionString, error);
  }
  return client;
}

function stoppedError(cause: unknown): MigrationError {
  return new MigrationError('the migrator was stopped before it finished; a migration it had not yet committed is rolled back', { cause });
}

/** What a migrator call failed with: when it was stopped, that it was stopped, not the closed connection's error. */
function explained(error: unknown, signal: AbortSignal | undefined): unknown {
  return signal?.aborted ? stoppedError(error) : error;
}

/** Ends the migrator's connection, closing it outright when the server does not answer the goodbye within 2 s. */
function closeMigrationClient(client: pg.Client): Promise<void> {
  return closeConnection(client, 2_000);
}

/**
 * How long a migrator waits for locks. A migration's DDL waits in the table's lock queue, and every claim and
 * enqueue queues behind it: so it waits briefly, steps aside and tries again, rather than stall the queue
 * behind one long transaction. A frozen migrator has its session ended by the server, which frees its locks.
 */
export interface MigrationLockLimits {
  /** wait for another migrator of the schema (default 60 s) */
  migratorWaitMs?: number;
  /** each try of a migration waits this long for its table locks (default 2 s) */
  tableLockMs?: number;
  /** tries per migration before giving up (default 5, one second apart) */
  tries?: number;
  /** a migrator idle this long inside its transaction is ended by the server (default 10 s) */
  idleInTransactionMs?: number;
  /** stops the migrator: see connectMigrationClient (an agent stopped while it starts) */
  signal?: AbortSignal;
}

const LOCK_NOT_AVAILABLE = '55P03';

/**
 * Runs `work` on a dedicated connection holding the schema's migration lock, so two migrators never interleave.
 * `create`: make the schema and its migrations table first (not for a revert, which must not create anything).
 */
async function withMigrationLock<T>(
  connectionString: string,
  schema: string,
  limits: MigrationLockLimits,
  work: (client: pg.Client) => Promise<T>,
  { create = true }: { create?: boolean } = {},
): Promise<T> {
  validateSchemaName(schema);
  const client = await connectMigrationClient(connectionString, limits.signal);
  try {
    await migratorSessionLimits(client, { idleInTransactionMs: limits.idleInTransactionMs ?? 10_000, lockMs: limits.migratorWaitMs ?? 60_000 });
    try {
      await migrationLockTake(client, schema);
    } catch (error) {
      if ((error as { code?: string }).code !== LOCK_NOT_AVAILABLE) throw error;
      throw new MigrationError(
        `another migrator has held the migration lock of schema "${schema}" for ${limits.migratorWaitMs ?? 60_000} ms; ` +
          `look for an application named 'wida migrate' in pg_stat_activity`,
        { cause: error },
      );
    }
    await migratorLockTimeout(client, limits.tableLockMs ?? 2_000);
    if (create) await migrationsTableCreate(client, schema);
    return await work(client);
  } catch (error) {
    throw explained(error, limits.signal);
  } finally {
    if (!limits.signal?.aborted) await migrationLockRelease(client, schema).catch(() => {});
    await closeMigrationClient(client);
  }
}

/** `inTransaction`, tried again while another session's lock keeps it waiting longer than lock_timeout. */
async function inTransactionPatiently(limits: MigrationLockLimits, ...args: Parameters<typeof inTransaction>): Promise<void> {
  const tries = limits.tries ?? 5;
  for (let attempt = 1; ; attempt++) {
    try {
      return await inTransaction(...args);
    } catch (error) {
      if ((error as { code?: string }).code !== LOCK_NOT_AVAILABLE) throw error;
      if (attempt >= tries) {
        throw new Error(
          `could not take the locks it needs in ${tries} tries of ${limits.tableLockMs ?? 2_000} ms: another session holds a ` +
            'table it changes (a long transaction? see pg_stat_activity); nothing was changed, run it again',
          { cause: error },
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 1_000));
    }
  }
}

/** Runs a migration's SQL and records it (`record`) in one transaction. */
async function inTransaction(client: pg.Client, schema: string, sql: string, record: () => Promise<void>): Promise<void> {
  await client.query('BEGIN');
  try {
    await migrationScriptRun(client, schema, sql);
    await record();
    await client.query('COMMIT');
  } catch (error) {
    // The migration's own error is the one to report: a ROLLBACK failing too (the connection was lost) hid it
    // behind "Connection terminated". The server rolls back a transaction whose connection is gone.
    await client.query('ROLLBACK').catch(() => {});
    throw error;
  }
}

/** Applies every migration not yet applied, each in its own transaction. Returns the versions applied. */
export async function migrateUp(
  connectionString: string,
  schema: string,
  migrations = loadMigrations(),
  limits: MigrationLockLimits = {},
): Promise<number[]> {
  return withMigrationLock(connectionString, schema, limits, async (client) => {
    const applied = await migrationsApplied(client, schema);
    assertAppliedByThisBuild(applied, migrations, schema);
    const known = latestVersion(migrations);
    const newest = Math.max(0, ...applied.keys());
    if (newest > known) throw new SchemaTooNewError(newest, known);
    const done: number[] = [];
    for (const m of migrations) {
      if (applied.has(m.version)) continue;
      try {
        await inTransactionPatiently(limits, client, schema, m.up, () => migrationRecordApplied(client, schema, m.version, m.name));
      } catch (error) {
        throw new MigrationError(`migration ${m.version} (${m.name}) failed: ${(error as Error).message}`, { cause: error });
      }
      done.push(m.version);
    }
    return done;
  });
}

/** Reverts the newest `steps` applied migrations. Returns the versions reverted. */
export async function migrateDown(
  connectionString: string,
  schema: string,
  steps = 1,
  migrations = loadMigrations(),
  limits: MigrationLockLimits = {},
): Promise<number[]> {
  // A negative count once reverted all but one migration (slice(0, -1)), dropping tables and their rows.
  if (!Number.isInteger(steps) || steps < 1) throw new ValidationError('steps', `steps must be a whole number of at least 1; got ${steps}`);
  return withMigrationLock(connectionString, schema, limits, async (client) => {
    const present = await migrationsTablePresent(client, schema);
    const recorded = present ? await migrationsApplied(client, schema) : new Map<number, AppliedMigration>();
    // A down script of this build run on another build's tables could drop what it never made.
    assertAppliedByThisBuild(recorded, migrations, schema);
    const applied = [...recorded.keys()].sort((a, b) => b - a);
    if (applied.length === 0) throw new MigrationError(`schema "${schema}" has no migrations applied; there is nothing to revert`);
    if (steps > applied.length) {
      throw new ValidationError(
        'steps',
        `cannot revert ${steps} migrations of schema "${schema}": ${applied.length} ${applied.length === 1 ? 'is' : 'are'} applied; nothing was reverted`,
      );
    }
    const reverted: number[] = [];
    for (const version of applied.slice(0, steps)) {
      const m = migrations.find((candidate) => candidate.version === version);
      if (!m) throw new SchemaTooNewError(version, latestVersion(migrations));
      try {
        await inTransactionPatiently(limits, client, schema, m.down, () => migrationRecordReverted(client, schema, version));
      } catch (error) {
        throw new MigrationError(`reverting migration ${m.version} (${m.name}) failed: ${(error as Error).message}`, { cause: error });
      }
      reverted.push(version);
    }
    return reverted;
  }, { create: false });
}

/**
 * Every known migration and whether it is applied. Reads only: a schema that does not exist is all pending. A schema
 * migrated by another build is refused (MigrationMismatchError): a list under this build's names would hide it.
 */
export async function migrationStatus(
  connectionString: string,
  schema: string,
  migrations = loadMigrations(),
  signal?: AbortSignal,
): Promise<MigrationStatus[]> {
  validateSchemaName(schema);
  const client = await connectMigrationClient(connectionString, signal);
  let applied = new Map<number, AppliedMigration>();
  try {
    if (await migrationsTablePresent(client, schema)) applied = await migrationsApplied(client, schema);
  } catch (error) {
    throw explained(error, signal);
  } finally {
    await closeMigrationClient(client);
  }
  assertAppliedByThisBuild(applied, migrations, schema);
  const known = migrations.map((m) => ({ version: m.version, name: m.name, appliedAt: applied.get(m.version)?.appliedAt ?? null }));
  const unknown = [...applied.keys()]
    .filter((v) => !migrations.some((m) => m.version === v))
    .map((v) => ({ version: v, name: '(unknown to this version)', appliedAt: applied.get(v)!.appliedAt }));
  return [...known, ...unknown];
}

/**
 * Whether every migration this version knows is applied and none newer, read on a connection the caller already
 * has: an agent starting against a current schema skips the migrator's own connection, lock and DDL (about
 * 25 of the 63 ms a start took). Any doubt (no table yet, a gap, a newer version) answers false, and the
 * caller takes the locked path, which sorts it out or explains it. A version applied under another name throws
 * MigrationMismatchError here, from the same read: no path sorts that out.
 */
export async function schemaIsCurrent(queryable: Queryable, schema: string, migrations = loadMigrations()): Promise<boolean> {
  validateSchemaName(schema);
  let applied: Map<number, AppliedMigration>;
  try {
    applied = await migrationsApplied(queryable, schema);
  } catch (error) {
    // 42P01: no migrations table; 3F000: no schema
    if (['42P01', '3F000'].includes((error as { code?: string }).code ?? '')) return false;
    throw error;
  }
  assertAppliedByThisBuild(applied, migrations, schema);
  const versions = [...applied.keys()];
  return versions.length === migrations.length && migrations.every((m, i) => versions[i] === m.version);
}

/** For an agent started without migrating: refuses a schema that is behind or ahead of this version, or another build's. */
export async function assertSchemaCurrent(connectionString: string, schema: string, signal?: AbortSignal): Promise<void> {
  const status = await migrationStatus(connectionString, schema, loadMigrations(), signal);
  const known = latestVersion();
  const newest = Math.max(0, ...status.filter((s) => s.appliedAt).map((s) => s.version));
  if (newest > known) throw new SchemaTooNewError(newest, known);
  if (status.some((s) => s.appliedAt === null)) {
    throw new MigrationError(`the database schema "${schema}" is at migration ${newest} but this Wida needs ${known}; run \`wida migrate\``);
  }
}
