import type pg from 'pg';
import type { SchemaDb } from '../../shared/db/sql.js';
import { inTransaction } from '../../shared/db/transaction.js';
import { leaderHoldsTerm, type LeaderTerm } from '../../shared/db/queries/leader.js';

/** What a leader-only duty knows about its leadership: the term it was started under, and whether it still holds. */
export interface LeaderFence {
  readonly leader: LeaderTerm;
  /** false as soon as this agent stepped down (checked before every write, without a round trip) */
  isCurrent(): boolean;
  /** the server ends a duty's transaction left idle this long (the leader session's idle limit) */
  readonly idleLimitMs: number;
}

/**
 * Runs one unit of a leader-only duty in a transaction that first checks, in the database, that the term
 * still holds (and share-locks the leader row, so a new election waits for this unit to end). Returns
 * false, having written nothing, when the term is over.
 *
 * The share lock is why the transaction gets the same idle limit as the leader's session: a leader frozen
 * inside a duty (SIGSTOP, a paused VM) loses its lock when its session idles out, but its open transaction
 * would still hold the row, and every other agent's election would wait on it until the leader woke.
 */
export async function asLeader(pool: pg.Pool, db: SchemaDb, fence: LeaderFence, work: (db: SchemaDb) => Promise<void>): Promise<boolean> {
  if (!fence.isCurrent()) return false;
  return inTransaction(
    pool,
    async (client) => {
      const tx = db.on(client);
      if (!(await leaderHoldsTerm(tx, fence.leader))) return false;
      await work(tx);
      return true;
    },
    // And a duty waiting on a row lock (a job held by some long transaction) gives up as soon, for the same reason.
    { idleLimitMs: fence.idleLimitMs, lockTimeoutMs: fence.idleLimitMs },
  );
}
