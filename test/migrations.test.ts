import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { createAgent } from '../src/agent/agent.js';
import { createClient } from '../src/shared/client.js';
import { latestVersion, loadMigrations, migrateDown, migrateUp, migrationStatus, schemaIsCurrent } from '../src/shared/db/migrate.js';
import { ConfigError, MigrationError, MigrationMismatchError, SchemaTooNewError } from '../src/shared/errors.js';
import { silentLogger } from '../src/shared/logger.js';
import { JOB_DEFAULTS } from '../src/shared/job-spec.js';
import { waitFor } from './support/database.js';

let url: string;
let pool: pg.Pool;
const created: string[] = [];

beforeAll(() => {
  url = inject('databaseUrl');
  pool = new pg.Pool({ connectionString: url, max: 3 });
});

afterEach(async () => {
  for (const schema of created.splice(0)) await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
});

afterAll(async () => {
  await pool?.end();
});

/** A schema name nobody else uses; dropped after the test. */
async function sequenceUsableByPublic(schema: string): Promise<boolean> {
  const { rows } = await pool.query(
    `SELECT EXISTS (SELECT 1 FROM pg_class c, aclexplode(c.relacl) a
                     WHERE c.oid = $1::regclass AND a.grantee = 0 AND a.privilege_type = 'USAGE') AS usable`,
    [`"${schema}".jobs_id_seq`],
  );
  return rows[0].usable;
}

function freshSchema(): string {
  const schema = `mig_${randomBytes(4).toString('hex')}`;
  created.push(schema);
  return schema;
}

/** Runs `body` while a session of the test holds the schema's migration lock, as another migrator would. */
async function whileAnotherMigratorHoldsTheLock(schema: string, body: () => Promise<void>): Promise<void> {
  const holder = await pool.connect();
  try {
    await holder.query('SELECT pg_advisory_lock(hashtext($1))', [`wida_migrate:${schema}`]);
    await body();
  } finally {
    await holder.query('SELECT pg_advisory_unlock(hashtext($1))', [`wida_migrate:${schema}`]);
    holder.release();
  }
}

async function tables(schema: string): Promise<string[]> {
  const { rows } = await pool.query(`SELECT table_name FROM information_schema.tables WHERE table_schema = $1 ORDER BY table_name`, [schema]);
  return rows.map((row) => row.table_name);
}

async function agentColumns(schema: string): Promise<string[]> {
  const { rows } = await pool.query(`SELECT column_name FROM information_schema.columns WHERE table_schema = $1 AND table_name = 'agents'`, [schema]);
  return rows.map((row) => row.column_name);
}

/** The jobs table's storage parameters (reloptions), or null when it has none. */
async function jobsStorageOptions(schema: string): Promise<string[] | null> {
  const { rows } = await pool.query(`SELECT reloptions FROM pg_class WHERE oid = to_regclass(format('%I.jobs', $1::text))`, [schema]);
  return rows[0].reloptions;
}

async function functions(schema: string): Promise<string[]> {
  const { rows } = await pool.query(
    `SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = $1 ORDER BY 1`,
    [schema],
  );
  return rows.map((row) => row.proname);
}

/** Each function's settings (pg_proc.proconfig), by name; null for one without a SET clause. */
async function functionSettings(schema: string): Promise<Record<string, string[] | null>> {
  const { rows } = await pool.query(
    `SELECT p.proname, p.proconfig FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = $1`,
    [schema],
  );
  return Object.fromEntries(rows.map((row) => [row.proname, row.proconfig]));
}

async function schemaExists(schema: string): Promise<boolean> {
  const { rowCount } = await pool.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [schema]);
  return rowCount === 1;
}

describe('migrateUp / migrateDown', () => {
  it('migrateUp on a fresh schema creates the tables and the retry_delay function; a second run applies nothing', async () => {
    const schema = freshSchema();
    expect(await migrateUp(url, schema)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(await tables(schema)).toEqual(['agents', 'cron_schedules', 'job_deps', 'jobs', 'leader', 'migrations', 'queues', 'workflows']);
    expect(await functions(schema)).toEqual(['block_dependents', 'cancel_dependents', 'delete_edges', 'release_dependents', 'retry_delay', 'unblock_dependents']);
    const { rows } = await pool.query(`SELECT indexname FROM pg_indexes WHERE schemaname = $1 AND tablename = 'jobs' ORDER BY 1`, [schema]);
    expect(rows.map((row) => row.indexname)).toEqual(
      expect.arrayContaining(['jobs_claim_order', 'jobs_cron_slot', 'jobs_idempotency_key', 'jobs_lease_expiry', 'jobs_pkey']),
    );
    expect(await migrateUp(url, schema)).toEqual([]);
  });

  it('the jobs table defaults are JOB_DEFAULTS (a batch insert leaves unset columns to the table)', async () => {
    const schema = freshSchema();
    await migrateUp(url, schema);
    const { rows } = await pool.query(
      `SELECT column_name, column_default FROM information_schema.columns WHERE table_schema = $1 AND table_name = 'jobs'`,
      [schema],
    );
    const defaults = Object.fromEntries(rows.map((row) => [row.column_name, row.column_default]));
    expect(defaults).toMatchObject({
      queue: `'${JOB_DEFAULTS.queue}'::text`,
      priority: String(JOB_DEFAULTS.priority),
      max_attempts: String(JOB_DEFAULTS.maxAttempts),
      backoff_strategy: `'${JOB_DEFAULTS.backoffStrategy}'::text`,
      backoff_base_ms: String(JOB_DEFAULTS.backoffBaseMs),
      backoff_factor: String(JOB_DEFAULTS.backoffFactor),
      backoff_max_ms: String(JOB_DEFAULTS.backoffMaxMs),
      backoff_jitter: String(JOB_DEFAULTS.backoffJitter),
      run_at: 'now()',
      payload: `'null'::jsonb`,
    });
    expect(defaults.timeout_ms).toBeNull();
    expect(defaults.idempotency_key).toBeNull();
  });

  it('migrateDown reverts (tables and function gone); migrateUp again gives a working schema', async () => {
    const schema = freshSchema();
    await migrateUp(url, schema);
    expect(await jobsStorageOptions(schema)).toEqual(['fillfactor=70']);
    expect(await sequenceUsableByPublic(schema)).toBe(true);
    expect(await migrateDown(url, schema)).toEqual([8]);
    expect(await migrateDown(url, schema)).toEqual([7]);
    expect(await sequenceUsableByPublic(schema)).toBe(false);
    expect(await migrateDown(url, schema)).toEqual([6]);
    expect(await jobsStorageOptions(schema)).toBeNull();
    expect(await migrateDown(url, schema)).toEqual([5]);
    expect(await agentColumns(schema)).not.toContain('heartbeat_interval_ms');
    expect(await migrateDown(url, schema)).toEqual([4]);
    expect(await functions(schema)).toEqual(['block_dependents', 'release_dependents', 'retry_delay']);
    expect(await migrateDown(url, schema)).toEqual([3]);
    expect(await tables(schema)).toEqual(['agents', 'cron_schedules', 'jobs', 'leader', 'migrations', 'queues']);
    expect(await migrateDown(url, schema)).toEqual([2]);
    expect(await tables(schema)).toEqual(['agents', 'jobs', 'migrations', 'queues']);
    expect(await migrateDown(url, schema)).toEqual([1]);
    expect(await tables(schema)).toEqual(['migrations']);
    expect(await functions(schema)).toEqual([]);
    await expect(migrateDown(url, schema)).rejects.toThrow(`schema "${schema}" has no migrations applied; there is nothing to revert`);

    expect(await migrateUp(url, schema)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    const client = createClient({ pool, schema });
    const { id } = await client.enqueue({ task: 'after_remigrate', payload: { ok: true } });
    expect(await client.getJob(id)).toMatchObject({ state: 'pending', payload: { ok: true } });
  });

  it('down past the scheduler and workflows with their data in place, then up again, works; waiting jobs are cancelled', async () => {
    const schema = freshSchema();
    await migrateUp(url, schema);
    const client = createClient({ pool, schema });
    await client.addCronSchedule({ name: 'nightly', expression: '0 3 * * *', task: 'report' });
    await pool.query(`INSERT INTO "${schema}".jobs (task, cron_schedule, cron_slot) VALUES ('report', 'nightly', now())`);
    const { jobs } = await client.enqueueWorkflow({ nodes: { first: { task: 'a' }, second: { task: 'b', dependsOn: ['first'] } } });
    expect(await migrateDown(url, schema, 7)).toEqual([8, 7, 6, 5, 4, 3, 2]);
    const { rows } = await pool.query(`SELECT id, state, workflow_id, pending_deps, last_error FROM "${schema}".jobs WHERE id = ANY($1::bigint[]) ORDER BY id`, [[jobs.first, jobs.second]]);
    expect(rows).toEqual([
      { id: String(jobs.first), state: 'pending', workflow_id: null, pending_deps: 0, last_error: null },
      { id: String(jobs.second), state: 'cancelled', workflow_id: null, pending_deps: 0, last_error: 'cancelled: it waited for dependencies when the workflows migration was reverted' },
    ]);
    // 0002's check (a cron slot has its schedule) failed on the job above.
    expect(await migrateUp(url, schema)).toEqual([2, 3, 4, 5, 6, 7, 8]);
    const next = await client.enqueueWorkflow({ nodes: { only: { task: 'c' } } });
    expect((await client.getJob(next.jobs.only)).workflowId).toBe(next.workflowId);
    expect((await client.getJob(jobs.first)).workflowId).toBeNull(); // not taken for a job of the new workflow with the same id
  });

  it('a role that cannot grant what migration 7 grants fails it instead of recording it; one without CREATE finds nothing to do', async () => {
    const schema = freshSchema();
    const role = `mig_role_${randomBytes(4).toString('hex')}`;
    await migrateUp(url, schema);
    expect(await migrateDown(url, schema, 2)).toEqual([8, 7]);
    await pool.query(`CREATE ROLE ${role} LOGIN`);
    try {
      await pool.query(`GRANT USAGE, CREATE ON SCHEMA "${schema}" TO ${role}; GRANT ALL ON ALL TABLES IN SCHEMA "${schema}" TO ${role}; GRANT ALL ON ALL SEQUENCES IN SCHEMA "${schema}" TO ${role}`);
      const roleUrl = new URL(url);
      roleUrl.username = role;
      // PostgreSQL only warns that it granted nothing; the migration was recorded and keyed batches failed for other roles.
      await expect(migrateUp(roleUrl.toString(), schema)).rejects.toThrow(/could not grant USAGE on sequence jobs_id_seq to PUBLIC/);
      expect(await sequenceUsableByPublic(schema)).toBe(false);
      expect(await migrateUp(url, schema)).toEqual([7, 8]);
      await pool.query(`REVOKE CREATE ON DATABASE "${new URL(url).pathname.slice(1)}" FROM PUBLIC`).catch(() => {});
      // "permission denied for database": CREATE SCHEMA IF NOT EXISTS checks the right before it looks.
      expect(await migrateUp(roleUrl.toString(), schema)).toEqual([]);
    } finally {
      await pool.query(`DROP OWNED BY ${role}; DROP ROLE ${role}`);
    }
  });

  it('migrateDown refuses a count that is not a whole number from 1 to the migrations applied, reverting nothing', async () => {
    const schema = freshSchema();
    await migrateUp(url, schema);
    for (const steps of [-1, 0, 1.5, Number.NaN]) {
      await expect(migrateDown(url, schema, steps)).rejects.toThrow(/steps must be a whole number of at least 1/);
    }
    await expect(migrateDown(url, schema, 9)).rejects.toThrow(/cannot revert 9 migrations of schema "[a-z0-9_]+": 8 are applied; nothing was reverted/);
    expect(await migrateDown(url, schema, 8)).toEqual([8, 7, 6, 5, 4, 3, 2, 1]);
  });

  it('migrateDown on a schema that does not exist says there is nothing to revert, and creates nothing', async () => {
    const schema = freshSchema();
    await expect(migrateDown(url, schema)).rejects.toMatchObject({ code: 'MIGRATION_FAILED', message: `schema "${schema}" has no migrations applied; there is nothing to revert` });
    const { rows } = await pool.query(`SELECT count(*)::int AS n FROM pg_namespace WHERE nspname = $1`, [schema]);
    expect(rows[0].n).toBe(0);
  });

  it('migrationStatus lists every known migration with when it was applied', async () => {
    const schema = freshSchema();
    const pending = [{ version: 1, name: 'core', appliedAt: null }, { version: 2, name: 'scheduler', appliedAt: null }, { version: 3, name: 'workflows', appliedAt: null }, { version: 4, name: 'dag_fixes', appliedAt: null }, { version: 5, name: 'agent_heartbeat_interval', appliedAt: null }, { version: 6, name: 'jobs_fillfactor', appliedAt: null }, { version: 7, name: 'jobs_id_sequence_usage', appliedAt: null }, { version: 8, name: 'function_search_path', appliedAt: null }];
    expect(await migrationStatus(url, schema)).toEqual(pending);
    await migrateUp(url, schema);
    const [status] = await migrationStatus(url, schema);
    expect(status).toMatchObject({ version: 1, name: 'core' });
    expect(status.appliedAt).toBeInstanceOf(Date);
    await migrateDown(url, schema, 8);
    expect(await migrationStatus(url, schema)).toEqual(pending);
  });

  it('schemaIsCurrent (the agent start-up check) is true only when exactly the known migrations are applied', async () => {
    const schema = freshSchema();
    expect(await schemaIsCurrent(pool, schema)).toBe(false);
    await pool.query(`CREATE SCHEMA "${schema}"`);
    expect(await schemaIsCurrent(pool, schema)).toBe(false);
    await migrateUp(url, schema);
    expect(await schemaIsCurrent(pool, schema)).toBe(true);
    await migrateDown(url, schema);
    expect(await schemaIsCurrent(pool, schema)).toBe(false);
    await migrateUp(url, schema);
    await pool.query(`INSERT INTO "${schema}".migrations (version, name) VALUES (9999, 'from_the_future')`);
    expect(await schemaIsCurrent(pool, schema)).toBe(false);
  });

  it('two concurrent migrateUp calls on one fresh schema both succeed and apply each migration once', async () => {
    const schema = freshSchema();
    const results = await Promise.all([migrateUp(url, schema), migrateUp(url, schema), migrateUp(url, schema)]);
    expect(results.flat()).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(results.filter((applied) => applied.length === 0)).toHaveLength(2);
    const { rows } = await pool.query(`SELECT version FROM "${schema}".migrations ORDER BY version`);
    expect(rows).toEqual([{ version: 1 }, { version: 2 }, { version: 3 }, { version: 4 }, { version: 5 }, { version: 6 }, { version: 7 }, { version: 8 }]);
  });

  it('a migration whose table a long transaction holds steps aside and gives up after its tries, saying why; nothing changed', async () => {
    const schema = freshSchema();
    await migrateUp(url, schema);
    const extra = latestVersion() + 1;
    const withExtra = [
      ...loadMigrations(),
      { version: extra, name: 'add_extra', up: 'ALTER TABLE jobs ADD COLUMN extra integer', down: 'ALTER TABLE jobs DROP COLUMN extra' },
    ];
    const blocker = await pool.connect();
    try {
      await blocker.query('BEGIN');
      await blocker.query(`SELECT 1 FROM "${schema}".jobs LIMIT 1`);
      await expect(migrateUp(url, schema, withExtra, { tableLockMs: 200, tries: 2 })).rejects.toThrow(
        new RegExp(`migration ${extra} \\(add_extra\\) failed: could not take the locks it needs in 2 tries of 200 ms`),
      );
      // Between its tries the migrator waits in no queue, so an enqueue is not held up behind it.
      await createClient({ pool, schema }).enqueue({ task: 'meanwhile' });
    } finally {
      await blocker.query('ROLLBACK');
      blocker.release();
    }
    expect((await pool.query(`SELECT max(version) AS v FROM "${schema}".migrations`)).rows[0].v).toBe(latestVersion());
    expect(await migrateUp(url, schema, withExtra)).toEqual([extra]);
  });

  it('a migrator waits for another one only so long, then says who to look for', async () => {
    const schema = freshSchema();
    await migrateUp(url, schema);
    await whileAnotherMigratorHoldsTheLock(schema, async () => {
      await expect(migrateUp(url, schema, undefined, { migratorWaitMs: 200 })).rejects.toThrow(
        /another migrator has held the migration lock of schema "[a-z0-9_]+" for 200 ms/,
      );
    });
  });

  it('a migrator whose session is terminated fails its call instead of crashing the process', async () => {
    const schema = freshSchema();
    await migrateUp(url, schema);
    await whileAnotherMigratorHoldsTheLock(schema, async () => {
      const migrating = migrateUp(url, schema);
      migrating.catch(() => {});
      const { rows } = await waitFor('the migrator to wait for the lock', async () => {
        const found = await pool.query(`SELECT pid FROM pg_stat_activity WHERE application_name = 'wida migrate' AND wait_event_type = 'Lock'`);
        return found.rows.length > 0 ? found : undefined;
      });
      await pool.query('SELECT pg_terminate_backend($1)', [rows[0].pid]);
      await expect(migrating).rejects.toThrow(/terminat/);
    });
  });

  it('a migration whose connection is lost mid-way reports why, not the ROLLBACK that could not be sent after it', async () => {
    const schema = freshSchema();
    const lost = { version: 99, name: 'connection_lost', up: 'CREATE TABLE half_done (id int);\nSELECT pg_terminate_backend(pg_backend_pid());\n', down: '' };
    const error = await migrateUp(url, schema, [...loadMigrations(), lost]).catch((e) => e);
    expect(error).toBeInstanceOf(MigrationError);
    expect(error.message).toMatch(/migration 99 \(connection_lost\) failed: terminating connection due to administrator command/);
    expect(await tables(schema)).not.toContain('half_done');
  });

  it('a failing migration is rolled back whole and reported as a MigrationError; earlier ones stay applied', async () => {
    const schema = freshSchema();
    const dir = mkdtempSync(join(tmpdir(), 'wida-migrations-'));
    try {
      const real = new URL('../migrations/', import.meta.url);
      writeFileSync(join(dir, '0001_core.up.sql'), readFileSync(new URL('0001_core.up.sql', real)));
      writeFileSync(join(dir, '0001_core.down.sql'), readFileSync(new URL('0001_core.down.sql', real)));
      writeFileSync(join(dir, '0002_broken.up.sql'), 'CREATE TABLE half_done (id int);\nSELECT no_such_function();\n');
      writeFileSync(join(dir, '0002_broken.down.sql'), 'DROP TABLE half_done;\n');
      const migrations = loadMigrations(dir);
      const error = await migrateUp(url, schema, migrations).catch((e) => e);
      expect(error).toBeInstanceOf(MigrationError);
      expect(error).toMatchObject({ code: 'MIGRATION_FAILED' });
      expect(error.message).toMatch(/migration 2 \(broken\) failed: .*no_such_function/);
      expect(await tables(schema)).toEqual(['agents', 'jobs', 'migrations', 'queues']);
      const { rows } = await pool.query(`SELECT version FROM "${schema}".migrations`);
      expect(rows).toEqual([{ version: 1 }]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('loadMigrations refuses an up without a down', () => {
    const dir = mkdtempSync(join(tmpdir(), 'wida-migrations-'));
    try {
      writeFileSync(join(dir, '0001_lonely.up.sql'), 'SELECT 1;');
      expect(() => loadMigrations(dir)).toThrow(MigrationError);
      expect(() => loadMigrations(dir)).toThrow(/0001|1 \(lonely\).*down/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('functions search only the Wida schema (migration 8)', () => {
  const PINNED = ['block_dependents', 'cancel_dependents', 'delete_edges', 'release_dependents', 'unblock_dependents'];

  function expectSearchPath(settings: Record<string, string[] | null>, searchPath: string): void {
    expect(settings).toEqual({ ...Object.fromEntries(PINNED.map((name) => [name, [`search_path=${searchPath}`]])), retry_delay: null });
  }

  it('after migrate up no function names public; down to 7 restores "<schema>, public"; up again pins it', async () => {
    const schema = freshSchema();
    await migrateUp(url, schema);
    expectSearchPath(await functionSettings(schema), `${schema}, pg_temp`);
    expect(await migrateDown(url, schema)).toEqual([8]);
    expectSearchPath(await functionSettings(schema), `${schema}, public`);
    // As a schema migrated to 7 by an earlier build is: its functions were made with the migrator's "<schema>, public".
    expect(await migrateUp(url, schema)).toEqual([8]);
    expectSearchPath(await functionSettings(schema), `${schema}, pg_temp`);
    const client = createClient({ pool, schema });
    const { jobs } = await client.enqueueWorkflow({ nodes: { first: { task: 'a' }, second: { task: 'b', dependsOn: ['first'] } } });
    await client.cancelJob(jobs.first);
    expect(await client.getJob(jobs.second)).toMatchObject({ state: 'cancelled' }); // through cancel_dependents
  });
});

describe('a schema migrated by a different build of Wida', () => {
  const mismatch = /^the database records migration 3 as 'workflows_fork' but this Wida's migration 3 is 'workflows': schema "mig_[0-9a-f]+" was migrated by a different build of Wida \(a fork or another branch\); use that build, or with it revert the schema to migration 2 .*wida migrate/;

  /** A schema at `steps` below this build's latest whose migration 3 is recorded under another name. */
  async function forkedSchema(steps = 0): Promise<string> {
    const schema = freshSchema();
    await migrateUp(url, schema);
    if (steps > 0) await migrateDown(url, schema, steps);
    await pool.query(`UPDATE "${schema}".migrations SET name = 'workflows_fork' WHERE version = 3`);
    return schema;
  }

  async function appliedVersions(schema: string): Promise<number[]> {
    const { rows } = await pool.query(`SELECT version FROM "${schema}".migrations ORDER BY version`);
    return rows.map((row) => row.version);
  }

  it('migrateUp, migrateDown and migrationStatus refuse with MigrationMismatchError, changing nothing', async () => {
    const schema = await forkedSchema(2);
    for (const attempt of [() => migrateUp(url, schema), () => migrateDown(url, schema), () => migrationStatus(url, schema)]) {
      const error = await attempt().catch((e) => e);
      expect(error).toBeInstanceOf(MigrationMismatchError);
      expect(error).toMatchObject({ code: 'MIGRATION_MISMATCH', schema, version: 3, databaseName: 'workflows_fork', buildName: 'workflows' });
      expect(error.message).toMatch(mismatch);
    }
    expect(await appliedVersions(schema)).toEqual([1, 2, 3, 4, 5, 6]);
  });

  it('the agent start-up check refuses it from its one read; an agent (migrate: true or false) does not start', async () => {
    const schema = await forkedSchema();
    await expect(schemaIsCurrent(pool, schema)).rejects.toThrow(mismatch);
    for (const migrate of [true, false]) {
      const agent = createAgent({ databaseUrl: url, schema, migrate, logger: silentLogger, handlers: { x: () => {} } });
      const error = await agent.start().catch((e) => e);
      expect(error).toBeInstanceOf(MigrationMismatchError);
      expect(error.message).toMatch(mismatch);
      await expect(agent.stop()).resolves.toBeUndefined();
    }
    expect((await pool.query(`SELECT count(*)::int AS n FROM "${schema}".agents`)).rows[0].n).toBe(0);
  });

  it('with a version newer than this build as well, the mismatch is what it reports (not "use the newer Wida")', async () => {
    const schema = await forkedSchema();
    await pool.query(`INSERT INTO "${schema}".migrations (version, name) VALUES (9999, 'from_the_future')`);
    await expect(migrateUp(url, schema)).rejects.toThrow(mismatch);
  });
});

describe('a schema newer than this Wida', () => {
  async function tooNewSchema(): Promise<string> {
    const schema = freshSchema();
    await migrateUp(url, schema);
    await pool.query(`INSERT INTO "${schema}".migrations (version, name) VALUES (9999, 'from_the_future')`);
    return schema;
  }

  it('migrateUp refuses with SchemaTooNewError and changes nothing', async () => {
    const schema = await tooNewSchema();
    const error = await migrateUp(url, schema).catch((e) => e);
    expect(error).toBeInstanceOf(SchemaTooNewError);
    expect(error).toMatchObject({ code: 'SCHEMA_TOO_NEW', databaseVersion: 9999, knownVersion: latestVersion() });
    expect(error.message).toMatch(/migration 9999, but this Wida knows migrations up to \d+; use the newer Wida/);
    const { rows } = await pool.query(`SELECT version FROM "${schema}".migrations ORDER BY version`);
    expect(rows).toEqual([{ version: 1 }, { version: 2 }, { version: 3 }, { version: 4 }, { version: 5 }, { version: 6 }, { version: 7 }, { version: 8 }, { version: 9999 }]);
  });

  it('migrationStatus shows the unknown migration', async () => {
    const schema = await tooNewSchema();
    const status = await migrationStatus(url, schema);
    expect(status.map((s) => s.version)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9999]);
    expect(status.at(-1)!.name).toMatch(/unknown/);
  });

  it('an agent refuses to start on it (migrate: true or false), and stop() after the failed start is harmless', async () => {
    const schema = await tooNewSchema();
    for (const migrate of [true, false]) {
      const agent = createAgent({ databaseUrl: url, schema, migrate, logger: silentLogger, handlers: { x: () => {} } });
      await expect(agent.start()).rejects.toBeInstanceOf(SchemaTooNewError);
      await expect(agent.stop()).resolves.toBeUndefined();
    }
  });

  it('an agent with migrate: false refuses a schema that is behind', async () => {
    const schema = freshSchema();
    await migrateUp(url, schema);
    await migrateDown(url, schema);
    const agent = createAgent({ databaseUrl: url, schema, migrate: false, logger: silentLogger, handlers: { x: () => {} } });
    const error = await agent.start().catch((e) => e);
    expect(error).toBeInstanceOf(MigrationError);
    expect(error.message).toMatch(/wida migrate/);
    await agent.stop().catch(() => {});
  });
});

describe('schema names', () => {
  it.each(['Bad-Name', 'UPPER', '1starts_with_digit', 'has space', 'x"; DROP TABLE y; --', 'a'.repeat(48), '', 'pg_wida', 'information_schema'])(
    'migrateUp(%j) -> ConfigError before touching the database',
    async (name) => {
      const error = await migrateUp(url, name).catch((e) => e);
      expect(error).toBeInstanceOf(ConfigError);
      expect(error).toMatchObject({ code: 'CONFIG_INVALID' });
      expect(error.message).toMatch(/WIDA_SCHEMA/);
      if (name && name !== 'information_schema') expect(await schemaExists(name)).toBe(false); // that one is PostgreSQL's own
    },
  );

  it('a 47-character lowercase name is accepted, and jobs are enqueued in it (prepared statement names stay apart)', async () => {
    const schema = `mig_${randomBytes(4).toString('hex')}_`.padEnd(47, 'z');
    created.push(schema);
    expect(await migrateUp(url, schema)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    // Cut at 63 bytes, these statements' names were all "wida_<schema>_job_insert": the second failed.
    const client = createClient({ pool, schema });
    const one = await client.enqueue({ task: 'long_schema' });
    const keyed = await client.enqueue({ task: 'long_schema', idempotencyKey: 'k' });
    const many = await client.enqueueMany([{ task: 'long_schema' }, { task: 'long_schema', priority: 'high' }]);
    expect(new Set([one.id, keyed.id, ...many.map((job) => job.id)]).size).toBe(4);
  });
});
