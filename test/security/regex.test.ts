/**
 * Issue 6, item 4: regexes from config (vars `~~` / `~*`, parameter and wildcard uris) can never
 * backtrack catastrophically. One compiler (src/security/regex.ts) takes them all; it runs RE2
 * (re2js) and keeps V8's RegExp only for patterns proven linear under backtracking. Here:
 * - patterns that freeze a backtracking engine run in bounded time on 16 KB inputs;
 * - the native fast path answers exactly as RE2 does (differential test on generated patterns);
 * - PCRE constructs RE2 lacks are rejected when the config is validated, naming the construct;
 * - PCRE syntax APISIX users write that V8 would not take (`(?i)`, `\A`, `[[:alpha:]]`) works.
 * The gateway-level regression is in regex-gateway.test.ts.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RE2JS } from 're2js';
import { validateObject } from '../../src/config/validate.ts';
import { ErrorCode, PorticoError } from '../../src/errors.ts';
import { Router } from '../../src/router/router.ts';
import { checkConfigRegex, compileConfigRegex, MAX_REGEX_PROGRAM_SIZE } from '../../src/security/regex.ts';

/** Each pattern with an input on which V8's backtracking RegExp runs for minutes or more. */
const CATASTROPHIC: [string, string][] = [
  ['^([a-z0-9]+)+$', 'a'.repeat(16_000) + '!'],
  ['(a|aa)+$', 'a'.repeat(16_000) + '!'],
  ['^(\\w+\\s?)*$', 'word '.repeat(3_200) + '!'],
  ['(x+x+)+y', 'x'.repeat(16_000)],
  ['^(.*)*,', 'a'.repeat(16_000)],
  ['^(a+)+b', 'a'.repeat(16_000)],
  ['\\s*,\\s*x', ' '.repeat(16_000)],
  ['^.*.*.*.*=$', 'a'.repeat(16_000)],
  // the shape the router builds for `/*a/*b/*c/end`: polynomial under backtracking
  ['^/([\\s\\S]*)/([\\s\\S]*)/([\\s\\S]*)/end$', '/x'.repeat(8_000)],
];

describe('config regexes run in linear time', () => {
  for (const [pattern, input] of CATASTROPHIC) {
    it(`${pattern} on ${input.length} chars`, () => {
      const re = compileConfigRegex(pattern);
      assert.equal(re.engine, 're2', 'an ambiguous pattern must not reach the backtracking engine');
      const started = performance.now();
      re.test(input);
      re.exec(input);
      const ms = performance.now() - started;
      // RE2 needs ~1-20 ms here; a backtracking engine would need longer than the age of the universe
      assert.ok(ms < 1_000, `${pattern}: ${ms.toFixed(0)} ms`);
    });
  }

  it('the evil pattern of the report is decided, not just bounded', () => {
    const re = compileConfigRegex('^([a-z0-9]+)+$');
    assert.equal(re.test('a'.repeat(40)), true);
    assert.equal(re.test('a'.repeat(40) + '!'), false);
  });
});

describe('native fast path', () => {
  it('takes the everyday anchored shapes, and only them', () => {
    for (const p of ['^v[0-9]+$', '^/api/v[0-9]+/users/[0-9]+$', '^Bearer [A-Za-z0-9._-]+$', '^/user/([^/]+)$', '^/static/([\\s\\S]*)$', 'Chrome', '\\.png$']) {
      assert.equal(compileConfigRegex(p).engine, 'native', p);
    }
    for (const p of ['^([a-z0-9]+)+$', '^a*a$', '[0-9]+x', '^/([\\s\\S]*)/x$', 'chrome|firefox', '^x{01}$', '^a+?$', '^(?:ab)+$', '^\\bx$']) {
      assert.equal(compileConfigRegex(p).engine, 're2', p);
    }
    assert.equal(compileConfigRegex('^v[0-9]+$', { caseless: true }).engine, 're2', 'case folding is left to RE2');
  });

  it('stays linear on inputs that make every variable atom give back', () => {
    const cases: [string, string][] = [
      ['^[a-z]+[0-9]+x$', 'a'.repeat(8_000) + '1'.repeat(8_000) + 'y'],
      ['^/user/([^/]+)/([^/]+)/profile$', '/user/' + 'a'.repeat(8_000) + '/' + 'b'.repeat(8_000) + '/profilX'],
      ['^[^,]*,[^,]*,[^,;]*;$', 'a'.repeat(5_000) + ',' + 'b'.repeat(5_000) + ',' + 'c'.repeat(5_000)],
      ['^.*$', 'a'.repeat(16_000) + '\n'],
    ];
    for (const [pattern, input] of cases) {
      const re = compileConfigRegex(pattern);
      assert.equal(re.engine, 'native', pattern);
      const started = performance.now();
      for (let i = 0; i < 10; i++) re.exec(input);
      assert.ok(performance.now() - started < 500, pattern);
    }
  });

  it('answers as RE2 does on generated patterns and inputs (test and captures)', () => {
    const random = seeded(20_240_601);
    const atoms = [
      'a', 'b', '/', '.', '[ab]', '[^/]', '[^a]', '\\d', '\\w', '\\s', '\\S', '\\D', '[a-c]', '[-a]', '[a-]', '\\.', '1', ' ', 'é', '😀',
      '\\\\', '[\\]a]', '[a\\-z]', '\\$', '[$^]', '[\\d.]', '[^\\s/]', '\\{', '-', ',', '[é-ü]',
    ];
    const quantifiers = ['', '', '', '?', '*', '+', '{2}', '{1,3}', '{0,2}', '{2,}'];
    const alphabet = ['a', 'b', 'c', '/', '1', ' ', '\n', '.', '-', 'é', 'ö', '😀', '\ud800', '\\', ']', '$', '^', '{', 'z', ','];
    let native = 0;
    for (let n = 0; n < 4_000; n++) {
      let pattern = random() < 0.7 ? '^' : '';
      const count = 1 + Math.floor(random() * 4);
      let open = false;
      for (let i = 0; i < count; i++) {
        if (!open && random() < 0.2) { pattern += '('; open = true; }
        pattern += pick(random, atoms) + pick(random, quantifiers);
        if (open && random() < 0.5) { pattern += ')'; open = false; }
      }
      if (open) pattern += ')';
      if (random() < 0.5) pattern += '$';

      const ours = compileConfigRegex(pattern);
      const reference = RE2JS.compile(pattern);
      if (ours.engine === 'native') native++;
      for (let k = 0; k < 12; k++) {
        let input = '';
        const length = Math.floor(random() * 8);
        for (let i = 0; i < length; i++) input += pick(random, alphabet);
        const where = `${JSON.stringify(pattern)} on ${JSON.stringify(input)}`;
        assert.equal(ours.test(input), reference.test(input), `test: ${where}`);
        const expected = reference.exec(input);
        const actual = ours.exec(input);
        assert.deepEqual(actual && [...actual], expected && [...expected].map((g) => g ?? undefined), `exec: ${where}`);
      }
    }
    assert.ok(native > 500, `the generator must exercise the fast path (${native} native patterns)`);
  });
});

describe('PCRE constructs RE2 lacks are rejected at validation, naming the construct', () => {
  const UNSUPPORTED: [string, RegExp][] = [
    ['(a)\\1', /backreferences/],
    ['(?<n>a)\\k<n>', /backreferences/],
    ['foo(?=bar)', /lookahead/],
    ['foo(?!bar)', /lookahead/],
    ['(?>a+)b', /atomic groups/],
    ['a++b', /possessive quantifiers/],
    ['a{2}+', /possessive quantifiers/],
    ['(a(?R)?b)', /recursion/],
    ['(a)(?1)', /recursion/],
    ['(a)?(?(1)b|c)', /conditionals/],
    ['a(?#note)b', /comments/],
    ['(?x) a b', /extended mode/],
    ['(*UTF8)a', /PCRE verbs/],
    ['a\\Z', /\\Z is not supported/],
    ['\\Ka', /\\K/],
    ['\\u00e9', /\\x\{XXXX\}/],
    ['a{1001}', /repeat counts are limited to 1000/],
    ['(?<=(a))b', /invalid capture in lookbehind/],
    ['(unclosed', /missing closing \)/],
  ];

  for (const [pattern, reason] of UNSUPPORTED) {
    it(pattern, () => {
      assert.throws(() => compileConfigRegex(pattern), (err: unknown) => {
        assert.ok(err instanceof PorticoError);
        assert.equal(err.code, ErrorCode.SEMANTIC);
        assert.match(err.message, reason);
        return true;
      });
      const route = { uri: '/x', vars: [['http_x', '~~', pattern]], upstream: { nodes: { '127.0.0.1:80': 1 } } };
      const result = validateObject('routes', 'r1', route);
      assert.equal(result.ok, false);
      if (!result.ok) {
        assert.equal(result.rejection.code, ErrorCode.SEMANTIC);
        assert.match(result.rejection.reason, /^routes\/r1: \/?vars(\[0\]|\/0): invalid regular expression /);
        assert.match(result.rejection.reason, reason);
      }
    });
  }

  it('a pattern too large for a bounded match cost is rejected with its size', () => {
    const reason = checkConfigRegex('[ab]*a[ab]{999}x');
    assert.match(reason ?? '', new RegExp(`too large: it compiles to \\d+ instructions, more than ${MAX_REGEX_PROGRAM_SIZE}`));
  });

  it('a uri whose pattern needs the linear engine has the same limits, reported by the router check', () => {
    const uri = '/*a/' + 'x'.repeat(1_100) + '/*b/end';
    const reason = Router.validate({ id: 'r', uris: [uri], priority: 0 }, 'radixtree_uri');
    assert.match(reason ?? '', /^uris\[0\]: regular expression .* is too large/);
  });
});

describe('PCRE syntax that APISIX users write', () => {
  const SUPPORTED: [string, string, boolean, boolean?][] = [
    ['(?i)^chrome', 'Chrome/126', true],
    ['\\Av[0-9]+\\z', 'v12', true],
    ['^[[:alpha:]]+$', 'abc', true],
    ['^[[:digit:]]+$', 'abc', false],
    ['^\\pL+$', 'héllo', true],
    ['^(?P<major>\\d+)\\.(?<minor>\\d+)$', '1.2', true],
    ['(?<=/api)/v1', '/api/v1', true],
    ['(?<!/api)/v1', '/api/v1', false],
    ['^\\Qa.b\\E$', 'a.b', true],
    ['^\\Qa.b\\E$', 'axb', false],
    ['(?s)a.b', 'a\nb', true],
    ['a.b', 'a\nb', false],
    ['^\\x{e9}$', 'é', true],
    ['^caf\\x{e9}$', 'CAFÉ', true, true],
    ['^[a-z]+$', 'ABC', true, true],
  ];
  for (const [pattern, input, expected, caseless] of SUPPORTED) {
    it(`${pattern}${caseless ? ' (~*)' : ''} on ${JSON.stringify(input)} → ${expected}`, () => {
      assert.equal(compileConfigRegex(pattern, { caseless }).test(input), expected);
    });
  }

  it('$ is the end of the input (PCRE would also match before a final newline)', () => {
    assert.equal(compileConfigRegex('^a$').test('a\n'), false);
  });
});

function seeded(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

function pick<T>(random: () => number, list: readonly T[]): T {
  return list[Math.floor(random() * list.length)]!;
}
