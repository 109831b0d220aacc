import type { Argv } from 'yargs';
import { embeddedDatabaseStatus, ensureEmbeddedDatabase, stopEmbeddedDatabase } from '../../shared/db/embedded.js';
import { checkConnection, createPool, redactUrl } from '../../shared/db/pool.js';
import { WidaError } from '../../shared/errors.js';
import { RefusedError, configFromFlags, widaHome, type CommonFlags } from '../context.js';
import { print, printJson } from '../format.js';

export function dbCommand(yargs: Argv<CommonFlags>) {
  return yargs.command('db', 'the database in use: status, and start or stop the embedded one', (y) =>
    y
      .command(
        'status',
        'say which database Wida uses and whether it answers',
        (status) => status.example('$0 db status', 'the configured or the embedded database').example('$0 db status --json', 'as JSON'),
        async (argv) => {
          const config = configFromFlags(argv);
          if (config.WIDA_DATABASE_URL) {
            const reachable = await answers(config.WIDA_DATABASE_URL);
            const url = redactUrl(config.WIDA_DATABASE_URL);
            if (reachable !== true) process.exitCode = 1;
            if (argv.json) return printJson({ source: 'WIDA_DATABASE_URL', url, schema: config.WIDA_SCHEMA, reachable: reachable === true, error: reachable === true ? undefined : reachable });
            print(`database: ${url} (from WIDA_DATABASE_URL or --database-url), schema "${config.WIDA_SCHEMA}"`);
            print(reachable === true ? 'status:   reachable' : `status:   unreachable: ${reachable}`);
            return;
          }
          const status = await embeddedDatabaseStatus(widaHome());
          if (status.problem) process.exitCode = 1;
          if (argv.json) return printJson({ source: 'embedded', schema: config.WIDA_SCHEMA, ...status, url: status.url && redactUrl(status.url) });
          print(`database: embedded PostgreSQL (no WIDA_DATABASE_URL set), schema "${config.WIDA_SCHEMA}"`);
          print(`data:     ${status.dataDir}`);
          if (status.problem) {
            // A running server whose db.json is lost showed as "stopped; any command starts it", and none could.
            print(`status:   unusable: ${status.problem}`);
          } else if (status.running) print(`status:   running on 127.0.0.1:${status.port} (pid ${status.pid}); \`wida db stop\` stops it`);
          else print(`status:   ${status.initialised ? 'stopped' : 'not created yet'}; any command (or \`wida db start\`) starts it`);
        },
      )
      .command(
        'start',
        'start the embedded PostgreSQL (any command starts it when needed); it runs until `wida db stop`',
        (start) => start.example('$0 db start', 'start it in .wida/ (or WIDA_HOME)'),
        async (argv) => {
          refuseWhenConfigured(argv);
          const database = await ensureEmbeddedDatabase(widaHome());
          if (argv.json) return printJson({ started: database.started, port: database.port, pid: database.pid, home: database.home, url: redactUrl(database.url) });
          print(`${database.started ? 'started' : 'already running:'} embedded PostgreSQL on 127.0.0.1:${database.port} (pid ${database.pid}), data in ${database.home}`);
        },
      )
      .command(
        'stop',
        'stop the embedded PostgreSQL (its data stays; the next command starts it again)',
        (stop) => stop.example('$0 db stop', 'stop it'),
        async (argv) => {
          refuseWhenConfigured(argv);
          const stopped = await stopEmbeddedDatabase(widaHome());
          if (argv.json) return printJson({ stopped });
          print(stopped ? 'stopped the embedded PostgreSQL' : 'the embedded PostgreSQL was not running');
        },
      )
      .demandCommand(1, 'name a db command: status, start or stop'),
  );
}

function refuseWhenConfigured(flags: CommonFlags): void {
  if (configFromFlags(flags).WIDA_DATABASE_URL) {
    throw new RefusedError('WIDA_DATABASE_URL is set, so Wida uses that database, not the embedded one; unset it to use the embedded database');
  }
}

/** true, or why not. */
async function answers(url: string): Promise<true | string> {
  const pool = createPool(url, { max: 1, applicationName: 'wida cli' });
  try {
    await checkConnection(pool, url);
    return true;
  } catch (error) {
    return error instanceof WidaError && error.cause instanceof Error ? error.cause.message : (error as Error).message;
  } finally {
    await pool.end();
  }
}
