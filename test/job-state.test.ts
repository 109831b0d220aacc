/** The state machine: TRANSITIONS and docs/state-machine.md draw the same graph (pure, no database). */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ACTION_STATES, JOB_STATES, TRANSITIONS, canTransition, isJobState } from '../src/shared/job-state.js';

/** The "| from | to | how |" rows of the document's transition table, as "from -> to". */
function documentedTransitions(): string[] {
  const text = readFileSync(new URL('../docs/state-machine.md', import.meta.url), 'utf8');
  return text
    .split('\n')
    .map((line) => /^\|\s*(\w+)\s*\|\s*(\w+)\s*\|/.exec(line))
    .filter((match): match is RegExpExecArray => match !== null && isJobState(match[1]) && isJobState(match[2]))
    .map((match) => `${match[1]} -> ${match[2]}`);
}

describe('TRANSITIONS', () => {
  it('lists the same moves between states as the table in docs/state-machine.md (a state kept, such as a retry of a pending job, is a row there only)', () => {
    const table = JOB_STATES.flatMap((from) => TRANSITIONS[from].map((to) => `${from} -> ${to}`));
    const documented = documentedTransitions().filter((move) => move.split(' -> ')[0] !== move.split(' -> ')[1]);
    expect(new Set(documented).size).toBe(documented.length);
    expect([...documented].sort()).toEqual([...table].sort());
  });

  it('retry and replay may leave a job waiting for its dependencies, from every state they apply to', () => {
    for (const from of new Set([...ACTION_STATES.retry, ...ACTION_STATES.replay])) expect(canTransition(from, 'waiting')).toBe(true);
    expect(canTransition('completed', 'waiting')).toBe(false);
    expect(canTransition('waiting', 'running')).toBe(false);
  });
});
