// The ceiling of a Node proxy on this machine, for `npm run bench -- --targets relay`: a byte relay
// on node:net with no HTTP at all (no parsing, no routing, no headers: each client connection is
// piped to its own upstream connection). What Portico does per request on top of this is its cost;
// what this costs is node's socket layer and the kernel's, which every Node proxy pays.
//   node bench/relay.mjs <listen port> <upstream port>
import net from 'node:net';

const [port, upstreamPort] = process.argv.slice(2).map(Number);
net
  .createServer({ noDelay: true }, (client) => {
    const upstream = net.connect({ host: '127.0.0.1', port: upstreamPort, noDelay: true });
    client.on('data', (chunk) => upstream.write(chunk));
    upstream.on('data', (chunk) => client.write(chunk));
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
    client.on('error', () => {});
    upstream.on('error', () => {});
  })
  .listen(port, '127.0.0.1');
