/**
 * Cost per match of the regex engines Portico could run config regexes on (`vars` `~~`/`~*`, later
 * `regex_uri`, `allow_origins_by_regex`), on patterns and inputs shaped like real route configs.
 * Prints ns/match side by side and the ratio to V8's backtracking RegExp.
 *
 *   node --import tsx bench/regex.ts [--ms 300]
 *
 * Engines:
 * - `RegExp`: V8's backtracking engine (what vars used before; exponential on `^([a-z0-9]+)+$`).
 * - `re2js`: pure-JS RE2 (lazy DFA, NFA fallback), linear time; Portico's engine (src/security/regex.ts).
 * - `re2-wasm`: RE2 compiled to WebAssembly; measured only when importable: installed
 *   (`npm i --no-save re2-wasm`) or named by RE2_WASM=/path/to/re2-wasm. Not a dependency.
 * - `portico`: src/security/regex.ts, i.e. re2js, or V8's RegExp where the pattern is proven
 *   linear under backtracking.
 * - `V8 /l`: V8's experimental linear engine, enabled here with v8.setFlagsFromString; it rejects
 *   case-insensitive patterns and counted repetition above a small bound ("n/a").
 *
 * The evil rows show the point of the exercise: RegExp's time doubles with each input character,
 * the linear engines stay flat. RegExp is only run on the 24-character input (about 20 ms a try).
 */
import { parseArgs } from 'node:util';
import v8 from 'node:v8';
import { RE2JS } from 're2js';
import { compileConfigRegex } from '../src/security/regex.ts';

const { values } = parseArgs({ options: { ms: { type: 'string', default: '300' } } });
const budgetMs = Number(values.ms);

interface Case {
  name: string;
  pattern: string;
  caseless: boolean;
  input: string;
  /** exec: captures wanted (uri parameters, later regex_uri); else a boolean test (vars) */
  exec?: boolean;
  /** skip V8's backtracking engine: it would not finish */
  evil?: boolean;
}

const UA = 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36';
const TOKEN = 'Bearer ' + 'eyJhbGciOiJIUzI1NiJ9.' + 'a1B2c3D4e5'.repeat(20) + '.sig-_x';
const cases: Case[] = [
  { name: 'version header', pattern: '^v[0-9]+$', caseless: false, input: 'v2' },
  { name: 'UA ~* (match)', pattern: 'chrome|firefox', caseless: true, input: UA },
  { name: 'UA ~* (miss)', pattern: 'curl|wget|python', caseless: true, input: UA },
  { name: 'uri shape', pattern: '^/api/v[0-9]+/users/[0-9]+$', caseless: false, input: '/api/v2/users/1234567' },
  { name: 'uri suffix', pattern: '\\.(jpg|jpeg|png|gif)$', caseless: false, input: '/static/img/brand/logo-large.png' },
  { name: 'bearer token', pattern: '^Bearer [A-Za-z0-9._-]+$', caseless: false, input: TOKEN },
  { name: 'ip prefix', pattern: '^10\\.0\\.[0-9]+\\.[0-9]+$', caseless: false, input: '10.0.3.17' },
  { name: 'csv search', pattern: '\\s*,\\s*beta', caseless: false, input: 'alpha, gamma, delta, epsilon, beta' },
  { name: 'uri param exec', pattern: '^/user/([^/]+)$', caseless: false, input: '/user/12345', exec: true },
  { name: 'uri 2 params exec', pattern: '^/api/([^/]+)/items/([^/]+)$', caseless: false, input: '/api/v2/items/abc-123', exec: true },
  { name: 'uri *rest exec', pattern: '^/static/([\\s\\S]*)/file/([\\s\\S]*)$', caseless: false, input: '/static/a/b/c/file/x.png', exec: true },
  { name: 'uri 3x* 800 segs', pattern: '^/a/([\\s\\S]*)/([\\s\\S]*)/([\\s\\S]*)/end$', caseless: false, input: '/a' + '/x'.repeat(800), exec: true },
  { name: 'evil, 24 chars', pattern: '^([a-z0-9]+)+$', caseless: false, input: 'a'.repeat(24) + '!' },
  { name: 'evil, 40 chars', pattern: '^([a-z0-9]+)+$', caseless: false, input: 'a'.repeat(40) + '!', evil: true },
  { name: 'evil, 8 KB', pattern: '^([a-z0-9]+)+$', caseless: false, input: 'a'.repeat(8192) + '!', evil: true },
];

type Tester = (input: string) => boolean;
interface Engine {
  name: string;
  /** undefined: the engine cannot run this pattern */
  compile(c: Case): Tester | undefined;
}

const engines: Engine[] = [
  {
    name: 'RegExp',
    compile: (c) => {
      if (c.evil) return undefined;
      const re = new RegExp(c.pattern, c.caseless ? 'i' : '');
      return c.exec ? (s) => re.exec(s) !== null : (s) => re.test(s);
    },
  },
  {
    name: 're2js',
    compile: (c) => {
      const re = RE2JS.compile(c.pattern, c.caseless ? RE2JS.CASE_INSENSITIVE : 0);
      return c.exec ? (s) => re.exec(s) !== null : (s) => re.test(s);
    },
  },
  {
    name: 'portico',
    compile: (c) => {
      const re = compileConfigRegex(c.pattern, { caseless: c.caseless });
      return c.exec ? (s) => re.exec(s) !== null : (s) => re.test(s);
    },
  },
];

try {
  const { RE2 } = (await import(process.env.RE2_WASM ?? 're2-wasm')) as { RE2: new (p: string, f: string) => { test(s: string): boolean; exec(s: string): unknown } };
  engines.push({
    name: 're2-wasm',
    compile: (c) => {
      const re = new RE2(c.pattern, c.caseless ? 'iu' : 'u');
      return c.exec ? (s) => re.exec(s) !== null : (s) => re.test(s);
    },
  });
} catch {
  console.log('re2-wasm not importable (npm i --no-save re2-wasm, or RE2_WASM=path): column skipped');
}

v8.setFlagsFromString('--enable-experimental-regexp-engine');
engines.push({
  name: 'V8 /l',
  compile: (c) => {
    let re: RegExp;
    try {
      re = new RegExp(c.pattern, c.caseless ? 'il' : 'l');
    } catch {
      return undefined;
    }
    return c.exec ? (s) => re.exec(s) !== null : (s) => re.test(s);
  },
});

/** ns per call, from the best of three timed rounds after a warm-up. */
function measure(test: Tester, input: string): number {
  let sink = 0;
  const start = performance.now();
  let warm = 0;
  while (performance.now() - start < budgetMs / 4) {
    if (test(input)) sink++;
    warm++;
  }
  const iterations = Math.max(1, Math.round(warm / 2));
  let best = Infinity;
  for (let round = 0; round < 3; round++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < iterations; i++) if (test(input)) sink++;
    best = Math.min(best, Number(process.hrtime.bigint() - t0) / iterations);
  }
  if (sink < 0) console.log(sink);
  return best;
}

function formatNs(ns: number): string {
  if (ns >= 1e6) return `${(ns / 1e6).toFixed(1)} ms`;
  if (ns >= 1e4) return `${(ns / 1e3).toFixed(1)} µs`;
  return `${Math.round(ns)} ns`;
}

console.log(`node ${process.version}, ns/match (best of 3 rounds, ~${budgetMs} ms per cell); (x) = ratio to RegExp\n`);
const header = ['case'.padEnd(18), 'input'.padStart(6), ...engines.map((e) => e.name.padStart(18))].join(' ');
console.log(header);
console.log('-'.repeat(header.length));
for (const c of cases) {
  let baseline: number | undefined;
  const cells: string[] = [];
  for (const engine of engines) {
    const test = engine.compile(c);
    if (test === undefined) {
      cells.push((c.evil && engine.name === 'RegExp' ? 'blocks' : 'n/a').padStart(18));
      continue;
    }
    const ns = measure(test, c.input);
    if (engine.name === 'RegExp') baseline = ns;
    const ratio = baseline !== undefined && engine.name !== 'RegExp' ? ` (${(ns / baseline).toFixed(1)}x)` : '';
    cells.push((formatNs(ns) + ratio).padStart(18));
  }
  console.log([c.name.padEnd(18), String(c.input.length).padStart(6), ...cells].join(' '));
}

// Compile cost and memory: every parameter route of the router holds one compiled pattern, so at
// 10,000+ routes this decides load time and heap (the reason for the native fast path).
const gc = (globalThis as { gc?: () => void }).gc;
console.log(`\ncompile cost of 5,000 router parameter patterns (^/svc<i>/u<i>/([^/]+)$), per pattern` +
  (gc ? '' : ' (run node with --expose-gc for the memory column)'));
const compilers: [string, (p: string) => { exec(s: string): unknown }][] = [
  ['RegExp', (p) => new RegExp(p)],
  ['re2js', (p) => RE2JS.compile(p)],
  ['portico', (p) => compileConfigRegex(p)],
];
for (const [name, compile] of compilers) {
  const keep: unknown[] = [];
  gc?.();
  const before = process.memoryUsage().heapUsed;
  const t0 = performance.now();
  for (let i = 0; i < 5_000; i++) {
    const re = compile(`^/svc${i % 97}/u${i}/([^/]+)$`);
    re.exec(`/svc${i % 97}/u${i}/7`);
    keep.push(re);
  }
  const us = ((performance.now() - t0) * 1000) / 5_000;
  gc?.();
  const kb = (process.memoryUsage().heapUsed - before) / 5_000 / 1024;
  console.log(`  ${name.padEnd(8)} ${us.toFixed(1).padStart(6)} µs${gc ? `  ${kb.toFixed(1).padStart(5)} KB` : ''}  (${keep.length})`);
}

// Worst cases within the limits: a pattern whose DFA explodes ([ab]*a[ab]{n}: 2^n states) makes RE2
// fall back to its NFA, at a cost per input character that grows with n. This is the bound a
// hostile client meets on a route an operator gave such a pattern (16 KB header = node's limit).
console.log('\nworst case within the limits: ms per match, 16 KB random [ab] input (re2js only; RegExp would be polynomial to exponential)');
let seed = 7;
const random = () => {
  // mulberry32
  seed = (seed + 0x6d2b79f5) >>> 0;
  let t = Math.imul(seed ^ (seed >>> 15), seed | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
};
for (const pattern of ['[ab]*a[ab]{20}\\d', '[ab]*a[ab]{100}\\d', '[ab]*a[ab]{994}\\d', '(?<!x)[ab]{250}\\d']) {
  const re = compileConfigRegex(pattern);
  const times: number[] = [];
  for (let i = 0; i < 4; i++) {
    let input = '';
    for (let j = 0; j < 16_384; j++) input += random() < 0.5 ? 'a' : 'b';
    const t0 = performance.now();
    re.test(input);
    times.push(performance.now() - t0);
  }
  console.log(`  ${pattern.padEnd(20)} ${times.map((t) => t.toFixed(1)).join(' / ')} ms`);
}
