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

/** Digits only (spaces around them are trimmed): Number() would also take 0x10 or 1e3. */
const wholeNumber = (name: string, { min = 0, max = Number.MAX_SAFE_INTEGER }: { min?: number; max?: number } = {}) =>
  z.preprocess(
    (value) => (typeof value === 'string' ? (/^-?\d+$/.test(value.trim()) ? Number(value) : Number.NaN) : value),
    z
      .number({ error: `${name} must be a whole number` })
      .int(`${name} must be a whole number`)
      .min(min, min === 1 ? `${name} must be greater than 0` : `${name} must be ${min} or more`)
      .max(max, `${name} must be at most ${max}`),
  );
const positiveInt = (name: string, max?: number) => wholeNumber(name, { min: 1, max });

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
    // validateSchemaName's own message: it names the value and says why (a reserved pg_ name is valid otherwise).
    WIDA_SCHEMA: z.string().default('wida').superRefine((name, context) => {
      try {
        validateSchemaName(name);
      } catch (error) {
        context.addIssue({ code: 'custom', message: (error as Error).message });
      }
    }),
    WIDA_PORT: positiveInt('WIDA_PORT', 65535).default(7070),
    WIDA_WORKER_CONCURRENCY: positiveInt('WIDA_WORKER_CONCURRENCY').default(10),
    WIDA_MAX_PAYLOAD_BYTES: positiveInt('WIDA_MAX_PAYLOAD_BYTES').default(DEFAULT_MAX_PAYLOAD_BYTES),
    WIDA_LEASE: durationField('WIDA_LEASE', { min: 1000 }).default(30_000),
    // No default: the agent's is 1 s, or the lease when that is shorter.
    WIDA_POLL_INTERVAL: durationField('WIDA_POLL_INTERVAL', { min: 10 }).optional(),
    WIDA_SHUTDOWN_GRACE: durationField('WIDA_SHUTDOWN_GRACE').default(10_000),
    // Compared in SQL only, never a timer: months or years of history are a normal setting.
    WIDA_RETENTION: durationField('WIDA_RETENTION', { max: MAX_RETENTION_MS }).default(86_400_000),
    WIDA_JOB_TIMEOUT: durationField('WIDA_JOB_TIMEOUT', { min: 1 }).default(15 * 60_000),
    // No defaults for these four: the agent derives them (the heartbeat from the lease, prefetch from the concurrency),
    // and the agent logs from info up, the demo only errors (its own output is the show).
    WIDA_HEARTBEAT_INTERVAL: durationField('WIDA_HEARTBEAT_INTERVAL', { min: 1 }).optional(),
    WIDA_RESCUE_INTERVAL: durationField('WIDA_RESCUE_INTERVAL', { min: 1 }).optional(),
    WIDA_PREFETCH: wholeNumber('WIDA_PREFETCH').optional(),
    WIDA_LOG_LEVEL: z.enum(LOG_LEVELS, { error: `WIDA_LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')}` }).optional(),
  });
// The poll interval is checked against the lease where both are known, in the agent's settings: an option given to
// createAgent replaces the variable, so a check of the variables alone refused settings that were never used.

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
  return parseSettings(configSchema, flags, env, dotEnv);
}

export type ConfigKey = keyof WidaConfig;

/**
 * Only these settings, from the environment then .env, then defaults: what createClient and createAgent were not
 * given. Reading (and checking) every variable there refused a bad value the caller had replaced or never uses.
 */
export function loadConfigFor<K extends ConfigKey>(keys: readonly K[], env: NodeJS.ProcessEnv = process.env): Pick<WidaConfig, K> {
  if (keys.length === 0) return {} as Pick<WidaConfig, K>;
  const mask = Object.fromEntries(keys.map((key) => [key, true])) as { [key in ConfigKey]?: true };
  return parseSettings(configSchema.pick(mask) as unknown as z.ZodType<Pick<WidaConfig, K>>, {}, env, readDotEnv());
}

function parseSettings<T>(schema: z.ZodType<T>, flags: ConfigInput, env: NodeJS.ProcessEnv, dotEnv: Record<string, string>): Readonly<T> {
  const merged: Record<string, unknown> = {};
  for (const key of Object.keys(configSchema.shape)) {
    const value = flags[key as keyof ConfigInput] ?? env[key] ?? dotEnv[key];
    // Blank is unset, like empty (WIDA_PREFETCH=' ' once read as 0 and turned prefetch off).
    if (value !== undefined && String(value).trim() !== '') merged[key] = value;
  }
  const parsed = schema.safeParse(merged);
  if (!parsed.success) throw new ConfigError(`invalid configuration:\n${z.prettifyError(parsed.error)}`);
  return Object.freeze(parsed.data);
}
