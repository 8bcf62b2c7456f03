import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import { parseListen } from '../config/listen.ts';

/**
 * The demo upstream `npm start` runs beside the gateway, so the bundled example routes answer
 * out of the box: it echoes the request it got (method, path, headers) as JSON.
 */
export async function startDemoUpstream(listen: string): Promise<Server> {
  const { host, port } = parseListen(listen);
  const server = createServer((req, res) => {
    let size = 0;
    req.on('data', (c: Buffer) => (size += c.length));
    req.on('end', () => {
      const body = JSON.stringify({ upstream: 'portico-demo', method: req.method, url: req.url, headers: req.headers, body_bytes: size }, null, 2);
      res.writeHead(200, { 'content-type': 'application/json' }).end(body + '\n');
    });
  });
  server.listen(port, host);
  await once(server, 'listening');
  return server;
}
