/**
 * The embedded database's bookkeeping files, without starting a server: what a damaged `.wida` gets.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { embeddedDatabaseStatus, ensureEmbeddedDatabase, stopEmbeddedDatabase } from '../src/shared/db/embedded.js';

const homes: string[] = [];
afterEach(() => {
  for (const home of homes.splice(0)) rmSync(home, { recursive: true, force: true });
});

function newHome(): string {
  const home = mkdtempSync(join(tmpdir(), 'wida-home-'));
  homes.push(home);
  return home;
}

/** A home whose data directory exists (PG_VERSION) but whose db.json does not. */
function homeWithoutState(): string {
  const home = newHome();
  mkdirSync(join(home, 'postgres'));
  writeFileSync(join(home, 'postgres', 'PG_VERSION'), '15\n');
  return home;
}

describe('the embedded database with damaged bookkeeping', () => {
  it('a missing db.json is named, with what to do, and no server is started; the status says so too', async () => {
    const home = homeWithoutState();
    await expect(ensureEmbeddedDatabase(home)).rejects.toThrow(/db\.json is missing or unreadable, so the embedded database's password is unknown; .*delete .* to start afresh/);
    // It said "stopped", and that any command would start it.
    expect(await embeddedDatabaseStatus(home)).toMatchObject({ initialised: true, running: false, problem: expect.stringMatching(/db\.json is missing or unreadable/) });
    writeFileSync(join(home, 'db.json'), '{ not json');
    expect((await embeddedDatabaseStatus(home)).problem).toMatch(/db\.json is missing or unreadable/);
  });

  it('a lock file holding our own pid (left by an earlier process that had it) is stale, not waited for', async () => {
    const home = homeWithoutState();
    writeFileSync(join(home, 'db.lock'), String(process.pid));
    // Waited for, this took the full lock wait (120 s) and the test's own timeout ends it first.
    await expect(ensureEmbeddedDatabase(home)).rejects.toThrow(/db\.json is missing or unreadable/);
  }, 10_000);

  it('a postgres directory Wida did not make is refused and left as it was', async () => {
    const home = newHome();
    mkdirSync(join(home, 'postgres', 'data'), { recursive: true });
    writeFileSync(join(home, 'postgres', 'notes.txt'), 'precious');
    // It was deleted and replaced by a new cluster.
    await expect(ensureEmbeddedDatabase(home)).rejects.toThrow(/postgres exists and is not a PostgreSQL data directory Wida made .*will not replace it/);
    expect(readFileSync(join(home, 'postgres', 'notes.txt'), 'utf8')).toBe('precious');
    expect(existsSync(join(home, 'postgres', 'data'))).toBe(true);
  });

  it('a home pg_ctl cannot pass to the server, or cannot be written, is refused with what to do', async () => {
    const home = newHome();
    await expect(ensureEmbeddedDatabase(join(home, 'd$(touch pwned)x'))).rejects.toThrow(/contains "\$", which pg_ctl cannot pass to the server; set WIDA_HOME/);
    writeFileSync(join(home, 'file'), '');
    await expect(ensureEmbeddedDatabase(join(home, 'file', 'home'))).rejects.toThrow(/cannot write the embedded database's files in .*file\/home \(ENOTDIR.*set WIDA_HOME to a writable directory/);
  });

  it.runIf(process.platform === 'linux')('a stale postmaster.pid naming a live process that is not the server: stop leaves that process alone', async () => {
    const home = homeWithoutState();
    const bystander = spawn('sleep', ['30']);
    try {
      writeFileSync(join(home, 'postgres', 'postmaster.pid'), `${bystander.pid}\n${join(home, 'postgres')}\n1\n5432\n`);
      // It got SIGINT (and a process ignoring SIGINT held stop up for 60 s).
      expect(await stopEmbeddedDatabase(home)).toBe(false);
      expect(bystander.exitCode).toBeNull();
      expect(bystander.signalCode).toBeNull();
      expect(await embeddedDatabaseStatus(home)).toMatchObject({ running: false });
    } finally {
      bystander.kill();
    }
  });

  it('a lock left by a dead process is taken over', async () => {
    const home = homeWithoutState();
    const dead = spawn('true');
    await new Promise((done) => dead.on('exit', done));
    writeFileSync(join(home, 'db.lock'), String(dead.pid));
    await expect(ensureEmbeddedDatabase(home)).rejects.toThrow(/db\.json is missing or unreadable/);
    expect(existsSync(join(home, 'db.lock'))).toBe(false);
    expect(existsSync(join(home, 'db.lock.takeover'))).toBe(false);
  }, 10_000);
});
