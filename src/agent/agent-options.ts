import { z } from 'zod';
import { ConfigError } from '../shared/errors.js';

const whole = (min: number) => z.number({ error: 'must be a whole number' }).int('must be a whole number').min(min, `must be at least ${min}`).optional();
const milliseconds = (min: number) =>
  z.number({ error: 'must be a finite number of milliseconds' }).min(min, `must be at least ${min} ms`).optional();

/** The numeric settings of createAgent. Others (handlers, logger, cron) are checked where they are used. */
const agentNumbers = z.object({
  concurrency: whole(1),
  prefetch: whole(0),
  queueConcurrency: z.record(z.string(), z.number({ error: 'must be a whole number' }).int('must be a whole number').min(1, 'must be at least 1')).optional(),
  leaseMs: milliseconds(100),
  pollIntervalMs: milliseconds(1),
  heartbeatIntervalMs: milliseconds(1),
  rescueIntervalMs: milliseconds(1),
  retentionMs: milliseconds(0),
  retentionIntervalMs: milliseconds(1),
  defaultTimeoutMs: milliseconds(1),
  shutdownGraceMs: milliseconds(0),
  cronGraceMs: milliseconds(0),
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
