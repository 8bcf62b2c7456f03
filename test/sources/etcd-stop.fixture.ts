/**
 * Child process for the "stop() leaves no handles" test: it must exit on its own (no
 * process.exit) after stopping a synced source and a source that is backing off.
 */
import { EtcdSource } from '../../src/sources/etcd/source.ts';

const endpoint = process.argv[2]!;
const synced = new EtcdSource({ endpoints: [endpoint], prefix: '/fixture', probeInterval: 200 });
await synced.start({ onChangeSet: () => {}, onState: () => {} });
await synced.client.put('/fixture/routes/1', '{}');
const lease = await synced.client.grantLease(30);
await synced.client.keepAliveOnce(lease.id);
await new Promise((r) => setTimeout(r, 500)); // watch established, probes running
await synced.stop();
console.log('synced');

// nothing listens on port 9 (discard): start() fails, the source sits in its backoff sleep
const away = new EtcdSource({ endpoints: ['http://127.0.0.1:9'], prefix: '/fixture', backoff: { initial: 60_000 } });
await away.start({ onChangeSet: () => {}, onState: () => {} }).catch(() => {});
await away.stop();
console.log('stopped-in-backoff');
console.log('stopped');
