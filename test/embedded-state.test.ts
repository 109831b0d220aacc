/**
 * The embedded database's bookkeeping files, without starting a server: what a damaged `.wida` gets.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { embeddedDatabaseStatus, ensureEmbeddedDatabase } from '../src/shared/db/embedded.js';

const homes: string[] = [];
afterEach(() => {
  for (const home of homes.splice(0)) rmSync(home, { recursive: true, force: true });
});

/** A home whose data directory exists (PG_VERSION) but whose db.json does not. */
function homeWithoutState(): string {
  const home = mkdtempSync(join(tmpdir(), 'wida-home-'));
  homes.push(home);
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
});
