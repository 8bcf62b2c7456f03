import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';

/*
 * A worker process loads the data plane's code only (its entry is src/server/worker-main.ts): 12 MiB
 * less per worker than loading all the primary loads, and less CPU taken from the primary's listing of
 * the config (docs/operations.md, "Large configs and fleets"). This walks the static imports from the worker's entry and
 * fails if they reach the primary's code again, or the packages only the primary needs: the CLI's,
 * the YAML reader, the schema compiler (the primary sends the parsed portico.yaml), undici.
 */

const SRC = path.resolve(import.meta.dirname, '../../src');

/** Static (non-type) imports, transitively: module → the module that imported it first. */
function staticGraph(entries: string[]): { modules: Map<string, string | null>; packages: Map<string, string> } {
  const modules = new Map<string, string | null>();
  const packages = new Map<string, string>();
  const queue: Array<[string, string | null]> = entries.map((e) => [path.join(SRC, e), null]);
  while (queue.length > 0) {
    const [file, from] = queue.shift()!;
    if (modules.has(file)) continue;
    modules.set(file, from);
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(/^import\s+(?!type\b)[^;]*?from\s+'([^']+)';/gm)) {
      const spec = m[1]!;
      if (spec.startsWith('.')) {
        const target = path.resolve(path.dirname(file), spec);
        if (existsSync(target)) queue.push([target, file]);
      } else if (!spec.startsWith('node:') && !packages.has(spec)) packages.set(spec, file);
    }
  }
  return { modules, packages };
}

function chain(modules: Map<string, string | null>, file: string): string {
  const out: string[] = [];
  for (let f: string | null | undefined = file; f; f = modules.get(f)) out.push(path.relative(SRC, f));
  return out.join(' <- ');
}

test("a worker's static imports reach none of the primary's code", () => {
  const { modules, packages } = staticGraph(['server/worker-main.ts']);
  assert.ok(modules.size > 50, `${modules.size} modules: the walk found the data plane`);
  assert.ok(modules.has(path.join(SRC, 'server/data-plane.ts')));
  const forbidden = ['server/cluster.ts', 'server/gateway.ts', 'server/pipeline.ts', 'sources/etcd/client.ts', 'sources/etcd/source.ts', 'cli/main.ts', 'cli/admin.ts', 'admin/apply.ts', 'config/store.ts', 'config/gateway.ts'];
  for (const f of forbidden) {
    const file = path.join(SRC, f);
    assert.ok(!modules.has(file), `a worker loads ${chain(modules, file)}`);
  }
  for (const pkg of ['undici', 'ajv', 'yaml', 'commander']) assert.equal(packages.get(pkg), undefined, `${pkg} is imported statically by ${packages.get(pkg)}`);
});

test("`portico start`'s static imports leave out the admin commands' code and undici", () => {
  const { modules, packages } = staticGraph(['cli/main.ts']);
  for (const f of ['cli/admin.ts', 'admin/apply.ts', 'server/worker-main.ts']) {
    const file = path.join(SRC, f);
    assert.ok(!modules.has(file), `the CLI loads ${chain(modules, file)}`);
  }
  assert.equal(packages.get('undici'), undefined, `undici is imported statically by ${packages.get('undici')}`);
});
