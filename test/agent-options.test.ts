import { describe, expect, it } from 'vitest';
import { createAgent, type AgentOptions } from '../src/agent/agent.js';
import type { ConfigError } from '../src/shared/errors.js';
import { configErrorFrom } from './support/errors.js';

// createAgent checks its options before it connects, so these need no database.
const base = { databaseUrl: 'postgres://nobody@127.0.0.1:1/none', handlers: {} };

function warningsOf(options: Partial<AgentOptions>): string[] {
  const warnings: string[] = [];
  const logger = { debug() {}, info() {}, warn: (message: string) => warnings.push(message), error() {} };
  createAgent({ ...base, ...options, logger });
  return warnings;
}

function errorOf(options: Partial<AgentOptions>): ConfigError {
  return configErrorFrom(() => createAgent({ ...base, ...options }));
}

describe('agent options', () => {
  it('a bad number is refused with the option, what was expected and what was given', () => {
    expect(errorOf({ concurrency: 0 }).message).toContain('concurrency: must be at least 1; got 0');
    expect(errorOf({ concurrency: 2.5 }).message).toContain('concurrency: must be a whole number; got 2.5');
    expect(errorOf({ heartbeatIntervalMs: 0 }).message).toContain('heartbeatIntervalMs: must be at least 1 ms; got 0');
    // The leader ticks a few ms after each slot: with no grace, `skip` schedules would drop every slot.
    expect(errorOf({ cronGraceMs: 0 }).message).toContain('cronGraceMs: must be at least 1000 ms; got 0');
    expect(errorOf({ leaseMs: Number.NaN }).message).toContain('leaseMs: must be a finite number of milliseconds');
    expect(errorOf({ queueConcurrency: { emails: 0 } }).message).toContain('queueConcurrency.emails: must be at least 1; got 0');
    expect(errorOf({ pollIntervalMs: '1000' as unknown as number }).code).toBe('CONFIG_INVALID');
  });

  it('null means the default, and a job timeout may be Infinity (no timeout)', () => {
    expect(warningsOf({ concurrency: null as unknown as number, leaseMs: null as unknown as number })).toEqual([]);
    expect(warningsOf({ defaultTimeoutMs: Infinity })).toEqual([]);
    expect(errorOf({ shutdownGraceMs: Infinity }).message).toContain('shutdownGraceMs: must be a finite number of milliseconds');
  });

  it('names every bad option at once', () => {
    const message = errorOf({ concurrency: -1, prefetch: -1, shutdownGraceMs: -5 }).message;
    expect(message).toMatch(/concurrency: .*prefetch: .*shutdownGraceMs: /);
  });

  it('warns when the heartbeat is too slow for the lease, and not otherwise', () => {
    expect(warningsOf({ leaseMs: 2_000, heartbeatIntervalMs: 1_500 })).toEqual([
      'heartbeat interval 1500 ms is more than half the lease (2000 ms): leases of running jobs may expire and the jobs run twice',
    ]);
    expect(warningsOf({ leaseMs: 2_000, heartbeatIntervalMs: 1_000 })).toEqual([]);
    expect(warningsOf({ leaseMs: 900 })).toEqual([]);
    expect(warningsOf({})).toEqual([]);
  });
});
