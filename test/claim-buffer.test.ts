import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it, vi } from 'vitest';
import { ClaimBuffer } from '../src/agent/worker/claim-buffer.js';
import { Deadlines } from '../src/agent/worker/deadlines.js';
import type { ClaimedJob } from '../src/shared/db/queries/jobs-runs.js';

function job(id: number, priority = 1, queue = 'default'): ClaimedJob {
  return { id, queue, task: 't', payload: null, priority, attempt: 1, maxAttempts: 5, leaseEpoch: 1, timeoutMs: null, runAtMicros: 0 };
}

function drain(buffer: ClaimBuffer<ClaimedJob>): number[] {
  const ids: number[] = [];
  for (let next = buffer.takeNext(); next !== undefined; next = buffer.takeNext()) ids.push(next.id);
  return ids;
}

describe('the claim buffer', () => {
  it('hands jobs out in claim order, batch after batch', () => {
    const buffer = new ClaimBuffer<ClaimedJob>();
    buffer.add([job(1), job(2)]);
    buffer.add([job(3), job(4)]);
    expect(buffer.takeNext()?.id).toBe(1);
    buffer.add([job(5)]);
    expect(buffer.size).toBe(4);
    expect(drain(buffer)).toEqual([2, 3, 4, 5]);
    expect(buffer.takeNext()).toBeUndefined();
  });

  it('merges a batch that comes before jobs already buffered (a later claim that landed first)', () => {
    const buffer = new ClaimBuffer<ClaimedJob>();
    buffer.add([job(4), job(5)]);
    buffer.add([job(1), job(6), job(7, 3)]);
    expect(drain(buffer)).toEqual([7, 1, 4, 5, 6]);
  });

  it('takes the first startable job, and every matching job, in claim order', () => {
    const buffer = new ClaimBuffer<ClaimedJob>();
    buffer.add([job(1, 1, 'a'), job(2, 1, 'b'), job(3, 1, 'a'), job(4, 1, 'b')]);
    expect(buffer.takeFirst((j) => j.queue === 'b')?.id).toBe(2);
    expect(buffer.takeFirst((j) => j.queue === 'c')).toBeUndefined();
    expect(buffer.take((j) => j.queue === 'a').map((j) => j.id)).toEqual([1, 3]);
    expect(buffer.some((j) => j.id === 4)).toBe(true);
    expect([...buffer].map((j) => j.id)).toEqual([4]);
  });
});

describe('one timer for many deadlines', () => {
  it('calls back for each deadline that passes, earliest first, and never for one deleted', () => {
    // On a clock that moves only when told (setTimeout and performance.now both): with the real one, a process stalled
    // past all three deadlines (a loaded machine) saw them pass at once, and a timer then calls them back in the order set.
    vi.useFakeTimers();
    try {
      const expired: string[] = [];
      const deadlines = new Deadlines<string>((key) => expired.push(key));
      deadlines.set('late', 60);
      deadlines.set('early', 10);
      deadlines.set('deleted', 5);
      deadlines.set('middle', 30);
      deadlines.delete('deleted');
      vi.advanceTimersByTime(20);
      expect(expired).toEqual(['early']);
      vi.advanceTimersByTime(100);
      expect(expired).toEqual(['early', 'middle', 'late']);
    } finally {
      vi.useRealTimers();
    }
  });

  it('arms again for a deadline set from inside the callback', async () => {
    const expired: number[] = [];
    let allDone!: () => void;
    const done = new Promise<void>((resolve) => (allDone = resolve));
    const deadlines = new Deadlines<number>((key) => {
      expired.push(key);
      if (key < 3) deadlines.set(key + 1, 5);
      else allDone();
    });
    deadlines.set(1, 5);
    await done;
    expect(expired).toEqual([1, 2, 3]);
  });

  // In a process of its own (the built module), with nothing else to keep it alive.
  const deadlinesModule = fileURLToPath(new URL('../dist/agent/worker/deadlines.js', import.meta.url));
  const runAlone = (script: string) =>
    promisify(execFile)(process.execPath, ['--input-type=module', '-e', `const { Deadlines } = await import(${JSON.stringify(deadlinesModule)});\n${script}`], { timeout: 20_000 });

  it('holds the process open while a deadline is pending, as a timer per run did', async () => {
    const { stdout } = await runAlone(`const d = new Deadlines((key) => console.log('expired', key)); d.set('a', 100); d.set('b', 20); d.delete('b');`);
    expect(stdout.trim()).toBe('expired a');
  });

  it('lets the process exit once no deadline is pending', async () => {
    // Were the timer still holding the process, this would run for a minute and be killed by the 20 s timeout.
    const { stdout } = await runAlone(`const d = new Deadlines(() => console.log('expired')); d.set('a', 60_000); d.delete('a'); console.log('done');`);
    expect(stdout.trim()).toBe('done');
  });
});

