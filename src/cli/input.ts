/** Parsing of command-line values that yargs cannot check: payloads, durations, times, ids, states. */
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { MAX_LIST_LIMIT } from '../shared/admin-input.js';
import { parseDuration } from '../shared/duration.js';
import { MAX_DELAY_MS } from '../shared/job-spec.js';
import { JOB_STATES, isJobState } from '../shared/job-state.js';
import { UsageError } from './context.js';

/** `--payload JSON`, `--payload @file.json` or `--payload -` (stdin). */
export function readPayload(value: string | undefined): unknown {
  if (value === undefined) return undefined;
  let text = value;
  let source = 'the --payload value';
  if (value === '-') {
    text = readFileSync(0, 'utf8');
    source = 'the payload on stdin';
  } else if (value.startsWith('@')) {
    const file = value.slice(1);
    try {
      text = readFileSync(file, 'utf8');
    } catch (error) {
      throw new UsageError(`cannot read payload file ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}; give a readable file after @`);
    }
    source = `payload file ${file}`;
  }
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new UsageError(
      `${source} is not valid JSON (${(error as Error).message}); quote it for the shell, e.g. --payload '{"to":"ada@example.com"}'`,
    );
  }
}

/** A duration flag such as `--delay 30s`; a usage error names the flag. */
export function readDuration(flag: string, value: string): number {
  const ms = parseDuration(value);
  if (ms === undefined) {
    throw new UsageError(`--${flag} ${JSON.stringify(value)} is not a duration; use e.g. 500ms, 30s, 5m, 2h, 1d or a number of milliseconds`);
  }
  return ms;
}

const TIMESTAMP = z.iso.datetime({ offset: true });

/**
 * `--run-at` or `--since`: an ISO 8601 timestamp with a time zone, checked as the client API checks runAt (a
 * date such as February 30 is refused, not rolled over; a time without a zone would depend on this machine's).
 */
export function readTimestamp(flag: string, value: string): Date {
  if (!TIMESTAMP.safeParse(value).success) {
    throw new UsageError(`--${flag} ${JSON.stringify(value)} is not a timestamp; use ISO 8601 with a time zone, e.g. 2026-10-01T09:00:00Z or 2026-10-01T11:00:00+02:00`);
  }
  const date = new Date(value);
  if (date.getUTCFullYear() < 1 || date.getUTCFullYear() > 9999) throw new UsageError(`--${flag} ${JSON.stringify(value)} is outside the years 1 to 9999 (UTC)`);
  return date;
}

/**
 * `--since 1h` (that long ago by the database's clock: this machine's may be off, and a purge cannot be
 * undone) or `--since 2026-10-01T00:00:00Z`.
 */
export function readSince(value: string | undefined): { finishedWithinMs: number } | { finishedSince: Date } | Record<string, never> {
  if (value === undefined) return {};
  const ms = parseDuration(value);
  if (ms !== undefined) {
    // Further back than the database's calendar reaches gave a raw "timestamp out of range".
    if (ms > MAX_DELAY_MS) throw new UsageError(`--since ${JSON.stringify(value)} reaches too far back; give at most 100 years (36500d)`);
    return { finishedWithinMs: ms };
  }
  if (!TIMESTAMP.safeParse(value).success) {
    throw new UsageError(`--since ${JSON.stringify(value)} is neither a duration (1h, 30m) nor an ISO 8601 timestamp`);
  }
  return { finishedSince: readTimestamp('since', value) };
}

/** `--limit`: yargs hands a word that is not a number over as NaN. Bounded: a listing reads every payload. */
export function readLimit(value: number): number {
  if (!Number.isInteger(value) || value < 1 || value > MAX_LIST_LIMIT) {
    throw new UsageError(`--limit must be a whole number from 1 to ${MAX_LIST_LIMIT}; page further back with --before ID`);
  }
  return value;
}

/** `--before ID`: the page of jobs older than that id (a listing's last id). */
export function readBeforeId(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const [id] = readJobIds([value]);
  return id;
}

/** Job ids from positional arguments. */
export function readJobIds(values: readonly (string | number)[]): number[] {
  return values.map((value) => {
    const text = String(value);
    if (!/^[1-9]\d{0,17}$/.test(text) || !Number.isSafeInteger(Number(text))) {
      throw new UsageError(`${JSON.stringify(text)} is not a job id; job ids are positive whole numbers (see \`wida jobs list\`)`);
    }
    return Number(text);
  });
}

/** `--state pending,dead` */
export function readStates(value: string | undefined): string[] | undefined {
  if (value === undefined) return undefined;
  const states = value.split(',').map((state) => state.trim()).filter(Boolean);
  // An empty list matched no job: "(no jobs)" while there were jobs.
  if (states.length === 0) throw new UsageError(`--state names no state; use one or more of ${JOB_STATES.join(', ')}, comma-separated`);
  for (const state of states) {
    if (!isJobState(state)) throw new UsageError(`unknown state ${JSON.stringify(state)}; use one or more of ${JOB_STATES.join(', ')}`);
  }
  return states;
}
