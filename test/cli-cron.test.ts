/**
 * `wida cron ...`, the LEADER column of `wida workers`, and `wida agent --cron-file`, as real subprocesses of
 * the built CLI against the test database: tables, --json, and exit codes (1 unknown schedule, 2 bad input).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import pg from 'pg';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { agentHeartbeat } from '../src/shared/db/queries/agents.js';
import { leaderAttemptElect, leaderTryLock } from '../src/shared/db/queries/leader.js';
import { SchemaDb } from '../src/shared/db/sql.js';
import { WIDA_BIN, assertBuilt, killLeftovers, spawnChild, stopChild, waitForOutput } from './fixtures/children.js';
import { useTestSchema, waitFor } from './support/database.js';
import { runCli, type CliOptions } from './support/run-cli.js';

const t = useTestSchema('cli_cron');
let workDir: string;

beforeAll(() => {
  assertBuilt();
  workDir = mkdtempSync(join(tmpdir(), 'wida-cli-cron-'));
});

afterAll(() => {
  rmSync(workDir, { recursive: true, force: true });
});

beforeEach(async () => {
  await t.pool.query(`TRUNCATE "${t.schema}".jobs, "${t.schema}".cron_schedules, "${t.schema}".agents, "${t.schema}".leader`);
});

afterEach(async () => {
  const leftovers = await killLeftovers();
  if (leftovers.length > 0) throw new Error(`the test left processes running (killed now): ${leftovers.join(', ')}`);
});

// Local time is fixed (Asia/Tokyo never changes its offset) so the LOCAL column is predictable.
function wida(args: string[], options: CliOptions = {}) {
  return runCli(args, { cwd: workDir, ...options, env: { WIDA_DATABASE_URL: t.url, WIDA_SCHEMA: t.schema, TZ: 'Asia/Tokyo', ...options.env } });
}

async function widaJson(args: string[], options: CliOptions = {}) {
  const result = await wida([...args, '--json'], options);
  expect(result.stderr).toBe('');
  expect(result.code).toBe(0);
  return JSON.parse(result.stdout);
}

/** A failed command: its exit code and one line on stderr matching `message`, no stack trace. */
async function expectFailure(args: string[], code: 1 | 2, message: RegExp) {
  const result = await wida(args);
  expect(result.code).toBe(code);
  expect(result.stdout).toBe('');
  expect(result.stderr.split('\n')[0]).toMatch(/^wida: /);
  expect(result.stderr.split('\n')[0]).toMatch(message);
  expect(result.stderr).not.toMatch(/\n\s+at /);
  return result;
}

describe('wida cron', () => {
  it('add, list, show, pause, resume, trigger and rm a schedule, as JSON', async () => {
    const added = await widaJson([
      'cron', 'add', 'nightly-report', '--expression', '30 2 * * *', '--tz', 'America/New_York', '--task', 'buildReport',
      '--queue', 'reports', '--payload', '{"kind":"daily"}', '--priority', 'high', '--max-attempts', '3', '--timeout', '5m',
      '--catch-up', 'backfill', '--backfill-limit', '7',
    ]);
    expect(added.created).toBe(true);
    expect(added.schedule).toMatchObject({
      name: 'nightly-report', expression: '30 2 * * *', timezone: 'America/New_York', task: 'buildReport', queue: 'reports',
      payload: { kind: 'daily' }, priority: 'high', maxAttempts: 3, timeoutMs: 300_000, enabled: true, catchUp: 'backfill', backfillLimit: 7,
    });
    // every next run is 02:30 on New York's wall clock
    for (const run of added.schedule.nextRunsInZone) expect(run).toMatch(/T02:30:00\.000-0[45]:00$/);

    // adding it again updates it, and a paused one can be created paused
    const updated = await widaJson(['cron', 'add', 'nightly-report', '--expression', '45 3 * * *', '--tz', 'America/New_York', '--task', 'buildReport']);
    expect(updated).toMatchObject({ created: false, schedule: { expression: '45 3 * * *', queue: 'default', catchUp: 'skip', backfillLimit: null } });
    const plain = await wida(['cron', 'add', 'tick', '--expression', '*/10 * * * * *', '--task', 'tick', '--paused']);
    expect(plain.code).toBe(0);
    expect(plain.stdout).toBe('created cron schedule tick; paused\n');

    const listed = await widaJson(['cron', 'list', '--next', '3']);
    expect(listed.map((s: { name: string }) => s.name)).toEqual(['nightly-report', 'tick']);
    expect(listed[0].nextRuns).toHaveLength(3);
    expect(listed[1]).toMatchObject({ enabled: false, nextRuns: [] });

    const shown = await widaJson(['cron', 'show', 'nightly-report']);
    expect(shown).toMatchObject({ name: 'nightly-report', expression: '45 3 * * *' });
    expect(shown.nextRuns).toHaveLength(5);

    expect(await widaJson(['cron', 'pause', 'nightly-report'])).toEqual({ name: 'nightly-report', paused: true });
    expect((await t.client.getCronSchedule('nightly-report')).enabled).toBe(false);
    expect(await widaJson(['cron', 'resume', 'nightly-report'])).toEqual({ name: 'nightly-report', paused: false });
    expect((await t.client.getCronSchedule('nightly-report')).enabled).toBe(true);

    const triggered = await widaJson(['cron', 'trigger', 'nightly-report']);
    expect(triggered).toEqual({ name: 'nightly-report', jobId: expect.any(Number) });
    expect(await t.client.getJob(triggered.jobId)).toMatchObject({ task: 'buildReport', queue: 'default' });
    const again = await wida(['cron', 'trigger', 'tick']); // paused schedules can be triggered too
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(/^enqueued job \d+ from cron schedule tick\n$/);

    expect(await widaJson(['cron', 'rm', 'nightly-report'])).toEqual({ name: 'nightly-report', removed: true });
    const rm = await wida(['cron', 'rm', 'tick']);
    expect(rm.stdout).toBe('removed cron schedule tick\n');
    expect(await widaJson(['cron', 'list'])).toEqual([]);
    expect((await wida(['cron', 'list'])).stdout).toMatch(/^\(no cron schedules/);
    // jobs a schedule enqueued stay after it is removed
    expect((await t.client.getJob(triggered.jobId)).task).toBe('buildReport');
  });

  it('shows next runs in the schedule\'s zone and in local time', async () => {
    await t.client.addCronSchedule({ name: 'london-9am', expression: '0 9 * * *', timezone: 'Europe/London', task: 'report' });
    await t.client.addCronSchedule({ name: 'paused-one', expression: '* * * * *', task: 'x', enabled: false });

    const list = await wida(['cron', 'list']);
    expect(list.code).toBe(0);
    const lines = list.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^NAME\s+STATE\s+EXPRESSION\s+ZONE\s+TASK\s+QUEUE\s+CATCH-UP\s+NEXT RUN \(ZONE\)\s+NEXT RUN \(LOCAL\)\s+LAST ENQUEUED$/);
    // 09:00 in London is 18:00 in Tokyo while London is on GMT, 17:00 while on BST
    expect(lines[1]).toMatch(/^london-9am\s+active\s+0 9 \* \* \*\s+Europe\/London\s+report\s+default\s+skip\s+\d{4}-\d\d-\d\d 09:00:00 (GMT|BST)\s+\d{4}-\d\d-\d\d (17|18):00:00 GMT\+9\s+-$/);
    expect(lines[2]).toMatch(/^paused-one\s+paused\s.*\(paused\)\s+\(paused\)/);

    const [zone, local] = /(\S+ 09:00:00 (?:GMT|BST))\s+(\S+ \d\d:00:00 GMT\+9)/.exec(lines[1])!.slice(1);
    const [schedule] = await t.client.listCronSchedules({ nextRuns: 1 });
    const next = schedule.nextRuns[0];
    const london = next.toLocaleString('sv-SE', { timeZone: 'Europe/London' });
    const tokyo = next.toLocaleString('sv-SE', { timeZone: 'Asia/Tokyo' });
    expect(zone.slice(0, 19)).toBe(london);
    expect(local.slice(0, 19)).toBe(tokyo);

    const twoEach = await wida(['cron', 'list', '--next', '2']);
    expect(twoEach.stdout).toMatch(/09:00:00 (GMT|BST), \S+ 09:00:00 (GMT|BST)/);

    const show = await wida(['cron', 'show', 'london-9am', '--next', '3']);
    expect(show.code).toBe(0);
    expect(show.stdout).toMatch(/^time zone:\s+Europe\/London$/m);
    expect(show.stdout).toMatch(/^IN ZONE\s+LOCAL\s+IN$/m);
    expect(show.stdout.match(/^\S+ 09:00:00 (GMT|BST)\s+\S+ (17|18):00:00 GMT\+9\s+in /gm)).toHaveLength(3);
  });

  it('bad input exits 2 with one line naming the problem; an unknown schedule exits 1', async () => {
    await Promise.all([
      expectFailure(['cron', 'add', 'x', '--expression', '1 2 3', '--task', 't'], 2, /--expression: cron expression "1 2 3" has 3 fields; expected 5/),
      expectFailure(['cron', 'add', 'x', '--expression', '61 * * * *', '--task', 't'], 2, /--expression: cron expression "61 \* \* \* \*" is invalid/),
      expectFailure(['cron', 'add', 'x', '--expression', '* * * * *', '--tz', 'Mars/Olympus', '--task', 't'], 2, /--tz: "Mars\/Olympus" is not an IANA time zone/),
      expectFailure(['cron', 'add', 'x', '--expression', '* * * * *', '--task', 't', '--backfill-limit', '5'], 2, /--backfill-limit applies only with --catch-up backfill/),
      expectFailure(['cron', 'add', 'x', '--expression', '* * * * *', '--task', 't', '--max-attempts', '0'], 2, /--max-attempts must be a whole number/),
      expectFailure(['cron', 'add', 'x', '--expression', '* * * * *', '--task', 't', '--payload', '{nope'], 2, /--payload value is not valid JSON/),
      expectFailure(['cron', 'add', 'x', '--task', 't'], 2, /expression/),
      expectFailure(['cron', 'add', 'x', '--expression', 'H 3 * * *', '--task', 't'], 2, /--expression: cron expression "H 3 \* \* \*" uses H/),
      expectFailure(['cron', 'list', '--next', '-1'], 2, /--next must be a whole number/),
      expectFailure(['cron'], 2, /name a cron command/),
      expectFailure(['cron', 'rm', 'nope'], 1, /cron schedule "nope" does not exist/),
      expectFailure(['cron', 'show', 'nope'], 1, /cron schedule "nope" does not exist/),
      expectFailure(['cron', 'trigger', 'nope'], 1, /cron schedule "nope" does not exist/),
      expectFailure(['cron', 'pause', 'nope'], 1, /cron schedule "nope" does not exist/),
    ]);
    expect(await t.client.listCronSchedules()).toEqual([]);
  });

  it('cron add takes payloads up to WIDA_MAX_PAYLOAD_BYTES, as enqueue does, and names the limit past it', async () => {
    const file = join(workDir, 'big-payload.json');
    writeFileSync(file, JSON.stringify('x'.repeat(1_100_000))); // past the default 1 MiB
    const big = ['cron', 'add', 'big', '--expression', '0 0 * * *', '--task', 't', '--payload', `@${file}`];
    const refused = await wida(big, { env: { WIDA_MAX_PAYLOAD_BYTES: '1000' } });
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/the limit is 1000 bytes/);
    expect((await wida(big, { env: { WIDA_MAX_PAYLOAD_BYTES: '2000000' } })).code).toBe(0);
    expect((await t.client.getCronSchedule('big')).payload).toHaveLength(1_100_000);
  });
});

describe('wida workers: the leader', () => {
  it('marks the agent that leads, in the table and as `leader` in --json', async () => {
    const agent = (id: string, pid: number) => ({ id, host: 'box', pid, version: '0.1.0', queues: null, concurrency: 4, heartbeatIntervalMs: 5_000 });
    await agentHeartbeat(t.db, agent('follower', 201), 'running');
    await agentHeartbeat(t.db, agent('boss', 202), 'running');
    // A leader is one whose session holds the leader lock, as an agent's dedicated session does.
    const session = new pg.Client({ connectionString: t.url });
    await session.connect();
    try {
      const leaderDb = new SchemaDb(session, t.schema);
      expect(await leaderTryLock(leaderDb)).toBe(true);
      await leaderAttemptElect(leaderDb, 'boss');

      const rows = await widaJson(['workers']);
      const byId = Object.fromEntries(rows.map((row: { id: string }) => [row.id, row]));
      expect(byId.boss).toMatchObject({ leader: true, alive: true });
      expect(byId.follower).toMatchObject({ leader: false });

      const table = (await wida(['workers'])).stdout.split('\n');
      expect(table[0]).toMatch(/\bSTATUS\s+LEADER\s+STARTED$/);
      expect(table.find((line) => line.startsWith('boss'))).toMatch(/\balive\s+leader\s+\S+$/);
      expect(table.find((line) => line.startsWith('follower'))).toMatch(/\balive\s+-\s+\S+$/);
    } finally {
      await session.end();
    }
  });
});

describe('wida agent --cron-file', () => {
  it('creates the file\'s schedules at start, payloads up to WIDA_MAX_PAYLOAD_BYTES; a bad file exits 2 before starting', async () => {
    const bad = join(workDir, 'bad-cron.json');
    writeFileSync(bad, JSON.stringify([{ name: 'b', expression: '* * * * *', timezone: 'Nowhere/Land', task: 't' }]));
    await expectFailure(['agent', '--cron-file', bad], 2, /bad-cron\.json: cron schedule 0 \(b\): "Nowhere\/Land" is not an IANA time zone/);

    // A payload past the default 1 MiB, within the WIDA_MAX_PAYLOAD_BYTES the agent is given.
    const file = join(workDir, 'cron.json');
    const payload = 'x'.repeat(1_100_000);
    writeFileSync(file, JSON.stringify({ schedules: [{ name: 'from-file', expression: '0 6 * * 1', timezone: 'Asia/Kolkata', task: 'weekly', payload }] }));
    const child = spawnChild('cron-file agent', [WIDA_BIN, 'agent', '--cron-file', file, '--database-url', t.url, '--schema', t.schema], {
      WIDA_HEARTBEAT_INTERVAL: '200ms',
      WIDA_MAX_PAYLOAD_BYTES: '2000000',
    });
    await waitForOutput(child, 'stderr', /agent started/, 15_000);
    expect(await t.client.getCronSchedule('from-file')).toMatchObject({ expression: '0 6 * * 1', timezone: 'Asia/Kolkata', task: 'weekly', enabled: true, payload });
    // the only agent becomes the leader, and `wida workers` says so
    await waitFor('the agent to lead', async () => (await widaJson(['workers'])).some((row: { leader: boolean }) => row.leader), 10_000);
    expect((await stopChild(child)).code).toBe(0);
  });
});
