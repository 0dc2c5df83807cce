/**
 * How long to wait before retrying a sync the network or the server let down (PROTOCOL.md
 * §10.2): exponential backoff with full jitter. The n-th retry waits a uniformly random time
 * in `[0, min(cap, base × 2^n)]`, never less than the server's `Retry-After`, so phones that
 * lost the signal together (a whole touchline when the clubhouse Wi-Fi comes back) do not
 * all retry in the same instant.
 */

/** Bounds of the backoff. */
export interface RetryPolicy {
  /** Tries in all before the error is raised (at least 1). */
  readonly attempts: number;
  readonly baseMs: number;
  readonly capMs: number;
}

/** Foreground defaults: base 1 s, cap 60 s (§10.2). */
export const DEFAULT_RETRY: RetryPolicy = Object.freeze({ attempts: 5, baseMs: 1_000, capMs: 60_000 });

/** Milliseconds to wait before retry number `retry` (0 for the first retry). */
export function backoffDelay(retry: number, policy: RetryPolicy, random: () => number, retryAfterMs = 0): number {
  const ceiling = Math.min(policy.capMs, policy.baseMs * 2 ** Math.min(retry, 52));
  return Math.max(retryAfterMs, random() * ceiling);
}

/** Resolves after `ms`, or rejects with the signal's reason when it aborts first. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted === true) {
      reject(signal.reason as Error);
      return;
    }
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason as Error);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
