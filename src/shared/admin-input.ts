/**
 * Checks of what operators pass to admin.ts, before any statement: ids, queue names and filters from the client
 * API arrive unchecked (the CLI checks its own words), and PostgreSQL would answer a bad one with a raw error or,
 * for a queue name, store a row no job can ever match.
 */
import { z } from 'zod';
import { ValidationError } from './errors.js';
import { name } from './job-spec.js';
import { JOB_STATES } from './job-state.js';

const jobId = (what: string) =>
  z.number({ error: `${what} must be a job id (a positive whole number)` }).refine((id) => Number.isSafeInteger(id) && id >= 1, `${what} must be a job id (a positive whole number)`);

const timeFilters = {
  finishedSince: z.date({ error: 'finishedSince must be a valid Date' }).optional(),
  finishedWithinMs: z.number().refine((ms) => Number.isSafeInteger(ms) && ms >= 0, 'finishedWithinMs must be a whole number of milliseconds, 0 or more').optional(),
};

const listFilterSchema = z.object({
  states: z.array(z.enum(JOB_STATES, { error: `states must be among ${JOB_STATES.join(', ')}` })).optional(),
  queue: name('queue').optional(),
  task: name('task').optional(),
  text: z.string({ error: 'text must be a string' }).max(1_000, 'text must be at most 1000 characters').optional(),
  ...timeFilters,
  limit: z.number().refine((n) => Number.isSafeInteger(n) && n >= 1, 'limit must be a whole number, 1 or more').optional(),
  beforeId: jobId('beforeId').optional(),
});

const deadFilterSchema = z.object({
  ids: z.array(jobId('each id')).optional(),
  queue: name('queue').optional(),
  task: name('task').optional(),
  ...timeFilters,
});

function check<T>(schema: z.ZodType, value: unknown, fallbackField: string): T {
  const parsed = schema.safeParse(value);
  if (parsed.success) return value as T;
  const issue = parsed.error.issues[0];
  const field = issue.path.filter((part) => typeof part === 'string').join('.') || fallbackField;
  throw new ValidationError(field, `invalid ${field}: ${issue.message}`);
}

export function checkJobId(id: unknown): number {
  return check(jobId('the job id'), id, 'id');
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
