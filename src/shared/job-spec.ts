import { z } from 'zod';
import { durationField } from './duration.js';
import { ValidationError } from './errors.js';
import { hasLoneSurrogateEscape, hasNulEscape, LONE_SURROGATE } from './storable.js';
import { PRIORITIES, priorityToNumber } from './job-state.js';

/** Defaults for a job, in one place: the insert statement fills omitted fields from these. */
export const JOB_DEFAULTS = {
  queue: 'default',
  priority: 1, // normal
  maxAttempts: 5,
  backoffStrategy: 'exponential',
  backoffBaseMs: 5_000,
  backoffFactor: 2,
  backoffMaxMs: 3_600_000,
  backoffJitter: 0.2,
} as const;

export const DEFAULT_MAX_PAYLOAD_BYTES = 1024 * 1024;

const NUL_OR_SURROGATE = /[\0\uD800-\uDFFF]/;

/** A string PostgreSQL stores as it is: no NUL character, no unpaired surrogate (stored as U+FFFD, it would differ). */
const storableString = (what: string, max: number) =>
  z
    .string({ error: `${what} must be a string` })
    .min(1, `${what} must not be empty`)
    .max(max, `${what} must be at most ${max} characters`)
    .superRefine((text, ctx) => {
      // One scan for the usual string, which has neither.
      if (!NUL_OR_SURROGATE.test(text)) return;
      if (text.includes('\0')) ctx.addIssue({ code: 'custom', message: `${what} must not contain the NUL character (\\u0000)` });
      else if (LONE_SURROGATE.test(text)) ctx.addIssue({ code: 'custom', message: `${what} must be well-formed Unicode (it has an unpaired UTF-16 surrogate)` });
    });

/** A task or queue name, as the jobs table's CHECKs and the NOTIFY payloads allow. */
export const name = (what: string) => storableString(what, 128);

/** run_at is written as ISO 8601, which PostgreSQL reads for years 1 to 9999. */
const runAtDate = z.date().refine((date) => date.getUTCFullYear() >= 1 && date.getUTCFullYear() <= 9999, 'runAt must be between the years 1 and 9999');

/** A delay keeps run_at within PostgreSQL's (and ISO 8601's four-digit) years: 100 years is plenty. */
export const MAX_DELAY_MS = 100 * 365 * 86_400_000;

const BACKOFF_FIELDS = 'strategy, base, factor, maxInterval, jitter';
const SPEC_FIELDS = 'task, queue, payload, priority, runAt, delay, maxAttempts, backoff, timeout, idempotencyKey, dependsOn';

const backoffSchema = z
  .object({
    strategy: z.enum(['fixed', 'exponential'], { error: 'backoff.strategy must be "fixed" or "exponential"' }).optional(),
    base: durationField('backoff.base').optional(),
    factor: z.number().min(1, 'backoff.factor must be at least 1').max(100, 'backoff.factor must be at most 100').optional(),
    maxInterval: durationField('backoff.maxInterval').optional(),
    jitter: z.number().min(0, 'backoff.jitter must be between 0 and 1').max(1, 'backoff.jitter must be between 0 and 1').optional(),
  })
  .strict();

export const jobSpecSchema = z
  .object({
    task: name('task'),
    queue: name('queue').optional(),
    payload: z.unknown().optional(),
    priority: z.enum(PRIORITIES, { error: `priority must be one of ${PRIORITIES.join(', ')}` }).optional(),
    // A timestamp is held to the same years as a Date: "0001-01-01T00:30:00+01:00" is in year 0 (UTC) and gave a raw
    // PostgreSQL error.
    runAt: z
      .union([z.date(), z.iso.datetime({ offset: true })], { error: 'runAt must be a Date or an ISO 8601 timestamp with a time zone' })
      .transform((value) => (value instanceof Date ? value : new Date(value)))
      .pipe(runAtDate)
      .optional(),
    delay: durationField('delay', { max: MAX_DELAY_MS }).optional(),
    maxAttempts: z.number().int('maxAttempts must be a whole number').min(1, 'maxAttempts must be at least 1').max(1000, 'maxAttempts must be at most 1000').optional(),
    backoff: backoffSchema.optional(),
    timeout: durationField('timeout', { min: 1 }).optional(),
    idempotencyKey: storableString('idempotencyKey', 256).optional(),
  })
  .strict()
  .refine((spec) => !(spec.runAt !== undefined && spec.delay !== undefined), {
    message: 'give runAt or delay, not both',
    path: ['runAt'],
  });

export type JobSpec = z.input<typeof jobSpecSchema>;

/** The row the insert statement reads: only fields that differ from the defaults are present. */
export interface JobInsertRow {
  task: string;
  queue?: string;
  payload: unknown;
  priority?: number;
  run_at?: string;
  delay_ms?: number;
  max_attempts?: number;
  timeout_ms?: number;
  backoff_strategy?: string;
  backoff_base_ms?: number;
  backoff_factor?: number;
  backoff_max_ms?: number;
  backoff_jitter?: number;
  idempotency_key?: string;
}

/**
 * Checks that a payload is stored as given: JSON-serialisable, no NUL character or unpaired surrogate (jsonb
 * refuses both), at most `maxPayloadBytes` of UTF-8. Jobs and cron schedules (whose slots copy it) both use it.
 */
export function checkPayload(payload: unknown, maxPayloadBytes: number, where = ''): void {
  let payloadText: string | undefined;
  try {
    payloadText = JSON.stringify(payload);
  } catch (error) {
    throw new ValidationError('payload', `${where}payload is not serialisable to JSON: ${(error as Error).message}`);
  }
  if (payloadText === undefined) {
    throw new ValidationError('payload', `${where}payload must be a JSON value (object, array, string, number, boolean or null)`);
  }
  if (hasNulEscape(payloadText)) {
    throw new ValidationError('payload', `${where}payload contains a NUL character (\\u0000), which PostgreSQL cannot store`);
  }
  if (hasLoneSurrogateEscape(payloadText)) {
    throw new ValidationError('payload', `${where}payload has a string with an unpaired UTF-16 surrogate, which PostgreSQL cannot store; expected well-formed Unicode`);
  }
  // UTF-8 takes at most 3 bytes per UTF-16 unit, so short payloads need no byte count.
  const bytes = payloadText.length * 3 <= maxPayloadBytes ? 0 : Buffer.byteLength(payloadText);
  if (bytes > maxPayloadBytes) {
    throw new ValidationError('payload', `${where}payload is ${bytes} bytes; the limit is ${maxPayloadBytes} bytes (WIDA_MAX_PAYLOAD_BYTES)`);
  }
}

/**
 * Validates one job spec; throws a ValidationError naming the field and what was expected. The `position` of a
 * job in a batch leads the message ("job 2: ...") and the error's field ("2.priority"), its path in the input.
 */
export function toInsertRow(input: unknown, maxPayloadBytes: number, position?: number): JobInsertRow {
  const where = position === undefined ? '' : `job ${position}: `;
  const path = position === undefined ? '' : `${position}.`;
  const parsed = jobSpecSchema.safeParse(input);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const field = issue.path.join('.') || 'job';
    const message = issue.code === 'unrecognized_keys'
      ? `unknown field ${issue.keys.map((k) => JSON.stringify(k)).join(', ')}; expected ${issue.path[0] === 'backoff' ? BACKOFF_FIELDS : SPEC_FIELDS}`
      : issue.message;
    throw new ValidationError(path + field, `${where}invalid ${field}: ${message}`);
  }
  const spec = parsed.data;
  const payload = spec.payload === undefined ? null : spec.payload;
  try {
    checkPayload(payload, maxPayloadBytes, where);
  } catch (error) {
    if (error instanceof ValidationError && path) throw new ValidationError(path + error.field, error.message);
    throw error;
  }
  const row: JobInsertRow = { task: spec.task, payload };
  if (spec.queue !== undefined && spec.queue !== JOB_DEFAULTS.queue) row.queue = spec.queue;
  if (spec.priority !== undefined) row.priority = priorityToNumber(spec.priority);
  if (spec.runAt !== undefined) row.run_at = spec.runAt.toISOString();
  if (spec.delay !== undefined) row.delay_ms = spec.delay;
  if (spec.maxAttempts !== undefined) row.max_attempts = spec.maxAttempts;
  if (spec.timeout !== undefined) row.timeout_ms = spec.timeout;
  if (spec.idempotencyKey !== undefined) row.idempotency_key = spec.idempotencyKey;
  const backoff = spec.backoff;
  if (backoff) {
    if (backoff.strategy !== undefined) row.backoff_strategy = backoff.strategy;
    if (backoff.base !== undefined) row.backoff_base_ms = backoff.base;
    if (backoff.factor !== undefined) row.backoff_factor = backoff.factor;
    if (backoff.maxInterval !== undefined) row.backoff_max_ms = backoff.maxInterval;
    if (backoff.jitter !== undefined) row.backoff_jitter = backoff.jitter;
  }
  return row;
}
