/**
 * Operator actions, in one place: the client API, the CLI, the console and the HTTP API all call these,
 * so every action has one implementation with one set of state rules (src/shared/job-state.ts).
 */
import pg from 'pg';
import { checkDeadFilter, checkJobId, checkListFilter, checkQueueName } from './admin-input.js';
import { InvalidJobStateError, JobNotFoundError, ValidationError } from './errors.js';
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
  jobPurgeDead,
  jobReplayDead,
  type DeadFilter,
  type JobListFilter,
  type JobRow,
} from './db/queries/jobs-admin.js';
import { notifyControl, notifyJobsReady } from './db/queries/notifications.js';
import { queueSetPaused, queueSummaries, type QueueSummary } from './db/queries/queues.js';
import { agentList, type AgentRow } from './db/queries/agents.js';

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
function inTransactionOn<T>(db: SchemaDb, work: (tx: SchemaDb) => Promise<T>): Promise<T> {
  if (isPool(db.queryable)) return inTransaction(db.queryable, (client) => work(db.on(client)));
  return work(db);
}

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
}

/**
 * Retry and replay run the job again only once its dependencies have completed: the job becomes waiting
 * while some have not. Its dependencies are locked first, in the same transaction (see jobs-admin.ts).
 */
async function runAgain(db: SchemaDb, action: 'retry' | 'replay', id: number): Promise<RunAgainOutcome> {
  checkJobId(id);
  // The wake-up goes in the same transaction: sent after the commit, a failed NOTIFY reported an action that was done as failed.
  const { job } = await inTransactionOn(db, async (tx) => {
    await jobLockDependencies(tx, id);
    const applied = await applyAction(tx, action, id);
    if (applied.newState === 'pending') await notifyJobsReady(tx, [applied.queue]);
    // Read under the row lock the action took, so the count is the one the action wrote.
    return { job: applied.newState === 'waiting' ? await jobGet(tx, id) : undefined };
  });
  if (job?.state === 'waiting') return { state: 'waiting', pendingDeps: job.pendingDeps, blockedReason: job.blockedReason };
  return { state: 'pending', pendingDeps: 0, blockedReason: null };
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

/** Replays every dead job matching the filter; returns their ids. */
export async function replayDead(db: SchemaDb, filter: DeadFilter): Promise<number[]> {
  checkDeadFilter(filter);
  return inTransactionOn(db, async (tx) => {
    await jobLockDependenciesOfDead(tx, filter);
    const ids = await jobReplayDead(tx, filter);
    if (ids.length > 0) await notifyJobsReady(tx, filter.queue ? [filter.queue] : ['*']);
    return ids;
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

/** What a pause or resume changed: `wasPaused` false on a resume means the queue was not paused (or a typo). */
export interface QueuePauseChange {
  wasPaused: boolean;
}

/** Agents stop claiming from a paused queue; jobs already running finish. */
export async function pauseQueue(db: SchemaDb, queue: string): Promise<QueuePauseChange> {
  checkQueueName(queue);
  return inTransactionOn(db, async (tx) => {
    const change = await queueSetPaused(tx, queue, true);
    await notifyControl(tx, { type: 'queue_paused', queue });
    return change;
  });
}

export async function resumeQueue(db: SchemaDb, queue: string): Promise<QueuePauseChange> {
  checkQueueName(queue);
  return inTransactionOn(db, async (tx) => {
    const change = await queueSetPaused(tx, queue, false);
    await notifyControl(tx, { type: 'queue_resumed', queue });
    await notifyJobsReady(tx, [queue]);
    return change;
  });
}

export function listQueues(db: SchemaDb): Promise<QueueSummary[]> {
  return queueSummaries(db);
}

export function listAgents(db: SchemaDb): Promise<AgentRow[]> {
  return agentList(db);
}

export { getLeader } from './cron-admin.js';
export type { LeaderInfo } from './cron-admin.js';
