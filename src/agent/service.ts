/** A background loop of the agent with a start and a stop; agent.ts composes them. */
export interface Service {
  readonly name: string;
  start(): void | Promise<void>;
  stop(): Promise<void>;
}

/** Runs `tick` every `intervalMs`, never two at once, and waits for the running tick on stop. */
export class IntervalService implements Service {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;

  constructor(
    readonly name: string,
    private readonly intervalMs: number,
    private readonly tick: () => Promise<void>,
    private readonly onError: (error: unknown) => void,
    /** the first tick runs this long after start (default at once) */
    private readonly firstDelayMs = 0,
  ) {}

  start(): void {
    this.schedule(this.firstDelayMs);
  }

  /** Runs a tick now instead of waiting for the interval. */
  trigger(): void {
    if (this.stopped || this.running) return;
    clearTimeout(this.timer);
    this.schedule(0);
  }

  private schedule(delay: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.running = this.tick()
        .catch(this.onError)
        .finally(() => {
          this.running = undefined;
          this.schedule(this.intervalMs);
        });
    }, delay);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
  }
}
