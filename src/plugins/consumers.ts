import type { Consumer, ConsumerDirectory } from './types.ts';

/**
 * The consumers in force, and per auth plugin and credential field an index built on first use
 * (key-auth looks up `key`, basic-auth `username`, jwt-auth `key`). A consumer change replaces the
 * directory: indexes never hold a deleted consumer.
 */
export class Consumers implements ConsumerDirectory {
  private readonly byUsername: ReadonlyMap<string, Consumer>;
  private readonly indexes = new Map<string, Map<string, Consumer>>();

  constructor(consumers: Iterable<Consumer>) {
    const m = new Map<string, Consumer>();
    for (const c of consumers) m.set(c.username, c);
    this.byUsername = m;
  }

  get size(): number {
    return this.byUsername.size;
  }

  byName(username: string): Consumer | undefined {
    return this.byUsername.get(username);
  }

  byCredential(plugin: string, field: string, value: string): Consumer | undefined {
    const indexKey = plugin + '\0' + field;
    let index = this.indexes.get(indexKey);
    if (index === undefined) {
      index = new Map();
      for (const c of this.byUsername.values()) {
        const conf = c.plugins[plugin] as Record<string, unknown> | undefined;
        const v = conf?.[field];
        // the first consumer with a credential keeps it (ids sort the same way on every instance)
        if (typeof v === 'string' && !index.has(v)) index.set(v, c);
      }
      this.indexes.set(indexKey, index);
    }
    return index.get(value);
  }
}

export const NO_CONSUMERS = new Consumers([]);
