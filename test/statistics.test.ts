import { randomBytes } from 'node:crypto';
import type pg from 'pg';
import { describe, expect, it } from 'vitest';
import { refreshStaleStatistics } from '../src/agent/scheduler/statistics.js';
import { jobAnalyze, jobPlannerView } from '../src/shared/db/queries/jobs.js';
import { jobClaimBatch } from '../src/shared/db/queries/jobs-runs.js';
import { migrateUp } from '../src/shared/db/migrate.js';
import { SchemaDb } from '../src/shared/db/sql.js';
import { silentLogger } from '../src/shared/logger.js';
import { useTestSchema } from './support/database.js';
import { insertManyJobs } from './support/factories.js';

const t = useTestSchema('stats');

function claimPlan(client: pg.PoolClient): Promise<string> {
  return client
    .query(`EXPLAIN EXECUTE "wida_${t.schema}_job_claim_batch"('stats-agent', 30000, NULL, 512, NULL, '{stats_probe}')`)
    .then(({ rows }) => rows.map((row) => row['QUERY PLAN']).join('\n'));
}

// Run one at a time: the second test changes the table's statistics that the first reads.
describe.sequential('statistics of the jobs table', () => {
  it('are refreshed when the table outgrows what the planner believes, and a claim cached on the small table is planned again', async () => {
    const client = await t.pool.connect();
    try {
      const db = new SchemaDb(client, t.schema);
      // An agent polling a nearly empty, never analyzed table: its claim plan is cached by the sixth call.
      await insertManyJobs(client, t.schema, 1, { task: 'stats_probe', state: 'pending' });
      for (let i = 0; i < 8; i++) await jobClaimBatch(db, { agentId: 'stats-agent', leaseMs: 30_000, queues: null, tasks: ['stats_probe'], limit: 512 });
      expect(await refreshStaleStatistics(t.db, silentLogger)).toBe('current');

      await insertManyJobs(client, t.schema, 20_000, { task: 'stats_probe', state: 'pending' });
      // (The plan cached for one row now reads every job to find the claimed ids; not asserted, because DDL
      // in any other session, such as another test file creating its schema, makes PostgreSQL plan again.)
      expect(await refreshStaleStatistics(t.db, silentLogger)).toBe('analyzed');
      const view = await jobPlannerView(t.db);
      expect(view.believedRows).toBeGreaterThan(15_000);
      expect(view.believedPages).toBe(view.pages);
      // The ANALYZE invalidated the cached plan: the claimed ids are found through the primary key.
      const plan = await claimPlan(client);
      expect(plan).not.toMatch(/Seq Scan on jobs\b(?! jobs_1)/);
      expect(plan).toMatch(/jobs_pkey/);
      expect(await refreshStaleStatistics(t.db, silentLogger)).toBe('current');
    } finally {
      client.release();
    }
  });

  it('a table believed large is left to autovacuum, however much it grows', async () => {
    await jobAnalyze(t.db);
    const before = await jobPlannerView(t.db);
    expect(before.believedPages).toBe(before.pages);
    expect(before.believedPages).toBeGreaterThan(128);
    await insertManyJobs(t.pool, t.schema, Math.ceil(before.believedRows * 1.5), { task: 'stats_large', state: 'pending' });
    const after = await jobPlannerView(t.db);
    expect(after.pages).toBeGreaterThan(2 * before.believedPages);
    expect(await refreshStaleStatistics(t.db, silentLogger)).toBe('current');
  });

  it('a role that may not ANALYZE the table does not try (PostgreSQL before 17 would only warn, every check)', async () => {
    // A new installation of its own: the file's schema is believed large by now.
    const schema = `stats_role_${randomBytes(4).toString('hex')}`;
    const role = `wida_stats_${randomBytes(4).toString('hex')}`;
    await migrateUp(t.url, schema);
    await t.pool.query(`CREATE ROLE ${role} NOLOGIN`);
    const client = await t.pool.connect();
    try {
      await t.pool.query(`GRANT USAGE ON SCHEMA "${schema}" TO ${role}`);
      await t.pool.query(`GRANT SELECT ON "${schema}".jobs TO ${role}`);
      await insertManyJobs(t.pool, schema, 5_000, { task: 'stats_grown', state: 'pending' });
      await client.query(`SET ROLE ${role}`);
      const db = new SchemaDb(client, schema);
      expect((await jobPlannerView(db)).mayAnalyze).toBe(false);
      expect(await refreshStaleStatistics(db, silentLogger)).toBe('not allowed');
      expect((await jobPlannerView(new SchemaDb(t.pool, schema))).mayAnalyze).toBe(true);
    } finally {
      await client.query('RESET ROLE').catch(() => {});
      client.release(true);
      await t.pool.query(`DROP SCHEMA "${schema}" CASCADE`);
      await t.pool.query(`DROP OWNED BY ${role}`);
      await t.pool.query(`DROP ROLE ${role}`);
    }
  });
});
