/**
 * Operator actions, in one place: the client API, the CLI, the console and the HTTP API all call these,
 * so every action has one implementation with one set of state rules (src/shared/job-state.ts).
 */
import pg from 'pg';
import { checkDeadFilter, checkJobId, checkListFilter, checkQueueName } from './admin-input.js';
import { InvalidJobStateError, JobNotFoundError, ValidationError, isDeadlock } from './errors.js';
import { ACTION_STATES, type JobAction } from './job-state.js';
import type { SchemaDb } from './db/sql.js';
import { inTransaction } from './db/transaction.js';
import {
  jobApplyAction,
  jobCountDead,
  jobGet,
  jobList,
  jobLockDependencies,
  jobLockDependenciesOfDead,
  jobLockRestorableDependents,
  jobPurgeDead,
  jobReplayDead,
  jobRestoreDependents,
  type DeadFilter,
  type JobListFilter,
  type JobRow,
  type RunAgainRow,
} from './db/queries/jobs-admin.js';
import { notifyControl, notifyJobsReady } from './db/queries/notifications.js';
import { queueSetPaused, queueSummaries, type QueueSummary } from './db/queries/queues.js';
import { agentList, agentNamesQueue, type AgentRow } from './db/queries/agents.js';
import { cronScheduleNamesQueue } from './db/queries/cron-schedules.js';
import { jobInQueueExists } from './db/queries/jobs.js';

export type { DeadFilter, JobListFilter, JobRow, QueueSummary, AgentRow };

export async function getJob(db: SchemaDb, id: number): Promise<JobRow> {
  const job = await jobGet(db, checkJobId(id));
  if (!job) throw new JobNotFoundError(id);
  return job;
}

export async function listJobs(db: SchemaDb, filter: JobListFilter = {}): Promise<JobRow[]> {
  return jobList(db, checkListFilter(filter));
}

/**
 * Runs `work` in a transaction: our own on a pool; on a client, the caller's (as enqueue's `client` option:
 * the caller opens it; outside one, each statement commits on its own and the dependency lock of a retry
 * is let go before the retry runs).
 */
async function inTransactionOn<T>(db: SchemaDb, work: (tx: SchemaDb) => Promise<T>): Promise<T> {
  if (!isPool(db.queryable)) return work(db);
  const pool = db.queryable;
  // A deadlock is tried again from the start: two retries restoring one dependent lock its dependencies from two
  // sides (PostgreSQL ends one with 40P01); rolled back, the action holds none of its locks.
  for (let attempt = 1; ; attempt++) {
    try {
      return await inTransaction(pool, (client) => work(db.on(client)));
    } catch (error) {
      if (!isDeadlock(error) || attempt >= DEADLOCK_ATTEMPTS) throw error;
    }
  }
}

const DEADLOCK_ATTEMPTS = 3;

// By shape, not instanceof: an application's pool may come from another copy of pg.
function isPool(queryable: unknown): queryable is pg.Pool {
  return queryable instanceof pg.Pool || (typeof queryable === 'object' && queryable !== null && 'totalCount' in queryable && 'connect' in queryable);
}

async function applyAction(db: SchemaDb, action: JobAction, id: number) {
  const allowed = ACTION_STATES[action];
  const outcome = await jobApplyAction(db, action, checkJobId(id), allowed);
  if (!outcome) throw new JobNotFoundError(id);
  if (!outcome.changed) throw new InvalidJobStateError(id, outcome.previousState, action, allowed);
  return outcome;
}

/** Where a retry or replay left the job: pending, or waiting for the dependencies it counts. */
export interface RunAgainOutcome {
  state: 'pending' | 'waiting';
  /** dependencies not completed; 0 when pending */
  pendingDeps: number;
  /** e.g. "blocked: job 42 is cancelled" while a dependency is dead or cancelled */
  blockedReason: string | null;
  /**
   * The dependents that this job's cancel had cancelled (transitively, through the cascade), brought back: each
   * waits for its dependencies again (or is pending when none is left). Those cancelled by an operator, or kept
   * cancelled by another dependency that is still cancelled (or dead, when its cancel was the cause), stay so.
   */
  restoredDependents: RestoredDependent[];
}

/** A dependent brought back by the retry or replay of the job whose cancel had cancelled it; where it went. */
export type RestoredDependent = RunAgainRow;

/** A job a replay (or a retry) left waiting for its dependencies instead of pending. */
export type WaitingJob = Omit<RunAgainRow, 'state'>;

/**
 * Retry and replay run the job again only once its dependencies have completed: the job becomes waiting
 * while some have not. Its dependencies are locked first, in the same transaction (see jobs-admin.ts).
 */
async function runAgain(db: SchemaDb, action: 'retry' | 'replay', id: number): Promise<RunAgainOutcome> {
  checkJobId(id);
  // The wake-up goes in the same transaction: sent after the commit, a failed NOTIFY reported an action that was done as failed.
  const { job, restoredDependents } = await inTransactionOn(db, async (tx) => {
    await jobLockDependencies(tx, id);
    const applied = await applyAction(tx, action, id);
    if (applied.newState === 'pending') await notifyJobsReady(tx, [applied.queue]);
    // Read under the row lock the action took, so the count is the one the action wrote.
    const job = applied.newState === 'waiting' ? await jobGet(tx, id) : undefined;
    return { job, restoredDependents: await restoreDependents(tx, [id]) };
  });
  if (job?.state === 'waiting') return { state: 'waiting', pendingDeps: job.pendingDeps, blockedReason: job.blockedReason, restoredDependents };
  return { state: 'pending', pendingDeps: 0, blockedReason: null, restoredDependents };
}

/**
 * Brings back, level by level, the dependents that the cancel cascade from `ids` (just run again) had cancelled;
 * the rules and the race are in jobs-admin.ts. Each level is two statements: the lock of the candidates'
 * dependencies, then the change, which must see the states as of after that lock.
 */
async function restoreDependents(tx: SchemaDb, ids: readonly number[]): Promise<RestoredDependent[]> {
  const restored: RestoredDependent[] = [];
  const readyQueues = new Set<string>();
  // Ends: every level turns cancelled jobs into waiting or pending ones, and the graph has no cycle.
  for (let roots = ids; roots.length > 0; ) {
    const candidates = await jobLockRestorableDependents(tx, roots);
    if (candidates.length === 0) break;
    const level = await jobRestoreDependents(tx, candidates);
    for (const { queue, ...dependent } of level) {
      restored.push(dependent);
      if (dependent.state === 'pending') readyQueues.add(queue);
    }
    roots = level.map((dependent) => dependent.id);
  }
  if (readyQueues.size > 0) await notifyJobsReady(tx, [...readyQueues]);
  return restored;
}

/**
 * Runs a pending job now, or gives a dead or cancelled job a fresh attempt budget. A job whose
 * dependencies have not all completed becomes waiting instead, blocked while one is dead or cancelled.
 */
export function retryJob(db: SchemaDb, id: number): Promise<RunAgainOutcome> {
  return runAgain(db, 'retry', id);
}

/** Cancels a waiting, pending or running job; a running handler gets its AbortSignal fired. */
export async function cancelJob(db: SchemaDb, id: number): Promise<void> {
  checkJobId(id);
  await inTransactionOn(db, async (tx) => {
    const outcome = await applyAction(tx, 'cancel', id);
    if (outcome.previousState === 'running') {
      await notifyControl(tx, { type: 'cancel', jobId: id, leaseEpoch: outcome.leaseEpoch, agentId: outcome.claimedBy });
    }
  });
}

/** Deletes a job that is not running (cancel a running job first). */
export async function dropJob(db: SchemaDb, id: number): Promise<void> {
  await applyAction(db, 'drop', id);
}

/**
 * Puts one dead job back to pending with a fresh attempt budget; its attempt history stays with it. Like
 * retry, it waits instead while one of its dependencies has not completed.
 */
export function replayJob(db: SchemaDb, id: number): Promise<RunAgainOutcome> {
  return runAgain(db, 'replay', id);
}

export async function listDead(db: SchemaDb, filter: Omit<JobListFilter, 'states'> = {}): Promise<JobRow[]> {
  return jobList(db, checkListFilter({ ...filter, states: ['dead'] }));
}

/** What a bulk replay did: the jobs replayed, those of them left waiting, and the dependents brought back. */
export interface ReplayDeadOutcome {
  /** every job replayed, by id */
  replayed: number[];
  /** those of `replayed` that wait for dependencies not completed instead of being pending */
  waiting: WaitingJob[];
  /** dependents the cancel of a replayed job had cancelled, brought back (see RunAgainOutcome) */
  restoredDependents: RestoredDependent[];
}

/** Replays every dead job matching the filter; says which wait for their dependencies, and which dependents came back. */
export async function replayDead(db: SchemaDb, filter: DeadFilter): Promise<ReplayDeadOutcome> {
  checkDeadFilter(filter);
  return inTransactionOn(db, async (tx) => {
    await jobLockDependenciesOfDead(tx, filter);
    const rows = await jobReplayDead(tx, filter);
    if (rows.some((row) => row.state === 'pending')) await notifyJobsReady(tx, filter.queue ? [filter.queue] : ['*']);
    const replayed = rows.map((row) => row.id);
    const waiting = rows.filter((row) => row.state === 'waiting').map(({ state: _state, ...job }) => job);
    return { replayed, waiting, restoredDependents: await restoreDependents(tx, replayed) };
  });
}

/** How many dead jobs match the filter, counted up to `cap` (for a question before a bulk action). */
export async function countDead(db: SchemaDb, filter: DeadFilter = {}, cap = 10_000): Promise<number> {
  if (!Number.isSafeInteger(cap) || cap < 1) throw new ValidationError('cap', `invalid cap: cap must be a whole number, 1 or more; got ${cap}`);
  return jobCountDead(db, checkDeadFilter(filter), cap);
}

/** Deletes every dead job matching the filter; returns their ids. */
export async function purgeDead(db: SchemaDb, filter: DeadFilter): Promise<number[]> {
  return jobPurgeDead(db, checkDeadFilter(filter));
}

/** What a pause or resume changed, and whether the queue looks like a typo. */
export interface QueuePauseChange {
  /** false on a resume means the queue was not paused: nothing was written */
  wasPaused: boolean;
  /**
   * No job is in the queue, no agent names it among its queues and no cron schedule enqueues to it: perhaps a
   * typo. A pause is kept all the same (pausing a queue before its first job is legitimate).
   */
  unknown: boolean;
}

/**
 * Agents stop claiming from a paused queue; jobs already running finish. The pause is committed before the look for
 * a job in the queue, which may read the whole jobs table (see jobInQueueExists): an emergency pause must not wait.
 */
export async function pauseQueue(db: SchemaDb, queue: string): Promise<QueuePauseChange> {
  checkQueueName(queue);
  const { wasPaused } = await inTransactionOn(db, async (tx) => {
    const change = await queueSetPaused(tx, queue, true);
    await notifyControl(tx, { type: 'queue_paused', queue });
    return change;
  });
  return { wasPaused, unknown: !(await queueIsNamed(db, queue)) };
}

export async function resumeQueue(db: SchemaDb, queue: string): Promise<QueuePauseChange> {
  checkQueueName(queue);
  const { wasPaused } = await inTransactionOn(db, async (tx) => {
    const change = await queueSetPaused(tx, queue, false);
    await notifyControl(tx, { type: 'queue_resumed', queue });
    await notifyJobsReady(tx, [queue]);
    return change;
  });
  return { wasPaused, unknown: !(await queueIsNamed(db, queue)) };
}

/** Whether an agent, a cron schedule or a job names the queue; the small tables first. */
async function queueIsNamed(db: SchemaDb, queue: string): Promise<boolean> {
  return (await agentNamesQueue(db, queue)) || (await cronScheduleNamesQueue(db, queue)) || jobInQueueExists(db, queue);
}

export function listQueues(db: SchemaDb): Promise<QueueSummary[]> {
  return queueSummaries(db);
}

export function listAgents(db: SchemaDb): Promise<AgentRow[]> {
  return agentList(db);
}

export { getLeader } from './cron-admin.js';
export type { LeaderInfo } from './cron-admin.js';
