import { parseDuration } from './duration.js';
import { ValidationError } from './errors.js';
import { MAX_DELAY_MS } from './job-spec.js';

/** Thrown by a handler to fail the job for good: no more attempts, straight to the DLQ. */
export class PermanentFailure extends Error {
  readonly code = 'JOB_FAILED_PERMANENTLY';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'PermanentFailure';
  }
}

/** Thrown by a handler to run the job again later without using up an attempt. */
export class Snooze extends Error {
  readonly code = 'JOB_SNOOZED';
  readonly delayMs: number;
  constructor(delay: number | string) {
    const ms = parseDuration(delay);
    // Past 100 years PostgreSQL refuses the new run_at, and the snooze was lost with an attempt spent.
    if (ms === undefined || ms < 0 || ms > MAX_DELAY_MS) {
      throw new ValidationError('delay', `snooze delay must be a duration from 0 to 100 years, such as 30s or a number of milliseconds; got ${shown(delay)}`);
    }
    super(`snoozed for ${ms} ms`);
    this.name = 'Snooze';
    this.delayMs = ms;
  }
}

function shown(value: unknown): string {
  try {
    return typeof value === 'string' ? JSON.stringify(value) : String(value);
  } catch {
    return `a ${typeof value}`;
  }
}

export function failPermanently(message: string): never {
  throw new PermanentFailure(message);
}

export function snooze(delay: number | string): never {
  throw new Snooze(delay);
}
