import pg from 'pg';
import { closeConnection } from '../../shared/db/pool.js';
import { SchemaDb } from '../../shared/db/sql.js';
import {
  leaderAttemptElect,
  leaderCheckSession,
  leaderResign,
  leaderSessionSetup,
  leaderTryLock,
  leaderUnlock,
  type LeaderTerm,
} from '../../shared/db/queries/leader.js';
import type { Logger } from '../../shared/logger.js';
import { withTimeout } from '../../shared/with-timeout.js';
import type { Service } from '../service.js';
import type { LeaderFence } from './fence.js';

const DEMOTE_LIMIT_MS = 5_000;

export interface ElectorOptions {
  databaseUrl: string;
  schema: string;
  agentId: string;
  logger: Logger;
  /** how often an agent that does not lead tries the lock (default 500 ms) */
  pollIntervalMs?: number;
  /** how often the leader checks its own session (default 500 ms) */
  checkIntervalMs?: number;
  /** a self-check slower than this counts as failed (default 500 ms) */
  checkTimeoutMs?: number;
  /**
   * the server ends the leader's session after it was idle this long (default 4 s, at least 4 checks), so a
   * frozen leader loses the lock while its socket stays open
   */
  idleLimitMs?: number;
  /** after stepping down, wait this long before campaigning again, so another agent takes over (default 1.5 s) */
  rejoinDelayMs?: number;
  /** leadership began: start the leader-only duties under this fence */
  onElected: (fence: LeaderFence) => void | Promise<void>;
  /** leadership ended (stepped down, or resigning at shutdown): stop the leader-only duties */
  onDemoted: (reason: string) => Promise<void>;
}

/**
 * Every agent campaigns; one leads. The leader holds a session advisory lock on a dedicated connection
 * (never pooled) and records itself in the leader table under a new term. The known weakness of advisory-lock
 * leadership is a session that dies silently: the server releases the lock, another agent takes it, and the
 * old leader sees no error. So the leader checks its own session every `checkIntervalMs` (it answers within
 * `checkTimeoutMs`, still holds the lock, and the row still names its term) and steps down at once when the
 * check fails or stalls; and every leader-only write checks the term in the database (fence.ts). A leader
 * that is frozen rather than dead stops checking, so its session goes idle and the server ends it
 * (`idleLimitMs`), which frees the lock for another agent.
 */
export class Elector implements Service {
  readonly name = 'elector';
  private client: pg.Client | undefined;
  private db: SchemaDb | undefined;
  private current: LeaderTerm | undefined;
  private timer: NodeJS.Timeout | undefined;
  private busy: Promise<void> | undefined;
  private stopped = false;
  private lastCampaignError: string | undefined;
  private readonly pollIntervalMs: number;
  private readonly checkIntervalMs: number;
  private readonly checkTimeoutMs: number;
  private readonly rejoinDelayMs: number;
  private readonly idleLimitMs: number;

  constructor(private readonly options: ElectorOptions) {
    this.pollIntervalMs = options.pollIntervalMs ?? 500;
    this.checkIntervalMs = options.checkIntervalMs ?? 500;
    this.checkTimeoutMs = options.checkTimeoutMs ?? 500;
    this.rejoinDelayMs = options.rejoinDelayMs ?? 1_500;
    this.idleLimitMs = Math.max(options.idleLimitMs ?? 4_000, 4 * this.checkIntervalMs);
  }

  /** The term this agent leads under, or undefined. */
  get leader(): LeaderTerm | undefined {
    return this.current;
  }

  start(): void {
    this.schedule(0);
  }

  /** Campaigns now instead of at the next poll (another agent resigned). */
  campaignNow(): void {
    if (this.stopped || this.current || this.busy) return;
    this.schedule(0);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.busy;
    const leader = this.current;
    if (leader) {
      this.current = undefined;
      await this.options.onDemoted('shutdown');
      // Resign: clear the row, unlock, and tell the others, so one takes over at once instead of at its next poll.
      // With the session already gone (ended by the server meanwhile), so is its lock: nothing to resign.
      const db = this.db;
      if (!db) this.options.logger.info('leader session already ended; its lock went with it', { agentId: this.options.agentId, term: leader.term });
      else await withTimeout(leaderResign(db, leader), 2_000).then(
        () => this.options.logger.info('resigned leadership', { agentId: this.options.agentId, term: leader.term }),
        (error) => this.options.logger.warn('could not resign leadership; the lock goes with the connection', { error: (error as Error).message }),
      );
    }
    await this.closeClient(2_000);
  }

  private schedule(delay: number): void {
    if (this.stopped) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      const step = this.current ? this.check() : this.campaign();
      this.busy = step.finally(() => {
        this.busy = undefined;
        if (!this.timer) this.schedule(this.current ? this.checkIntervalMs : this.pollIntervalMs);
      });
    }, delay);
  }

  private async connect(): Promise<SchemaDb> {
    if (this.client && this.db) return this.db;
    const client = new pg.Client({
      connectionString: this.options.databaseUrl,
      application_name: `wida leader ${this.options.agentId}`,
      keepAlive: true,
      keepAliveInitialDelayMillis: 1_000,
      connectionTimeoutMillis: 5_000,
      // Short, so a stalled session shows as a failed check or election rather than a hang; and bounded on this side
      // too, for a connection gone silent (the server's timeout never reaches us): a campaign stuck on it kept the
      // agent out of every election, and stop() waiting.
      statement_timeout: Math.max(this.checkTimeoutMs, 200),
      query_timeout: Math.max(this.checkTimeoutMs, 200) + 1_000,
    });
    client.on('error', (error) => this.lost(client, error));
    client.on('end', () => this.lost(client, new Error('the leader connection ended')));
    this.client = client;
    try {
      await client.connect();
      this.db = new SchemaDb(client, this.options.schema);
      await leaderSessionSetup(this.db);
    } catch (error) {
      this.dropClient();
      throw error;
    }
    return this.db;
  }

  private async campaign(): Promise<void> {
    if (this.stopped) return;
    try {
      const db = await this.connect();
      if (!(await leaderTryLock(db, this.idleLimitMs))) return;
      let leader: LeaderTerm;
      try {
        leader = await leaderAttemptElect(db, this.options.agentId);
      } catch (error) {
        await leaderUnlock(db).catch(() => this.dropClient());
        throw error;
      }
      // The session may have ended in the same read as the election's answer ('error' comes first, while nobody
      // led yet): leading on it, the agent would never check itself or campaign again.
      if (this.db !== db) throw new Error('the leader connection was lost during the election');
      if (this.stopped) {
        await leaderResign(db, leader).catch(() => {});
        return;
      }
      this.current = leader;
      this.options.logger.info('elected leader', { agentId: leader.agentId, term: leader.term });
      await this.options.onElected({ leader, isCurrent: () => this.current?.term === leader.term, idleLimitMs: this.idleLimitMs });
      this.lastCampaignError = undefined;
    } catch (error) {
      // A fresh connection for the next try: this one may be the problem (gone silent, or ended).
      if (!this.current) this.dropClient();
      const message = (error as Error).message;
      // Said once per distinct problem, not every poll while the database is down.
      if (message !== this.lastCampaignError) this.options.logger.warn('campaign failed; trying again', { error: message });
      this.lastCampaignError = message;
    }
  }

  private async check(): Promise<void> {
    const leader = this.current;
    if (!leader) return;
    if (!this.db) return this.stepDown(leader, 'leader connection lost');
    let reason: string | undefined;
    try {
      if (!(await answeredWithin(leaderCheckSession(this.db, leader), this.checkTimeoutMs))) {
        reason = 'the session no longer holds the leader lock or term';
      }
    } catch (error) {
      reason = (error as Error).message;
    }
    if (reason && this.current === leader) await this.stepDown(leader, `self-check failed: ${reason}`);
  }

  /** The session broke under us: if we lead, step down now rather than at the next check. */
  private lost(client: pg.Client, error: Error): void {
    if (client !== this.client) return;
    this.dropClient();
    const leader = this.current;
    if (leader && !this.stopped) void this.stepDown(leader, `leader connection lost: ${error.message}`);
  }

  private async stepDown(leader: LeaderTerm, reason: string): Promise<void> {
    if (this.current !== leader) return;
    this.current = undefined; // fences fail from here on, before any round trip
    this.options.logger.warn('stepping down as leader', { agentId: leader.agentId, term: leader.term, reason });
    this.dropClient();
    // Bounded: a duty stuck on a silent connection must not keep this agent out of every later election. Its
    // writes are fenced by the term, which is over.
    await withTimeout(this.options.onDemoted(reason), DEMOTE_LIMIT_MS).catch((error) =>
      this.options.logger.error('stopping leader duties failed or is slow; campaigning again anyway', { error: (error as Error).message }),
    );
    this.schedule(this.rejoinDelayMs);
  }

  /** Forgets the connection and makes sure it closes: the server releases the lock only when the socket goes. */
  private dropClient(): void {
    void this.closeClient(500);
  }

  private async closeClient(timeoutMs: number): Promise<void> {
    const client = this.client;
    this.client = undefined;
    this.db = undefined;
    if (client) await closeConnection(client, timeoutMs);
  }
}

/**
 * withTimeout, but an answer that came while the event loop was blocked still counts: after a stall, Node runs
 * the due timer before it reads the socket, so a reply that took 1 ms read as "no answer within 500 ms" and a
 * leader whose handlers blocked the loop for 800 ms stepped down every few seconds. One turn of the loop lets
 * the waiting reply be read before the timeout is believed.
 */
async function answeredWithin<T>(answer: Promise<T>, ms: number): Promise<T> {
  let settled = false;
  answer.then(
    () => (settled = true),
    () => (settled = true),
  );
  try {
    return await withTimeout(answer, ms);
  } catch (error) {
    await new Promise((resolve) => setImmediate(resolve));
    if (settled) return answer;
    throw error;
  }
}
