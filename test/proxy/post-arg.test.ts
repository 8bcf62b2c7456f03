/**
 * `post_arg.*` route vars through the gateway process, on both transports: the body is read only
 * for routes whose vars need it, decoded by Content-Type, and forwarded unchanged; a body over the
 * limit is not matched by post_arg routes (APISIX: max_post_args_readable_size) but still reaches
 * another route, whole; a normal route's upload keeps streaming. Cases from APISIX's
 * t/admin/routes_request_body.t and t/core/ctx3.t.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { startGateway, type GatewayProcess } from '../helpers/gateway.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream.ts';

const MiB = 1024 * 1024;

interface Seen {
  upstream: string;
  body: Buffer;
  headers: http.IncomingHttpHeaders;
}

interface Reply {
  status: number;
  upstream: string | undefined;
}

/** One request; `parts` sent one after another (no Content-Length: chunked), or `body` with its length. */
function send(gw: GatewayProcess, path: string, opts: { method?: string; headers?: Record<string, string>; body?: Buffer | string; parts?: (Buffer | string)[]; agent?: http.Agent } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { ...opts.headers };
    if (opts.body !== undefined) headers['content-length'] = String(Buffer.byteLength(opts.body));
    const req = http.request(`${gw.url}${path}`, { method: opts.method ?? 'POST', headers, agent: opts.agent ?? false, timeout: 20_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString();
        let upstream: string | undefined;
        try {
          upstream = (JSON.parse(text) as { upstream?: string }).upstream;
        } catch {
          upstream = undefined;
        }
        resolve({ status: res.statusCode!, upstream });
      });
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('request timed out')));
    if (opts.body !== undefined) req.end(opts.body);
    else if (opts.parts !== undefined) {
      for (const p of opts.parts) req.write(p);
      req.end();
    } else req.end();
  });
}

const digest = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

const multipart = '--testboundary\r\nContent-Disposition: form-data; name="model"\r\n\r\nopenai\r\n--testboundary--\r\n';
const image = JSON.stringify({ model: 'deepseek', messages: [{ role: 'system', content: [{ text: 'You are a mathematician', type: 'text' }, { text: 'x', type: 'image_url' }] }] });
const textOnly = JSON.stringify({ model: 'deepseek', messages: [{ role: 'system', content: [{ text: 'You are a mathematician', type: 'text' }] }] });
/** `{"model":"<model>","pad":"aaa..."}` of exactly `size` bytes */
const padded = (size: number, model = 'special'): string => {
  const head = `{"model":"${model}","pad":"`;
  return head + 'a'.repeat(size - head.length - 2) + '"}';
};

for (const transport of ['socket', 'node'] as const) {
  describe(`post_arg vars through the gateway (${transport} transport)`, () => {
    const ups: Record<string, TestUpstream> = {};
    const seen: Seen[] = [];
    /** resolves when the streaming upstream gets its first body bytes */
    let firstBytes: (() => void) | undefined;
    let gw: GatewayProcess;

    before(async () => {
      for (const name of ['openai', 'deepseek', 'image', 'nested', 'form', 'special', 'plain']) {
        ups[name] = await startUpstream(name, (req, res) => {
          const chunks: Buffer[] = [];
          req.on('data', (c: Buffer) => chunks.push(c));
          req.on('end', () => {
            seen.push({ upstream: name, body: Buffer.concat(chunks), headers: req.headers });
            res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ upstream: name }));
          });
        });
      }
      ups.stream = await startUpstream('stream', (req, res) => {
        let n = 0;
        req.on('data', (c: Buffer) => {
          if (n === 0) firstBytes?.();
          n += c.length;
        });
        req.on('end', () => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ upstream: 'stream', bytes: n })));
      });
      const up = (name: string) => ({ type: 'roundrobin', nodes: { [ups[name]!.address]: 1 } });
      gw = await startGateway({
        proxy: { transport },
        routes: {
          routes: [
            { id: 'openai', uri: '/hello', vars: [[['post_arg.model', '==', 'openai']]], upstream: up('openai') },
            { id: 'deepseek', uri: '/hello', vars: [['post_arg.model', '==', 'deepseek']], upstream: up('deepseek') },
            { id: 'image', uri: '/image', vars: [['post_arg.messages[*].content[*].type', 'has', 'image_url']], upstream: up('image') },
            { id: 'nested', uri: '/nested', vars: [['post_arg.model.name', '==', 'deepseek']], upstream: up('nested') },
            { id: 'form', uri: '/form', methods: ['POST'], vars: [['post_arg_test', '==', 'test']], upstream: up('form') },
            // a post_arg route tried first, a plain one behind it on the same uri
            { id: 'special', uri: '/either', priority: 10, vars: [['post_arg.model', '==', 'special']], upstream: up('special') },
            { id: 'plain', uri: '/either', upstream: up('plain') },
            { id: 'upload', uri: '/upload/*', upstream: up('stream') },
          ],
        },
      });
    });

    after(async () => {
      await gw?.cleanup();
      for (const u of Object.values(ups)) await u.close();
    });

    // [description, path, content type, body, expected upstream (undefined: 404)]
    const table: [string, string, string | undefined, string, string | undefined][] = [
      ['JSON, model openai', '/hello', 'application/json', '{ "model":"openai", "messages": [ { "role": "system", "content": "You are a mathematician" }] }', 'openai'],
      ['JSON, model deepseek', '/hello', 'application/json', '{ "model":"deepseek" }', 'deepseek'],
      ['JSON, another model', '/hello', 'application/json', '{ "model":"other" }', undefined],
      ['JSON, missing field', '/hello', 'application/json', '{ "name":"openai" }', undefined],
      ['urlencoded', '/hello', 'application/x-www-form-urlencoded', 'model=openai&messages[0][role]=system&messages[0][content]=You%20are%20a%20mathematician', 'openai'],
      ['multipart', '/hello', 'multipart/form-data; boundary=testboundary', multipart, 'openai'],
      ['no content type', '/hello', undefined, multipart, undefined],
      ['wrong content type', '/hello', 'text/plain', '{ "model":"openai" }', undefined],
      ['malformed JSON', '/hello', 'application/json', '{ "model":"openai"', undefined],
      ['JSONPath has image_url', '/image', 'application/json', image, 'image'],
      ['JSONPath without image_url', '/image', 'application/json', textOnly, undefined],
      ['nested JSON path', '/nested', 'application/json', '{ "model": {"name": "deepseek"} }', 'nested'],
      ['nested JSON path, flat value', '/nested', 'application/json', '{ "model": "deepseek" }', undefined],
      ['post_arg_<name>, urlencoded', '/form', 'application/x-www-form-urlencoded', 'test=test', 'form'],
      ['post_arg_<name>, mismatch', '/form', 'application/x-www-form-urlencoded', 'test=other', undefined],
      ['post_arg_<name> ignores JSON', '/form', 'application/json', '{"test":"test"}', undefined],
      ['post_arg route first, its field matches', '/either', 'application/json', '{"model":"special"}', 'special'],
      ['post_arg route first, falls through to the plain route', '/either', 'application/json', '{"model":"x"}', 'plain'],
    ];
    for (const [name, path, type, body, expected] of table) {
      test(name, async () => {
        const reply = await send(gw, path, { headers: type === undefined ? {} : { 'content-type': type }, body });
        assert.equal(reply.status, expected === undefined ? 404 : 200);
        assert.equal(reply.upstream, expected);
      });
    }

    test('a body-less GET sees no post args', async () => {
      assert.equal((await send(gw, '/hello', { method: 'GET' })).status, 404);
      assert.equal((await send(gw, '/either', { method: 'GET' })).upstream, 'plain');
    });

    test('the upstream receives the exact body bytes, with the same Content-Length', async () => {
      const body = Buffer.from('{"model":"openai","text":"héllo\\u0000","n":[1,2,3]}');
      seen.length = 0;
      assert.equal((await send(gw, '/hello', { headers: { 'content-type': 'application/json' }, body })).upstream, 'openai');
      assert.equal(seen.length, 1);
      assert.deepEqual(seen[0]!.body, body);
      assert.equal(seen[0]!.headers['content-length'], String(body.length));
    });

    test('a chunked body is matched on and forwarded re-chunked, same bytes', async () => {
      const parts = ['{"model":', '"deep', 'seek","x":"', 'y'.repeat(70_000), '"}'];
      seen.length = 0;
      assert.equal((await send(gw, '/hello', { headers: { 'content-type': 'application/json' }, parts })).upstream, 'deepseek');
      assert.deepEqual(seen[0]!.body, Buffer.from(parts.join('')));
      assert.equal(seen[0]!.headers['transfer-encoding'], 'chunked');
      assert.equal(seen[0]!.headers['content-length'], undefined);
    });

    test('a body of exactly the limit (1 MiB) is matched on', async () => {
      const body = padded(MiB);
      assert.equal(Buffer.byteLength(body), MiB);
      assert.equal((await send(gw, '/either', { headers: { 'content-type': 'application/json' }, body })).upstream, 'special');
    });

    test('a body over the limit (Content-Length) is not matched by post_arg routes and reaches the plain route whole', async () => {
      const body = Buffer.from(padded(2 * MiB));
      seen.length = 0;
      const reply = await send(gw, '/either', { headers: { 'content-type': 'application/json' }, body });
      assert.equal(reply.upstream, 'plain');
      assert.equal(seen[0]!.body.length, body.length);
      assert.equal(digest(seen[0]!.body), digest(body));
      // with no other route: 404 (APISIX t/core/ctx3.t TEST 8), the connection still usable
      const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
      try {
        assert.equal((await send(gw, '/hello', { headers: { 'content-type': 'application/json' }, body: padded(2 * MiB, 'openai'), agent })).status, 404);
        assert.equal((await send(gw, '/hello', { headers: { 'content-type': 'application/json' }, body: '{"model":"openai"}', agent })).upstream, 'openai');
      } finally {
        agent.destroy();
      }
    });

    test('a chunked body over the limit: what was read, then the rest, reaches the plain route unchanged', async () => {
      const chunks = (text: string): string[] => {
        const parts: string[] = [];
        for (let i = 0; i < text.length; i += 100_000) parts.push(text.slice(i, i + 100_000));
        return parts;
      };
      const text = padded(3 * MiB);
      seen.length = 0;
      const reply = await send(gw, '/either', { headers: { 'content-type': 'application/json' }, parts: chunks(text) });
      assert.equal(reply.upstream, 'plain');
      assert.equal(digest(seen[0]!.body), digest(Buffer.from(text)));
      assert.equal(seen[0]!.headers['transfer-encoding'], 'chunked');
      // with no other route: 404, the rest of the body read and dropped, the connection still usable
      const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
      try {
        assert.equal((await send(gw, '/hello', { headers: { 'content-type': 'application/json' }, parts: chunks(padded(3 * MiB, 'openai')), agent })).status, 404);
        assert.equal((await send(gw, '/hello', { headers: { 'content-type': 'application/json' }, body: '{"model":"openai"}', agent })).upstream, 'openai');
      } finally {
        agent.destroy();
      }
    });

    test('a multipart body over the limit is not matched (APISIX t/core/ctx3.t TEST 11)', async () => {
      const body = '--boundary\r\nContent-Disposition: form-data; name="model"\r\n\r\nopenai\r\n--boundary\r\nContent-Disposition: form-data; name="pad"\r\n\r\n' + 'a'.repeat(2 * MiB) + '\r\n--boundary--\r\n';
      assert.equal((await send(gw, '/hello', { headers: { 'content-type': 'multipart/form-data; boundary=boundary' }, body })).status, 404);
    });

    test('keep-alive: post_arg requests one after another on one connection', async () => {
      const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
      try {
        for (const model of ['openai', 'deepseek', 'openai']) {
          assert.equal((await send(gw, '/hello', { headers: { 'content-type': 'application/json' }, body: `{"model":"${model}"}`, agent })).upstream, model);
        }
      } finally {
        agent.destroy();
      }
    });

    test('Expect: 100-continue on a post_arg route: the body is asked for, read and matched', async () => {
      const status = await new Promise<number>((resolve, reject) => {
        const body = '{"model":"openai"}';
        const req = http.request(`${gw.url}/hello`, { method: 'POST', agent: false, headers: { 'content-type': 'application/json', 'content-length': String(body.length), expect: '100-continue' } }, (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode!));
        });
        req.on('continue', () => req.end(body));
        req.on('error', reject);
      });
      assert.equal(status, 200);
    });

    test('a normal route upload streams: the upstream sees the first bytes before the client has sent the rest', async () => {
      const arrived = new Promise<void>((resolve) => (firstBytes = resolve));
      const result = new Promise<{ status: number; bytes: number }>((resolve, reject) => {
        const req = http.request(`${gw.url}/upload/big`, { method: 'POST', agent: false, headers: { 'content-type': 'application/json' } }, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve({ status: res.statusCode!, bytes: (JSON.parse(Buffer.concat(chunks).toString()) as { bytes: number }).bytes }));
        });
        req.on('error', reject);
        // a JSON-looking body, 64 KiB now, the rest only once the upstream has seen the start
        req.write('{"model":"openai","pad":"' + 'a'.repeat(64 * 1024));
        void Promise.race([arrived, new Promise((_, r) => setTimeout(() => r(new Error('the upstream saw no bytes while the client was still sending')), 5000))])
          .then(() => req.end('"}'), (err: Error) => req.destroy(err));
      });
      const { status, bytes } = await result;
      assert.equal(status, 200);
      assert.equal(bytes, 64 * 1024 + 27);
    });

    test('pipelined requests after a body read for matching are answered in order', async () => {
      const body = '{"model":"deepseek"}';
      const raw =
        `POST /hello HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}` +
        `POST /hello HTTP/1.1\r\nHost: a\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nmodel\r\n7\r\n=openai\r\n0\r\n\r\n` +
        'GET /either HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n';
      const text = await new Promise<string>((resolve, reject) => {
        // write, not end: a FIN would close the connection after the first response
        const socket = net.connect(gw.port, '127.0.0.1', () => socket.write(raw));
        let out = '';
        socket.on('data', (d: Buffer) => (out += d.toString('latin1')));
        socket.on('close', () => resolve(out));
        socket.on('error', reject);
        socket.setTimeout(10_000, () => socket.destroy(new Error('no answer')));
      });
      const upstreams = [...text.matchAll(/"upstream":"(\w+)"/g)].map((m) => m[1]);
      assert.deepEqual(upstreams, ['deepseek', 'openai', 'plain']);
    });

    test('a client that leaves mid-body while it is read for matching: nothing sent upstream, the gateway serves on', async () => {
      const before = ups.openai!.requests.length + ups.deepseek!.requests.length;
      await new Promise<void>((resolve) => {
        const socket = net.connect(gw.port, '127.0.0.1', () => {
          socket.write('POST /hello HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"model":"openai"');
          setTimeout(() => socket.destroy(), 100);
        });
        socket.on('close', () => resolve());
        socket.on('error', () => {});
      });
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(ups.openai!.requests.length + ups.deepseek!.requests.length, before);
      assert.equal((await send(gw, '/hello', { headers: { 'content-type': 'application/json' }, body: '{"model":"openai"}' })).upstream, 'openai');
    });

    test('a post_arg route buffers: its upstream sees nothing until the body has ended', async () => {
      const requestsBefore = ups.openai!.requests.length;
      let requestsMidBody = -1;
      const status = await new Promise<number>((resolve, reject) => {
        const req = http.request(`${gw.url}/hello`, { method: 'POST', agent: false, headers: { 'content-type': 'application/json' } }, (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode!));
        });
        req.on('error', reject);
        req.write('{"model":"open');
        setTimeout(() => {
          requestsMidBody = ups.openai!.requests.length;
          req.end('ai"}');
        }, 300);
      });
      assert.equal(requestsMidBody, requestsBefore, 'no request upstream before the body ended');
      assert.equal(status, 200);
      assert.equal(ups.openai!.requests.length, requestsBefore + 1);
    });
  });
}
