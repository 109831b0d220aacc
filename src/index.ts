export { createClient, type WidaClient, type ClientOptions, type EnqueueOptions, type EnqueueResult } from './shared/client.js';
export type { JobSpec } from './shared/job-spec.js';
export type { JobRow, AttemptLogEntry, JobListFilter, DeadFilter } from './shared/db/queries/jobs-admin.js';
export { createAgent, type Agent, type AgentOptions } from './agent/agent.js';
export type { Handler, Handlers, JobContext, JobInfo, Executor } from './agent/worker/executors/executor.js';
export { PermanentFailure, Snooze, failPermanently, snooze } from './shared/handler-signals.js';
export { migrateUp, migrateDown, migrationStatus } from './shared/db/migrate.js';
export * from './shared/errors.js';
export { JOB_STATES, PRIORITIES, type JobState, type Priority } from './shared/job-state.js';
