import { after, before } from 'node:test';
import { EtcdClient } from '../../src/sources/etcd/client.ts';
import { startEtcd, type EtcdOptions, type EtcdProcess } from './etcd.ts';

/**
 * A real etcd and a client of it for the enclosing suite (or file): started before its tests,
 * closed and stopped after them. Read the fields inside tests and hooks, not when declaring them.
 */
export function etcdForSuite(opts: EtcdOptions = {}): { readonly etcd: EtcdProcess; readonly client: EtcdClient } {
  const held = {} as { etcd: EtcdProcess; client: EtcdClient };
  before(async () => {
    held.etcd = await startEtcd(opts);
    held.client = new EtcdClient({ endpoints: [held.etcd.clientUrl] });
  });
  after(async () => {
    await held.client?.close();
    await held.etcd?.stop();
  });
  return held;
}
