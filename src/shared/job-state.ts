/**
 * The job states and the transitions between them. docs/state-machine.md draws the same graph;
 * change both together.
 */
export const JOB_STATES = ['waiting', 'pending', 'running', 'completed', 'dead', 'cancelled'] as const;
export type JobState = (typeof JOB_STATES)[number];

export const FINAL_STATES: readonly JobState[] = ['completed', 'dead', 'cancelled'];

/**
 * Allowed transitions: from -> the states it may move to, and why. Retry and replay re-check a job's
 * dependencies, so each may leave the job waiting instead of pending.
 */
export const TRANSITIONS: Readonly<Record<JobState, readonly JobState[]>> = {
  waiting: ['pending', 'cancelled'], // dependencies met / cancelled
  pending: ['running', 'waiting', 'cancelled'], // claimed / retry with a dependency not completed / cancelled
  running: ['completed', 'pending', 'dead', 'cancelled'], // done / retry, snooze, release / attempts exhausted / cancelled
  completed: [],
  dead: ['pending', 'waiting'], // replay or retry: dependencies completed / one not completed
  cancelled: ['pending', 'waiting'], // retry: dependencies completed / one not completed
};

/** Operator actions and the states each applies to. The SQL of each action checks the same lists. */
export const ACTION_STATES = {
  retry: ['pending', 'dead', 'cancelled'],
  cancel: ['waiting', 'pending', 'running'],
  drop: ['waiting', 'pending', 'completed', 'dead', 'cancelled'],
  replay: ['dead'],
} as const satisfies Record<string, readonly JobState[]>;

export type JobAction = keyof typeof ACTION_STATES;

export function canTransition(from: JobState, to: JobState): boolean {
  return TRANSITIONS[from].includes(to);
}

export function isJobState(value: string): value is JobState {
  return (JOB_STATES as readonly string[]).includes(value);
}

export const PRIORITIES = ['low', 'normal', 'high', 'critical'] as const;
export type Priority = (typeof PRIORITIES)[number];

export function priorityToNumber(priority: Priority): number {
  return PRIORITIES.indexOf(priority);
}

export function priorityFromNumber(value: number): Priority {
  return PRIORITIES[value] ?? 'normal';
}
