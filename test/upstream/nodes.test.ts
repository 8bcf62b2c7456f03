import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PorticoError } from '../../src/errors.ts';
import { normalizeNodes } from '../../src/upstream/nodes.ts';

describe('normalizeNodes', () => {
  it('reads the map form, with default ports by scheme and IPv6 in brackets', () => {
    assert.deepEqual(normalizeNodes({ '10.0.0.1:8080': 2, 'example.com': 1, '[::1]:81': 3, '[fe80::1]': 1 }, 'http'), [
      { host: '10.0.0.1', port: 8080, weight: 2, key: '10.0.0.1:8080', priority: 0 },
      { host: 'example.com', port: 80, weight: 1, key: 'example.com:80', priority: 0 },
      { host: '::1', port: 81, weight: 3, key: '[::1]:81', priority: 0 },
      { host: 'fe80::1', port: 80, weight: 1, key: '[fe80::1]:80', priority: 0 },
    ]);
    assert.equal(normalizeNodes({ 'example.com': 1 }, 'https')[0]!.port, 443);
  });

  it('reads the array form with priority', () => {
    assert.deepEqual(
      normalizeNodes(
        [
          { host: '127.0.0.1', port: 1980, weight: 1, priority: 1 },
          { host: '[::1]', weight: 0 },
          { host: '[::2]', port: 8443, weight: 5 },
        ],
        'https',
      ),
      [
        { host: '127.0.0.1', port: 1980, weight: 1, key: '127.0.0.1:1980', priority: 1 },
        { host: '::1', port: 443, weight: 0, key: '[::1]:443', priority: 0 },
        { host: '::2', port: 8443, weight: 5, key: '[::2]:8443', priority: 0 },
      ],
    );
  });

  it('rejects unusable ports and weights', () => {
    assert.throws(() => normalizeNodes({ 'a:0': 1 }, 'http'), PorticoError);
    assert.throws(() => normalizeNodes({ 'a:99999': 1 }, 'http'), PorticoError);
    assert.throws(() => normalizeNodes({ 'a:x': 1 }, 'http'), PorticoError);
    assert.throws(() => normalizeNodes({ '[::1': 1 }, 'http'), PorticoError);
    assert.throws(() => normalizeNodes({ a: -1 }, 'http'), PorticoError);
    assert.throws(() => normalizeNodes([{ host: 'a', weight: 1.5 }], 'http'), PorticoError);
  });
});
