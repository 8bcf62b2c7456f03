import { setTimeout as sleep } from 'node:timers/promises';
import { Type } from '@sinclair/typebox';
import { compileVars, evaluateVars, type CompiledVars } from '../router/vars.ts';
import { headerNameProblem, headerValueProblem, isHeaderValue } from '../security/header-value.ts';
import { compileTemplate, exprLookup, type Template } from './nginx-var.ts';
import { definePlugin, type PluginAnswer, type PluginContext } from './types.ts';

/**
 * fault-injection (APISIX): `delay` holds a request `duration` seconds, `abort` answers it with
 * `http_status`, `body` and `headers` instead of the upstream. Each applies to `percentage` of
 * requests (all when unset) and, when `vars` is set, only to requests matching one of its
 * lua-resty-expr expressions (OR between the expressions, AND/OR inside each, as in APISIX).
 * `body` and header values may contain nginx variables (`$remote_addr`, `${arg_name ?? none}`,
 * src/plugins/nginx-var.ts for the names). Runs first in rewrite (priority 11000), so a delay
 * holds the whole chain and an abort skips every other plugin.
 */
const Vars = Type.Array(Type.Array(Type.Unknown()), { maxItems: 20 });
const Percentage = Type.Integer({ minimum: 0, maximum: 100 });

const schema = Type.Object(
  {
    abort: Type.Optional(
      Type.Object({
        http_status: Type.Integer({ minimum: 200 }),
        body: Type.Optional(Type.String({ minLength: 0 })),
        headers: Type.Optional(Type.Record(Type.String({ pattern: '^[^:]+$' }), Type.Union([Type.String(), Type.Number()]), { minProperties: 1 })),
        percentage: Type.Optional(Percentage),
        vars: Type.Optional(Vars),
      }),
    ),
    delay: Type.Optional(
      Type.Object({
        duration: Type.Number({ minimum: 0 }),
        percentage: Type.Optional(Percentage),
        vars: Type.Optional(Vars),
      }),
    ),
  },
  { minProperties: 1 },
);

interface Condition {
  readonly percentage: number | undefined;
  /** undefined: no `vars`, every request qualifies */
  readonly vars: readonly CompiledVars[] | undefined;
}

interface FaultInjection {
  readonly delay: (Condition & { readonly ms: number }) | undefined;
  readonly abort:
    | (Condition & {
        readonly status: number;
        readonly body: Template | undefined;
        readonly headers: readonly (readonly [string, Template])[];
      })
    | undefined;
}

function compileCondition(where: string, percentage: number | undefined, vars: readonly unknown[][] | undefined): Condition {
  return {
    percentage,
    vars: vars?.map((expr, i) => {
      try {
        return compileVars(expr);
      } catch (err) {
        throw new Error(`${where}.vars[${i}]: ${(err as Error).message}`);
      }
    }),
  };
}

function applies(cond: Condition, ctx: PluginContext): boolean {
  if (cond.vars !== undefined) {
    const lookup = exprLookup(ctx);
    if (!cond.vars.some((expr) => evaluateVars(expr, lookup))) return false;
  }
  // math.random(1, 100) <= percentage
  return cond.percentage === undefined || Math.floor(Math.random() * 100) + 1 <= cond.percentage;
}

export const faultInjection = definePlugin({
  name: 'fault-injection',
  priority: 11000,
  schema,
  compile(conf): FaultInjection {
    const { abort, delay } = conf;
    const headers: [string, Template][] = [];
    for (const [name, value] of Object.entries(abort?.headers ?? {})) {
      const nameProblem = headerNameProblem(name);
      if (nameProblem) throw new Error(`abort.headers: header name ${JSON.stringify(name)} ${nameProblem}`);
      const text = String(value);
      const valueProblem = headerValueProblem(text);
      if (valueProblem) throw new Error(`abort.headers.${name}: value ${valueProblem}`);
      headers.push([name, compileTemplate(text)]);
    }
    return {
      delay: delay && { ...compileCondition('delay', delay.percentage, delay.vars), ms: delay.duration * 1000 },
      abort: abort && {
        ...compileCondition('abort', abort.percentage, abort.vars),
        status: abort.http_status,
        body: abort.body === undefined ? undefined : compileTemplate(abort.body),
        headers,
      },
    };
  },
  rewrite(conf, ctx) {
    // both decisions are taken before the delay, as APISIX does (vars first, then sampling)
    const delay = conf.delay !== undefined && applies(conf.delay, ctx);
    const abort = conf.abort !== undefined && applies(conf.abort, ctx);
    if (!delay && !abort) return undefined;
    const answer = abort ? abortAnswer(conf.abort!, ctx) : undefined;
    if (!delay) return answer;
    return sleep(conf.delay!.ms).then(() => answer);
  },
});

function abortAnswer(abort: NonNullable<FaultInjection['abort']>, ctx: PluginContext): PluginAnswer {
  const answer: PluginAnswer = { status: abort.status };
  if (abort.headers.length > 0) {
    const headers: Record<string, string> = {};
    for (const [name, value] of abort.headers) {
      const text = value(ctx);
      // a variable can bring what a header cannot carry (a decoded %0D%0A in $arg_x): left out
      if (isHeaderValue(text)) headers[name] = text;
    }
    answer.headers = headers;
  }
  if (abort.body !== undefined) answer.body = abort.body(ctx);
  return answer;
}
