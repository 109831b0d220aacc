import { connect, createServer, type Server, type Socket } from 'node:net';

/**
 * A TCP proxy on loopback in front of the test database, to take the database away from an agent:
 * `cut()` resets every connection and refuses new ones (a server that went down); `silence()` keeps the
 * connections open but passes no more bytes either way (a partition, a frozen host); `silenceOpen()` does
 * that to the connections open now only, while new ones work (a connection lost in a NAT or firewall);
 * `slow(ms)` delays every chunk by `ms` each way (a slow but working network).
 */
export class DatabaseProxy {
  private readonly server: Server;
  private readonly pairs: [Socket, Socket][] = [];
  private readonly silenced = new Set<Socket>();
  private silent = false;
  private delayMs = 0;

  private constructor(target: URL) {
    this.server = createServer((inbound) => {
      const outbound = connect(Number(target.port || 5432), target.hostname);
      this.pairs.push([inbound, outbound]);
      inbound.on('error', () => outbound.destroy());
      outbound.on('error', () => inbound.destroy());
      inbound.on('close', () => outbound.destroy());
      outbound.on('close', () => inbound.destroy());
      const quiet = () => this.silent || this.silenced.has(inbound);
      const pass = (to: Socket, chunk: Buffer) => {
        if (quiet()) return;
        if (this.delayMs === 0) to.write(chunk);
        else setTimeout(() => quiet() || to.destroyed || to.write(chunk), this.delayMs);
      };
      inbound.on('data', (chunk: Buffer) => pass(outbound, chunk));
      outbound.on('data', (chunk: Buffer) => pass(inbound, chunk));
    });
  }

  static async start(databaseUrl: string): Promise<{ proxy: DatabaseProxy; url: string }> {
    const target = new URL(databaseUrl);
    const proxy = new DatabaseProxy(target);
    await new Promise<void>((resolve) => proxy.server.listen(0, '127.0.0.1', resolve));
    const url = new URL(databaseUrl);
    url.hostname = '127.0.0.1';
    url.port = String((proxy.server.address() as { port: number }).port);
    return { proxy, url: url.toString() };
  }

  /** Client connections still open (the agent's side has not closed them). */
  get openConnections(): number {
    return this.pairs.filter(([inbound]) => !inbound.destroyed).length;
  }

  slow(ms: number): void {
    this.delayMs = ms;
  }

  silence(): void {
    this.silent = true;
  }

  silenceOpen(): void {
    for (const [inbound] of this.pairs) this.silenced.add(inbound);
  }

  cut(): void {
    this.server.close();
    for (const [inbound, outbound] of this.pairs.splice(0)) {
      inbound.resetAndDestroy();
      outbound.destroy();
    }
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise((resolve) => this.server.close(resolve));
  }
}
