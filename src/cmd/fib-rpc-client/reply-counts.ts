import type { ClientObserver, StrayReply } from '@fib-rpc/rpc';

/** An observer that counts stray and returned replies: what the CLI's load summary reports. */
export class ReplyCounts implements ClientObserver {
  duplicate = 0;
  late = 0;
  unknown = 0;
  returnedRequests = 0;

  strayReply(kind: StrayReply): void {
    this[kind]++;
  }

  returned(): void {
    this.returnedRequests++;
  }
}
