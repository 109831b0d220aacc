import { createServer, type Server, type Socket } from 'node:net';
import pg from 'pg';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { Listener } from '../src/shared/db/listen.js';

const servers: Server[] = [];
const sockets: Socket[] = [];
afterEach(async () => {
  for (const socket of sockets.splice(0)) socket.destroy();
  await Promise.all(servers.splice(0).map((server) => new Promise((resolve) => server.close(resolve))));
});

/** A TCP server on loopback that accepts connections and never says a word: a hung database. */
async function silentServer(): Promise<number> {
  const server = createServer((socket) => void sockets.push(socket));
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as { port: number }).port;
}

describe('the LISTEN connection', () => {
  it('a server that accepts and never answers: start() returns, the connect counts as lost, and it keeps trying', async () => {
    const port = await silentServer();
    const errors: string[] = [];
    const listener = new Listener({
      connectionString: `postgres://nobody@127.0.0.1:${port}/none`,
      channels: ['x'],
      onNotification: () => {},
      onError: (error) => errors.push(error.message),
      connectTimeoutMs: 200,
    });
    try {
      await listener.start();
      expect(listener.connected).toBe(false);
      expect(errors.length).toBe(1);
      expect(errors[0]).toMatch(/timeout/i);
      // It reconnects with backoff: a second attempt reaches the server (waited for, not assumed within a fixed time).
      await waitUntil(() => sockets.length >= 2);
      expect(sockets.length).toBeGreaterThanOrEqual(2);
    } finally {
      await listener.stop();
    }
  });

  it('stop() during a connect that hangs ends that connect at once, instead of leaving a socket open until the timeout', async () => {
    const port = await silentServer();
    const listener = new Listener({
      connectionString: `postgres://nobody@127.0.0.1:${port}/none`,
      channels: ['x'],
      onNotification: () => {},
      connectTimeoutMs: 60_000,
    });
    const starting = listener.start();
    await waitUntil(() => sockets.length === 1);
    const closed = new Promise((resolve) => sockets[0].on('close', resolve));
    sockets[0].resume(); // reads (and drops) the startup message, so the client's goodbye is seen
    await listener.stop();
    await starting;
    expect(await Promise.race([closed.then(() => 'closed'), sleep(2_000).then(() => 'still open')])).toBe('closed');
  });

  it('a receiver that throws is reported, and the connection keeps listening', async () => {
    const url = inject('databaseUrl');
    const callbackErrors: string[] = [];
    const lost: string[] = [];
    const received: string[] = [];
    const listener = new Listener({
      connectionString: url,
      channels: ['wida_listen_test_throws'],
      onNotification: (_channel, payload) => {
        received.push(payload);
        if (payload === 'bad') throw new Error('cannot take this one');
      },
      onError: (error) => lost.push(error.message),
      onCallbackError: (error) => callbackErrors.push(error.message),
    });
    const sender = new pg.Client(url);
    await sender.connect();
    try {
      await listener.start();
      await sender.query(`SELECT pg_notify('wida_listen_test_throws', 'bad')`);
      await sender.query(`SELECT pg_notify('wida_listen_test_throws', 'good')`);
      await waitUntil(() => received.includes('good'));
      expect(callbackErrors).toEqual(['cannot take this one']);
      expect(lost).toEqual([]);
      expect(listener.connected).toBe(true);
    } finally {
      await sender.end();
      await listener.stop();
    }
  });

  it('is not ended by an idle_session_timeout: the listening connection is idle by design', async () => {
    const url = new URL(inject('databaseUrl'));
    url.searchParams.set('options', '-c idle_session_timeout=200');
    const lost: string[] = [];
    const received: string[] = [];
    const listener = new Listener({
      connectionString: url.toString(),
      channels: ['wida_listen_test_idle'],
      onNotification: (_channel, payload) => received.push(payload),
      onError: (error) => lost.push(error.message),
    });
    const sender = new pg.Client(inject('databaseUrl'));
    await sender.connect();
    try {
      await listener.start();
      await sleep(700);
      await sender.query(`SELECT pg_notify('wida_listen_test_idle', 'still here')`);
      await waitUntil(() => received.length > 0);
      expect(lost).toEqual([]);
      expect(received).toEqual(['still here']);
    } finally {
      await sender.end();
      await listener.stop();
    }
  });
});

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function waitUntil(check: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await sleep(10);
  }
}
