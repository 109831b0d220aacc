/** The agents table: one row per agent process, refreshed by its heartbeat. */
import { statement, type SchemaDb } from '../sql.js';
import { leaderLockHeldBy } from './leader.js';

export interface AgentInfo {
  id: string;
  host: string;
  pid: number;
  version: string;
  queues: string[] | null;
  concurrency: number;
  /** how often the agent beats; readers judge it alive by this (null: rows from before the agent said) */
  heartbeatIntervalMs: number | null;
}

const HEARTBEAT = statement(
  'agent_heartbeat',
  `INSERT INTO @.agents (id, host, pid, version, queues, concurrency, state, heartbeat_interval_ms)
   VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
   ON CONFLICT (id) DO UPDATE SET heartbeat_at = now(), state = EXCLUDED.state, heartbeat_interval_ms = EXCLUDED.heartbeat_interval_ms`,
);

/** Records that the agent is alive (and registers it on the first beat). */
export async function agentHeartbeat(db: SchemaDb, agent: AgentInfo, state: 'running' | 'draining' | 'stopped'): Promise<void> {
  await db.rows(HEARTBEAT, [agent.id, agent.host, agent.pid, agent.version, agent.queues, agent.concurrency, state, agent.heartbeatIntervalMs]);
}

export interface AgentRow extends AgentInfo {
  state: string;
  startedAt: Date;
  heartbeatAt: Date;
  heartbeatAgeMs: number;
  /** not stopped, and its last beat is at most three of its own intervals old */
  alive: boolean;
  /** this agent leads now (runs cron, rescue and retention) */
  isLeader: boolean;
}

/** The interval of an agent with the default lease (30 s): min(5 s, lease / 3). */
export const DEFAULT_HEARTBEAT_INTERVAL_MS = 5_000;

const LIST = statement(
  'agent_list',
  `SELECT a.*, (extract(epoch FROM now() - a.heartbeat_at) * 1000)::bigint AS heartbeat_age_ms,
          a.state <> 'stopped'
            AND a.heartbeat_at >= now() - 3 * coalesce(a.heartbeat_interval_ms, ${DEFAULT_HEARTBEAT_INTERVAL_MS})::bigint * interval '1 millisecond' AS alive,
          EXISTS (SELECT 1 FROM @.leader l WHERE l.agent_id = a.id AND ${leaderLockHeldBy('l.backend_pid', '$1::text')}) AS is_leader
     FROM @.agents a ORDER BY a.started_at DESC`,
);

export async function agentList(db: SchemaDb): Promise<AgentRow[]> {
  const rows = await db.rows(LIST, [db.schema]);
  return rows.map((row) => ({
    id: row.id,
    host: row.host,
    pid: row.pid,
    version: row.version,
    queues: row.queues,
    concurrency: row.concurrency,
    heartbeatIntervalMs: row.heartbeat_interval_ms,
    state: row.state,
    startedAt: row.started_at,
    heartbeatAt: row.heartbeat_at,
    heartbeatAgeMs: Number(row.heartbeat_age_ms),
    alive: row.alive,
    isLeader: row.is_leader,
  }));
}

const DELETE_STALE = statement(
  'agent_delete_stale',
  `DELETE FROM @.agents WHERE heartbeat_at < coalesce($2::timestamptz, now()) - $1 * interval '1 millisecond'`,
);

/** Forgets agents that have not beaten for `olderThanMs`. */
export async function agentDeleteStale(db: SchemaDb, olderThanMs: number, now?: Date): Promise<number> {
  return db.rowCount(DELETE_STALE, [olderThanMs, now ?? null]);
}

// An agent serving every queue has queues null and does not count: it names none.
const NAME_QUEUE = statement('agent_names_queue', `SELECT EXISTS (SELECT 1 FROM @.agents WHERE $1 = ANY(queues)) AS named`);

/** Whether some agent (running or not, while its row is kept) lists the queue among those it serves. */
export async function agentNamesQueue(db: SchemaDb, queue: string): Promise<boolean> {
  const [row] = await db.rows(NAME_QUEUE, [queue]);
  return row.named === true;
}
