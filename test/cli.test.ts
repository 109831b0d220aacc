/**
 * The operator commands of the built `wida` CLI, as real subprocesses against the test database: output
 * (tables and --json), exit codes (0 success, 1 refusal or failure, 2 usage) and the one-line errors.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { agentHeartbeat } from '../src/shared/db/queries/agents.js';
import { jobClaimBatch, jobFailMany } from '../src/shared/db/queries/jobs-runs.js';
import { assertBuilt, WIDA_BIN } from './fixtures/children.js';
import { useTestSchema } from './support/database.js';
import { insertJob } from './support/factories.js';
import { cleanEnv, runCli, type CliOptions } from './support/run-cli.js';

const t = useTestSchema('cli');
let workDir: string;

beforeAll(() => {
  assertBuilt();
  workDir = mkdtempSync(join(tmpdir(), 'wida-cli-'));
});

afterAll(() => {
  rmSync(workDir, { recursive: true, force: true });
});

beforeEach(async () => {
  await t.pool.query(`TRUNCATE "${t.schema}".jobs, "${t.schema}".queues, "${t.schema}".agents`);
});

function wida(args: string[], options: CliOptions = {}) {
  return runCli(args, { cwd: workDir, ...options, env: { WIDA_DATABASE_URL: t.url, WIDA_SCHEMA: t.schema, ...options.env } });
}

async function widaJson(args: string[], options: CliOptions = {}) {
  const result = await wida([...args, '--json'], options);
  expect(result.stderr).toBe('');
  expect(result.code).toBe(0);
  return JSON.parse(result.stdout);
}

/** A failed command: its exit code and one line on stderr matching `message`, no stack trace. */
async function expectFailure(args: string[], code: 1 | 2, message: RegExp, options: CliOptions = {}) {
  const result = await wida(args, options);
  expect(result.code).toBe(code);
  expect(result.stderr).toMatch(message);
  expect(result.stderr.split('\n')[0]).toMatch(/^wida: /);
  expect(result.stderr).not.toMatch(/\n\s+at /);
  return result;
}

describe('wida enqueue', () => {
  it('enqueues with every option and prints the id, or JSON', async () => {
    const runAt = new Date(Date.now() + 3_600_000).toISOString();
    const result = await widaJson([
      'enqueue', 'buildReport', '--payload', '{"month":"2026-10"}', '--queue', 'reports', '--priority', 'high',
      '--run-at', runAt, '--max-attempts', '3', '--timeout', '5m', '--idempotency-key', 'report-2026-10',
    ]);
    expect(result).toEqual({ id: expect.any(Number), duplicate: false });
    const job = await t.client.getJob(result.id);
    expect(job).toMatchObject({ task: 'buildReport', queue: 'reports', priority: 2, maxAttempts: 3, timeoutMs: 300_000, idempotencyKey: 'report-2026-10', payload: { month: '2026-10' } });
    expect(job.runAt.toISOString()).toBe(runAt);

    const again = await wida(['enqueue', 'buildReport', '--idempotency-key', 'report-2026-10']);
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(new RegExp(`job ${result.id} already exists`));

    const plain = await wida(['enqueue', 'sendEmail', '--delay', '30s']);
    expect(plain.code).toBe(0);
    const id = Number(/enqueued job (\d+)/.exec(plain.stdout)![1]);
    const delayed = await t.client.getJob(id);
    expect(delayed.runAt.getTime()).toBeGreaterThan(Date.now() + 20_000);
    expect(delayed.payload).toBeNull();
  });

  it('reads the payload from a file (@file.json) or from stdin (-)', async () => {
    const file = join(workDir, 'payload.json');
    writeFileSync(file, '{"from":"file"}');
    const fromFile = await widaJson(['enqueue', 'a', '--payload', `@${file}`]);
    const fromStdin = await widaJson(['enqueue', 'a', '--payload', '-'], { input: '[1,2,3]\n' });
    expect((await t.client.getJob(fromFile.id)).payload).toEqual({ from: 'file' });
    expect((await t.client.getJob(fromStdin.id)).payload).toEqual([1, 2, 3]);
  });

  it('refuses bad input with exit 2 and a message naming the fix, writing nothing', async () => {
    await Promise.all([
      expectFailure(['enqueue', 'a', '--payload', '{bad'], 2, /--payload value is not valid JSON.*quote it/),
      expectFailure(['enqueue', 'a', '--payload', '@/no/such/file.json'], 2, /cannot read payload file/),
      expectFailure(['enqueue', 'a', '--delay', 'soon'], 2, /--delay "soon" is not a duration; use e\.g\. 500ms, 30s/),
      expectFailure(['enqueue', 'a', '--run-at', 'tomorrow'], 2, /--run-at "tomorrow" is not a timestamp; use ISO 8601/),
      expectFailure(['enqueue', 'a', '--delay', '1s', '--run-at', '2030-01-01T00:00:00Z'], 2, /mutually exclusive/),
      expectFailure(['enqueue', 'a', '--priority', 'urgent'], 2, /Invalid values:[\s\S]*priority/),
      // In the words of the command line, not the client API's field names.
      expectFailure(['enqueue', 'a', '--max-attempts', '0'], 2, /^wida: --max-attempts must be at least 1\n/),
      expectFailure(['enqueue', 'a', '--idempotency-key', ''], 2, /^wida: --idempotency-key must not be empty\n/),
      expectFailure(['enqueue', 'a', '--timeout', '0'], 2, /^wida: --timeout must be at least 1 ms; got 0\n/),
      expectFailure(['enqueue', 'a', '--timeout', 'forever'], 2, /--timeout "forever" is not a duration/),
      expectFailure(['enqueue'], 2, /enqueue is missing an argument/),
      expectFailure(['jobs', 'list', '--schema', ''], 2, /^wida: --schema was given empty; give a value, or leave the flag out/),
      expectFailure(['queues', '--database-url', ' '], 2, /^wida: --database-url was given empty/),
      // checked as the client API checks runAt: no rolling February 30 over, no time in this machine's zone
      expectFailure(['enqueue', 'a', '--run-at', '2026-02-30T09:00:00Z'], 2, /--run-at "2026-02-30T09:00:00Z" is not a timestamp; use ISO 8601 with a time zone/),
      expectFailure(['enqueue', 'a', '--run-at', '2026-10-01T09:00:00'], 2, /is not a timestamp; use ISO 8601 with a time zone/),
      // In the year 0 and 10000 by UTC: these gave a raw PostgreSQL error (exit 1) and "Invalid ISO datetime".
      expectFailure(['enqueue', 'a', '--run-at', '0001-01-01T00:30:00+01:00'], 2, /--run-at "0001-01-01T00:30:00\+01:00" is outside the years 1 to 9999 \(UTC\)/),
      expectFailure(['enqueue', 'a', '--run-at', '9999-12-31T23:59:59-05:00'], 2, /is outside the years 1 to 9999 \(UTC\)/),
      // yargs makes a repeated flag an array, which the command would trip over
      expectFailure(['enqueue', 'a', '--payload', '{}', '--payload', '{}'], 2, /--payload was given more than once; give it once/),
      expectFailure(['enqueue', 'a', '--delay', '1s', '--delay=2s'], 2, /--delay was given more than once/),
      expectFailure(['enqueue', 'a', '--delay', '-1s'], 2, /--delay -1s: a value that starts with "-" is read as flags; write --delay=-1s/),
    ]);
    expect(await t.client.listJobs()).toEqual([]);
  });
});

describe('wida enqueue --depends-on', () => {
  it('takes job ids, repeated or comma separated: the job waits for them; --help shows an example', async () => {
    const first = await widaJson(['enqueue', 'extract', '--queue', 'idle']);
    const second = await widaJson(['enqueue', 'extract', '--queue', 'idle']);
    const third = await widaJson(['enqueue', 'extract', '--queue', 'idle']);
    const repeated = await widaJson(['enqueue', 'load', '--queue', 'idle', '--depends-on', String(first.id), '--depends-on', String(second.id)]);
    const commas = await widaJson(['enqueue', 'load', '--queue', 'idle', '--depends-on', `${first.id},${second.id}, ${third.id}`]);
    const before = await wida(['enqueue', '--depends-on', String(first.id), 'report', '--queue', 'idle']);
    expect(before.code).toBe(0);
    const beforeId = Number(/enqueued job (\d+)/.exec(before.stdout)![1]);
    expect(await t.client.getJob(repeated.id)).toMatchObject({ task: 'load', state: 'waiting', pendingDeps: 2 });
    expect(await t.client.getJob(commas.id)).toMatchObject({ state: 'waiting', pendingDeps: 3 });
    expect(await t.client.getJob(beforeId)).toMatchObject({ task: 'report', state: 'waiting', pendingDeps: 1 });
    const { rows } = await t.pool.query(`SELECT depends_on FROM "${t.schema}".job_deps WHERE job_id = $1 ORDER BY depends_on`, [commas.id]);
    expect(rows.map((row) => Number(row.depends_on))).toEqual([first.id, second.id, third.id]);
    expect((await wida(['enqueue', '--help'])).stdout).toMatch(/--depends-on[\s\S]*Examples:[\s\S]*--depends-on/);
  });

  it('refuses a bad id with exit 2 naming the flag, and an unknown or cancelled job with exit 1 naming it (a refusal, as for any unknown job id); nothing is written', async () => {
    const cancelled = await t.client.enqueue({ task: 'x', queue: 'idle' });
    await t.client.cancelJob(cancelled.id);
    await Promise.all([
      expectFailure(['enqueue', 'a', '--depends-on', 'abc'], 2, /^wida: --depends-on "abc" is not a job id; .*e\.g\. --depends-on 41,42\n/),
      expectFailure(['enqueue', 'a', '--depends-on', '12,,13'], 2, /--depends-on "" is not a job id/),
      expectFailure(['enqueue', 'a', '--depends-on', '0'], 2, /--depends-on "0" is not a job id/),
      expectFailure(['enqueue', 'a', '--depends-on'], 2, /--depends-on "" is not a job id/),
      expectFailure(['enqueue', 'a', '--depends-on', '7', '8'], 2, /unknown command or option: 8/),
      expectFailure(['enqueue', 'a', '--depends-on', '987654321'], 1, /depends on job 987654321, which does not exist/),
      expectFailure(['enqueue', 'a', '--depends-on', String(cancelled.id)], 1, new RegExp(`depends on job ${cancelled.id}, which is cancelled`)),
      expectFailure(['enqueue', 'a', '--depends-on', String(cancelled.id), '--idempotency-key', 'k'], 1, new RegExp(`depends on job ${cancelled.id}, which is cancelled`)),
    ]);
    expect((await t.client.listJobs()).map((job) => job.id)).toEqual([cancelled.id]);
  });
});

describe('usage errors', () => {
  it('an unknown command or option exits 2 and points at --help', async () => {
    const [unknown] = await Promise.all([
      expectFailure(['frobnicate'], 2, /unknown command or option: frobnicate/),
      expectFailure(['job'], 2, /unknown command "job"; did you mean jobs\?/),
      expectFailure(['queues', '--colour'], 2, /unknown command or option: colour/),
      expectFailure([], 2, /name a command/),
      // An unknown flag before the command took the command as its value: it said "name a command".
      expectFailure(['--bogus', 'queues'], 2, /^wida: unknown option --bogus \(it took "queues" as its value\)/),
      expectFailure(['jobs'], 2, /name a jobs command: list or show/),
      expectFailure(['jobs', 'show', 'abc'], 2, /"abc" is not a job id/),
      expectFailure(['jobs', 'list', '--state', 'exploded'], 2, /unknown state "exploded"; use one or more of waiting, pending/),
    ]);
    expect(unknown.stderr).toMatch(/wida --help/);
  });

  it('--help lists every command with examples, and each command has its own', async () => {
    const help = await wida(['--help']);
    expect(help.code).toBe(0);
    for (const command of ['enqueue', 'jobs', 'retry', 'cancel', 'drop', 'pause', 'resume', 'queues', 'dlq', 'workers', 'agent', 'migrate']) {
      expect(help.stdout).toMatch(new RegExp(`wida ${command}\\b`));
    }
    expect(help.stdout).toMatch(/Examples:/);
    const enqueueHelp = await wida(['enqueue', '--help']);
    expect(enqueueHelp.stdout).toMatch(/--idempotency-key/);
    expect(enqueueHelp.stdout).toMatch(/Examples:/);
  });

  it('an unreachable database exits 1 naming the URL and what to check', async () => {
    await expectFailure(['jobs', 'list'], 1, /cannot reach the database at postgres:\/\/postgres@127\.0\.0\.1:1\/x.*check WIDA_DATABASE_URL/, {
      env: { WIDA_DATABASE_URL: 'postgres://postgres@127.0.0.1:1/x' },
    });
    // a flag beats the environment
    await expectFailure(['queues', '--database-url', 'postgres://postgres@127.0.0.1:1/x'], 1, /cannot reach the database/);
    // migrate and its status connect on their own (they printed a bare "connect ECONNREFUSED ...")
    for (const direction of ['up', 'status']) {
      await expectFailure(['migrate', direction], 1, /cannot reach the database at postgres:\/\/postgres@127\.0\.0\.1:1\/x.*check WIDA_DATABASE_URL/, {
        env: { WIDA_DATABASE_URL: 'postgres://postgres@127.0.0.1:1/x' },
      });
    }
  });

  it('a schema that was never migrated says to run wida migrate; --verbose adds the stack', async () => {
    const result = await expectFailure(['queues'], 1, /schema "never_migrated" has no Wida tables.*run `wida migrate`/, { env: { WIDA_SCHEMA: 'never_migrated' } });
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
    const verbose = await wida(['queues', '--verbose'], { env: { WIDA_SCHEMA: 'never_migrated' } });
    expect(verbose.stderr).toMatch(/\n\s+at /);
  });

  it('a flag without its value exits 2 naming the flag, and does nothing', async () => {
    const migrations = async () => (await t.pool.query(`SELECT count(*)::int AS n FROM "${t.schema}".migrations`)).rows[0].n;
    const before = await migrations();
    await Promise.all([
      expectFailure(['enqueue', 'sometask', '--payload'], 2, /^wida: --payload needs a value\n/),
      expectFailure(['enqueue', 'sometask', '--payload', '--queue', 'q'], 2, /^wida: --payload needs a value\n/),
      expectFailure(['enqueue', 'sometask', '--max-attempts'], 2, /^wida: --max-attempts needs a value\n/),
      expectFailure(['cron', 'add', 'nightly', '--task', 'x', '--expression'], 2, /^wida: --expression needs a value\n/),
      expectFailure(['jobs', 'list', '--limit'], 2, /^wida: --limit needs a value\n/),
      expectFailure(['migrate', 'down', '--steps'], 2, /^wida: --steps needs a value\n/),
      expectFailure(['jobs', 'list', '--state'], 2, /^wida: --state needs a value\n/),
      expectFailure(['enqueue'], 2, /^wida: enqueue is missing an argument \(got 0, needs 1\); `wida enqueue --help` shows what it takes\n/),
      expectFailure(['jobs', 'show'], 2, /^wida: jobs show is missing an argument \(got 0, needs 1\); `wida jobs show --help`/),
      expectFailure(['jobs', 'list', '--state', ','], 2, /^wida: --state names no state; use one or more of/),
      expectFailure(['agent', '--handlers'], 2, /^wida: --handlers needs a value\n/),
    ]);
    expect(await t.client.listJobs()).toEqual([]);
    expect(await migrations()).toBe(before);
  });

  it('agent --queue-concurrency takes QUEUE=N pairs, WIDA_LOG_LEVEL a level; anything else exits 2 naming the flag, before the agent starts', async () => {
    const refusals = [
      ['reports', /^wida: --queue-concurrency takes QUEUE=N pairs .*; got "reports"\n/],
      ['reports=0', /^wida: --queue-concurrency takes QUEUE=N pairs .*N a whole number of at least 1.*; got "reports=0"\n/],
      ['reports=2,emails=x', /got "emails=x"/],
      ['reports=1,reports=2', /^wida: --queue-concurrency names queue "reports" twice\n/],
      [',', /^wida: --queue-concurrency names no queue/],
    ] as const;
    await Promise.all(refusals.map(([value, message]) => expectFailure(['agent', '--queue-concurrency', value], 2, message)));
    await expectFailure(['agent'], 2, /WIDA_LOG_LEVEL must be one of debug, info, warn, error/, { env: { WIDA_LOG_LEVEL: 'loud' } });
    await expectFailure(['agent'], 2, /^wida: WIDA_POLL_INTERVAL \(10000 ms\) must not be longer than WIDA_LEASE \(5000 ms\)\n/, { env: { WIDA_LEASE: '5s', WIDA_POLL_INTERVAL: '10s' } });
    expect(await t.client.listAgents()).toEqual([]);
  });

  it('migrate down --steps takes only a whole number from 1 to the migrations applied; anything else exits 2 and reverts nothing', async () => {
    const migrations = async () => (await t.pool.query(`SELECT count(*)::int AS n FROM "${t.schema}".migrations`)).rows[0].n;
    const before = await migrations();
    // -1 once reverted all but one migration, dropping the cron schedules with their table.
    await expectFailure(['migrate', 'down', '--steps', '-1'], 2, /^wida: --steps must be a whole number of at least 1/);
    await expectFailure(['migrate', 'down', '--steps', 'abc'], 2, /^wida: --steps must be a whole number of at least 1/);
    await expectFailure(['migrate', 'down', '--steps', '0'], 2, /^wida: --steps must be a whole number of at least 1/);
    await expectFailure(['migrate', 'down', '--steps', '99'], 2, new RegExp(`cannot revert 99 migrations of schema "${t.schema}": ${before} are applied; nothing was reverted`));
    await expectFailure(['migrate', 'up', '--steps', '3'], 2, /--steps applies to "migrate down" only/);
    expect(await migrations()).toBe(before);
    // Reverting the workflows migration deletes data: asked first, and without a terminal refused unless --yes.
    const downToTwo = Array.from({ length: before - 2 }, (_, i) => before - i).join(', ');
    await expectFailure(['migrate', 'down', '--steps', String(before - 2)], 1, new RegExp(`revert migrations ${downToTwo} of schema ".*", deleting the workflows and job dependencies .* needs confirmation.*add --yes`));
    expect(await migrations()).toBe(before);
    // One that deletes nothing is not asked about.
    expect((await wida(['migrate', 'down'])).stdout).toMatch(new RegExp(`^reverted migration ${before} in schema`));
    expect((await wida(['migrate'])).stdout).toMatch(new RegExp(`^applied migration ${before} in schema`));
  });

  it('a switch given a value other than true or false is refused, not read as false', async () => {
    await expectFailure(['cron', 'add', 'switched', '--expression', '* * * * *', '--task', 't', '--paused=yes'], 2, /^wida: --paused is a switch: give it alone \(or =true, =false\); got "yes"/);
    await expectFailure(['queues', '--json=nope'], 2, /^wida: --json is a switch/);
    expect((await wida(['cron', 'show', 'switched'])).code).toBe(1); // nothing was added
    expect((await wida(['queues', '--json=true'])).code).toBe(0);
  });

  it('output cut short by its reader (| head) ends quietly with exit 0, no EPIPE stack', async () => {
    await t.client.enqueueMany(Array.from({ length: 3000 }, (_, i) => ({ task: `piped_${i}` })));
    const child = spawn(process.execPath, [WIDA_BIN, 'jobs', 'list', '--limit', '1000'], {
      cwd: workDir,
      env: cleanEnv({ WIDA_DATABASE_URL: t.url, WIDA_SCHEMA: t.schema }) as NodeJS.ProcessEnv,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.stdout.once('data', () => child.stdout.destroy()); // as head does after its first lines
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    expect(stderr).toBe('');
    expect(code).toBe(0);
  });

  it('a failed action keeps its exit 1 when the reader of its output goes away', async () => {
    const jobs = await t.client.enqueueMany(Array.from({ length: 2000 }, (_, i) => ({ task: `cancel_piped_${i}`, queue: 'idle' })));
    const child = spawn(process.execPath, [WIDA_BIN, 'cancel', ...jobs.map((job) => String(job.id)), '987654321'], {
      cwd: workDir,
      env: cleanEnv({ WIDA_DATABASE_URL: t.url, WIDA_SCHEMA: t.schema }) as NodeJS.ProcessEnv,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.stdout.once('data', () => child.stdout.destroy());
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    expect(stderr).toMatch(/job 987654321 does not exist/);
    expect(code).toBe(1);
  });

  it('a bad setting names the variable (exit 2)', async () => {
    await expectFailure(['queues'], 2, /WIDA_LEASE must be a duration/, { env: { WIDA_LEASE: 'forever' } });
    // Unparseable, it failed only when connecting: "cannot reach the database at (unparseable database URL)", exit 1.
    await expectFailure(['queues'], 2, /WIDA_DATABASE_URL is not a valid URL: the port must be a number up to 65535/, { env: { WIDA_DATABASE_URL: 'postgres://postgres@127.0.0.1:99999/x' } });
  });
});

describe('wida jobs list / show', () => {
  it('lists jobs as a table or JSON, filtered by state, queue and task', async () => {
    await insertJob(t.pool, t.schema, { queue: 'emails', task: 'sendEmail', state: 'pending' });
    const dead = await insertJob(t.pool, t.schema, { queue: 'emails', task: 'sendEmail', state: 'dead', lastError: 'smtp said no' });
    await insertJob(t.pool, t.schema, { queue: 'reports', task: 'build', state: 'completed' });

    const table = await wida(['jobs', 'list']);
    expect(table.code).toBe(0);
    expect(table.stdout.split('\n')[0]).toMatch(/^\s*ID\s+QUEUE\s+TASK\s+STATE\s+PRIORITY\s+ATTEMPT/);
    expect(table.stdout).toMatch(/smtp said no/);
    expect(table.stdout.trim().split('\n')).toHaveLength(4);

    const filtered = await widaJson(['jobs', 'list', '--state', 'dead,cancelled', '--queue', 'emails', '--task', 'sendEmail']);
    expect(filtered.map((job: { id: number }) => job.id)).toEqual([dead.id]);
    expect(await widaJson(['jobs', 'list', '--limit', '1'])).toHaveLength(1);
    const byText = await widaJson(['jobs', 'list', '--text', 'SMTP SAID']);
    expect(byText.map((job: { id: number }) => job.id)).toEqual([dead.id]);
    expect((await wida(['jobs', 'list', '--queue', 'nothing-here'])).stdout).toMatch(/\(no jobs\)/);
    await expectFailure(['jobs', 'list', '--text'], 2, /text/); // no value: not "every job"
  });

  it('shows payload, every attempt with its error, timings and the lease holder', async () => {
    const attemptLog = [
      { attempt: 1, agent: 'host-a-1', started_at: '2026-01-01T00:00:00Z', finished_at: '2026-01-01T00:00:02Z', outcome: 'failed', error: 'timeout talking to smtp' },
      { attempt: 2, agent: 'host-b-2', started_at: '2026-01-01T00:01:00Z', finished_at: '2026-01-01T00:01:01Z', outcome: 'failed', error: 'connection reset' },
    ];
    const running = await insertJob(t.pool, t.schema, { state: 'running', attempt: 3, claimedBy: 'host-c-3', payload: { to: 'ada@example.com' }, attemptLog });
    const shown = await wida(['jobs', 'show', String(running.id)]);
    expect(shown.code).toBe(0);
    expect(shown.stdout).toMatch(/payload:\s+\{"to":"ada@example.com"\}/);
    expect(shown.stdout).toMatch(/lease holder:\s+host-c-3 until/);
    expect(shown.stdout).toMatch(/state:\s+running/);
    expect(shown.stdout).toMatch(/1\s+failed\s+host-a-1\s+2026-01-01T00:00:02.000Z\s+2s\s+timeout talking to smtp/);
    expect(shown.stdout).toMatch(/2\s+failed\s+host-b-2.*connection reset/);

    const json = await widaJson(['jobs', 'show', String(running.id)]);
    expect(json).toMatchObject({
      id: running.id,
      state: 'running',
      claimedBy: 'host-c-3',
      attemptLog: [
        { attempt: 1, agent: 'host-a-1', startedAt: '2026-01-01T00:00:00.000Z', finishedAt: '2026-01-01T00:00:02.000Z', outcome: 'failed', error: 'timeout talking to smtp' },
        { attempt: 2, agent: 'host-b-2', startedAt: '2026-01-01T00:01:00.000Z', finishedAt: '2026-01-01T00:01:01.000Z', outcome: 'failed', error: 'connection reset' },
      ],
    });

    // A finished job keeps claimed_by (who ran it last) but holds no lease; its run time reads as one duration.
    const completed = await insertJob(t.pool, t.schema, { state: 'completed', claimedBy: 'host-d-4', timeoutMs: 3_599_700 });
    const done = await wida(['jobs', 'show', String(completed.id)]);
    expect(done.stdout).not.toMatch(/lease holder/);
    expect(done.stdout).toMatch(/timeout:\s+1h 0m/);
    // A dead job's run_at (its last backoff's) is not shown as a time to wait for; a waiting job says what it waits for.
    const dead = await insertJob(t.pool, t.schema, { state: 'dead', runInMs: 60_000 });
    expect((await wida(['jobs', 'show', String(dead.id)])).stdout).toMatch(/run at:\s+\S+Z\n/);
    const waiting = await insertJob(t.pool, t.schema, { state: 'waiting', pendingDeps: 2 });
    expect((await wida(['jobs', 'show', String(waiting.id)])).stdout).toMatch(/waiting for:\s+2 unfinished dependencies/);
  });

  it('an unknown job id exits 1', async () => {
    await expectFailure(['jobs', 'show', '987654'], 1, /job 987654 does not exist/);
  });
});

describe('wida retry / cancel / drop', () => {
  it('acts on several ids, in tables or JSON', async () => {
    const dead = await insertJob(t.pool, t.schema, { state: 'dead' });
    const cancelled = await insertJob(t.pool, t.schema, { state: 'cancelled' });
    const retried = await wida(['retry', String(dead.id), String(cancelled.id)]);
    expect(retried).toMatchObject({ code: 0, stderr: '' });
    expect(retried.stdout).toBe(`retried job ${dead.id}\nretried job ${cancelled.id}\n`);
    expect((await t.client.getJob(dead.id)).state).toBe('pending');

    expect(await widaJson(['cancel', String(dead.id)])).toEqual({ cancelled: [dead.id], failed: [] });
    expect((await t.client.getJob(dead.id)).state).toBe('cancelled');
    expect((await wida(['drop', String(dead.id)])).stdout).toBe(`dropped job ${dead.id}\n`);
    await expect(t.client.getJob(dead.id)).rejects.toThrow(/does not exist/);
  });

  it('retry says when a job waits for its dependencies instead of running, and for what; --json lists it under waiting', async () => {
    const dependency = await t.client.enqueue({ task: 'x', queue: 'idle' });
    const other = await t.client.enqueue({ task: 'x', queue: 'idle' });
    const dependent = await t.client.enqueue({ task: 'x', queue: 'idle', dependsOn: [dependency.id, other.id] });
    const dead = await insertJob(t.pool, t.schema, { state: 'dead' });
    await t.client.cancelJob(dependency.id); // and, by the cascade, the dependent

    const retried = await wida(['retry', String(dependent.id), String(dead.id)]);
    expect(retried).toMatchObject({ code: 0, stderr: '' });
    expect(retried.stdout).toBe(`retried job ${dependent.id}: waiting for 2 dependencies (blocked: job ${dependency.id} is cancelled)\nretried job ${dead.id}\n`);
    expect(await t.client.getJob(dependent.id)).toMatchObject({ state: 'waiting', pendingDeps: 2 });

    expect((await wida(['retry', String(dependency.id)])).stdout).toBe(`retried job ${dependency.id}\n`);
    await t.client.cancelJob(dependent.id); // an operator cancel: no cascade to its dependencies
    await t.client.cancelJob(other.id);
    expect(await widaJson(['retry', String(other.id), String(dependent.id)])).toEqual({
      retried: [other.id, dependent.id],
      waiting: [{ id: dependent.id, pendingDeps: 2, blockedReason: null }],
      restored: [],
      failed: [],
    });
    expect((await t.client.getJob(dependent.id)).blockedReason).toBeNull();
  });

  it('retry names the dependents its cancel had cancelled that came back; a job named after it that came back is no refusal', async () => {
    const root = await t.client.enqueue({ task: 'x', queue: 'idle' });
    const child = await t.client.enqueue({ task: 'x', queue: 'idle', dependsOn: [root.id] });
    const grandchild = await t.client.enqueue({ task: 'x', queue: 'idle', dependsOn: [child.id] });
    await t.client.cancelJob(root.id); // and, by the cascade, both

    const retried = await wida(['retry', String(root.id), String(child.id)]);
    expect(retried).toMatchObject({ code: 0, stderr: '' });
    expect(retried.stdout).toBe(
      `retried job ${root.id}; brought back 2 dependents its cancel had cancelled: ${child.id}, ${grandchild.id}\n` +
        `job ${child.id} came back with job ${root.id}: waiting for 1 dependency\n`,
    );
    expect((await t.client.getJob(grandchild.id)).state).toBe('waiting');

    await t.client.cancelJob(root.id);
    const waiting = (id: number) => ({ id, state: 'waiting', pendingDeps: 1, blockedReason: null });
    expect(await widaJson(['retry', String(root.id)])).toEqual({
      retried: [root.id],
      waiting: [],
      restored: [{ id: root.id, dependents: [waiting(child.id), waiting(grandchild.id)] }],
      failed: [],
    });
  });

  it('retrying a running job is refused with exit 1 and the states that allow it', async () => {
    const running = await insertJob(t.pool, t.schema, { state: 'running' });
    await expectFailure(['retry', String(running.id)], 1, new RegExp(`job ${running.id} is running; only pending, dead or cancelled jobs can be retried`));
    await expectFailure(['drop', String(running.id)], 1, /is running; only .* jobs can be dropped/);
    expect((await t.client.getJob(running.id)).state).toBe('running');
  });

  it('one refusal does not stop the other ids, but the exit status is 1', async () => {
    const pending = await insertJob(t.pool, t.schema, { state: 'pending' });
    const result = await wida(['cancel', '987654', String(pending.id), '--json']);
    expect(result.code).toBe(1);
    expect(JSON.parse(result.stdout)).toEqual({ cancelled: [pending.id], failed: [{ id: 987654, code: 'JOB_NOT_FOUND', error: expect.stringMatching(/does not exist/) }] });
    expect(result.stderr).toMatch(/^wida: job 987654 does not exist/);
  });
});

describe('wida pause / resume / queues', () => {
  it('pauses and resumes a queue; queues shows counts by state and the paused flag', async () => {
    await insertJob(t.pool, t.schema, { queue: 'emails', state: 'pending' });
    await insertJob(t.pool, t.schema, { queue: 'emails', state: 'dead' });
    expect((await wida(['pause', 'emails'])).stdout).toBe('paused queue emails\n');

    const queues = await widaJson(['queues']);
    // Every state, 0 when none, as the table shows: a script reading counts.running gets a number.
    expect(queues).toEqual([{ name: 'emails', paused: true, counts: { waiting: 0, pending: 1, running: 0, completed: 0, dead: 1, cancelled: 0 } }]);
    const table = await wida(['queues']);
    expect(table.stdout).toMatch(/QUEUE\s+PAUSED\s+WAITING\s+PENDING\s+RUNNING\s+COMPLETED\s+DEAD\s+CANCELLED/);
    expect(table.stdout).toMatch(/emails\s+yes\s+0\s+1\s+0\s+0\s+1\s+0/);

    expect((await wida(['pause', 'emails'])).stdout).toBe('queue emails was already paused\n');
    expect(await widaJson(['resume', 'emails'])).toEqual({ queue: 'emails', paused: false, wasPaused: true, unknown: false });
    expect((await widaJson(['queues']))[0].paused).toBe(false);
  });

  it('resuming a queue that is not paused (a typo, say) warns on stderr, exits 0 and writes nothing', async () => {
    await insertJob(t.pool, t.schema, { queue: 'emails', state: 'pending' });
    // It once answered "resumed queue emials" and listed the new queue.
    const result = await wida(['resume', 'emials']);
    expect(result).toMatchObject({ code: 0, stdout: '' });
    expect(result.stderr).toBe(
      'wida: warning: queue emials was not paused, and no job, agent or cron schedule uses it (a typo?); nothing changed (see `wida queues`)\n',
    );
    expect((await widaJson(['queues'])).map((queue: { name: string }) => queue.name)).toEqual(['emails']);
    const json = await wida(['resume', 'emails', '--json']);
    expect(json).toMatchObject({ code: 0, stderr: 'wida: warning: queue emails was not paused; nothing changed (see `wida queues`)\n' });
    expect(JSON.parse(json.stdout)).toEqual({ queue: 'emails', paused: false, wasPaused: false, unknown: false });
  });

  it('pausing a queue nothing uses pauses it all the same, with a warning on stderr and exit 0', async () => {
    const result = await wida(['pause', 'emials']);
    expect(result).toMatchObject({ code: 0, stdout: 'paused queue emials\n' });
    expect(result.stderr).toBe('wida: warning: queue emials is unknown: no job, agent or cron schedule uses it; paused it all the same (check the name with `wida queues`)\n');
    expect((await widaJson(['queues']))[0]).toMatchObject({ name: 'emials', paused: true });
    const json = await wida(['pause', 'emials', '--json']);
    expect(json).toMatchObject({ code: 0, stderr: expect.stringMatching(/^wida: warning: queue emials is unknown/) });
    expect(JSON.parse(json.stdout)).toEqual({ queue: 'emials', paused: true, wasPaused: true, unknown: true });
  });
});

describe('wida dlq', () => {
  async function deadJobs() {
    const a = await insertJob(t.pool, t.schema, { queue: 'emails', task: 'sendEmail', state: 'dead', lastError: 'bounced' });
    const b = await insertJob(t.pool, t.schema, { queue: 'emails', task: 'sendEmail', state: 'dead', finishedAgoMs: 2 * 3_600_000 });
    const c = await insertJob(t.pool, t.schema, { queue: 'reports', task: 'build', state: 'dead' });
    const alive = await insertJob(t.pool, t.schema, { queue: 'emails', state: 'pending' });
    return { a, b, c, alive };
  }

  it('lists and shows dead jobs, filtered', async () => {
    const { a, b, c, alive } = await deadJobs();
    expect((await widaJson(['dlq', 'list'])).map((job: { id: number }) => job.id)).toEqual([c.id, b.id, a.id]);
    expect((await widaJson(['dlq', 'list', '--queue', 'emails', '--since', '1h'])).map((job: { id: number }) => job.id)).toEqual([a.id]);
    // --since 1h is an hour by the database's clock: a CLI whose clock runs two hours behind still leaves out b,
    // which died two hours ago (by this machine's clock, it would have reached back three hours).
    const slowClock = { NODE_OPTIONS: '--import=data:text/javascript,Date.now=((now)=>()=>now()-7200000)(Date.now)' };
    expect((await widaJson(['dlq', 'list', '--queue', 'emails', '--since', '1h'], { env: slowClock })).map((job: { id: number }) => job.id)).toEqual([a.id]);
    expect((await wida(['dlq', 'list', '--task', 'build'])).stdout).toMatch(/reports\s+build\s+dead/);
    expect((await wida(['dlq', 'show', String(a.id)])).stdout).toMatch(/last error:\s+bounced/);
    await expectFailure(['dlq', 'show', String(alive.id)], 1, /is pending, not in the DLQ; `wida jobs show/);
    await expectFailure(['dlq', 'list', '--since', 'last tuesday'], 2, /--since "last tuesday" is neither a duration/);
    await expectFailure(['dlq', 'list', '--since', '99999999d'], 2, /--since "99999999d" reaches too far back; give at most 100 years/);
    // The same words as jobs list (it said "invalid limit: Invalid input: expected number, received NaN").
    for (const command of [['dlq', 'list'], ['jobs', 'list']]) await expectFailure([...command, '--limit', 'abc'], 2, /^wida: --limit must be a whole number from 1 to 1000; page further back with --before ID\n/);
    await expectFailure(['dlq', 'purge', '--all', '--since', '99999999d', '--yes'], 2, /reaches too far back/);
    await expectFailure(['jobs', 'list', '--limit', '100000000'], 2, /^wida: --limit must be a whole number from 1 to 1000/);
  });

  it('control characters in what anyone may enqueue are shown escaped, never sent to the terminal', async () => {
    const queue = 'esc\u001b[31mRED\u0007';
    await t.client.enqueue({ task: 'paint\u001b]0;title\u0007', queue });
    const shown = await wida(['jobs', 'list', '--queue', queue]);
    expect(shown.code).toBe(0);
    expect(shown.stdout).toContain('esc\\x1b[31mRED\\x07');
    expect(shown.stdout).toContain('paint\\x1b]0;title\\x07');
    expect(shown.stdout).not.toMatch(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/);
    const json = await wida(['jobs', 'list', '--queue', queue, '--json']);
    expect(json.stdout).not.toMatch(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/);
    await t.client.enqueue({ task: 'csi\u009b2J', queue: 'c1' });
    const c1 = await wida(['jobs', 'list', '--queue', 'c1', '--json']);
    expect(c1.stdout).toContain('csi\\u009b2J');
    expect(c1.stdout).not.toContain('\u009b');
    const refused = await wida(['resume', 'nothing\u001b[2J']);
    expect(refused.stderr + refused.stdout).not.toContain('\u001b');
  });

  it('jobs list pages back with --before: each page starts below the last id of the one before', async () => {
    const jobs = await t.client.enqueueMany(Array.from({ length: 5 }, () => ({ task: 'paged', queue: 'paging' })));
    const ids = jobs.map((job) => job.id).sort((a, b) => b - a);
    const page = async (...extra: string[]) =>
      ((await widaJson(['jobs', 'list', '--queue', 'paging', '--limit', '2', ...extra])) as { id: number }[]).map((job) => job.id);
    const first = await page();
    const second = await page('--before', String(first[1]));
    const third = await page('--before', String(second[1]));
    expect([...first, ...second, ...third]).toEqual(ids);
    await expectFailure(['jobs', 'list', '--before', 'latest'], 2, /"latest" is not a job id/);
  });

  it('relative times ("in 10m") are measured from the database clock, not this machine\'s', async () => {
    const { id } = await t.client.enqueue({ task: 'later', queue: 'clock', delay: '10m' });
    // A CLI whose clock runs two hours behind would say "in 2h 9m".
    const slowClock = { NODE_OPTIONS: '--import=data:text/javascript,Date.now=((now)=>()=>now()-7200000)(Date.now)' };
    // 9m 59.6s from the database's now() rounds to "10m 0s": the CLI may run within half a second of the enqueue.
    expect((await wida(['jobs', 'show', String(id)], { env: slowClock })).stdout).toMatch(/run at:\s+\S+ \(in (9m [0-9]+s|10m 0s)\)/);
    expect((await wida(['jobs', 'list', '--queue', 'clock'], { env: slowClock })).stdout).toMatch(/in (9m [0-9]+s|10m 0s)/);
  });

  it('replays and purges by id; a job that is not dead is refused with exit 1', async () => {
    const { a, b, alive } = await deadJobs();
    expect((await wida(['dlq', 'replay', String(a.id)])).stdout).toBe(`replayed job ${a.id}\n`);
    expect(await t.client.getJob(a.id)).toMatchObject({ state: 'pending', attempt: 0, replayCount: 1 });
    expect(await widaJson(['dlq', 'purge', String(b.id)])).toEqual({ purged: [b.id], failed: [] });
    await expectFailure(['dlq', 'purge', String(alive.id)], 1, /is pending, not dead; only dead jobs can be purged/);
    await expectFailure(['dlq', 'replay', String(alive.id)], 1, /is pending; only dead jobs can be replayed/);
    await expectFailure(['dlq', 'purge', '987654'], 1, /job 987654 does not exist/);
  });

  it('replay by id says when the job waits for a dependency instead of running', async () => {
    const dependency = await t.client.enqueue({ task: 'x', queue: 'idle' });
    const job = await t.client.enqueue({ task: 'x', queue: 'doomed', dependsOn: [dependency.id] });
    await t.client.cancelJob(dependency.id); // and, by the cascade, the job
    // A dead job with a dependency not completed: one retried before retry re-checked dependencies (that made
    // it pending, as this statement does) and then failed.
    await t.pool.query(`UPDATE "${t.schema}".jobs SET state = 'pending', run_at = now(), finished_at = NULL, attempt = 0 WHERE id = $1`, [job.id]);
    const [claimed] = await jobClaimBatch(t.db, { agentId: 'test', leaseMs: 30_000, queues: ['doomed'], tasks: null, limit: 1 });
    await jobFailMany(t.db, [{ ...claimed, error: 'boom', permanent: true, outcome: 'failed' }]);
    expect((await t.client.getJob(job.id)).state).toBe('dead');

    const replayed = await wida(['dlq', 'replay', String(job.id)]);
    expect(replayed).toMatchObject({ code: 0, stderr: '' });
    expect(replayed.stdout).toBe(`replayed job ${job.id}: waiting for 1 dependency (blocked: job ${dependency.id} is cancelled)\n`);
    expect(await t.client.getJob(job.id)).toMatchObject({ state: 'waiting', pendingDeps: 1, replayCount: 1 });
  });

  it('replay --all says which jobs wait for a dependency instead of running, and which dependents came back', async () => {
    const dependency = await t.client.enqueue({ task: 'x', queue: 'idle' });
    const job = await t.client.enqueue({ task: 'x', queue: 'doomed', dependsOn: [dependency.id] });
    const root = await t.client.enqueue({ task: 'x', queue: 'fragile' });
    const child = await t.client.enqueue({ task: 'x', queue: 'idle', dependsOn: [root.id, dependency.id] });
    await t.client.cancelJob(root.id); // and, by the cascade, child
    await t.client.cancelJob(dependency.id); // and job: child would have been, had it been waiting
    // Dead with a dependency not completed: retried before retry re-checked dependencies (as this statement does), then failed.
    await t.pool.query(`UPDATE "${t.schema}".jobs SET state = 'pending', run_at = now(), finished_at = NULL, attempt = 0 WHERE id = $1`, [job.id]);
    const fail = async (queue: string) => {
      const [claimed] = await jobClaimBatch(t.db, { agentId: 'test', leaseMs: 30_000, queues: [queue], tasks: null, limit: 1 });
      await jobFailMany(t.db, [{ ...claimed, error: 'boom', permanent: true, outcome: 'failed' }]);
    };
    await fail('doomed');
    await t.client.retryJob(root.id); // child stays: dependency is cancelled
    await fail('fragile');
    await t.client.retryJob(dependency.id); // child stays: root, whose cancel it was, is dead

    const replayed = await wida(['dlq', 'replay', '--all', '--yes']);
    expect(replayed).toMatchObject({ code: 0, stderr: '' });
    expect(replayed.stdout).toBe(
      `replayed 2 dead jobs\njob ${job.id}: waiting for 1 dependency\nbrought back 1 dependent their cancel had cancelled: ${child.id}\n`,
    );
    expect(await t.client.getJob(child.id)).toMatchObject({ state: 'waiting', pendingDeps: 2 });
  });

  it('replay --all --json lists the jobs left waiting and the dependents brought back', async () => {
    const dependency = await t.client.enqueue({ task: 'x', queue: 'idle' });
    const job = await t.client.enqueue({ task: 'x', queue: 'doomed', dependsOn: [dependency.id] });
    await t.client.cancelJob(dependency.id);
    await t.pool.query(`UPDATE "${t.schema}".jobs SET state = 'dead', blocked_reason = NULL, pending_deps = 0 WHERE id = $1`, [job.id]);
    expect(await widaJson(['dlq', 'replay', '--all', '--yes'])).toEqual({
      replayed: [job.id],
      waiting: [{ id: job.id, pendingDeps: 1, blockedReason: `blocked: job ${dependency.id} is cancelled` }],
      restored: [],
    });
  });

  it('--all needs --yes without a terminal (exit 1, nothing changed); with --yes it acts on every match', async () => {
    const { a, b, c } = await deadJobs();
    await expectFailure(['dlq', 'purge', '--all'], 1, /purge 3 dead jobs needs confirmation.*add --yes/);
    await expectFailure(['dlq', 'replay'], 2, /name dead job ids, or use --all/);
    await expectFailure(['dlq', 'replay', String(a.id), '--all'], 2, /not both/);
    expect(await t.client.listDead()).toHaveLength(3);

    const replayed = await widaJson(['dlq', 'replay', '--all', '--queue', 'emails', '--yes']);
    expect(replayed.replayed.sort()).toEqual([a.id, b.id].sort());
    const purged = await wida(['dlq', 'purge', '--all', '--yes']);
    expect(purged.stdout).toBe('purged 1 dead job\n');
    await expect(t.client.getJob(c.id)).rejects.toThrow(/does not exist/);
  });
});

describe('wida workers', () => {
  it('lists agents with heartbeat age and alive or dead, judged by each agent\'s own heartbeat interval', async () => {
    const agent = (id: string, pid: number, heartbeatIntervalMs: number | null = 5_000) =>
      ({ id, host: 'box', pid, version: '0.1.0', queues: id === 'quiet' ? ['emails'] : null, concurrency: 4, heartbeatIntervalMs });
    await agentHeartbeat(t.db, agent('busy', 101), 'running');
    await agentHeartbeat(t.db, agent('quiet', 102), 'running');
    await agentHeartbeat(t.db, agent('gone', 103), 'stopped');
    // Beats every 30 s: one minute of silence is two missed beats, still alive.
    await agentHeartbeat(t.db, agent('patient', 104, 30_000), 'running');
    // Registered before agents recorded their interval: judged by the default, 5 s.
    await agentHeartbeat(t.db, agent('legacy', 105, null), 'running');
    await t.pool.query(`UPDATE "${t.schema}".agents SET heartbeat_at = now() - interval '1 minute' WHERE id IN ('quiet', 'patient', 'legacy')`);

    const rows = await widaJson(['workers']);
    const byId = Object.fromEntries(rows.map((row: { id: string; alive: boolean }) => [row.id, row]));
    expect(byId.busy).toMatchObject({ host: 'box', pid: 101, alive: true, state: 'running' });
    expect(byId.quiet).toMatchObject({ alive: false, queues: ['emails'] });
    expect(byId.quiet.heartbeatAgeMs).toBeGreaterThanOrEqual(60_000);
    expect(byId.gone).toMatchObject({ alive: false, state: 'stopped' });
    expect(byId.patient).toMatchObject({ alive: true, heartbeatIntervalMs: 30_000 });
    expect(byId.legacy).toMatchObject({ alive: false, heartbeatIntervalMs: null });

    const table = await wida(['workers']);
    expect(table.stdout).toMatch(/busy\s+box\s+101\s+\(all\)\s+4\s+running\s+\S+ ago\s+alive/);
    expect(table.stdout).toMatch(/quiet\s+box\s+102\s+emails\s+4\s+running\s+1m \d+s ago\s+dead/);
  });
});
