import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { stringify } from 'yaml';
import { KINDS, type Kind } from '../../src/config/changeset.ts';
import { EtcdClient } from '../../src/sources/etcd/client.ts';
import { EtcdSource } from '../../src/sources/etcd/source.ts';
import { FileSource } from '../../src/sources/file.ts';
import { startEtcd } from '../helpers/etcd.ts';
import { sourceContract } from './source-contract.ts';

sourceContract('file', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'portico-contract-'));
  const file = path.join(dir, 'routes.yaml');
  const objects = new Map<Kind, Map<string, unknown>>(KINDS.map((k) => [k, new Map()]));
  const save = () => {
    const doc = Object.fromEntries(KINDS.map((k) => [k, [...objects.get(k)!].map(([id, v]) => ({ id, ...(v as object) }))]));
    writeFileSync(`${file}.tmp`, stringify(doc));
    renameSync(`${file}.tmp`, file);
  };
  save();
  return {
    put: async (kind, id, value) => {
      objects.get(kind)!.set(id, value);
      save();
    },
    remove: async (kind, id) => {
      objects.get(kind)!.delete(id);
      save();
    },
    createSource: () => new FileSource({ path: file }),
    close: async () => rmSync(dir, { recursive: true, force: true }),
  };
});

sourceContract('etcd', async () => {
  const etcd = await startEtcd();
  const client = new EtcdClient({ endpoints: [etcd.clientUrl] });
  return {
    put: async (kind, id, value) => void (await client.put(`/contract/${kind}/${id}`, JSON.stringify(value))),
    remove: async (kind, id) => void (await client.delete(`/contract/${kind}/${id}`)),
    createSource: () => new EtcdSource({ endpoints: [etcd.clientUrl], prefix: '/contract' }),
    close: async () => {
      await client.close();
      await etcd.stop();
    },
  };
});
