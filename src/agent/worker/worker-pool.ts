import type { SchemaDb } from '../../shared/db/sql.js';
import { jobClaimBatch, jobReleaseMany, leaseKey, type ClaimedJob, type LeaseRef } from '../../shared/db/queries/jobs-runs.js';
import type { Logger } from '../../shared/logger.js';
import { JobAbort } from './abort-reasons.js';
import { ClaimBuffer } from './claim-buffer.js';
import type { Completer, HeldRun } from './completer.js';
import { Deadlines } from './deadlines.js';
import { classifyThrown, describeThrown } from './thrown-value.js';
import type { Executor, JobContext, JobInfo } from './executors/executor.js';

const MAX_CLAIMS_IN_FLIGHT = 2;
/** How long buffered runs may start one after another before the event loop gets a turn (see dispatch). */
const DISPATCH_SLICE_MS = 20;
const CLAIM_FAILURE_LOG_MS = 30_000;

export interface WorkerPoolOptions {
  agentId: string;
  /** claims (the hot path's connections, which give up waiting for a row lock after a second) */
  db: SchemaDb;
  /**
   * gives jobs back: connections that wait for row locks, since a release that gave up would leave the jobs to
   * expire and lose an attempt without running
   */
  releaseDb: SchemaDb;
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
  settled: boolean;
}

function signalOf(entry: RunningJob): AbortSignal {
  if (!entry.controller) {
    entry.controller = new AbortController();
    if (entry.abortReason) entry.controller.abort(entry.abortReason);
  }
  return entry.controller.signal;
}

const RUN = Symbol('run');

/** One accessor for every context's signal: the controller is made only when a handler first reads it. */
const SIGNAL: PropertyDescriptor = {
  get(this: { [RUN]: RunningJob }) {
    return signalOf(this[RUN]);
  },
  enumerable: true,
};

/**
 * What a handler gets: job, signal, idempotencyKey and logger as own enumerable properties, so a handler may
 * spread or copy its context. Not an object literal with a getter: V8 makes that accessor anew for each object;
 * here one accessor is shared (with the job info, in a microbenchmark: about 200 bytes and 1 us a context against
 * 720 bytes and 6 us). The run itself sits under a symbol, out of spreads and JSON.
 */
class RunContext implements JobContext {
  readonly job: JobInfo;
  declare readonly signal: AbortSignal;
  readonly idempotencyKey: string;
  readonly logger: Logger;

  constructor(entry: RunningJob, logger: Logger) {
    Object.defineProperty(this, RUN, { value: entry });
    const { id, task, queue, priority, attempt, maxAttempts } = entry.job;
    this.job = { id, task, queue, priority, attempt, maxAttempts };
    Object.defineProperty(this, 'signal', SIGNAL);
    this.idempotencyKey = `wida-job-${id}`;
    this.logger = logger;
  }
}

/**
 * Claims jobs in batches and runs them with bounded concurrency. Claimed jobs wait in a small local
 * buffer; each runs with an AbortSignal that fires on timeout, cancellation, a lost lease or shutdown.
 */
export class WorkerPool {
  private readonly buffer = new ClaimBuffer<HeldJob>();
  private readonly running = new Map<number, RunningJob>();
  private readonly deadlines = new Deadlines<RunningJob>((entry) =>
    this.abort(entry.job.id, new JobAbort('timed_out', `timed out after ${entry.job.timeoutMs ?? this.options.defaultTimeoutMs} ms`)),
  );
  private readonly runningPerQueue = new Map<string, number>();
  private claimsInFlight = 0;
  /** claims failed since the last one logged (with the database down, two fail at every poll) */
  private claimFailures = { unlogged: 0, loggedAt: -Infinity };
  private reserved = 0;
  private wokenWhileBusy = false;
  private readonly claims = new Set<Promise<void>>();
  private stopped = false;
  private landingClaim = false;
  /** runs cancelled while a claim was in flight: that claim may bring them, and they must not start */
  private readonly cancelledWhileClaiming = new Set<string>();
  /** queues paused while a claim was in flight: what it brings of them is given back, not started */
  private readonly pausedWhileClaiming = new Set<string>();
  private idleWaiters: (() => void)[] = [];
  /** when the current run of dispatches without a turn of the event loop began (performance.now() ms) */
  private sliceStartedAt: number | undefined;
  private dispatchDeferred = false;
  private readonly tasks: string[] | null;
  private readonly hasQueueLimits: boolean;
  /** A Map, not the options' object: a queue named "constructor" or "toString" must not find Object's properties as its limit. */
  private readonly queueLimits: ReadonlyMap<string, number>;

  constructor(private readonly options: WorkerPoolOptions) {
    this.tasks = options.executor.tasks();
    this.queueLimits = new Map(Object.entries(options.queueConcurrency));
    this.hasQueueLimits = this.queueLimits.size > 0;
  }

  /** Resolves once the claims in flight now have landed (or failed), or after `ms`, whichever comes first. */
  async claimsLanded(ms: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const waited = new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)));
    await Promise.race([Promise.all(this.claims), waited]);
    clearTimeout(timer);
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
    const renewed = new Set(runs.map(leaseKey));
    for (const job of this.buffer) if (renewed.has(leaseKey(job))) job.leaseGrantedAt = at;
    for (const { job } of this.running.values()) if (renewed.has(leaseKey(job))) job.leaseGrantedAt = at;
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

  /** Logs a failed claim: the first at once, then one line (with how many failed meanwhile) at most every 30 s. */
  private claimFailed(error: Error): void {
    const now = performance.now();
    this.claimFailures.unlogged++;
    if (now - this.claimFailures.loggedAt < CLAIM_FAILURE_LOG_MS) return;
    this.options.logger.error('claiming jobs failed; will retry on the next poll', { error: error.message, failures: this.claimFailures.unlogged });
    this.claimFailures = { unlogged: 0, loggedAt: now };
  }

  /** Room for more jobs, counting those that claims in flight may bring. */
  private room(): number {
    return this.capacity() - this.running.size - this.buffer.size - this.reserved;
  }

  /**
   * Claim when a slot would otherwise sit idle, or when half the capacity is free: claiming on every
   * finished job would turn one claim of a thousand into a thousand claims of one.
   */
  private shouldClaim(): boolean {
    const room = this.room();
    if (room <= 0) return false;
    if (this.running.size + this.buffer.size + this.reserved < this.options.concurrency) return true;
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
      if (this.claimFailures.loggedAt > -Infinity) {
        this.options.logger.info('claiming jobs works again');
        this.claimFailures = { unlogged: 0, loggedAt: -Infinity };
      }
    } catch (error) {
      if (this.stopped) {
        // Shutdown gave up waiting for it and closed its connection, or the database failed it.
        this.options.logger.warn('a claim in flight at shutdown failed; jobs it took, if any, are rescued when their leases expire', {
          error: (error as Error).message,
        });
      } else {
        this.claimFailed(error as Error);
      }
    } finally {
      this.claimsInFlight--;
      this.reserved -= limit;
    }
    if (this.stopped) {
      await this.releaseOrLeave(jobs, 'jobs claimed during shutdown');
      return;
    }
    const claimed = jobs.length;
    if (this.cancelledWhileClaiming.size > 0) {
      jobs = jobs.filter((job) => !this.cancelledWhileClaiming.has(leaseKey(job)));
      // A claim sent after the cancel cannot bring the run: once none sent before it is left, forget them.
      if (this.claimsInFlight === 0) this.cancelledWhileClaiming.clear();
    }
    this.forgetEarlierRuns(jobs);
    for (const job of jobs) (job as HeldJob).leaseGrantedAt = askedAt;
    this.buffer.add(jobs as HeldJob[]);
    if (this.pausedWhileClaiming.size > 0) {
      for (const queue of this.pausedWhileClaiming) void this.releaseQueue(queue); // takes them from the buffer at once
      if (this.claimsInFlight === 0) this.pausedWhileClaiming.clear();
    }
    this.dispatch();
    // A full batch means more may be waiting; a wake-up that came meanwhile may have missed this claim's snapshot.
    const again = claimed === limit || this.wokenWhileBusy;
    this.wokenWhileBusy = false;
    if (again) this.wake();
  }

  /**
   * A job claimed again while this agent still has an earlier run of it: that run's lease expired (the agent
   * stalled, or a row lock held its renewal off) and the job was rescued. The earlier run is no longer ours:
   * it is aborted (or dropped from the buffer) before the new one is tracked, as the runs are kept by job id.
   */
  private forgetEarlierRuns(jobs: readonly ClaimedJob[]): void {
    if (jobs.length === 0) return;
    // One pass over the buffer per claim, not one per claimed job: this runs on every claim.
    if (this.buffer.size > 0) {
      const claimed = new Set(jobs.map((job) => job.id));
      if (this.buffer.some((held) => claimed.has(held.id))) this.buffer.take((held) => claimed.has(held.id));
    }
    // While the claim lands, an aborted run must not wake another claim: the room it would count does not
    // include this claim's jobs yet. The claim dispatches (and claims again if need be) once they are buffered.
    this.landingClaim = true;
    try {
      for (const job of jobs) {
        if (!this.running.has(job.id)) continue;
        if (this.abort(job.id, new JobAbort('lease_lost', 'the lease expired and the job was claimed again'))) {
          this.options.logger.warn('a job still running here was claimed again after its lease expired; the earlier run is aborted', { jobId: job.id });
        }
      }
    } finally {
      this.landingClaim = false;
    }
  }

  private dispatch(): void {
    // Stopping: buffered jobs go back, none starts (a run that settles while stop() waits for a claim would start one).
    if (this.stopped || this.dispatchDeferred) return;
    const { concurrency, leaseMs } = this.options;
    const expired: HeldJob[] = [];
    while (this.running.size < concurrency && this.buffer.size > 0) {
      const now = performance.now();
      if (this.sliceSpent(now)) {
        this.dispatchNextTurn();
        break;
      }
      const job = this.hasQueueLimits ? this.buffer.takeFirst(this.hasRoom) : this.buffer.takeNext();
      if (job === undefined) break;
      // Its lease ran out while it waited (a handler blocked the event loop for longer than a lease, or renewals could
      // not reach the database): started, it ran beside the run the rescuer gave to another agent.
      if (now - job.leaseGrantedAt >= leaseMs) expired.push(job);
      else this.start(job);
    }
    if (expired.length > 0) this.giveUpExpired(expired, []);
  }

  private readonly hasRoom = (job: HeldJob): boolean => {
    const limit = this.queueLimits.get(job.queue);
    return limit === undefined || (this.runningPerQueue.get(job.queue) ?? 0) < limit;
  };

  /**
   * True once runs have been starting for longer than a slice without a turn of the event loop. A handler that
   * returns without awaiting (CPU-bound work) runs inside start(), and settles in a microtask whose settle starts the
   * next buffered job: the whole buffer ran back to back, and timers and sockets (lease renewals, the leader's
   * self-check) waited for all of it.
   */
  private sliceSpent(now: number): boolean {
    if (this.sliceStartedAt === undefined) {
      this.sliceStartedAt = now;
      setImmediate(() => (this.sliceStartedAt = undefined));
      return false;
    }
    return now - this.sliceStartedAt > DISPATCH_SLICE_MS;
  }

  private dispatchNextTurn(): void {
    this.dispatchDeferred = true;
    setImmediate(() => {
      this.dispatchDeferred = false;
      this.dispatch();
    });
  }

  private start(job: HeldJob): void {
    const entry: RunningJob = { job, controller: undefined, abortReason: undefined, settled: false };
    this.running.set(job.id, entry);
    this.deadlines.set(entry, job.timeoutMs ?? this.options.defaultTimeoutMs);
    if (this.hasQueueLimits) this.runningPerQueue.set(job.queue, (this.runningPerQueue.get(job.queue) ?? 0) + 1);
    let execution: Promise<unknown>;
    try {
      execution = this.options.executor.execute(job.task, job.payload, new RunContext(entry, this.options.logger));
    } catch (error) {
      execution = Promise.reject(error);
    }
    execution
      .then(
        (result) => this.settle(entry, true, result),
        (error) => this.settle(entry, false, error),
      )
      // Not expected (settle handles any value), but an unhandled rejection here would end the agent.
      .catch((error) => this.options.logger.error('recording the outcome of a run failed', { jobId: job.id, error: describeThrown(error).message }));
  }

  /**
   * An operator cancelled this run (the database already says so): abort it if it runs, forget it if it waits in
   * the buffer, and drop it from a claim still in flight that brings it. A later run of the job (another epoch)
   * is left alone. Without an epoch (an older sender), any run of the job.
   */
  cancelRun(ref: { id: number; leaseEpoch?: number }, reason: JobAbort): void {
    const matches = (job: ClaimedJob) => job.id === ref.id && (ref.leaseEpoch === undefined || job.leaseEpoch === ref.leaseEpoch);
    const entry = this.running.get(ref.id);
    if (entry && matches(entry.job)) {
      this.abort(ref.id, reason);
      return;
    }
    if (this.buffer.take(matches).length > 0) {
      this.dispatch();
      this.wake();
      return;
    }
    if (this.claimsInFlight > 0 && ref.leaseEpoch !== undefined) this.cancelledWhileClaiming.add(leaseKey(ref as LeaseRef));
  }

  /** Fires a running job's signal and settles it at once: a handler that ignores its signal is abandoned. */
  abort(jobId: number, reason: JobAbort): boolean {
    const entry = this.running.get(jobId);
    if (!entry || entry.settled) return false;
    entry.abortReason = reason;
    entry.controller?.abort(reason);
    this.settle(entry, false, reason);
    return true;
  }

  /** `value` is the handler's result when `ok`, else what it threw (or why the run was aborted). */
  private settle(entry: RunningJob, ok: boolean, value: unknown): void {
    if (entry.settled) return;
    entry.settled = true;
    this.deadlines.delete(entry);
    const { job } = entry;
    if (this.running.get(job.id) === entry) this.running.delete(job.id);
    if (this.hasQueueLimits) this.runningPerQueue.set(job.queue, this.runningPerQueue.get(job.queue)! - 1);
    const { completer } = this.options;
    const run = { id: job.id, leaseEpoch: job.leaseEpoch, grantedAt: job.leaseGrantedAt };
    if (ok) {
      completer.complete(job.id, job.leaseEpoch, job.leaseGrantedAt, value);
    } else {
      const thrown = classifyThrown(value);
      if (thrown.kind === 'abort') {
        // Cancelled or lost jobs are no longer ours to record; shutdown releases them instead.
        if (thrown.abort.outcome === 'timed_out') completer.fail({ ...run, outcome: 'timed_out', error: thrown.abort.message });
      } else if (thrown.kind === 'snooze') {
        completer.fail({ ...run, outcome: 'snoozed', error: thrown.snooze.message, snoozeMs: thrown.snooze.delayMs });
      } else {
        completer.fail({ ...run, outcome: 'failed', error: thrown.message, stack: thrown.stack, permanent: thrown.permanent });
      }
    }
    if (!this.landingClaim) {
      this.dispatch();
      this.wake();
    }
    if (this.running.size === 0) for (const resolve of this.idleWaiters.splice(0)) resolve();
  }

  /**
   * Forgets buffered jobs and aborts running ones whose lease this agent no longer holds. Only runs named
   * in `lost` are touched: a job claimed after the lease renewal began is not lost, just not renewed yet.
   */
  dropLost(lost: readonly LeaseRef[]): void {
    if (this.buffer.size > 0) {
      const lostKeys = new Set(lost.map(leaseKey));
      this.buffer.take((job) => lostKeys.has(leaseKey(job)));
    }
    for (const ref of lost) {
      const running = this.running.get(ref.id);
      if (running && running.job.leaseEpoch === ref.leaseEpoch) {
        this.abort(ref.id, new JobAbort('lease_lost', 'the lease was lost (cancelled or taken over)'));
      }
    }
  }

  /**
   * Gives back buffered jobs and aborts running ones whose lease has run out by this agent's own clock: granted or last
   * renewed (counted from when the request was sent) a lease ago or more. The database's expiry is no earlier, so
   * these leases are gone whatever it would say; with the database out of reach no renewal says so, and handlers
   * ran on for as long as the partition lasted, beside the runs the rescuer had given to other agents.
   */
  dropExpired(now = performance.now()): void {
    const { leaseMs } = this.options;
    const buffered = this.buffer.size > 0 ? this.buffer.take((job) => now - job.leaseGrantedAt >= leaseMs) : [];
    const running: number[] = [];
    for (const { job, settled } of this.running.values()) if (!settled && now - job.leaseGrantedAt >= leaseMs) running.push(job.id);
    for (const id of running) this.abort(id, new JobAbort('lease_lost', `the lease ran out: not renewed for ${leaseMs} ms`));
    if (buffered.length + running.length > 0) this.giveUpExpired(buffered, running);
  }

  /**
   * Says what ran out, and gives back the jobs that never started: where the database answers (the renewals were
   * made but their answers were late, or the event loop was blocked), they go back to pending without losing an
   * attempt; a release of a lease already rescued or claimed again matches nothing (it names the run's epoch).
   */
  private giveUpExpired(buffered: HeldJob[], running: number[]): void {
    this.options.logger.warn('leases ran out before they could be renewed; handlers aborted, jobs not started given back', {
      ...(buffered.length > 0 ? { notStarted: buffered.map((job) => job.id) } : {}),
      ...(running.length > 0 ? { aborted: running } : {}),
    });
    if (buffered.length > 0) {
      jobReleaseMany(this.options.releaseDb, buffered).catch((error) =>
        this.options.logger.debug('could not give back jobs whose leases ran out; the rescuer will', { error: (error as Error).message }),
      );
    }
    this.wake(); // their slots are free
  }

  /** Releases buffered jobs of a queue that was just paused. */
  async releaseQueue(queue: string): Promise<void> {
    // A claim in flight may have read the queue before the pause committed: its jobs are given back as it lands.
    if (this.claimsInFlight > 0) this.pausedWhileClaiming.add(queue);
    const released = this.buffer.take((job) => job.queue === queue);
    if (released.length === 0) return;
    try {
      await jobReleaseMany(this.options.releaseDb, released);
    } catch (error) {
      const fields = { queue, jobs: released.map((job) => job.id), error: (error as Error).message };
      if (this.stopped) {
        // Shutdown already gave back what it held: these are left to their leases.
        this.options.logger.error('could not give back the jobs of a paused queue; their leases will expire', fields);
        return;
      }
      // Still ours: back into the buffer, so their leases are renewed and they run (they were claimed before the
      // pause). Dropped, they would wait out their leases and lose an attempt without running.
      this.options.logger.warn('could not give back the jobs of a paused queue; running them', fields);
      this.buffer.add(released);
      this.dispatch();
    }
  }

  /** Gives jobs back at shutdown; if that fails they are left to their leases, which is said once. */
  private async releaseOrLeave(jobs: readonly LeaseRef[], what: string): Promise<void> {
    if (jobs.length === 0) return;
    await jobReleaseMany(this.options.releaseDb, jobs).catch((error) =>
      this.options.logger.error(`could not release ${what}; their leases will expire`, { error: (error as Error).message }),
    );
  }

  /**
   * Stops claiming and gives back buffered jobs at once; waits up to `graceMs` for running jobs, then
   * aborts the rest and releases them to pending.
   */
  async stop(graceMs: number): Promise<void> {
    this.stopped = true;
    // The grace period runs from now, whatever the database does: running handlers are aborted when it ends
    // even if a claim in flight or the release below hangs on a silent connection.
    let timer: NodeJS.Timeout | undefined;
    const graceOver = new Promise<void>((resolve) => (timer = setTimeout(resolve, graceMs)));
    await Promise.race([Promise.all(this.claims), graceOver]); // a claim in flight releases its own jobs once it sees the stop
    const buffered = this.buffer.take(() => true);
    const releasingBuffered = this.releaseOrLeave(buffered, 'buffered jobs');
    if (this.running.size > 0) await Promise.race([new Promise<void>((resolve) => this.idleWaiters.push(resolve)), graceOver]);
    clearTimeout(timer);
    const leftover = [...this.running.values()].map(({ job }) => job);
    for (const job of leftover) this.abort(job.id, new JobAbort('shutdown', 'the agent is shutting down'));
    if (leftover.length > 0) {
      this.options.logger.warn('shutdown grace period over; releasing running jobs', { jobs: leftover.map((j) => j.id) });
      await this.releaseOrLeave(leftover, 'running jobs');
    }
    await releasingBuffered;
  }
}
