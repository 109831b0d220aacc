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
 * the agent froze) are aborted here, and so are those whose lease ran out by the agent's own clock (a partition).
 *
 * The leases come first. The agents row is written beside the renewal, not before it, so a write held up (another
 * session holding the row locked) does not hold the renewal up. Both are given up after half an interval (at least
 * 250 ms), or three times the last renewal's round trip when the network is that slow, up to half the lease; the
 * renewal is then tried once more at once, on a fresh connection, for as long as a lease it holds has left: waiting
 * on a connection gone silent for the upkeep pool's minute, the agent lost every lease it held while its handlers
 * still ran, and the jobs ran again elsewhere. The bound follows the network because the agent acts on the answer:
 * on a slow one (300 ms each way) half a beat gave up every renewal the server had made, the connection went with
 * it (and each new one costs three round trips), and healthy jobs were aborted when their leases ran out unanswered.
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
  const { agent, pool, leaseMs, logger, intervalMs } = options;
  // At least 250 ms: a statement given up drops its connection, and the next, on a new backend, is slower still.
  const within = (ms: number) => options.db.within(Math.max(ms, STATEMENT_FLOOR_MS));
  let lastRenewalMs = 0;
  const bound = () => Math.min(Math.max(intervalMs / 2, 3 * lastRenewalMs), leaseMs / 2);

  async function renewLeases(statementMs: number): Promise<void> {
    // First what ran out meanwhile (renewals that failed, an event loop blocked past a lease): no answer would bring it back.
    pool.dropExpired();
    // A lease granted within the last quarter interval (a claim that landed just before this beat) is
    // renewed at the next beat instead: at most 1.25 intervals after it was granted, so at least 1.75
    // intervals before it expires (the interval is at most a third of the lease).
    const askedAt = performance.now();
    const held = pool.heldLeases(askedAt - intervalMs / 4);
    if (held.length === 0) return;
    let renewal: LeaseRenewal;
    try {
      renewal = await jobExtendLeases(within(statementMs), held, leaseMs);
    } catch (error) {
      // Worth another try while a lease it holds has time left; not by the oldest (a completion held back by a
      // client's lock is not renewed while it waits, and would have cut every retry short).
      const newest = held.reduce((max, run) => Math.max(max, run.grantedAt ?? askedAt), -Infinity);
      const left = newest + leaseMs - performance.now();
      if (left < STATEMENT_FLOOR_MS) throw error;
      logger.warn('lease renewal failed; trying again at once', { error: (error as Error).message, held: held.length });
      renewal = await jobExtendLeases(within(left), held, leaseMs);
    }
    lastRenewalMs = performance.now() - askedAt;
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
      const statementMs = bound();
      const beat = agentHeartbeat(within(statementMs), agent, options.state()).catch((error) =>
        logger.error('heartbeat row not written; renewing leases anyway', { error: (error as Error).message }),
      );
      try {
        await renewLeases(statementMs);
      } finally {
        await beat;
      }
    },
    (error) => logger.error('heartbeat failed', { error: (error as Error).message }),
  );
}
