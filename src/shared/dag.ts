/**
 * Pure graph logic for DAG workflows: checking a workflow's nodes (unknown names, cycles) and ordering
 * them dependencies first. No I/O; the enqueue (workflow.ts) and the views use these.
 */
import { CycleDetectedError, ValidationError } from './errors.js';

/** A node's dependencies: other nodes by name, or existing jobs by id. */
export type Dependency = string | number;

export interface DagNode {
  name: string;
  dependsOn: readonly Dependency[];
}

/**
 * Checks that every name dependency names a node and every id is a positive whole number, and that the
 * name edges form no cycle. Throws ValidationError or CycleDetectedError (naming the cycle "a -> b -> a",
 * read "a depends on b, which depends on a").
 */
export function validateDag(nodes: readonly DagNode[]): void {
  const names = new Set<string>();
  for (const node of nodes) {
    if (names.has(node.name)) throw new ValidationError(`nodes.${node.name}`, `node "${node.name}" is given twice`);
    names.add(node.name);
  }
  for (const node of nodes) {
    for (const dependency of node.dependsOn) {
      if (typeof dependency === 'number') {
        if (!Number.isSafeInteger(dependency) || dependency < 1) {
          throw new ValidationError(`nodes.${node.name}.dependsOn`, `node "${node.name}" depends on ${dependency}, which is not a job id (a positive whole number)`);
        }
      } else if (typeof dependency === 'string') {
        if (!names.has(dependency)) {
          throw new ValidationError(
            `nodes.${node.name}.dependsOn`,
            `node "${node.name}" depends on "${dependency}", which is not a node of this workflow; name a node, or give an existing job's id as a number`,
          );
        }
      } else {
        throw new ValidationError(`nodes.${node.name}.dependsOn`, `node "${node.name}": dependsOn takes node names (strings) and job ids (numbers)`);
      }
    }
  }
  const cycle = findCycle(nodes);
  if (cycle) throw new CycleDetectedError(cycle);
}

/** The first cycle among the name edges, as a path that starts and ends at the same node; undefined if none. */
export function findCycle(nodes: readonly DagNode[]): string[] | undefined {
  const edges = nameEdges(nodes);
  const state = new Map<string, 'open' | 'done'>();
  const path: string[] = [];
  // Iterative depth-first search, so a long chain cannot overflow the stack.
  for (const start of edges.keys()) {
    if (state.has(start)) continue;
    const stack: { name: string; next: number }[] = [{ name: start, next: 0 }];
    state.set(start, 'open');
    path.push(start);
    while (stack.length > 0) {
      const top = stack[stack.length - 1];
      const targets = edges.get(top.name) ?? [];
      if (top.next < targets.length) {
        const target = targets[top.next++];
        const seen = state.get(target);
        if (seen === 'open') return [...path.slice(path.indexOf(target)), target];
        if (seen === undefined) {
          state.set(target, 'open');
          path.push(target);
          stack.push({ name: target, next: 0 });
        }
      } else {
        state.set(top.name, 'done');
        path.pop();
        stack.pop();
      }
    }
  }
  return undefined;
}

/**
 * The node names, every node after the nodes it depends on; among nodes free to go, input order.
 * Throws CycleDetectedError if there is a cycle.
 */
export function topologicalOrder(nodes: readonly DagNode[]): string[] {
  const edges = nameEdges(nodes);
  const unmet = new Map<string, number>();
  const dependents = new Map<string, string[]>();
  for (const [name, targets] of edges) {
    unmet.set(name, targets.length);
    for (const target of targets) {
      const list = dependents.get(target);
      if (list) list.push(name);
      else dependents.set(target, [name]);
    }
  }
  const order: string[] = [];
  let ready = nodes.map((node) => node.name).filter((name) => unmet.get(name) === 0);
  while (ready.length > 0) {
    const next: string[] = [];
    for (const name of ready) {
      order.push(name);
      for (const dependent of dependents.get(name) ?? []) {
        const left = unmet.get(dependent)! - 1;
        unmet.set(dependent, left);
        if (left === 0) next.push(dependent);
      }
    }
    ready = next;
  }
  if (order.length < nodes.length) throw new CycleDetectedError(findCycle(nodes) ?? []);
  return order;
}

/** name -> the distinct node names it depends on (job ids left out: an existing job cannot depend on a new one). */
function nameEdges(nodes: readonly DagNode[]): Map<string, string[]> {
  const edges = new Map<string, string[]>();
  for (const node of nodes) {
    edges.set(node.name, [...new Set(node.dependsOn.filter((d): d is string => typeof d === 'string'))]);
  }
  return edges;
}
