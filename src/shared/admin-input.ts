/**
 * Checks of what operators pass to admin.ts, before any statement: ids, queue names and filters from the client
 * API arrive unchecked (the CLI checks its own words), and PostgreSQL would answer a bad one with a raw error or,
 * for a queue name, store a row no job can ever match.
 */
import { z } from 'zod';
import { ValidationError } from './errors.js';
import { MAX_DELAY_MS, name } from './job-spec.js';
import { JOB_STATES } from './job-state.js';

const positiveId = (what: string, kind: string) =>
  z.number({ error: `${what} must be a ${kind} id (a positive whole number)` }).refine((id) => Number.isSafeInteger(id) && id >= 1, `${what} must be a ${kind} id (a positive whole number)`);
const jobId = (what: string) => positiveId(what, 'job');

/** The most rows one listing returns: page with `beforeId` for more (a listing reads every payload). */
export const MAX_LIST_LIMIT = 1_000;

const timeFilters = {
  finishedSince: z.date({ error: 'finishedSince must be a valid Date' }).optional(),
  finishedWithinMs: z
    .number()
    .refine(
      (ms) => Number.isSafeInteger(ms) && ms >= 0 && ms <= MAX_DELAY_MS,
      `finishedWithinMs must be a whole number of milliseconds from 0 to ${MAX_DELAY_MS} (100 years)`,
    )
    .optional(),
};

// Strict: a key the filter does not know is refused, not ignored. A typo (`{ id: 2 }` for `{ ids: [2] }`) would
// otherwise widen the filter to every job, and a purge cannot be undone.
const listFilterSchema = z.strictObject({
  states: z.array(z.enum(JOB_STATES, { error: `states must be among ${JOB_STATES.join(', ')}` })).optional(),
  queue: name('queue').optional(),
  task: name('task').optional(),
  text: z.string({ error: 'text must be a string' }).max(1_000, 'text must be at most 1000 characters').optional(),
  ...timeFilters,
  limit: z
    .number()
    .refine((n) => Number.isSafeInteger(n) && n >= 1 && n <= MAX_LIST_LIMIT, `limit must be a whole number from 1 to ${MAX_LIST_LIMIT}`)
    .optional(),
  beforeId: jobId('beforeId').optional(),
});

const deadFilterSchema = z.strictObject({
  ids: z.array(jobId('each id')).optional(),
  queue: name('queue').optional(),
  task: name('task').optional(),
  ...timeFilters,
  finishedBefore: z.date({ error: 'finishedBefore must be a valid Date' }).optional(),
});

function check<T>(schema: z.ZodType, value: unknown, fallbackField: string): T {
  const parsed = schema.safeParse(value);
  if (parsed.success) return value as T;
  const issue = parsed.error.issues[0];
  const field = issue.path.filter((part) => typeof part === 'string').join('.') || fallbackField;
  if (issue.code === 'unrecognized_keys' && schema instanceof z.ZodObject) {
    const known = Object.keys(schema.shape).join(', ');
    throw new ValidationError(field, `invalid ${field}: unknown ${issue.keys.map((key) => JSON.stringify(key)).join(', ')}; expected some of ${known}`);
  }
  throw new ValidationError(field, `invalid ${field}: ${issue.message}`);
}

export function checkJobId(id: unknown): number {
  return check(jobId('the job id'), id, 'id');
}

export function checkWorkflowId(id: unknown): number {
  return check(positiveId('the workflow id', 'workflow'), id, 'id');
}

export function checkQueueName(queue: unknown): string {
  return check(name('queue'), queue, 'queue');
}

export function checkListFilter<T>(filter: T): T {
  return check(listFilterSchema, filter, 'filter');
}

export function checkDeadFilter<T>(filter: T): T {
  return check(deadFilterSchema, filter, 'filter');
}
