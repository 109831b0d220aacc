const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * One timer for the deadlines of many runs, armed for the earliest. A timer per run cost a Timeout object and
 * its list bookkeeping on every job (about 0.8 us and 200 bytes each); most runs end long before their
 * deadline, so this timer fires about once per timeout period and then looks at the running jobs only. It
 * stays armed when the last run ends (the pool runs dry once per claim under load, and re-arming each time
 * showed in profiles), and holds the process open only while some run has a deadline, as a timer per run did.
 */
export class Deadlines<K> {
  /** key -> deadline (performance.now() ms) */
  private readonly due = new Map<K, number>();
  private timer: NodeJS.Timeout | undefined;
  private armedFor = Infinity;

  constructor(private readonly expired: (key: K) => void) {}

  set(key: K, afterMs: number): void {
    const at = performance.now() + afterMs;
    this.due.set(key, at);
    if (at < this.armedFor) this.arm(at);
    else if (this.due.size === 1) this.timer?.ref();
  }

  delete(key: K): void {
    this.due.delete(key);
    if (this.due.size === 0) this.timer?.unref();
  }

  private arm(at: number): void {
    clearTimeout(this.timer);
    this.armedFor = at;
    // setTimeout turns anything above 2^31-1 ms into 1 ms; the timer then fires early and is armed again.
    this.timer = setTimeout(() => this.fire(), Math.min(Math.max(1, Math.ceil(at - performance.now())), MAX_TIMER_MS));
  }

  private fire(): void {
    this.timer = undefined;
    this.armedFor = Infinity;
    const now = performance.now();
    const passed: K[] = [];
    let next = Infinity;
    for (const [key, at] of this.due) {
      if (at <= now) passed.push(key);
      else if (at < next) next = at;
    }
    for (const key of passed) this.due.delete(key);
    if (next < this.armedFor) this.arm(next);
    // Last: an expired run settles, and the job started in its place may arm the timer itself.
    for (const key of passed) this.expired(key);
  }
}
