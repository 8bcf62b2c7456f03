/**
 * `portico routes|upstreams|... list|get|put|delete`, `apply`, `export`, `history`, `diff`,
 * `rollback`: a thin HTTP client of a running gateway's Admin API (APISIX v3 paths and Portico's
 * /portico/admin/ endpoints). It never talks to etcd itself: the gateway validates, guards and
 * audits every write, whoever makes it.
 *
 * Where: `--admin URL --key KEY` (or PORTICO_ADMIN_URL / PORTICO_ADMIN_KEY), else `--config
 * portico.yaml`: its `admin.listen` and first admin-role key (first key when none is admin).
 *
 * Exit codes (scripts depend on them):
 *   0  done
 *   1  refused or invalid: the Admin API answered 4xx (invalid object, not found, conflict, wrong
 *      key or role), or the file given is invalid
 *   2  cannot reach the Admin API (connection refused, timeout, 5xx such as etcd unreachable, no
 *      such endpoint on that gateway), or bad usage (unknown command/option, missing argument,
 *      no admin section in portico.yaml)
 */
import { Command, Option, type CommanderError } from 'commander';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { stringify as stringifyYaml } from 'yaml';
import { parseObjectText, routesFileObjects, routesFileOf, type ApplyResult } from '../admin/apply.ts';
import type { ConfigDiff, HistoryResult, JsonPatchOp } from '../admin/history.ts';
import { KINDS, type Kind } from '../config/changeset.ts';
import { loadGatewayConfig } from '../config/gateway.ts';
import { parseListen } from '../config/listen.ts';

export const EXIT_OK = 0;
export const EXIT_REFUSED = 1;
export const EXIT_UNREACHABLE = 2;

interface ConnectionOptions {
  config?: string;
  admin?: string;
  key?: string;
  json?: boolean;
  timeout?: string;
}

/** An error that ends the command with `exitCode` after printing `message`. */
class CliExit extends Error {
  constructor(
    readonly exitCode: number,
    message: string,
  ) {
    super(message);
  }
}

interface Connection {
  base: string;
  key: string;
  timeoutMs: number;
}

function connectionOf(opts: ConnectionOptions): Connection {
  const timeoutMs = Math.round(1000 * Number(opts.timeout ?? 60));
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) throw new CliExit(EXIT_UNREACHABLE, `--timeout: a number of seconds`);
  const admin = opts.admin ?? process.env.PORTICO_ADMIN_URL;
  const key = opts.key ?? process.env.PORTICO_ADMIN_KEY;
  if (admin !== undefined && key !== undefined) return { base: admin.replace(/\/+$/, ''), key, timeoutMs };
  const file = resolve(opts.config ?? 'conf/portico.yaml');
  let config;
  try {
    config = loadGatewayConfig(file);
  } catch (err) {
    throw new CliExit(EXIT_UNREACHABLE, `${(err as Error).message} (give --admin URL --key KEY, or --config with an admin section)`);
  }
  if (!config.admin) throw new CliExit(EXIT_UNREACHABLE, `${file}: no admin section: the gateway serves no Admin API (or give --admin URL --key KEY)`);
  const { host, port } = parseListen(config.admin.listen);
  // a wildcard listen address is reached on loopback
  const target = host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '[::1]' : host.includes(':') ? `[${host}]` : host;
  const chosen = config.admin.keys.find((k) => k.role === 'admin') ?? config.admin.keys[0]!;
  return { base: admin?.replace(/\/+$/, '') ?? `http://${target}:${port}`, key: key ?? chosen.key, timeoutMs };
}

interface Answer {
  status: number;
  body: Record<string, unknown>;
}

async function call(conn: Connection, method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Answer> {
  let res: Response;
  try {
    res = await fetch(`${conn.base}${path}`, {
      method,
      headers: { 'x-api-key': conn.key, ...(body !== undefined && { 'content-type': 'application/json' }), ...headers },
      ...(body !== undefined && { body: JSON.stringify(body) }),
      signal: AbortSignal.timeout(conn.timeoutMs),
    });
  } catch (err) {
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    const why = (err as Error).name === 'TimeoutError' ? `no answer within ${conn.timeoutMs / 1000} s` : (cause?.code ?? cause?.message ?? (err as Error).message);
    throw new CliExit(EXIT_UNREACHABLE, `cannot reach the Admin API at ${conn.base}: ${why}`);
  }
  const text = await res.text();
  let parsed: unknown = {};
  try {
    parsed = text === '' ? {} : JSON.parse(text);
  } catch {
    throw new CliExit(EXIT_UNREACHABLE, `${method} ${path}: HTTP ${res.status}, not JSON: ${text.slice(0, 200)}`);
  }
  return { status: res.status, body: (parsed ?? {}) as Record<string, unknown> };
}

/** The answer when 2xx; else a CliExit with the Admin API's error_msg (4xx: 1, 5xx: 2). */
async function expectOk(conn: Connection, method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<Answer> {
  const answer = await call(conn, method, path, body, headers);
  if (answer.status >= 200 && answer.status < 300) return answer;
  const msg = typeof answer.body.error_msg === 'string' ? answer.body.error_msg : JSON.stringify(answer.body);
  const description = typeof answer.body.description === 'string' ? ` (${answer.body.description})` : '';
  const reasons = Array.isArray(answer.body.reasons) && answer.body.reasons.length > 1 ? `\n${answer.body.reasons.map((r) => `  ${String(r)}`).join('\n')}` : '';
  throw new CliExit(answer.status >= 500 ? EXIT_UNREACHABLE : EXIT_REFUSED, `${method} ${path}: ${answer.status}: ${msg}${description}${reasons}`);
}

const out = (text: string): void => {
  process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
};
const printJson = (v: unknown): void => out(JSON.stringify(v, null, 2));

/** Left-aligned columns, two spaces apart. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}

/** One line saying what an object does, per kind. */
function summaryOf(kind: Kind, v: Record<string, unknown>): string {
  const list = (x: unknown) => (Array.isArray(x) ? x.join(',') : x === undefined ? '' : String(x));
  const nodesOf = (u: unknown) => {
    const nodes = (u as { nodes?: unknown } | undefined)?.nodes;
    if (Array.isArray(nodes)) return nodes.map((n: { host?: string; port?: number }) => `${n.host}:${n.port}`).join(',');
    return nodes && typeof nodes === 'object' ? Object.keys(nodes).join(',') : '';
  };
  switch (kind) {
    case 'routes': {
      const target = v.upstream_id !== undefined ? `upstream ${String(v.upstream_id)}` : v.service_id !== undefined ? `service ${String(v.service_id)}` : v.upstream ? nodesOf(v.upstream) : '';
      return [list(v.methods), list(v.host ?? v.hosts), list(v.uri ?? v.uris), target && `-> ${target}`].filter(Boolean).join(' ');
    }
    case 'upstreams':
      return `${String(v.type ?? 'roundrobin')} ${v.service_name !== undefined ? `${String(v.discovery_type)}:${String(v.service_name)}` : nodesOf(v)}`;
    case 'services':
      return v.upstream_id !== undefined ? `-> upstream ${String(v.upstream_id)}` : v.upstream ? `-> ${nodesOf(v.upstream)}` : '';
    case 'ssls':
      return list(v.snis ?? v.sni);
    case 'stream_routes':
      return [v.server_port !== undefined && `port ${String(v.server_port)}`, v.sni !== undefined && `sni ${String(v.sni)}`, v.upstream_id !== undefined && `-> upstream ${String(v.upstream_id)}`].filter(Boolean).join(' ');
    default:
      return '';
  }
}

function pluginsOf(v: Record<string, unknown>): string {
  const p = v.plugins;
  return p && typeof p === 'object' ? Object.keys(p).join(',') : '';
}

function patchLines(patch: JsonPatchOp[]): string[] {
  return patch.map((op) => `    ${op.op} ${op.path || '/'}${op.op === 'remove' ? '' : ` ${JSON.stringify(op.value)}`}`);
}

/** `+ routes/1`, `~ routes/2` (with its patch), `- routes/3` */
export function formatApply(r: ApplyResult): string {
  const lines: string[] = [];
  for (const a of r.added) lines.push(`+ ${a.kind}/${a.id}`);
  for (const c of r.changed) lines.push(`~ ${c.kind}/${c.id}`, ...patchLines(c.patch));
  for (const d of r.removed) lines.push(`- ${d.kind}/${d.id}`);
  const counts = `${r.added.length} added, ${r.changed.length} changed, ${r.removed.length} removed, ${r.unchanged} unchanged`;
  const nothing = r.added.length + r.changed.length + r.removed.length === 0;
  lines.push(r.dry_run ? `${counts} (dry run: nothing written)` : nothing ? `${counts}: nothing to do (revision ${r.revision})` : `${counts}: applied at revision ${r.revision}`);
  return lines.join('\n');
}

function formatDiff(d: ConfigDiff): string {
  const lines: string[] = [];
  for (const a of d.added) lines.push(`+ ${a.kind}/${a.id}`);
  for (const c of d.changed) lines.push(`~ ${c.kind}/${c.id}`, ...patchLines(c.patch));
  for (const r of d.removed) lines.push(`- ${r.kind}/${r.id}`);
  lines.push(`${d.added.length} added, ${d.changed.length} changed, ${d.removed.length} removed from revision ${d.from} to ${d.to}`);
  return lines.join('\n');
}

function readInput(file: string): string {
  try {
    return readFileSync(file === '-' ? 0 : resolve(file), 'utf8');
  } catch (err) {
    throw new CliExit(EXIT_UNREACHABLE, `cannot read ${file}: ${(err as Error).message}`);
  }
}

/** Commander's usage errors (unknown option, missing argument) exit 2, help exits 0. */
function usageExits(cmd: Command): Command {
  return cmd.exitOverride((err: CommanderError) => {
    process.exit(err.exitCode === 0 ? EXIT_OK : EXIT_UNREACHABLE);
  });
}

function withConnection(cmd: Command): Command {
  return usageExits(
    cmd
      .addOption(new Option('-c, --config <file>', 'gateway config: its admin.listen and first admin key (default conf/portico.yaml)'))
      .addOption(new Option('--admin <url>', 'Admin API base URL, e.g. http://127.0.0.1:9180 (env PORTICO_ADMIN_URL)'))
      .addOption(new Option('--key <key>', 'Admin API key (env PORTICO_ADMIN_KEY)'))
      .addOption(new Option('--timeout <seconds>', 'give up waiting for an answer after this long').default('60'))
      .option('--json', 'print the Admin API answer as JSON (for scripts)'),
  );
}

/** Runs an action, turning failures into a message on stderr and the documented exit code. */
function run<A extends unknown[]>(action: (...args: A) => Promise<void>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      await action(...args);
      process.exitCode ??= EXIT_OK;
    } catch (err) {
      if (err instanceof CliExit) {
        process.stderr.write(`portico: ${err.message}\n`);
        process.exitCode = err.exitCode;
      } else {
        process.stderr.write(`portico: ${(err as Error).message ?? String(err)}\n`);
        process.exitCode = EXIT_UNREACHABLE;
      }
    }
  };
}

const itemOf = (kind: Kind, item: Record<string, unknown>) => {
  const v = (item.value ?? {}) as Record<string, unknown>;
  const id = String(item.key ?? '').split('/').pop() ?? '';
  return [id, String(item.modifiedIndex ?? ''), typeof v.name === 'string' ? v.name : '', summaryOf(kind, v), pluginsOf(v)];
};

function registerKind(program: Command, kind: Kind): void {
  const group = usageExits(program.command(kind).description(`list, show, write or delete ${kind} through the Admin API`));
  withConnection(group.command('list').description(`list ${kind}`))
    .option('--name <regex>', 'only objects whose name matches')
    .action(run(async (opts: ConnectionOptions & { name?: string }) => {
      const conn = connectionOf(opts);
      const q = opts.name === undefined ? '' : `?name=${encodeURIComponent(opts.name)}`;
      const { body } = await expectOk(conn, 'GET', `/apisix/admin/${kind}${q}`);
      if (opts.json) return printJson(body);
      const list = (Array.isArray(body.list) ? body.list : []) as Record<string, unknown>[];
      out(table(['ID', 'REVISION', 'NAME', 'SUMMARY', 'PLUGINS'], list.map((item) => itemOf(kind, item))));
      out(`${String(body.total ?? list.length)} ${kind}`);
    }));
  withConnection(group.command('get').description(`show one of the ${kind}`).argument('<id>'))
    .action(run(async (id: string, opts: ConnectionOptions) => {
      const { body } = await expectOk(connectionOf(opts), 'GET', `/apisix/admin/${kind}/${encodeURIComponent(id)}`);
      if (opts.json) return printJson(body);
      out(`# ${kind}/${id}  createdIndex ${String(body.createdIndex)}  modifiedIndex ${String(body.modifiedIndex)}`);
      out(stringifyYaml(body.value, { lineWidth: 0 }));
    }));
  withConnection(group.command('put').description(`create or replace one of the ${kind} from a JSON or YAML file ('-': stdin)`).argument('<id>').argument('<file>'))
    .option('--if-match <modifiedIndex>', 'only if the object is still at this modifiedIndex (0: does not exist)')
    .action(run(async (id: string, file: string, opts: ConnectionOptions & { ifMatch?: string }) => {
      const conn = connectionOf(opts);
      let value: unknown;
      try {
        value = parseObjectText(readInput(file));
      } catch (err) {
        if (err instanceof CliExit) throw err;
        throw new CliExit(EXIT_REFUSED, `${file}: ${(err as Error).message}`);
      }
      const path = `/apisix/admin/${kind}/${encodeURIComponent(id)}`;
      const result = await expectOk(conn, 'PUT', path, value, opts.ifMatch === undefined ? {} : { 'if-match': opts.ifMatch });
      if (opts.json) return printJson(result.body);
      out(`${result.status === 201 ? 'created' : 'updated'} ${kind}/${id} (modifiedIndex ${String(result.body.modifiedIndex)})`);
    }));
  withConnection(group.command('delete').description(`delete one of the ${kind}`).argument('<id>'))
    .option('--force', 'delete even when other objects still reference it')
    .action(run(async (id: string, opts: ConnectionOptions & { force?: boolean }) => {
      const path = `/apisix/admin/${kind}/${encodeURIComponent(id)}${opts.force ? '?force=true' : ''}`;
      const { body } = await expectOk(connectionOf(opts), 'DELETE', path);
      if (opts.json) return printJson(body);
      out(`deleted ${kind}/${id}`);
    }));
}

/** The current config as {kind, id, value} at one revision (history's newest revision, then config at it). */
async function currentObjects(conn: Connection): Promise<{ revision?: number; objects: { kind: Kind; id: string; value: unknown }[] }> {
  // a gateway whose config endpoint defaults to the current revision answers in one call
  const now = await call(conn, 'GET', '/portico/admin/config');
  if (now.status === 200 && Array.isArray(now.body.objects)) {
    return { revision: Number(now.body.revision), objects: now.body.objects as { kind: Kind; id: string; value: unknown }[] };
  }
  // else the newest revision from history, then the config at it: one consistent snapshot
  const h = await call(conn, 'GET', '/portico/admin/history?limit=1');
  if (h.status === 200) {
    const revision = Number((h.body as unknown as HistoryResult).toRevision);
    const { body } = await expectOk(conn, 'GET', `/portico/admin/config?revision=${revision}`);
    return { revision, objects: body.objects as { kind: Kind; id: string; value: unknown }[] };
  }
  if (h.status !== 404 && h.status !== 405) {
    throw new CliExit(h.status >= 500 ? EXIT_UNREACHABLE : EXIT_REFUSED, `GET /portico/admin/history: ${h.status}: ${String(h.body.error_msg)}`);
  }
  // a file-sourced gateway (405) has no revisions: its lists, kind by kind
  const objects: { kind: Kind; id: string; value: unknown }[] = [];
  for (const kind of KINDS) {
    const { body } = await expectOk(conn, 'GET', `/apisix/admin/${kind}`);
    for (const item of (body.list ?? []) as { key: string; value: unknown }[]) objects.push({ kind, id: item.key.split('/').pop()!, value: item.value });
  }
  return { objects };
}

export function registerAdminCommands(program: Command): void {
  for (const kind of KINDS) registerKind(program, kind);
  program.addHelpText(
    'after',
    '\nAdmin commands (routes ... stream_routes, apply, export, history, diff, rollback) talk to a running gateway\'s Admin API\n' +
      '(--admin URL --key KEY, or --config portico.yaml). Their exit codes: 0 done; 1 refused or invalid (4xx, bad file);\n' +
      '2 cannot reach the Admin API (connection, timeout, 5xx, endpoint missing) or bad usage.\n',
  );

  /**
   * On a terminal, one status line with the time spent while a long operation runs (the apply is
   * one request and one etcd txn: there is no count of objects done to show); nothing otherwise.
   */
  const progress = (what: string): (() => void) => {
    if (process.stderr.isTTY !== true) return () => {};
    const t0 = Date.now();
    const draw = () => process.stderr.write(`\r${what}… ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    draw();
    const timer = setInterval(draw, 200);
    return () => {
      clearInterval(timer);
      process.stderr.write('\r\x1b[2K');
    };
  };

  withConnection(program.command('apply').description('make the config what a routes file says, in one etcd transaction (prints + added, ~ changed, - removed)').argument('<file>'))
    .option('--dry-run', 'show what would change; write nothing')
    .option('--prune', 'also delete every object the file does not name')
    .action(run(async (file: string, opts: ConnectionOptions & { dryRun?: boolean; prune?: boolean }) => {
      const conn = connectionOf(opts);
      const parsed = routesFileObjects(readInput(file), file);
      if (!parsed.ok) throw new CliExit(EXIT_REFUSED, `${file}: ${parsed.reasons.length} problem(s), nothing sent:\n${parsed.reasons.map((r) => `  ${r}`).join('\n')}`);
      const stopProgress = progress(`${opts.dryRun ? 'checking' : 'applying'} ${parsed.objects.length} objects from ${file}`);
      const answer = await call(conn, 'POST', '/portico/admin/apply', { objects: parsed.objects, prune: opts.prune === true, dry_run: opts.dryRun === true }).finally(stopProgress);
      if (answer.status === 404) throw new CliExit(EXIT_UNREACHABLE, `the Admin API at ${conn.base} has no /portico/admin/apply (a gateway without apply support)`);
      if (answer.status !== 200) {
        const reasons = Array.isArray(answer.body.reasons) ? answer.body.reasons.map((r) => `  ${String(r)}`).join('\n') : '';
        if (opts.json) printJson(answer.body);
        throw new CliExit(answer.status >= 500 ? EXIT_UNREACHABLE : EXIT_REFUSED, `apply ${file}: ${answer.status}: ${String(answer.body.error_msg)}${reasons && answer.status === 400 ? `\n${reasons}` : ''}`);
      }
      if (opts.json) return printJson(answer.body);
      out(formatApply(answer.body as unknown as ApplyResult));
    }));

  withConnection(program.command('export').description('print the current config as a routes file that `portico apply` takes back unchanged'))
    .option('-o, --output <file>', 'write to this file instead of stdout')
    .action(run(async (opts: ConnectionOptions & { output?: string }) => {
      const conn = connectionOf(opts);
      const { revision, objects } = await currentObjects(conn);
      const { text, skipped } = routesFileOf(objects);
      for (const s of skipped) process.stderr.write(`portico: export: left out ${s}\n`);
      const content = opts.json ? `${JSON.stringify((await import('yaml')).parse(text), null, 2)}\n` : `${revision === undefined ? '' : `# exported at etcd revision ${revision}\n`}${text}`;
      if (opts.output) {
        const { writeFileSync } = await import('node:fs');
        writeFileSync(resolve(opts.output), content);
      } else process.stdout.write(content);
      if (skipped.length > 0) process.exitCode = EXIT_REFUSED;
    }));

  withConnection(program.command('history').description('config changes, newest first: revision, time, object, who').argument('[object]', 'KIND or KIND/ID'))
    .option('--limit <n>', 'at most this many changes', '20')
    .action(run(async (object: string | undefined, opts: ConnectionOptions & { limit: string }) => {
      const params = new URLSearchParams({ limit: opts.limit });
      if (object !== undefined) {
        const [kind, id, ...rest] = object.split('/');
        if (!kind || !(KINDS as readonly string[]).includes(kind) || rest.length > 0 || id === '') {
          throw new CliExit(EXIT_UNREACHABLE, `history: '${object}': expected KIND or KIND/ID (kinds: ${KINDS.join(', ')})`);
        }
        params.set('kind', kind);
        if (id !== undefined) params.set('id', id);
      }
      const { body } = await expectOk(connectionOf(opts), 'GET', `/portico/admin/history?${params}`);
      if (opts.json) return printJson(body);
      const h = body as unknown as HistoryResult;
      out(table(['REVISION', 'TIME', 'OP', 'OBJECT', 'BY'], h.entries.map((e) => [String(e.revision), e.time ?? '', e.op, `${e.kind}/${e.id}`, e.by ? `${e.by.key_name} (${e.by.role})` : ''])));
      if (h.truncated) out('(older revisions not searched)');
    }));

  withConnection(program.command('diff').description('what changed from revision R1 to revision R2').argument('<r1>').argument('<r2>'))
    .action(run(async (r1: string, r2: string, opts: ConnectionOptions) => {
      for (const r of [r1, r2]) if (!/^\d{1,15}$/.test(r)) throw new CliExit(EXIT_UNREACHABLE, `diff: '${r}' is not a revision`);
      const { body } = await expectOk(connectionOf(opts), 'GET', `/portico/admin/diff?from=${r1}&to=${r2}`);
      if (opts.json) return printJson(body);
      out(formatDiff(body as unknown as ConfigDiff));
    }));

  withConnection(program.command('rollback').description('put the config of revision R back, in one etcd transaction').argument('<revision>'))
    .action(run(async (r: string, opts: ConnectionOptions) => {
      if (!/^\d{1,15}$/.test(r)) throw new CliExit(EXIT_UNREACHABLE, `rollback: '${r}' is not a revision`);
      const { body } = await expectOk(connectionOf(opts), 'POST', '/portico/admin/rollback', { revision: Number(r) });
      if (opts.json) return printJson(body);
      const restored = (body.restored ?? []) as string[];
      const deleted = (body.deleted ?? []) as string[];
      if (restored.length + deleted.length === 0) return out(`the config is already that of revision ${r}: nothing to do`);
      out([...restored.map((o) => `~ ${o}`), ...deleted.map((o) => `- ${o}`)].join('\n'));
      out(`rolled back to revision ${r} at revision ${String(body.revision)}: ${restored.length} restored, ${deleted.length} deleted`);
    }));
}
