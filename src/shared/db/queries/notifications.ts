/** NOTIFY on Wida's two channels: `<schema>_jobs` (a queue has ready work) and `<schema>_control` (operator actions). */
import { statement, type SchemaDb } from '../sql.js';

const NOTIFY_JOBS = statement('notify_jobs_ready', `SELECT pg_notify('@channel_jobs', q) FROM unnest($1::text[]) AS q`);

/** Wakes agents serving these queues: jobs there became ready. A hint only; agents also poll. */
export async function notifyJobsReady(db: SchemaDb, queues: readonly string[]): Promise<void> {
  if (queues.length > 0) await db.rows(NOTIFY_JOBS, [queues]);
}

export type ControlMessage =
  /** the run (job and lease epoch) an operator cancelled: a later run of the job is not touched */
  | { type: 'cancel'; jobId: number; leaseEpoch: number; agentId: string | null }
  | { type: 'queue_paused' | 'queue_resumed'; queue: string }
  /** sent by leader.ts's leaderResign: campaign now */
  | { type: 'leader_resigned'; term: number };

const NOTIFY_CONTROL = statement('notify_control', `SELECT pg_notify('@channel_control', $1)`);

export async function notifyControl(db: SchemaDb, message: ControlMessage): Promise<void> {
  await db.rows(NOTIFY_CONTROL, [JSON.stringify(message)]);
}

/** Subscribes a dedicated connection to a channel (a name from SchemaDb.channel, so already safe to quote). */
export async function listenOn(client: { query(text: string): Promise<unknown> }, channel: string): Promise<void> {
  await client.query(`LISTEN "${channel}"`);
}

/** The listening session is idle by design: exempt it from an idle_session_timeout set on the server or role. */
export async function listenerSessionSettings(client: { query(text: string): Promise<unknown> }): Promise<void> {
  await client.query(`SELECT set_config('idle_session_timeout', '0', false)`);
}
