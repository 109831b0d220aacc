import { existsSync, readFileSync } from 'node:fs';
import { parseEnv } from 'node:util';
import { z } from 'zod';
import { durationField } from './duration.js';

/** 100 years: as far as a job's delay may reach. */
const MAX_RETENTION_MS = 100 * 365 * 86_400_000;
import { ConfigError } from './errors.js';
import { DEFAULT_MAX_PAYLOAD_BYTES } from './job-spec.js';
import { LOG_LEVELS } from './logger.js';
import { validateSchemaName } from './db/sql.js';

const positiveInt = (name: string) =>
  z.coerce.number({ error: `${name} must be a whole number` }).int(`${name} must be a whole number`).positive(`${name} must be greater than 0`);

/** Settings from the environment (and .env). Flags override these in the CLI before validation. */
const configSchema = z
  .object({
    WIDA_DATABASE_URL: z
      .string()
      .refine((url) => /^postgres(ql)?:\/\//.test(url), 'WIDA_DATABASE_URL must be a postgres:// or postgresql:// URL')
      // Unparseable, it failed only at the first connection, as "cannot reach the database" with exit 1.
      .refine(
        (url) => URL.canParse(url),
        'WIDA_DATABASE_URL is not a valid URL: the port must be a number up to 65535, and special characters in the user or password percent-encoded (%40 for @)',
      )
      .optional(),
    WIDA_SCHEMA: z.string().default('wida').refine((name) => {
      try {
        validateSchemaName(name);
        return true;
      } catch {
        return false;
      }
    }, 'WIDA_SCHEMA must be lowercase letters, digits and _, starting with a letter or _, at most 47 characters'),
    WIDA_PORT: positiveInt('WIDA_PORT').max(65535, 'WIDA_PORT must be at most 65535').default(7070),
    WIDA_WORKER_CONCURRENCY: positiveInt('WIDA_WORKER_CONCURRENCY').default(10),
    WIDA_MAX_PAYLOAD_BYTES: positiveInt('WIDA_MAX_PAYLOAD_BYTES').default(DEFAULT_MAX_PAYLOAD_BYTES),
    WIDA_LEASE: durationField('WIDA_LEASE', { min: 1000 }).default(30_000),
    WIDA_POLL_INTERVAL: durationField('WIDA_POLL_INTERVAL', { min: 10 }).default(1_000),
    WIDA_SHUTDOWN_GRACE: durationField('WIDA_SHUTDOWN_GRACE').default(10_000),
    // Compared in SQL only, never a timer: months or years of history are a normal setting.
    WIDA_RETENTION: durationField('WIDA_RETENTION', { max: MAX_RETENTION_MS }).default(86_400_000),
    WIDA_JOB_TIMEOUT: durationField('WIDA_JOB_TIMEOUT', { min: 1 }).default(15 * 60_000),
    // No defaults for these four: the agent derives them (the heartbeat from the lease, prefetch from the concurrency),
    // and the agent logs from info up, the demo only errors (its own output is the show).
    WIDA_HEARTBEAT_INTERVAL: durationField('WIDA_HEARTBEAT_INTERVAL', { min: 1 }).optional(),
    WIDA_RESCUE_INTERVAL: durationField('WIDA_RESCUE_INTERVAL', { min: 1 }).optional(),
    WIDA_PREFETCH: z.coerce.number({ error: 'WIDA_PREFETCH must be a whole number' }).int('WIDA_PREFETCH must be a whole number').min(0, 'WIDA_PREFETCH must be 0 or more').optional(),
    WIDA_LOG_LEVEL: z.enum(LOG_LEVELS, { error: `WIDA_LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')}` }).optional(),
  })
  .superRefine((config, ctx) => {
    if (config.WIDA_POLL_INTERVAL > config.WIDA_LEASE) {
      ctx.addIssue({ code: 'custom', path: ['WIDA_POLL_INTERVAL'], message: 'WIDA_POLL_INTERVAL must not be longer than WIDA_LEASE' });
    }
  });

export type WidaConfig = Readonly<z.output<typeof configSchema>>;
export type ConfigInput = Partial<Record<keyof z.input<typeof configSchema>, string | number | undefined>>;

/** Reads KEY=value lines from a .env file; a missing file is no settings. */
export function readDotEnv(path = '.env'): Record<string, string> {
  if (!existsSync(path)) return {};
  // An editor's byte-order mark would become part of the first key, and that setting silently ignored.
  const text = readFileSync(path, 'utf8').replace(/^\uFEFF/, '');
  const values = parseEnv(text) as Record<string, string>;
  // A line without "=" is folded into the next key ("junk\nWIDA_DATABASE_URL"), which then sets nothing: with the
  // database URL lost that way, commands went to the embedded database instead.
  for (const key of Object.keys(values)) {
    if (!ENV_KEY.test(key)) {
      throw new ConfigError(
        `${path}: cannot read ${JSON.stringify(key.split('\n')[0])} as a setting; expected KEY=value lines, # comments or blank lines`,
      );
    }
  }
  return values;
}

const ENV_KEY = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Builds the config once: flags, then environment, then .env, then defaults. Throws a ConfigError naming each bad value. */
export function loadConfig(
  flags: ConfigInput = {},
  env: NodeJS.ProcessEnv = process.env,
  dotEnv: Record<string, string> = readDotEnv(),
): WidaConfig {
  const merged: Record<string, unknown> = {};
  for (const key of Object.keys(configSchema.shape)) {
    const value = flags[key as keyof ConfigInput] ?? env[key] ?? dotEnv[key];
    if (value !== undefined && value !== '') merged[key] = value;
  }
  const parsed = configSchema.safeParse(merged);
  if (!parsed.success) throw new ConfigError(`invalid configuration:\n${z.prettifyError(parsed.error)}`);
  return Object.freeze(parsed.data);
}
