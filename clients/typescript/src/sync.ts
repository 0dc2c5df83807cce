/**
 * The sync client: local changes into the outbox, push, pull, and the merge of what other
 * devices wrote, all kept in IndexedDB (PROTOCOL.md §5–§8, §12).
 *
 * Every step is safe to repeat or to interrupt at any point. A push re-sends the outbox from
 * its first unacknowledged change, with the same sequence and content (the server
 * acknowledges changes it already stored, with their effective HLCs, without applying them
 * again); outbox entries leave only after a `200` covering them. A pull resumes from the
 * stored cursor, and merging a change twice changes nothing. Each answer is taken in by one
 * IndexedDB transaction (records, outbox, clock, version vector, cursor and conflicts
 * together), so a tab killed mid-sync leaves a state the next run simply continues.
 */

import type { DBCore, DBCoreTransaction, Dexie } from "dexie";

import { InvalidChange } from "./edits.js";
import { SyncError, SyncRejected, SyncUnavailable } from "./errors.js";
import { Emitter } from "./events.js";
import { LiveMatch, type LiveOptions } from "./live.js";
import { HybridClock, encodeHlc, parseHlc } from "./hlc.js";
import { randomId } from "./ids.js";
import { applyWrite, isArchived, valuesOf, type RecordState } from "./merge.js";
import { nextRun, overlay, pushRequest, recordChange, viewState, type LocalEdit } from "./outbox.js";
import { DEFAULT_RETRY, backoffDelay, sleep, type RetryPolicy } from "./retry.js";
import type { TableName } from "./schema.js";
import { Session, type SignupRequest } from "./session.js";
import {
  SYNC_STORE_NAMES,
  SyncStore,
  recordKey,
  type DeviceState,
  type PendingChange,
  type StoredRecord,
  type StoredSession,
} from "./store.js";
import { HttpTransport, type FetchFunction, type SyncTransport } from "./transport.js";
import type { ConflictRecord, Fields, LoggedChange, PullRequest, PushRequest, PushResponse, Scalar } from "./wire.js";

const DEVICE_ID = /^[A-Za-z0-9._:-]{1,64}$/;
const RESERVED_DEVICE = "server";
const DEFAULT_PUSH_BATCH = 500;
const DEFAULT_PULL_LIMIT = 500;

/**
 * Transactions the sync engine opened itself. The Dexie adapter records every app write as a
 * change, except the ones made in these: they carry the server's state into the app's tables.
 */
export const engineTransactions = new WeakSet<object>();

/** A record as the device shows it, after the server changed it. */
export interface ViewUpdate {
  readonly table: TableName;
  readonly id: string;
  /** Confirmed registers with pending changes on top; `null` when the device has nothing. */
  readonly state: RecordState | null;
}

/** Where merged records are shown: the Dexie adapter writes them into the app's tables. */
export interface ViewSink {
  /** The app tables written, opened in the same transaction as the sync state. */
  readonly tables: readonly string[];
  write(core: DBCore, trans: DBCoreTransaction, updates: readonly ViewUpdate[]): Promise<void>;
}

/** The sync state as an app shows it (a badge, "last synced 2 min ago", an offline banner). */
export interface SyncStatus {
  readonly deviceId: string;
  /** Own changes waiting for the server. */
  readonly pending: number;
  /** Epoch ms of the last exchange that reached the server, or null. */
  readonly lastSyncedAt: number | null;
  /** The last attempt could not reach the server. */
  readonly offline: boolean;
  readonly syncing: boolean;
  /** What stopped the last round, if anything. */
  readonly lastError: SyncError | null;
}

/** What the client announces. */
export interface SyncEvents {
  /** A conflict this device had not seen: "Coach B changed the scorer" (§8). */
  conflict: ConflictRecord;
  status: SyncStatus;
  /** Records the server changed (pull, live update, or a restamp). */
  changes: readonly ViewUpdate[];
  /** Local changes were queued (the service-worker module schedules a push on it). */
  queued: { readonly pending: number };
  /** A local write through the Dexie adapter that the server would refuse; it was not recorded. */
  refused: { readonly table: string; readonly id: string; readonly error: InvalidChange };
}

/** How to build a {@link SyncClient}. */
export interface SyncClientOptions {
  /** A Dexie database that declares {@link SYNC_STORES} (the app's own, usually). */
  readonly db: Dexie;
  /** The sync server's base URL, e.g. `https://touchline.example.org`. */
  readonly serverUrl: string;
  readonly fetch?: FetchFunction;
  /** Replaces the HTTP transport (tests, fault injection). */
  readonly transport?: SyncTransport;
  /** The device id to use when this database has none yet; a random UUID by default. */
  readonly deviceId?: string;
  readonly now?: () => number;
  readonly random?: () => number;
  readonly retry?: Partial<RetryPolicy>;
  /** Most changes per push (the server may lower it, §5.6). */
  readonly pushBatch?: number;
  /** Most changes per pull page. */
  readonly pullLimit?: number;
}

/** The result of one {@link SyncClient.sync}. */
export interface SyncResult {
  /** Own changes the server acknowledged. */
  readonly pushed: number;
  /** Changes of other devices integrated. */
  readonly pulled: number;
}

/** One device's sync with the server, over the state kept in `db`. */
export class SyncClient {
  readonly session: Session;
  readonly deviceId: string;
  readonly #db: Dexie;
  readonly #transport: SyncTransport;
  readonly #now: () => number;
  readonly #random: () => number;
  readonly #retry: RetryPolicy;
  readonly #pushBatch: number;
  readonly #pullLimit: number;
  readonly #events = new Emitter<SyncEvents>();
  readonly #serverUrl: string;
  #sink: ViewSink | null = null;
  #running: Promise<SyncResult> | null = null;
  #status: SyncStatus;
  #closed = new AbortController();
  // Live matches started through this client: an open one carries the pushes (§17.5).
  readonly #live = new Set<LiveMatch>();

  private constructor(options: SyncClientOptions, deviceId: string, status: SyncStatus) {
    this.#db = options.db;
    this.#serverUrl = options.serverUrl.replace(/\/+$/, "");
    this.#now = options.now ?? Date.now;
    this.#random = options.random ?? Math.random;
    this.#retry = { ...DEFAULT_RETRY, ...options.retry };
    this.#pushBatch = options.pushBatch ?? DEFAULT_PUSH_BATCH;
    this.#pullLimit = options.pullLimit ?? DEFAULT_PULL_LIMIT;
    this.deviceId = deviceId;
    this.#status = status;
    this.session = new Session({
      baseUrl: this.#serverUrl,
      now: this.#now,
      ...(options.fetch === undefined ? {} : { fetch: options.fetch }),
      store: {
        load: () => this.#tx("readonly", (store) => store.session()),
        save: (session) => this.#tx("readwrite", (store) => store.putSession(session)),
      },
    });
    this.#transport =
      options.transport ??
      new HttpTransport({ baseUrl: this.#serverUrl, session: this.session, ...(options.fetch === undefined ? {} : { fetch: options.fetch }) });
  }

  /**
   * Open the client over `options.db`, creating the device's state the first time. The device
   * id is kept with the data: a database that was cleared starts as a new device (§2.2).
   */
  static async open(options: SyncClientOptions): Promise<SyncClient> {
    if (!options.db.isOpen()) await options.db.open();
    const missing = SYNC_STORE_NAMES.filter((name) => !options.db.tables.some((table) => table.name === name));
    if (missing.length > 0) {
      throw new Error(`the database lacks the sync stores ${missing.join(", ")}: add SYNC_STORES to its schema`);
    }
    const wanted = options.deviceId ?? randomId();
    if (!DEVICE_ID.test(wanted) || wanted === RESERVED_DEVICE) {
      throw new RangeError(`invalid device id ${JSON.stringify(wanted)}: 1-64 of A-Z a-z 0-9 . _ : -, not "server"`);
    }
    const { device, pending } = await options.db.transaction("rw", [...SYNC_STORE_NAMES], async (tx) => {
      const store = new SyncStore(options.db.core, tx.idbtrans);
      let state = await store.deviceState();
      if (state === undefined) {
        state = {
          deviceId: wanted,
          nextSeq: 1,
          clock: encodeHlc({ wallMs: 0, logical: 0 }),
          integrated: {},
          cursor: 0,
          matchCursors: {},
          liveSeq: {},
          lastSyncedAt: null,
        };
        await store.putDeviceState(state);
      }
      return { device: state, pending: await store.pendingCount() };
    });
    return new SyncClient(options, device.deviceId, {
      deviceId: device.deviceId,
      pending,
      lastSyncedAt: device.lastSyncedAt,
      offline: false,
      syncing: false,
      lastError: null,
    });
  }

  // -- events and status ------------------------------------------------------------------

  /** Listen to an event; returns a function that stops listening. */
  on<K extends keyof SyncEvents>(event: K, listener: (payload: SyncEvents[K]) => void): () => void {
    return this.#events.on(event, listener);
  }

  /** The sync state as last announced. */
  get status(): SyncStatus {
    return this.#status;
  }

  /** The server's base URL. */
  get serverUrl(): string {
    return this.#serverUrl;
  }

  // -- accounts ---------------------------------------------------------------------------

  /** Log this device in (§13.2). */
  async login(email: string, password: string): Promise<StoredSession> {
    return this.session.login(email, password, this.deviceId);
  }

  /** Sign up a new club, or join one by invite (§13.1), as this device. */
  async signup(request: SignupRequest): Promise<StoredSession> {
    return this.session.signup(request, this.deviceId);
  }

  // -- local edits (for apps that do not use the Dexie adapter) ---------------------------

  /** Create a record with its required fields; returns its id (a new UUID unless given). */
  async create(table: TableName, fields: Fields, id: string = randomId()): Promise<string> {
    await this.record([{ table, id, op: "upsert", fields }]);
    return id;
  }

  /** Write some fields of a record (`null` clears an optional field). */
  async update(table: TableName, id: string, fields: Fields): Promise<void> {
    if (Object.keys(fields).length === 0) throw new InvalidChange("an update needs at least one field");
    await this.record([{ table, id, op: "upsert", fields }]);
  }

  /** Archive a record (§7.3); {@link restore} brings it back with every field. */
  async delete(table: TableName, id: string): Promise<void> {
    await this.record([{ table, id, op: "delete", fields: {} }]);
  }

  /** Bring an archived record back. */
  async restore(table: TableName, id: string): Promise<void> {
    await this.record([{ table, id, op: "restore", fields: {} }]);
  }

  /** Record several edits atomically: all are queued, or none (an invalid one throws). */
  async record(edits: readonly LocalEdit[]): Promise<PendingChange[]> {
    const recorded = await this.#tx(
      "readwrite",
      async (store, trans) => {
        const changes: PendingChange[] = [];
        for (const edit of edits) changes.push(await recordChange(store, this.#now, edit));
        await this.#showViews(store, trans, changes.map((c) => ({ table: c.table, id: c.id })));
        return changes;
      },
      true,
    );
    await this.noteQueued();
    return recorded;
  }

  /** Tell the client that changes were queued in another way (the Dexie adapter does). */
  async noteQueued(): Promise<void> {
    const pending = await this.pendingCount();
    this.#setStatus({ pending });
    this.#events.emit("queued", { pending });
  }

  /** @internal The Dexie adapter reports local writes it could not record. */
  reportRefused(table: string, id: string, error: InvalidChange): void {
    this.#events.emit("refused", { table, id, error });
  }

  /** @internal Used by the Dexie adapter: shows merged records in the app's tables. */
  setViewSink(sink: ViewSink | null): void {
    this.#sink = sink;
  }

  // -- what the device holds --------------------------------------------------------------

  /** A record's current values as the device shows it (pending changes included). */
  async get(table: TableName, id: string): Promise<{ values: Record<string, Scalar>; archived: boolean } | null> {
    const state = await this.#tx("readonly", (store) => viewState(store, this.deviceId, table, id));
    return state === null ? null : { values: valuesOf(state), archived: isArchived(state) };
  }

  /** The confirmed registers of a record: what every replica holds (§7.8). */
  async confirmedState(table: TableName, id: string): Promise<RecordState | null> {
    const stored = await this.#tx("readonly", (store) => store.record(recordKey(table, id)));
    return stored?.state ?? null;
  }

  /** Every record of `table` the device knows, as shown (archived ones flagged). */
  async list(table: TableName): Promise<Array<{ id: string; values: Record<string, Scalar>; archived: boolean }>> {
    return this.#db.transaction("r", [...SYNC_STORE_NAMES], async (tx) => {
      const store = new SyncStore(this.#db.core, tx.idbtrans);
      const ids = new Set<string>();
      for (const record of (await this.#db.table("touchlineRecords").where("table").equals(table).toArray()) as StoredRecord[]) ids.add(record.id);
      for (const change of await store.pending()) if (change.table === table) ids.add(change.id);
      const out = [];
      for (const id of [...ids].sort()) {
        const state = await viewState(store, this.deviceId, table, id);
        if (state !== null) out.push({ id, values: valuesOf(state), archived: isArchived(state) });
      }
      return out;
    });
  }

  async pendingCount(): Promise<number> {
    return this.#tx("readonly", (store) => store.pendingCount());
  }

  /** The changes waiting for the server, oldest first. */
  async pendingChanges(): Promise<PendingChange[]> {
    return this.#tx("readonly", (store) => store.pending());
  }

  /** The device's state: next sequence, clock, version vector, cursors. */
  async deviceState(): Promise<DeviceState> {
    const state = await this.#tx("readonly", (store) => store.deviceState());
    if (state === undefined) throw new Error("the sync state was removed from the database");
    return state;
  }

  /** Every conflict this device has learned of, by server sequence. */
  async conflicts(): Promise<ConflictRecord[]> {
    const all = await this.#tx("readonly", (store) => store.conflicts());
    return all.sort((a, b) => a.server_seq - b.server_seq || (a.field < b.field ? -1 : 1));
  }

  // -- sync -------------------------------------------------------------------------------

  /**
   * Push, pull until caught up, and push again if edits were made meanwhile. While the server
   * cannot be reached the round is retried with exponential backoff and full jitter, up to
   * the retry policy's attempts; then the last error is thrown. A refusal is thrown at once.
   * Concurrent calls share one round.
   */
  sync(options: { signal?: AbortSignal } = {}): Promise<SyncResult> {
    this.#running ??= this.#syncRound(options.signal).finally(() => {
      this.#running = null;
    });
    return this.#running;
  }

  async #syncRound(signal: AbortSignal | undefined): Promise<SyncResult> {
    this.#setStatus({ syncing: true });
    let pushed = 0;
    let pulled = 0;
    try {
      for (let attempt = 0; ; attempt += 1) {
        try {
          pushed += await this.push({ signal });
          pulled += await this.pull({ signal });
          if ((await this.pendingCount()) > 0) pushed += await this.push({ signal });
          this.#setStatus({ syncing: false, offline: false, lastError: null });
          return { pushed, pulled };
        } catch (error) {
          if (!(error instanceof SyncUnavailable) || attempt + 1 >= this.#retry.attempts || signal?.aborted === true) throw error;
          this.#setStatus({ offline: true, lastError: error });
          await sleep(backoffDelay(attempt, this.#retry, this.#random, error.retryAfterMs), signal);
        }
      }
    } catch (error) {
      const lastError = error instanceof SyncError ? error : new SyncError(String(error), { cause: error });
      this.#setStatus({ syncing: false, offline: error instanceof SyncUnavailable, lastError });
      throw error;
    }
  }

  /**
   * Push the outbox until it is empty, one run of changes sharing a `seen` vector per request
   * (§5.4); returns how many changes the server acknowledged. The first failure is thrown;
   * changes acknowledged before it stay acknowledged.
   */
  async push(options: { signal?: AbortSignal | undefined } = {}): Promise<number> {
    let limit = this.#pushBatch;
    let resend: number | null = null;
    let acknowledged = 0;
    for (;;) {
      const size = resend ?? limit;
      const run = await this.#tx("readonly", async (store) => nextRun(await store.pending(size), size));
      const first = run[0];
      if (first === undefined) return acknowledged;
      resend = null;
      let response: PushResponse;
      try {
        response = await this.#sendPush(pushRequest(this.deviceId, run), options.signal);
      } catch (error) {
        if (error instanceof SyncRejected && error.code === "change-set-too-large") {
          limit = serverCap(error, run.length);
          continue;
        }
        if (error instanceof SyncRejected) {
          resend = storedPrefix(error, first.seq, run.length);
          continue;
        }
        throw error;
      }
      const count = await this.#acknowledge(response);
      if (count === 0) {
        throw new SyncError(`the server acknowledged seq ${response.acked_seq}, below the pushed ${first.seq}`);
      }
      acknowledged += count;
    }
  }

  /**
   * One change set to the server: over the socket of an open live match when there is one
   * (§17.5), otherwise, or when the socket could not answer, over the transport (HTTP). Both
   * are `POST /api/sync/push` with the same answers and errors, and re-sending is safe.
   */
  async #sendPush(request: PushRequest, signal: AbortSignal | undefined): Promise<PushResponse> {
    const live = [...this.#live].find((match) => match.canPush);
    const answer = live === undefined ? null : await live.sendPush(request, signal);
    return answer ?? this.#transport.push(request, signal);
  }

  /** Move acknowledged changes into the confirmed replica with their effective HLCs (§4.3). */
  async #acknowledge(response: PushResponse): Promise<number> {
    const effective = new Map(response.restamped.map((r) => [r.seq, r.hlc]));
    const { count, fresh, views } = await this.#tx(
      "readwrite",
      async (store, trans) => {
        const device = await this.#device(store);
        const acked = (await store.pending()).filter((change) => change.seq <= response.acked_seq);
        const records = await store.records(acked.map((change) => change.key));
        const states = new Map<string, StoredRecord>();
        acked.forEach((change, index) => {
          const known = states.get(change.key) ?? records[index];
          const write = { device_id: this.deviceId, seq: change.seq, hlc: effective.get(change.seq) ?? change.hlc, op: change.op, fields: change.fields };
          states.set(change.key, { key: change.key, table: change.table, id: change.id, state: applyWrite(known?.state, write) });
        });
        await store.putRecords([...states.values()]);
        await store.removePending(acked.map((change) => change.seq));
        const clock = new HybridClock(this.#now, parseHlc(device.clock));
        for (const restamp of response.restamped) clock.receive(parseHlc(restamp.hlc));
        await store.putDeviceState({ ...device, clock: encodeHlc(clock.last), lastSyncedAt: this.#now() });
        const fresh = await learnConflicts(store, response.conflicts);
        // Only a restamp can change what the device shows: the rest merged with the same HLC.
        const restamped = acked.filter((change) => effective.has(change.seq));
        const views = await this.#showViews(store, trans, restamped);
        return { count: acked.length, fresh, views };
      },
      true,
    );
    this.#announce(fresh, views);
    this.#setStatus({ pending: await this.pendingCount(), lastSyncedAt: this.#now(), offline: false });
    return count;
  }

  /**
   * Pull until caught up, page by page; returns how many changes were integrated. With
   * `matchId` only that match's records are pulled (§6.3), with a cursor of their own.
   */
  async pull(options: { matchId?: string; signal?: AbortSignal | undefined } = {}): Promise<number> {
    const matchId = options.matchId ?? null;
    let integrated = 0;
    for (;;) {
      const device = await this.#tx("readonly", (store) => this.#device(store));
      // Everything up to the club cursor is integrated, so a match pull can start there.
      const cursor = matchId === null ? device.cursor : Math.max(device.cursor, device.matchCursors[matchId] ?? 0);
      const request: PullRequest = { device_id: this.deviceId, cursor, match_id: matchId, limit: this.#pullLimit, include_own: false };
      const page = await this.#transport.pull(request, options.signal);
      const { fresh, views } = await this.#tx(
        "readwrite",
        async (store, trans) => {
          const result = await this.#integrate(store, trans, page.changes, page.conflicts, (state) => {
            if (matchId === null) {
              const next = Math.max(state.cursor, page.cursor);
              const matchCursors = Object.fromEntries(Object.entries(state.matchCursors).filter(([, c]) => c > next));
              return { ...state, cursor: next, matchCursors };
            }
            if (page.cursor <= state.cursor) return state;
            const known = state.matchCursors[matchId] ?? 0;
            return { ...state, matchCursors: { ...state.matchCursors, [matchId]: Math.max(known, page.cursor) } };
          });
          return result;
        },
        true,
      );
      integrated += page.changes.length;
      this.#announce(fresh, views);
      this.#setStatus({ lastSyncedAt: this.#now(), offline: false });
      if (!page.has_more) return integrated;
      if (page.cursor <= request.cursor) throw new SyncError(`the pull did not move past cursor ${request.cursor}`);
    }
  }

  /**
   * @internal Merge changes delivered by the live socket of `matchId` (§17.3) and remember
   * the message's `seq` for resuming, in one transaction. Cursors are left alone.
   */
  async integrateLive(matchId: string, seq: number, changes: readonly LoggedChange[], conflicts: readonly ConflictRecord[]): Promise<void> {
    const { fresh, views } = await this.#tx(
      "readwrite",
      (store, trans) =>
        this.#integrate(store, trans, changes, conflicts, (state) => ({
          ...state,
          liveSeq: { ...state.liveSeq, [matchId]: Math.max(state.liveSeq[matchId] ?? 0, seq) },
        })),
      true,
    );
    this.#announce(fresh, views);
  }

  /** @internal The `seq` to resume the live socket of `matchId` from. */
  async liveSince(matchId: string): Promise<number> {
    return (await this.deviceState()).liveSeq[matchId] ?? 0;
  }

  /** @internal Forget where the live socket of `matchId` was (a `4400` on a stale `since`). */
  async resetLive(matchId: string): Promise<void> {
    await this.#tx("readwrite", async (store) => {
      const state = await this.#device(store);
      const { [matchId]: _dropped, ...liveSeq } = state.liveSeq;
      await store.putDeviceState({ ...state, liveSeq });
    });
  }

  /** Read the server's ledger (§8.4) and learn any conflict not known yet. */
  async refreshConflicts(options: { matchId?: string; signal?: AbortSignal } = {}): Promise<ConflictRecord[]> {
    const query = options.matchId === undefined ? {} : { matchId: options.matchId };
    const ledger = await this.#transport.conflicts(query, options.signal);
    const fresh = await this.#tx("readwrite", (store) => learnConflicts(store, ledger));
    this.#announce(fresh, []);
    return ledger;
  }

  /** Overrule a conflict: the server writes the losing value back (§8.5), merged here at once. */
  async reinstate(conflictId: string, options: { signal?: AbortSignal } = {}): Promise<ConflictRecord> {
    const answer = await this.#transport.reinstate(conflictId, options.signal);
    const { fresh, views } = await this.#tx("readwrite", (store, trans) => this.#integrate(store, trans, [answer.change], [answer.conflict], (s) => s), true);
    this.#announce(fresh, views);
    return answer.conflict;
  }

  /**
   * Follow a match live over its WebSocket (§17), merging every change as it commits and
   * resuming where it left off after a drop. Stop it when the match leaves the screen. While
   * it is open and caught up, {@link push} sends its change sets over the socket (§17.5).
   */
  live(matchId: string, options: LiveOptions = {}): LiveMatch {
    return new LiveMatch(this, matchId, options).start();
  }

  /** Stop live sockets and timers started through this client. */
  close(): void {
    this.#closed.abort(new SyncError("the client was closed"));
    this.#closed = new AbortController();
  }

  /** @internal A live match started through this client (it may carry pushes while open). */
  attachLive(live: LiveMatch): void {
    this.#live.add(live);
  }

  /** @internal The live match was stopped. */
  detachLive(live: LiveMatch): void {
    this.#live.delete(live);
  }

  /** @internal Aborted when the client is closed. */
  get closedSignal(): AbortSignal {
    return this.#closed.signal;
  }

  // -- the merge of server changes ----------------------------------------------------------

  async #integrate(
    store: SyncStore,
    trans: DBCoreTransaction,
    changes: readonly LoggedChange[],
    conflicts: readonly ConflictRecord[],
    advance: (state: DeviceState) => DeviceState,
  ): Promise<{ fresh: ConflictRecord[]; views: ViewUpdate[] }> {
    const device = await this.#device(store);
    const clock = new HybridClock(this.#now, parseHlc(device.clock));
    const integrated: Record<string, number> = { ...device.integrated };
    const keys = [...new Set(changes.map((c) => recordKey(c.table, c.id)))];
    const loaded = await store.records(keys);
    const states = new Map<string, StoredRecord | undefined>(keys.map((key, i) => [key, loaded[i]]));
    const changed = new Map<string, StoredRecord>();
    for (const change of changes) {
      const key = recordKey(change.table, change.id);
      const known = states.get(key);
      const state = applyWrite(known?.state, change);
      if (state !== known?.state) {
        const record = { key, table: change.table, id: change.id, state };
        states.set(key, record);
        changed.set(key, record);
      }
      clock.receive(parseHlc(change.hlc));
      // The vector claims every change of a device up to its entry, so it only moves over
      // consecutive sequences: a match-scoped page skips that device's other changes, and
      // claiming them would hide real conflicts (§6.4).
      if (change.device_id !== this.deviceId && change.seq === (integrated[change.device_id] ?? 0) + 1) {
        integrated[change.device_id] = change.seq;
      }
    }
    await store.putRecords([...changed.values()]);
    await store.putDeviceState(advance({ ...device, clock: encodeHlc(clock.last), integrated, lastSyncedAt: this.#now() }));
    const fresh = await learnConflicts(store, conflicts);
    const views = await this.#showViews(store, trans, [...changed.values()]);
    return { fresh, views };
  }

  /** Recompute what the device shows for `records` and hand it to the view sink. */
  async #showViews(store: SyncStore, trans: DBCoreTransaction, records: ReadonlyArray<{ table: TableName; id: string }>): Promise<ViewUpdate[]> {
    const seen = new Set<string>();
    const views: ViewUpdate[] = [];
    for (const { table, id } of records) {
      const key = recordKey(table, id);
      if (seen.has(key)) continue;
      seen.add(key);
      const [confirmed, pending] = await Promise.all([store.record(key), store.pendingFor(key)]);
      views.push({ table, id, state: overlay(confirmed?.state ?? null, pending, this.deviceId) });
    }
    if (this.#sink !== null && views.length > 0) await this.#sink.write(this.#db.core, trans, views);
    return views;
  }

  #announce(fresh: readonly ConflictRecord[], views: readonly ViewUpdate[]): void {
    for (const conflict of fresh) this.#events.emit("conflict", conflict);
    if (views.length > 0) this.#events.emit("changes", views);
  }

  #setStatus(update: Partial<SyncStatus>): void {
    this.#status = { ...this.#status, ...update };
    this.#events.emit("status", this.#status);
  }

  async #device(store: SyncStore): Promise<DeviceState> {
    const state = await store.deviceState();
    if (state === undefined) throw new Error("the sync state was removed from the database");
    return state;
  }

  /** Run `work` in one IndexedDB transaction over the sync stores (and the app's, for views). */
  async #tx<T>(mode: "readonly" | "readwrite", work: (store: SyncStore, trans: DBCoreTransaction) => Promise<T>, withViews = false): Promise<T> {
    const names: string[] = [...SYNC_STORE_NAMES];
    if (withViews && this.#sink !== null) names.push(...this.#sink.tables);
    return this.#db.transaction(mode === "readonly" ? "r" : "rw", names, async (tx) => {
      const trans = tx.idbtrans as unknown as DBCoreTransaction;
      engineTransactions.add(trans);
      return work(new SyncStore(this.#db.core, trans), trans);
    });
  }
}

/** Remember conflicts by id, keeping the copy with the greatest `reinstated_seq` (§6.3). */
async function learnConflicts(store: SyncStore, conflicts: readonly ConflictRecord[]): Promise<ConflictRecord[]> {
  if (conflicts.length === 0) return [];
  const known = await store.conflictsById(conflicts.map((c) => c.id));
  const fresh: ConflictRecord[] = [];
  const keep: ConflictRecord[] = [];
  const newest = new Map<string, ConflictRecord | undefined>(conflicts.map((c, i) => [c.id, known[i]]));
  for (const conflict of conflicts) {
    const existing = newest.get(conflict.id);
    if (existing === undefined && !fresh.some((c) => c.id === conflict.id)) fresh.push(conflict);
    if (existing === undefined || (conflict.reinstated_seq ?? 0) >= (existing.reinstated_seq ?? 0)) {
      newest.set(conflict.id, conflict);
      keep.push(conflict);
    }
  }
  await store.putConflicts(keep);
  return fresh;
}

/** The set size the server takes, from its `change-set-too-large` answer. */
function serverCap(rejected: SyncRejected, size: number): number {
  const cap = rejected.maxChanges;
  if (cap === null || cap <= 0 || cap >= size) throw rejected;
  return cap;
}

/**
 * How many leading changes of a refused set the server already holds, or rethrow. A
 * `sequence-gap` naming a sequence beyond the first one sent says the server holds the earlier
 * ones: re-sending exactly those gets them acknowledged as duplicates with their restamps,
 * and the push carries on. Every other refusal needs a person or a fix and is thrown: a gap
 * below the first pending change means the server lost acknowledged changes, a reused
 * sequence means two installations share one device id.
 */
function storedPrefix(rejected: SyncRejected, first: number, size: number): number {
  const expected = rejected.expectedSeq;
  if (rejected.code === "sequence-gap" && expected !== null && first < expected && expected < first + size) return expected - first;
  throw rejected;
}

