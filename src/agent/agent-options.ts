import { z } from 'zod';
import { loadConfigFor, type WidaConfig } from '../shared/config.js';
import { ConfigError } from '../shared/errors.js';
import { createLogger, type Logger } from '../shared/logger.js';

const whole = (min: number) => z.number({ error: 'must be a whole number' }).int('must be a whole number').min(min, `must be at least ${min}`).optional();
const milliseconds = (min: number) =>
  z.number({ error: 'must be a finite number of milliseconds' }).min(min, `must be at least ${min} ms`).optional();

/** The numeric settings of createAgent. Others (handlers, logger, cron) are checked where they are used. */
const agentNumbers = z.object({
  concurrency: whole(1),
  prefetch: whole(0),
  maxPayloadBytes: whole(1),
  queueConcurrency: z.record(z.string(), z.number({ error: 'must be a whole number' }).int('must be a whole number').min(1, 'must be at least 1')).optional(),
  leaseMs: milliseconds(100),
  pollIntervalMs: milliseconds(1),
  heartbeatIntervalMs: milliseconds(1),
  rescueIntervalMs: milliseconds(1),
  retentionMs: milliseconds(0),
  retentionIntervalMs: milliseconds(1),
  defaultTimeoutMs: milliseconds(1),
  shutdownGraceMs: milliseconds(0),
  // The leader ticks a few ms after each slot: with no grace, every slot read as missed and `skip` dropped them all.
  cronGraceMs: milliseconds(1_000),
  electionPollIntervalMs: milliseconds(1),
  leaderCheckIntervalMs: milliseconds(1),
  leaderCheckTimeoutMs: milliseconds(1),
  leaderIdleLimitMs: milliseconds(1),
});

/** Throws a ConfigError naming every numeric option that does not fit (e.g. "heartbeatIntervalMs: must be at least 1 ms; got 0"). */
export function checkAgentNumbers(options: Record<string, unknown>): void {
  const picked: Record<string, unknown> = {};
  for (const key of Object.keys(agentNumbers.shape)) {
    const value = options[key];
    // null, like undefined, means the default (createAgent reads options with ??); a job timeout of
    // Infinity means none (the timer caps it at about 24.8 days).
    if (value === undefined || value === null || (key === 'defaultTimeoutMs' && value === Infinity)) continue;
    picked[key] = value;
  }
  const parsed = agentNumbers.safeParse(picked);
  if (parsed.success) return;
  const problems = parsed.error.issues.map((issue) => {
    const path = issue.path.join('.');
    const value = issue.path.reduce<unknown>((at, key) => (at as Record<PropertyKey, unknown>)?.[key as PropertyKey], picked);
    return `${path}: ${issue.message}; got ${typeof value === 'string' ? JSON.stringify(value) : String(value)}`;
  });
  throw new ConfigError(`invalid agent options: ${problems.join('; ')}`);
}

/**
 * Why a heartbeat interval puts running jobs at risk, or undefined when it does not. The heartbeat renews
 * leases once per interval and skips those granted in the last quarter of one, so a lease can go 1.25
 * intervals unrenewed; half the lease leaves room for a late timer and a slow renewal.
 */
export function heartbeatRisk(heartbeatIntervalMs: number, leaseMs: number): string | undefined {
  if (heartbeatIntervalMs <= leaseMs / 2) return undefined;
  return `heartbeat interval ${heartbeatIntervalMs} ms is more than half the lease (${leaseMs} ms): leases of running jobs may expire and the jobs run twice`;
}

/** The options that fall back to the environment (and .env), as createClient's do, so an agent and a client configured alike meet in one schema. */
export interface EnvironmentBacked {
  databaseUrl?: string;
  schema?: string;
  concurrency?: number;
  leaseMs?: number;
  pollIntervalMs?: number;
  retentionMs?: number;
  defaultTimeoutMs?: number;
  shutdownGraceMs?: number;
  heartbeatIntervalMs?: number;
  rescueIntervalMs?: number;
  prefetch?: number;
  logger?: Logger;
}

export type AgentSettings = { [K in keyof EnvironmentBacked]-?: NonNullable<EnvironmentBacked[K]> };

/**
 * Each option given wins; one not given (undefined or null) comes from its variable (WIDA_DATABASE_URL,
 * WIDA_SCHEMA, WIDA_WORKER_CONCURRENCY, WIDA_LEASE, ...; WIDA_LOG_LEVEL for the logger), else its default. Only
 * the variables of missing options are read and checked: a bad value the caller replaced does not matter.
 */
export function resolveAgentSettings(options: EnvironmentBacked): AgentSettings {
  const given = (value: unknown) => value !== undefined && value !== null;
  const missing = (Object.keys(ENVIRONMENT_NAMES) as (keyof typeof ENVIRONMENT_NAMES)[]).filter((name) => !given(options[ENVIRONMENT_NAMES[name]]));
  // A key loaded here has its default when unset: the `!`s below read only keys of missing options.
  const config: Partial<WidaConfig> = loadConfigFor([...missing, ...(given(options.logger) ? [] : ['WIDA_LOG_LEVEL' as const])]);
  const databaseUrl = options.databaseUrl ?? config.WIDA_DATABASE_URL;
  if (!databaseUrl) throw new ConfigError('no database configured: pass databaseUrl to createAgent, or set WIDA_DATABASE_URL');
  const leaseMs = options.leaseMs ?? config.WIDA_LEASE!;
  const pollIntervalMs = options.pollIntervalMs ?? config.WIDA_POLL_INTERVAL ?? Math.min(1_000, leaseMs);
  checkPollWithinLease(pollIntervalMs, leaseMs, {
    poll: given(options.pollIntervalMs) ? 'pollIntervalMs' : 'WIDA_POLL_INTERVAL',
    lease: given(options.leaseMs) ? 'leaseMs' : 'WIDA_LEASE',
  });
  const concurrency = options.concurrency ?? config.WIDA_WORKER_CONCURRENCY!;
  return {
    databaseUrl,
    schema: options.schema ?? config.WIDA_SCHEMA!,
    concurrency,
    leaseMs,
    pollIntervalMs,
    retentionMs: options.retentionMs ?? config.WIDA_RETENTION!,
    defaultTimeoutMs: options.defaultTimeoutMs ?? config.WIDA_JOB_TIMEOUT!,
    shutdownGraceMs: options.shutdownGraceMs ?? config.WIDA_SHUTDOWN_GRACE!,
    // Three renewals per lease at most every 5 s: a renewal can be late or fail and the lease still hold.
    heartbeatIntervalMs: options.heartbeatIntervalMs ?? config.WIDA_HEARTBEAT_INTERVAL ?? Math.min(5_000, leaseMs / 3),
    rescueIntervalMs: options.rescueIntervalMs ?? config.WIDA_RESCUE_INTERVAL ?? 5_000,
    prefetch: options.prefetch ?? config.WIDA_PREFETCH ?? concurrency,
    logger: options.logger ?? createLogger(config.WIDA_LOG_LEVEL),
  };
}

/**
 * A poll interval longer than the lease means a lost notification costs more than a lease. Checked on the values in
 * effect, named as the caller gave them (an option to createAgent, or a variable).
 */
export function checkPollWithinLease(pollIntervalMs: number, leaseMs: number, names = { poll: 'WIDA_POLL_INTERVAL', lease: 'WIDA_LEASE' }): void {
  if (pollIntervalMs <= leaseMs) return;
  throw new ConfigError(`${names.poll} (${pollIntervalMs} ms) must not be longer than ${names.lease} (${leaseMs} ms)`);
}

/**
 * The payload limit for the agent's own cron schedules: the option, else WIDA_MAX_PAYLOAD_BYTES, else 1 MiB. Read
 * only by an agent given schedules, so a bad variable does not stop an agent that never uses it.
 */
export function cronPayloadLimit(maxPayloadBytes: number | null | undefined): number {
  return maxPayloadBytes ?? loadConfigFor(['WIDA_MAX_PAYLOAD_BYTES']).WIDA_MAX_PAYLOAD_BYTES!;
}

/** Which variable backs each option (the logger's level is WIDA_LOG_LEVEL). */
const ENVIRONMENT_NAMES = {
  WIDA_DATABASE_URL: 'databaseUrl',
  WIDA_SCHEMA: 'schema',
  WIDA_WORKER_CONCURRENCY: 'concurrency',
  WIDA_LEASE: 'leaseMs',
  WIDA_POLL_INTERVAL: 'pollIntervalMs',
  WIDA_RETENTION: 'retentionMs',
  WIDA_JOB_TIMEOUT: 'defaultTimeoutMs',
  WIDA_SHUTDOWN_GRACE: 'shutdownGraceMs',
  WIDA_HEARTBEAT_INTERVAL: 'heartbeatIntervalMs',
  WIDA_RESCUE_INTERVAL: 'rescueIntervalMs',
  WIDA_PREFETCH: 'prefetch',
} as const satisfies Record<string, keyof EnvironmentBacked>;
