import { createInterface } from 'node:readline/promises';
import { RefusedError } from './context.js';

/**
 * Asks a yes/no question on the terminal. `--yes` answers for the operator; without a terminal and
 * without `--yes` the action is refused, so a script never deletes things by accident.
 */
export async function confirm(question: string, assumeYes: boolean | undefined): Promise<boolean> {
  if (assumeYes) return true;
  if (!process.stdin.isTTY || !process.stderr.isTTY) {
    throw new RefusedError(`${question.replace(/\?$/, '')} needs confirmation, and there is no terminal to ask; add --yes to confirm`);
  }
  const prompt = createInterface({ input: process.stdin, output: process.stderr });
  try {
    const answer = await prompt.question(`${question} [y/N] `);
    return /^y(es)?$/i.test(answer.trim());
  } finally {
    prompt.close();
  }
}
