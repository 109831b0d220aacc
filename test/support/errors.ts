import { expect } from 'vitest';
import { ConfigError } from '../../src/shared/errors.js';

/** The ConfigError `work` throws; fails the test if it throws something else or nothing. */
export function configErrorFrom(work: () => unknown): ConfigError {
  try {
    work();
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error('expected a ConfigError, but nothing was thrown');
}
