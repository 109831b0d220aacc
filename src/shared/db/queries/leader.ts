/**
 * The leader table and the advisory lock behind it. The lock is held by the leader's dedicated session
 * (never a pooled connection: a pool would hand the session, and the lock, to someone else); the row says
 * who leads and under which term, and every leader-only write names that term.
 */
import { statement, type SchemaDb } from '../sql.js';

/** A leader's claim: leader-only writes are refused unless the leader row still has this agent and term. */
export interface LeaderTerm {
  agentId: string;
  term: number;
}

// The lock key is two int4s, (hashtext('wida_leader'), hashtext(schema)), so pg_locks shows them as
// classid and objid (objsubid 2) and the self-check can look for exactly this lock held by this backend.
//
// A frozen leader process (SIGSTOP, a debugger, a VM paused) keeps its socket open and so its lock; keepalives
// cannot see it, because the kernel still answers. Its session does go idle, though: the leader checks itself
// every half second, so a session idle for `idleLimitMs` belongs to a leader that no longer runs, and the server
// ends it (idle_session_timeout) and releases the lock. The limit is set in the statement that takes the lock: set
// by a second statement, a candidate frozen in between held the lock with no limit, and nobody led. Only when the
// lock is taken, since a campaigning session may idle between polls. (MATERIALIZED: the lock is tried once.)
const TRY_LOCK = statement(
  'leader_try_lock',
  `WITH attempt AS MATERIALIZED (SELECT pg_try_advisory_lock(hashtext('wida_leader'), hashtext($1)) AS locked)
   SELECT locked, CASE WHEN locked AND $2::integer > 0 THEN set_config('idle_session_timeout', $2::text, false) END AS idle_limit
     FROM attempt`,
);

/** Tries to take the leader lock on this session (a dedicated client); true if this session holds it now, and then ends when idle `idleLimitMs` (0: never). */
export async function leaderTryLock(db: SchemaDb, idleLimitMs = 0): Promise<boolean> {
  const [row] = await db.rows(TRY_LOCK, [db.schema, Math.round(idleLimitMs)]);
  return row.locked;
}

// Lifts the idle limit too: the session campaigns again, idle between polls.
const UNLOCK = statement(
  'leader_unlock',
  `SELECT pg_advisory_unlock(hashtext('wida_leader'), hashtext($1)) AS unlocked, set_config('idle_session_timeout', '0', false)`,
);

export async function leaderUnlock(db: SchemaDb): Promise<void> {
  await db.rows(UNLOCK, [db.schema]);
}

const ELECT = statement(
  'leader_attempt_elect',
  `INSERT INTO @.leader AS l (singleton, agent_id, term, elected_at, backend_pid)
   VALUES (true, $1, 1, now(), pg_backend_pid())
   ON CONFLICT (singleton) DO UPDATE
     SET agent_id = EXCLUDED.agent_id, term = l.term + 1, elected_at = now(), backend_pid = EXCLUDED.backend_pid
   RETURNING term`,
);

/**
 * Records this agent as the leader under a new term. Call only while holding the leader lock on the same
 * session; the term it returns fences every leader-only write.
 */
export async function leaderAttemptElect(db: SchemaDb, agentId: string): Promise<LeaderTerm> {
  const [row] = await db.rows(ELECT, [agentId]);
  return { agentId, term: Number(row.term) };
}

/**
 * True when the backend `pid` (an SQL expression) holds the leader lock of schema `schemaParam`. A leader killed
 * outright leaves its row until another agent is elected, but its session, and so its lock, is gone.
 */
export function leaderLockHeldBy(pid: string, schemaParam: string): string {
  return `EXISTS (
     SELECT 1 FROM pg_locks AS k
      WHERE k.locktype = 'advisory' AND k.granted AND k.pid = ${pid}
        AND k.database = (SELECT oid FROM pg_database WHERE datname = current_database())
        AND k.classid = hashtext('wida_leader')::oid AND k.objid = hashtext(${schemaParam})::oid AND k.objsubid = 2)`;
}

const CHECK_SESSION = statement(
  'leader_check_session',
  `SELECT ${leaderLockHeldBy('pg_backend_pid()', '$1::text')}
          AND EXISTS (SELECT 1 FROM @.leader WHERE agent_id = $2 AND term = $3) AS holds`,
);

/**
 * The leader's self-check, on its dedicated session: the session answers, still holds the lock, and the
 * row still names this agent and term. False (or an error, or no answer) means: step down now.
 */
export async function leaderCheckSession(db: SchemaDb, leader: LeaderTerm): Promise<boolean> {
  const [row] = await db.rows(CHECK_SESSION, [db.schema, leader.agentId, leader.term]);
  return row.holds;
}

const RESIGN = statement(
  'leader_resign',
  `WITH cleared AS (
     UPDATE @.leader SET agent_id = NULL, backend_pid = NULL WHERE agent_id = $2 AND term = $3 RETURNING term
   )
   SELECT pg_advisory_unlock(hashtext('wida_leader'), hashtext($1)) AS unlocked,
          pg_notify('@channel_control', json_build_object('type', 'leader_resigned', 'term', $3::bigint)::text),
          (SELECT count(*) FROM cleared) AS cleared`,
);

/**
 * Gives up leadership in one statement: clears the row (if it is still ours), releases the lock and
 * tells the other agents on the control channel, so one of them campaigns at once.
 */
export async function leaderResign(db: SchemaDb, leader: LeaderTerm): Promise<void> {
  await db.rows(RESIGN, [db.schema, leader.agentId, leader.term]);
}

const HOLDS_TERM = statement('leader_holds_term', `SELECT 1 FROM @.leader WHERE agent_id = $1 AND term = $2 FOR SHARE`);

/**
 * Inside a transaction: true if `leader` still holds its term. The row stays share-locked until the
 * transaction ends, so a new election (which updates the row) waits for the duty to finish, and the duty
 * never writes after another agent was elected.
 */
export async function leaderHoldsTerm(db: SchemaDb, leader: LeaderTerm): Promise<boolean> {
  return (await db.rows(HOLDS_TERM, [leader.agentId, leader.term])).length === 1;
}

export interface LeaderInfo {
  agentId: string;
  term: number;
  electedAt: Date;
  /** the backend of the leader's dedicated session */
  backendPid: number | null;
}

const GET = statement(
  'leader_get',
  `SELECT agent_id, term, elected_at, backend_pid FROM @.leader AS l WHERE agent_id IS NOT NULL AND ${leaderLockHeldBy('l.backend_pid', '$1::text')}`,
);

/** Who leads now; undefined when nobody does (no agent yet, the last leader resigned, or its session is gone). */
export async function leaderGet(db: SchemaDb): Promise<LeaderInfo | undefined> {
  const [row] = await db.rows(GET, [db.schema]);
  return row ? { agentId: row.agent_id, term: Number(row.term), electedAt: row.elected_at, backendPid: row.backend_pid } : undefined;
}

// Server-side keepalives on the leader's session: if the leader's host vanishes without closing the socket,
// the server notices within seconds and releases the lock (the client-side keepalive covers the other way).
const SESSION_SETUP = statement(
  'leader_session_setup',
  `SELECT set_config('tcp_keepalives_idle', '2', false), set_config('tcp_keepalives_interval', '1', false),
          set_config('tcp_keepalives_count', '2', false), set_config('tcp_user_timeout', '4000', false)`,
);

/** Prepares a dedicated session for leadership (keepalives). */
export async function leaderSessionSetup(db: SchemaDb): Promise<void> {
  await db.rows(SESSION_SETUP);
}

