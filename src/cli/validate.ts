import { readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { parse } from 'yaml';
import { parseGatewayConfig } from '../config/gateway.ts';
import { ConfigStore } from '../config/store.ts';
import type { RouterMode } from '../router/types.ts';
import { FileSource } from '../sources/file.ts';
import { setupPlugins } from '../plugins/registry.ts';

/**
 * `portico validate FILE`: runs the file through the same source and store the gateway uses, so
 * what it accepts here is exactly what a running gateway accepts. Returns the exit code.
 */
export async function validateFile(file: string, out: NodeJS.WritableStream): Promise<number> {
  let routesFile = file;
  // routes compile for the gateway's router mode; a routes file alone must compile in every mode
  let routerMode: RouterMode | undefined;
  let doc: unknown;
  try {
    doc = parse(readFileSync(file, 'utf8'));
  } catch (err) {
    out.write(`${file}: ${(err as Error).message}\n`);
    return 1;
  }
  if (doc && typeof doc === 'object' && ('proxy' in doc || 'config' in doc || 'status' in doc)) {
    try {
      const cfg = parseGatewayConfig(doc, dirname(file), file);
      await setupPlugins(cfg);
      out.write(`${file}: gateway config OK\n`);
      if (cfg.config.source !== 'file') return 0;
      routesFile = cfg.config.file.path;
      routerMode = cfg.proxy.router;
    } catch (err) {
      out.write(`${(err as Error).message}\n`);
      return 1;
    }
  }
  const store = new ConfigStore('file', { routerMode });
  const source = new FileSource({ path: routesFile });
  let fileError: string | undefined;
  try {
    await source.start({
      onChangeSet: (cs) => void store.apply(cs),
      onState: () => {},
      onError: (e) => (fileError = `${e.message} [${e.code}]`),
    });
  } catch {
    // reported through onError
  } finally {
    await source.stop();
  }
  if (fileError) {
    out.write(`${fileError}\n`);
    return 1;
  }
  const rejected = store.rejections();
  for (const r of rejected) out.write(`${r.reason} [${r.code}]\n`);
  const s = store.snapshot;
  out.write(
    `${routesFile}: ${rejected.length ? `${rejected.length} error(s); ` : 'OK: '}` +
      `${s.routes.size} routes, ${s.upstreams.size} upstreams, ${s.services.size} services` +
      (s.consumers.size + s.plugin_configs.size + s.global_rules.size > 0 ? `, ${s.consumers.size} consumers, ${s.plugin_configs.size} plugin_configs, ${s.global_rules.size} global_rules` : '') +
      (s.ssls.size + s.stream_routes.size > 0 ? `, ${s.ssls.size} ssls, ${s.stream_routes.size} stream_routes` : '') +
      ' valid\n',
  );
  return rejected.length ? 1 : 0;
}
