/**
 * The workflows table and the job_deps edges: naming a workflow, reading its graph back. The statements
 * that change jobs because of an edge (attach, release, block, cascade) live with the jobs, in jobs.ts and
 * jobs-admin.ts.
 */
import { statement, type SchemaDb } from '../sql.js';

const INSERT = statement('workflow_insert', `INSERT INTO @.workflows (name) VALUES ($1) RETURNING id`);

export async function workflowInsert(db: SchemaDb, name: string | null): Promise<number> {
  const [row] = await db.rows(INSERT, [name]);
  return Number(row.id);
}

const SET_NODES = statement('workflow_set_nodes', `UPDATE @.workflows SET nodes = $2::jsonb WHERE id = $1`);

/** Records node name -> job id. */
export async function workflowSetNodes(db: SchemaDb, id: number, nodes: Record<string, number>): Promise<void> {
  await db.rows(SET_NODES, [id, JSON.stringify(nodes)]);
}

export interface WorkflowRow {
  id: number;
  name: string | null;
  nodes: Record<string, number>;
  createdAt: Date;
}

const GET = statement('workflow_get', `SELECT id, name, nodes, created_at FROM @.workflows WHERE id = $1`);

export async function workflowGet(db: SchemaDb, id: number): Promise<WorkflowRow | undefined> {
  const [row] = await db.rows(GET, [id]);
  return row ? { id: Number(row.id), name: row.name, nodes: row.nodes, createdAt: row.created_at } : undefined;
}

export interface WorkflowJob {
  id: number;
  task: string;
  queue: string;
  state: string;
  pendingDeps: number;
  blockedReason: string | null;
  lastError: string | null;
  startedAt: Date | null;
  finishedAt: Date | null;
}

// By id through the primary key: jobs has no index on workflow_id (every index on jobs costs the hot path).
const JOBS = statement(
  'workflow_jobs',
  `SELECT id, task, queue, state, pending_deps, blocked_reason, last_error, started_at, finished_at
     FROM @.jobs WHERE id = ANY($1::bigint[])`,
);

/** The jobs among these ids that still exist (retention deletes finished ones). */
export async function workflowJobs(db: SchemaDb, ids: readonly number[]): Promise<WorkflowJob[]> {
  const rows = await db.rows(JOBS, [ids]);
  return rows.map((row) => ({
    id: Number(row.id),
    task: row.task,
    queue: row.queue,
    state: row.state,
    pendingDeps: row.pending_deps,
    blockedReason: row.blocked_reason,
    lastError: row.last_error,
    startedAt: row.started_at,
    finishedAt: row.finished_at,
  }));
}

export interface Edge {
  jobId: number;
  dependsOn: number;
}

const EDGES = statement('job_deps_of', `SELECT job_id, depends_on FROM @.job_deps WHERE job_id = ANY($1::bigint[]) ORDER BY job_id, depends_on`);

/** The dependencies of these jobs (including jobs outside their workflow). */
export async function jobDepsOf(db: SchemaDb, ids: readonly number[]): Promise<Edge[]> {
  const rows = await db.rows(EDGES, [ids]);
  return rows.map((row) => ({ jobId: Number(row.job_id), dependsOn: Number(row.depends_on) }));
}
