/**
 * Differential test of the request parser (src/proxy/http1/request-parser.ts) against node:http's
 * llhttp in its default (strict) mode: the same bytes go over a raw loopback socket to a real
 * node:http server, which records what it parsed (requests, bodies, keep-alive, upgrade) or the
 * clientError it raised, and to our parser in several split patterns (whole, byte by byte, random
 * cuts). The verdicts must agree: accept/reject, and for what is accepted the method, target,
 * version, raw headers, body bytes, keep-alive and the number of pipelined requests.
 *
 * Where we refuse what llhttp accepts, on purpose, the case is listed in STRICTER with the reason,
 * and the test checks the listed difference is the one that happens (so the table stays true).
 * There is no case where we accept what llhttp refuses.
 */
import assert from 'node:assert/strict';
import { createServer, METHODS, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { Http1ErrorCode as E } from '../../src/proxy/http1/errors.ts';
import { parseRequests, type RequestOutcome, type SeenRequest, type Split } from './http1-harness.ts';

interface Case {
  name: string;
  bytes: string;
}

// ---------------------------------------------------------------------------------------------
// The cases, generated family by family
// ---------------------------------------------------------------------------------------------

const H = 'Host: x\r\n';
const hex = (b: number) => '0x' + b.toString(16).padStart(2, '0');
const get = (headers = '', target = '/') => `GET ${target} HTTP/1.1\r\n${H}${headers}\r\n`;
const post = (headers: string, body: string) => `POST /p HTTP/1.1\r\n${H}${headers}\r\n${body}`;
const CHUNKED = 'Transfer-Encoding: chunked\r\n';
const SMUGGLED = 'GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n';

function generateCases(): Case[] {
  const cases: Case[] = [];
  const add = (name: string, bytes: string) => cases.push({ name, bytes });

  // --- methods: every method node knows, then what it does not
  for (const m of METHODS) add(`method ${m}`, m === 'CONNECT' ? `CONNECT x:443 HTTP/1.1\r\n${H}\r\n` : `${m} / HTTP/1.1\r\n${H}\r\n`);
  for (const m of ['get', 'Get', 'GETX', 'FOO', 'PRI', 'DESCRIBE', 'RECORD', 'M-SEARCHX', 'G\x00T', 'GET\t', 'A'.repeat(40), 'PO ST', '-', 'GET,']) {
    add(`method ${JSON.stringify(m)}`, `${m} / HTTP/1.1\r\n${H}\r\n`);
  }
  add('method missing (request line starts with a space)', ` / HTTP/1.1\r\n${H}\r\n`);
  add('PRI * HTTP/2.0 preface', 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');

  // --- request-target: every byte inside a path, then shapes
  for (let b = 0; b < 256; b++) add(`target byte ${hex(b)}`, `GET /a${String.fromCharCode(b)}b HTTP/1.1\r\n${H}\r\n`);
  const targets = [
    '*', '*x', '/*', 'http://h/p?q', 'http://h', 'http://', 'HTTP://H/P', 'https://h:8443/p', 'h2c://x/', 'ftp://a@b/',
    'http://a@b/', 'http://a@b@c/', 'http://a@@b/', 'http://[::1]:80/', 'http://h?q', 'http://h#f', 'http:/h', 'http:h',
    '1http://h/', '//x/y', '?', 'a', 'a/b', '/#frag', '/?q?q#f#g', '/a%00b', '/a%zz', '/' + 'é', 'x:1', '/a/../b', '/a\\b',
  ];
  for (const t of targets) add(`target ${JSON.stringify(t)}`, `GET ${t} HTTP/1.1\r\n${H}\r\n`);
  add('target empty (two spaces)', `GET  / HTTP/1.1\r\n${H}\r\n`);
  add('two spaces before the version', `GET /  HTTP/1.1\r\n${H}\r\n`);
  add('tab between method and target', `GET\t/ HTTP/1.1\r\n${H}\r\n`);
  add('tab between target and version', `GET /\tHTTP/1.1\r\n${H}\r\n`);
  add('CONNECT authority-form', `CONNECT h:443 HTTP/1.1\r\n${H}\r\nanything`);
  add('CONNECT origin-form', `CONNECT /x HTTP/1.1\r\n${H}\r\n`);
  add('CONNECT absolute-form', `CONNECT http://h/ HTTP/1.1\r\n${H}\r\n`);
  add('CONNECT authority with two @', `CONNECT a@b@c:1 HTTP/1.1\r\n${H}\r\n`);

  // --- versions
  for (const v of ['HTTP/1.0', 'HTTP/1.1', 'HTTP/0.9', 'HTTP/1.2', 'HTTP/2.0', 'HTTP/3.0', 'HTTP/9.9', 'HTTP/1', 'HTTP/1.10', 'HTTP/11', 'http/1.1', 'HTTP/1.1x', 'HTTP/1.1 ', 'RTSP/1.0', 'ICE/1.0', 'HTTP/a.b', 'HTTP/1.1\t', 'HTTP', 'HTTPS/1.1']) {
    add(`version ${JSON.stringify(v)}`, `GET / ${v}\r\n${H}\r\n`);
  }
  add('no version (HTTP/0.9 request line)', 'GET /\r\n\r\n');
  add('no version, headers follow', `GET /\r\n${H}\r\n`);
  add('SOURCE / ICE/1.0', `SOURCE / ICE/1.0\r\n${H}\r\n`);

  // --- header names: every byte inside a name
  for (let b = 0; b < 256; b++) add(`header name byte ${hex(b)}`, get(`X${String.fromCharCode(b)}Y: v\r\n`));
  // --- header values: every byte inside, at the start and at the end of a value
  for (let b = 0; b < 256; b++) add(`header value byte ${hex(b)}`, get(`X: a${String.fromCharCode(b)}b\r\n`));
  for (const b of [0x00, 0x09, 0x0b, 0x0c, 0x0d, 0x20, 0x7f, 0x80, 0xff]) {
    add(`header value starts with ${hex(b)}`, get(`X: ${String.fromCharCode(b)}v\r\n`));
    add(`header value ends with ${hex(b)}`, get(`X: v${String.fromCharCode(b)}\r\n`));
  }

  // --- header line shapes
  add('whitespace before the first header', `GET / HTTP/1.1\r\n ${H}\r\n`);
  add('tab before the first header', `GET / HTTP/1.1\r\n\t${H}\r\n`);
  add('obs-fold (space)', get('X: a\r\n b\r\n'));
  add('obs-fold (tab)', get('X: a\r\n\tb\r\n'));
  add('obs-fold of an empty value', get('X:\r\n b\r\n'));
  add('obs-fold on Transfer-Encoding', post(`Transfer-Encoding:\r\n chunked\r\n`, '0\r\n\r\n'));
  add('space before the colon', get('X : v\r\n'));
  add('tab before the colon', get('X\t: v\r\n'));
  add('empty header name', get(': v\r\n'));
  add('header without a colon', get('X v\r\n'));
  add('header without a value', get('X:\r\n'));
  add('header value only spaces', get('X:    \r\n'));
  add('no space after the colon', get('X:v\r\n'));
  add('OWS around the value', get('X: \t v w \t \r\n'));
  add('colon inside the value', get('X: a:b\r\n'));
  add('duplicate Host', `GET / HTTP/1.1\r\n${H}${H}\r\n`);
  add('no Host in HTTP/1.1', 'GET / HTTP/1.1\r\n\r\n');
  add('empty Host', 'GET / HTTP/1.1\r\nHost:\r\n\r\n');
  add('100 headers', get('X: v\r\n'.repeat(99)));
  add('101 headers', get('X: v\r\n'.repeat(100)));
  add('2001 headers', get('X: v\r\n'.repeat(2000)));
  add('long header name', get(`${'N'.repeat(8000)}: v\r\n`));

  // --- line endings
  add('bare LF line endings', 'GET / HTTP/1.1\nHost: x\n\n');
  add('bare LF after the request line', `GET / HTTP/1.1\n${H}\r\n`);
  add('bare LF ending a header', `GET / HTTP/1.1\r\nHost: x\n\r\n`);
  add('bare LF ending the head', `GET / HTTP/1.1\r\n${H}\n`);
  add('bare CR in a value', get('X: a\rb\r\n'));
  add('bare CR ending a header', `GET / HTTP/1.1\r\nHost: x\rX: y\r\n\r\n`);
  add('bare CR after the request line', `GET / HTTP/1.1\r${H}\r\n`);
  add('bare CR ending the head', `GET / HTTP/1.1\r\n${H}\r\r\n`);
  add('CR CR LF', `GET / HTTP/1.1\r\r\n${H}\r\n`);
  add('CRLF before the request line', `\r\n${get()}`);
  add('two CRLF before the request line', `\r\n\r\n${get()}`);
  add('LF before the request line', `\n${get()}`);
  add('CR before the request line', `\r${get()}`);
  add('LF CR before the request line', `\n\r${get()}`);
  add('bare LF hides a Content-Length', post(`X: a\nContent-Length: ${SMUGGLED.length}\r\n`, SMUGGLED));
  add('bare CR hides a Content-Length', post(`X: a\rContent-Length: ${SMUGGLED.length}\r\n`, SMUGGLED));

  // --- Content-Length values
  const lengths = ['0', '5', '005', '  5  ', '5 ', '5\t', '\t5', '', ' ', '-1', '+5', '0x5', '1e1', '5,5', '5, 5', '5,6', '1 0', '5;', '٥',
    '9007199254740991', '9007199254740992', '18446744073709551615', '18446744073709551616', '99999999999999999999999'];
  for (const v of lengths) add(`Content-Length ${JSON.stringify(v)}`, post(`Content-Length: ${v}\r\n`, 'hello'));
  add('Content-Length twice, same value', post('Content-Length: 5\r\nContent-Length: 5\r\n', 'hello'));
  add('Content-Length twice, different values', post('Content-Length: 5\r\nContent-Length: 6\r\n', 'hello!'));
  add('Content-Length and content-length', post('Content-Length: 5\r\ncontent-length: 5\r\n', 'hello'));
  add('Content-Length shorter than the data: the rest is a request', post('Content-Length: 5\r\n', 'hello' + get('', '/next')));
  add('Content-Length on a GET', `GET / HTTP/1.1\r\n${H}Content-Length: ${SMUGGLED.length}\r\n\r\n${SMUGGLED}`);
  add('Content-Length longer than the data', post('Content-Length: 10\r\n', 'hello'));

  // --- Transfer-Encoding values
  const codings = ['chunked', 'CHUNKED', 'Chunked', ' chunked', 'chunked ', 'chunked\t', '\tchunked', 'gzip, chunked', 'gzip,chunked',
    'chunked, gzip', 'identity', 'identity, chunked', 'xchunked', 'chunkedx', 'chunked;q=1', '', ',chunked', 'chunked,', 'chunked, chunked',
    '"chunked"', 'chunk', 'gzip', 'chunked\x0b', '\x0bchunked', 'chu nked'];
  for (const v of codings) add(`Transfer-Encoding ${JSON.stringify(v)}`, post(`Transfer-Encoding: ${v}\r\n`, '3\r\nabc\r\n0\r\n\r\n'));
  add('Transfer-Encoding twice: chunked, chunked', post(CHUNKED + CHUNKED, '3\r\nabc\r\n0\r\n\r\n'));
  add('Transfer-Encoding twice: gzip then chunked', post('Transfer-Encoding: gzip\r\n' + CHUNKED, '3\r\nabc\r\n0\r\n\r\n'));
  add('Transfer-Encoding twice: chunked then identity', post(CHUNKED + 'Transfer-Encoding: identity\r\n', '3\r\nabc\r\n0\r\n\r\n'));
  add('Transfer-Encoding: chunked in HTTP/1.0', `POST / HTTP/1.0\r\n${H}${CHUNKED}\r\n3\r\nabc\r\n0\r\n\r\n`);
  add('Transfer-Encoding: chunked in HTTP/1.0 keep-alive, then a request', `POST / HTTP/1.0\r\n${H}${CHUNKED}Connection: keep-alive\r\n\r\n3\r\nabc\r\n0\r\n\r\n${SMUGGLED}`);

  // --- Content-Length with Transfer-Encoding (CL.TE, TE.CL) and their classic obfuscations
  add('CL.TE', post(`Content-Length: 6\r\n${CHUNKED}`, '0\r\n\r\nG'));
  add('TE.CL', post(`${CHUNKED}Content-Length: 4\r\n`, `${SMUGGLED.length.toString(16)}\r\n${SMUGGLED}\r\n0\r\n\r\n`));
  add('CL 0 with TE chunked', post(`Content-Length: 0\r\n${CHUNKED}`, '0\r\n\r\n'));
  add('TE identity with CL', post('Transfer-Encoding: identity\r\nContent-Length: 5\r\n', 'hello'));
  add('empty TE then CL', post('Transfer-Encoding:\r\nContent-Length: 5\r\n', 'hello'));
  add('CL then empty TE', post('Content-Length: 5\r\nTransfer-Encoding:\r\n', 'hello'));
  add('TE.TE: xchunked and chunked', post(`Transfer-Encoding: xchunked\r\n${CHUNKED}`, '0\r\n\r\n'));
  add('TE with a space before the colon and CL', post(`Transfer-Encoding : chunked\r\nContent-Length: 4\r\n`, `0\r\n\r\n${SMUGGLED}`));
  add('TE with a tab before the colon and CL', post(`Transfer-Encoding\t: chunked\r\nContent-Length: 4\r\n`, `0\r\n\r\n${SMUGGLED}`));
  add('TE with a vertical tab value and CL', post(`Transfer-Encoding:\x0bchunked\r\nContent-Length: 4\r\n`, `0\r\n\r\n${SMUGGLED}`));
  add('TE name with a NUL', post(`Transfer-Encoding\x00: chunked\r\n`, '0\r\n\r\n'));
  add('TE in a header name with an underscore', post('Transfer_Encoding: chunked\r\nContent-Length: 5\r\n', '0\r\n\r\n'));
  add('CL with a vertical tab', post('Content-Length:\x0b5\r\n', 'hello'));
  add('CL with a NUL', post('Content-Length: 5\x00\r\n', 'hello'));
  add('Content Length (space in the name)', post('Content Length: 5\r\n', 'hello'));
  add('Connection: Transfer-Encoding', post(`Connection: Transfer-Encoding\r\n${CHUNKED}`, '3\r\nabc\r\n0\r\n\r\n'));
  add('Connection: Content-Length', post('Connection: Content-Length\r\nContent-Length: 5\r\n', 'hello'));

  // --- chunk sizes and extensions
  const sizes = ['3', 'A', 'a', '00003', '0x3', '-3', ' 3', '3 ', '3\t', '3;', '3;a', '3;a=b', '3;a="b"', '3;a="b\\"c"', '3;a="\r"', '3;a=',
    '3;=b', '3; a', '3;a b', '3;a=b;c', '3;a="b";c=d', '3;a="b"x', '3;a="\x01"', '3;a\\b', '3;a=b"c"', '3;;a', '3;a=\x80',
    '3\n', '3;a\n', '3\r\r', 'g', '', '+3', '3x'];
  for (const s of sizes) {
    const data = /^(0x3|A|a|00003)$/.test(s) ? (s === 'A' || s === 'a' ? 'abcdefghij' : 'abc') : 'abc';
    add(`chunk size line ${JSON.stringify(s)}`, post(CHUNKED, `${s}\r\n${data}\r\n0\r\n\r\n`));
  }
  add('chunk size 14 hex digits (2^56)', post(CHUNKED, 'ffffffffffffff\r\nabc'));
  add('chunk size 16 hex digits (2^64-1)', post(CHUNKED, 'ffffffffffffffff\r\nabc'));
  add('chunk size 17 hex digits', post(CHUNKED, 'fffffffffffffffff\r\nabc'));
  add('chunk size 2^53-1', post(CHUNKED, '1fffffffffffff\r\nabc'));
  add('chunk size 2^53', post(CHUNKED, '20000000000000\r\nabc'));
  add('chunk extension of 20 KB', post(CHUNKED, `3;${'a'.repeat(20_000)}\r\nabc\r\n0\r\n\r\n`));
  add('chunk extension of 10 KB', post(CHUNKED, `3;${'a'.repeat(10_000)}\r\nabc\r\n0\r\n\r\n`));
  add('chunk data longer than its size', post(CHUNKED, `3\r\nabcd\r\n0\r\n\r\n`));
  add('chunk data shorter than its size', post(CHUNKED, `3\r\nab\r\n0\r\n\r\n`));
  add('chunk data without CRLF', post(CHUNKED, `3\r\nabc0\r\n\r\n`));
  add('chunk data followed by LF only', post(CHUNKED, `3\r\nabc\n0\r\n\r\n`));
  add('chunk data followed by CR only', post(CHUNKED, `3\r\nabc\r0\r\n\r\n`));
  add('chunked body with bare LF line endings', post(CHUNKED, `3\nabc\n0\n\n${SMUGGLED}`));
  add('last chunk 000', post(CHUNKED, '3\r\nabc\r\n000\r\n\r\n'));
  add('last chunk with an extension', post(CHUNKED, '3\r\nabc\r\n0;x=y\r\n\r\n'));
  add('last chunk without the final CRLF', post(CHUNKED, '3\r\nabc\r\n0\r\n'));
  add('last chunk ends with bare LF', post(CHUNKED, '3\r\nabc\r\n0\r\n\n'));
  add('many small chunks', post(CHUNKED, '1\r\na\r\n'.repeat(50) + '0\r\n\r\n'));
  add('trailer field', post(CHUNKED, '3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n'));
  add('two trailer fields', post(CHUNKED, '3\r\nabc\r\n0\r\nX-T: 1\r\nX-U: 2\r\n\r\n'));
  add('Content-Length in the trailers', post(CHUNKED, `0\r\nContent-Length: ${SMUGGLED.length}\r\n\r\n${SMUGGLED}`));
  add('Transfer-Encoding in the trailers', post(CHUNKED, '0\r\nTransfer-Encoding: chunked\r\n\r\n'));
  add('obs-fold in the trailers', post(CHUNKED, '0\r\nX-T: 1\r\n 2\r\n\r\n'));
  add('invalid name in the trailers', post(CHUNKED, '0\r\nX T: 1\r\n\r\n'));
  add('NUL in a trailer value', post(CHUNKED, '0\r\nX-T: a\x00\r\n\r\n'));
  add('bare LF in the trailers', post(CHUNKED, '0\r\nX-T: 1\n\r\n'));
  add('request line where the trailers go', post(CHUNKED, `0\r\n${SMUGGLED}`));
  add('trailers of 20 KB', post(CHUNKED, `0\r\nX-T: ${'a'.repeat(20_000)}\r\n\r\n`));

  // --- limits (node:http's maxHeaderSize 16384: target + names + values; reaching it is over)
  add('header section one byte under the limit', get(`X: ${'a'.repeat(16384 - 1 - 1 - 4 - 1 - 1)}\r\n`));
  add('header section at the limit', get(`X: ${'a'.repeat(16384 - 1 - 1 - 4 - 1)}\r\n`));
  add('target one byte under the limit', `GET /${'a'.repeat(16382)} HTTP/1.1\r\n\r\n`);
  add('target at the limit', `GET /${'a'.repeat(16383)} HTTP/1.1\r\n\r\n`);
  add('target of 64 KB', `GET /${'a'.repeat(65536)} HTTP/1.1\r\n\r\n`);
  add('16 KB of spaces before a value', get(`X:${' '.repeat(16_000)}v\r\n`));
  add('40 KB of spaces before a value', get(`X:${' '.repeat(40_000)}v\r\n`));
  add('headers of 100 KB', get(`X: ${'a'.repeat(100_000)}\r\n`));

  // --- pipelining, keep-alive, Connection, Upgrade, Expect
  add('two pipelined GETs', get('', '/1') + get('', '/2'));
  add('three pipelined, one with a body', get('', '/1') + post('Content-Length: 3\r\n', 'abc') + get('', '/3'));
  add('two pipelined chunked requests', post(CHUNKED, '1\r\nx\r\n0\r\n\r\n') + post(CHUNKED, '2\r\nyz\r\n0\r\n\r\n'));
  add('50 pipelined GETs', Array.from({ length: 50 }, (_, i) => get('', `/n${i}`)).join(''));
  add('pipelined GET then garbage', get('', '/1') + 'GARBAGE\r\n\r\n');
  add('pipelined GET then a malformed request', get('', '/1') + get('Content-Length: 1\r\nContent-Length: 2\r\n', '/2') + 'xx');
  add('Connection: close, then a request', get('Connection: close\r\n') + SMUGGLED);
  add('Connection: close, then CRLF', get('Connection: close\r\n') + '\r\n\r\n');
  add('Connection: CLOSE', get('Connection: CLOSE\r\n') + SMUGGLED);
  add('Connection: keep-alive, close', get('Connection: keep-alive, close\r\n') + SMUGGLED);
  add('Connection: close, keep-alive in HTTP/1.0', `GET / HTTP/1.0\r\nConnection: close, keep-alive\r\n\r\n${SMUGGLED}`);
  add('Connection: close then tab', get('Connection: close\t\r\n') + get('', '/2'));
  add('Connection: foo, close', get('Connection: foo, close\r\n') + SMUGGLED);
  add('Connection: closed', get('Connection: closed\r\n') + get('', '/2'));
  add('two Connection headers', get('Connection: keep-alive\r\nConnection: close\r\n') + SMUGGLED);
  add('Proxy-Connection: close', get('Proxy-Connection: close\r\n') + SMUGGLED);
  add('HTTP/1.0 keep-alive, two requests', `GET /1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /2 HTTP/1.0\r\n\r\n`);
  add('HTTP/1.0 keep-alive with a tab', `GET /1 HTTP/1.0\r\nConnection: keep-alive\t\r\n\r\nGET /2 HTTP/1.0\r\n\r\n`);
  add('HTTP/1.0 without keep-alive, then a request', `GET /1 HTTP/1.0\r\n\r\n${SMUGGLED}`);
  add('HEAD then GET', `HEAD / HTTP/1.1\r\n${H}\r\n${get('', '/2')}`);
  add('Expect: 100-continue with its body', post('Expect: 100-continue\r\nContent-Length: 5\r\n', 'hello'));
  add('Expect: something else', post('Expect: 200-ok\r\nContent-Length: 5\r\n', 'hello'));
  add('Upgrade: websocket', get('Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n') + '\x81\x05hello');
  add('Upgrade with a body', get('Connection: upgrade\r\nUpgrade: x\r\nContent-Length: 3\r\n') + 'abc' + get('', '/2'));
  add('Upgrade without Connection: upgrade', get('Upgrade: websocket\r\n') + get('', '/2'));
  add('Connection: upgrade without Upgrade', get('Connection: upgrade\r\n') + get('', '/2'));
  add('Connection: keep-alive, Upgrade', get('Connection: keep-alive, Upgrade\r\nUpgrade: h2c\r\n') + 'PRI * HTTP/2.0\r\n\r\n');
  add('empty Upgrade header', get('Connection: upgrade\r\nUpgrade:\r\n') + get('', '/2'));
  add('CONNECT then bytes', `CONNECT h:443 HTTP/1.1\r\n${H}\r\n${SMUGGLED}`);
  add('incomplete head', `GET / HTTP/1.1\r\n${H}`);
  add('incomplete request line', 'GET / HT');
  add('only CRLF', '\r\n\r\n');
  add('nothing', '');
  return cases;
}

// ---------------------------------------------------------------------------------------------
// Deliberate differences
// ---------------------------------------------------------------------------------------------

interface Deviation {
  /** our verdict: the error code we answer with (node:http accepted) */
  code: string;
  why: string;
}

/**
 * Cases llhttp accepts and we refuse, on purpose. Each is checked: node served a request we refused
 * (it accepted the bytes, or at least completed more requests from them before failing), and we
 * refused with this code.
 */
const STRICTER: Record<string, Deviation> = {
  'target "*x"': { code: E.INVALID_TARGET, why: 'asterisk-form is `*` alone (RFC 9112 §3.2.4); llhttp takes `*` followed by anything' },
  'target "http://a@b@c/"': { code: E.INVALID_TARGET, why: 'two `@` in an authority: llhttp only refuses them adjacent; userinfo tricks are how SSRF filters are fooled' },
  'CONNECT authority with two @': { code: E.INVALID_TARGET, why: 'as above' },
  'target empty (two spaces)': { code: E.INVALID_TARGET, why: 'RFC 9112 §3: one SP between method and target; llhttp skips extra spaces' },
  'two spaces before the version': { code: E.INVALID_VERSION, why: 'one SP between target and version (RFC 9112 §3)' },
  'version "HTTP/0.9"': { code: E.UNSUPPORTED_VERSION, why: 'only HTTP/1.0 and 1.1 are spoken here (505); llhttp takes 0.9 and 2.0 in a request line' },
  'version "HTTP/2.0"': { code: E.UNSUPPORTED_VERSION, why: 'as above' },
  'version "RTSP/1.0"': { code: E.INVALID_VERSION, why: 'llhttp reads RTSP/ and ICE/ request lines too; a gateway speaks HTTP only' },
  'SOURCE / ICE/1.0': { code: E.INVALID_VERSION, why: 'as above' },
  'no version (HTTP/0.9 request line)': { code: E.INVALID_VERSION, why: 'HTTP/0.9 (a request line without a version) is not served' },
  'no version, headers follow': { code: E.INVALID_VERSION, why: 'as above' },
  'LF before the request line': { code: E.INVALID_LINE_ENDING, why: 'only CRLF empty lines are skipped before a request: a bare LF or CR is never a line ending here (RFC 9112 §2.2)' },
  'CR before the request line': { code: E.INVALID_LINE_ENDING, why: 'as above' },
  'LF CR before the request line': { code: E.INVALID_LINE_ENDING, why: 'as above' },
  'Transfer-Encoding "gzip, chunked"': { code: E.UNSUPPORTED_TRANSFER_ENCODING, why: 'a request Transfer-Encoding is `chunked` alone; other codings are 501 as in nginx (the upstream would get a body coding it never negotiated)' },
  'Transfer-Encoding "gzip,chunked"': { code: E.UNSUPPORTED_TRANSFER_ENCODING, why: 'as above' },
  'Transfer-Encoding "identity, chunked"': { code: E.UNSUPPORTED_TRANSFER_ENCODING, why: 'as above' },
  'Transfer-Encoding ",chunked"': { code: E.UNSUPPORTED_TRANSFER_ENCODING, why: 'as above: an empty list element is not `chunked` alone' },
  'Transfer-Encoding twice: gzip then chunked': { code: E.INVALID_TRANSFER_ENCODING, why: 'one Transfer-Encoding header per request' },
  'TE.TE: xchunked and chunked': { code: E.INVALID_TRANSFER_ENCODING, why: 'as above: two parsers that pick different Transfer-Encoding lines is the TE.TE smuggling attack' },
  'Transfer-Encoding ""': { code: E.INVALID_TRANSFER_ENCODING, why: 'an empty Transfer-Encoding is refused, not ignored as llhttp does (node served the POST, then refused its chunked body as the next request)' },
  'empty TE then CL': { code: E.CONTENT_LENGTH_WITH_TRANSFER_ENCODING, why: 'llhttp ignores an empty Transfer-Encoding that comes first; any Transfer-Encoding with Content-Length is refused here' },
  '101 headers': { code: E.TOO_MANY_HEADERS, why: 'proxy.max_header_count (default 100): node keeps parsing and cuts the list at maxHeadersCount, a Content-Length past the cut would frame a body the upstream never hears of' },
  '2001 headers': { code: E.TOO_MANY_HEADERS, why: 'as above' },
  'Content-Length "5\\t"': { code: E.INVALID_CONTENT_LENGTH, why: 'a framing header with trailing whitespace other than SP is refused; llhttp 9.3 (Node 20) refuses it too, llhttp 9.4 (Node 24) accepts it' },
  '40 KB of spaces before a value': { code: E.HEADERS_TOO_LARGE, why: 'node does not count whitespace before a value toward maxHeaderSize; maxHeadBytes (2x) bounds the raw head' },
};

/**
 * Accepted by both, but keep-alive differs: after the first request one parser reads on and the
 * other stops. The requests up to there are compared; what follows is not.
 */
const KEEP_ALIVE_DIFFERS: Record<string, string> = {
  'Connection: close then tab': 'we close: OWS after a Connection token is SP or HTAB (RFC 9110 §5.6.1); llhttp 9.3 (Node 20) only skips SP there, llhttp 9.4.2 reads it as we do',
  'HTTP/1.0 keep-alive with a tab': 'we keep alive, for the same reason (the framing is unambiguous either way)',
  'Connection: close, keep-alive in HTTP/1.0': 'we close: close wins over keep-alive in every version; llhttp only looks for keep-alive in HTTP/1.0',
  'Transfer-Encoding: chunked in HTTP/1.0 keep-alive, then a request': 'we close: RFC 9112 §6.1, Transfer-Encoding in HTTP/1.0 is faulty framing, close after the message',
};

// ---------------------------------------------------------------------------------------------
// node:http's side: a recording server on loopback
// ---------------------------------------------------------------------------------------------

interface NodeOutcome {
  requests: SeenRequest[];
  error?: string;
}

class RecordingServer {
  readonly server: Server;
  private readonly outcomes = new Map<number, { outcome: NodeOutcome; closed: Promise<void>; close: () => void; pending: (() => void)[] }>();

  constructor() {
    // Portico's listener settings: Host is checked by the request policy, not by node
    this.server = createServer({ requireHostHeader: false });
    const record = (req: IncomingMessage, res: ServerResponse | undefined, upgrade: boolean) => {
      const seen: SeenRequest = {
        method: req.method!,
        target: req.url!,
        httpVersion: req.httpVersion,
        rawHeaders: req.rawHeaders,
        body: '',
        complete: false,
        keepAlive: res === undefined ? false : res.shouldKeepAlive,
        upgrade,
      };
      const entry = this.entry(req.socket.remotePort!);
      entry.outcome.requests.push(seen);
      // llhttp sets complete when the message ends, synchronously; the 'end' event may never come
      // if the socket is destroyed by a later parse error
      entry.pending.push(() => (seen.complete = upgrade || req.complete));
      if (upgrade) return;
      req.on('data', (chunk: Buffer) => (seen.body += chunk.toString('latin1')));
      req.on('end', () => res!.end());
    };
    this.server.on('request', (req, res) => record(req, res, false));
    this.server.on('checkContinue', (req, res) => {
      record(req, res, false);
      res.writeContinue();
    });
    this.server.on('checkExpectation', (req, res) => record(req, res, false));
    this.server.on('upgrade', (req: IncomingMessage, socket: Socket) => {
      record(req, undefined, true);
      socket.destroy();
    });
    this.server.on('connect', (req: IncomingMessage, socket: Socket) => {
      record(req, undefined, true);
      socket.destroy();
    });
    this.server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
      const outcome = this.entry(socket.remotePort!).outcome;
      outcome.error ??= err.code ?? 'ERROR';
      socket.destroy();
    });
    this.server.on('connection', (socket: Socket) => {
      const entry = this.entry(socket.remotePort!);
      socket.on('close', entry.close);
    });
  }

  private entry(port: number) {
    let e = this.outcomes.get(port);
    if (e === undefined) {
      let close!: () => void;
      const closed = new Promise<void>((r) => (close = r));
      e = { outcome: { requests: [] }, closed, close, pending: [] };
      this.outcomes.set(port, e);
    }
    return e;
  }

  /** Sends the bytes on a fresh connection, half-closes, and returns what node parsed once it closed. */
  async exchange(port: number, bytes: Buffer): Promise<NodeOutcome> {
    const socket = connect(port, '127.0.0.1');
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    socket.on('error', () => {});
    socket.resume();
    const local = socket.localPort!;
    socket.end(bytes);
    const entry = this.entry(local);
    const timeout = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 5000).unref());
    const result = await Promise.race([entry.closed, timeout]);
    socket.destroy();
    this.outcomes.delete(local);
    if (result === 'timeout') throw new Error('node:http did not close the connection');
    const outcome = entry.outcome;
    for (const settle of entry.pending) settle();
    // data after a `Connection: close` request is ignored by our parser, refused by llhttp: the
    // request before it was served either way
    if (outcome.error === 'HPE_CLOSED_CONNECTION') delete outcome.error;
    return outcome;
  }
}

// ---------------------------------------------------------------------------------------------
// Comparison
// ---------------------------------------------------------------------------------------------

const SPLITS: Split[] = ['whole', 'bytes', { seed: 1 }, { seed: 2 }];

function describeOutcome(o: RequestOutcome | NodeOutcome): string {
  const reqs = o.requests.map((r) => `${r.method} ${JSON.stringify(r.target.length > 60 ? r.target.slice(0, 60) + '...' : r.target)} ${r.httpVersion} body=${r.body.length}${r.complete ? '' : ' (incomplete)'}${r.upgrade ? ' upgrade' : ''}${r.keepAlive ? '' : ' close'}`);
  return `[${reqs.join('; ')}]${o.error ? ' error ' + o.error : ''}`;
}

/** Compares two outcomes, returns the first difference (undefined = same verdict). */
function difference(node: NodeOutcome, ours: RequestOutcome, name: string): string | undefined {
  if (Boolean(node.error) !== Boolean(ours.error)) return `node ${node.error ? 'refused' : 'accepted'}, we ${ours.error ? 'refused' : 'accepted'}`;
  let nodeRequests = node.requests;
  let ourRequests = ours.requests;
  if (node.error) {
    // both refused: llhttp hands over a head before it checks the framing (and node destroys the
    // socket with the bytes it had not delivered), so only the requests completed before the
    // refusal are compared
    nodeRequests = nodeRequests.filter((r) => r.complete);
    ourRequests = ourRequests.filter((r) => r.complete);
  }
  const keepAliveDiffers = name in KEEP_ALIVE_DIFFERS;
  if (keepAliveDiffers) {
    const n = Math.min(nodeRequests.length, ourRequests.length);
    if (n === 0) return 'no request parsed';
    nodeRequests = nodeRequests.slice(0, n);
    ourRequests = ourRequests.slice(0, n);
  }
  if (nodeRequests.length !== ourRequests.length) return `node parsed ${nodeRequests.length} requests, we ${ourRequests.length}`;
  for (let k = 0; k < nodeRequests.length; k++) {
    const n = nodeRequests[k]!;
    const o = ourRequests[k]!;
    for (const field of ['method', 'target', 'httpVersion', 'upgrade'] as const) {
      if (n[field] !== o[field]) return `request ${k}: ${field} ${JSON.stringify(n[field])} vs ${JSON.stringify(o[field])}`;
    }
    if (JSON.stringify(n.rawHeaders) !== JSON.stringify(o.rawHeaders)) return `request ${k}: headers differ`;
    if (node.error) continue;
    if (n.body !== o.body) return `request ${k}: body ${JSON.stringify(n.body.slice(0, 40))} vs ${JSON.stringify(o.body.slice(0, 40))}`;
    if (!n.upgrade && n.complete !== o.complete) return `request ${k}: complete ${n.complete} vs ${o.complete}`;
    if (!n.upgrade && n.keepAlive !== o.keepAlive) {
      if (keepAliveDiffers && k === nodeRequests.length - 1) continue;
      return `request ${k}: keepAlive ${n.keepAlive} vs ${o.keepAlive}`;
    }
  }
  return undefined;
}

describe('HTTP/1.1 request parser vs node:http (llhttp)', () => {
  const cases = generateCases();
  const server = new RecordingServer();
  let port = 0;
  const nodeOutcomes = new Map<string, NodeOutcome>();

  before(async () => {
    server.server.listen(0, '127.0.0.1');
    await new Promise((r) => server.server.once('listening', r));
    port = (server.server.address() as AddressInfo).port;
    // every case through node:http, a few connections at a time
    const queue = [...cases];
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        for (let c = queue.shift(); c !== undefined; c = queue.shift()) {
          nodeOutcomes.set(c.name, await server.exchange(port, Buffer.from(c.bytes, 'latin1')));
        }
      }),
    );
  });
  after(async () => {
    server.server.closeAllConnections();
    await new Promise((r) => server.server.close(r));
  });

  it(`has at least 150 cases with unique names (${cases.length}), both accepted and refused ones`, (t) => {
    assert.ok(cases.length >= 150);
    const refused = cases.filter((c) => nodeOutcomes.get(c.name)!.error !== undefined).length;
    const pipelined = cases.filter((c) => nodeOutcomes.get(c.name)!.requests.length > 1).length;
    t.diagnostic(`node:http refused ${refused}, accepted ${cases.length - refused}; ${pipelined} with several requests`);
    // the comparison means something only if both verdicts are well represented
    assert.ok(refused > 200 && cases.length - refused > 200 && pipelined > 10);
    assert.equal(new Set(cases.map((c) => c.name)).size, cases.length);
    for (const name of [...Object.keys(STRICTER), ...Object.keys(KEEP_ALIVE_DIFFERS)]) {
      assert.ok(cases.some((c) => c.name === name), `listed case "${name}" exists`);
    }
  });

  it('every split of the bytes gives the same outcome', () => {
    for (const c of cases) {
      const bytes = Buffer.from(c.bytes, 'latin1');
      const whole = JSON.stringify(parseRequests(bytes, 'whole'));
      for (const split of SPLITS.slice(1)) {
        assert.equal(JSON.stringify(parseRequests(bytes, split)), whole, `${c.name}: split ${JSON.stringify(split)}`);
      }
    }
  });

  it('agrees with node:http on every case not listed as a deliberate difference', () => {
    const mismatches: string[] = [];
    for (const c of cases) {
      if (c.name in STRICTER) continue;
      const node = nodeOutcomes.get(c.name)!;
      const ours = parseRequests(Buffer.from(c.bytes, 'latin1'), 'whole');
      const diff = difference(node, ours, c.name);
      if (diff !== undefined) mismatches.push(`${c.name}: ${diff}\n    node: ${describeOutcome(node)}\n    ours: ${describeOutcome(ours)}`);
    }
    assert.deepEqual(mismatches, []);
  });

  it('refuses what the STRICTER table says, where node:http accepted', (t) => {
    const wrong: string[] = [];
    const agreeing: string[] = [];
    for (const [name, deviation] of Object.entries(STRICTER)) {
      const c = cases.find((x) => x.name === name)!;
      const node = nodeOutcomes.get(name)!;
      const ours = parseRequests(Buffer.from(c.bytes, 'latin1'), 'whole');
      const served = (o: RequestOutcome | NodeOutcome) => o.requests.filter((r) => r.complete).length;
      // another Node's llhttp may have become as strict: worth knowing, not a failure
      if (node.error !== undefined && served(node) <= served(ours)) agreeing.push(`${name} (${node.error})`);
      if (ours.error !== deviation.code) wrong.push(`${name}: expected ${deviation.code}, got ${describeOutcome(ours)}`);
    }
    if (agreeing.length > 0) t.diagnostic(`llhttp ${process.versions.llhttp} refuses these too (the table can shrink): ${agreeing.join(', ')}`);
    assert.deepEqual(wrong, []);
  });

  it('never accepts what node:http refuses', () => {
    const lenient = cases.filter((c) => {
      const node = nodeOutcomes.get(c.name)!;
      return node.error !== undefined && parseRequests(Buffer.from(c.bytes, 'latin1'), 'whole').error === undefined;
    });
    assert.deepEqual(lenient.map((c) => c.name), []);
  });

  it('answers each refusal with a status the code maps to', () => {
    for (const c of cases) {
      const ours = parseRequests(Buffer.from(c.bytes, 'latin1'), 'whole');
      if (ours.error === undefined) continue;
      assert.ok([400, 413, 414, 431, 501, 505].includes(ours.status!), `${c.name}: ${ours.error} → ${ours.status}`);
    }
  });
});
