/**
 * The outbox: own changes the server has not acknowledged yet (PROTOCOL.md §5.5, §7.8, §12).
 *
 * Invariants: pending sequences are consecutive and start right after the last acknowledged
 * one; a change is never edited once it has a sequence; it leaves the outbox only after a
 * `200` covering it. Each change keeps the version vector of the moment it was made, because
 * a push states one `seen` for the whole set.
 */

import { checkEdit } from "./edits.js";
import { HybridClock, encodeHlc, parseHlc } from "./hlc.js";
import { applyWrite, type RecordState } from "./merge.js";
import { recordKey, type PendingChange, type SyncStore } from "./store.js";
import type { TableName } from "./schema.js";
import { sameVector } from "./versionVector.js";
import type { Fields, Op, PushRequest } from "./wire.js";

/** A local edit, before it is numbered and stamped. */
export interface LocalEdit {
  readonly table: TableName;
  readonly id: string;
  readonly op: Op;
  readonly fields: Fields;
}

/**
 * The record as this device sees it: the confirmed registers with its own pending changes on
 * top (§7.8), or `null` when neither knows it.
 */
export async function viewState(store: SyncStore, deviceId: string, table: string, id: string): Promise<RecordState | null> {
  const key = recordKey(table, id);
  const [confirmed, pending] = await Promise.all([store.record(key), store.pendingFor(key)]);
  return overlay(confirmed?.state ?? null, pending, deviceId);
}

/** `state` with pending changes merged on top, using their sent HLCs. */
export function overlay(state: RecordState | null, pending: readonly PendingChange[], deviceId: string): RecordState | null {
  let view = state;
  for (const change of pending) {
    view = applyWrite(view, { device_id: deviceId, seq: change.seq, hlc: change.hlc, op: change.op, fields: change.fields });
  }
  return view;
}

/**
 * Check, number, stamp and queue a local change, inside the caller's transaction, so the
 * change, the next sequence and the clock are stored together or not at all (§12 item 2).
 * Throws {@link InvalidChange} (recording nothing) for what the server would refuse.
 */
export async function recordChange(store: SyncStore, nowMs: () => number, edit: LocalEdit): Promise<PendingChange> {
  const device = await store.deviceState();
  if (device === undefined) throw new Error("the sync state is not initialised; open the client first");
  const current = await viewState(store, device.deviceId, edit.table, edit.id);
  checkEdit(edit.table, edit.id, edit.op, edit.fields, current);
  const clock = new HybridClock(nowMs, parseHlc(device.clock));
  const stamped = encodeHlc(clock.now());
  const change: PendingChange = {
    seq: device.nextSeq,
    hlc: stamped,
    table: edit.table,
    id: edit.id,
    op: edit.op,
    fields: edit.op === "upsert" ? { ...edit.fields } : {},
    seen: device.integrated,
    key: recordKey(edit.table, edit.id),
  };
  await store.addPending(change);
  await store.putDeviceState({ ...device, nextSeq: device.nextSeq + 1, clock: stamped });
  return change;
}

/**
 * The next change set: the outbox's leading changes that share one `seen`, at most
 * `maxChanges`. One run per set keeps `seen` exact for every change in it (§5.4).
 */
export function nextRun(pending: readonly PendingChange[], maxChanges: number): PendingChange[] {
  const run: PendingChange[] = [];
  for (const change of pending) {
    const first = run[0];
    if (run.length === maxChanges || (first !== undefined && !sameVector(change.seen, first.seen))) break;
    run.push(change);
  }
  return run;
}

/** The push request for a run of pending changes. */
export function pushRequest(deviceId: string, run: readonly PendingChange[]): PushRequest {
  const first = run[0];
  if (first === undefined) throw new RangeError("a change set holds at least one change");
  return {
    device_id: deviceId,
    seen: first.seen,
    // Exactly the members the server accepts: a retry must be the same change to the letter.
    changes: run.map(({ seq, hlc, table, id, op, fields }) => ({ seq, hlc, table, id, op, fields })),
  };
}
