import pg from 'pg';
import { closeConnection } from './pool.js';
import { listenerSessionSettings, listenOn } from './queries/notifications.js';

export interface ListenerOptions {
  connectionString: string;
  channels: readonly string[];
  onNotification: (channel: string, payload: string) => void;
  /** called after every (re)connect: notifications may have been missed while disconnected */
  onConnected?: () => void;
  onError?: (error: Error) => void;
  /** onNotification or onConnected threw (the connection is fine) */
  onCallbackError?: (error: Error) => void;
  /** a connect that has not finished by then counts as lost and is retried (default 10 s, as the pools) */
  connectTimeoutMs?: number;
}

/**
 * A dedicated connection that LISTENs and reconnects with backoff when it drops. Notifications are hints:
 * whoever listens must also poll, because a notification sent while disconnected is lost.
 */
export class Listener {
  private client: pg.Client | undefined;
  /** a connect under way: stop() ends it, or its socket would keep the process alive until the connect timeout */
  private connecting: pg.Client | undefined;
  private stopped = false;
  private retryMs = 100;
  private retryTimer: NodeJS.Timeout | undefined;
  connected = false;

  constructor(private readonly options: ListenerOptions) {}

  async start(): Promise<void> {
    await this.connect();
  }

  private async connect(): Promise<void> {
    if (this.stopped) return;
    const client = new pg.Client({
      connectionString: this.options.connectionString,
      application_name: 'wida listen',
      keepAlive: true,
      keepAliveInitialDelayMillis: 10_000,
      // Without it a server that accepts the connection and never answers holds start() forever.
      connectionTimeoutMillis: this.options.connectTimeoutMs ?? 10_000,
    });
    // Anyone who may connect may NOTIFY, and an exception thrown from a pg event handler ends the process: what
    // the receiver cannot take is reported, never thrown.
    client.on('notification', (message) => this.report(() => this.options.onNotification(message.channel, message.payload ?? '')));
    client.on('error', (error) => this.lost(client, error));
    client.on('end', () => this.lost(client, new Error('listen connection ended')));
    this.connecting = client;
    try {
      await client.connect();
      // This connection is idle by design: a server or role with idle_session_timeout would end it every time it
      // passed, and each time the notifications in between would be lost.
      await listenerSessionSettings(client);
      for (const channel of this.options.channels) await listenOn(client, channel);
    } catch (error) {
      this.lost(client, error as Error);
      return;
    } finally {
      this.connecting = undefined;
    }
    if (this.stopped) {
      await client.end().catch(() => {});
      return;
    }
    this.client = client;
    this.connected = true;
    this.retryMs = 100;
    this.report(() => this.options.onConnected?.());
  }

  private report(call: () => void): void {
    try {
      call();
    } catch (error) {
      this.options.onCallbackError?.(error as Error);
    }
  }

  private lost(client: pg.Client, error: Error): void {
    if (this.client !== undefined && this.client !== client) return;
    if (this.retryTimer || this.stopped) return;
    this.client = undefined;
    this.connected = false;
    client.end().catch(() => {});
    this.options.onError?.(error);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      void this.connect();
    }, this.retryMs);
    this.retryMs = Math.min(this.retryMs * 2, 5_000);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    this.connecting?.connection.stream.destroy();
    const client = this.client;
    this.client = undefined;
    this.connected = false;
    // Bounded: with the server unreachable but the socket open, end() would wait for a goodbye that never comes.
    if (client) await closeConnection(client, 2_000);
  }
}
