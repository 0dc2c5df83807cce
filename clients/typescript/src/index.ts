/**
 * Touchline's sync client for the coaches' PWA: an IndexedDB outbox, push and pull with
 * retries, the merge rules of PROTOCOL.md, live updates over WebSocket, a Dexie adapter and
 * Background Sync.
 */

export { connectDexie, type AppRow, type DexieSyncOptions, type FieldMapping, type TableMapping } from "./dexieAdapter.js";
export { InvalidChange, checkEdit } from "./edits.js";
export { LoginRequired, SyncError, SyncRejected, SyncUnavailable } from "./errors.js";
export { grassrootsTables, PLACEHOLDER_PLAYERS } from "./grassroots.js";
export { HybridClock, MAX_LOGICAL, ZERO_HLC, compareHlc, encodeHlc, hlc, isHlcText, parseHlc, stamp, successor, type Hlc, type StampContext } from "./hlc.js";
export { appSettingId, canonicalUuid, lineupId, randomId, stableId, uuid5 } from "./ids.js";
export { LiveMatch, type LiveEvents, type LiveOptions, type LiveState, type PresenceDevice, type WebSocketConstructor, type WebSocketLike } from "./live.js";
export { DELETED, EMPTY_STATE, applyWrite, beats, conflictsOf, isArchived, sameValue, valuesOf, type FieldConflict, type FieldVersion, type RecordState, type Write } from "./merge.js";
export { nextRun, type LocalEdit } from "./outbox.js";
export { DEFAULT_RETRY, backoffDelay, type RetryPolicy } from "./retry.js";
export { TABLES, TABLE_NAMES, checkValue, isTableName, type FieldSpec, type FieldType, type TableName, type TableSpec } from "./schema.js";
export { SYNC_TAG, handleBackgroundSync, scheduleSync, type BackgroundSyncOptions, type ScheduleOptions } from "./serviceWorker.js";
export { Session, type SessionStore, type SignupRequest } from "./session.js";
export { SYNC_STORES, type DeviceState, type PendingChange, type StoredSession } from "./store.js";
export { SyncClient, type SyncClientOptions, type SyncEvents, type SyncResult, type SyncStatus, type ViewSink, type ViewUpdate } from "./sync.js";
export { HttpTransport, type FetchFunction, type SyncTransport } from "./transport.js";
export { advance, compareVectors, covers, mergeVectors, type Causality, type VersionVector } from "./versionVector.js";
export type * from "./wire.js";
