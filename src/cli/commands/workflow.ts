import type { Argv } from 'yargs';
import type { WorkflowInfo } from '../../shared/workflow.js';
import { UsageError, withClient, type CommonFlags } from '../context.js';
import { print, printJson } from '../format.js';

export function workflowCommand(yargs: Argv<CommonFlags>) {
  return yargs.command('workflow', 'show a DAG workflow', (y) =>
    y
      .command(
        'show <id>',
        'a workflow as an indented tree: each node under the nodes it depends on, with its state',
        (show) =>
          show
            .positional('id', { type: 'string', demandOption: true, describe: 'workflow id (enqueueWorkflow returns it)' })
            .example('$0 workflow show 12', 'the tree with states')
            .example('$0 workflow show 12 --json', 'nodes, edges and states as JSON'),
        async (argv) => {
          const id = readWorkflowId(argv.id);
          const workflow = await withClient(argv, ({ client }) => client.getWorkflow(id));
          if (argv.json) return printJson(workflow);
          for (const line of workflowTree(workflow)) print(line);
        },
      )
      .demandCommand(1, 'name a workflow command: show'),
  );
}

function readWorkflowId(value: string): number {
  if (!/^[1-9]\d{0,17}$/.test(value) || !Number.isSafeInteger(Number(value))) {
    throw new UsageError(`${JSON.stringify(value)} is not a workflow id; workflow ids are positive whole numbers`);
  }
  return Number(value);
}

/**
 * The workflow as lines: a heading, then each node that depends on no other node of the workflow, with its
 * dependents indented below it. A node with several dependencies is drawn in full under the first one
 * reached and as "(see above)" under the others. Dependencies on jobs outside the workflow are named on the
 * node's line.
 */
export function workflowTree(workflow: WorkflowInfo): string[] {
  const counts = Object.entries(workflow.counts).map(([state, n]) => `${n} ${state}`).join(', ');
  const lines = [`workflow ${workflow.id}${workflow.name ? ` "${workflow.name}"` : ''}: ${workflow.nodes.length} nodes (${counts})`];
  const inWorkflow = new Set(workflow.nodes.map((node) => node.jobId));
  const dependents = new Map<number, number[]>();
  for (const node of workflow.nodes) {
    for (const dependency of node.dependsOn) {
      if (!inWorkflow.has(dependency)) continue;
      const list = dependents.get(dependency);
      if (list) list.push(node.jobId);
      else dependents.set(dependency, [node.jobId]);
    }
  }
  const byId = new Map(workflow.nodes.map((node) => [node.jobId, node]));
  const drawn = new Set<number>();
  // Iterative, so a long chain cannot overflow the stack.
  const stack: { id: number; depth: number }[] = workflow.nodes
    .filter((node) => node.dependsOn.every((dependency) => !inWorkflow.has(dependency)))
    .map((node) => ({ id: node.jobId, depth: 0 }))
    .reverse();
  while (stack.length > 0) {
    const { id, depth } = stack.pop()!;
    const node = byId.get(id)!;
    const indent = '  '.repeat(depth);
    if (drawn.has(id)) {
      lines.push(`${indent}${node.name} #${id} (see above)`);
      continue;
    }
    drawn.add(id);
    const outside = node.dependsOn.filter((dependency) => !inWorkflow.has(dependency));
    const details = [
      node.state ?? 'gone (deleted)',
      node.state === 'waiting' ? `waits for ${node.pendingDeps}` : '',
      node.blockedReason ?? '',
      node.state === 'cancelled' || node.state === 'dead' ? (node.lastError ?? '') : '',
      outside.length > 0 ? `also depends on job ${outside.join(', ')}` : '',
    ].filter(Boolean);
    const task = node.task === null ? '' : ` ${node.task} [${node.queue}]`;
    lines.push(`${indent}${node.name} #${id}${task}  ${details.join('; ')}`);
    for (const child of [...(dependents.get(id) ?? [])].reverse()) stack.push({ id: child, depth: depth + 1 });
  }
  return lines;
}
