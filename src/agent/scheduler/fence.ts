import type pg from 'pg';
import type { SchemaDb } from '../../shared/db/sql.js';
import { inTransaction } from '../../shared/db/transaction.js';
import { leaderHoldsTerm, type LeaderTerm } from '../../shared/db/queries/leader.js';

/** What a leader-only duty knows about its leadership: the term it was started under, and whether it still holds. */
export interface LeaderFence {
  readonly leader: LeaderTerm;
  /** false as soon as this agent stepped down (checked before every write, without a round trip) */
  isCurrent(): boolean;
}

/**
 * Runs one unit of a leader-only duty in a transaction that first checks, in the database, that the term
 * still holds (and share-locks the leader row, so a new election waits for this unit to end). Returns
 * false, having written nothing, when the term is over.
 */
export async function asLeader(pool: pg.Pool, db: SchemaDb, fence: LeaderFence, work: (db: SchemaDb) => Promise<void>): Promise<boolean> {
  if (!fence.isCurrent()) return false;
  return inTransaction(pool, async (client) => {
    const tx = db.on(client);
    if (!(await leaderHoldsTerm(tx, fence.leader))) return false;
    await work(tx);
    return true;
  });
}
