/**
 * The workflows table and the job_deps edges: naming a workflow, reading its graph back, deleting it once
 * its jobs are gone. The statements that change jobs because of an edge (attach, release, block, cascade)
 * live with the jobs, in jobs.ts and jobs-admin.ts.
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

/*
 * A workflow whose jobs are all gone (retention, drop, purge) is deleted. Its jobs are found through the
 * ids in `nodes` and the primary key: jobs has no index on workflow_id, and `WHERE workflow_id = ...` would
 * scan jobs once per workflow. The walk is bounded: a window of `limit` workflows in id order after a
 * cursor, whatever they hold, so workflows that live long (a node dead in the DLQ, say) cost one look per
 * lap and never stop the walk from reaching newer ones; the delete goes by primary key (`= ANY(ARRAY(...))`:
 * a join to the window was planned as a scan of every workflow). Job ids are never reused, so a workflow
 * found without jobs stays so, and the delete races with nothing.
 */
const DELETE_JOBLESS = statement(
  'workflow_delete_jobless',
  `WITH examined AS (
     SELECT id, nodes FROM @.workflows WHERE id > $1 ORDER BY id LIMIT $2
   ),
   deleted AS (
     DELETE FROM @.workflows
      WHERE id = ANY(ARRAY(
        SELECT e.id FROM examined e
         WHERE NOT EXISTS (SELECT 1 FROM jsonb_each_text(e.nodes) AS n(name, job_id) JOIN @.jobs j ON j.id = n.job_id::bigint)))
     RETURNING id
   )
   SELECT (SELECT count(*) FROM deleted)::integer AS deleted, (SELECT count(*) FROM examined)::integer AS examined,
          (SELECT max(id) FROM examined) AS last_id`,
);

export interface JoblessDeletion {
  deleted: number;
  /** where the next call starts: the last workflow examined, or 0 when the walk reached the end */
  nextAfterId: number;
}

/** Deletes the workflows without jobs among the `limit` workflows after `afterId`. */
export async function workflowDeleteJobless(db: SchemaDb, params: { afterId: number; limit: number }): Promise<JoblessDeletion> {
  const [row] = await db.rows(DELETE_JOBLESS, [params.afterId, params.limit]);
  return { deleted: row.deleted, nextAfterId: row.examined < params.limit ? 0 : Number(row.last_id) };
}
