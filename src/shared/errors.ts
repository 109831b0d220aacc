/** Every error Wida throws on purpose carries a stable `code`, so callers can branch without parsing text. */
export class WidaError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

export class ConfigError extends WidaError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('CONFIG_INVALID', message, options);
  }
}

/** Input to the client API or CLI that does not fit: `field` names what was wrong. */
export class ValidationError extends WidaError {
  constructor(readonly field: string, message: string) {
    super('VALIDATION_FAILED', message);
  }
}

/**
 * A dependency the database refuses (it does not exist, or it is cancelled): well-formed input that the state of the
 * jobs rules out. Still a ValidationError (code VALIDATION_FAILED, field `dependsOn`) for callers; the CLI exits 1 on
 * it, as on any refusal, rather than 2 for bad usage.
 */
export class DependencyRefusedError extends ValidationError {
  constructor(message: string) {
    super('dependsOn', message);
  }
}

/**
 * The caller's transaction (REPEATABLE READ or SERIALIZABLE) cannot see what it would have to return: code `40001`,
 * PostgreSQL's own for a serialization failure, so a loop that retries those retries this too.
 */
export class SerializationFailureError extends WidaError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('40001', message, options);
  }
}

export class JobNotFoundError extends WidaError {
  constructor(readonly jobId: number) {
    super('JOB_NOT_FOUND', `job ${jobId} does not exist (it may have been deleted by retention or dropped)`);
  }
}

export class InvalidJobStateError extends WidaError {
  constructor(
    readonly jobId: number,
    readonly state: string,
    readonly action: string,
    readonly allowedStates: readonly string[],
  ) {
    super(
      'JOB_STATE_INVALID',
      `job ${jobId} is ${state}; only ${listWords(allowedStates)} jobs can be ${pastTense(action)}`,
    );
  }
}

export class MigrationError extends WidaError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('MIGRATION_FAILED', message, options);
  }
}

export class SchemaTooNewError extends WidaError {
  constructor(readonly databaseVersion: number, readonly knownVersion: number) {
    super(
      'SCHEMA_TOO_NEW',
      `the database schema is at migration ${databaseVersion}, but this Wida knows migrations up to ${knownVersion}; ` +
        'use the newer Wida, or upgrade this one (or migrate the database down with the newer version) first',
    );
  }
}

/**
 * An applied migration whose recorded name is not this build's migration of the same version: the schema was
 * migrated by a fork or another branch, so its tables may not be what this build's queries and down scripts expect.
 */
export class MigrationMismatchError extends WidaError {
  constructor(
    readonly schema: string,
    readonly version: number,
    readonly databaseName: string,
    readonly buildName: string,
  ) {
    const revert = version === 1 ? 'revert all its migrations' : `revert the schema to migration ${version - 1}`;
    super(
      'MIGRATION_MISMATCH',
      `the database records migration ${version} as '${databaseName}' but this Wida's migration ${version} is '${buildName}': ` +
        `schema "${schema}" was migrated by a different build of Wida (a fork or another branch); use that build, or with it ` +
        `${revert} (\`wida migrate down\`, which may delete data) and then run \`wida migrate\` with this one, ` +
        'or give this Wida a schema of its own (WIDA_SCHEMA)',
    );
  }
}

export class DatabaseUnavailableError extends WidaError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('DATABASE_UNAVAILABLE', message, options);
  }
}

function listWords(words: readonly string[]): string {
  if (words.length <= 1) return words.join('');
  return `${words.slice(0, -1).join(', ')} or ${words[words.length - 1]}`;
}

function pastTense(action: string): string {
  const irregular: Record<string, string> = { cancel: 'cancelled', drop: 'dropped', retry: 'retried', replay: 'replayed', purge: 'purged' };
  return irregular[action] ?? (action.endsWith('e') ? `${action}d` : `${action}ed`);
}

/** SQLSTATE checks in one place. */
export function isUniqueViolation(error: unknown): boolean {
  return sqlState(error) === '23505';
}

export function isUndefinedTable(error: unknown): boolean {
  return sqlState(error) === '42P01';
}

export function sqlState(error: unknown): string | undefined {
  return typeof error === 'object' && error !== null && 'code' in error && typeof error.code === 'string'
    ? error.code
    : undefined;
}

/** PostgreSQL broke a deadlock by failing this transaction's statement. */
export function isDeadlock(error: unknown): boolean {
  return sqlState(error) === '40P01';
}

/** A statement gave up waiting for a lock (lock_timeout): another transaction holds the row or table. */
export function isLockTimeout(error: unknown): boolean {
  return sqlState(error) === '55P03';
}

/**
 * The server cancelled the statement: a statement_timeout (say, while it waited for a row lock), or an operator's
 * pg_cancel_backend. Nothing is wrong with what it would store.
 */
export function isStatementCancelled(error: unknown): boolean {
  return sqlState(error) === '57014';
}

/**
 * A failure that may pass if the statement is tried again: a lost or refused connection, a server
 * shutting down, a serialization failure or deadlock, insufficient resources. A data or constraint
 * error (classes 22, 23, ...) will fail the same way every time. A cancelled statement (57014, a statement_timeout)
 * is not counted as passing: one that keeps timing out would hold every other outcome of its batch back for good
 * (the completer splits the batch and holds back the run that meets it, as for a lock timeout).
 */
export function isTransientDatabaseError(error: unknown): boolean {
  const code = sqlState(error);
  if (code === undefined || !/^[0-9A-Z]{5}$/.test(code)) return true; // socket errors (ECONNRESET, ...) and the like
  return code.startsWith('08') || code.startsWith('53') || code.startsWith('57P') || code === '40001' || code === '40P01';
}

export class CronScheduleNotFoundError extends WidaError {
  constructor(readonly scheduleName: string) {
    super('CRON_SCHEDULE_NOT_FOUND', `cron schedule "${scheduleName}" does not exist; \`wida cron list\` shows the schedules`);
  }
}

/** A workflow whose dependencies go round in a circle; `path` is the cycle, first node repeated at the end. */
export class CycleDetectedError extends WidaError {
  constructor(readonly path: readonly string[]) {
    super('CYCLE_DETECTED', `the workflow's dependencies form a cycle: ${path.join(' -> ')}; remove one of these dependencies`);
  }
}

export class WorkflowNotFoundError extends WidaError {
  constructor(readonly workflowId: number) {
    super('WORKFLOW_NOT_FOUND', `workflow ${workflowId} does not exist`);
  }
}
