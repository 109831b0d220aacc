/**
 * The zero-setup default, as real subprocesses: with no WIDA_DATABASE_URL, the first command starts an
 * embedded PostgreSQL in WIDA_HOME (or .wida/ in the working directory), other processes join it, and
 * its jobs survive `wida db stop` and the next start.
 */
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertBuilt } from './fixtures/children.js';
import { runCli, type CliOptions } from './support/run-cli.js';

let workDir: string;
let home: string;

beforeAll(() => {
  assertBuilt();
  workDir = mkdtempSync(join(tmpdir(), 'wida-embedded-'));
  chmodSync(workDir, 0o755); // as root the server runs as the postgres user, which must reach its data
  home = join(workDir, 'home');
});

afterAll(async () => {
  // Never leave a server running, even when a test failed half-way.
  for (const env of [{ WIDA_HOME: home }, {}]) await runCli(['db', 'stop'], { cwd: workDir, env }).catch(() => {});
  rmSync(workDir, { recursive: true, force: true });
});

function wida(args: string[], options: CliOptions = {}) {
  return runCli(args, { cwd: workDir, timeoutMs: 60_000, ...options, env: { WIDA_HOME: home, ...options.env } });
}

async function widaJson(args: string[], options: CliOptions = {}) {
  const result = await wida([...args, '--json'], options);
  expect(result.code, result.stderr).toBe(0);
  return { json: JSON.parse(result.stdout), stderr: result.stderr };
}

describe('the embedded database (no WIDA_DATABASE_URL)', () => {
  it('is started by the first command, joined by the next ones, and keeps jobs across a stop and start', async () => {
    const before = await widaJson(['db', 'status']);
    expect(before.json).toMatchObject({ source: 'embedded', initialised: false, running: false, home });

    const first = await widaJson(['enqueue', 'hello', '--payload', '{"n":1}']);
    expect(first.stderr).toMatch(/started the embedded PostgreSQL \(data in .*home, port \d+\).*wida db stop/);
    const status = await widaJson(['db', 'status']);
    expect(status.json).toMatchObject({ running: true, initialised: true, port: expect.any(Number), url: expect.stringMatching(/^postgres:\/\/postgres:\*\*\*@127\.0\.0\.1:\d+\/postgres$/) });

    // A second process joins the running server: no start, same job.
    const second = await widaJson(['jobs', 'show', String(first.json.id)]);
    expect(second.stderr).toBe('');
    expect(second.json).toMatchObject({ id: first.json.id, task: 'hello', payload: { n: 1 }, state: 'pending' });

    const stop = await widaJson(['db', 'stop']);
    expect(stop.json).toEqual({ stopped: true });
    expect((await widaJson(['db', 'status'])).json).toMatchObject({ running: false, initialised: true });
    expect((await widaJson(['db', 'stop'])).json).toEqual({ stopped: false });

    // Several processes at once after the stop: one starts it, the others wait for it and join.
    const together = await Promise.all([0, 1, 2].map(() => widaJson(['jobs', 'list'])));
    expect(together.filter((result) => /started the embedded PostgreSQL/.test(result.stderr))).toHaveLength(1);
    for (const result of together) expect(result.json.map((job: { id: number }) => job.id)).toEqual([first.json.id]);

    const human = await wida(['db', 'status']);
    expect(human.stdout).toMatch(/database: embedded PostgreSQL/);
    expect(human.stdout).toMatch(/status: +running on 127\.0\.0\.1:\d+ \(pid \d+\)/);
    expect((await widaJson(['db', 'stop'])).json).toEqual({ stopped: true });
  });

  it('lives in .wida/ of the working directory when WIDA_HOME is not set; db start and stop manage it', async () => {
    const started = await widaJson(['db', 'start'], { env: { WIDA_HOME: undefined } });
    expect(started.json).toMatchObject({ started: true, home: join(workDir, '.wida') });
    expect(existsSync(join(workDir, '.wida', 'postgres', 'PG_VERSION'))).toBe(true);
    const again = await wida(['db', 'start'], { env: { WIDA_HOME: undefined } });
    expect(again.stdout).toMatch(/already running: embedded PostgreSQL on 127\.0\.0\.1:\d+/);
    expect((await wida(['db', 'stop'], { env: { WIDA_HOME: undefined } })).stdout).toBe('stopped the embedded PostgreSQL\n');
  });

  it('starts again on the port it had (running agents reconnect), and finds its server whatever port db.json says', async () => {
    const first = await widaJson(['db', 'start']);
    expect((await widaJson(['db', 'stop'])).json).toEqual({ stopped: true });
    const again = await widaJson(['db', 'start']);
    expect(again.json.port).toBe(first.json.port);
    // A start cut short (the process killed while pg_ctl waited) left db.json naming another port than the server's.
    const stateFile = join(home, 'db.json');
    writeFileSync(stateFile, JSON.stringify({ ...JSON.parse(readFileSync(stateFile, 'utf8')), port: 1 }));
    expect((await widaJson(['db', 'status'])).json).toMatchObject({ running: true, port: first.json.port });
    expect((await widaJson(['queues'])).json).toEqual([expect.objectContaining({ name: 'default' })]); // the first test's job
    expect((await widaJson(['db', 'stop'])).json).toEqual({ stopped: true });
  });

  it('an initdb cut short (db.json says so) is made again at the next command', async () => {
    const cutShort = join(workDir, 'cut-short');
    mkdirSync(join(cutShort, 'postgres'), { recursive: true });
    writeFileSync(join(cutShort, 'postgres', 'PG_VERSION'), '17\n');
    writeFileSync(join(cutShort, 'postgres', 'half-written'), '');
    writeFileSync(join(cutShort, 'db.json'), JSON.stringify({ user: 'postgres', password: 'pw-of-the-cut-short-init', initialising: true }));
    const env = { WIDA_HOME: cutShort };
    try {
      expect((await widaJson(['db', 'status'], { env })).json).toMatchObject({ initialised: false, running: false });
      expect((await widaJson(['db', 'start'], { env })).json).toMatchObject({ started: true });
      expect(existsSync(join(cutShort, 'postgres', 'half-written'))).toBe(false);
      expect(JSON.parse(readFileSync(join(cutShort, 'db.json'), 'utf8'))).not.toHaveProperty('initialising');
    } finally {
      await wida(['db', 'stop'], { env });
    }
  });

  it('with WIDA_DATABASE_URL set, db status names that database and db start refuses', async () => {
    const env = { WIDA_DATABASE_URL: 'postgres://someone:secret@127.0.0.1:1/app' };
    const status = await wida(['db', 'status'], { env });
    expect(status.code).toBe(1);
    expect(status.stdout).toMatch(/database: postgres:\/\/someone:\*\*\*@127\.0\.0\.1:1\/app \(from WIDA_DATABASE_URL/);
    expect(status.stdout).toMatch(/unreachable: connect ECONNREFUSED/);
    const json = await wida(['db', 'status', '--json'], { env });
    expect(json.code).toBe(1);
    expect(JSON.parse(json.stdout)).toMatchObject({ source: 'WIDA_DATABASE_URL', reachable: false });
    const start = await wida(['db', 'start'], { env });
    expect(start.code).toBe(1);
    expect(start.stderr).toMatch(/WIDA_DATABASE_URL is set, so Wida uses that database, not the embedded one/);
  });
});
