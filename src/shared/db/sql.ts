import { createHash } from 'node:crypto';
import type pg from 'pg';
import { ConfigError } from '../errors.js';
import { withTimeout } from '../with-timeout.js';

/** Anything that runs a query: a pool, a checked-out client, or the caller's own transaction client. */
export interface Queryable {
  query<R extends pg.QueryResultRow = any>(config: pg.QueryConfig): Promise<pg.QueryResult<R>>;
}

/** A statement written once with `@.` standing for the schema, e.g. `SELECT * FROM @.jobs`. */
export interface Statement {
  readonly name: string;
  readonly text: string;
}

export function statement(name: string, text: string): Statement {
  return { name, text };
}

const MAX_IDENTIFIER_BYTES = 63;
/** within(): past the statement's own bound, how long a wait for a pool connection may add */
const CHECKOUT_GRACE_MS = 100;

// Leaves room for suffixes such as `_jobs` in channel names within PostgreSQL's 63-byte identifier limit.
const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,46}$/;

export function validateSchemaName(name: string): string {
  // PostgreSQL reserves pg_ names (CREATE SCHEMA refuses them), and information_schema is its own catalog.
  if (name.startsWith('pg_') || name === 'information_schema') {
    throw new ConfigError(`WIDA_SCHEMA "${name}" is a name PostgreSQL keeps for itself; choose another (names starting with pg_, and information_schema, are reserved)`);
  }
  if (!SCHEMA_NAME.test(name)) {
    throw new ConfigError(
      `WIDA_SCHEMA "${name}" is not a valid schema name; expected lowercase letters, digits and _ ` +
        '(starting with a letter or _), at most 47 characters',
    );
  }
  return name;
}

/**
 * A queryable bound to a Wida schema. Statements are prepared once per connection under a name that
 * includes the schema, so the same process can talk to two schemas.
 */
export class SchemaDb {
  constructor(
    readonly queryable: Queryable,
    readonly schema: string,
    private readonly texts = new Map<Statement, string>(),
    private readonly names = new Map<Statement, string>(),
  ) {
    validateSchemaName(schema);
  }

  /** The same schema through another queryable: a transaction client, say. */
  on(queryable: Queryable): SchemaDb {
    return new SchemaDb(queryable, this.schema, this.texts, this.names);
  }

  /**
   * The same schema, each statement given up after `ms` without an answer. From a pool, the connection it ran on is
   * then dropped, so the next statement opens a fresh one instead of waiting on one gone silent. The wait for a
   * connection counts too (pg's query_timeout starts only once one is handed out): a pool whose connections are
   * all busy answers within the bound as well, with "no answer within N ms", and the statement runs when one
   * comes free, its answer unread.
   */
  within(ms: number): SchemaDb {
    const queryable = this.queryable;
    const bound = Math.round(ms);
    return this.on({
      query: (config) => withTimeout(queryable.query({ ...config, query_timeout: bound } as pg.QueryConfig), bound + CHECKOUT_GRACE_MS),
    });
  }

  async rows<R extends pg.QueryResultRow = any>(stmt: Statement, values: unknown[] = []): Promise<R[]> {
    const result = await this.queryable.query<R>({ name: this.preparedName(stmt), text: this.text(stmt), values });
    return result.rows;
  }

  /**
   * The rows as arrays of values in select-list order. For the hot path: pg makes each keyed row by spreading a
   * null-prototype object, a dictionary-mode object of a few hundred bytes per row.
   */
  async arrays(stmt: Statement, values: unknown[] = []): Promise<unknown[][]> {
    const config: pg.QueryArrayConfig = { name: this.preparedName(stmt), text: this.text(stmt), values, rowMode: 'array' };
    const result = await this.queryable.query(config);
    return result.rows as unknown as unknown[][];
  }

  async rowCount(stmt: Statement, values: unknown[] = []): Promise<number> {
    const result = await this.queryable.query({ name: this.preparedName(stmt), text: this.text(stmt), values });
    return result.rowCount ?? 0;
  }

  /**
   * The prepared statement's name on the server, which cuts names at 63 bytes: with a long schema name,
   * `job_insert_one` and `job_insert_many_3` would both become `wida_<schema>_job_insert` and the second
   * would fail as already existing. Names that would be cut are replaced by a hash of the whole name.
   */
  private preparedName(stmt: Statement): string {
    let name = this.names.get(stmt);
    if (name === undefined) {
      name = `wida_${this.schema}_${stmt.name}`;
      if (Buffer.byteLength(name) > MAX_IDENTIFIER_BYTES) name = `wida_${createHash('sha256').update(name).digest('hex').slice(0, 40)}`;
      this.names.set(stmt, name);
    }
    return name;
  }

  /** Notification channel names are per schema, so two Wida installations in one database stay apart. */
  channel(kind: 'jobs' | 'control'): string {
    return `${this.schema}_${kind}`;
  }

  private text(stmt: Statement): string {
    let text = this.texts.get(stmt);
    if (text === undefined) {
      text = stmt.text.replaceAll('@.', `"${this.schema}".`).replaceAll('@channel_', `${this.schema}_`);
      this.texts.set(stmt, text);
    }
    return text;
  }
}
