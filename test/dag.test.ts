import { describe, expect, it } from 'vitest';
import { findCycle, topologicalOrder, validateDag, type DagNode } from '../src/shared/dag.js';
import { CycleDetectedError, ValidationError } from '../src/shared/errors.js';

const graph = (edges: Record<string, (string | number)[]>): DagNode[] => Object.entries(edges).map(([name, dependsOn]) => ({ name, dependsOn }));

describe('findCycle', () => {
  it.each([
    ['no edges', { a: [], b: [] }, undefined],
    ['a chain', { a: [], b: ['a'], c: ['b'] }, undefined],
    ['a diamond', { a: [], b: ['a'], c: ['a'], d: ['b', 'c'] }, undefined],
    ['job ids only', { a: [1, 2], b: ['a', 3] }, undefined],
    ['a self-dependency', { a: ['a'] }, ['a', 'a']],
    ['two nodes', { a: ['b'], b: ['a'] }, ['a', 'b', 'a']],
    ['three nodes', { a: ['b'], b: ['c'], c: ['a'] }, ['a', 'b', 'c', 'a']],
    ['a cycle below an acyclic start', { start: ['x'], x: ['y'], y: ['z'], z: ['x'] }, ['x', 'y', 'z', 'x']],
  ])('%s', (_, edges, cycle) => {
    expect(findCycle(graph(edges))).toEqual(cycle);
  });

  it('a chain of 100,000 nodes does not overflow the stack', () => {
    const nodes = Array.from({ length: 100_000 }, (_, i) => ({ name: `n${i}`, dependsOn: i === 0 ? ['n99999'] : [`n${i - 1}`] }));
    expect(findCycle(nodes)).toHaveLength(100_001);
  });
});

describe('topologicalOrder', () => {
  it.each([
    ['input order when free', { a: [], b: [], c: [] }, ['a', 'b', 'c']],
    ['dependencies first', { c: ['b'], b: ['a'], a: [] }, ['a', 'b', 'c']],
    ['fan-out', { root: [], x: ['root'], y: ['root'] }, ['root', 'x', 'y']],
    ['fan-in', { x: [], y: [], sink: ['x', 'y'] }, ['x', 'y', 'sink']],
    ['diamond', { d: ['b', 'c'], b: ['a'], c: ['a'], a: [] }, ['a', 'b', 'c', 'd']],
    ['job ids do not order', { b: [7], a: ['b', 8] }, ['b', 'a']],
    ['repeated dependency', { a: [], b: ['a', 'a'] }, ['a', 'b']],
  ])('%s', (_, edges, order) => {
    expect(topologicalOrder(graph(edges))).toEqual(order);
  });

  it('throws CycleDetectedError on a cycle', () => {
    expect(() => topologicalOrder(graph({ a: ['b'], b: ['a'] }))).toThrow(CycleDetectedError);
  });
});

describe('validateDag', () => {
  it('a cycle: CycleDetectedError with code and path, the message naming it', () => {
    const error = (() => {
      try {
        validateDag(graph({ a: ['c'], b: ['a'], c: ['b'], d: [] }));
      } catch (e) {
        return e as CycleDetectedError;
      }
    })();
    expect(error).toBeInstanceOf(CycleDetectedError);
    expect(error).toMatchObject({ code: 'CYCLE_DETECTED', path: ['a', 'c', 'b', 'a'] });
    expect(error!.message).toContain('a -> c -> b -> a');
  });

  it.each([
    ['an unknown node name', { a: ['nope'] }, /node "a" depends on "nope", which is not a node/],
    ['a job id that is not positive', { a: [0] }, /not a job id/],
    ['a fractional job id', { a: [1.5] }, /not a job id/],
    ['something else', { a: [null as unknown as string] }, /dependsOn takes node names/],
  ])('%s: ValidationError', (_, edges, message) => {
    expect(() => validateDag(graph(edges))).toThrow(ValidationError);
    expect(() => validateDag(graph(edges))).toThrow(message);
  });

  it('a name given twice: ValidationError', () => {
    expect(() => validateDag([{ name: 'a', dependsOn: [] }, { name: 'a', dependsOn: [] }])).toThrow(/given twice/);
  });

  it('a valid DAG passes', () => {
    expect(() => validateDag(graph({ a: [], b: ['a', 12], c: ['a', 'b'] }))).not.toThrow();
  });
});
