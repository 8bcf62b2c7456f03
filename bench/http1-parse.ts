/**
 * Micro-benchmark of the HTTP/1.1 codec (src/proxy/http1): CPU ns per request and requests/s on one
 * core, for the parser alone (head object, header list and body slices built, handler called),
 * next to node's own llhttp binding fed the same bytes (the C parser node:http runs, with a JS
 * callback receiving the header array; no IncomingMessage, no socket: not what node:http costs,
 * only its parsing step). Run: node --import tsx bench/http1-parse.ts [seconds per case, default 2]
 */
import { RequestParser, type RequestHead } from '../src/proxy/http1/request-parser.ts';
import { ResponseParser } from '../src/proxy/http1/response-parser.ts';

const seconds = Number(process.argv[2] ?? 2);

// a typical browser-ish GET: ~300 bytes, 8 headers
const GET =
  'GET /api/v1/users/12345/orders?limit=20&offset=40 HTTP/1.1\r\n' +
  'Host: api.example.com\r\n' +
  'User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101\r\n' +
  'Accept: application/json, text/plain, */*\r\n' +
  'Accept-Language: en-US,en;q=0.5\r\n' +
  'Accept-Encoding: gzip, deflate, br\r\n' +
  'Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30.abc\r\n' +
  'X-Request-Id: 7f9c2b1e-4d3a-4c2b-9e1f-0a1b2c3d4e5f\r\n' +
  'Connection: keep-alive\r\n' +
  '\r\n';
const POST =
  'POST /api/v1/orders HTTP/1.1\r\nHost: api.example.com\r\nContent-Type: application/json\r\nContent-Length: 64\r\n\r\n' +
  '{"item":"0123456789","quantity":12,"note":"abcdefghijklmnopqrst"}'.slice(0, 64);
const CHUNKED = 'POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n0123456789abcdef\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n';
const RESPONSE =
  'HTTP/1.1 200 OK\r\nServer: nginx/1.24.0\r\nDate: Mon, 01 Jan 2024 00:00:00 GMT\r\nContent-Type: text/plain\r\n' +
  'Content-Length: 13\r\nConnection: keep-alive\r\n\r\nHello, world!';

interface Result {
  name: string;
  nsPerRequest: number;
}

function measure(name: string, bytes: Buffer, batch: number, parseBatch: () => void): Result {
  // warm up, then the best of 5 rounds of CPU time (process.cpuUsage: time the process ran, so a
  // busy machine that deschedules it does not count)
  const warm = Date.now() + 300;
  while (Date.now() < warm) parseBatch();
  let best = Infinity;
  for (let round = 0; round < 5; round++) {
    let n = 0;
    const start = process.cpuUsage();
    const stop = Date.now() + (seconds * 1000) / 5;
    while (Date.now() < stop) {
      for (let k = 0; k < 100; k++) parseBatch();
      n += 100 * batch;
    }
    const used = process.cpuUsage(start);
    best = Math.min(best, ((used.user + used.system) * 1000) / n);
  }
  const ns = best;
  console.log(`${name.padEnd(58)} ${ns.toFixed(0).padStart(6)} ns/req  ${(1e9 / ns / 1000).toFixed(0).padStart(6)}k req/s  (${bytes.length} B)`);
  return { name, nsPerRequest: ns };
}

function portico(name: string, text: string): Result {
  let heads = 0;
  let sink = 0;
  const handler = {
    onHead(h: RequestHead) {
      heads++;
      sink += h.rawHeaders.length;
    },
    onBody(b: Buffer) {
      sink += b.length;
    },
    onEnd() {},
  };
  const parser = new RequestParser(handler);
  // 16 pipelined requests per chunk, as a keep-alive connection under load delivers them, and one per chunk
  const one = Buffer.from(text, 'latin1');
  const r = measure(`portico ${name} (1 per chunk)`, one, 1, () => {
    parser.execute(one);
  });
  const many = Buffer.from(text.repeat(16), 'latin1');
  measure(`portico ${name} (16 pipelined per chunk)`, many, 16, () => {
    parser.execute(many);
  });
  if (heads === 0 || sink < 0) throw new Error('nothing parsed');
  return r;
}

function llhttp(name: string, text: string): Result | undefined {
  let binding: { HTTPParser: any; allMethods?: string[] };
  try {
    // the C parser under node:http (deprecated accessor, still present in Node 20-24)
    const warn = process.emitWarning;
    process.emitWarning = () => {};
    binding = (process as any).binding('http_parser');
    process.emitWarning = warn;
  } catch {
    console.log('llhttp binding not reachable on this Node; skipped');
    return undefined;
  }
  const { HTTPParser } = binding;
  const parser = new HTTPParser();
  parser.initialize(HTTPParser.REQUEST, {}, 0, 0);
  let sink = 0;
  parser[HTTPParser.kOnHeadersComplete] = (_maj: number, _min: number, headers: string[], _m: number, url: string) => {
    sink += headers.length + url.length;
    return 0;
  };
  parser[HTTPParser.kOnBody] = (b: Buffer) => {
    sink += b.length;
  };
  parser[HTTPParser.kOnMessageComplete] = () => {};
  const one = Buffer.from(text, 'latin1');
  const r = measure(`node llhttp binding ${name} (1 per chunk)`, one, 1, () => {
    parser.execute(one);
  });
  const many = Buffer.from(text.repeat(16), 'latin1');
  measure(`node llhttp binding ${name} (16 pipelined per chunk)`, many, 16, () => {
    parser.execute(many);
  });
  if (sink < 0) throw new Error('nothing parsed');
  return r;
}

function response(): void {
  let sink = 0;
  const parser = new ResponseParser({
    onHead(h) {
      sink += h.status;
    },
    onBody(b) {
      sink += b.length;
    },
    onEnd() {},
    onInterim() {},
  });
  const one = Buffer.from(RESPONSE, 'latin1');
  measure('portico response 200 + 13 B body (1 per chunk)', one, 1, () => {
    parser.expectResponse('GET');
    parser.execute(one);
  });
  if (sink < 0) throw new Error('nothing parsed');
}

console.log(`node ${process.version}, ${seconds} s per case`);
const ours = portico('GET 8 headers', GET);
const theirs = llhttp('GET 8 headers', GET);
portico('POST 64 B body', POST);
llhttp('POST 64 B body', POST);
portico('POST chunked 2x16 B', CHUNKED);
llhttp('POST chunked 2x16 B', CHUNKED);
response();
if (theirs) console.log(`\nGET 8 headers: portico / llhttp binding time = ${(ours.nsPerRequest / theirs.nsPerRequest).toFixed(2)}x`);
