import type { SchemaDb } from '../../shared/db/sql.js';
import { agentHeartbeat, type AgentInfo } from '../../shared/db/queries/agents.js';
import { jobExtendLeases, leaseKey, type LeaseRenewal } from '../../shared/db/queries/jobs-runs.js';
import type { Logger } from '../../shared/logger.js';
import { IntervalService } from '../service.js';
import type { WorkerPool } from './worker-pool.js';

const STATEMENT_FLOOR_MS = 250;

/**
 * Every few seconds: marks the agent alive and extends the leases of the jobs it holds (but not those
 * granted a moment ago), in two statements however many jobs run. Jobs whose lease it no longer holds (cancelled, or rescued after
 * the agent froze) are aborted here.
 *
 * The leases come first. The agents row is written beside the renewal, not before it, so a write held up (another
 * session holding the row locked) does not hold the renewal up. The agents row's write is given up after half an
 * interval or 250 ms, whichever is longer (the interval is at most a third of the lease); the renewal after half the
 * time its oldest lease has left (at least half an interval), then tried once more at once on a fresh connection for
 * the rest of that time: waiting on a connection gone silent for the upkeep pool's minute, the agent lost every lease
 * it held while its handlers still ran, and the jobs ran again elsewhere.
 */
export function createHeartbeat(options: {
  db: SchemaDb;
  agent: AgentInfo;
  pool: WorkerPool;
  leaseMs: number;
  intervalMs: number;
  logger: Logger;
  state: () => 'running' | 'draining';
}): IntervalService {
  const { agent, pool, leaseMs, logger } = options;
  // At least 250 ms: a statement given up drops its connection, and the next, on a new backend, is slower still.
  const db = options.db.within(Math.max(options.intervalMs / 2, STATEMENT_FLOOR_MS));
  const renewalDb = (ms: number) => options.db.within(Math.max(ms, STATEMENT_FLOOR_MS));

  async function renewLeases(): Promise<void> {
    // First what ran out meanwhile (renewals that failed, an event loop blocked past a lease): no answer would bring it back.
    pool.dropExpired();
    // A lease granted within the last quarter interval (a claim that landed just before this beat) is
    // renewed at the next beat instead: at most 1.25 intervals after it was granted, so at least 1.75
    // intervals before it expires (the interval is at most a third of the lease).
    const askedAt = performance.now();
    const held = pool.heldLeases(askedAt - options.intervalMs / 4);
    if (held.length === 0) return;
    // Bounded by the time the oldest lease has left, not by the beat alone: on a slow but working database (350 ms each
    // way) a bound of half a beat gave up every renewal, and healthy jobs went dead with "lease expired".
    const oldest = held.reduce((min, run) => Math.min(min, run.grantedAt ?? askedAt), askedAt);
    const leaseLeft = oldest + leaseMs - askedAt;
    let renewal: LeaseRenewal;
    try {
      renewal = await jobExtendLeases(renewalDb(Math.min(Math.max(options.intervalMs / 2, leaseLeft / 2), leaseLeft)), held, leaseMs);
    } catch (error) {
      const left = leaseLeft - (performance.now() - askedAt);
      if (left < STATEMENT_FLOOR_MS) throw error;
      logger.warn('lease renewal failed; trying again at once', { error: (error as Error).message, held: held.length });
      renewal = await jobExtendLeases(renewalDb(left), held, leaseMs);
    }
    const { renewed, busy } = renewal;
    pool.leasesRenewed(held.filter((run) => renewed.has(leaseKey(run))), askedAt);
    logger.debug('renewed leases', { held: held.length, renewed: renewed.size, busy: busy.size });
    if (busy.size > 0) logger.warn('another transaction holds some jobs locked; their leases are renewed at the next beat', { runs: [...busy] });
    const lost = held.filter((run) => !renewed.has(leaseKey(run)) && !busy.has(leaseKey(run)));
    if (lost.length > 0) pool.dropLost(lost);
  }

  return new IntervalService(
    'heartbeat',
    options.intervalMs,
    async () => {
      const beat = agentHeartbeat(db, agent, options.state()).catch((error) =>
        logger.error('heartbeat row not written; renewing leases anyway', { error: (error as Error).message }),
      );
      try {
        await renewLeases();
      } finally {
        await beat;
      }
    },
    (error) => logger.error('heartbeat failed', { error: (error as Error).message }),
  );
}
