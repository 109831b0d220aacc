import type pg from 'pg';

/**
 * Runs `work` only if no other agent is running the same duty right now (a session advisory lock on a
 * checked-out connection); returns false when another agent has it.
 */
export async function runExclusively(pool: pg.Pool, lockName: string, work: () => Promise<void>): Promise<boolean> {
  const client = await pool.connect();
  let locked = false;
  try {
    const { rows } = await client.query('SELECT pg_try_advisory_lock(hashtext($1)) AS locked', [lockName]);
    locked = rows[0].locked;
    if (!locked) return false;
    await work();
    return true;
  } finally {
    if (locked) await client.query('SELECT pg_advisory_unlock(hashtext($1))', [lockName]).catch(() => {});
    client.release();
  }
}
