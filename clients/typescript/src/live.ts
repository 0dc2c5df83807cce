/**
 * A match live (PROTOCOL.md §17): one WebSocket per match the app shows, through which every
 * change merged into the match arrives the moment it commits, from any device.
 *
 * The socket is a faster way to learn about changes, never the truth: what it delivers is
 * merged exactly like a pull page, and the `seq` of the last message processed is stored in
 * the same transaction, so a reconnect resumes with `since` and misses or repeats nothing
 * (§17.3). Drops, restarts and deploys reconnect with backoff and full jitter; a connection
 * that has been silent for 40 s is presumed dead (§17.6).
 */

import { LoginRequired, SyncError, SyncRejected } from "./errors.js";
import { Emitter } from "./events.js";
import { DEFAULT_RETRY, backoffDelay, type RetryPolicy } from "./retry.js";
import type { TableName } from "./schema.js";
import type { SyncClient } from "./sync.js";
import type { ConflictRecord, LoggedChange, Problem } from "./wire.js";

/** The part of the WebSocket API the client uses (the browser's, or the `ws` package's). */
export interface WebSocketLike {
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: ((event: unknown) => void) | null;
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
}

interface ServerMessage {
  readonly type?: unknown;
  readonly seq?: unknown;
  readonly changes?: readonly LoggedChange[];
  readonly conflicts?: readonly ConflictRecord[];
  readonly more?: unknown;
  readonly devices?: readonly PresenceDevice[];
  readonly problem?: Problem;
}

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

  constructor(client: SyncClient, matchId: string, options: LiveOptions = {}) {
    const constructor = options.webSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (constructor === undefined) throw new Error("no WebSocket here: pass options.webSocket");
    this.#client = client;
    this.matchId = matchId;
    this.#WebSocket = constructor;
    this.#random = options.random ?? Math.random;
    this.#retry = { ...DEFAULT_RETRY, ...options.retry };
    this.#silenceMs = options.silenceMs ?? 40_000;
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
    this.#clearTimers();
    const socket = this.#socket;
    this.#socket = null;
    socket?.close(1000, "done");
    this.#setState("closed");
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
      if (socket !== this.#socket) return;
      this.#socket = null;
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
            if (message.type === "catchup" && message.more !== true) this.#events.emit("caughtUp", { seq });
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
      case "error":
        this.#events.emit("error", new SyncRejected(message.problem?.status ?? 400, message.problem ?? {}));
        return;
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

function asSyncError(error: unknown): SyncError {
  return error instanceof SyncError ? error : new SyncError(error instanceof Error ? error.message : String(error), { cause: error });
}
