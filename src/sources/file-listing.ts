import { createHash } from 'node:crypto';
import { parseDocument } from 'yaml';
import { KINDS, type Change, type Kind } from '../config/changeset.ts';
import { ErrorCode } from '../errors.ts';
import { checkValueLimits } from '../security/limits.ts';

/**
 * What one read of the routes file amounts to. Computed on the file source's worker thread, so the
 * thread that serves requests receives only this: nothing when the bytes did not change, an error
 * when the file does not parse, or the objects that changed since the last good read.
 */
export type FileReadResult =
  | { type: 'unchanged' }
  | { type: 'failed'; code: string; message: string }
  | {
      type: 'changes';
      /** the first successful read: `changes` lists every object (a full listing) */
      full: boolean;
      revision: number;
      /** content hash of the file, shown in /status as source_detail */
      hash: string;
      /** full: every object; otherwise the objects that changed, and explicit deletes */
      changes: Change[];
    };

/** Top-level keys of an APISIX standalone file (apisix.yaml) for kinds Portico does not serve. */
const APISIX_ONLY_KINDS = ['protos', 'plugin_metadata', 'consumer_groups', 'secrets', 'credentials', 'plugins'];

/** The reason for a top-level key that is not a kind: the likely typo, or the APISIX kind. */
function unknownKeyProblem(key: string): string {
  const known = `known: ${KINDS.join(', ')}`;
  if (APISIX_ONLY_KINDS.includes(key)) return `top-level key '${key}': an APISIX kind Portico does not serve (it reads ${KINDS.join(', ')})`;
  const near = KINDS.find((kind) => editDistance(key.toLowerCase(), kind) <= 2);
  return `unknown top-level key '${key}'${near ? ` (did you mean '${near}'?)` : ''} (${known})`;
}

/** Levenshtein distance, for the "did you mean" of a misspelt key (keys are short). */
function editDistance(a: string, b: string): number {
  let row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const next = [i];
    for (let j = 1; j <= b.length; j++) {
      next[j] = Math.min(row[j]! + 1, next[j - 1]! + 1, row[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    row = next;
  }
  return row[b.length]!;
}

/** One item of a top-level list, as far as diffing needs it. */
interface Item {
  /** the item's `id` as a string; null when it has none usable */
  id: string | null;
  /** hash of the item's canonical JSON: equal hashes, equal objects */
  hash: string;
  /** the decoded value, when this read decoded it */
  value?: unknown;
  /** why the value is over the size/depth limits: the object is rejected, its value never sent */
  over?: string;
  /** the item's own text, when it came from a chunk (to decode it again if needed) */
  text?: string;
}

/** A top-level value: a list of items, or anything else (null, a mapping, a scalar). */
type Section = { items: Item[] } | { value: unknown };

const PARSE_OPTIONS = { prettyErrors: true, uniqueKeys: true } as const;

/**
 * The routes file as a listing of objects, diffed read after read.
 *
 * A one-line edit of a 100,000-route file must not cost a parse of the whole file. So the text is
 * cut into its top-level sections and their list items (`- id: ...` at the list's indentation),
 * each item is decoded on its own and remembered by its exact text: the next read decodes only
 * items whose text is new. Cutting is done only where it cannot change the meaning: a block
 * mapping at the top, items at one indentation, no document markers or directives. A file laid
 * out otherwise, or a piece that does not decode alone (an alias to an anchor in another item, a
 * quote or bracket left open across items, a syntax error), is decoded whole, as before; the
 * result is the same either way, only the cost differs.
 *
 * The listing keeps, per object, only the hash of its canonical JSON (keys sorted): an edit that
 * reorders keys or reformats is not a change, and memory stays near the size of the file.
 */
export class FileListing {
  /** "kind/id" -> content hash of what the last good read sent; undefined until there was one */
  private sent: Map<string, string> | undefined;
  private lastHash = '';
  /** item text -> what it decodes to; only the items of the last good read are kept */
  private pieces = new Map<string, Item>();

  constructor(private readonly path: string) {}

  read(text: string, revision: number): FileReadResult {
    const hash = createHash('sha256').update(text).digest('hex').slice(0, 16);
    // content back to what was last applied (a broken edit reverted): nothing to do
    if (hash === this.lastHash) return { type: 'unchanged' };
    const failed = (message: string): FileReadResult => ({ type: 'failed', code: ErrorCode.PARSE, message: `${this.path}: ${message}` });
    let sections: Map<string, Section>;
    let pieces: Map<string, Item>;
    try {
      ({ sections, pieces } = this.decode(text));
    } catch (err) {
      return failed((err as Error).message);
    }
    // a typo (`rotues:`) would otherwise apply the file without its routes, deleting every one:
    // the whole file is refused, like one that does not parse, and the last good config stays
    for (const key of sections.keys()) {
      if (!(KINDS as readonly string[]).includes(key)) return failed(unknownKeyProblem(key));
    }
    // "kind/id" -> the change this object would be, and its content hash
    const listing = new Map<string, { change: Change; hash: string; item?: Item }>();
    for (const kind of KINDS) {
      const section = sections.get(kind);
      if (section === undefined) continue;
      if (!('items' in section)) {
        if (section.value === null || section.value === undefined) continue;
        return failed(`'${kind}' must be a list`);
      }
      const ids = new Set<string>();
      section.items.forEach((item, index) => {
        if (item.id === null) {
          const parseError = `${kind}[${index}]: missing '${kind === 'consumers' ? 'username' : 'id'}'`;
          listing.set(`${kind}/#${index}`, { change: { kind, id: `#${index}`, modRevision: revision, parseError }, hash: `!${parseError}` });
        } else if (ids.has(item.id)) {
          const parseError = `${kind}[${index}]: duplicate id '${item.id}'`;
          const id = `${item.id}#${index}`;
          listing.set(`${kind}/${id}`, { change: { kind, id, modRevision: revision, parseError }, hash: `!${parseError}` });
        } else if (item.over !== undefined) {
          ids.add(item.id);
          const change: Change = { kind, id: item.id, modRevision: revision, parseError: item.over, parseErrorCode: ErrorCode.LIMIT };
          listing.set(`${kind}/${item.id}`, { change, hash: item.hash });
        } else {
          ids.add(item.id);
          listing.set(`${kind}/${item.id}`, { change: { kind, id: item.id, modRevision: revision }, hash: item.hash, item });
        }
      });
    }

    const previous = this.sent;
    const changes: Change[] = [];
    const sent = new Map<string, string>();
    for (const [key, { change, hash: content, item }] of listing) {
      sent.set(key, content);
      // an unchanged object is not sent at all: the store keeps it, and its modRevision
      if (previous?.get(key) === content) continue;
      if (item) change.value = item.value !== undefined || item.text === undefined ? item.value : decodeItem(item.text).value;
      changes.push(change);
    }
    if (previous) {
      for (const key of previous.keys()) {
        if (sent.has(key)) continue;
        const i = key.indexOf('/');
        changes.push({ kind: key.slice(0, i) as Kind, id: key.slice(i + 1), modRevision: revision, deleted: true });
      }
    }
    this.sent = sent;
    this.lastHash = hash;
    // decoded values are not kept: the next read needs only ids and hashes
    for (const item of pieces.values()) item.value = undefined;
    this.pieces = pieces;
    return { type: 'changes', full: previous === undefined, revision, hash, changes };
  }

  /** The file's top-level sections, decoded piece by piece when its layout allows, else whole. */
  private decode(text: string): { sections: Map<string, Section>; pieces: Map<string, Item> } {
    const layout = cutSections(text);
    // items decoded alone stay good whatever happens to the rest: kept even when the file is
    // decoded whole, so a file that always needs that does not pay twice for them next time
    const pieces = new Map<string, Item>();
    if (layout) {
      const sections = new Map<string, Section>();
      let whole = false;
      for (const s of layout) {
        if (s.itemTexts) {
          const items: Item[] = [];
          for (const t of s.itemTexts) {
            let item = pieces.get(t) ?? this.pieces.get(t);
            if (!item) {
              const decoded = tryDecodeItem(t);
              if (!decoded) break;
              item = decoded;
            }
            pieces.set(t, item);
            items.push(item);
          }
          if (items.length !== s.itemTexts.length) {
            whole = true;
            break;
          }
          sections.set(s.key, { items });
        } else {
          const value = tryDecodeSection(s.text!, s.key);
          if (value === undefined) {
            whole = true;
            break;
          }
          sections.set(s.key, sectionOf(value.value));
        }
      }
      if (!whole) return { sections, pieces };
    }
    return { sections: decodeWhole(text), pieces };
  }
}

/** A top-level section as text: the texts of its list items, or its whole text (key line included). */
interface SectionText {
  key: string;
  itemTexts?: string[];
  text?: string;
}

/** `key:` alone (a block value follows) or `key: value` on one line; plain keys only */
const TOP_KEY = /^([A-Za-z_][\w-]*):(?:[ \t]+(.*))?$/;
/** a list item starts with `-` followed by a space or the end of the line */
const isItemStart = (line: string, indent: number) =>
  line.charCodeAt(indent) === 0x2d /* - */ && (line.length === indent + 1 || line[indent + 1] === ' ' || line[indent + 1] === '\t');

/**
 * Cuts the file into top-level sections and list items, or returns undefined when the layout is
 * not the plain one where cutting provably keeps the meaning. Cuts happen only before a line that
 * YAML cannot read as the continuation of what precedes: a plain `key:` at column 0, or `- ` at
 * exactly the indentation of the list's items. Any other line at or left of that indentation
 * (a closing bracket, a quoted string's continuation, a tab) gives up on cutting. Every piece is
 * the exact text of the file, line ends included, so a block scalar decodes to the same string.
 */
export function cutSections(text: string): SectionText[] | undefined {
  if (text.charCodeAt(0) === 0xfeff) return undefined;
  const out: SectionText[] = [];
  const keys = new Set<string>();
  /** the open section: where it starts, and where its items start (items mode) */
  let section: { key: string; start: number; inline: boolean; hasBody: boolean; items?: number[]; itemIndent: number } | undefined;
  let started = false;
  const close = (end: number) => {
    if (!section) return;
    const { key, items } = section;
    if (items) out.push({ key, itemTexts: items.map((at, i) => text.slice(at, i + 1 < items.length ? items[i + 1] : end)) });
    else out.push({ key, text: text.slice(section.start, end) });
    section = undefined;
  };
  let pos = 0;
  while (pos < text.length) {
    const lineStart = pos;
    const nl = text.indexOf('\n', pos);
    pos = nl === -1 ? text.length : nl + 1;
    let line = text.slice(lineStart, nl === -1 ? text.length : nl);
    if (line.endsWith('\r')) line = line.slice(0, -1);
    let indent = 0;
    while (line.charCodeAt(indent) === 0x20) indent++;
    // blank and comment lines never end anything: they stay with what precedes them
    if (indent === line.length || line[indent] === '#') continue;
    if (line[indent] === '\t') {
      if (/^[ \t]*$/.test(line)) continue;
      return undefined;
    }
    if (indent === 0 && (line.startsWith('---') || line.startsWith('...') || line.startsWith('%'))) {
      // a lone `---` before any content is harmless; other document markers and directives are not
      if (started || line.trimEnd() !== '---') return undefined;
      continue;
    }
    started = true;
    if (section?.items && indent === section.itemIndent && isItemStart(line, indent)) {
      section.items.push(lineStart);
      continue;
    }
    if (section && !section.inline && !section.hasBody && isItemStart(line, indent)) {
      // the block value starts with a list item: the section is cut into items
      section.hasBody = true;
      section.itemIndent = indent;
      section.items = [lineStart];
      continue;
    }
    if (indent === 0) {
      const m = TOP_KEY.exec(line);
      if (!m || keys.has(m[1]!)) return undefined;
      close(lineStart);
      keys.add(m[1]!);
      const value = m[2]?.trim() ?? '';
      section = { key: m[1]!, start: lineStart, inline: value !== '' && !value.startsWith('#'), hasBody: false, itemIndent: -1 };
      continue;
    }
    if (!section) return undefined;
    section.hasBody = true;
    if (section.items && indent <= section.itemIndent) return undefined;
  }
  close(text.length);
  return out;
}

/** Decodes one list item's text on its own, or undefined when it does not decode alone. */
function tryDecodeItem(text: string): Item | undefined {
  try {
    return decodeItem(text);
  } catch {
    return undefined;
  }
}

function decodeItem(text: string): Item {
  const doc = parseDocument(text, PARSE_OPTIONS);
  if (doc.errors.length) throw doc.errors[0]!;
  const list = doc.toJS() as unknown;
  if (!Array.isArray(list) || list.length !== 1) throw new Error('not one list item');
  return itemOf(list[0], text);
}

function tryDecodeSection(text: string, key: string): { value: unknown } | undefined {
  try {
    const doc = parseDocument(text, PARSE_OPTIONS);
    if (doc.errors.length) return undefined;
    const root = doc.toJS() as Record<string, unknown> | null;
    if (root === null || typeof root !== 'object' || Array.isArray(root)) return undefined;
    const keys = Object.keys(root);
    if (keys.length !== 1 || keys[0] !== key) return undefined;
    return { value: root[key] };
  } catch {
    return undefined;
  }
}

/** The whole file in one parse: the reference behaviour, and the way errors get their line numbers. */
function decodeWhole(text: string): Map<string, Section> {
  const doc = parseDocument(text, PARSE_OPTIONS);
  if (doc.errors.length) throw new Error(doc.errors[0]!.message);
  const root = (doc.toJS() ?? {}) as Record<string, unknown>;
  if (typeof root !== 'object' || Array.isArray(root)) throw new Error('top level must be a mapping with routes, upstreams, services, consumers, plugin_configs, global_rules');
  const sections = new Map<string, Section>();
  for (const [key, value] of Object.entries(root)) sections.set(key, sectionOf(value));
  return sections;
}

function sectionOf(value: unknown): Section {
  return Array.isArray(value) ? { items: value.map((v) => itemOf(v)) } : { value };
}

function itemOf(value: unknown, text?: string): Item {
  // consumers are named by `username` (APISIX): that is their id
  const rawId = (value as { id?: unknown; username?: unknown } | null)?.id ?? (value as { username?: unknown } | null)?.username;
  const id = value !== null && typeof value === 'object' && (typeof rawId === 'string' || typeof rawId === 'number') ? String(rawId) : null;
  // bounds first, without recursion: hashing and sending the value to the store both recurse
  const over = checkValueLimits(value);
  if (over !== undefined) return { id, hash: `!${over}`, over, text };
  return { id, hash: createHash('sha256').update(canonicalJson(value)).digest('base64url').slice(0, 22), value, text };
}

/**
 * JSON with object keys sorted, so that two decodings of the same object give the same text.
 * Values JSON cannot tell apart (NaN, Infinity and null; -0 and 0; a Date and its string) stay distinct.
 */
export function canonicalJson(value: unknown): string {
  if (value === null) return 'null';
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return JSON.stringify(value);
    case 'number':
      if (Object.is(value, -0)) return '-0';
      return Number.isFinite(value) ? JSON.stringify(value) : `"\u0000${String(value)}"`;
    case 'object': {
      if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
      if (Object.getPrototypeOf(value) !== Object.prototype && Object.getPrototypeOf(value) !== null) {
        return `"\u0000${Object.prototype.toString.call(value)}${String(value)}"`;
      }
      const keys = Object.keys(value).sort();
      return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson((value as Record<string, unknown>)[k])}`).join(',')}}`;
    }
    default:
      return `"\u0000${typeof value}:${String(value)}"`;
  }
}
