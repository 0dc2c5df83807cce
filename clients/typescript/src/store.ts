/**
 * The client's durable state in IndexedDB, through Dexie's low-level DBCore API.
 *
 * Everything the sync needs lives in four object stores (see {@link SYNC_STORES}): the device
 * state (device id, next sequence, clock, version vector, cursors), the outbox of changes not
 * yet acknowledged, the confirmed replica (every record's registers, §7.8) and the conflicts.
 * Declaring them in the app's own Dexie database lets a local edit and its outbox entry commit
 * in one IndexedDB transaction: a tab killed at any moment keeps both or neither.
 *
 * A `SyncStore` works inside one transaction, given by its DBCore handle; it never opens one.
 */

import type { DBCore, DBCoreRangeType, DBCoreTable, DBCoreTransaction } from "dexie";

import type { RecordState } from "./merge.js";
import type { TableName } from "./schema.js";
import type { VersionVector } from "./versionVector.js";
import type { ConflictRecord, Fields, Op } from "./wire.js";

/** The object stores of the sync state, to add to the app's Dexie schema (`db.version(n).stores`). */
export const SYNC_STORES = {
  touchlineState: "key",
  touchlineOutbox: "seq, key",
  touchlineRecords: "key, table",
  touchlineConflicts: "id, server_seq",
  touchlineKeys: "key",
} as const;

/** The names of the sync state's object stores. */
export const SYNC_STORE_NAMES = Object.keys(SYNC_STORES) as Array<keyof typeof SYNC_STORES>;

/** What a device remembers between runs, besides the outbox, records and conflicts. */
export interface DeviceState {
  readonly deviceId: string;
  /** The sequence the next local change gets; dense, never reused (§2.7). */
  readonly nextSeq: number;
  /** The clock's last HLC in wire form, so it never goes back across restarts (§4.1). */
  readonly clock: string;
  /** Other devices' changes integrated from unscoped pulls (§5.4, §6.4). */
  readonly integrated: VersionVector;
  /** The club-wide pull cursor (§6.3). */
  readonly cursor: number;
  /** Match-scoped pull cursors, by match id. */
  readonly matchCursors: Readonly<Record<string, number>>;
  /** The `seq` of the last live message processed, by match id (§17.3). */
  readonly liveSeq: Readonly<Record<string, number>>;
  /** Epoch ms of the last sync round that reached the server, or null. */
  readonly lastSyncedAt: number | null;
}

/** The device's login, kept with the sync state so a service worker can push too (§13.2). */
export interface StoredSession {
  readonly accessToken: string;
  readonly refreshToken: string;
  /** Epoch ms after which the access token is expired. */
  readonly expiresAt: number;
  readonly clubId: string;
  readonly userId: string;
  readonly deviceId: string;
  readonly role: string;
}

/** A change waiting for the server's acknowledgement, with what its author had integrated. */
export interface PendingChange {
  readonly seq: number;
  readonly hlc: string;
  readonly table: TableName;
  readonly id: string;
  readonly op: Op;
  readonly fields: Fields;
  /** Other devices' sequences integrated when the change was made: the push's `seen`. */
  readonly seen: VersionVector;
  /** `table/id`, indexed, to find a record's pending changes. */
  readonly key: string;
}

/** One record of the confirmed replica. */
export interface StoredRecord {
  readonly key: string;
  readonly table: TableName;
  readonly id: string;
  readonly state: RecordState;
}

/** A local primary key that is not the record's id (a row of an older app version). */
export interface LocalKey {
  /** `table/id` of the record. */
  readonly key: string;
  readonly localKey: unknown;
}

/** The store key of a record. */
export function recordKey(table: string, id: string): string {
  return `${table}/${id}`;
}

const EQUAL = 1 as DBCoreRangeType;
const RANGE = 2 as DBCoreRangeType;
const STATE_KEY = "device";
const SESSION_KEY = "session";

/** The sync state inside one IndexedDB transaction. */
export class SyncStore {
  readonly #trans: DBCoreTransaction;
  readonly #state: DBCoreTable;
  readonly #outbox: DBCoreTable;
  readonly #records: DBCoreTable;
  readonly #conflicts: DBCoreTable;
  readonly #keys: DBCoreTable;

  constructor(core: DBCore, trans: DBCoreTransaction) {
    this.#trans = trans;
    this.#state = core.table("touchlineState");
    this.#outbox = core.table("touchlineOutbox");
    this.#records = core.table("touchlineRecords");
    this.#conflicts = core.table("touchlineConflicts");
    this.#keys = core.table("touchlineKeys");
  }

  async deviceState(): Promise<DeviceState | undefined> {
    const row = (await this.#state.get({ trans: this.#trans, key: STATE_KEY })) as { value: DeviceState } | undefined;
    return row?.value;
  }

  async putDeviceState(value: DeviceState): Promise<void> {
    await this.#put(this.#state, [{ key: STATE_KEY, value }]);
  }

  async session(): Promise<StoredSession | undefined> {
    const row = (await this.#state.get({ trans: this.#trans, key: SESSION_KEY })) as { value: StoredSession } | undefined;
    return row?.value;
  }

  async putSession(value: StoredSession | null): Promise<void> {
    if (value === null) await this.#delete(this.#state, [SESSION_KEY]);
    else await this.#put(this.#state, [{ key: SESSION_KEY, value }]);
  }

  /** The pending changes in sequence order, at most `limit` of them. */
  async pending(limit?: number): Promise<PendingChange[]> {
    const query = { index: this.#outbox.schema.primaryKey, range: allNumbers() };
    const request = limit === undefined ? { trans: this.#trans, values: true, query } : { trans: this.#trans, values: true, query, limit };
    return (await this.#outbox.query(request)).result as PendingChange[];
  }

  async pendingCount(): Promise<number> {
    return this.#outbox.count({ trans: this.#trans, query: { index: this.#outbox.schema.primaryKey, range: allNumbers() } });
  }

  /** The pending changes of one record, in sequence order. */
  async pendingFor(key: string): Promise<PendingChange[]> {
    const index = this.#outbox.schema.getIndexByKeyPath("key");
    if (index === undefined) throw new Error("touchlineOutbox has no 'key' index; declare SYNC_STORES");
    const found = await this.#outbox.query({ trans: this.#trans, values: true, query: { index, range: { type: EQUAL, lower: key, upper: key } } });
    return (found.result as PendingChange[]).sort((a, b) => a.seq - b.seq);
  }

  async addPending(change: PendingChange): Promise<void> {
    const result = await this.#outbox.mutate({ trans: this.#trans, type: "add", values: [change] });
    if (result.numFailures > 0) throw result.failures[0] ?? new Error("outbox write failed");
  }

  async removePending(seqs: readonly number[]): Promise<void> {
    if (seqs.length > 0) await this.#delete(this.#outbox, [...seqs]);
  }

  async record(key: string): Promise<StoredRecord | undefined> {
    return (await this.#records.get({ trans: this.#trans, key })) as StoredRecord | undefined;
  }

  async records(keys: readonly string[]): Promise<Array<StoredRecord | undefined>> {
    return (await this.#records.getMany({ trans: this.#trans, keys: [...keys] })) as Array<StoredRecord | undefined>;
  }

  async putRecords(records: readonly StoredRecord[]): Promise<void> {
    if (records.length > 0) await this.#put(this.#records, records);
  }

  async conflicts(): Promise<ConflictRecord[]> {
    const query = { index: this.#conflicts.schema.primaryKey, range: { type: RANGE, lower: "", upper: "\uffff" } };
    return (await this.#conflicts.query({ trans: this.#trans, values: true, query })).result as ConflictRecord[];
  }

  async conflictsById(ids: readonly string[]): Promise<Array<ConflictRecord | undefined>> {
    return (await this.#conflicts.getMany({ trans: this.#trans, keys: [...ids] })) as Array<ConflictRecord | undefined>;
  }

  async putConflicts(conflicts: readonly ConflictRecord[]): Promise<void> {
    if (conflicts.length > 0) await this.#put(this.#conflicts, conflicts);
  }

  /** The local primary keys of records whose local key is not their id, by record key. */
  async localKeys(keys: readonly string[]): Promise<Map<string, unknown>> {
    const rows = (await this.#keys.getMany({ trans: this.#trans, keys: [...keys] })) as Array<LocalKey | undefined>;
    return new Map(rows.filter((row): row is LocalKey => row !== undefined).map((row) => [row.key, row.localKey]));
  }

  async putLocalKeys(rows: readonly LocalKey[]): Promise<void> {
    if (rows.length > 0) await this.#put(this.#keys, rows);
  }

  async #put(table: DBCoreTable, values: readonly unknown[]): Promise<void> {
    const result = await table.mutate({ trans: this.#trans, type: "put", values });
    if (result.numFailures > 0) throw result.failures[0] ?? new Error(`write to ${table.name} failed`);
  }

  async #delete(table: DBCoreTable, keys: unknown[]): Promise<void> {
    const result = await table.mutate({ trans: this.#trans, type: "delete", keys });
    if (result.numFailures > 0) throw result.failures[0] ?? new Error(`delete from ${table.name} failed`);
  }
}

function allNumbers() {
  return { type: RANGE, lower: -Infinity, upper: Infinity };
}
