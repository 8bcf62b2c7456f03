import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { RadixTree } from '../../src/router/trie.ts';

function prefixesOf(tree: RadixTree<string>, text: string): string[] {
  const out: (string | undefined)[] = [];
  const n = tree.collectPrefixValues(text, out);
  return out.slice(0, n) as string[];
}

describe('RadixTree', () => {
  it('finds stored prefixes longest first, across split edges', () => {
    const tree = new RadixTree<string>();
    for (const key of ['/api/v1/', '/api/', '/apple', '/', '/api/v1/users']) tree.set(key, key);
    assert.equal(tree.size, 5);
    assert.deepEqual(prefixesOf(tree, '/api/v1/users/7'), ['/api/v1/users', '/api/v1/', '/api/', '/']);
    assert.deepEqual(prefixesOf(tree, '/apple-pie'), ['/apple', '/']);
    assert.deepEqual(prefixesOf(tree, '/ap'), ['/']);
    assert.deepEqual(prefixesOf(tree, 'x'), []);
  });

  it('the empty key is a prefix of everything', () => {
    const tree = new RadixTree<string>();
    tree.set('', 'root');
    tree.set('ab', 'ab');
    assert.deepEqual(prefixesOf(tree, 'abc'), ['ab', 'root']);
    assert.deepEqual(prefixesOf(tree, ''), ['root']);
  });

  it('get/set/delete, with pruning and re-merging keeping lookups right', () => {
    const tree = new RadixTree<string>();
    tree.set('/team', 'team');
    tree.set('/test', 'test');
    tree.set('/te', 'te');
    assert.equal(tree.get('/t'), undefined);
    assert.equal(tree.get('/te'), 'te');
    tree.set('/te', 'te2');
    assert.equal(tree.size, 3);
    assert.equal(tree.get('/te'), 'te2');

    assert.equal(tree.delete('/t'), false);
    assert.equal(tree.delete('/te'), true);
    assert.equal(tree.delete('/te'), false);
    assert.equal(tree.get('/te'), undefined);
    assert.deepEqual(prefixesOf(tree, '/test/x'), ['test']);

    assert.equal(tree.delete('/test'), true);
    assert.deepEqual(prefixesOf(tree, '/test/x'), []);
    assert.equal(tree.get('/team'), 'team');
    assert.deepEqual(prefixesOf(tree, '/teamwork'), ['team']);
    assert.equal(tree.delete('/team'), true);
    assert.equal(tree.size, 0);
    tree.set('/again', 'again');
    assert.deepEqual(prefixesOf(tree, '/again/'), ['again']);
  });

  it('agrees with a brute-force model under random edits', () => {
    let seed = 42;
    const random = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed % n;
    };
    const alphabet = '/ab';
    const randomKey = (): string => {
      let key = '';
      const len = random(6);
      for (let i = 0; i < len; i++) key += alphabet[random(alphabet.length)];
      return key;
    };
    const tree = new RadixTree<string>();
    const model = new Map<string, string>();
    for (let step = 0; step < 3000; step++) {
      const key = randomKey();
      if (random(3) === 0) {
        assert.equal(tree.delete(key), model.delete(key));
      } else {
        tree.set(key, `${key}#${step}`);
        model.set(key, `${key}#${step}`);
      }
      const probe = randomKey() + randomKey();
      const expected = [...model.keys()]
        .filter((k) => probe.startsWith(k))
        .sort((a, b) => b.length - a.length)
        .map((k) => model.get(k));
      assert.deepEqual(prefixesOf(tree, probe), expected, `step ${step}, probe ${probe}`);
      assert.equal(tree.size, model.size);
    }
  });
});
