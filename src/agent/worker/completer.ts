import type { SchemaDb } from '../../shared/db/sql.js';
import {
  jobCompleteMany,
  jobCompleteManySkippingLocked,
  jobFailMany,
  jobFailManySkippingLocked,
  type FailedRun,
  type LeaseRef,
} from '../../shared/db/queries/jobs-runs.js';
import { isDeadlock, isLockTimeout, isStatementCancelled, isTransientDatabaseError } from '../../shared/errors.js';
import type { Logger } from '../../shared/logger.js';
import { storableJson, storableText } from '../../shared/storable.js';
import { withTimeout } from '../../shared/with-timeout.js';

/** A run whose lease the agent holds, with when that lease was granted or last renewed (performance.now() ms). */
export interface HeldRun extends LeaseRef {
  grantedAt?: number;
}

interface CompletedRun extends HeldRun {
  /** the result as JSON text, or null */
  result: string | null;
}

type FailedHeldRun = FailedRun & HeldRun & {
  /** this failure records an earlier outcome the database refused: refused again, it is left to the lease */
  replacesRefused?: boolean;
};

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
  private closed = false;
  /** completions and failures whose rows another transaction holds locked: tried again after HOLD_BACK_MS */
  private heldBack: CompletedRun[] = [];
  private heldBackFailed: FailedHeldRun[] = [];
  private heldBackTimer: NodeJS.Timeout | undefined;
  private retryHeldBack = false;

  constructor(
    private readonly db: SchemaDb,
    private readonly logger: Logger,
  ) {}

  get backlog(): number {
    return this.waiting + this.heldBack.length + this.heldBackFailed.length;
  }

  /** Outcomes waiting for the next flush (held-back ones wait for their timer instead). */
  private get waiting(): number {
    return this.completed.length + this.failed.length;
  }

  /** Runs whose outcome is not stored yet: their leases must still be renewed (`grantedAt` is updated in place). */
  unwritten(): HeldRun[] {
    return [...this.completed, ...this.failed, ...this.writing, ...this.heldBack, ...this.heldBackFailed];
  }

  /** The run of job `id` under `leaseEpoch` (its lease granted or renewed at `grantedAt`) returned `result`. */
  complete(id: number, leaseEpoch: number, grantedAt: number | undefined, result: unknown): void {
    let text: string | null;
    try {
      text = result === undefined ? null : storableJson(result);
    } catch (error) {
      this.fail({ id, leaseEpoch, grantedAt, outcome: 'failed', error: `the handler's result cannot be stored as JSON: ${(error as Error).message}` });
      return;
    }
    this.completed.push({ id, leaseEpoch, grantedAt, result: text });
    this.schedule();
  }

  fail(run: FailedHeldRun): void {
    this.failed.push({ ...run, error: storableText(run.error), stack: run.stack === undefined ? undefined : storableText(run.stack) });
    this.schedule();
  }

  private schedule(): void {
    if (this.scheduled || this.flushing || this.closed) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.flushing = this.flush().finally(() => {
        this.flushing = undefined;
        if (this.waiting > 0 || this.retryHeldBack) this.schedule();
      });
    });
  }

  private async flush(): Promise<void> {
    const completed = this.completed;
    const failed = this.failed;
    const heldBack = this.retryHeldBack ? this.heldBack.splice(0) : [];
    const heldBackFailed = this.retryHeldBack ? this.heldBackFailed.splice(0) : [];
    this.retryHeldBack = false;
    this.completed = [];
    this.failed = [];
    this.writing = [...completed, ...failed, ...heldBack, ...heldBackFailed];
    const keepCompleted = (runs: CompletedRun[]) => this.completed.push(...runs);
    const keepFailed = (runs: FailedHeldRun[]) => this.failed.push(...runs);
    const holdBackAgain = (runs: CompletedRun[]) => this.holdBack(this.heldBack, runs, true);
    const holdBackFailedAgain = (runs: FailedHeldRun[]) => this.holdBack(this.heldBackFailed, runs, true);
    const completion = { what: 'completion', keep: keepCompleted, keepLocked: holdBackAgain, refused: this.completionRefused };
    const failure = { what: 'failure', keep: keepFailed, keepLocked: holdBackFailedAgain, refused: this.failureRefused };
    await Promise.all([
      completed.length > 0 && this.write(completed, (runs) => this.storeCompleted(runs, false), completion),
      // Most likely still locked: straight to the statement that skips locked rows, rather than wait again.
      heldBack.length > 0 && this.write(heldBack, (runs) => this.storeCompleted(runs, true), completion),
      failed.length > 0 && this.write(failed, (runs) => this.storeFailed(runs, false), failure),
      heldBackFailed.length > 0 && this.write(heldBackFailed, (runs) => this.storeFailed(runs, true), failure),
    ]);
    this.writing = [];
  }

  private async storeCompleted(runs: CompletedRun[], skipLocked: boolean): Promise<void> {
    const results = runs.some((run) => run.result !== null) ? runs.map((run) => run.result) : null;
    let done: Set<number> | undefined;
    let busy = new Set<number>();
    if (!skipLocked) {
      try {
        done = await jobCompleteMany(this.db, runs, results);
      } catch (error) {
        if (!isLockTimeout(error)) throw error;
      }
    }
    // Some row is locked by another transaction (the first try timed out on it): store the rest now, that one shortly.
    if (done === undefined) ({ done, busy } = await jobCompleteManySkippingLocked(this.db, runs, results));
    const waiting: CompletedRun[] = [];
    for (const run of runs) {
      if (busy.has(run.id)) waiting.push(run);
      else if (!done.has(run.id)) this.logger.warn('completion rejected: the job was cancelled or its lease was taken over', { jobId: run.id });
    }
    if (waiting.length > 0) this.holdBack(this.heldBack, waiting, skipLocked);
  }

  /** Runs whose rows were locked by another transaction (a client's, attaching a dependent): later, not now. */
  private holdBack<T extends HeldRun>(into: T[], runs: T[], again: boolean): void {
    if (this.closed) return; // after shutdown's drain: left to their leases
    const jobs = runs.map((run) => run.id);
    const what = (into as HeldRun[]) === this.heldBack ? 'completions' : 'failures';
    if (again) this.logger.debug(`jobs still locked by another transaction; their ${what} wait`, { jobs });
    else this.logger.warn(`another transaction holds these jobs locked; storing their ${what} once it lets go`, { jobs });
    into.push(...runs);
    this.heldBackTimer ??= setTimeout(() => {
      this.heldBackTimer = undefined;
      this.retryHeldBack = true;
      this.schedule();
    }, HOLD_BACK_MS);
  }

  /** As storeCompleted: a run whose row another transaction holds locked waits alone, the others are stored now. */
  private async storeFailed(runs: FailedHeldRun[], skipLocked: boolean): Promise<void> {
    let states: Map<number, string> | undefined;
    let busy = new Set<number>();
    if (!skipLocked) {
      try {
        states = await jobFailMany(this.db, runs);
      } catch (error) {
        if (!isLockTimeout(error)) throw error;
      }
    }
    if (states === undefined) ({ states, busy } = await jobFailManySkippingLocked(this.db, runs));
    const waiting: FailedHeldRun[] = [];
    for (const run of runs) {
      if (busy.has(run.id)) waiting.push(run);
      else if (!states.has(run.id)) this.logger.warn('failure rejected: the job was cancelled or its lease was taken over', { jobId: run.id });
    }
    if (waiting.length > 0) this.holdBack(this.heldBackFailed, waiting, skipLocked);
  }

  /**
   * A result the database will not store (a string past jsonb's 256 MB, say) fails the attempt with the reason.
   * Left to the lease, as before, the job ran again a lease later with "lease expired" as its only error.
   */
  private readonly completionRefused = (run: CompletedRun, error: Error): void => {
    const { id, leaseEpoch, grantedAt } = run;
    this.fail({ id, leaseEpoch, grantedAt, outcome: 'failed', error: `the database refused to store the handler's result: ${error.message}`, replacesRefused: true });
  };

  /** A failure refused as written is recorded once more as a plain failed attempt with the reason, without its stack. */
  private readonly failureRefused = (run: FailedHeldRun, error: Error): void => {
    if (run.replacesRefused) {
      this.logger.error("the database refused a job's outcome twice; its lease will expire and it will run again", { jobId: run.id, error: error.message });
      return;
    }
    const { id, leaseEpoch, grantedAt, permanent } = run;
    this.fail({
      id,
      leaseEpoch,
      grantedAt,
      outcome: 'failed',
      permanent,
      error: `the database refused to store this attempt's outcome (${run.outcome}: ${run.error.slice(0, 200)}): ${error.message}`,
      replacesRefused: true,
    });
  };

  /**
   * Stores `runs`, and deals with what goes wrong: a passing failure keeps the batch for the next flush; a
   * refusal or a lock timeout (a row the statement needs is held by another transaction, such as a dependent a
   * client is attaching jobs to) splits it, so the other runs are stored now. Runs that still time out on a
   * lock go to `keepLocked`; a run the database refuses goes to `refused`.
   */
  private async write<T extends LeaseRef>(
    runs: T[],
    store: (runs: T[]) => Promise<void>,
    handlers: { what: string; keep: (runs: T[]) => void; keepLocked: (runs: T[]) => void; refused: (run: T, error: Error) => void },
  ): Promise<void> {
    const { what, keep, keepLocked } = handlers;
    try {
      await store(runs);
      return;
    } catch (error) {
      // Shutdown gave up on this write (the database stayed unreachable through the drain): left to its lease, unlogged,
      // where before its retry was logged after "agent stopped".
      if (this.closed) return;
      if (isTransientDatabaseError(error)) {
        // A deadlock with a client attaching dependents to these jobs is expected now and then (docs/architecture.md,
        // "DAG workflows"); PostgreSQL broke it, and the batch is stored again.
        if (isDeadlock(error)) this.logger.warn(`storing ${what}s met a deadlock with another transaction; retrying`, { jobs: runs.length });
        else this.logger.error(`could not store ${what}s; retrying`, { error: (error as Error).message, jobs: runs.length });
        keep(runs);
        await delay(250);
        return;
      }
      // One run that met a lock: trying it alone again would just wait out the lock timeout a second time.
      if (runs.length === 1 && waitedTooLong(error)) {
        keepLocked(runs);
        return;
      }
    }
    for (const run of runs) {
      try {
        await store([run]);
      } catch (error) {
        if (waitedTooLong(error)) keepLocked([run]);
        else if (isTransientDatabaseError(error)) keep([run]);
        else {
          this.logger.warn(`the database refused the ${what} of a job`, { jobId: run.id, error: (error as Error).message });
          handlers.refused(run, error as Error);
        }
      }
    }
  }

  /**
   * No more writes: after drain() at shutdown, when the pool is about to end. Runs still unwritten (the
   * database stayed unreachable through the drain) are left to their leases: without this, a retry every
   * 250 ms against the ended pool kept the process alive.
   */
  close(): void {
    this.closed = true;
    clearTimeout(this.heldBackTimer);
  }

  /**
   * Resolves when everything handed in so far is written, or after `timeoutMs` if the database stays
   * unreachable (the unwritten jobs' leases then expire and they run again: at least once).
   */
  async drain(timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while ((this.backlog > 0 || this.flushing || this.scheduled) && Date.now() < deadline) {
      // A write on a silent connection lasts until its query timeout: not past the deadline.
      // withTimeout clears its timer: one left armed kept the process alive for the rest of the shutdown budget.
      if (this.flushing) await withTimeout(this.flushing, deadline - Date.now()).catch(() => {});
      else if (this.heldBackTimer && !this.scheduled && this.waiting === 0) await delay(20);
      else await new Promise((resolve) => setImmediate(resolve));
    }
  }
}

const HOLD_BACK_MS = 250;

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * The statement gave up waiting (our lock_timeout), or the server cancelled it (a statement_timeout that fired first,
 * as it does when set below our lock timeout, or an operator): held back and tried again, never taken as a refusal.
 * Refused, a successful run's completion became a failed attempt, and a job with one attempt went dead.
 */
function waitedTooLong(error: unknown): boolean {
  return isLockTimeout(error) || isStatementCancelled(error);
}
