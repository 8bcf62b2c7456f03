const DELETED = Symbol('deleted');

/**
 * An immutable string-keyed map whose updates cost O(changes), not O(size): a new version shares
 * the previous one's base table and carries the edits in a small overlay, flattened into a fresh
 * base once it would grow past 1/8 of the base. That keeps a snapshot with 10,000 routes publishable
 * in microseconds per change while every published snapshot stays unchanged forever.
 * Values are never undefined.
 */
export class FrozenMap<V> implements ReadonlyMap<string, V> {
  static empty<V>(): FrozenMap<V> {
    return new FrozenMap<V>(new Map(), new Map(), 0);
  }

  /** A FrozenMap holding `entries`, which it takes over: the caller must not change that map again. */
  static adopt<V>(entries: Map<string, V>): FrozenMap<V> {
    return new FrozenMap<V>(entries, new Map(), entries.size);
  }

  private constructor(
    private readonly base: ReadonlyMap<string, V>,
    private readonly overlay: ReadonlyMap<string, V | typeof DELETED>,
    readonly size: number,
  ) {}

  get(key: string): V | undefined {
    if (this.overlay.size !== 0) {
      const o = this.overlay.get(key);
      if (o !== undefined) return o === DELETED ? undefined : o;
    }
    return this.base.get(key);
  }

  has(key: string): boolean {
    return this.get(key) !== undefined;
  }

  /** A new version with `edits` applied (undefined deletes); this one is left as it is. */
  update(edits: ReadonlyMap<string, V | undefined>): FrozenMap<V> {
    if (edits.size === 0) return this;
    if (this.overlay.size + edits.size > Math.max(64, this.base.size >> 3)) {
      // an overlay this large would be flattened at once (a first snapshot: 50,000 edits of nothing)
      const flat = new Map(this.base);
      for (const [key, value] of this.overlay) {
        if (value === DELETED) flat.delete(key);
        else flat.set(key, value);
      }
      for (const [key, value] of edits) {
        if (value === undefined) flat.delete(key);
        else flat.set(key, value);
      }
      return new FrozenMap(flat, new Map(), flat.size);
    }
    const overlay = new Map(this.overlay);
    let size = this.size;
    for (const [key, value] of edits) {
      const had = this.get(key) !== undefined;
      if (value === undefined) {
        if (!had) continue;
        size--;
        if (this.base.has(key)) overlay.set(key, DELETED);
        else overlay.delete(key);
      } else {
        if (!had) size++;
        overlay.set(key, value);
      }
    }
    return new FrozenMap(this.base, overlay, size);
  }

  *entries(): MapIterator<[string, V]> {
    for (const entry of this.base) if (!this.overlay.has(entry[0])) yield entry;
    for (const [key, value] of this.overlay) if (value !== DELETED) yield [key, value];
  }

  *keys(): MapIterator<string> {
    for (const [key] of this.entries()) yield key;
  }

  *values(): MapIterator<V> {
    for (const [, value] of this.entries()) yield value;
  }

  forEach(fn: (value: V, key: string, map: ReadonlyMap<string, V>) => void): void {
    for (const [key, value] of this.entries()) fn(value, key, this);
  }

  [Symbol.iterator](): MapIterator<[string, V]> {
    return this.entries();
  }
}
