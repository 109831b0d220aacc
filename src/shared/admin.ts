/**
 * Operator actions, in one place: the client API, the CLI, the console and the HTTP API all call these,
 * so every action has one implementation with one set of state rules (src/shared/job-state.ts).
 */
import { InvalidJobStateError, JobNotFoundError } from './errors.js';
import { ACTION_STATES, type JobAction } from './job-state.js';
import type { SchemaDb } from './db/sql.js';
import { jobApplyAction, jobGet, jobList, jobPurgeDead, jobReplayDead, type DeadFilter, type JobListFilter, type JobRow } from './db/queries/jobs-admin.js';
import { notifyControl, notifyJobsReady } from './db/queries/notifications.js';
import { queueSetPaused, queueSummaries, type QueueSummary } from './db/queries/queues.js';
import { agentList, type AgentRow } from './db/queries/agents.js';

export type { DeadFilter, JobListFilter, JobRow, QueueSummary, AgentRow };

export async function getJob(db: SchemaDb, id: number): Promise<JobRow> {
  const job = await jobGet(db, id);
  if (!job) throw new JobNotFoundError(id);
  return job;
}

export function listJobs(db: SchemaDb, filter: JobListFilter = {}): Promise<JobRow[]> {
  return jobList(db, filter);
}

async function applyAction(db: SchemaDb, action: JobAction, id: number) {
  const allowed = ACTION_STATES[action];
  const outcome = await jobApplyAction(db, action, id, allowed);
  if (!outcome) throw new JobNotFoundError(id);
  if (!outcome.changed) throw new InvalidJobStateError(id, outcome.previousState, action, allowed);
  return outcome;
}

/** Runs a pending job now, or gives a dead or cancelled job a fresh attempt budget. */
export async function retryJob(db: SchemaDb, id: number): Promise<void> {
  const outcome = await applyAction(db, 'retry', id);
  await notifyJobsReady(db, [outcome.queue]);
}

/** Cancels a waiting, pending or running job; a running handler gets its AbortSignal fired. */
export async function cancelJob(db: SchemaDb, id: number): Promise<void> {
  const outcome = await applyAction(db, 'cancel', id);
  if (outcome.previousState === 'running') {
    await notifyControl(db, { type: 'cancel', jobId: id, agentId: outcome.claimedBy });
  }
}

/** Deletes a job that is not running (cancel a running job first). */
export async function dropJob(db: SchemaDb, id: number): Promise<void> {
  await applyAction(db, 'drop', id);
}

/** Puts one dead job back to pending with a fresh attempt budget; its attempt history stays with it. */
export async function replayJob(db: SchemaDb, id: number): Promise<void> {
  const outcome = await applyAction(db, 'replay', id);
  await notifyJobsReady(db, [outcome.queue]);
}

export function listDead(db: SchemaDb, filter: Omit<JobListFilter, 'states'> = {}): Promise<JobRow[]> {
  return jobList(db, { ...filter, states: ['dead'] });
}

/** Replays every dead job matching the filter; returns their ids. */
export async function replayDead(db: SchemaDb, filter: DeadFilter): Promise<number[]> {
  const ids = await jobReplayDead(db, filter);
  if (ids.length > 0) await notifyJobsReady(db, filter.queue ? [filter.queue] : ['*']);
  return ids;
}

/** Deletes every dead job matching the filter; returns their ids. */
export function purgeDead(db: SchemaDb, filter: DeadFilter): Promise<number[]> {
  return jobPurgeDead(db, filter);
}

/** Agents stop claiming from a paused queue; jobs already running finish. */
export async function pauseQueue(db: SchemaDb, queue: string): Promise<void> {
  await queueSetPaused(db, queue, true);
  await notifyControl(db, { type: 'queue_paused', queue });
}

export async function resumeQueue(db: SchemaDb, queue: string): Promise<void> {
  await queueSetPaused(db, queue, false);
  await notifyControl(db, { type: 'queue_resumed', queue });
  await notifyJobsReady(db, [queue]);
}

export function listQueues(db: SchemaDb): Promise<QueueSummary[]> {
  return queueSummaries(db);
}

export function listAgents(db: SchemaDb): Promise<AgentRow[]> {
  return agentList(db);
}

export { getLeader } from './cron-admin.js';
export type { LeaderInfo } from './cron-admin.js';
