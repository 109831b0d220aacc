import { createServer, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
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
      // It reconnects with backoff: a second attempt reaches the server.
      await new Promise((resolve) => setTimeout(resolve, 500));
      expect(sockets.length).toBeGreaterThanOrEqual(2);
    } finally {
      await listener.stop();
    }
  });
});
