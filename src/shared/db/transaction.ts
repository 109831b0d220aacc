import type pg from 'pg';

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
