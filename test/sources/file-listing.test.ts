/**
 * FileListing decodes the routes file piece by piece and diffs it against the previous read. These
 * tests hold it to the reference: the whole file decoded in one parse (what the file source did
 * before), on hand-picked layouts and on random files with random corruptions, for a first read
 * and for a read after an edit.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseDocument, stringify } from 'yaml';
import { KINDS, type Change } from '../../src/config/changeset.ts';
import { cutSections, FileListing } from '../../src/sources/file-listing.ts';

type Objects = Map<string, { value?: unknown; parseError?: string }>;

/** The file source's meaning of a file, from one parse of the whole text; undefined: rejected. */
function reference(text: string): Objects | undefined {
  try {
    const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
    if (doc.errors.length) return undefined;
    const root = (doc.toJS() ?? {}) as Record<string, unknown>;
    if (typeof root !== 'object' || Array.isArray(root)) return undefined;
    // a top-level key that is not a kind refuses the whole file (a typo must not delete a kind)
    if (Object.keys(root).some((k) => !(KINDS as readonly string[]).includes(k))) return undefined;
    const out: Objects = new Map();
    for (const kind of KINDS) {
      const list = root[kind];
      if (list === undefined || list === null) continue;
      if (!Array.isArray(list)) return undefined;
      const seen = new Set<string>();
      list.forEach((item: unknown, index) => {
        const rawId = (item as { id?: unknown } | null)?.id;
        if (item === null || typeof item !== 'object' || (typeof rawId !== 'string' && typeof rawId !== 'number')) {
          out.set(`${kind}/#${index}`, { parseError: `${kind}[${index}]: missing 'id'` });
          return;
        }
        const id = String(rawId);
        if (seen.has(id)) {
          out.set(`${kind}/${id}#${index}`, { parseError: `${kind}[${index}]: duplicate id '${id}'` });
          return;
        }
        seen.add(id);
        out.set(`${kind}/${id}`, { value: item });
      });
    }
    return out;
  } catch {
    return undefined;
  }
}

/** Applies a read's changes to what the previous reads gave. */
function applyChanges(into: Objects, changes: Change[], full: boolean): Objects {
  const out: Objects = full ? new Map() : new Map(into);
  for (const c of changes) {
    const key = `${c.kind}/${c.id}`;
    if (c.deleted) out.delete(key);
    else out.set(key, c.parseError !== undefined ? { parseError: c.parseError } : { value: c.value });
  }
  return out;
}

/** Reads `text` with `listing` and checks the outcome against the reference; returns the new state. */
function check(listing: FileListing, state: Objects, text: string, revision: number): Objects {
  const want = reference(text);
  const got = listing.read(text, revision);
  if (want === undefined) {
    assert.equal(got.type, 'failed', `accepted a file the whole parse rejects:\n${text}`);
    return state;
  }
  if (got.type === 'unchanged') return state;
  assert.equal(got.type, 'changes', `rejected a file the whole parse accepts (${got.type === 'failed' ? got.message : ''}):\n${text}`);
  if (got.type !== 'changes') return state;
  const next = applyChanges(state, got.changes, got.full);
  assert.deepEqual(next, want, `decoded differently from the whole parse:\n${text}`);
  return next;
}

const routes = (n: number, edit = '') =>
  'upstreams:\n  - id: u\n    nodes:\n      "127.0.0.1:1980": 1\nroutes:\n' +
  Array.from({ length: n }, (_, i) => `  - id: r${i}\n    uri: /r/${i}${i === 1 ? edit : ''}\n    upstream_id: u\n`).join('');

describe('file listing: diffs', () => {
  test('the first read is a full listing; a one-line edit changes one object and keeps the others', () => {
    const listing = new FileListing('routes.yaml');
    const first = listing.read(routes(100), 1);
    assert.equal(first.type, 'changes');
    assert.ok(first.type === 'changes' && first.full && first.changes.length === 101);
    const edited = listing.read(routes(100, '/v2'), 2);
    assert.ok(edited.type === 'changes' && !edited.full);
    assert.deepEqual(edited.changes, [{ kind: 'routes', id: 'r1', modRevision: 2, value: { id: 'r1', uri: '/r/1/v2', upstream_id: 'u' } }]);
  });

  test('a removed object is an explicit delete; reordering items or keys, comments and blank lines change nothing', () => {
    const listing = new FileListing('routes.yaml');
    listing.read('routes:\n  - id: a\n    uri: /a\n  - id: b\n    uri: /b\n', 1);
    const reordered = listing.read('# the routes\nroutes:\n\n  - uri: /b\n    id: b   # moved\n\n  - {id: a, uri: /a}\n', 2);
    assert.ok(reordered.type === 'changes');
    assert.deepEqual(reordered.changes, []);
    const removed = listing.read('routes:\n  - id: b\n    uri: /b\n', 3);
    assert.ok(removed.type === 'changes');
    assert.deepEqual(removed.changes, [{ kind: 'routes', id: 'a', modRevision: 3, deleted: true }]);
  });

  test('the same bytes again: unchanged; a broken file: failed, and the version in force stays the base of the diff', () => {
    const listing = new FileListing('routes.yaml');
    listing.read(routes(3), 1);
    assert.deepEqual(listing.read(routes(3), 2), { type: 'unchanged' });
    const broken = listing.read(`${routes(3)}  - id: [\n`, 2);
    assert.equal(broken.type, 'failed');
    assert.match(broken.type === 'failed' ? broken.message : '', /^routes\.yaml: .*at line \d+/s);
    assert.deepEqual(listing.read(routes(3), 2), { type: 'unchanged' }, 'reverted to the content in force');
    const edit = listing.read(routes(3, 'x'), 2);
    assert.ok(edit.type === 'changes' && edit.changes.length === 1 && edit.changes[0]!.id === 'r1');
  });

  test('missing and duplicate ids are parse errors of their own; fixing one clears it with a delete', () => {
    const listing = new FileListing('routes.yaml');
    const first = listing.read('routes:\n  - id: a\n    uri: /a\n  - uri: /x\n  - id: a\n    uri: /dup\n', 1);
    assert.ok(first.type === 'changes');
    assert.deepEqual(
      first.changes.map((c) => [c.id, c.parseError]),
      [['a', undefined], ['#1', "routes[1]: missing 'id'"], ['a#2', "routes[2]: duplicate id 'a'"]],
    );
    const fixed = listing.read('routes:\n  - id: a\n    uri: /a\n  - id: x\n    uri: /x\n', 2);
    assert.ok(fixed.type === 'changes');
    assert.deepEqual(
      fixed.changes.map((c) => [c.id, c.deleted ?? false]),
      [['x', false], ['#1', true], ['a#2', true]],
    );
  });

  test('an object over the depth limit is rejected on its own, without its value', () => {
    const listing = new FileListing('routes.yaml');
    const deep = `${'['.repeat(100)}${']'.repeat(100)}`;
    const read = listing.read(`routes:\n  - id: a\n    uri: /a\n  - id: deep\n    plugins: {x: {a: ${deep}}}\n`, 1);
    assert.ok(read.type === 'changes');
    assert.deepEqual(read.changes[0], { kind: 'routes', id: 'a', modRevision: 1, value: { id: 'a', uri: '/a' } });
    const rejected = read.changes[1]!;
    assert.equal(rejected.value, undefined);
    assert.equal(rejected.parseErrorCode, 'PORTICO_ERR_LIMIT');
    assert.match(rejected.parseError!, /^\/plugins\/x\/a\/0\/.*nested deeper than 64 levels/);
  });

  test('the plain layout is cut into items; others are decoded whole', () => {
    assert.equal(cutSections(routes(3))?.find((s) => s.key === 'routes')?.itemTexts?.length, 3);
    assert.equal(cutSections('---\nroutes:\n- id: a\n  uri: /a\n')?.[0]?.itemTexts?.length, 1);
    assert.equal(cutSections('routes:\n  - id: a\n    uri: "/a\n/b"\n'), undefined);
    assert.equal(cutSections('%YAML 1.2\n---\nroutes: []\n'), undefined);
    assert.equal(cutSections('routes: []\nroutes: []\n'), undefined);
  });
});

/** Files where cutting into pieces could go wrong if done carelessly. */
const LAYOUTS = [
  routes(3),
  '',
  '# only a comment\n',
  '---\nroutes:\n  - id: a\n    uri: /a\n',
  '--- # c\nroutes:\n  - id: a\n    uri: /a\n',
  'routes:\n- id: a\n  uri: /a\n- id: b\n  uri: /b\nupstreams:\n- id: u\n  nodes: {"1.1.1.1:80": 1}\n',
  'routes:\r\n  - id: a\r\n    uri: /a\r\n  - id: b\r\n    uri: /b\r\n',
  'routes:\n  - id: a\n    desc: |\n      line one\n\n      line three\n\n\n  - id: b\n    desc: |+\n      kept\n\n\nupstreams: []\n',
  'routes:\n  - id: a\n    desc: >-\n      folded\n      text\n  - id: b\n    desc: |\n      last, no final newline',
  'routes:\n  - id: a\n    desc: |\n      - looks like an item\n      key: looks like a key\n',
  'routes:\n  - &r {id: a, uri: /a}\n  - *r\n',
  'routes:\n  - id: a\n    base: &b {x: 1}\n  - id: b\n    <<: *b\n',
  'routes:\n  - id: a\n    uri: "/a\n  - id: b"\n',
  'routes:\n  - id: a\n    uri: [/a,\n  /b]\n',
  'routes:\n  - id: a\n    uri: [/a,\n      /b]\n',
  'routes:\n  - id: a\n    uri: /a\n # odd comment\n  - id: b\n',
  'routes:\n  - id: a\n uri: /a\n',
  'routes:\n    - id: a\n  - id: b\n',
  'routes:\n  - id: a\n  - id: a\n',
  'routes:\n  - id: 1\n  - id: "1"\n',
  'routes:\n  -\n    id: a\n  - \n  - plain\n  - [1, 2]\n',
  'routes: &all\n  - id: a\nservices: *all\n',
  'routes: [{id: a}, {id: b}]\n',
  'routes: {id: a}\n',
  'routes: null\nservices:\nupstreams: ~\n',
  'routes:\n  - id: a\n    n: .inf\n    m: .nan\n    z: -0\n  - id: b\n    n: 0x1F\n    t: 2001-12-14\n',
  'extra: {a: 1}\nroutes:\n  - id: a\n',
  'extra: [1, 2\nroutes:\n  - id: a\n',
  '- id: a\n',
  'just a scalar\n',
  'routes:\n  - id: a\n    x: 1\n    x: 2\n',
  'routes:\n\t- id: a\n',
  'routes:\n  - id: a\n    uri: /a\n...\n',
  'routes: # the list\n  # first\n  - id: a\n',
  'routes:\n  - id: a\n    "quoted key": 1\n    ? complex\n    : value\n',
  '"routes":\n  - id: a\n',
  'routes:\n  - id: a\nroutes2:\n  - id: b\n',
  '\ufeffroutes:\n  - id: a\n',
  'routes:\n  - id: a\n    uri: /a',
  'routes:\n  - id: a\n    s: \'it\'\'s\n  - id: b\'\n',
  'routes:\n  - !!map {id: a}\n  - !custom {id: b}\n',
];

describe('file listing: decodes like one parse of the whole file', () => {
  test('hand-picked layouts, first read and read after read', () => {
    for (const text of LAYOUTS) check(new FileListing('f'), new Map(), text, 1);
    // every layout read after every other, so the diff and the item cache see them all
    const listing = new FileListing('f');
    let state: Objects = new Map();
    let revision = 1;
    for (const a of LAYOUTS) for (const b of [a, routes(3), a]) state = check(listing, state, b, revision++);
  });

  test('random files, random edits and corruptions', () => {
    const rounds = Number(process.env.PORTICO_FUZZ_ROUNDS ?? 300);
    const rnd = mulberry32(Number(process.env.PORTICO_FUZZ_SEED ?? 6));
    for (let round = 0; round < rounds; round++) {
      const listing = new FileListing('f');
      let state: Objects = new Map();
      let text = randomFile(rnd);
      for (let step = 0; step < 8; step++) {
        state = check(listing, state, text, round * 10 + step + 1);
        text = rnd() < 0.5 ? corrupt(text, rnd) : randomFile(rnd);
      }
    }
  });
});

function mulberry32(seed: number): () => number {
  return () => {
    seed |= 0;
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const WORDS = ['a', 'b', '/x', 'id', '- y', 'k: v', '#c', '"q"', "'s'", '[1]', '{a: 1}', '&a', '*a', 'line\nbreak', 'trail  ', '', 'null', '1', 'true'];

function randomValue(rnd: () => number, depth: number): unknown {
  const r = rnd();
  if (depth > 2 || r < 0.4) return [WORDS[Math.floor(rnd() * WORDS.length)], Math.floor(rnd() * 100), rnd() < 0.5, null][Math.floor(rnd() * 4)];
  if (r < 0.7) return Array.from({ length: Math.floor(rnd() * 3) }, () => randomValue(rnd, depth + 1));
  return Object.fromEntries(Array.from({ length: Math.floor(rnd() * 3) }, () => [WORDS[Math.floor(rnd() * WORDS.length)]!, randomValue(rnd, depth + 1)]));
}

function randomFile(rnd: () => number): string {
  const doc: Record<string, unknown> = {};
  for (const kind of ['routes', 'services', 'upstreams', 'other']) {
    if (rnd() < 0.3) continue;
    doc[kind] = Array.from({ length: Math.floor(rnd() * 5) }, (_, i) => ({ id: rnd() < 0.9 ? `${kind[0]}${Math.floor(rnd() * 6)}` : i, v: randomValue(rnd, 0) }));
  }
  return stringify(doc, {
    indentSeq: rnd() < 0.7,
    indent: rnd() < 0.8 ? 2 : 4,
    flowCollectionPadding: rnd() < 0.5,
    lineWidth: rnd() < 0.5 ? 20 : 80,
    defaultStringType: (['PLAIN', 'QUOTE_DOUBLE', 'QUOTE_SINGLE', 'BLOCK_LITERAL'] as const)[Math.floor(rnd() * 4)],
    // mostly plain keys, the layout the file source cuts into pieces
    defaultKeyType: rnd() < 0.9 ? 'PLAIN' : null,
  });
}

/** A few random character edits at random places, biased to the characters YAML cares about. */
function corrupt(text: string, rnd: () => number): string {
  const chars = ['\n', ' ', '  ', '-', '- ', ':', '"', "'", '[', ']', '{', '}', '#', '|', '>', '&a', '*a', '\t', 'x', '\n  - id: z\n', '\nroutes:\n'];
  let out = text;
  for (let n = 1 + Math.floor(rnd() * 3); n > 0; n--) {
    const at = Math.floor(rnd() * (out.length + 1));
    if (rnd() < 0.3 && out.length) out = out.slice(0, at) + out.slice(at + 1 + Math.floor(rnd() * 3));
    else out = out.slice(0, at) + chars[Math.floor(rnd() * chars.length)] + out.slice(at);
  }
  return out;
}
