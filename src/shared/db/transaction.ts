import type pg from 'pg';
import type { Queryable } from './sql.js';

/**
 * A transaction of ours left idle this long is ended by the server. Ours run statement after statement with no
 * waits between, so an idle one belongs to a process that froze, and its row locks (a parent job it attached a
 * dependent to, the leader row) would hold up agents until it woke.
 */
const DEFAULT_IDLE_LIMIT_MS = 10_000;

/** Runs `work` in a transaction on a connection checked out of `pool`: committed if it resolves, rolled back if it throws. */
export async function inTransaction<T>(
  pool: pg.Pool,
  work: (client: pg.PoolClient) => Promise<T>,
  /** lockTimeoutMs: a statement that waits longer for a lock fails (default: waits as long as it takes) */
  options: { idleLimitMs?: number; lockTimeoutMs?: number } = {},
): Promise<T> {
  const idleLimitMs = Math.max(1, Math.round(options.idleLimitMs ?? DEFAULT_IDLE_LIMIT_MS));
  const lockTimeoutMs = options.lockTimeoutMs === undefined ? 0 : Math.max(1, Math.round(options.lockTimeoutMs));
  const client = await pool.connect();
  let broken: Error | undefined;
  // Between statements the pool no longer listens on this client: without a listener of our own, a session
  // the server ends then (an idle-in-transaction timeout, a terminated backend) would be an uncaught 'error'.
  const onError = (error: Error) => (broken = error);
  client.on('error', onError);
  try {
    // One round trip (simple protocol): SET LOCAL lasts until the transaction ends.
    await client.query(
      `BEGIN; SET LOCAL idle_in_transaction_session_timeout = ${idleLimitMs}` + (lockTimeoutMs ? `; SET LOCAL lock_timeout = ${lockTimeoutMs}` : ''),
    );
    const value = await work(client);
    await client.query('COMMIT');
    return value;
  } catch (error) {
    await client.query('ROLLBACK').catch((rollbackError: Error) => (broken = rollbackError));
    throw error;
  } finally {
    // A connection that could not even roll back is not given back to the pool.
    client.removeListener('error', onError);
    client.release(broken);
  }
}

const SAVEPOINT = 'wida_savepoint';

/**
 * Runs `work` on a caller's client under a savepoint, so that a failure takes back what `work` wrote and leaves
 * the caller's transaction usable (an enqueue with dependencies writes its jobs before it can tell that a
 * dependency is missing or cancelled, and a caller that catches that error and commits must not keep them).
 * A client outside a transaction gets one of our own (each statement would otherwise commit on its own).
 */
export async function inSavepoint<T>(client: Queryable, work: (client: Queryable) => Promise<T>): Promise<T> {
  let own = false;
  try {
    await client.query({ text: `SAVEPOINT ${SAVEPOINT}` });
  } catch (error) {
    if ((error as { code?: string }).code !== '25P01') throw error; // 25P01: not in a transaction block
    own = true;
    await client.query({ text: 'BEGIN' });
  }
  try {
    const result = await work(client);
    await client.query({ text: own ? 'COMMIT' : `RELEASE SAVEPOINT ${SAVEPOINT}` });
    return result;
  } catch (error) {
    await client.query({ text: own ? 'ROLLBACK' : `ROLLBACK TO SAVEPOINT ${SAVEPOINT}` }).catch(() => {});
    if (!own) await client.query({ text: `RELEASE SAVEPOINT ${SAVEPOINT}` }).catch(() => {});
    throw error;
  }
}
