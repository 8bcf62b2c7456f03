/**
 * The fuzz loop of test/proxy/http1-fuzz.test.ts, run in a worker thread so that the test can
 * terminate it if the parser ever spins (a synchronous loop cannot be interrupted from its own
 * thread). Posts progress every 100 ms; the inputs are a pure function of (seed, iteration), so a
 * failure or a stall is reproducible from the numbers it reports.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { parseRequests, parseResponses, prng, type Split } from './http1-harness.ts';

interface Options {
  seconds: number;
  seed: number;
}

const REQUEST_SEEDS = [
  'GET / HTTP/1.1\r\nHost: x\r\n\r\n',
  'GET /a/b?c=d#e HTTP/1.1\r\nHost: example.com\r\nUser-Agent: fuzz\r\nAccept: */*\r\nConnection: keep-alive\r\n\r\n',
  'POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello',
  'POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3;a=b\r\nabc\r\n5;q="x\\"y"\r\nhello\r\n0\r\nX-T: 1\r\n\r\n',
  'GET /1 HTTP/1.1\r\nHost: x\r\n\r\nPOST /2 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET /3 HTTP/1.1\r\nHost: x\r\n\r\n',
  'GET /1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /2 HTTP/1.0\r\n\r\n',
  'GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n\x81\x00',
  'GET http://h:80/p HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok',
  'OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n',
  'CONNECT h:443 HTTP/1.1\r\nHost: h\r\n\r\ntunnel',
  'GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET /after HTTP/1.1\r\n\r\n',
];

const RESPONSE_SEEDS: [string, string[]][] = [
  ['HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello', ['GET']],
  ['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=1\r\nhello\r\n0\r\nX: y\r\n\r\n', ['GET']],
  ['HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n', ['POST']],
  ['HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 304 Not Modified\r\nETag: "a"\r\n\r\n', ['GET', 'GET']],
  ['HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil close', ['GET']],
  ['HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n', ['HEAD']],
  ['HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x00', ['GET']],
];

// bytes and fragments that sit on the parser's decision points
const SPECIAL_BYTES = [13, 10, 32, 9, 58, 59, 44, 61, 34, 92, 48, 102, 0, 0x7f, 0x80, 0xff, 0x0b, 0x0c, 97, 45, 47, 63, 35, 64, 72];
const FRAGMENTS = [
  '\r\n', '\r\n\r\n', '\n', '\r', 'Content-Length: 5\r\n', 'Content-Length: 0\r\n', 'Transfer-Encoding: chunked\r\n',
  'Transfer-Encoding: gzip\r\n', 'Connection: close\r\n', 'Connection: keep-alive\r\n', 'Connection: upgrade\r\nUpgrade: x\r\n',
  ' chunked', '0\r\n\r\n', 'ffffffffffffffffff', ';ext="v"', 'HTTP/1.1', 'HTTP/1.0', 'GET / HTTP/1.1\r\n', 'X: y\r\n', ' ', '\t', ':',
];

const pickOf = (rnd: () => number) => <T>(list: readonly T[]): T => list[Math.floor(rnd() * list.length)]!;

/** a random printable (sometimes obs-text or inner tab) header value */
function value(rnd: () => number): string {
  let v = '';
  const n = Math.floor(rnd() * 24);
  for (let k = 0; k < n; k++) {
    const r = rnd();
    v += r < 0.05 ? '\t' : r < 0.1 ? String.fromCharCode(0x80 + Math.floor(rnd() * 128)) : String.fromCharCode(0x21 + Math.floor(rnd() * 94));
  }
  // inner whitespace only: surrounding whitespace is not part of a value
  return v.replace(/^[\t ]+|[\t ]+$/g, '') || 'v';
}

/** a body framed as chunked: random chunk sizes (hex in either case), sometimes extensions and trailers */
function chunked(rnd: () => number, body: string): string {
  const pick = pickOf(rnd);
  let out = '';
  for (let i = 0; i < body.length; ) {
    const n = 1 + Math.floor(rnd() * 20);
    const part = body.slice(i, i + n);
    const size = rnd() < 0.5 ? part.length.toString(16) : part.length.toString(16).toUpperCase();
    out += size + (rnd() < 0.2 ? pick([';a', ';a=b', ';a="b c"', ';x;y=z']) : '') + '\r\n' + part + '\r\n';
    i += n;
  }
  return out + '0\r\n' + (rnd() < 0.3 ? `X-Trailer: ${value(rnd)}\r\n` : '') + '\r\n';
}

/** 1 to 4 valid requests in a row (keep-alive, bodies of every framing) */
function generateRequests(rnd: () => number): string {
  const pick = pickOf(rnd);
  let out = rnd() < 0.1 ? '\r\n' : '';
  const n = 1 + Math.floor(rnd() * 4);
  for (let k = 0; k < n; k++) {
    const method = pick(['GET', 'POST', 'PUT', 'DELETE', 'HEAD', 'OPTIONS', 'PATCH', 'PROPFIND']);
    const target = method === 'OPTIONS' && rnd() < 0.3 ? '*' : pick(['/', '/a/b?c=d&e', '/x%20y/~z', 'http://h.example:8080/p?q', '/' + 'p'.repeat(Math.floor(rnd() * 200))]);
    const version = rnd() < 0.8 ? '1.1' : '1.0';
    let head = `${method} ${target} HTTP/${version}\r\n`;
    if (version === '1.1' || rnd() < 0.5) head += `${pick(['Host', 'host', 'HOST'])}:${pick([' ', '', '\t', '  '])}h.example${pick(['', ' ', '\t'])}\r\n`;
    for (let h = Math.floor(rnd() * 6); h > 0; h--) head += `${pick(['Accept', 'User-Agent', 'X-Custom-Header', 'cookie', 'X_Under', "x!#$%&'*+-.^_`|~"])}: ${value(rnd)}\r\n`;
    if (version === '1.0' ? rnd() < 0.7 : rnd() < 0.2) head += `Connection: ${version === '1.0' ? 'keep-alive' : pick(['keep-alive', 'Keep-Alive', 'foo, keep-alive'])}\r\n`;
    const body = rnd() < 0.5 ? '' : 'b'.repeat(Math.floor(rnd() * 60)) + '\r\n\x00\xff';
    const framing = body === '' ? pick(['none', 'length']) : version === '1.0' ? 'length' : pick(['length', 'chunked']);
    if (framing === 'length') head += `Content-Length: ${body.length}\r\n`;
    if (framing === 'chunked') head += 'Transfer-Encoding: chunked\r\n';
    out += head + '\r\n' + (framing === 'chunked' ? chunked(rnd, body) : body);
  }
  return out;
}

/** 1 to 3 valid responses and the methods they answer */
function generateResponses(rnd: () => number): [string, string[]] {
  const pick = pickOf(rnd);
  let out = '';
  const methods: string[] = [];
  const n = 1 + Math.floor(rnd() * 3);
  for (let k = 0; k < n; k++) {
    const method = pick(['GET', 'GET', 'HEAD', 'POST']);
    methods.push(method);
    if (rnd() < 0.2) out += pick(['HTTP/1.1 100 Continue\r\n\r\n', 'HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n']);
    const status = pick([200, 201, 204, 301, 304, 404, 500, 503]);
    let head = `HTTP/1.1 ${status}${pick([' OK', ' ', '', ' Some Reason \xe9'])}\r\n`;
    for (let h = Math.floor(rnd() * 5); h > 0; h--) head += `${pick(['Server', 'Date', 'X-Upstream', 'set-cookie'])}: ${value(rnd)}\r\n`;
    const noBody = method === 'HEAD' || status === 204 || status === 304;
    const body = noBody ? '' : 'r'.repeat(Math.floor(rnd() * 50));
    const last = k === n - 1;
    // until-close framing only for the last response on the connection
    const framing = last && rnd() < 0.2 ? 'close' : pick(['length', 'chunked']);
    if (framing === 'length') head += `Content-Length: ${noBody && method === 'HEAD' ? 1234 : body.length}\r\n`;
    if (framing === 'chunked') head += 'Transfer-Encoding: chunked\r\n';
    out += head + '\r\n' + (noBody ? '' : framing === 'chunked' ? chunked(rnd, body) : body);
    if (framing === 'close') break;
  }
  return [out, methods];
}

function mutate(rnd: () => number, seed: string, maxRounds = 4): Buffer {
  let bytes = [...Buffer.from(seed, 'latin1')];
  const pick = <T>(list: readonly T[]): T => list[Math.floor(rnd() * list.length)]!;
  const at = () => Math.floor(rnd() * (bytes.length + 1));
  const rounds = Math.floor(rnd() * (maxRounds + 1));
  for (let r = 0; r < rounds; r++) {
    const op = Math.floor(rnd() * 7);
    const i = at();
    if (op === 0 && bytes.length > 0) bytes[Math.min(i, bytes.length - 1)] = pick(SPECIAL_BYTES);
    else if (op === 1) bytes.splice(i, 0, pick(SPECIAL_BYTES));
    else if (op === 2) bytes.splice(i, 0, ...Buffer.from(pick(FRAGMENTS), 'latin1'));
    else if (op === 3) bytes.splice(i, 1 + Math.floor(rnd() * 8));
    else if (op === 4) bytes.splice(i, 0, ...bytes.slice(i, i + 1 + Math.floor(rnd() * 40)));
    else if (op === 5) bytes = bytes.slice(0, i);
    else if (bytes.length > 0) bytes[Math.min(i, bytes.length - 1)] = Math.floor(rnd() * 256);
  }
  return Buffer.from(bytes);
}

type Verdict = { error?: string; completed: number };

/**
 * node's own llhttp, in process (the binding node:http runs), as an oracle: refused there must mean
 * refused here. undefined when this Node does not expose it.
 */
function llhttpOracle(): ((bytes: Buffer) => Verdict) | undefined {
  let HTTPParser: any;
  try {
    const emit = process.emitWarning;
    process.emitWarning = () => {};
    try {
      HTTPParser = (process as any).binding('http_parser').HTTPParser;
    } finally {
      process.emitWarning = emit;
    }
  } catch {
    return undefined;
  }
  return (bytes) => {
    const parser = new HTTPParser();
    parser.initialize(HTTPParser.REQUEST, {}, 0, 0);
    let completed = 0;
    let upgrade = false;
    parser[HTTPParser.kOnHeadersComplete] = (_a: number, _b: number, _h: string[], _m: number, _u: string, _s: number, _r: string, up: boolean) => {
      if (up) upgrade = true;
      // as node:http's server with an 'upgrade' listener: skip the body of an upgrade request
      return up ? 2 : 0;
    };
    parser[HTTPParser.kOnBody] = () => {};
    parser[HTTPParser.kOnMessageComplete] = () => {
      completed++;
    };
    const verdict = (r: unknown): Verdict => {
      if (r instanceof Error) {
        const code = (r as NodeJS.ErrnoException).code!;
        // data after `Connection: close`: served, then ignored by us, refused by llhttp
        return code === 'HPE_CLOSED_CONNECTION' ? { completed } : { error: code, completed };
      }
      return { completed };
    };
    const r = parser.execute(bytes);
    if (r instanceof Error || upgrade) return verdict(r);
    return verdict(parser.finish());
  };
}

function run({ seconds, seed }: Options) {
  const oracle = llhttpOracle();
  const deadline = Date.now() + seconds * 1000;
  let lastReport = Date.now();
  let iteration = 0;
  let requests = 0;
  let responses = 0;
  let refused = 0;
  let checkedAgainstLlhttp = 0;
  let responsesValid = 0;
  let responsesRefused = 0;
  for (; Date.now() < deadline; iteration++) {
    if (Date.now() - lastReport >= 100) {
      parentPort!.postMessage({ type: 'progress', iteration });
      lastReport = Date.now();
    }
    const rnd = prng(seed * 1_000_003 + iteration);
    let input: Buffer = Buffer.alloc(0);
    const fail = (message: string, bytes: Buffer) => {
      parentPort!.postMessage({ type: 'failure', iteration, message, input: bytes.toString('latin1') });
      return false;
    };
    try {
      if (iteration % 4 !== 3) {
        // half valid messages (then at most one mutation), half mutated seeds
        input = iteration % 2 === 0 ? mutate(rnd, generateRequests(rnd), rnd() < 0.5 ? 0 : 1) : mutate(rnd, REQUEST_SEEDS[Math.floor(rnd() * REQUEST_SEEDS.length)]!);
        requests++;
        const whole = parseRequests(input, 'whole');
        const expected = JSON.stringify(whole);
        const splits: Split[] = [{ seed: iteration }, { seed: iteration + 1 }];
        if (input.length <= 2048) splits.push('bytes');
        for (const split of splits) {
          const got = JSON.stringify(parseRequests(input, split));
          if (got !== expected) return fail(`split ${JSON.stringify(split)} differs:\n  whole: ${expected}\n  split: ${got}`, input);
        }
        const paused = JSON.stringify(parseRequests(input, { seed: iteration + 2 }, undefined, true));
        if (paused !== expected) return fail(`pausing on every event differs:\n  plain:  ${expected}\n  paused: ${paused}`, input);
        if (whole.error) refused++;
        if (oracle) {
          const theirs = oracle(input);
          checkedAgainstLlhttp++;
          const servedHere = whole.requests.filter((r) => r.complete || r.upgrade).length;
          if (theirs.error !== undefined && whole.error === undefined && servedHere > theirs.completed) {
            return fail(`llhttp refused (${theirs.error}) after ${theirs.completed} requests, we served ${servedHere}: ${expected}`, input);
          }
        }
      } else {
        const [text, methods] = iteration % 8 === 3 ? generateResponses(rnd) : RESPONSE_SEEDS[Math.floor(rnd() * RESPONSE_SEEDS.length)]!;
        input = mutate(rnd, text, iteration % 8 === 3 ? (rnd() < 0.5 ? 0 : 1) : 4);
        if (iteration % 8 === 3) responsesValid++;
        responses++;
        const outcome = parseResponses(input, methods, 'whole');
        if (outcome.error) responsesRefused++;
        const expected = JSON.stringify(outcome);
        for (const split of [{ seed: iteration }, 'bytes'] as Split[]) {
          const got = JSON.stringify(parseResponses(input, methods, split));
          if (got !== expected) return fail(`response split ${JSON.stringify(split)} differs:\n  whole: ${expected}\n  split: ${got}`, input);
        }
      }
    } catch (err) {
      return fail(`threw: ${(err as Error).stack}`, input);
    }
  }
  parentPort!.postMessage({ type: 'done', iterations: iteration, requests, responses, refused, checkedAgainstLlhttp, responsesValid, responsesRefused });
  return true;
}

run(workerData as Options);
