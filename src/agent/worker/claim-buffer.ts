import { compareClaimOrder, type ClaimedJob } from '../../shared/db/queries/jobs-runs.js';

/**
 * Claimed jobs not yet started, in claim order. Stored last-first, so taking the next job is a pop: taking it
 * from the front of an array moved the whole buffer (a thousand entries) once per started job, 0.8 us each in a
 * profile of the bench. Adding a batch rebuilds the array, once per claim.
 */
export class ClaimBuffer<J extends ClaimedJob> {
  /** the next job to start is the last element */
  private reversed: J[] = [];

  get size(): number {
    return this.reversed.length;
  }

  /**
   * Adds a batch that is in claim order. Two claims in flight skip each other's locked rows, so a batch may hold
   * jobs that come before some already buffered (and may land first): the buffer stays in claim order.
   */
  add(jobs: readonly J[]): void {
    if (jobs.length === 0) return;
    const incoming = jobs.slice().reverse();
    const lastBuffered = this.reversed[0];
    if (lastBuffered === undefined || compareClaimOrder(jobs[0], lastBuffered) >= 0) {
      this.reversed = incoming.concat(this.reversed);
    } else {
      this.reversed = this.reversed.concat(incoming).sort((a, b) => compareClaimOrder(b, a));
    }
  }

  /** Takes the next job in claim order. */
  takeNext(): J | undefined {
    return this.reversed.pop();
  }

  /** Takes the first job, in claim order, that `startable` accepts. */
  takeFirst(startable: (job: J) => boolean): J | undefined {
    for (let i = this.reversed.length - 1; i >= 0; i--) {
      if (startable(this.reversed[i])) return this.reversed.splice(i, 1)[0];
    }
    return undefined;
  }

  /** Takes every job that `match` accepts, in claim order. */
  take(match: (job: J) => boolean): J[] {
    const taken: J[] = [];
    const kept: J[] = [];
    for (let i = this.reversed.length - 1; i >= 0; i--) (match(this.reversed[i]) ? taken : kept).push(this.reversed[i]);
    if (taken.length > 0) this.reversed = kept.reverse();
    return taken;
  }

  some(match: (job: J) => boolean): boolean {
    return this.reversed.some(match);
  }

  [Symbol.iterator](): Iterator<J> {
    return this.reversed[Symbol.iterator]();
  }
}
