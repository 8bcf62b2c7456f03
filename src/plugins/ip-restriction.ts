import { Type } from '@sinclair/typebox';
import { IpMatcher } from '../router/ip.ts';
import { definePlugin } from './types.ts';

/**
 * ip-restriction (APISIX): allow only the client addresses of `whitelist`, or deny those of
 * `blacklist` (IPv4 and IPv6 addresses and CIDRs, exactly one of the two lists). A denied client
 * gets `response_code` with `{"message": <message>}`. Runs in access, like APISIX.
 *
 * The lists are compiled once per config change (APISIX builds its matcher lazily per list in an
 * LRU cache); an entry that is not an address or CIDR rejects the config.
 */
const IpList = Type.Array(Type.String({ minLength: 1 }), { minItems: 1 });

const schema = Type.Object(
  {
    message: Type.String({ minLength: 1, maxLength: 1024, default: 'Your IP address is not allowed' }),
    response_code: Type.Integer({ minimum: 403, maximum: 404, default: 403 }),
    whitelist: Type.Optional(IpList),
    blacklist: Type.Optional(IpList),
  },
  // APISIX's oneOf(required whitelist, required blacklist) is checked in compile: ajv reports a
  // failed oneOf by one branch's error ("must have required property 'whitelist'"), which
  // misleads when both lists are set
);

interface IpRestriction {
  /** allow (whitelist) or deny (blacklist) the addresses that match */
  readonly allow: boolean;
  readonly matcher: IpMatcher;
  readonly answer: { status: number; body: { message: string } };
}

function compileList(field: 'whitelist' | 'blacklist', list: readonly string[]): IpMatcher {
  for (const entry of list) {
    const reason = IpMatcher.check(entry);
    // APISIX's reason, with ours (which part is wrong) after it
    if (reason !== undefined) throw new Error(`${field}: invalid ip address: ${entry} (${reason})`);
  }
  return IpMatcher.compile(list);
}

export const ipRestriction = definePlugin({
  name: 'ip-restriction',
  priority: 3000,
  schema,
  compile(conf): IpRestriction {
    if ((conf.whitelist === undefined) === (conf.blacklist === undefined)) {
      throw new Error('exactly one of whitelist or blacklist must be configured');
    }
    const allow = conf.whitelist !== undefined;
    const matcher = allow ? compileList('whitelist', conf.whitelist!) : compileList('blacklist', conf.blacklist!);
    return { allow, matcher, answer: { status: conf.response_code, body: { message: conf.message } } };
  },
  access(conf, ctx) {
    if (conf.matcher.matches(ctx.request.clientAddress) !== conf.allow) {
      // a fresh body per answer: the framework may serialize or keep it
      return { status: conf.answer.status, body: { message: conf.answer.body.message } };
    }
    return undefined;
  },
});
