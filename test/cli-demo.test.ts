/**
 * `wida demo` (what `npm start` runs) as a real subprocess: it shows live progress with completed jobs,
 * retries and dead jobs within seconds, and on SIGINT stops enqueueing, drains its agent and exits 0.
 */
import { chmodSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT, WIDA_BIN, assertBuilt, childLog, killLeftovers, spawnChild, stopChild, takeSpawned, waitForOutput } from './fixtures/children.js';
import { useTestSchema } from './support/database.js';
import { runCli } from './support/run-cli.js';

const t = useTestSchema('cli_demo');
let workDir: string;

beforeAll(() => {
  assertBuilt();
  workDir = mkdtempSync(join(tmpdir(), 'wida-demo-'));
  chmodSync(workDir, 0o755); // as root the embedded server runs as the postgres user, which must reach its data
});

afterEach(async (context) => {
  const spawned = takeSpawned();
  if (context.task.result?.state === 'fail') for (const child of spawned) console.error(childLog(child));
  const leftovers = await killLeftovers();
  if (leftovers.length > 0) throw new Error(`the test left processes running (killed now): ${leftovers.join(', ')}`);
});

afterAll(async () => {
  await runCli(['db', 'stop'], { cwd: workDir, env: { WIDA_HOME: join(workDir, 'home') } }).catch(() => {});
  rmSync(workDir, { recursive: true, force: true });
});

describe('wida demo', () => {
  it('runs a sample workload with live progress, then drains and exits 0 on SIGINT', async () => {
    const demo = spawnChild('demo', [WIDA_BIN, 'demo', '--rate', '3'], { WIDA_DATABASE_URL: t.url, WIDA_SCHEMA: t.schema });
    await waitForOutput(demo, 'stdout', /completed [1-9]/, 20_000);
    await waitForOutput(demo, 'stdout', /dead [1-9]/, 20_000);
    expect(demo.stdout).toMatch(/wida demo: database postgres:\/\/.*schema "cli_demo_/);

    const exit = await stopChild(demo, 'SIGINT', 20_000);
    expect(exit).toEqual({ code: 0, signal: null });
    expect(demo.stdout).toMatch(/draining the agent/);
    expect(demo.stdout).toMatch(/final: pending \d+, running 0, completed [1-9]\d*, dead [1-9]/);

    const { rows } = await t.pool.query(
      `SELECT queue, count(*) FILTER (WHERE state = 'completed')::int AS completed,
              count(*) FILTER (WHERE state = 'running')::int AS running,
              count(*) FILTER (WHERE jsonb_array_length(attempt_log) > 0)::int AS retried,
              count(DISTINCT priority)::int AS priorities
         FROM "${t.schema}".jobs GROUP BY queue ORDER BY queue`,
    );
    expect(rows.map((row) => row.queue)).toEqual(['emails', 'images', 'payments', 'reports']);
    for (const row of rows) expect(row.running).toBe(0);
    expect(rows.reduce((sum, row) => sum + row.retried, 0)).toBeGreaterThan(0);
    expect(rows.find((row) => row.queue === 'emails').priorities).toBeGreaterThan(1);
    const { rows: agents } = await t.pool.query(`SELECT state FROM "${t.schema}".agents`);
    expect(agents).toEqual([{ state: 'stopped' }]);
  });

  it('is what npm start runs, and needs no database: it starts the embedded one', async () => {
    const scripts = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')).scripts;
    expect(scripts.start).toBe('node bin/wida.js demo');

    const demo = spawnChild('zero-setup demo', [WIDA_BIN, 'demo'], {
      WIDA_DATABASE_URL: undefined,
      WIDA_SCHEMA: undefined,
      WIDA_HOME: join(workDir, 'home'),
    });
    await waitForOutput(demo, 'stderr', /started the embedded PostgreSQL/, 60_000);
    await waitForOutput(demo, 'stdout', /completed [1-9]/, 30_000);
    expect(await stopChild(demo, 'SIGINT', 20_000)).toEqual({ code: 0, signal: null });

    const status = await runCli(['db', 'status', '--json'], { cwd: workDir, env: { WIDA_HOME: join(workDir, 'home') } });
    expect(JSON.parse(status.stdout)).toMatchObject({ source: 'embedded', running: true });
  });
});
