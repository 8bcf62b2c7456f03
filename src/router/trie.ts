/**
 * A compressed radix tree from string keys to values, answering "which stored keys are prefixes of
 * this string, longest first" — the one query lua-resty-radixtree makes of rax (`radix_tree_up`)
 * for prefix routes and, in radixtree_host_uri mode, for reversed wildcard hosts.
 *
 * Insert and delete touch only the nodes on the key's path, so changing one route never rebuilds
 * the tree.
 */

interface Node<V> {
  /** the edge label leading into this node (empty for the root) */
  label: string;
  value: V | undefined;
  hasValue: boolean;
  /** children by the first char code of their label */
  children: Map<number, Node<V>> | undefined;
}

function newNode<V>(label: string): Node<V> {
  return { label, value: undefined, hasValue: false, children: undefined };
}

export class RadixTree<V> {
  private readonly root: Node<V> = newNode('');
  private count = 0;

  get size(): number {
    return this.count;
  }

  get(key: string): V | undefined {
    let node = this.root;
    let pos = 0;
    while (pos < key.length) {
      const child = node.children?.get(key.charCodeAt(pos));
      if (child === undefined || !key.startsWith(child.label, pos)) return undefined;
      pos += child.label.length;
      node = child;
    }
    return node.hasValue ? node.value : undefined;
  }

  set(key: string, value: V): void {
    let node = this.root;
    let pos = 0;
    while (pos < key.length) {
      const first = key.charCodeAt(pos);
      const child = node.children?.get(first);
      if (child === undefined) {
        const leaf = newNode<V>(key.slice(pos));
        (node.children ??= new Map()).set(first, leaf);
        node = leaf;
        pos = key.length;
        break;
      }
      const common = commonPrefixLength(child.label, key, pos);
      if (common < child.label.length) {
        // Split the edge: node -> middle(common part) -> child(rest of its label).
        const middle = newNode<V>(child.label.slice(0, common));
        child.label = child.label.slice(common);
        middle.children = new Map([[child.label.charCodeAt(0), child]]);
        node.children!.set(first, middle);
        node = middle;
      } else {
        node = child;
      }
      pos += common;
    }
    if (!node.hasValue) this.count++;
    node.value = value;
    node.hasValue = true;
  }

  delete(key: string): boolean {
    // Remember the path so emptied nodes can be pruned and single-child chains re-merged.
    const path: Node<V>[] = [this.root];
    let node = this.root;
    let pos = 0;
    while (pos < key.length) {
      const child = node.children?.get(key.charCodeAt(pos));
      if (child === undefined || !key.startsWith(child.label, pos)) return false;
      pos += child.label.length;
      node = child;
      path.push(node);
    }
    if (!node.hasValue) return false;
    node.value = undefined;
    node.hasValue = false;
    this.count--;

    for (let i = path.length - 1; i > 0; i--) {
      const current = path[i]!;
      const parent = path[i - 1]!;
      if (current.hasValue) break;
      const childCount = current.children?.size ?? 0;
      if (childCount === 0) {
        parent.children!.delete(current.label.charCodeAt(0));
        if (parent.children!.size === 0) parent.children = undefined;
        continue;
      }
      if (childCount === 1) {
        const only = current.children!.values().next().value!;
        only.label = current.label + only.label;
        parent.children!.set(only.label.charCodeAt(0), only);
      }
      break;
    }
    return true;
  }

  /**
   * Writes the values of all stored keys that are prefixes of `text` (including `text` itself and
   * the empty key) into `out`, longest key first; returns how many were written. `out` is a
   * caller-owned scratch array so the hot path allocates nothing.
   */
  collectPrefixValues(text: string, out: (V | undefined)[]): number {
    let n = 0;
    let node = this.root;
    let pos = 0;
    for (;;) {
      if (node.hasValue) out[n++] = node.value;
      if (pos >= text.length) break;
      const child = node.children?.get(text.charCodeAt(pos));
      if (child === undefined || !text.startsWith(child.label, pos)) break;
      pos += child.label.length;
      node = child;
    }
    // Collected shortest first; reverse in place.
    for (let i = 0, j = n - 1; i < j; i++, j--) {
      const tmp = out[i];
      out[i] = out[j];
      out[j] = tmp;
    }
    return n;
  }
}

function commonPrefixLength(label: string, key: string, keyPos: number): number {
  const max = Math.min(label.length, key.length - keyPos);
  let i = 0;
  while (i < max && label.charCodeAt(i) === key.charCodeAt(keyPos + i)) i++;
  return i;
}
