import type { SchemaDb } from '../../shared/db/sql.js';
import { jobCompleteMany, jobFailMany, type FailedRun, type LeaseRef } from '../../shared/db/queries/jobs.js';
import type { Logger } from '../../shared/logger.js';

export interface CompleterEvents {
  /** a run's outcome is stored, or was rejected because the lease had moved on */
  onSettled?: (run: LeaseRef, outcome: 'completed' | 'pending' | 'dead' | 'rejected') => void;
}

/**
 * Collects finished runs and writes them in batches: one statement for all completions and one for all
 * failures gathered during an event-loop turn, one flush in flight at a time. A write that fails is
 * retried with the next flush, so a database blip delays outcomes without losing them.
 */
export class Completer {
  private completed: LeaseRef[] = [];
  private results: unknown[] = [];
  private hasResults = false;
  private failed: FailedRun[] = [];
  private flushing: Promise<void> | undefined;
  private scheduled = false;

  constructor(
    private readonly db: SchemaDb,
    private readonly logger: Logger,
    private readonly events: CompleterEvents = {},
  ) {}

  get backlog(): number {
    return this.completed.length + this.failed.length;
  }

  complete(run: LeaseRef, result: unknown): void {
    this.completed.push(run);
    this.results.push(result);
    if (result !== undefined) this.hasResults = true;
    this.schedule();
  }

  fail(run: FailedRun): void {
    this.failed.push(run);
    this.schedule();
  }

  private schedule(): void {
    if (this.scheduled || this.flushing) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.flushing = this.flush().finally(() => {
        this.flushing = undefined;
        if (this.backlog > 0) this.schedule();
      });
    });
  }

  private async flush(): Promise<void> {
    const completed = this.completed;
    const results = this.hasResults ? this.results : null;
    const failed = this.failed;
    this.completed = [];
    this.results = [];
    this.hasResults = false;
    this.failed = [];
    await Promise.all([
      completed.length > 0 && this.writeCompleted(completed, results),
      failed.length > 0 && this.writeFailed(failed),
    ]);
  }

  private async writeCompleted(runs: LeaseRef[], results: unknown[] | null): Promise<void> {
    try {
      const done = await jobCompleteMany(this.db, runs, results);
      for (const run of runs) {
        const ok = done.has(run.id);
        if (!ok) this.logger.warn('completion rejected: the job was cancelled or its lease was taken over', { jobId: run.id });
        this.events.onSettled?.(run, ok ? 'completed' : 'rejected');
      }
    } catch (error) {
      this.logger.error('could not store completions; retrying', { error: (error as Error).message, jobs: runs.length });
      this.completed.push(...runs);
      if (results) {
        this.results.push(...results);
        this.hasResults = true;
      } else this.results.push(...new Array(runs.length));
      await delay(250);
    }
  }

  private async writeFailed(runs: FailedRun[]): Promise<void> {
    try {
      const states = await jobFailMany(this.db, runs);
      for (const run of runs) {
        const state = states.get(run.id);
        if (!state) this.logger.warn('failure rejected: the job was cancelled or its lease was taken over', { jobId: run.id });
        this.events.onSettled?.(run, (state as 'pending' | 'dead' | undefined) ?? 'rejected');
      }
    } catch (error) {
      this.logger.error('could not store failures; retrying', { error: (error as Error).message, jobs: runs.length });
      this.failed.push(...runs);
      await delay(250);
    }
  }

  /**
   * Resolves when everything handed in so far is written, or after `timeoutMs` if the database stays
   * unreachable (the unwritten jobs' leases then expire and they run again: at least once).
   */
  async drain(timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while ((this.backlog > 0 || this.flushing || this.scheduled) && Date.now() < deadline) {
      if (this.flushing) await this.flushing;
      else await new Promise((resolve) => setImmediate(resolve));
    }
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
