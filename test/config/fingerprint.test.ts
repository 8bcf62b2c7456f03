import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fingerprint } from '../../src/config/fingerprint.ts';

const key = (t: string) => { const f = fingerprint(t); return `${f.h1}:${f.h2}`; };

test('fingerprint: the same text, the same fingerprint; both halves int32 (stored inline)', () => {
  const a = fingerprint('{"uri":"/a","upstream_id":"1"}');
  assert.deepEqual(a, fingerprint('{"uri":"/a","upstream_id":"1"}'));
  for (const h of [a.h1, a.h2]) assert.equal(h, h | 0);
});

test('fingerprint: texts that differ in one character, in order, or in length differ', () => {
  const base = '{"uri":"/api/v1/users","hosts":["a.example.com"],"upstream_id":"1"}';
  const seen = new Set([key(base)]);
  for (let i = 0; i < base.length; i++) {
    for (const c of ['x', '0', ' ', 'é']) {
      const t = base.slice(0, i) + c + base.slice(i + 1);
      if (t !== base) assert.ok(!seen.has(key(t)), `collision at ${i}`);
      seen.add(key(t));
    }
  }
  assert.notEqual(key('ab'), key('ba'));
  assert.notEqual(key(''), key('\0'));
  assert.notEqual(key('a'), key('a\0'));
});

test('fingerprint: 200,000 distinct config-like texts, no collision', () => {
  const seen = new Set<string>();
  for (let i = 0; i < 200_000; i++) {
    const k = key(JSON.stringify({ uri: `/api/svc${i % 97}/r${i}`, hosts: [`h${i % 200}.example.com`], upstream_id: 'u' }));
    assert.ok(!seen.has(k), `collision at ${i}`);
    seen.add(k);
  }
});
