/**
 * The server's sessions: which of a pool's connections the server still has (pg_stat_activity, asked at shutdown on
 * a connection of its own; any role sees every session's pid), and a session's transaction isolation.
 */
import type pg from 'pg';
import type { Queryable } from '../sql.js';

/** The pids among `pids` of sessions the server still has. */
export async function sessionsAlive(client: pg.Client, pids: readonly number[]): Promise<Set<number>> {
  const { rows } = await client.query<{ pid: number }>('SELECT pid FROM pg_stat_activity WHERE pid = ANY($1::int[])', [pids]);
  return new Set(rows.map((row) => row.pid));
}

/** 'read committed', 'repeatable read' or 'serializable': the isolation of the transaction the client is in. */
export async function transactionIsolation(client: Queryable): Promise<string> {
  const { rows } = await client.query<{ level: string }>({ text: `SELECT current_setting('transaction_isolation') AS level` });
  return rows[0].level;
}
