import type { PickRequest, UpstreamNode, UpstreamTarget } from '../upstream/types.ts';

/**
 * The retry budget of one proxied request (HTTP or WebSocket): up to `retries` other nodes, within
 * `retry_timeout`, never a node that already failed for this request.
 */
export class NodeRetries {
  private tried: Set<UpstreamNode> | undefined;
  private left: number;
  /** epoch ms after which no further node is tried; 0 = no limit */
  private readonly deadline: number;

  constructor(
    private readonly upstream: UpstreamTarget,
    /** for balancers that read the request (chash) */
    private readonly request?: PickRequest,
  ) {
    this.left = upstream.retries;
    this.deadline = upstream.retryTimeout > 0 ? Date.now() + upstream.retryTimeout : 0;
  }

  /** True while the retry_timeout budget lasts. */
  inTime(): boolean {
    return this.deadline === 0 || Date.now() < this.deadline;
  }

  /** The next node to try after `failed`, or undefined when the budget or the nodes ran out. */
  next(failed: UpstreamNode): UpstreamNode | undefined {
    if (this.left <= 0 || !this.inTime()) return undefined;
    this.left--;
    const tried = (this.tried ??= new Set());
    tried.add(failed);
    return this.upstream.balancer.pick(tried, this.request);
  }
}
