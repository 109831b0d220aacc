import { afterEach, describe, expect, inject, it } from 'vitest';
import type pg from 'pg';
import { createPool } from '../src/shared/db/pool.js';
import { SchemaDb, statement } from '../src/shared/db/sql.js';

const pools: pg.Pool[] = [];
afterEach(async () => {
  await Promise.all(pools.splice(0).map((pool) => pool.end()));
});

describe('createPool with lockTimeoutMs', () => {
  it('sets lock_timeout on every new connection before its first query, without queueing behind it', async () => {
    const warnings: string[] = [];
    const onWarning = (warning: Error) => warnings.push(warning.message);
    process.on('warning', onWarning);
    try {
      const pool = createPool(inject('databaseUrl'), { max: 3, lockTimeoutMs: 1_234 });
      pools.push(pool);
      // Three first queries at once: each opens its own connection, and each must see the setting.
      const shown = await Promise.all([1, 2, 3].map(() => pool.query<{ lock_timeout: string; pid: number }>('SELECT current_setting($1) AS lock_timeout, pg_backend_pid() AS pid', ['lock_timeout'])));
      expect(new Set(shown.map((result) => result.rows[0].pid)).size).toBe(3);
      expect(shown.map((result) => result.rows[0].lock_timeout)).toEqual(['1234ms', '1234ms', '1234ms']);
      // Warnings are emitted on the next tick.
      await new Promise((resolve) => setImmediate(resolve));
    } finally {
      process.off('warning', onWarning);
    }
    // pg warns when a query is sent to a client still busy with another (as a query from the 'connect' event was).
    expect(warnings.filter((message) => message.includes('already executing a query'))).toEqual([]);
  });

  it('leaves lock_timeout at the server default without it', async () => {
    const pool = createPool(inject('databaseUrl'), { max: 1 });
    pools.push(pool);
    const { rows } = await pool.query<{ lock_timeout: string }>(`SELECT current_setting('lock_timeout') AS lock_timeout`);
    expect(rows[0].lock_timeout).toBe('0');
  });
});

describe('createPool with queryTimeoutMs', () => {
  it('a statement given up while it waits for a lock is given up by the server too: its backend goes', async () => {
    const holder = createPool(inject('databaseUrl'), { max: 1 });
    const pool = createPool(inject('databaseUrl'), { max: 1, queryTimeoutMs: 200, applicationName: 'wida pool test given up' });
    pools.push(holder, pool);
    // A session-level lock, held outside any transaction: inside one, pg_stat_activity would show a snapshot.
    const locker = await holder.connect();
    try {
      await locker.query('SELECT pg_advisory_lock(424242)');
      await expect(pool.query('SELECT pg_advisory_lock(424242)')).rejects.toThrow(/timeout/);
      // Without the check the backend waited on for the lock, for as long as it was held.
      let left = 1;
      for (let i = 0; i < 100 && left > 0; i++) {
        await new Promise((resolve) => setTimeout(resolve, 50));
        const { rows } = await locker.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'wida pool test given up'`);
        left = rows[0].n;
      }
      expect(left).toBe(0);
    } finally {
      await locker.query('SELECT pg_advisory_unlock_all()');
      locker.release();
    }
  });
});

describe('SchemaDb.within', () => {
  it('bounds the wait for a connection too: with every connection of the pool busy, it answers within the bound', async () => {
    const pool = createPool(inject('databaseUrl'), { max: 1 });
    pools.push(pool);
    const busy = await pool.connect();
    try {
      const db = new SchemaDb(pool, 'within_test').within(300);
      // Unbounded, this waited for the pool's connection timeout (10 s) and failed with its message instead.
      await expect(db.rows(statement('within_probe', 'SELECT 1 AS one'))).rejects.toThrow('no answer within 400 ms');
    } finally {
      busy.release();
    }
  });
});
