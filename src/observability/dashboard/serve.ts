import { existsSync, readFileSync } from 'node:fs';
import { request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import path from 'node:path';

/**
 * The built-in dashboard's static files, served by the status listener under /dashboard. The page
 * itself is a bundle built by scripts/build-dashboard.mjs into <package root>/dist/dashboard/; the
 * data it shows comes from the status listener's JSON endpoints (same origin, nothing else).
 */
export type DashboardHandler = (req: IncomingMessage, res: ServerResponse, path: string) => boolean;

interface Asset {
  type: string;
  body: Buffer;
}

const FILES: Record<string, { file: string; type: string }> = {
  '/dashboard': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/dashboard/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/dashboard/app.js': { file: 'app.js', type: 'text/javascript; charset=utf-8' },
  '/dashboard/app.css': { file: 'app.css', type: 'text/css; charset=utf-8' },
};

// The page loads only its own files and talks only to its own origin: a dashboard that shows
// config and takes an admin key must not be framed or run anything injected.
const SECURITY_HEADERS = {
  'content-security-policy': "default-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'",
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-cache',
};

/**
 * The folder with package.json above `from`: the same answer from src/observability/dashboard
 * (run by tsx) and from dist/observability/dashboard (compiled).
 */
function packageRoot(from: string): string | undefined {
  for (let dir = from; ; ) {
    if (existsSync(path.join(dir, 'package.json'))) return dir;
    const up = path.dirname(dir);
    if (up === dir) return undefined;
    dir = up;
  }
}

export interface DashboardOptions {
  /**
   * whether /portico/admin/* on this listener reaches an Admin API: the page shows its history
   * panel without probing (a probe answered 401 or 404 is an error in the browser's console)
   */
  admin?: () => boolean;
  /** the built files (default: <package root>/dist/dashboard) */
  dir?: string;
}

/**
 * Whether this listener passes /portico/admin/* to an Admin API, when the listener did not say
 * (no `admin` option): asked here, of the listener itself, because a browser logs every 401/404
 * answer to its own probe as an error. null: no answer (the page then probes).
 */
function adminBehind(req: IncomingMessage): Promise<boolean | null> {
  const { localAddress, localPort } = req.socket;
  if (!localAddress || !localPort) return Promise.resolve(null);
  return new Promise((resolve) => {
    const probe = httpRequest({ host: localAddress, port: localPort, path: '/portico/admin/whoami', method: 'GET', timeout: 2000, agent: false }, (res) => {
      res.resume();
      // 404: nothing behind /portico/admin/; 401 (no key) or anything else: an Admin API answered
      resolve(res.statusCode !== 404);
    });
    probe.on('timeout', () => probe.destroy(new Error('timeout')));
    probe.on('error', () => resolve(null));
    probe.end();
  });
}

/** Returns a handler that answers /dashboard and /dashboard/* (true) and leaves every other path alone (false). */
export function createDashboard(options: DashboardOptions = {}): DashboardHandler {
  const root = packageRoot(import.meta.dirname);
  const assetsDir = options.dir ?? (root ? path.join(root, 'dist', 'dashboard') : undefined);
  // read once; a missing bundle is looked for again on the next request (it may be built meanwhile)
  const cache = new Map<string, Asset>();
  const load = (file: string, type: string): Asset | undefined => {
    let asset = cache.get(file);
    if (asset) return asset;
    if (!assetsDir) return undefined;
    try {
      asset = { type, body: readFileSync(path.join(assetsDir, file)) };
    } catch {
      return undefined;
    }
    cache.set(file, asset);
    return asset;
  };

  return (req, res, urlPath) => {
    if (urlPath !== '/dashboard' && !urlPath.startsWith('/dashboard/')) return false;
    const send = (status: number, type: string, body: string | Buffer, extra: Record<string, string> = {}) => {
      res.writeHead(status, { ...SECURITY_HEADERS, 'content-type': type, 'content-length': Buffer.byteLength(body), ...extra });
      res.end(req.method === 'HEAD' ? undefined : body);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      send(405, 'application/json', '{"error_msg":"method not allowed"}', { allow: 'GET, HEAD' });
      return true;
    }
    if (urlPath === '/dashboard/features.json') {
      const answer = (admin: boolean | null) => send(200, 'application/json', JSON.stringify({ admin }));
      if (options.admin) answer(options.admin());
      else void adminBehind(req).then(answer);
      return true;
    }
    const known = FILES[urlPath];
    if (!known) {
      send(404, 'application/json', '{"error_msg":"404 Not Found"}');
      return true;
    }
    const asset = load(known.file, known.type);
    if (!asset) {
      send(503, 'text/plain; charset=utf-8', `dashboard not built: run npm run build:dashboard (looked in ${assetsDir ?? 'no package root found'})\n`);
      return true;
    }
    send(200, asset.type, asset.body);
    return true;
  };
}
