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
 * - `re2-wasm`: RE2 compiled to WebAssembly; measured only when installed
 *   (`npm i --no-save re2-wasm`), it is not a dependency.
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
  const { RE2 } = (await import('re2-wasm' as string)) as { RE2: new (p: string, f: string) => { test(s: string): boolean; exec(s: string): unknown } };
  engines.push({
    name: 're2-wasm',
    compile: (c) => {
      const re = new RE2(c.pattern, c.caseless ? 'iu' : 'u');
      return c.exec ? (s) => re.exec(s) !== null : (s) => re.test(s);
    },
  });
} catch {
  console.log('re2-wasm not installed (npm i --no-save re2-wasm): column skipped');
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
