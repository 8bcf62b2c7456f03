/**
 * 50,000 routes: insertion, matching, and a single incremental change that leaves every other
 * route as it was. No wall-clock thresholds (benchmarks belong in bench/): the assertions are
 * about behaviour after the change.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { Router } from '../../src/router/router.ts';
import type { RouteMatchSpec, RouterMode } from '../../src/router/types.ts';
import { request } from './helpers.ts';

const ROUTES = 50_000;

function routeSpec(i: number): RouteMatchSpec {
  // A mix of exact, prefix and parameter uris spread over shared prefixes.
  const uri = i % 3 === 0 ? `/svc${i % 97}/r${i}` : i % 3 === 1 ? `/svc${i % 97}/p${i}/*` : `/svc${i % 97}/u${i}/:id`;
  return { id: `r${i}`, uris: [uri], priority: 0, hosts: i % 5 === 0 ? [`h${i % 11}.example.com`] : undefined };
}

function pathFor(i: number): string {
  return i % 3 === 0 ? `/svc${i % 97}/r${i}` : i % 3 === 1 ? `/svc${i % 97}/p${i}/deep/x` : `/svc${i % 97}/u${i}/7`;
}

function hostFor(i: number): string {
  return i % 5 === 0 ? `h${i % 11}.example.com` : 'other.example.com';
}

for (const mode of ['radixtree_uri_with_parameter', 'radixtree_host_uri'] as RouterMode[]) {
  describe(`${ROUTES} routes (${mode})`, () => {
    const router = new Router<number>(mode);
    for (let i = 0; i < ROUTES; i++) router.upsert(routeSpec(i), i);

    it('every route is reachable', () => {
      assert.equal(router.size, ROUTES);
      for (let i = 0; i < ROUTES; i++) {
        const match = router.match(request(pathFor(i), { host: hostFor(i) }));
        if (mode === 'radixtree_host_uri' && i % 3 === 2) {
          // no parameters in this mode: '/:id' is literal, so '/u<i>/7' is not this route
          assert.equal(match, undefined, `route ${i}`);
        } else {
          assert.equal(match?.target, i, `route ${i}`);
        }
      }
    });

    it('one upsert changes only that route; others still match as before', () => {
      const changed = 30_001; // i % 3 === 1: a prefix route
      router.upsert({ id: `r${changed}`, uris: ['/moved/*'], priority: 0 }, -1);
      assert.equal(router.size, ROUTES);
      assert.equal(router.match(request('/moved/here'))?.target, -1);
      assert.equal(router.match(request(pathFor(changed), { host: hostFor(changed) })), undefined);
      for (const i of [0, 1, 3, 4, 30_000, 30_003, 30_004, 49_998, 49_999]) {
        assert.equal(router.match(request(pathFor(i), { host: hostFor(i) }))?.target, i, `route ${i}`);
      }

      assert.equal(router.remove(`r${changed}`), true);
      assert.equal(router.size, ROUTES - 1);
      assert.equal(router.match(request('/moved/here')), undefined);
    });
  });
}
