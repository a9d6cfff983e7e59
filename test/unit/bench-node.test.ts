/** bench/bench-node.ts: which Node `npm run bench` measures on (`BENCH_NODE`). */
import { chooseNode, fetchNode } from '../../bench/bench-node.js';

describe("the benchmarks' Node", () => {
  test('without BENCH_NODE (or with current), the Node running the bench', () => {
    expect(chooseNode(undefined, '20.20.2')).toEqual({ use: 'this' });
    expect(chooseNode('', '20.20.2')).toEqual({ use: 'this' });
    expect(chooseNode('current', '24.21.0')).toEqual({ use: 'this' });
  });

  test("a major: that major's binary, fetched unless it is the one running", () => {
    expect(chooseNode('24', '20.20.2')).toEqual({ use: 'fetch', major: 24 });
    expect(chooseNode(' 22 ', '20.20.2')).toEqual({ use: 'fetch', major: 22 });
    expect(chooseNode('24', '24.21.0')).toEqual({ use: 'this' });
    expect(chooseNode('2', '24.21.0')).toEqual({ use: 'fetch', major: 2 });
  });

  test('anything else is the path of a binary', () => {
    expect(chooseNode('/opt/node-22/bin/node', '24.21.0')).toEqual({ use: 'path', path: '/opt/node-22/bin/node' });
    expect(chooseNode('./node24', '20.20.2')).toEqual({ use: 'path', path: './node24' });
  });

  test('a major npx cannot fetch is a clear error that names the way around it', () => {
    expect(() => fetchNode(1)).toThrow(/could not fetch Node 1 with npx -y node@1 .*BENCH_NODE=\/path\/to\/node/);
  });
});
