import type { Logger } from '../../../shared/logger.js';

/** What a handler sees of the job it runs. */
export interface JobInfo {
  id: number;
  task: string;
  queue: string;
  priority: number;
  /** 1 on the first run */
  attempt: number;
  maxAttempts: number;
}

export interface JobContext {
  job: JobInfo;
  /** fires on timeout, cancellation, a lost lease or shutdown; `signal.reason` says which */
  signal: AbortSignal;
  /**
   * Stable across every attempt of this job: use it to make side effects safe to repeat
   * (execution is at least once).
   */
  idempotencyKey: string;
  logger: Logger;
}

export type Handler = (payload: any, context: JobContext) => unknown;
export type Handlers = Record<string, Handler>;

/** Runs a job; resolves with its result or rejects with why it failed. */
export interface Executor {
  execute(task: string, payload: unknown, context: JobContext): Promise<unknown>;
  /** the tasks this executor can run, so the agent claims only those */
  tasks(): string[];
}

/** Runs TypeScript/JavaScript functions in this process. */
export class InProcessExecutor implements Executor {
  constructor(private readonly handlers: Handlers) {
    for (const [task, handler] of Object.entries(handlers)) {
      if (typeof handler !== 'function') throw new TypeError(`handler for task "${task}" must be a function; got ${typeof handler}`);
    }
  }

  tasks(): string[] {
    return Object.keys(this.handlers);
  }

  async execute(task: string, payload: unknown, context: JobContext): Promise<unknown> {
    return this.handlers[task](payload, context);
  }
}
