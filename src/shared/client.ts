import pg from 'pg';
import * as admin from './admin.js';
import * as cron from './cron-admin.js';
import { loadConfigFor, type WidaConfig } from './config.js';
import { SchemaDb, type Queryable } from './db/sql.js';
import { createPool } from './db/pool.js';
import { inSavepoint, inTransaction } from './db/transaction.js';
import { databaseNow } from './db/queries/cron-schedules.js';
import { jobFindByIdempotencyKeys, jobInsertMany, jobInsertOne, type InsertedJob } from './db/queries/jobs.js';
import { ConfigError, SerializationFailureError, ValidationError, isDeadlock, isUniqueViolation } from './errors.js';
import { transactionIsolation } from './db/queries/sessions.js';
import { DEFAULT_MAX_PAYLOAD_BYTES, toInsertRow, type JobInsertRow } from './job-spec.js';
import * as workflow from './workflow.js';
import type { DependentJobSpec, EnqueuedWorkflow, WorkflowInfo, WorkflowSpec } from './workflow.js';

export interface ClientOptions {
  /** defaults to WIDA_DATABASE_URL */
  databaseUrl?: string;
  /** defaults to WIDA_SCHEMA, then "wida" */
  schema?: string;
  /** use this pool instead of opening one (it is not closed by close()) */
  pool?: pg.Pool;
  /** defaults to WIDA_MAX_PAYLOAD_BYTES, then 1 MiB */
  maxPayloadBytes?: number;
}

export interface EnqueueOptions {
  /** the caller's pg client inside an open transaction: the job exists if and only if it commits */
  client?: Queryable;
}

export interface EnqueueResult {
  id: number;
  /** true when a job with the same idempotency key already existed; `id` is that job's */
  duplicate: boolean;
}

export interface WidaClient {
  readonly db: SchemaDb;
  /** `dependsOn`: ids of existing jobs; the job waits until every one of them completed */
  enqueue(spec: DependentJobSpec, options?: EnqueueOptions): Promise<EnqueueResult>;
  enqueueMany(specs: readonly DependentJobSpec[], options?: EnqueueOptions): Promise<EnqueueResult[]>;
  /**
   * Enqueues named nodes with dependencies (node names or existing job ids) in one transaction: all of it
   * or nothing. Cycles throw CycleDetectedError; unknown names or ids throw ValidationError.
   */
  enqueueWorkflow(spec: WorkflowSpec, options?: EnqueueOptions): Promise<EnqueuedWorkflow>;
  /** A workflow's nodes with their states, and its edges. */
  getWorkflow(id: number): Promise<WorkflowInfo>;
  getJob(id: number): Promise<admin.JobRow>;
  listJobs(filter?: admin.JobListFilter): Promise<admin.JobRow[]>;
  /** pending again, or waiting when a dependency has not completed (the outcome says which) */
  retryJob(id: number): Promise<admin.RunAgainOutcome>;
  cancelJob(id: number): Promise<void>;
  dropJob(id: number): Promise<void>;
  replayJob(id: number): Promise<admin.RunAgainOutcome>;
  listDead(filter?: Omit<admin.JobListFilter, 'states'>): Promise<admin.JobRow[]>;
  /** how many dead jobs match, counted up to `cap` (default 10,000) */
  /** every dead job when no filter is given */
  countDead(filter?: admin.DeadFilter, cap?: number): Promise<number>;
  replayDead(filter: admin.DeadFilter): Promise<admin.ReplayDeadOutcome>;
  purgeDead(filter: admin.DeadFilter): Promise<number[]>;
  /** Says whether the queue was paused already. */
  pauseQueue(queue: string): Promise<admin.QueuePauseChange>;
  /** Says whether the queue was paused: false for a queue that was not (nothing is written then). */
  resumeQueue(queue: string): Promise<admin.QueuePauseChange>;
  listQueues(): Promise<admin.QueueSummary[]>;
  listAgents(): Promise<admin.AgentRow[]>;
  /** creates a cron schedule, or updates the one with this name */
  addCronSchedule(spec: cron.CronScheduleSpec): Promise<{ schedule: cron.CronScheduleInfo; created: boolean }>;
  updateCronSchedule(name: string, changes: Partial<Omit<cron.CronScheduleSpec, 'name'>>): Promise<cron.CronScheduleInfo>;
  listCronSchedules(options?: { nextRuns?: number }): Promise<cron.CronScheduleInfo[]>;
  getCronSchedule(name: string, options?: { nextRuns?: number }): Promise<cron.CronScheduleInfo>;
  removeCronSchedule(name: string): Promise<void>;
  pauseCronSchedule(name: string): Promise<void>;
  resumeCronSchedule(name: string): Promise<void>;
  /** enqueues the schedule's job now, outside its slots */
  triggerCronSchedule(name: string): Promise<{ jobId: number }>;
  /** who leads the agents now; undefined when nobody does */
  getLeader(): Promise<cron.LeaderInfo | undefined>;
  /** the database's clock (what leases, run_at and cron compare against), e.g. for "in 5m" displays */
  databaseNow(): Promise<Date>;
  close(): Promise<void>;
}

/** Tries of an enqueue with dependencies that met a deadlock, or a key taken meanwhile (see `transaction`). */
const GRAPH_ATTEMPTS = 3;

/** The application's handle on Wida: enqueue jobs and run operator actions. */
export function createClient(options: ClientOptions = {}): WidaClient {
  // The environment fills in what the options leave out (as for createAgent), and only that is read and checked.
  const config: Partial<WidaConfig> = loadConfigFor([
    ...(options.databaseUrl || options.pool ? [] : (['WIDA_DATABASE_URL'] as const)),
    ...(options.schema ? [] : (['WIDA_SCHEMA'] as const)),
    ...(options.maxPayloadBytes != null ? [] : (['WIDA_MAX_PAYLOAD_BYTES'] as const)),
  ]);
  const databaseUrl = options.databaseUrl ?? config.WIDA_DATABASE_URL;
  const schema = options.schema ?? config.WIDA_SCHEMA ?? 'wida';
  if (!options.pool && !databaseUrl) {
    throw new ValidationError('databaseUrl', 'no database configured: pass databaseUrl or a pool, or set WIDA_DATABASE_URL');
  }
  const maxPayloadBytes = options.maxPayloadBytes ?? config.WIDA_MAX_PAYLOAD_BYTES ?? DEFAULT_MAX_PAYLOAD_BYTES;
  if (!Number.isSafeInteger(maxPayloadBytes) || maxPayloadBytes < 1) {
    throw new ConfigError(`maxPayloadBytes must be a positive whole number of bytes; got ${String(maxPayloadBytes)}`);
  }
  const ownsPool = !options.pool;
  const pool = options.pool ?? createPool(databaseUrl!, { applicationName: 'wida client' });
  const db = new SchemaDb(pool, schema);

  /**
   * Runs `work` in the caller's transaction (under a savepoint) if given, else in one of our own. A deadlock is tried
   * again: a graph's enqueue locks the jobs it attaches dependents to in id order, and a completion of a batch
   * locks its rows and then their dependents, whose ids may fall between the batch's (PostgreSQL fails one side
   * with 40P01). Rolled back to the savepoint, or in a new transaction, the enqueue holds none of its locks. So is a
   * key taken meanwhile (insertKeyedGraph): run again, the look-up finds its job.
   */
  async function transaction<T>(enqueueOptions: EnqueueOptions, work: (tx: SchemaDb) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        if (enqueueOptions.client) return await inSavepoint(enqueueOptions.client, (client) => work(db.on(client)));
        return await inTransaction(pool, (client) => work(db.on(client)));
      } catch (error) {
        const keyTaken = isUniqueViolation(error) && (error as { constraint?: string }).constraint === 'jobs_idempotency_key';
        // Run again in the caller's snapshot, the look-up could not see the job that took the key either.
        if (keyTaken && enqueueOptions.client && (await transactionIsolation(enqueueOptions.client)) !== 'read committed') {
          throw new SerializationFailureError(
            "an idempotency key was taken by a transaction that committed after this transaction's snapshot: its job can be " +
              'neither returned nor written again; retry the transaction',
            { cause: error },
          );
        }
        if (!(isDeadlock(error) || keyTaken) || attempt >= GRAPH_ATTEMPTS) throw error;
      }
    }
  }

  async function enqueueWithDependencies(specs: readonly DependentJobSpec[], enqueueOptions: EnqueueOptions): Promise<EnqueueResult[]> {
    const nodes = workflow.readDependentSpecs(specs, maxPayloadBytes);
    return transaction(enqueueOptions, (tx) => insertKeyedGraph(tx, nodes));
  }

  /**
   * insertGraph for jobs that may carry idempotency keys: a job whose key is taken (by a job that exists, or by an
   * earlier job of the call) is that job, a duplicate, and neither it nor its edges are written. A key taken by a
   * transaction that commits meanwhile fails the insert on the unique index (after waiting for that transaction):
   * `transaction` then runs this again, and the look-up finds it.
   */
  async function insertKeyedGraph(tx: SchemaDb, nodes: workflow.GraphNode[]): Promise<EnqueueResult[]> {
    const keys = [...new Set(nodes.flatMap((node) => (node.row.idempotency_key === undefined ? [] : [node.row.idempotency_key])))];
    const existing = new Map((keys.length === 0 ? [] : await jobFindByIdempotencyKeys(tx, keys)).map((job) => [job.idempotencyKey!, job.id]));
    const firstWithKey = new Map<string, workflow.GraphNode>();
    const toInsert = nodes.filter((node) => {
      const key = node.row.idempotency_key;
      if (key === undefined) return true;
      if (existing.has(key) || firstWithKey.has(key)) return false;
      firstWithKey.set(key, node);
      return true;
    });
    const ids = toInsert.length === 0 ? [] : await workflow.insertGraph(tx, toInsert, null);
    const idOf = new Map(toInsert.map((node, i) => [node, ids[i]]));
    return nodes.map((node) => {
      const created = idOf.get(node);
      if (created !== undefined) return { id: created, duplicate: false };
      const key = node.row.idempotency_key!;
      return { id: existing.get(key) ?? idOf.get(firstWithKey.get(key)!)!, duplicate: true };
    });
  }

  const hasDependencies = (spec: unknown) =>
    typeof spec === 'object' && spec !== null && 'dependsOn' in spec && (spec as DependentJobSpec).dependsOn !== undefined;
  // `dependsOn: []` depends on nothing: the job is a plain one (and may carry an idempotency key).
  const withoutNoDependencies = (spec: DependentJobSpec): DependentJobSpec => {
    if (typeof spec !== 'object' || spec === null || !Array.isArray(spec.dependsOn) || spec.dependsOn.length > 0) return spec;
    const { dependsOn: _none, ...plain } = spec;
    return plain;
  };

  async function enqueueMany(specs: readonly DependentJobSpec[], enqueueOptions: EnqueueOptions = {}): Promise<EnqueueResult[]> {
    if (!Array.isArray(specs)) throw new ValidationError('jobs', 'enqueueMany takes an array of job specs');
    if (specs.length === 0) return [];
    // Array.from, not map: a hole in a sparse array is a missing job spec, not a row to skip.
    const plain = Array.from(specs, withoutNoDependencies);
    if (plain.some(hasDependencies)) return enqueueWithDependencies(plain, enqueueOptions);
    const rows = plain.map((spec, i) => toInsertRow(spec, maxPayloadBytes, plain.length > 1 ? i : undefined));
    return insertRows(enqueueOptions.client ? db.on(enqueueOptions.client) : db, rows);
  }

  return {
    db,
    enqueueMany,
    async enqueue(given, enqueueOptions) {
      const spec = withoutNoDependencies(given);
      if (hasDependencies(spec)) return (await enqueueWithDependencies([spec], enqueueOptions ?? {}))[0];
      const row = toInsertRow(spec, maxPayloadBytes);
      const [result] = await insertRows(enqueueOptions?.client ? db.on(enqueueOptions.client) : db, [row]);
      return result;
    },
    async enqueueWorkflow(spec, enqueueOptions) {
      const checked = workflow.readWorkflow(spec, maxPayloadBytes);
      return transaction(enqueueOptions ?? {}, (tx) => workflow.insertWorkflow(tx, checked));
    },
    getWorkflow: (id) => workflow.getWorkflow(db, id),
    getJob: (id) => admin.getJob(db, id),
    listJobs: (filter) => admin.listJobs(db, filter),
    retryJob: (id) => admin.retryJob(db, id),
    cancelJob: (id) => admin.cancelJob(db, id),
    dropJob: (id) => admin.dropJob(db, id),
    replayJob: (id) => admin.replayJob(db, id),
    listDead: (filter) => admin.listDead(db, filter),
    countDead: (filter, cap) => admin.countDead(db, filter, cap),
    replayDead: (filter) => admin.replayDead(db, filter),
    purgeDead: (filter) => admin.purgeDead(db, filter),
    pauseQueue: (queue) => admin.pauseQueue(db, queue),
    resumeQueue: (queue) => admin.resumeQueue(db, queue),
    listQueues: () => admin.listQueues(db),
    listAgents: () => admin.listAgents(db),
    addCronSchedule: (spec) => cron.addCronSchedule(db, spec, maxPayloadBytes),
    updateCronSchedule: (name, changes) => cron.updateCronSchedule(db, name, changes, maxPayloadBytes),
    listCronSchedules: (listOptions) => cron.listCronSchedules(db, listOptions),
    getCronSchedule: (name, getOptions) => cron.getCronSchedule(db, name, getOptions),
    removeCronSchedule: (name) => cron.removeCronSchedule(db, name),
    pauseCronSchedule: (name) => cron.pauseCronSchedule(db, name),
    resumeCronSchedule: (name) => cron.resumeCronSchedule(db, name),
    triggerCronSchedule: (name) => cron.triggerCronSchedule(db, name),
    getLeader: () => cron.getLeader(db),
    databaseNow: () => databaseNow(db),
    async close() {
      if (ownsPool) await pool.end();
    },
  };
}

/**
 * Inserts rows and maps each input to its job. A row whose idempotency key is taken gets the existing
 * job. The unique index decides races; if the holder of a key vanishes between the insert and the
 * look-up (deleted by retention), the insert is tried again.
 */
async function insertRows(db: SchemaDb, rows: JobInsertRow[]): Promise<EnqueueResult[]> {
  const results = new Array<EnqueueResult>(rows.length);
  let todo = rows.map((_, i) => i);
  for (let round = 0; round < 3 && todo.length > 0; round++) {
    const inserted = todo.length === 1 ? await insertOne(db, rows[todo[0]]) : await jobInsertMany(db, todo.map((i) => rows[i]));
    const createdByKey = new Map<string, number>();
    const unkeyedIds: number[] = [];
    for (const job of inserted) {
      if (job.idempotencyKey === null) unkeyedIds.push(job.id);
      else createdByKey.set(job.idempotencyKey, job.id);
    }
    const keptInThisBatch = new Map<string, number>();
    const keyTaken: number[] = [];
    let nextUnkeyed = 0;
    for (const i of todo) {
      const key = rows[i].idempotency_key;
      const created = key === undefined ? undefined : createdByKey.get(key);
      if (key === undefined) {
        results[i] = { id: unkeyedIds[nextUnkeyed++], duplicate: false };
      } else if (created !== undefined) {
        results[i] = { id: created, duplicate: false };
        createdByKey.delete(key);
        keptInThisBatch.set(key, created);
      } else if (keptInThisBatch.has(key)) {
        results[i] = { id: keptInThisBatch.get(key)!, duplicate: true };
      } else {
        keyTaken.push(i);
      }
    }
    if (keyTaken.length === 0) return results;
    const existing = await jobFindByIdempotencyKeys(db, [...new Set(keyTaken.map((i) => rows[i].idempotency_key!))]);
    const existingByKey = new Map(existing.map((job) => [job.idempotencyKey!, job.id]));
    todo = keyTaken.filter((i) => {
      const id = existingByKey.get(rows[i].idempotency_key!);
      if (id !== undefined) results[i] = { id, duplicate: true };
      return id === undefined;
    });
  }
  if (todo.length > 0) {
    throw new ValidationError('idempotencyKey', `idempotency key ${JSON.stringify(rows[todo[0]].idempotency_key)} kept changing hands; enqueue again`);
  }
  return results;
}

async function insertOne(db: SchemaDb, row: JobInsertRow): Promise<InsertedJob[]> {
  const inserted = await jobInsertOne(db, row);
  return inserted ? [inserted] : [];
}
