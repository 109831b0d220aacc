import { inspect } from 'node:util';
import { PermanentFailure, Snooze } from '../../shared/handler-signals.js';
import { JobAbort } from './abort-reasons.js';

/**
 * What a handler's rejection means for its job. A handler may throw anything, including values whose every
 * property read, prototype lookup or conversion to text throws (a Proxy, an object with a throwing getter, a
 * null-prototype object): nothing here may throw, or the run would never be recorded and the agent would crash
 * on the unhandled rejection, and again on every agent that took the job after its lease.
 */
export type ThrownValue =
  | { kind: 'abort'; abort: JobAbort }
  | { kind: 'snooze'; snooze: Snooze }
  | { kind: 'failure'; message: string; stack?: string; permanent: boolean };

export function classifyThrown(value: unknown): ThrownValue {
  if (isInstance(value, JobAbort)) return { kind: 'abort', abort: value };
  if (isInstance(value, Snooze)) return { kind: 'snooze', snooze: value };
  return { kind: 'failure', ...describeThrown(value), permanent: isInstance(value, PermanentFailure) };
}

/** The message (and stack, if any) to record for a thrown value; always strings. */
export function describeThrown(value: unknown): { message: string; stack?: string } {
  if (isInstance(value, Error)) {
    const message = readText(() => value.message) || readText(() => value.name) || 'Error';
    const stack = readText(() => value.stack);
    return stack ? { message, stack } : { message };
  }
  if (typeof value === 'string') return { message: value };
  return { message: `non-Error thrown: ${show(value)}` };
}

function isInstance<T>(value: unknown, type: abstract new (...args: never[]) => T): value is T {
  try {
    return value instanceof type;
  } catch {
    return false; // a Proxy whose getPrototypeOf throws
  }
}

/** A property that should be text: read it, and make text of what is there; '' when that fails. */
function readText(read: () => unknown): string {
  try {
    const value = read();
    if (typeof value === 'string') return value;
    return value === undefined || value === null ? '' : show(value);
  } catch {
    return '';
  }
}

/** JSON where it can be (what most thrown objects look best as), else Node's inspection (symbols, cycles, null prototypes). */
function show(value: unknown): string {
  try {
    const json = JSON.stringify(value);
    if (json !== undefined) return json;
  } catch {
    // circular, BigInt inside, a throwing toJSON: inspect below
  }
  try {
    return inspect(value, { depth: 2, breakLength: Infinity });
  } catch {
    return 'a value that cannot be shown';
  }
}
