/**
 * The seam between the client and the sync server (PROTOCOL.md §5, §6, §8): four calls, and
 * their HTTP implementation over `fetch`. The sync logic only ever talks to a
 * {@link SyncTransport}, so tests can put fakes or fault injectors in between.
 */

import { SyncRejected, SyncUnavailable } from "./errors.js";
import type { Session } from "./session.js";
import type { ConflictRecord, Problem, PullRequest, PullResponse, PushRequest, PushResponse, ReinstateResponse } from "./wire.js";

/** What the client needs from the server. Implementations throw the errors of errors.ts. */
export interface SyncTransport {
  /** Store a change set (idempotent: re-sent changes are acknowledged, not applied again). */
  push(request: PushRequest, signal?: AbortSignal): Promise<PushResponse>;
  /** One page of the log after `request.cursor`. */
  pull(request: PullRequest, signal?: AbortSignal): Promise<PullResponse>;
  /** The conflict ledger (§8.4). */
  conflicts(query: { matchId?: string; since?: number }, signal?: AbortSignal): Promise<ConflictRecord[]>;
  /** Write a conflict's losing value back, causally after the winner (§8.5). */
  reinstate(conflictId: string, signal?: AbortSignal): Promise<ReinstateResponse>;
}

/** The `fetch` the client uses; the global one unless another is injected. */
export type FetchFunction = (input: string, init: RequestInit) => Promise<Response>;

// Statuses that mean "not now" rather than "not this request": retried like a dropped line.
const RETRYABLE_CLIENT_STATUSES = new Set([408, 425, 429]);
const DEFAULT_TIMEOUT_MS = 30_000;

export interface RequestOptions {
  readonly method: "GET" | "POST";
  readonly body?: unknown;
  readonly token?: string;
  readonly signal?: AbortSignal | undefined;
  readonly timeoutMs?: number;
}

/**
 * One JSON exchange. A failure to get any answer, a 5xx, 408, 425 or 429, or an unreadable
 * body is {@link SyncUnavailable}; another 4xx is {@link SyncRejected} with the problem.
 */
export async function requestJson<T>(fetchFn: FetchFunction, url: string, options: RequestOptions): Promise<{ status: number; body: T }> {
  const headers: Record<string, string> = { accept: "application/json" };
  if (options.body !== undefined) headers["content-type"] = "application/json";
  if (options.token !== undefined) headers.authorization = `Bearer ${options.token}`;
  const signal = withTimeout(options.signal, options.timeoutMs ?? DEFAULT_TIMEOUT_MS);
  const init: RequestInit = { method: options.method, headers, signal };
  if (options.body !== undefined) init.body = JSON.stringify(options.body);
  let response: Response;
  try {
    response = await fetchFn(url, init);
  } catch (error) {
    // The URL only, never the headers: they carry the access token.
    throw new SyncUnavailable(`${options.method} ${url}: ${describe(error)}`, null, {}, 0, { cause: error });
  }
  let text: string;
  try {
    text = await response.text();
  } catch (error) {
    throw new SyncUnavailable(`${options.method} ${url}: the answer was cut off`, response.status, {}, 0, { cause: error });
  }
  if (response.status >= 400) {
    const problem = parseProblem(text, response.status);
    throw problemError(`${options.method} ${url}`, response.status, problem, retryAfterMs(response, problem));
  }
  if (response.status === 204 || text === "") return { status: response.status, body: undefined as T };
  try {
    return { status: response.status, body: JSON.parse(text) as T };
  } catch (error) {
    // A garbled 2xx: the request may have been applied, and re-sending it is safe.
    throw new SyncUnavailable(`unreadable ${response.status} answer from ${url}`, response.status, {}, 0, { cause: error });
  }
}

/**
 * The error a refusal with `status` and `problem` raises, wherever it came from (an HTTP
 * answer, or a live socket's `error` message): {@link SyncUnavailable} for a 5xx, 408, 425 or
 * 429, {@link SyncRejected} otherwise. `what` names the request in the message.
 */
export function problemError(what: string, status: number, problem: Problem, retryAfterMs = problemRetryAfterMs(problem)): SyncRejected | SyncUnavailable {
  if (status >= 500 || RETRYABLE_CLIENT_STATUSES.has(status)) {
    return new SyncUnavailable(`${what}: server answered ${status}`, status, problem, retryAfterMs);
  }
  return new SyncRejected(status, problem);
}

/** {@link SyncTransport} over HTTP, authenticated by a {@link Session}. */
export class HttpTransport implements SyncTransport {
  readonly #base: string;
  readonly #session: Session;
  readonly #fetch: FetchFunction;
  readonly #timeoutMs: number;

  constructor(options: { baseUrl: string; session: Session; fetch?: FetchFunction; timeoutMs?: number }) {
    this.#base = options.baseUrl.replace(/\/+$/, "");
    this.#session = options.session;
    this.#fetch = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
    this.#timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  }

  push(request: PushRequest, signal?: AbortSignal): Promise<PushResponse> {
    return this.#send("POST", "/api/sync/push", request, signal);
  }

  pull(request: PullRequest, signal?: AbortSignal): Promise<PullResponse> {
    return this.#send("POST", "/api/sync/pull", request, signal);
  }

  async conflicts(query: { matchId?: string; since?: number }, signal?: AbortSignal): Promise<ConflictRecord[]> {
    const params = new URLSearchParams({ since: String(query.since ?? 0) });
    if (query.matchId !== undefined) params.set("match_id", query.matchId);
    const answer = await this.#send<{ conflicts: ConflictRecord[] }>("GET", `/api/sync/conflicts?${params}`, undefined, signal);
    return answer.conflicts;
  }

  reinstate(conflictId: string, signal?: AbortSignal): Promise<ReinstateResponse> {
    return this.#send("POST", `/api/sync/conflicts/${encodeURIComponent(conflictId)}/reinstate`, undefined, signal);
  }

  async #send<T>(method: "GET" | "POST", path: string, body: unknown, signal: AbortSignal | undefined): Promise<T> {
    const url = this.#base + path;
    const token = await this.#session.accessToken(signal);
    const options = { method, body, signal, timeoutMs: this.#timeoutMs };
    try {
      return (await requestJson<T>(this.#fetch, url, { ...options, token })).body;
    } catch (error) {
      if (!(error instanceof SyncRejected) || error.status !== 401) throw error;
      // Once only: a token refused straight after renewal will not do better next time.
      const renewed = await this.#session.renew(token, signal);
      return (await requestJson<T>(this.#fetch, url, { ...options, token: renewed })).body;
    }
  }
}

function withTimeout(signal: AbortSignal | undefined, timeoutMs: number): AbortSignal {
  const timeout = AbortSignal.timeout(timeoutMs);
  if (signal === undefined) return timeout;
  if (typeof AbortSignal.any === "function") return AbortSignal.any([signal, timeout]);
  return signal;
}

function parseProblem(text: string, status: number): Problem {
  try {
    const parsed: unknown = JSON.parse(text);
    if (parsed !== null && typeof parsed === "object" && !Array.isArray(parsed)) return parsed as Problem;
  } catch {
    // Not JSON (a proxy's HTML page, say): keep what little there is.
  }
  return { status, detail: text.slice(0, 500) };
}

function retryAfterMs(response: Response, problem: Problem): number {
  const header = response.headers.get("retry-after");
  return header !== null ? secondsToMs(Number(header)) : problemRetryAfterMs(problem);
}

function problemRetryAfterMs(problem: Problem): number {
  return secondsToMs(typeof problem.retry_after === "number" ? problem.retry_after : NaN);
}

function secondsToMs(seconds: number): number {
  return Number.isFinite(seconds) && seconds > 0 ? seconds * 1000 : 0;
}

/** An error, briefly, for a message (never with request headers). */
export function describe(error: unknown): string {
  if (error instanceof Error) return `${error.name}: ${error.message}`;
  return String(error);
}
