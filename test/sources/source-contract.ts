/**
 * One contract, every source (like hono's shared router cases): initial load, put, update,
 * delete, an invalid object, and a restart, observed through a real ConfigStore. A new source
 * passes this before it is wired into the gateway.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import type { Kind } from '../../src/config/changeset.ts';
import { ConfigStore } from '../../src/config/store.ts';
import type { Source, SourceState } from '../../src/sources/source.ts';
import { waitUntil } from '../helpers/wait.ts';

/** How a test writes to the source's backend (a file, etcd, ...). */
export interface SourceBackend {
  put(kind: Kind, id: string, value: unknown): Promise<void>;
  remove(kind: Kind, id: string): Promise<void>;
  /** a new source instance reading this backend */
  createSource(): Source;
  close(): Promise<void>;
}

const up = { nodes: { '127.0.0.1:1980': 1 } };

export function sourceContract(name: string, makeBackend: () => Promise<SourceBackend>): void {
  describe(`source contract: ${name}`, () => {
    let backend: SourceBackend;
    let source: Source;
    const store = new ConfigStore(name);
    const states: SourceState[] = [];
    const events = { onChangeSet: (cs: Parameters<ConfigStore['apply']>[0]) => void store.apply(cs), onState: (s: SourceState) => void states.push(s) };
    const uriOf = (s: ConfigStore, id: string) => s.snapshot.routes.get(id)?.value.uri;

    after(async () => {
      await source?.stop();
      await backend?.close();
    });

    test('initial load: start() resolves after the whole backend was delivered', async () => {
      backend = await makeBackend();
      await backend.put('upstreams', 'u1', up);
      await backend.put('routes', 'r1', { uri: '/one', upstream_id: 'u1' });
      await backend.put('routes', 'r2', { uri: '/two', upstream: up });
      source = backend.createSource();
      await source.start(events);
      assert.deepEqual([...store.snapshot.routes.keys()].sort(), ['r1', 'r2']);
      assert.ok(store.snapshot.upstreams.has('u1'));
      await waitUntil(() => states.at(-1)?.connected === true, 3000, 'connected state reported');
    });

    test('put: a new object is applied', async () => {
      await backend.put('routes', 'r3', { uri: '/three', upstream_id: 'u1' });
      await waitUntil(() => uriOf(store, 'r3') === '/three', 3000, 'r3 applied');
    });

    test('update: the new version replaces the old', async () => {
      await backend.put('routes', 'r1', { uri: '/uno', upstream_id: 'u1' });
      await waitUntil(() => uriOf(store, 'r1') === '/uno', 3000, 'r1 updated');
    });

    test('delete: the object is removed', async () => {
      await backend.remove('routes', 'r2');
      await waitUntil(() => !store.snapshot.routes.has('r2'), 3000, 'r2 removed');
    });

    test('invalid object: rejected with a reason, the previous version stays', async () => {
      await backend.put('routes', 'r1', { uri: 5, upstream_id: 'u1' });
      const rej = await waitUntil(() => store.rejections().find((r) => r.id === 'r1'), 3000, 'r1 rejected');
      assert.equal(rej.reason, 'routes/r1: /uri: must be string');
      assert.equal(uriOf(store, 'r1'), '/uno');
      // and the rest of the source keeps flowing
      await backend.put('routes', 'r4', { uri: '/four', upstream_id: 'u1' });
      await waitUntil(() => store.snapshot.routes.has('r4'), 3000, 'r4 applied');
    });

    test('restart: a new source instance brings the store to the backend state', async () => {
      await source.stop();
      // a change made while no source runs must be seen by the next one
      await backend.remove('routes', 'r3');
      source = backend.createSource();
      await source.start(events);
      assert.deepEqual([...store.snapshot.routes.keys()].sort(), ['r1', 'r4']);
      assert.equal(uriOf(store, 'r1'), '/uno', 'last good version of the invalid object kept');
      assert.deepEqual(store.rejections().map((r) => r.id), ['r1'], 'the invalid version is still reported');
      // and a cold start on the same backend (a fresh store) cannot serve what was never valid there
      const fresh = new ConfigStore(name);
      const other = backend.createSource();
      await other.start({ onChangeSet: (cs) => void fresh.apply(cs), onState: () => {} });
      await other.stop();
      assert.deepEqual([...fresh.snapshot.routes.keys()], ['r4']);
      assert.equal(fresh.rejections()[0]?.reason, 'routes/r1: /uri: must be string');
    });
  });
}
