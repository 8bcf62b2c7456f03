import type { Plugin } from './types.ts';
// one import per built-in plugin file (keep this list sorted by name)
import { basicAuth } from './basic-auth.ts';
import { consumerRestriction } from './consumer-restriction.ts';
import { keyAuth } from './key-auth.ts';
import { jwtAuth } from './jwt-auth.ts';
import { cors } from './cors.ts';
import { faultInjection } from './fault-injection.ts';
import { ipRestriction } from './ip-restriction.ts';
import { redirect } from './redirect.ts';
import { requestId } from './request-id.ts';
import { uriBlocker } from './uri-blocker.ts';
import { limitConn } from './limit-conn.ts';
import { limitCount } from './limit-count.ts';
import { limitReq } from './limit-req.ts';
import { proxyRewrite } from './proxy-rewrite.ts';
import { responseRewrite } from './response-rewrite.ts';
import { realIp } from './real-ip.ts';
import { gzip } from './gzip.ts';
import { brotli } from './brotli.ts';
// (imports above this line)

/** Every built-in plugin. `plugins:` in portico.yaml enables a subset (default: all). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export const BUILTIN_PLUGINS: readonly Plugin<any, any>[] = [
  basicAuth,
  consumerRestriction,
  keyAuth,
  jwtAuth,
  cors,
  faultInjection,
  ipRestriction,
  redirect,
  requestId,
  uriBlocker,
  limitConn,
  limitCount,
  limitReq,
  proxyRewrite,
  responseRewrite,
  realIp,
  gzip,
  brotli,
  // (entries above this line)
];
