/**
 * What a sync call can fail with (PROTOCOL.md §10). Two kinds, because a client reacts to
 * them differently:
 *
 * - {@link SyncRejected}: the server understood the request and refused it (a 4xx with an
 *   RFC 9457 problem body). Sending the same request again gets the same answer.
 * - {@link SyncUnavailable}: no usable answer (network failure, timeout, abort, 5xx, 408, 425,
 *   429, an unreadable body). The request may or may not have been applied; every sync call
 *   is idempotent, so it is retried later with backoff.
 */

import type { Problem } from "./wire.js";

const PROBLEM_PREFIX = "/problems/";

/** Base class of the errors a sync call raises. */
export class SyncError extends Error {
  override name = "SyncError";
}

function integer(problem: Problem, name: string): number | null {
  const value = problem[name];
  return typeof value === "number" && Number.isInteger(value) ? value : null;
}

/** The server refused the request; `code` is the stable problem code to branch on (§10.2). */
export class SyncRejected extends SyncError {
  override name = "SyncRejected";

  constructor(
    readonly status: number,
    readonly problem: Problem,
  ) {
    const code = codeOf(problem, status);
    super(`${status} ${code}: ${typeof problem.detail === "string" ? problem.detail : (problem.title ?? "")}`);
  }

  /** `sequence-gap`, `invalid-change-set`, `unauthorized`, … (the `type` without its prefix). */
  get code(): string {
    return codeOf(this.problem, this.status);
  }

  /** For `sequence-gap`: the sequence the server needs next from this device. */
  get expectedSeq(): number | null {
    return integer(this.problem, "expected_seq");
  }

  /** For `change-set-too-large`: the most changes the server takes in one push. */
  get maxChanges(): number | null {
    return integer(this.problem, "max_changes");
  }

  /** For `invalid-change-set` and `validation-failed`: one `{field, message}` per problem. */
  get errors(): Array<{ field: string; message: string }> {
    const found = this.problem.errors;
    return Array.isArray(found) ? (found as Array<{ field: string; message: string }>) : [];
  }
}

/** No usable answer; the request may or may not have been applied (retry with backoff). */
export class SyncUnavailable extends SyncError {
  override name = "SyncUnavailable";

  constructor(
    message: string,
    readonly status: number | null = null,
    readonly problem: Problem = {},
    /** The server's `Retry-After`, in milliseconds, when it sent one. */
    readonly retryAfterMs: number = 0,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** The device is not logged in, or its login ended and must be renewed with a password. */
export class LoginRequired extends SyncError {
  override name = "LoginRequired";
}

function codeOf(problem: Problem, status: number): string {
  const type = problem.type;
  if (typeof type === "string" && type.length > 0) {
    return type.startsWith(PROBLEM_PREFIX) ? type.slice(PROBLEM_PREFIX.length) : type;
  }
  return String(status);
}
