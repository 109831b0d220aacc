import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig, readDotEnv, type ConfigInput } from '../src/shared/config.js';
import { parseDuration } from '../src/shared/duration.js';
import { ConfigError } from '../src/shared/errors.js';
import { configErrorFrom } from './support/errors.js';

function configError(flags: ConfigInput, env: Record<string, string> = {}, dotEnv: Record<string, string> = {}): ConfigError {
  return configErrorFrom(() => loadConfig(flags, env, dotEnv));
}

describe('loadConfig', () => {
  it('with nothing set, every setting has its default; those the agent derives (poll, heartbeat, prefetch, ...) are left out', () => {
    expect(loadConfig({}, {}, {})).toEqual({
      WIDA_SCHEMA: 'wida',
      WIDA_PORT: 7070,
      WIDA_WORKER_CONCURRENCY: 10,
      WIDA_MAX_PAYLOAD_BYTES: 1024 * 1024,
      WIDA_LEASE: 30_000,
      WIDA_SHUTDOWN_GRACE: 10_000,
      WIDA_RETENTION: 86_400_000,
      WIDA_JOB_TIMEOUT: 900_000,
    });
  });

  it('precedence per setting: flags > environment > .env > defaults', () => {
    const flags = { WIDA_WORKER_CONCURRENCY: 4 };
    const env = { WIDA_WORKER_CONCURRENCY: '3', WIDA_SCHEMA: 'from_env' };
    const dotEnv = { WIDA_WORKER_CONCURRENCY: '2', WIDA_SCHEMA: 'from_dotenv', WIDA_PORT: '8080' };
    expect(loadConfig(flags, env, dotEnv)).toMatchObject({ WIDA_WORKER_CONCURRENCY: 4, WIDA_SCHEMA: 'from_env', WIDA_PORT: 8080, WIDA_LEASE: 30_000 });
    expect(loadConfig({}, env, dotEnv)).toMatchObject({ WIDA_WORKER_CONCURRENCY: 3, WIDA_SCHEMA: 'from_env', WIDA_PORT: 8080 });
    expect(loadConfig({}, {}, dotEnv)).toMatchObject({ WIDA_WORKER_CONCURRENCY: 2, WIDA_SCHEMA: 'from_dotenv', WIDA_PORT: 8080 });
    expect(loadConfig({}, {}, {})).toMatchObject({ WIDA_WORKER_CONCURRENCY: 10, WIDA_SCHEMA: 'wida', WIDA_PORT: 7070 });
  });

  it('a valid flag overrides a bad value below it, which is then never validated', () => {
    expect(loadConfig({ WIDA_WORKER_CONCURRENCY: 8 }, { WIDA_WORKER_CONCURRENCY: 'abc' }, {})).toMatchObject({ WIDA_WORKER_CONCURRENCY: 8 });
    expect(loadConfig({}, { WIDA_SCHEMA: 'good_one' }, { WIDA_SCHEMA: 'Bad-Name' })).toMatchObject({ WIDA_SCHEMA: 'good_one' });
  });

  it("keeps completed jobs for months if asked: WIDA_RETENTION is not held to a timer's 24.8 days", () => {
    expect(loadConfig({}, { WIDA_RETENTION: '90d' }, {})).toMatchObject({ WIDA_RETENTION: 90 * 86_400_000 });
    expect(configError({}, { WIDA_RETENTION: '40000d' }, {}).message).toMatch(/WIDA_RETENTION must be at most \d+ ms \(about 36500 days\); got 40000d/);
  });

  it('a reserved schema name gets its own reason', () => {
    expect(configError({}, { WIDA_SCHEMA: 'pg_jobs' }, {}).message).toMatch(/WIDA_SCHEMA "pg_jobs" is a name PostgreSQL keeps for itself/);
    expect(configError({}, { WIDA_SCHEMA: 'Bad-Name' }, {}).message).toMatch(/WIDA_SCHEMA "Bad-Name" is not a valid schema name; expected lowercase/);
  });

  it('an empty value counts as unset', () => {
    expect(loadConfig({}, { WIDA_PORT: '', WIDA_SCHEMA: '' }, {})).toMatchObject({ WIDA_PORT: 7070, WIDA_SCHEMA: 'wida' });
    const blank = loadConfig({}, { WIDA_PORT: ' ', WIDA_PREFETCH: '  ' }, {});
    expect(blank.WIDA_PORT).toBe(7070);
    expect(blank).not.toHaveProperty('WIDA_PREFETCH');
    expect(loadConfig({}, { WIDA_WORKER_CONCURRENCY: ' 7 ', WIDA_PREFETCH: '0' }, {})).toMatchObject({ WIDA_WORKER_CONCURRENCY: 7, WIDA_PREFETCH: 0 });
  });

  it('reads durations as "30s", "2m", "1h" or plain milliseconds, and the database URL as given', () => {
    const config = loadConfig(
      { WIDA_LEASE: '2m' },
      { WIDA_POLL_INTERVAL: '250ms', WIDA_SHUTDOWN_GRACE: '30s', WIDA_RETENTION: '1d', WIDA_JOB_TIMEOUT: '1500', WIDA_DATABASE_URL: 'postgresql://u@db:5432/app' },
      {},
    );
    expect(config).toMatchObject({
      WIDA_LEASE: 120_000,
      WIDA_POLL_INTERVAL: 250,
      WIDA_SHUTDOWN_GRACE: 30_000,
      WIDA_RETENTION: 86_400_000,
      WIDA_JOB_TIMEOUT: 1_500,
      WIDA_DATABASE_URL: 'postgresql://u@db:5432/app',
    });
  });

  it('the result is frozen', () => {
    const config = loadConfig({}, {}, {});
    expect(Object.isFrozen(config)).toBe(true);
    expect(() => {
      (config as { WIDA_PORT: number }).WIDA_PORT = 1;
    }).toThrow(TypeError);
  });

  it.each([
    ['WIDA_WORKER_CONCURRENCY', 'abc'],
    ['WIDA_WORKER_CONCURRENCY', '0'],
    ['WIDA_WORKER_CONCURRENCY', '-2'],
    ['WIDA_WORKER_CONCURRENCY', '2.5'],
    ['WIDA_SCHEMA', 'Bad-Name'],
    ['WIDA_SCHEMA', 'a'.repeat(48)],
    ['WIDA_DATABASE_URL', 'mysql://x'],
    ['WIDA_DATABASE_URL', 'not a url'],
    ['WIDA_PORT', '70000'],
    ['WIDA_PORT', 'http'],
    ['WIDA_MAX_PAYLOAD_BYTES', '1MB'],
    ['WIDA_LEASE', 'soon'],
    ['WIDA_LEASE', '500ms'],
    ['WIDA_POLL_INTERVAL', '5ms'],
    ['WIDA_JOB_TIMEOUT', '0'],
    ['WIDA_RETENTION', '-1s'],
    ['WIDA_LOG_LEVEL', 'verbose'],
    ['WIDA_HEARTBEAT_INTERVAL', '0'],
    ['WIDA_RESCUE_INTERVAL', 'often'],
    ['WIDA_PREFETCH', '5s'],
    ['WIDA_PREFETCH', '-1'],
    ['WIDA_PREFETCH', '1e3'],
    ['WIDA_WORKER_CONCURRENCY', '0x10'],
    ['WIDA_LOG_LEVEL', 'constructor'],
  ])('%s=%j -> ConfigError naming the variable', (name, value) => {
    const error = configError({}, { [name]: value });
    expect(error.code).toBe('CONFIG_INVALID');
    expect(error.message).toContain(name);
  });

  it('the same bad value from .env or from a flag is reported too', () => {
    expect(configError({}, {}, { WIDA_WORKER_CONCURRENCY: 'abc' }).message).toContain('WIDA_WORKER_CONCURRENCY');
    expect(configError({ WIDA_SCHEMA: 'Bad-Name' }).message).toContain('WIDA_SCHEMA');
  });

  it('every bad value is named in one error', () => {
    const error = configError({}, { WIDA_WORKER_CONCURRENCY: 'abc', WIDA_SCHEMA: 'Bad-Name', WIDA_DATABASE_URL: 'mysql://x' });
    for (const name of ['WIDA_WORKER_CONCURRENCY', 'WIDA_SCHEMA', 'WIDA_DATABASE_URL']) expect(error.message).toContain(name);
  });

});

describe('readDotEnv', () => {
  it('reads KEY=value lines (comments, quotes) and treats a missing file as no settings', () => {
    const dir = mkdtempSync(join(tmpdir(), 'wida-dotenv-'));
    try {
      const path = join(dir, '.env');
      writeFileSync(path, '# a comment\nWIDA_SCHEMA=from_file\nWIDA_DATABASE_URL="postgres://u@h:5432/d"\n\nWIDA_PORT=9090\n');
      expect(readDotEnv(path)).toEqual({ WIDA_SCHEMA: 'from_file', WIDA_DATABASE_URL: 'postgres://u@h:5432/d', WIDA_PORT: '9090' });
      expect(loadConfig({}, {}, readDotEnv(path))).toMatchObject({ WIDA_SCHEMA: 'from_file', WIDA_PORT: 9090 });
      expect(readDotEnv(join(dir, 'missing.env'))).toEqual({});
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('reads a file that starts with a byte-order mark, and refuses a line that is not KEY=value rather than lose the setting after it', () => {
    const dir = mkdtempSync(join(tmpdir(), 'wida-dotenv-'));
    try {
      const path = join(dir, '.env');
      writeFileSync(path, '\uFEFFWIDA_DATABASE_URL=postgres://u@h:5432/d\n');
      expect(readDotEnv(path)).toEqual({ WIDA_DATABASE_URL: 'postgres://u@h:5432/d' });
      // Folded into the next key, the URL was lost, and commands went to the embedded database.
      writeFileSync(path, 'WIDA_SCHEMA=app\ngarbage line\nWIDA_DATABASE_URL=postgres://u@h:5432/d\n');
      expect(configErrorFrom(() => readDotEnv(path)).message).toBe(
        `${path}: cannot read "garbage line" as a setting; expected KEY=value lines, # comments or blank lines`,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('parseDuration', () => {
  it.each([
    ['250ms', 250],
    ['30s', 30_000],
    ['1.5s', 1_500],
    ['5m', 300_000],
    ['2h', 7_200_000],
    ['1d', 86_400_000],
    ['1500', 1_500],
    [' 10s ', 10_000],
    [42, 42],
    ['soon', undefined],
    ['10 s', undefined],
    ['-5s', undefined],
    ['1w', undefined],
    [Number.NaN, undefined],
    [Number.POSITIVE_INFINITY, undefined],
  ] as const)('%j -> %s', (input, expected) => {
    expect(parseDuration(input)).toBe(expected);
  });
});
