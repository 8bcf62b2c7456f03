import { Type } from '@sinclair/typebox';
import { compileConfigRegex, type ConfigRegex } from '../security/regex.ts';
import { requestUri } from './nginx-var.ts';
import { definePlugin, type PluginAnswer } from './types.ts';

/**
 * uri-blocker (APISIX): a request whose `$request_uri` (path and query) matches any of
 * `block_rules` (regexes, searched anywhere, like ngx.re.find) is answered `rejected_code`, with
 * `{"error_msg": <rejected_msg>}` when a message is set. Runs in rewrite.
 *
 * The rules run on the project's linear-time regex engine (src/security/regex.ts): a rule that
 * would need backtracking (backreferences, lookahead, ...) or is too large rejects the config
 * with the reason, so no client can make a rule hang the gateway.
 */
const schema = Type.Object(
  {
    block_rules: Type.Array(Type.String({ minLength: 1, maxLength: 4096 }), { uniqueItems: true }),
    rejected_code: Type.Integer({ minimum: 200, default: 403 }),
    rejected_msg: Type.Optional(Type.String({ minLength: 1 })),
    case_insensitive: Type.Boolean({ default: false }),
  },
);

interface UriBlocker {
  readonly rules: readonly ConfigRegex[];
  readonly status: number;
  readonly message: string | undefined;
}

export const uriBlocker = definePlugin({
  name: 'uri-blocker',
  priority: 2900,
  schema,
  compile(conf): UriBlocker {
    // APISIX joins the rules with '|' (and '(?i)') into one pattern; testing them one by one
    // matches the same requests and keeps each rule under the engine's size cap on its own.
    const rules = conf.block_rules.map((rule, i) => {
      try {
        return compileConfigRegex(rule, { caseless: conf.case_insensitive });
      } catch (err) {
        throw new Error(`block_rules[${i}]: ${(err as Error).message}`);
      }
    });
    return { rules, status: conf.rejected_code, message: conf.rejected_msg };
  },
  rewrite(conf, ctx) {
    if (conf.rules.length === 0) return undefined;
    const uri = requestUri(ctx.request);
    for (const rule of conf.rules) {
      if (rule.test(uri)) {
        const answer: PluginAnswer = { status: conf.status };
        if (conf.message !== undefined) answer.body = { error_msg: conf.message };
        return answer;
      }
    }
    return undefined;
  },
});
