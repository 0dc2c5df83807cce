/**
 * The Dexie adapter: every create, update and delete the app makes through Dexie on a synced
 * table becomes a recorded change, with no change to the app's call sites, and what other
 * devices wrote appears in the app's tables.
 *
 * It is a DBCore middleware. Every read-write transaction that touches a synced table is
 * widened to the sync stores, and the middleware records the change inside it: the app's row
 * and its outbox entry commit together or not at all. Writes the sync engine makes itself
 * (merged records shown in the app's tables) are recognised by their transaction and not
 * recorded again.
 *
 * Dexie builds its middleware stack when the database opens, so {@link connectDexie} must be
 * called before anything opens it.
 */

import type { DBCore, DBCoreMutateRequest, DBCoreMutateResponse, DBCoreTable, DBCoreTransaction, Dexie, Middleware } from "dexie";

import { InvalidChange } from "./edits.js";
import { canonicalUuid, randomId, stableId } from "./ids.js";
import { isArchived, sameValue, valuesOf } from "./merge.js";
import { recordChange, viewState, type LocalEdit } from "./outbox.js";
import { TABLES, type FieldSpec, type TableName } from "./schema.js";
import { SYNC_STORE_NAMES, SyncStore, recordKey, type LocalKey } from "./store.js";
import { SyncClient, engineTransactions, type SyncClientOptions, type ViewSink, type ViewUpdate } from "./sync.js";
import type { Fields, Scalar } from "./wire.js";

/** A row of an app table, as Dexie stores it. */
export type AppRow = Record<string, unknown>;

/** How one property of an app row maps to a protocol field. */
export interface FieldMapping {
  /** The protocol field (§3). */
  readonly field: string;
  /** The app's value to the wire value; `undefined` writes nothing. Applied before the
   * generic conversion by field type (epoch ms to timestamps, legacy ids to UUIDs, …). */
  readonly toWire?: (value: unknown, row: AppRow) => unknown;
  /** The wire value to what the app stores. */
  readonly fromWire?: (value: Scalar) => unknown;
}

/** How one app table maps to a protocol table. */
export interface TableMapping {
  readonly table: TableName;
  /** App property to protocol field; properties not listed stay on the device. */
  readonly fields: Readonly<Record<string, string | FieldMapping>>;
  /** A soft-delete flag (`isDeleted`): true archives the record, false restores it. Without
   * one, deleting the row archives the record and an archived record's row is deleted. */
  readonly archivedFlag?: string;
  /** The record id of a row, when it is not derived from the primary key (§3.12 settings). */
  readonly recordId?: (row: AppRow, clubId: string | null) => string;
  /** The primary key of the row for a record this device does not have yet. */
  readonly localKey?: (id: string, values: Readonly<Record<string, Scalar>>) => unknown;
}

/** Options of {@link connectDexie}: the client's, plus which app tables sync. */
export interface DexieSyncOptions extends Omit<SyncClientOptions, "db"> {
  /** App table name to its mapping. */
  readonly tables: Readonly<Record<string, TableMapping>>;
}

// Which protocol table a UUID field points to, so legacy ids map to the same record ids the
// importer gives them (uuid5 over the club and "<table>:<old id>").
const REFERENCES: Readonly<Record<string, TableName>> = {
  match_id: "matches",
  season_id: "seasons",
  team_id: "teams",
  home_team_id: "teams",
  away_team_id: "teams",
  current_team: "teams",
  player_id: "players",
  related_event_id: "events",
};

const MIDDLEWARE_NAME = "TouchlineSync";
// Below Dexie's hooks (level 2), so an app's own `creating` hooks have filled the row in, and
// below its observability layer (0): that layer reads Dexie's zone, which the awaits here
// leave. Live queries still see the app's write itself, which passes through that layer.
const MIDDLEWARE_LEVEL = -0.5;

/**
 * Attach sync to the app's Dexie database and open it: writes to `options.tables` are
 * recorded from now on, and merged records are shown in them. Call it before the database is
 * opened; its schema must declare {@link SYNC_STORES} beside the app's stores.
 */
export async function connectDexie(db: Dexie, options: DexieSyncOptions): Promise<SyncClient> {
  if (db.isOpen()) {
    throw new Error("connectDexie() must run before the database opens: Dexie builds its middleware when it opens");
  }
  const adapter = new DexieAdapter(options.tables, options.now ?? Date.now);
  db.use(adapter.middleware());
  const client = await SyncClient.open({ ...options, db });
  adapter.attach(client);
  client.setViewSink(adapter);
  return client;
}

class DexieAdapter implements ViewSink {
  readonly tables: readonly string[];
  readonly #mappings: ReadonlyMap<string, TableMapping>;
  readonly #byProtocolTable: ReadonlyMap<TableName, [string, TableMapping]>;
  readonly #now: () => number;
  #client: SyncClient | null = null;

  constructor(mappings: Readonly<Record<string, TableMapping>>, now: () => number) {
    this.#mappings = new Map(Object.entries(mappings));
    this.tables = [...this.#mappings.keys()];
    this.#byProtocolTable = new Map([...this.#mappings].map(([name, mapping]) => [mapping.table, [name, mapping]]));
    this.#now = now;
  }

  attach(client: SyncClient): void {
    this.#client = client;
  }

  middleware(): Middleware<DBCore> {
    const synced = new Set(this.tables);
    return {
      stack: "dbcore",
      name: MIDDLEWARE_NAME,
      level: MIDDLEWARE_LEVEL,
      create: (down) => ({
        ...down,
        transaction: (stores, mode, options) => {
          const widened = mode === "readwrite" && stores.some((name) => synced.has(name)) ? [...new Set([...stores, ...SYNC_STORE_NAMES])] : stores;
          return down.transaction(widened, mode, options);
        },
        table: (name) => {
          const table = down.table(name);
          const mapping = this.#mappings.get(name);
          if (mapping === undefined) return table;
          return {
            ...table,
            mutate: (request: DBCoreMutateRequest) =>
              engineTransactions.has(request.trans) ? table.mutate(request) : this.#recordMutation(down, table, mapping, request),
          };
        },
      }),
    };
  }

  /** Apply an app write and record what it changed, in the app's transaction. */
  async #recordMutation(down: DBCore, table: DBCoreTable, mapping: TableMapping, request: DBCoreMutateRequest): Promise<DBCoreMutateResponse> {
    const trans = request.trans;
    const primaryKey = table.schema.primaryKey;
    let keys: unknown[];
    let rows: readonly AppRow[] | null = null;
    if (request.type === "add" || request.type === "put") {
      rows = request.values as AppRow[];
      keys = request.keys ?? rows.map((row) => primaryKey.extractKey?.(row));
    } else if (request.type === "delete") {
      keys = [...request.keys];
    } else {
      const found = await table.query({ trans, values: false, query: { index: primaryKey, range: request.range } });
      keys = found.result;
    }
    const known = keys.map((key, index) => ({ key, index })).filter((entry) => entry.key !== undefined);
    const fetched = known.length > 0 ? await table.getMany({ trans, keys: known.map((entry) => entry.key) }) : [];
    const before = new Map(known.map((entry, i) => [entry.index, fetched[i] as AppRow | undefined]));
    const result = await table.mutate(request);
    const finalKeys = result.results ?? keys;
    const store = new SyncStore(down, trans);
    let recorded = 0;
    for (let index = 0; index < finalKeys.length; index += 1) {
      if (Object.hasOwn(result.failures, index)) continue;
      const after = rows === null ? null : (rows[index] ?? null);
      recorded += await this.#record(store, mapping, finalKeys[index], before.get(index) ?? null, after);
    }
    if (recorded > 0) this.#whenCommitted(trans, () => void this.#client?.noteQueued());
    return result;
  }

  /** Record the changes one row's write makes; returns how many were recorded. */
  async #record(store: SyncStore, mapping: TableMapping, localKey: unknown, before: AppRow | null, after: AppRow | null): Promise<number> {
    let device = await store.deviceState();
    if (device === undefined) {
      // A write that comes before the client opened: the device starts here.
      device = { deviceId: randomId(), nextSeq: 1, clock: "000000000000000-00000", integrated: {}, cursor: 0, matchCursors: {}, liveSeq: {}, lastSyncedAt: null };
      await store.putDeviceState(device);
    }
    const clubId = (await store.session())?.clubId ?? null;
    const aliases: LocalKey[] = [];
    let id = "?";
    try {
      const row = after ?? before;
      if (row === null) return 0;
      id = this.#recordIdOf(mapping, row, localKey, clubId, aliases);
      const current = await viewState(store, device.deviceId, mapping.table, id);
      const edits = diff(mapping, id, current === null ? null : { values: valuesOf(current), archived: isArchived(current) }, before, after, (field, value) =>
        this.#toWire(mapping, field, value, clubId, aliases),
      );
      for (const edit of edits) await recordChange(store, this.#now, edit);
      await store.putLocalKeys(aliases);
      return edits.length;
    } catch (error) {
      if (!(error instanceof InvalidChange)) throw error;
      // The app's write stands; only the sync of it is refused, and the app is told.
      this.#client?.reportRefused(mapping.table, id, error);
      return 0;
    }
  }

  #recordIdOf(mapping: TableMapping, row: AppRow, localKey: unknown, clubId: string | null, aliases: LocalKey[]): string {
    if (mapping.recordId !== undefined) {
      if (clubId === null) throw new InvalidChange(`${mapping.table}: log in before editing it (its id derives from the club)`);
      return mapping.recordId(row, clubId);
    }
    return this.#idFor(mapping.table, localKey, clubId, aliases);
  }

  /** A record id for a local key: the key itself when it is a UUID, else its stable uuid5. */
  #idFor(table: TableName, localKey: unknown, clubId: string | null, aliases: LocalKey[]): string {
    if (typeof localKey !== "string" && typeof localKey !== "number") throw new InvalidChange(`${table}: unsupported key ${String(localKey)}`);
    const text = String(localKey);
    const canonical = canonicalUuid(text);
    if (canonical !== null && /^[0-9a-fA-F-]{36}$/.test(text.trim())) return canonical;
    if (clubId === null) throw new InvalidChange(`${table} ${text}: a non-UUID id needs the club; log in first`);
    const id = stableId(clubId, table, text);
    aliases.push({ key: recordKey(table, id), localKey });
    return id;
  }

  #toWire(mapping: TableMapping, appField: string, raw: unknown, clubId: string | null, aliases: LocalKey[]): { field: string; value: Scalar } | undefined {
    const entry = mapping.fields[appField];
    if (entry === undefined) return undefined;
    const { field, toWire } = typeof entry === "string" ? { field: entry, toWire: undefined } : entry;
    const spec = TABLES[mapping.table].fields[field];
    if (spec === undefined) throw new InvalidChange(`${mapping.table}: no field ${field}`);
    const value = toWire === undefined ? raw : toWire(raw, {});
    if (value === undefined) return undefined;
    return { field, value: this.#coerce(spec, field, value, clubId, aliases) };
  }

  /** The generic conversions by field type; anything else is left for the checks to refuse. */
  #coerce(spec: FieldSpec, field: string, value: unknown, clubId: string | null, aliases: LocalKey[]): Scalar {
    if (value === null) return null;
    switch (spec.type) {
      case "uuid": {
        const target = REFERENCES[field];
        return target === undefined ? (value as Scalar) : this.#idFor(target, value, clubId, aliases);
      }
      case "timestamp":
        if (typeof value === "number" || value instanceof Date) return new Date(value).toISOString();
        break;
      case "date":
        if (typeof value === "number" || value instanceof Date) return new Date(value).toISOString().slice(0, 10);
        break;
      case "text":
        if (typeof value === "object") return JSON.stringify(value);
        if (typeof value === "number" || typeof value === "boolean") return String(value);
        break;
      case "int":
      case "float":
        // NaN is how apps store "no value" in a number field.
        if (typeof value === "number" && Number.isNaN(value)) return null;
        break;
      default:
        break;
    }
    return value as Scalar;
  }

  #whenCommitted(trans: DBCoreTransaction, callback: () => void): void {
    const target = trans as unknown as Partial<EventTarget>;
    if (typeof target.addEventListener === "function") target.addEventListener("complete", callback, { once: true });
    else queueMicrotask(callback);
  }

  // -- ViewSink: the server's state into the app's tables ---------------------------------

  async write(core: DBCore, trans: DBCoreTransaction, updates: readonly ViewUpdate[]): Promise<void> {
    const store = new SyncStore(core, trans);
    const relevant = updates.filter((update) => update.state !== null && this.#byProtocolTable.has(update.table));
    if (relevant.length === 0) return;
    // Local keys of the records and of every id they point to, for rows of older app versions.
    const wanted = new Set<string>();
    for (const update of relevant) {
      wanted.add(recordKey(update.table, update.id));
      for (const [field, version] of Object.entries(update.state?.fields ?? {})) {
        const target = REFERENCES[field];
        if (target !== undefined && typeof version.value === "string") wanted.add(recordKey(target, version.value));
      }
    }
    const localKeys = await store.localKeys([...wanted]);
    const byTable = new Map<TableName, ViewUpdate[]>();
    for (const update of relevant) byTable.set(update.table, [...(byTable.get(update.table) ?? []), update]);
    for (const [protocolTable, group] of byTable) {
      const [appTable, mapping] = this.#byProtocolTable.get(protocolTable) ?? [];
      if (appTable === undefined || mapping === undefined) continue;
      await this.#writeTable(core.table(appTable), trans, mapping, group, localKeys);
    }
  }

  async #writeTable(table: DBCoreTable, trans: DBCoreTransaction, mapping: TableMapping, updates: readonly ViewUpdate[], localKeys: Map<string, unknown>): Promise<void> {
    const keyPath = table.schema.primaryKey.keyPath;
    const keys = updates.map((update) => {
      const values = valuesOf(update.state ?? { fields: {}, archived: null });
      return localKeys.get(recordKey(update.table, update.id)) ?? mapping.localKey?.(update.id, values) ?? update.id;
    });
    const existing = (await table.getMany({ trans, keys })) as Array<AppRow | undefined>;
    const puts: AppRow[] = [];
    const putKeys: unknown[] = [];
    const deletes: unknown[] = [];
    updates.forEach((update, index) => {
      const state = update.state;
      if (state === null) return;
      const key = keys[index];
      const archived = isArchived(state);
      if (archived && mapping.archivedFlag === undefined) {
        if (existing[index] !== undefined) deletes.push(key);
        return;
      }
      const row: AppRow = { ...(existing[index] ?? {}) };
      for (const [appField, entry] of Object.entries(mapping.fields)) {
        const { field, fromWire } = typeof entry === "string" ? { field: entry, fromWire: undefined } : entry;
        const version = Object.hasOwn(state.fields, field) ? state.fields[field] : undefined;
        if (version === undefined) continue;
        let value: unknown = version.value;
        const target = REFERENCES[field];
        if (target !== undefined && typeof value === "string") value = localKeys.get(recordKey(target, value)) ?? value;
        row[appField] = fromWire === undefined ? value : fromWire(version.value);
      }
      if (mapping.archivedFlag !== undefined) row[mapping.archivedFlag] = archived;
      if (typeof keyPath === "string") row[keyPath] = key;
      puts.push(row);
      putKeys.push(key);
    });
    if (puts.length > 0) {
      const request = typeof keyPath === "string" ? { trans, type: "put" as const, values: puts } : { trans, type: "put" as const, values: puts, keys: putKeys };
      const result = await table.mutate(request);
      if (result.numFailures > 0) throw result.failures[0] ?? new Error(`writing ${table.name} failed`);
    }
    if (deletes.length > 0) await table.mutate({ trans, type: "delete", keys: deletes });
  }
}

/**
 * The edits one row's write makes against what the device shows (`current`): the fields
 * whose value changed (all of them for a record the device did not know), then a delete or
 * restore when the archived state changed.
 */
function diff(
  mapping: TableMapping,
  id: string,
  current: { values: Readonly<Record<string, Scalar>>; archived: boolean } | null,
  before: AppRow | null,
  after: AppRow | null,
  toWire: (appField: string, value: unknown) => { field: string; value: Scalar } | undefined,
): LocalEdit[] {
  const edits: LocalEdit[] = [];
  const table = mapping.table;
  if (after === null) {
    if (current !== null && !current.archived) edits.push({ table, id, op: "delete", fields: {} });
    return edits;
  }
  const wire = (row: AppRow | null): Map<string, Scalar> => {
    const out = new Map<string, Scalar>();
    if (row === null) return out;
    for (const appField of Object.keys(mapping.fields)) {
      if (!Object.hasOwn(row, appField) || row[appField] === undefined) continue;
      const mapped = toWire(appField, row[appField]);
      if (mapped !== undefined) out.set(mapped.field, mapped.value);
    }
    return out;
  };
  const next = wire(after);
  const fields: Record<string, Scalar> = {};
  if (current === null) {
    for (const [field, value] of next) if (value !== null) fields[field] = value;
  } else {
    for (const [field, value] of next) {
      const shown = Object.hasOwn(current.values, field) ? current.values[field] : undefined;
      if (shown === undefined ? value !== null : !sameValue(shown, value)) fields[field] = value;
    }
    // A property the app removed clears the field.
    for (const field of wire(before).keys()) {
      if (!next.has(field) && (current.values[field] ?? null) !== null) fields[field] = null;
    }
  }
  const wasArchived = current?.archived ?? false;
  const nowArchived = mapping.archivedFlag === undefined ? false : after[mapping.archivedFlag] === true;
  if (Object.keys(fields).length > 0) edits.push({ table, id, op: "upsert", fields: fields as Fields });
  if (nowArchived !== wasArchived && (current !== null || edits.length > 0)) {
    edits.push({ table, id, op: nowArchived ? "delete" : "restore", fields: {} });
  }
  return edits;
}
