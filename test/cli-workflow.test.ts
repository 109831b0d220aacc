/** `wida workflow show`: the tree (pure, from a WorkflowInfo) and the built CLI as a subprocess. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { workflowTree } from '../src/cli/commands/workflow.js';
import type { WorkflowInfo, WorkflowNodeInfo } from '../src/shared/workflow.js';
import { assertBuilt } from './fixtures/children.js';
import { useTestSchema } from './support/database.js';
import { runCli } from './support/run-cli.js';

const t = useTestSchema('cliwf');
let workDir: string;

beforeAll(() => {
  assertBuilt();
  workDir = mkdtempSync(join(tmpdir(), 'wida-cli-wf-'));
});

afterAll(() => {
  rmSync(workDir, { recursive: true, force: true });
});

function wida(args: string[]) {
  return runCli(args, { cwd: workDir, env: { WIDA_DATABASE_URL: t.url, WIDA_SCHEMA: t.schema } });
}

function node(name: string, jobId: number, state: string | null, dependsOn: number[] = [], extra: Partial<WorkflowNodeInfo> = {}): WorkflowNodeInfo {
  return { name, jobId, task: state === null ? null : 'step', queue: state === null ? null : 'default', state, pendingDeps: 0, blockedReason: null, lastError: null, startedAt: null, finishedAt: null, dependsOn, ...extra };
}

describe('workflowTree', () => {
  it('draws a diamond: each node under its dependencies, a second parent as "(see above)"; outside jobs and reasons on the line', () => {
    const info: WorkflowInfo = {
      id: 3,
      name: 'diamond',
      createdAt: new Date(0),
      nodes: [
        node('top', 10, 'completed'),
        node('left', 11, 'dead', [10], { lastError: 'boom' }),
        node('right', 12, 'completed', [10]),
        node('sink', 13, 'waiting', [11, 12, 99], { pendingDeps: 2, blockedReason: 'blocked: job 11 is dead' }),
        node('gone', 14, null),
      ],
      edges: [],
      counts: { completed: 2, dead: 1, waiting: 1, gone: 1 },
    };
    expect(workflowTree(info)).toEqual([
      'workflow 3 "diamond": 5 nodes (2 completed, 1 dead, 1 waiting, 1 gone)',
      'top #10 step [default]  completed',
      '  left #11 step [default]  dead; boom',
      '    sink #13 step [default]  waiting; waits for 2; blocked: job 11 is dead; also depends on job 99',
      '  right #12 step [default]  completed',
      '    sink #13 (see above)',
      'gone #14  gone (deleted)',
    ]);
  });
});

describe('wida workflow show', () => {
  it('prints the tree, and --json with nodes and edges; unknown id exits 1, a bad id exits 2', async () => {
    const { workflowId, jobs } = await t.client.enqueueWorkflow({
      name: 'report',
      nodes: { fetch: { task: 'fetch' }, build: { task: 'build', dependsOn: ['fetch'] }, mail: { task: 'mail', queue: 'email', dependsOn: ['build'] } },
    });
    const shown = await wida(['workflow', 'show', String(workflowId)]);
    expect(shown.stderr).toBe('');
    expect(shown.code).toBe(0);
    expect(shown.stdout.split('\n')).toEqual([
      `workflow ${workflowId} "report": 3 nodes (1 pending, 2 waiting)`,
      `fetch #${jobs.fetch} fetch [default]  pending`,
      `  build #${jobs.build} build [default]  waiting; waits for 1`,
      `    mail #${jobs.mail} mail [email]  waiting; waits for 1`,
      '',
    ]);
    const json = await wida(['workflow', 'show', String(workflowId), '--json']);
    expect(json.code).toBe(0);
    const parsed = JSON.parse(json.stdout);
    expect(parsed).toMatchObject({ id: workflowId, name: 'report', edges: [{ jobId: jobs.build, dependsOn: jobs.fetch }, { jobId: jobs.mail, dependsOn: jobs.build }] });
    expect(parsed.nodes.map((n: WorkflowNodeInfo) => [n.name, n.state])).toEqual([['fetch', 'pending'], ['build', 'waiting'], ['mail', 'waiting']]);

    const missing = await wida(['workflow', 'show', '987654']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/workflow 987654 does not exist/);
    const bad = await wida(['workflow', 'show', 'abc']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/not a workflow id/);
  });
});

describe('wida cancel of a workflow by its ids', () => {
  it("succeeds when the cancel of one job already cancelled the others it names (its dependents); alone, a cancelled job is still refused", async () => {
    const { jobs } = await t.client.enqueueWorkflow({
      name: 'doomed',
      nodes: { fetch: { task: 'fetch' }, build: { task: 'build', dependsOn: ['fetch'] }, mail: { task: 'mail', dependsOn: ['build'] } },
    });
    const cancel = await wida(['cancel', String(jobs.fetch), String(jobs.build), String(jobs.mail), '--json']);
    expect(cancel.stderr).toBe('');
    expect(cancel.code).toBe(0);
    expect(JSON.parse(cancel.stdout)).toEqual({ cancelled: [jobs.fetch, jobs.build, jobs.mail], failed: [] });
    const again = await wida(['cancel', String(jobs.mail)]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(new RegExp(`job ${jobs.mail} is cancelled; only`));
  });

  it('a chain that reaches a job since dropped is not this command\'s doing: that id is refused, the ids after it are still cancelled', async () => {
    const loose = await t.client.enqueue({ task: 'loose' });
    const { jobs } = await t.client.enqueueWorkflow({
      name: 'chain',
      nodes: { a: { task: 'a' }, b: { task: 'b', dependsOn: ['a'] }, c: { task: 'c', dependsOn: ['b'] } },
    });
    const later = await t.client.enqueue({ task: 'later' });
    await t.client.cancelJob(jobs.a); // cancels b and c too
    await t.client.dropJob(jobs.b);
    const cancel = await wida(['cancel', String(loose.id), String(jobs.c), String(later.id), '--json']);
    expect(cancel.code).toBe(1);
    const outcome = JSON.parse(cancel.stdout);
    expect(outcome.cancelled).toEqual([loose.id, later.id]);
    expect(outcome.failed.map((failure: { id: number }) => failure.id)).toEqual([jobs.c]);
    expect((await t.client.getJob(later.id)).state).toBe('cancelled');
  });
});
