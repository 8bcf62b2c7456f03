/**
 * The request body as route `vars` see it through `post_arg.*` (APISIX 3.x): read only when a
 * route's vars reach such a variable (the router says so with `request.bodyWanted`), bounded, then
 * decoded by Content-Type the way APISIX decodes it (apisix/core/request.lua
 * get_request_body_table):
 *
 * - a Content-Type containing `application/json`: the JSON value;
 * - containing `application/x-www-form-urlencoded`: the form as ngx.req.get_post_args gives it
 *   (name → value, `+` and %XX decoded, a repeated name → the list of its values, a bare `name` →
 *   true);
 * - containing `multipart/form-data`: each part's name → its value, the first part of a name
 *   winning (lua-multipart's get_all);
 * - anything else, no body, or a body that does not decode: nothing (every `post_arg` is absent).
 *
 * The limit: APISIX reads at most `apisix.max_post_args_readable_size` (64 MiB by default) and a
 * larger body resolves no `post_arg.*` variable, so the routes that test them do not match it; the
 * request is not refused. Portico does the same with `proxy.max_post_args_readable_size` [1 MiB], because the body is
 * held in memory (nginx spools large bodies to disk): a larger body is not matched by post_arg
 * routes, it still reaches whichever other route matches it, streamed.
 *
 * Both transports use this file; what they share beyond parsing is the replay rule: the bytes read
 * for matching are forwarded unchanged, then whatever of the body was not read yet.
 */
import type { MatchRequest, PostArgs } from '../router/types.ts';

/**
 * The most body bytes read for `post_arg.*` matching (APISIX: max_post_args_readable_size):
 * `proxy.max_post_args_readable_size` of portico.yaml, set once per process by the data plane.
 */
let maxBytes = 1024 * 1024;

export function configurePostArgs(options: { maxBytes: number }): void {
  maxBytes = options.maxBytes;
}

export function postArgsMaxBytes(): number {
  return maxBytes;
}

/** No body to read (a body-less request, an upgrade, a body over the limit): every post_arg is absent. */
export const NO_POST_ARGS: PostArgs = Object.freeze({ body: undefined, urlencoded: false });

const JSON_TYPE = 'application/json';
const FORM_TYPE = 'application/x-www-form-urlencoded';
const MULTIPART_TYPE = 'multipart/form-data';

/**
 * Whether the request's declared body is over the limit before a byte of it is read (APISIX checks
 * Content-Length first and does not read such a body at all).
 */
export function declaredTooLarge(contentLength: string | undefined): boolean {
  if (contentLength === undefined) return false;
  const n = Number(contentLength);
  return Number.isFinite(n) && n > maxBytes;
}

/** Decodes a whole body (at most postArgsMaxBytes()) by its Content-Type. */
export function decodePostArgs(body: Buffer, contentType: string | undefined): PostArgs {
  const type = contentType ?? '';
  // APISIX: post_arg_<name> wants the type to start with the form type (a plain prefix test)
  const urlencoded = type.startsWith(FORM_TYPE);
  // APISIX tests the types in this order, each a plain substring search, case-sensitive
  if (type.includes(JSON_TYPE)) {
    if (body.length === 0) return NO_POST_ARGS;
    try {
      return { body: JSON.parse(body.toString('utf8')), urlencoded };
    } catch {
      return NO_POST_ARGS;
    }
  }
  if (type.includes(FORM_TYPE)) return { body: decodeForm(body.toString('latin1')), urlencoded };
  if (type.includes(MULTIPART_TYPE)) {
    if (body.length === 0) return NO_POST_ARGS;
    const boundary = multipartBoundary(type);
    return boundary === undefined ? NO_POST_ARGS : { body: decodeMultipart(body.toString('latin1'), boundary), urlencoded };
  }
  return NO_POST_ARGS;
}

/** The request has no body to match on (none, an upgrade's, or one over the limit): no post args. */
export function withoutBody(request: MatchRequest): void {
  request.postArgs = NO_POST_ARGS;
  request.bodyWanted = false;
}

/**
 * The body bytes read for matching, kept as received so they are forwarded unchanged. Stops
 * (returns false) once they are over postArgsMaxBytes(): the rest of the body is then streamed.
 */
export class BodyForMatching {
  readonly chunks: Buffer[] = [];
  size = 0;

  add(chunk: Buffer): boolean {
    this.chunks.push(chunk);
    this.size += chunk.length;
    return this.size <= maxBytes;
  }

  /** The whole body was read: decode it for the request's second match. */
  decodeInto(request: MatchRequest, contentType: string | undefined): void {
    if (this.chunks.length > 1) this.chunks.splice(0, this.chunks.length, Buffer.concat(this.chunks, this.size));
    request.postArgs = decodePostArgs(this.chunks[0] ?? Buffer.alloc(0), contentType);
    request.bodyWanted = false;
  }
}

/**
 * An urlencoded form as ngx.req.get_post_args: `&`-separated, `+` is a space, %XX decoded (bytes,
 * then read as UTF-8), a repeated name collects its values in order, a name without `=` is true, an
 * empty name is skipped. `text` is the body as latin1 (one char per byte).
 */
function decodeForm(text: string): Record<string, unknown> {
  const form = Object.create(null) as Record<string, unknown>;
  for (const pair of text.split('&')) {
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    const name = decodeFormComponent(eq === -1 ? pair : pair.slice(0, eq));
    if (name === '') continue;
    const value: string | true = eq === -1 ? true : decodeFormComponent(pair.slice(eq + 1));
    if (!Object.hasOwn(form, name)) form[name] = value;
    else {
      const previous = form[name];
      if (Array.isArray(previous)) previous.push(value);
      else form[name] = [previous, value];
    }
  }
  return form;
}

function decodeFormComponent(latin1: string): string {
  const spaced = latin1.includes('+') ? latin1.replaceAll('+', ' ') : latin1;
  // percent-escapes decode to bytes; a malformed one stays as it is (nginx does not fail on it)
  const bytes = Buffer.from(spaced.replace(/%([0-9a-fA-F]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16))), 'latin1');
  return bytes.toString('utf8');
}

/** `boundary=` of a multipart Content-Type (quoted or not), as lua-multipart reads it. */
function multipartBoundary(contentType: string): string | undefined {
  const m = /;\s*boundary=([^\s;]+)/i.exec(contentType);
  if (m === null) return undefined;
  let boundary = m[1]!;
  if (boundary.length >= 2 && (boundary[0] === '"' || boundary[0] === "'") && boundary.at(-1) === boundary[0]) boundary = boundary.slice(1, -1);
  return boundary === '' ? undefined : boundary;
}

/**
 * multipart/form-data parts, line by line as lua-multipart decodes them (LF or CRLF line ends
 * accepted): a line `--boundary` ends the current part; a part's header lines run to the first
 * empty line; its value is everything up to the next boundary line, minus that line's line break.
 * Part name from `Content-Disposition: ...; name="x"`; the first part of a name wins. Values are
 * read as UTF-8.
 */
function decodeMultipart(latin1: string, boundary: string): Record<string, unknown> {
  const fields = Object.create(null) as Record<string, unknown>;
  const delimiter = '--' + boundary;
  let name: string | undefined;
  let inHeaders = false;
  let valueStart = -1;
  let pos = 0;
  while (pos <= latin1.length) {
    let eol = pos;
    while (eol < latin1.length && latin1.charCodeAt(eol) !== 10 && latin1.charCodeAt(eol) !== 13) eol++;
    const line = latin1.slice(pos, eol);
    // the line break: CRLF, LF or a lone CR
    const next = eol >= latin1.length ? latin1.length + 1 : latin1.charCodeAt(eol) === 13 && latin1.charCodeAt(eol + 1) === 10 ? eol + 2 : eol + 1;
    if (line.startsWith(delimiter)) {
      if (name !== undefined && valueStart !== -1 && !Object.hasOwn(fields, name)) {
        // the value ends before this delimiter line's preceding line break
        let end = pos;
        if (end > valueStart && latin1.charCodeAt(end - 1) === 10) end--;
        if (end > valueStart && latin1.charCodeAt(end - 1) === 13) end--;
        fields[name] = Buffer.from(latin1.slice(valueStart, end), 'latin1').toString('utf8');
      }
      name = undefined;
      valueStart = -1;
      inHeaders = true;
      if (line.startsWith(delimiter + '--')) break;
    } else if (inHeaders) {
      if (line === '') {
        inHeaders = false;
        valueStart = Math.min(next, latin1.length);
      } else if (/^content-disposition\s*:/i.test(line)) {
        const m = /;\s*name\s*=\s*(?:"([^"]*)"|([^;\s]+))/i.exec(line);
        if (m !== null) name = Buffer.from(m[1] ?? m[2]!, 'latin1').toString('utf8');
      }
    }
    pos = next;
  }
  return fields;
}
