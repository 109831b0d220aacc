/**
 * The elector against connections that misbehave: a campaign connection gone silent, a session that ends in the same
 * read as the election's answer, a candidate frozen right after it took the lock, and an event loop blocked by
 * handlers. Each cost the agents their leader for good, or made a healthy leader step down again and again.
 */
import { connect, createServer, type Server } from 'node:net';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { Elector, type ElectorOptions } from '../src/agent/scheduler/elector.js';
import { leaderTryLock } from '../src/shared/db/queries/leader.js';
import { SchemaDb } from '../src/shared/db/sql.js';
import { silentLogger } from '../src/shared/logger.js';
import { useTestSchema, waitFor } from './support/database.js';
import { DatabaseProxy } from './support/proxy.js';

const t = useTestSchema('elector');
const cleanups: (() => Promise<unknown>)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface Candidate {
  elector: Elector;
  leads: () => boolean;
  stepDowns: string[];
}

function candidate(agentId: string, databaseUrl: string, options: Partial<ElectorOptions> = {}): Candidate {
  let leads = false;
  const stepDowns: string[] = [];
  const logger = { ...silentLogger, warn: (message: string, fields?: Record<string, unknown>) => void (message === 'stepping down as leader' && stepDowns.push(String(fields?.reason))) };
  const elector = new Elector({
    databaseUrl,
    schema: t.schema,
    agentId,
    logger,
    onElected: () => void (leads = true),
    onDemoted: async () => void (leads = false),
    ...options,
  });
  elector.start();
  cleanups.push(() => elector.stop());
  return { elector, leads: () => leads, stepDowns };
}

/**
 * Waits until the candidate has tried the lock on its connection and lost (its session idles after the try), so that
 * the connection it will campaign on next is open. A fixed sleep left a slow machine still connecting at the silence.
 */
async function campaignedOnItsConnection(agentId: string): Promise<void> {
  await waitFor(`${agentId} to have campaigned on its connection`, async () => {
    const { rowCount } = await t.pool.query(
      `SELECT 1 FROM pg_stat_activity WHERE application_name = $1 AND state = 'idle' AND query LIKE '%pg_try_advisory_lock%'`,
      [`wida leader ${agentId}`],
    );
    return rowCount === 1 || undefined;
  });
}

async function lockHolders(): Promise<number[]> {
  const { rows } = await t.pool.query(
    `SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = hashtext('wida_leader')::oid AND objid = hashtext($1)::oid`,
    [t.schema],
  );
  return rows.map((row) => row.pid);
}

describe('the elector', () => {
  it('a candidate whose connection went silent still takes over when the leader resigns, and stops at once', async () => {
    const a = candidate('A', t.url);
    await waitFor('A to lead', a.leads);
    const { proxy, url } = await DatabaseProxy.start(t.url);
    cleanups.push(() => proxy.close());
    const b = candidate('B', url);
    await campaignedOnItsConnection('B');
    proxy.silenceOpen(); // its packets are dropped from now on (a NAT forgot it); new connections still work
    await a.elector.stop();
    await waitFor('B to lead', b.leads, 8_000);
    const began = performance.now();
    await b.elector.stop();
    expect(performance.now() - began).toBeLessThan(2_000);
  });

  it('a session that ends in the same read as the election answer is not led on: the agent campaigns again and leads for real', async () => {
    const proxy = await endingAfterElection(t.url);
    cleanups.push(() => new Promise((resolve) => proxy.server.close(resolve)));
    const b = candidate('B', proxy.url);
    await waitFor('the first election to be answered and the session ended', () => proxy.ended);
    // It leads under a later term on a new session that holds the lock.
    const leader = await waitFor('B to lead on a live session', async () => {
      const { rows } = await t.pool.query(`SELECT term, backend_pid FROM "${t.schema}".leader`);
      const holders = await lockHolders();
      return b.elector.leader && rows[0] && Number(rows[0].term) === b.elector.leader.term && holders.includes(rows[0].backend_pid) ? rows[0] : undefined;
    }, 8_000);
    expect(Number(leader.term)).toBeGreaterThan(1);
  });

  it('the lock comes with the idle limit in one statement: a candidate frozen right after taking it loses it', async () => {
    const frozen = new pg.Client({ connectionString: t.url });
    await frozen.connect();
    frozen.on('error', () => {}); // the server ends this session
    cleanups.push(() => frozen.end().catch(() => {}));
    expect(await leaderTryLock(new SchemaDb(frozen, t.schema), 300)).toBe(true);
    // Frozen: it sends nothing more. The server ends the idle session and the lock goes with it.
    const other = new pg.Client({ connectionString: t.url });
    await other.connect();
    cleanups.push(() => other.end());
    const otherDb = new SchemaDb(other, t.schema);
    await waitFor('another session to take the lock', () => leaderTryLock(otherDb), 3_000);
  });

  it('a candidate that does not get the lock keeps no idle limit (it idles between polls)', async () => {
    const holder = new pg.Client({ connectionString: t.url });
    await holder.connect();
    cleanups.push(() => holder.end());
    expect(await leaderTryLock(new SchemaDb(holder, t.schema))).toBe(true);
    const waiting = new pg.Client({ connectionString: t.url });
    await waiting.connect();
    cleanups.push(() => waiting.end());
    expect(await leaderTryLock(new SchemaDb(waiting, t.schema), 200)).toBe(false);
    await sleep(500);
    expect((await waiting.query('SHOW idle_session_timeout')).rows[0].idle_session_timeout).toBe('0');
  });

  it('a leader whose event loop is blocked for 800 ms at a time by handlers does not step down', async () => {
    const a = candidate('A', t.url);
    await waitFor('A to lead', a.leads);
    const until = Date.now() + 4_000;
    while (Date.now() < until) {
      const blockedUntil = Date.now() + 800;
      while (Date.now() < blockedUntil) {
        // a CPU-bound handler
      }
      await new Promise((resolve) => setImmediate(resolve));
    }
    await sleep(700);
    expect(a.stepDowns).toEqual([]);
    expect(a.leads()).toBe(true);
  });
});

/**
 * A proxy that, on the first session to send the election statement, passes the answer on together with a FATAL
 * error (as pg_terminate_backend or a server shutdown sends) and closes it: both reach the client in one read.
 */
async function endingAfterElection(target: string): Promise<{ server: Server; url: string; ended: boolean }> {
  const to = new URL(target);
  const result = { server: undefined as unknown as Server, url: '', ended: false };
  result.server = createServer((inbound) => {
    const outbound = connect(Number(to.port || 5432), to.hostname);
    let endAfterAnswer = false;
    inbound.on('data', (chunk) => {
      if (!result.ended && chunk.includes('leader_attempt_elect')) endAfterAnswer = true;
      outbound.write(chunk);
    });
    outbound.on('data', (chunk) => {
      if (!endAfterAnswer) return void inbound.write(chunk);
      result.ended = true;
      endAfterAnswer = false;
      inbound.end(Buffer.concat([chunk, fatalError()]));
      outbound.destroy();
    });
    inbound.on('error', () => outbound.destroy());
    outbound.on('error', () => inbound.destroy());
    inbound.on('close', () => outbound.destroy());
    outbound.on('close', () => inbound.destroy());
  });
  await new Promise<void>((resolve) => result.server.listen(0, '127.0.0.1', resolve));
  const url = new URL(target);
  url.hostname = '127.0.0.1';
  url.port = String((result.server.address() as { port: number }).port);
  result.url = url.toString();
  return result;
}

function fatalError(): Buffer {
  const body = Buffer.from('SFATAL\0VFATAL\0C57P01\0Mterminating connection due to administrator command\0\0');
  const head = Buffer.alloc(5);
  head.write('E', 0);
  head.writeInt32BE(body.length + 4, 1);
  return Buffer.concat([head, body]);
}
