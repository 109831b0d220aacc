/**
 * DAG workflows: enqueue jobs with dependencies (a workflow of named nodes, or plain jobs with dependsOn)
 * and read a workflow back. All inserts of one call run in one transaction: every node and edge, or none.
 */
import { topologicalOrder, validateDag, type Dependency } from './dag.js';
import type { SchemaDb } from './db/sql.js';
import { jobAttachDependents, jobInsertWithDependencies, jobSettleWaiting, type DependentInsertRow, type WaitingSettlement } from './db/queries/jobs.js';
import { jobDepsOf, workflowGet, workflowInsert, workflowJobs, workflowSetNodes, type Edge } from './db/queries/workflows.js';
import { DependencyRefusedError, ValidationError, WorkflowNotFoundError } from './errors.js';
import { toInsertRow, type JobSpec } from './job-spec.js';
import { checkWorkflowId } from './admin-input.js';
import { LONE_SURROGATE } from './storable.js';

/** A job spec that may wait for other jobs: existing job ids. */
export type DependentJobSpec = JobSpec & { dependsOn?: readonly number[] };

/** A workflow node: a full job spec whose dependsOn names other nodes (strings) or existing jobs (ids). */
export type WorkflowNodeSpec = JobSpec & { dependsOn?: readonly Dependency[] };

export interface WorkflowSpec {
  name?: string;
  nodes: Record<string, WorkflowNodeSpec>;
}

export interface EnqueuedWorkflow {
  workflowId: number;
  /** node name -> job id */
  jobs: Record<string, number>;
}

export const MAX_WORKFLOW_NODES = 10_000;

export interface GraphNode {
  name: string;
  /** how errors name it: `node "a"` in a workflow, `job 2` (or `job` alone) in a batch */
  label: string;
  /** where the node is in the call's input, as a ValidationError's field starts: '', '2.', 'nodes.a.' */
  path: string;
  row: ReturnType<typeof toInsertRow>;
  dependsOn: Dependency[];
}

/**
 * Splits dependsOn off a spec and validates the rest as a job spec. Messages name the node by `label`; a
 * ValidationError's field is the path in the call's input (`path` + the field), as for jobs without dependencies.
 */
function readNode(name: string, spec: unknown, maxPayloadBytes: number, label: string, path: string, keysAllowed = false): GraphNode {
  if (typeof spec !== 'object' || spec === null || Array.isArray(spec)) {
    throw new ValidationError(path.slice(0, -1) || 'job', `${label}: expected a job spec object`);
  }
  const { dependsOn, ...jobSpec } = spec as WorkflowNodeSpec;
  if (dependsOn !== undefined && !Array.isArray(dependsOn)) {
    throw new ValidationError(`${path}dependsOn`, `${label}: dependsOn must be an array of node names or job ids`);
  }
  // A workflow's node with a key taken would have to be another workflow's job (or none's): not supported.
  if (jobSpec.idempotencyKey !== undefined && !keysAllowed) {
    throw new ValidationError(
      `${path}idempotencyKey`,
      `${label}: a job in a workflow cannot have an idempotencyKey (not supported yet); enqueue keyed jobs with dependsOn instead`,
    );
  }
  let row;
  try {
    row = toInsertRow(jobSpec, maxPayloadBytes);
  } catch (error) {
    if (error instanceof ValidationError) throw new ValidationError(`${path}${error.field}`, `${label}: ${error.message}`);
    throw error;
  }
  return { name, label, path, row, dependsOn: [...new Set(dependsOn ?? [])] };
}

const CONTROL_CHARACTER = /[\u0000-\u001f\u007f]/;

/** Validates a workflow before anything touches the database. */
export function readWorkflow(spec: WorkflowSpec, maxPayloadBytes: number): { name: string | null; nodes: GraphNode[] } {
  if (typeof spec !== 'object' || spec === null) throw new ValidationError('workflow', 'enqueueWorkflow takes { name?, nodes }');
  const name = spec.name ?? null;
  if (name !== null && (typeof name !== 'string' || name.length < 1 || name.length > 128)) {
    throw new ValidationError('name', 'the workflow name must be a string of 1 to 128 characters');
  }
  if (typeof spec.nodes !== 'object' || spec.nodes === null || Array.isArray(spec.nodes)) {
    throw new ValidationError('nodes', 'nodes must be an object: node name -> job spec with an optional dependsOn');
  }
  const entries = Object.entries(spec.nodes);
  if (entries.length === 0) throw new ValidationError('nodes', 'a workflow needs at least one node');
  if (entries.length > MAX_WORKFLOW_NODES) throw new ValidationError('nodes', `a workflow has at most ${MAX_WORKFLOW_NODES} nodes; got ${entries.length}`);
  const nodes = entries.map(([nodeName, nodeSpec]) => {
    if (nodeName.length > 128) throw new ValidationError('nodes', `node name "${nodeName.slice(0, 20)}..." is longer than 128 characters`);
    if (nodeName.length === 0) throw new ValidationError('nodes', 'a node name must not be empty');
    if (nodeName.includes('\0') || LONE_SURROGATE.test(nodeName)) {
      throw new ValidationError('nodes', `node name ${JSON.stringify(nodeName)} has a NUL character or an unpaired UTF-16 surrogate, which PostgreSQL cannot store`);
    }
    // A line break or other control character would break the lines of `wida workflow show`.
    if (CONTROL_CHARACTER.test(nodeName)) {
      throw new ValidationError('nodes', `node name ${JSON.stringify(nodeName)} has a control character (a line break, tab, ...); expected printable text`);
    }
    return readNode(nodeName, nodeSpec, maxPayloadBytes, `node "${nodeName}"`, `nodes.${nodeName}.`);
  });
  validateDag(nodes);
  // Inserted dependencies first, so every dependent gets a higher id than the nodes it waits for. A completion locks
  // its row, then its dependents'; an enqueue attaching to jobs locks them in id order: with a dependent below its
  // dependency, the two took the same two rows in opposite orders and deadlocked.
  const byName = new Map(nodes.map((node) => [node.name, node]));
  return { name, nodes: topologicalOrder(nodes).map((nodeName) => byName.get(nodeName)!) };
}

/** Validates plain job specs that may carry dependsOn (job ids only). */
export function readDependentSpecs(specs: readonly unknown[], maxPayloadBytes: number): GraphNode[] {
  // As for a batch without dependencies: positions only in a batch of more than one.
  const nodes = specs.map((spec, i) =>
    specs.length > 1 ? readNode(String(i), spec, maxPayloadBytes, `job ${i}`, `${i}.`, true) : readNode(String(i), spec, maxPayloadBytes, 'job', '', true),
  );
  for (const node of nodes) {
    const bad = node.dependsOn.find((d) => typeof d !== 'number' || !Number.isSafeInteger(d) || d < 1);
    if (bad !== undefined) {
      throw new ValidationError(`${node.path}dependsOn`, `dependsOn takes existing job ids (positive whole numbers); got ${JSON.stringify(bad)}`);
    }
  }
  return nodes;
}

/**
 * Inserts the nodes and their edges on `db`, which must be inside a transaction. Each node starts waiting
 * with one unmet dependency per edge; then the dependencies are locked (the attach writes their
 * `dependents`), and nodes whose dependencies already completed are settled to pending. Returns the job ids
 * in node order.
 */
export async function insertGraph(db: SchemaDb, nodes: readonly GraphNode[], workflowId: number | null): Promise<number[]> {
  const rows: DependentInsertRow[] = nodes.map((node) => ({
    ...node.row,
    state: node.dependsOn.length > 0 ? 'waiting' : 'pending',
    pending_deps: node.dependsOn.length,
    workflow_id: workflowId ?? undefined,
  }));
  const ids = await jobInsertWithDependencies(db, rows);
  // Ids are predictable: one naming a job this same call creates would make a cycle (or a second edge to a node
  // also named by its name) that the check by names cannot see. The caller's transaction takes the rows back.
  const created = new Set(ids);
  nodes.forEach((node) => {
    const own = node.dependsOn.find((dependency) => typeof dependency === 'number' && created.has(dependency));
    if (own !== undefined) {
      throw new ValidationError(`${node.path}dependsOn`, `${describe(node)} depends on job ${own}, which this same call creates; name it by its node name in a workflow, or enqueue it first`);
    }
  });
  const idByName = new Map(nodes.map((node, i) => [node.name, ids[i]]));
  const resolve = (dependency: Dependency) => (typeof dependency === 'number' ? dependency : idByName.get(dependency)!);
  const edges: Edge[] = [];
  nodes.forEach((node, i) => {
    for (const dependency of node.dependsOn) edges.push({ jobId: ids[i], dependsOn: resolve(dependency) });
  });
  if (edges.length === 0) return ids;
  const states = await jobAttachDependents(db, edges);
  const settlements: WaitingSettlement[] = [];
  nodes.forEach((node, i) => {
    let unmet = 0;
    let blockedReason: string | null = null;
    for (const dependency of node.dependsOn) {
      const id = resolve(dependency);
      const state = states.get(id);
      if (state === undefined) {
        throw new DependencyRefusedError(`${describe(node)} depends on job ${id}, which does not exist`);
      }
      if (state === 'cancelled') {
        throw new DependencyRefusedError(`${describe(node)} depends on job ${id}, which is cancelled; retry it first, or leave it out`);
      }
      if (state !== 'completed') unmet++;
      if (state === 'dead' && blockedReason === null) blockedReason = `blocked: job ${id} is dead`;
    }
    if (unmet !== node.dependsOn.length || blockedReason !== null) settlements.push({ id: ids[i], unmet, blockedReason });
  });
  await jobSettleWaiting(db, settlements);
  return ids;
}

// By the label, not the name: a workflow node may be named "7", which is not job 7 of a batch.
function describe(node: GraphNode): string {
  return node.label === 'job' ? 'the job' : node.label;
}

/** Inserts a whole workflow on `db` (inside a transaction). */
export async function insertWorkflow(db: SchemaDb, workflow: { name: string | null; nodes: GraphNode[] }): Promise<EnqueuedWorkflow> {
  const workflowId = await workflowInsert(db, workflow.name);
  const ids = await insertGraph(db, workflow.nodes, workflowId);
  const jobs = Object.fromEntries(workflow.nodes.map((node, i) => [node.name, ids[i]]));
  await workflowSetNodes(db, workflowId, jobs);
  return { workflowId, jobs };
}

export interface WorkflowNodeInfo {
  name: string;
  jobId: number;
  /** null when the job no longer exists (retention deleted it, or it was dropped) */
  task: string | null;
  queue: string | null;
  state: string | null;
  pendingDeps: number;
  blockedReason: string | null;
  lastError: string | null;
  startedAt: Date | null;
  finishedAt: Date | null;
  /** job ids this node waits for (nodes of the workflow, or other jobs) */
  dependsOn: number[];
}

export interface WorkflowInfo {
  id: number;
  name: string | null;
  createdAt: Date;
  nodes: WorkflowNodeInfo[];
  edges: Edge[];
  /** node count per state ('gone' for deleted jobs) */
  counts: Record<string, number>;
}

export async function getWorkflow(db: SchemaDb, id: number): Promise<WorkflowInfo> {
  const workflow = await workflowGet(db, checkWorkflowId(id));
  if (!workflow) throw new WorkflowNotFoundError(id);
  // jsonb keeps no key order; job ids follow the insert order (dependencies first, else the order given).
  const entries = Object.entries(workflow.nodes).sort((a, b) => a[1] - b[1]);
  const ids = entries.map(([, jobId]) => jobId);
  const [jobs, edges] = await Promise.all([workflowJobs(db, ids), jobDepsOf(db, ids)]);
  const jobById = new Map(jobs.map((job) => [job.id, job]));
  const depsById = new Map<number, number[]>();
  for (const edge of edges) {
    const list = depsById.get(edge.jobId);
    if (list) list.push(edge.dependsOn);
    else depsById.set(edge.jobId, [edge.dependsOn]);
  }
  const counts: Record<string, number> = {};
  const nodes = entries.map(([name, jobId]): WorkflowNodeInfo => {
    const job = jobById.get(jobId);
    const state = job?.state ?? null;
    counts[state ?? 'gone'] = (counts[state ?? 'gone'] ?? 0) + 1;
    return {
      name,
      jobId,
      task: job?.task ?? null,
      queue: job?.queue ?? null,
      state,
      pendingDeps: job?.pendingDeps ?? 0,
      blockedReason: job?.blockedReason ?? null,
      lastError: job?.lastError ?? null,
      startedAt: job?.startedAt ?? null,
      finishedAt: job?.finishedAt ?? null,
      dependsOn: depsById.get(jobId) ?? [],
    };
  });
  return { id: workflow.id, name: workflow.name, createdAt: workflow.createdAt, nodes, edges, counts };
}
