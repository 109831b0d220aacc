import type { SchemaDb } from '../../shared/db/sql.js';
import { jobClaimBatch, jobReleaseMany, type ClaimedJob, type LeaseRef } from '../../shared/db/queries/jobs.js';
import { PermanentFailure, Snooze } from '../../shared/handler-signals.js';
import type { Logger } from '../../shared/logger.js';
import { JobAbort } from './abort-reasons.js';
import type { Completer, HeldRun } from './completer.js';
import type { Executor } from './executors/executor.js';

const MAX_CLAIMS_IN_FLIGHT = 2;
const MAX_TIMER_MS = 2 ** 31 - 1;

export interface WorkerPoolOptions {
  agentId: string;
  db: SchemaDb;
  executor: Executor;
  completer: Completer;
  logger: Logger;
  /** null: every queue */
  queues: readonly string[] | null;
  concurrency: number;
  /** jobs claimed ahead of free slots, so a slot never waits for a round trip */
  prefetch: number;
  leaseMs: number;
  defaultTimeoutMs: number;
  /** per-queue limits on this agent's running jobs */
  queueConcurrency: Readonly<Record<string, number>>;
}

/** A claimed job with when its lease was granted or last renewed (performance.now() ms, when the request was sent: monotonic, so a clock stepped back cannot hold renewals off). */
interface HeldJob extends ClaimedJob {
  leaseGrantedAt: number;
}

interface RunningJob {
  job: HeldJob;
  /** made when the handler first reads its signal: most handlers never do, and it costs on every job */
  controller: AbortController | undefined;
  abortReason: JobAbort | undefined;
  timer: NodeJS.Timeout;
  settled: boolean;
}

function signalOf(entry: RunningJob): AbortSignal {
  if (!entry.controller) {
    entry.controller = new AbortController();
    if (entry.abortReason) entry.controller.abort(entry.abortReason);
  }
  return entry.controller.signal;
}

/**
 * Claims jobs in batches and runs them with bounded concurrency. Claimed jobs wait in a small local
 * buffer; each runs with an AbortSignal that fires on timeout, cancellation, a lost lease or shutdown.
 */
export class WorkerPool {
  private readonly buffer: HeldJob[] = [];
  private readonly running = new Map<number, RunningJob>();
  private readonly runningPerQueue = new Map<string, number>();
  private claimsInFlight = 0;
  private reserved = 0;
  private wokenWhileBusy = false;
  private readonly claims = new Set<Promise<void>>();
  private stopped = false;
  private idleWaiters: (() => void)[] = [];
  private readonly tasks: string[] | null;
  private readonly hasQueueLimits: boolean;

  constructor(private readonly options: WorkerPoolOptions) {
    this.tasks = options.executor.tasks();
    this.hasQueueLimits = Object.keys(options.queueConcurrency).length > 0;
  }

  get runningCount(): number {
    return this.running.size;
  }

  /**
   * Every job this agent holds a lease on: buffered, running, and finished but not yet written; with
   * `grantedBefore`, only leases granted or renewed before that time (performance.now() ms), so a renewal does not
   * rewrite a thousand rows whose leases were granted a moment ago.
   */
  heldLeases(grantedBefore = Infinity): HeldRun[] {
    const refs: HeldRun[] = [];
    const add = (job: HeldJob) => {
      if (job.leaseGrantedAt < grantedBefore) refs.push({ id: job.id, leaseEpoch: job.leaseEpoch, grantedAt: job.leaseGrantedAt });
    };
    for (const job of this.buffer) add(job);
    for (const { job, settled } of this.running.values()) if (!settled) add(job);
    for (const run of this.options.completer.unwritten()) if ((run.grantedAt ?? 0) < grantedBefore) refs.push(run);
    return refs;
  }

  /** The leases of these runs (from heldLeases) were renewed at `at`, the time the renewal was sent. */
  leasesRenewed(runs: readonly HeldRun[], at: number): void {
    const renewed = new Set(runs.map((run) => run.id));
    for (const job of this.buffer) if (renewed.has(job.id)) job.leaseGrantedAt = at;
    for (const { job } of this.running.values()) if (renewed.has(job.id)) job.leaseGrantedAt = at;
    for (const run of runs) run.grantedAt = at; // the unwritten runs are the completer's own objects
  }

  /** Something may be ready: claim if there is room. Safe to call as often as you like. */
  wake(): void {
    if (this.stopped) return;
    if (this.claimsInFlight >= MAX_CLAIMS_IN_FLIGHT) {
      this.wokenWhileBusy = true;
      return;
    }
    while (this.claimsInFlight < MAX_CLAIMS_IN_FLIGHT && this.shouldClaim()) {
      const claim = this.claim();
      this.claims.add(claim);
      void claim.finally(() => this.claims.delete(claim));
    }
  }

  private capacity(): number {
    return this.options.concurrency + this.options.prefetch;
  }

  /** Room for more jobs, counting those that claims in flight may bring. */
  private room(): number {
    return this.capacity() - this.running.size - this.buffer.length - this.reserved;
  }

  /**
   * Claim when a slot would otherwise sit idle, or when half the capacity is free: claiming on every
   * finished job would turn one claim of a thousand into a thousand claims of one.
   */
  private shouldClaim(): boolean {
    const room = this.room();
    if (room <= 0) return false;
    if (this.running.size + this.buffer.length + this.reserved < this.options.concurrency) return true;
    return room >= Math.ceil(this.capacity() / 2);
  }

  // Two claims may be in flight so the database works on one while the other's rows travel back.
  private async claim(): Promise<void> {
    const limit = Math.min(this.room(), Math.ceil(this.capacity() / MAX_CLAIMS_IN_FLIGHT));
    this.claimsInFlight++;
    this.reserved += limit;
    let jobs: ClaimedJob[] = [];
    const askedAt = performance.now();
    try {
      jobs = await jobClaimBatch(this.options.db, {
        agentId: this.options.agentId,
        leaseMs: this.options.leaseMs,
        queues: this.options.queues,
        tasks: this.tasks,
        limit,
      });
    } catch (error) {
      this.options.logger.error('claiming jobs failed; will retry on the next poll', { error: (error as Error).message });
    } finally {
      this.claimsInFlight--;
      this.reserved -= limit;
    }
    if (this.stopped) {
      await jobReleaseMany(this.options.db, jobs).catch(() => {});
      return;
    }
    for (const job of jobs) {
      const held = job as HeldJob;
      held.leaseGrantedAt = askedAt;
      this.buffer.push(held);
    }
    this.dispatch();
    // A full batch means more may be waiting; a wake-up that came meanwhile may have missed this claim's snapshot.
    const again = jobs.length === limit || this.wokenWhileBusy;
    this.wokenWhileBusy = false;
    if (again) this.wake();
  }

  private dispatch(): void {
    const { concurrency, queueConcurrency } = this.options;
    if (!this.hasQueueLimits) {
      while (this.running.size < concurrency && this.buffer.length > 0) this.start(this.buffer.shift()!);
      return;
    }
    for (let i = 0; i < this.buffer.length && this.running.size < concurrency; ) {
      const job = this.buffer[i];
      const limit = queueConcurrency[job.queue];
      if (limit !== undefined && (this.runningPerQueue.get(job.queue) ?? 0) >= limit) {
        i++;
        continue;
      }
      this.buffer.splice(i, 1);
      this.start(job);
    }
  }

  private start(job: HeldJob): void {
    const timeoutMs = job.timeoutMs ?? this.options.defaultTimeoutMs;
    const entry: RunningJob = {
      job,
      controller: undefined,
      abortReason: undefined,
      settled: false,
      // setTimeout turns anything above 2^31-1 ms into 1 ms; validation keeps timeouts below that, this is the backstop.
      timer: setTimeout(() => this.abort(job.id, new JobAbort('timed_out', `timed out after ${timeoutMs} ms`)), Math.min(timeoutMs, MAX_TIMER_MS)),
    };
    this.running.set(job.id, entry);
    if (this.hasQueueLimits) this.runningPerQueue.set(job.queue, (this.runningPerQueue.get(job.queue) ?? 0) + 1);
    const context = {
      job: { id: job.id, task: job.task, queue: job.queue, priority: job.priority, attempt: job.attempt, maxAttempts: job.maxAttempts },
      get signal() {
        return signalOf(entry);
      },
      idempotencyKey: `wida-job-${job.id}`,
      logger: this.options.logger,
    };
    let execution: Promise<unknown>;
    try {
      execution = this.options.executor.execute(job.task, job.payload, context);
    } catch (error) {
      execution = Promise.reject(error);
    }
    execution.then(
      (result) => this.settle(entry, { ok: true, result }),
      (error) => this.settle(entry, { ok: false, error }),
    );
  }

  /** Fires a running job's signal and settles it at once: a handler that ignores its signal is abandoned. */
  abort(jobId: number, reason: JobAbort): boolean {
    const entry = this.running.get(jobId);
    if (!entry || entry.settled) return false;
    entry.abortReason = reason;
    entry.controller?.abort(reason);
    this.settle(entry, { ok: false, error: reason });
    return true;
  }

  private settle(entry: RunningJob, outcome: { ok: true; result: unknown } | { ok: false; error: unknown }): void {
    if (entry.settled) return;
    entry.settled = true;
    clearTimeout(entry.timer);
    const { job } = entry;
    this.running.delete(job.id);
    if (this.hasQueueLimits) this.runningPerQueue.set(job.queue, this.runningPerQueue.get(job.queue)! - 1);
    const run = { id: job.id, leaseEpoch: job.leaseEpoch, grantedAt: job.leaseGrantedAt };
    const { completer } = this.options;
    const error = outcome.ok ? undefined : outcome.error;
    if (outcome.ok) {
      completer.complete(run, outcome.result);
    } else if (error instanceof JobAbort) {
      // Cancelled or lost jobs are no longer ours to record; shutdown releases them instead.
      if (error.outcome === 'timed_out') completer.fail({ ...run, outcome: 'timed_out', error: error.message });
    } else if (error instanceof Snooze) {
      completer.fail({ ...run, outcome: 'snoozed', error: error.message, snoozeMs: error.delayMs });
    } else {
      const { message, stack } = describeError(error);
      completer.fail({ ...run, outcome: 'failed', error: message, stack, permanent: error instanceof PermanentFailure });
    }
    this.dispatch();
    this.wake();
    if (this.running.size === 0) for (const resolve of this.idleWaiters.splice(0)) resolve();
  }

  /**
   * Forgets buffered jobs and aborts running ones whose lease this agent no longer holds. Only runs named
   * in `lost` are touched: a job claimed after the lease renewal began is not lost, just not renewed yet.
   */
  dropLost(lost: readonly LeaseRef[]): void {
    for (const ref of lost) {
      const buffered = this.buffer.findIndex((job) => job.id === ref.id && job.leaseEpoch === ref.leaseEpoch);
      if (buffered >= 0) this.buffer.splice(buffered, 1);
      const running = this.running.get(ref.id);
      if (running && running.job.leaseEpoch === ref.leaseEpoch) {
        this.abort(ref.id, new JobAbort('lease_lost', 'the lease was lost (cancelled or taken over)'));
      }
    }
  }

  /** Releases buffered jobs of a queue that was just paused. */
  async releaseQueue(queue: string): Promise<void> {
    const released = this.takeBuffered((job) => job.queue === queue);
    await jobReleaseMany(this.options.db, released);
  }

  private takeBuffered(match: (job: HeldJob) => boolean): HeldJob[] {
    const taken = this.buffer.filter(match);
    for (const job of taken) this.buffer.splice(this.buffer.indexOf(job), 1);
    return taken;
  }

  /**
   * Stops claiming and gives back buffered jobs at once; waits up to `graceMs` for running jobs, then
   * aborts the rest and releases them to pending.
   */
  async stop(graceMs: number): Promise<void> {
    this.stopped = true;
    await Promise.all(this.claims); // a claim in flight releases its own jobs once it sees the stop
    const buffered = this.takeBuffered(() => true);
    await jobReleaseMany(this.options.db, buffered).catch((error) =>
      this.options.logger.error('could not release buffered jobs; their leases will expire', { error: (error as Error).message }),
    );
    if (this.running.size > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        new Promise<void>((resolve) => this.idleWaiters.push(resolve)),
        new Promise<void>((resolve) => (timer = setTimeout(resolve, graceMs))),
      ]);
      clearTimeout(timer);
    }
    const leftover = [...this.running.values()].map(({ job }) => job);
    for (const job of leftover) this.abort(job.id, new JobAbort('shutdown', 'the agent is shutting down'));
    if (leftover.length > 0) {
      this.options.logger.warn('shutdown grace period over; releasing running jobs', { jobs: leftover.map((j) => j.id) });
      await jobReleaseMany(this.options.db, leftover);
    }
  }
}

/** A handler may throw anything; turn it into a message and maybe a stack. */
export function describeError(error: unknown): { message: string; stack?: string } {
  if (error instanceof Error) return { message: error.message || error.name, stack: error.stack };
  if (typeof error === 'string') return { message: error };
  try {
    return { message: `non-Error thrown: ${JSON.stringify(error)}` };
  } catch {
    return { message: `non-Error thrown: ${String(error)}` };
  }
}
