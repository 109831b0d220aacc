import type { SchemaDb } from '../../shared/db/sql.js';
import { jobCompleteMany, jobFailMany, type FailedRun, type LeaseRef } from '../../shared/db/queries/jobs.js';
import { isTransientDatabaseError } from '../../shared/errors.js';
import type { Logger } from '../../shared/logger.js';
import { storableJson, storableText } from '../../shared/storable.js';

/** A run whose lease the agent holds, with when that lease was granted or last renewed (performance.now() ms). */
export interface HeldRun extends LeaseRef {
  grantedAt?: number;
}

interface CompletedRun extends HeldRun {
  /** the result as JSON text, or null */
  result: string | null;
}

type FailedHeldRun = FailedRun & HeldRun;

/**
 * Collects finished runs and writes them in batches: one statement for all completions and one for all
 * failures gathered during an event-loop turn, one flush in flight at a time. A batch that fails for a
 * passing reason (connection lost) is kept and tried again; one the database refuses is split so a
 * single bad row cannot hold back the others.
 */
export class Completer {
  private completed: CompletedRun[] = [];
  private failed: FailedHeldRun[] = [];
  private flushing: Promise<void> | undefined;
  private writing: HeldRun[] = [];
  private scheduled = false;

  constructor(
    private readonly db: SchemaDb,
    private readonly logger: Logger,
  ) {}

  get backlog(): number {
    return this.completed.length + this.failed.length;
  }

  /** Runs whose outcome is not stored yet: their leases must still be renewed (`grantedAt` is updated in place). */
  unwritten(): HeldRun[] {
    return [...this.completed, ...this.failed, ...this.writing];
  }

  complete(run: HeldRun, result: unknown): void {
    let text: string | null;
    try {
      text = result === undefined ? null : storableJson(result);
    } catch (error) {
      this.fail({ ...run, outcome: 'failed', error: `the handler's result cannot be stored as JSON: ${(error as Error).message}` });
      return;
    }
    this.completed.push({ id: run.id, leaseEpoch: run.leaseEpoch, grantedAt: run.grantedAt, result: text });
    this.schedule();
  }

  fail(run: FailedHeldRun): void {
    this.failed.push({ ...run, error: storableText(run.error), stack: run.stack === undefined ? undefined : storableText(run.stack) });
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
    const failed = this.failed;
    this.completed = [];
    this.failed = [];
    this.writing = [...completed, ...failed];
    await Promise.all([
      completed.length > 0 && this.write('completion', completed, (runs) => this.storeCompleted(runs), (runs) => this.completed.push(...runs)),
      failed.length > 0 && this.write('failure', failed, (runs) => this.storeFailed(runs), (runs) => this.failed.push(...runs)),
    ]);
    this.writing = [];
  }

  private async storeCompleted(runs: CompletedRun[]): Promise<void> {
    const results = runs.some((run) => run.result !== null) ? runs.map((run) => run.result) : null;
    const done = await jobCompleteMany(this.db, runs, results);
    for (const run of runs) {
      if (!done.has(run.id)) this.logger.warn('completion rejected: the job was cancelled or its lease was taken over', { jobId: run.id });
    }
  }

  private async storeFailed(runs: FailedRun[]): Promise<void> {
    const states = await jobFailMany(this.db, runs);
    for (const run of runs) {
      if (!states.has(run.id)) this.logger.warn('failure rejected: the job was cancelled or its lease was taken over', { jobId: run.id });
    }
  }

  private async write<T extends LeaseRef>(what: string, runs: T[], store: (runs: T[]) => Promise<void>, keep: (runs: T[]) => void): Promise<void> {
    try {
      await store(runs);
      return;
    } catch (error) {
      if (isTransientDatabaseError(error)) {
        this.logger.error(`could not store ${what}s; retrying`, { error: (error as Error).message, jobs: runs.length });
        keep(runs);
        await delay(250);
        return;
      }
    }
    for (const run of runs) {
      try {
        await store([run]);
      } catch (error) {
        if (isTransientDatabaseError(error)) keep([run]);
        else {
          this.logger.error(`the database refused the ${what} of a job; its lease will expire and it will run again`, {
            jobId: run.id,
            error: (error as Error).message,
          });
        }
      }
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
