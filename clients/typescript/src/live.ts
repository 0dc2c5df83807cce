/**
 * A match live (PROTOCOL.md §17): one WebSocket per match the app shows, through which every
 * change merged into the match arrives the moment it commits, from any device.
 *
 * The socket is a faster way to learn about changes, never the truth: what it delivers is
 * merged exactly like a pull page, and the `seq` of the last message processed is stored in
 * the same transaction, so a reconnect resumes with `since` and misses or repeats nothing
 * (§17.3). Drops, restarts and deploys reconnect with backoff and full jitter; a connection
 * that has been silent for 40 s is presumed dead (§17.6).
 *
 * While the socket is open and caught up, the client's pushes travel over it too (§17.5):
 * same change sets, same answers as `POST /api/sync/push`. A push the socket cannot answer
 * (it closed, failed or stayed silent) is handed back, and the client sends it over HTTP;
 * pushes are idempotent, so a set the server did store is acknowledged there as duplicates.
 */

import { LoginRequired, SyncError, SyncRejected, SyncUnavailable } from "./errors.js";
import { Emitter } from "./events.js";
import { DEFAULT_RETRY, backoffDelay, type RetryPolicy } from "./retry.js";
import type { TableName } from "./schema.js";
import type { SyncClient } from "./sync.js";
import { describe, problemError } from "./transport.js";
import type { ConflictRecord, LoggedChange, Problem, PushRequest, PushResponse } from "./wire.js";

/** The part of the WebSocket API the client uses (the browser's, or the `ws` package's). */
export interface WebSocketLike {
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: ((event: unknown) => void) | null;
  /** `1` while open (both the browser's and `ws` have it); without it, `onopen` decides. */
  readonly readyState?: number;
}

export type WebSocketConstructor = new (url: string) => WebSocketLike;

/** A coach device on the match, and what it is editing (§17.4). */
export interface PresenceDevice {
  readonly device_id: string;
  readonly user_id: string;
  readonly editing: { readonly table: string; readonly id: string } | null;
}

export type LiveState = "connecting" | "open" | "closed";

export interface LiveEvents {
  state: LiveState;
  presence: readonly PresenceDevice[];
  /** The catch-up after (re)connecting is merged: the device is level with the match. */
  caughtUp: { readonly seq: number };
  /** Why the subscription stopped or a message failed; reconnecting is automatic when it helps. */
  error: SyncError;
}

export interface LiveOptions {
  /** The WebSocket constructor; the global one by default (inject `ws` in Node). */
  readonly webSocket?: WebSocketConstructor;
  readonly random?: () => number;
  readonly retry?: Partial<RetryPolicy>;
  /** Reconnect when no message arrived for this long (the server sends one every 15 s). */
  readonly silenceMs?: number;
  /** How long a push sent over the socket may wait for its answer before it goes over HTTP. */
  readonly pushTimeoutMs?: number;
}

interface ServerMessage {
  readonly type?: unknown;
  readonly seq?: unknown;
  readonly changes?: readonly LoggedChange[];
  readonly conflicts?: readonly ConflictRecord[];
  readonly more?: unknown;
  readonly devices?: readonly PresenceDevice[];
  readonly problem?: unknown;
  readonly id?: unknown;
  readonly result?: PushResponse;
}

/** How a push sent over the socket ended: answered, or to be sent over HTTP instead. */
type PushOutcome =
  | { readonly kind: "ack"; readonly result: PushResponse }
  | { readonly kind: "error"; readonly problem: Problem }
  | { readonly kind: "aborted"; readonly reason: unknown }
  | { readonly kind: "lost" };

interface PushInFlight {
  readonly socket: WebSocketLike;
  readonly settle: (outcome: PushOutcome) => void;
}

const OPEN = 1;
const PROBLEM_PREFIX = "/problems/";

// Close codes after which reconnecting cannot help (§17.7).
const FINAL_CLOSES = new Map([
  [4403, "the member's role no longer allows a coach stream"],
  [4404, "no such match in this club"],
  [4410, "the share link has ended"],
]);

/** A live subscription to one match; {@link start} it, {@link stop} it when the match leaves the screen. */
/** Fields of match records that name club-wide records, and the table they name. */
const CLUB_WIDE_REFERENCES: ReadonlyArray<readonly [string, TableName]> = [
  ["player_id", "players"],
  ["team_id", "teams"],
  ["home_team_id", "teams"],
  ["away_team_id", "teams"],
  ["season_id", "seasons"],
];

export class LiveMatch {
  readonly matchId: string;
  readonly #client: SyncClient;
  readonly #WebSocket: WebSocketConstructor;
  readonly #random: () => number;
  readonly #retry: RetryPolicy;
  readonly #silenceMs: number;
  readonly #events = new Emitter<LiveEvents>();
  #socket: WebSocketLike | null = null;
  #token: string | null = null;
  #stopped = true;
  #attempt = 0;
  #timer: ReturnType<typeof setTimeout> | null = null;
  #watchdog: ReturnType<typeof setTimeout> | null = null;
  // Messages are merged one after the other, in the order they came.
  #work: Promise<void> = Promise.resolve();
  // Club-wide records (players, teams, seasons) the match named before this device had them,
  // already asked for by a pull: the socket carries the match's records only (§17.3).
  readonly #asked = new Set<string>();
  #state: LiveState = "closed";
  // The current socket's first catch-up is merged: pushes may go over it.
  #caughtUp = false;
  readonly #pushTimeoutMs: number;
  #pushCount = 0;
  readonly #pushes = new Map<string, PushInFlight>();

  constructor(client: SyncClient, matchId: string, options: LiveOptions = {}) {
    const constructor = options.webSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (constructor === undefined) throw new Error("no WebSocket here: pass options.webSocket");
    this.#client = client;
    this.matchId = matchId;
    this.#WebSocket = constructor;
    this.#random = options.random ?? Math.random;
    this.#retry = { ...DEFAULT_RETRY, ...options.retry };
    this.#silenceMs = options.silenceMs ?? 40_000;
    this.#pushTimeoutMs = options.pushTimeoutMs ?? 10_000;
  }

  on<K extends keyof LiveEvents>(event: K, listener: (payload: LiveEvents[K]) => void): () => void {
    return this.#events.on(event, listener);
  }

  get state(): LiveState {
    return this.#state;
  }

  /** Connect, and keep reconnecting until {@link stop}. */
  start(): this {
    if (this.#stopped) {
      this.#stopped = false;
      this.#client.attachLive(this);
      this.#client.closedSignal.addEventListener("abort", () => this.stop(), { once: true });
      void this.#connect();
    }
    return this;
  }

  /** Pull (unscoped) once when merged changes name a player, team or season this device
   * does not hold yet, so a scorer another coach just added has a name at once. */
  async #pullWhatItNames(changes: readonly LoggedChange[]): Promise<void> {
    const unknown: string[] = [];
    for (const change of changes) {
      for (const [field, table] of CLUB_WIDE_REFERENCES) {
        const id = change.fields[field];
        const key = `${table}:${String(id)}`;
        if (typeof id !== "string" || this.#asked.has(key)) continue;
        this.#asked.add(key);
        if ((await this.#client.get(table, id)) === null) unknown.push(key);
      }
    }
    if (unknown.length === 0) return;
    this.#client.pull().catch((error: unknown) => this.#events.emit("error", asSyncError(error)));
  }

  /** Close the socket for good. */
  stop(): void {
    this.#stopped = true;
    this.#client.detachLive(this);
    this.#clearTimers();
    const socket = this.#socket;
    this.#socket = null;
    this.#caughtUp = false;
    if (socket !== null) this.#dropPushes(socket);
    socket?.close(1000, "done");
    this.#setState("closed");
  }

  /** @internal Whether a push can go over the socket now: open, and its first catch-up merged. */
  get canPush(): boolean {
    const socket = this.#socket;
    return !this.#stopped && socket !== null && this.#caughtUp && (socket.readyState ?? OPEN) === OPEN;
  }

  /**
   * @internal Send a change set over the socket (§17.5) and wait for its answer. Resolves
   * with the `PushResponse`, or with `null` when the socket cannot tell (not open, closed or
   * failed before answering, no answer within `pushTimeoutMs`, an answer that asks for a
   * renewed token): the caller then sends the same set over HTTP. A refusal throws exactly
   * what the HTTP answer with that problem throws.
   */
  async sendPush(request: PushRequest, signal?: AbortSignal): Promise<PushResponse | null> {
    const socket = this.#socket;
    if (socket === null || !this.canPush) return null;
    if (signal?.aborted === true) throw this.#aborted(signal.reason);
    this.#pushCount += 1;
    const id = `push-${this.#pushCount}`;
    const outcome = await new Promise<PushOutcome>((resolve) => {
      const timer = setTimeout(() => {
        settle({ kind: "lost" });
        // An open socket that does not answer is no use for live updates either.
        socket.close(4000, "push unanswered");
      }, this.#pushTimeoutMs);
      const onAbort = (): void => settle({ kind: "aborted", reason: signal?.reason });
      const settle = (outcome: PushOutcome): void => {
        if (!this.#pushes.delete(id)) return;
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        resolve(outcome);
      };
      this.#pushes.set(id, { socket, settle });
      signal?.addEventListener("abort", onAbort, { once: true });
      try {
        socket.send(JSON.stringify({ type: "push", id, change_set: request }));
      } catch {
        settle({ kind: "lost" });
      }
    });
    switch (outcome.kind) {
      case "ack":
        return outcome.result;
      case "lost":
        return null;
      case "aborted":
        throw this.#aborted(outcome.reason);
      case "error": {
        const status = typeof outcome.problem.status === "number" ? outcome.problem.status : 400;
        // The socket's token was checked when it opened; HTTP renews it and tries again.
        if (status === 401) return null;
        throw problemError(`push over the live socket of match ${this.matchId}`, status, outcome.problem);
      }
    }
  }

  #aborted(reason: unknown): SyncUnavailable {
    return new SyncUnavailable(`push over the live socket of match ${this.matchId}: ${describe(reason)}`, null, {}, 0, { cause: reason });
  }

  /** Hand every push still waiting on `socket` back to HTTP. */
  #dropPushes(socket: WebSocketLike): void {
    for (const push of [...this.#pushes.values()]) if (push.socket === socket) push.settle({ kind: "lost" });
  }

  /** Tell the match's other coaches what this device is editing (§17.4); `null` when done. */
  editing(record: { table: string; id: string } | null): void {
    this.#socket?.send(JSON.stringify({ type: "editing", record }));
  }

  /** Resolves once every message received so far is merged (tests, and a UI's "saved" tick). */
  settled(): Promise<void> {
    return this.#work;
  }

  async #connect(): Promise<void> {
    if (this.#stopped) return;
    this.#setState("connecting");
    let url: string;
    try {
      const since = await this.#client.liveSince(this.matchId);
      this.#token = await this.#client.session.accessToken();
      const base = this.#client.serverUrl.replace(/^http/, "ws");
      // Browsers cannot set headers on a WebSocket, hence the token in the query (§17.1).
      url = `${base}/ws/match/${encodeURIComponent(this.matchId)}?token=${encodeURIComponent(this.#token)}&since=${since}`;
    } catch (error) {
      this.#fail(error, !(error instanceof LoginRequired));
      return;
    }
    if (this.#stopped) return;
    const socket = new this.#WebSocket(url);
    this.#socket = socket;
    this.#caughtUp = false;
    socket.onopen = () => {
      if (socket === this.#socket) this.#setState("open");
      this.#armWatchdog(socket);
    };
    socket.onmessage = (event) => {
      if (socket !== this.#socket) return;
      this.#armWatchdog(socket);
      this.#onMessage(socket, event.data);
    };
    socket.onerror = () => {
      // The close event follows and decides what happens next.
    };
    socket.onclose = (event) => {
      this.#dropPushes(socket);
      if (socket !== this.#socket) return;
      this.#socket = null;
      this.#caughtUp = false;
      this.#clearTimers();
      void this.#onClose(event.code);
    };
  }

  #onMessage(socket: WebSocketLike, data: unknown): void {
    let message: ServerMessage;
    try {
      message = JSON.parse(typeof data === "string" ? data : String(data)) as ServerMessage;
    } catch {
      return; // Not JSON: nothing the protocol sends; ignore it like an unknown message.
    }
    const seq = typeof message.seq === "number" ? message.seq : null;
    switch (message.type) {
      case "catchup":
      case "changes":
        if (seq === null) return;
        this.#work = this.#work.then(async () => {
          try {
            await this.#client.integrateLive(this.matchId, seq, message.changes ?? [], message.conflicts ?? []);
            this.#attempt = 0;
            await this.#pullWhatItNames(message.changes ?? []);
            if (message.type === "catchup" && message.more !== true) {
              if (socket === this.#socket) this.#caughtUp = true;
              this.#events.emit("caughtUp", { seq });
            }
          } catch (error) {
            // Nothing of the message was stored: reconnect and get it again from `since`.
            this.#events.emit("error", asSyncError(error));
            socket.close(4000, "merge failed");
          }
        });
        return;
      case "presence":
        this.#events.emit("presence", message.devices ?? []);
        return;
      case "resync":
        socket.close(4000, "resync"); // too far behind: reconnect with `since` (§17.6)
        return;
      case "ack":
      case "error": {
        // An answer to a push: to its sender, if it still waits (unknown ids are ignored).
        if (typeof message.id === "string") {
          const push = this.#pushes.get(message.id);
          if (push === undefined || push.socket !== socket) return;
          if (message.type === "error") push.settle({ kind: "error", problem: httpProblem(message.problem) });
          else if (message.result !== undefined) push.settle({ kind: "ack", result: message.result });
          else push.settle({ kind: "lost" });
          return;
        }
        if (message.type === "ack") return;
        const problem = httpProblem(message.problem);
        this.#events.emit("error", new SyncRejected(typeof problem.status === "number" ? problem.status : 400, problem));
        // A refusal without an id (rate, size, an undecodable message) dropped a message that
        // may have been a push: those in flight go over HTTP, where re-sending is harmless.
        this.#dropPushes(socket);
        return;
      }
      default:
        return; // heartbeat, pong, and types added later
    }
  }

  async #onClose(code: number): Promise<void> {
    await this.#work;
    if (this.#stopped) return;
    this.#setState("closed");
    const final = FINAL_CLOSES.get(code);
    if (final !== undefined) {
      this.#stopped = true;
      this.#events.emit("error", new SyncError(`live updates of match ${this.matchId} stopped: ${final} (${code})`));
      return;
    }
    try {
      if (code === 4401 && this.#token !== null) await this.#client.session.renew(this.#token);
      if (code === 4400) await this.#client.resetLive(this.matchId);
    } catch (error) {
      this.#fail(error, !(error instanceof LoginRequired));
      return;
    }
    this.#schedule();
  }

  #fail(error: unknown, retry: boolean): void {
    this.#events.emit("error", asSyncError(error));
    if (retry) this.#schedule();
    else this.stop();
  }

  #schedule(): void {
    if (this.#stopped) return;
    const delay = backoffDelay(this.#attempt, this.#retry, this.#random);
    this.#attempt += 1;
    this.#timer = setTimeout(() => void this.#connect(), delay);
  }

  #armWatchdog(socket: WebSocketLike): void {
    if (this.#watchdog !== null) clearTimeout(this.#watchdog);
    this.#watchdog = setTimeout(() => socket.close(4000, "silent"), this.#silenceMs);
  }

  #clearTimers(): void {
    if (this.#timer !== null) clearTimeout(this.#timer);
    if (this.#watchdog !== null) clearTimeout(this.#watchdog);
    this.#timer = this.#watchdog = null;
  }

  #setState(state: LiveState): void {
    if (state === this.#state) return;
    this.#state = state;
    this.#events.emit("state", state);
  }
}

/**
 * A socket's problem (`{status, code, title, detail, extensions}`, §17.5) as the HTTP answer
 * carries it (`{type: "/problems/<code>", title, status, detail, ...extensions}`, §10.1), so
 * it raises the same error with the same fields.
 */
function httpProblem(value: unknown): Problem {
  if (value === null || typeof value !== "object" || Array.isArray(value)) return {};
  const { code, extensions, ...rest } = value as Record<string, unknown>;
  const extra = extensions !== null && typeof extensions === "object" && !Array.isArray(extensions) ? (extensions as Record<string, unknown>) : {};
  const problem: Record<string, unknown> = { ...extra, ...rest };
  if (typeof problem.type !== "string" && typeof code === "string") problem.type = PROBLEM_PREFIX + code;
  return problem as Problem;
}

function asSyncError(error: unknown): SyncError {
  return error instanceof SyncError ? error : new SyncError(error instanceof Error ? error.message : String(error), { cause: error });
}
