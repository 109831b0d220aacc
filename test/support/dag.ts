/** Helpers of the DAG tests on a file's test schema: job states by id, and ready jobs driven without an agent. */
import { jobClaimBatch, jobCompleteMany, jobFailMany } from '../../src/shared/db/queries/jobs-runs.js';
import type { TestSchema } from './database.js';

export function dagHelpers(t: TestSchema) {
  /** The state of each job, in the order of `ids`; 'gone' for a job that no longer exists. */
  async function states(ids: readonly number[]): Promise<string[]> {
    const { rows } = await t.pool.query(`SELECT id, state FROM "${t.schema}".jobs WHERE id = ANY($1::bigint[])`, [ids]);
    const byId = new Map(rows.map((row) => [Number(row.id), row.state as string]));
    return ids.map((id) => byId.get(id) ?? 'gone');
  }

  /** Claims every ready job of `queue` and completes it (no agent). */
  async function completeReady(queue: string): Promise<number[]> {
    const claimed = await jobClaimBatch(t.db, { agentId: 'test', leaseMs: 30_000, queues: [queue], tasks: null, limit: 100 });
    await jobCompleteMany(t.db, claimed, null);
    return claimed.map((job) => job.id);
  }

  /** Claims the ready job of `queue` and fails it into the DLQ. */
  async function killReady(queue: string): Promise<number> {
    const [claimed] = await jobClaimBatch(t.db, { agentId: 'test', leaseMs: 30_000, queues: [queue], tasks: null, limit: 1 });
    await jobFailMany(t.db, [{ ...claimed, error: 'boom', permanent: true, outcome: 'failed' }]);
    return claimed.id;
  }

  return { states, completeReady, killReady };
}
