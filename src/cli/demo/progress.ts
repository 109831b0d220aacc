/** The demo's live view: counts by state per queue, redrawn in place on a terminal, one line per tick otherwise. */
import type { QueueSummary } from '../../shared/admin.js';
import { JOB_STATES } from '../../shared/job-state.js';

const SHOWN_STATES = JOB_STATES.filter((state) => state !== 'waiting');

export function totals(queues: readonly QueueSummary[]): Record<string, number> {
  const sum: Record<string, number> = Object.fromEntries(SHOWN_STATES.map((state) => [state, 0]));
  for (const queue of queues) for (const state of SHOWN_STATES) sum[state] += queue.counts[state] ?? 0;
  return sum;
}

function countsText(counts: Record<string, number>): string {
  return SHOWN_STATES.map((state) => `${state} ${counts[state] ?? 0}`).join(', ');
}

/** The block a terminal shows: one row per queue and a total. */
export function progressTable(queues: readonly QueueSummary[], elapsedMs: number): string[] {
  const name = Math.max(5, ...queues.map((queue) => queue.name.length));
  const header = `${'QUEUE'.padEnd(name)}  ${SHOWN_STATES.map((state) => state.toUpperCase().padStart(9)).join(' ')}`;
  const row = (label: string, counts: Record<string, number>) =>
    `${label.padEnd(name)}  ${SHOWN_STATES.map((state) => String(counts[state] ?? 0).padStart(9)).join(' ')}`;
  return [
    `wida demo: ${Math.round(elapsedMs / 1000)}s; Ctrl-C stops enqueueing, drains the agent and exits`,
    header,
    ...queues.map((queue) => row(queue.name, queue.counts)),
    row('total', totals(queues)),
  ];
}

/** Writes progress: in place on a terminal, as one line per tick into a pipe or a log. */
export class ProgressPrinter {
  private linesOnScreen = 0;
  constructor(private readonly out: NodeJS.WriteStream = process.stdout) {}

  show(queues: readonly QueueSummary[], elapsedMs: number): void {
    if (!this.out.isTTY) {
      this.out.write(`[${Math.round(elapsedMs / 1000)}s] total: ${countsText(totals(queues))}\n`);
      return;
    }
    const lines = progressTable(queues, elapsedMs);
    const up = this.linesOnScreen > 0 ? `\x1b[${this.linesOnScreen}A\x1b[J` : '';
    this.out.write(`${up}${lines.join('\n')}\n`);
    this.linesOnScreen = lines.length;
  }

  /** The final counts, printed once after the drain, whatever the output is. */
  summary(queues: readonly QueueSummary[]): string {
    return `final: ${countsText(totals(queues))}`;
  }
}
