/**
 * The merge rules (PROTOCOL.md §7), as plain functions over values.
 *
 * A record is a set of last-writer-wins registers, one per field, plus one for its archived
 * flag. Each register holds the write with the greatest `(hlc, device_id)`: a maximum, so
 * applying the same writes in any order, batching or number of times gives the same state.
 * Because an HLC issued after seeing a write is greater than that write's HLC, a causally
 * later edit always wins; only concurrent writes ever need the tie-break.
 *
 * `delete` writes `true` to the archived register and `restore` writes `false`; neither
 * touches a field, so an edit concurrent with a delete is there when the record is restored.
 */

import { covers, type VersionVector } from "./versionVector.js";
import type { Fields, Op, Scalar } from "./wire.js";

/** The register name of the archived flag, as it appears in conflict records (§8.2). */
export const DELETED = "_deleted";

/** The value of one register and the write that put it there (§7.1). */
export interface FieldVersion {
  readonly value: Scalar;
  /** The effective HLC of the write, in wire form. */
  readonly hlc: string;
  readonly device_id: string;
  readonly seq: number;
}

/** The merged state of one record: its field registers and its archived register. */
export interface RecordState {
  readonly fields: Readonly<Record<string, FieldVersion>>;
  readonly archived: FieldVersion | null;
}

/** A change reduced to what the merge needs, with its effective HLC. */
export interface Write {
  readonly device_id: string;
  readonly seq: number;
  readonly hlc: string;
  readonly op: Op;
  readonly fields: Fields;
}

/** Two different values written to one register by writers that had not seen each other. */
export interface FieldConflict {
  readonly field: string;
  readonly winner: FieldVersion;
  readonly loser: FieldVersion;
}

/** A record nothing was written to yet. */
export const EMPTY_STATE: RecordState = Object.freeze({ fields: Object.freeze({}), archived: null });

/**
 * True when write `a` wins a register over `b` (§7.5): the greater HLC, then the greater
 * device id, both compared as strings by code unit (never with a locale-aware collation).
 */
export function beats(a: FieldVersion, b: FieldVersion | null | undefined): boolean {
  if (b === null || b === undefined) return true;
  if (a.hlc !== b.hlc) return a.hlc > b.hlc;
  return a.device_id > b.device_id;
}

/** The register writes a change makes: one per field of an upsert, or the archived flag. */
export function versionsOf(write: Write): Array<[string, FieldVersion]> {
  const version = (value: Scalar): FieldVersion => ({
    value,
    hlc: write.hlc,
    device_id: write.device_id,
    seq: write.seq,
  });
  if (write.op === "upsert") {
    return Object.entries(write.fields).map(([name, value]) => [name, version(value)]);
  }
  return [[DELETED, version(write.op === "delete")]];
}

function register(state: RecordState, name: string): FieldVersion | null {
  if (name === DELETED) return state.archived;
  return Object.hasOwn(state.fields, name) ? (state.fields[name] ?? null) : null;
}

/**
 * The record after merging `write` (§7.5). Commutative, associative and idempotent. Returns
 * `state` itself when nothing changed, so callers can skip writing it back.
 */
export function applyWrite(state: RecordState | null | undefined, write: Write): RecordState {
  const current = state ?? EMPTY_STATE;
  let fields: Record<string, FieldVersion> | null = null;
  let archived = current.archived;
  for (const [name, incoming] of versionsOf(write)) {
    if (name === DELETED) {
      if (beats(incoming, archived)) archived = incoming;
    } else if (beats(incoming, register(current, name))) {
      fields ??= { ...current.fields };
      fields[name] = incoming;
    }
  }
  if (fields === null && archived === current.archived) return current;
  return { fields: fields ?? current.fields, archived };
}

/**
 * The real conflicts `write` has with `state`, given its author's version vector (§8.1). The
 * server records these; clients read them from push answers and pulls. This function exists
 * so the conformance vectors can check the rule in both languages.
 */
export function conflictsOf(
  state: RecordState | null | undefined,
  write: Write,
  seen: VersionVector,
): FieldConflict[] {
  if (state === null || state === undefined) return [];
  const found: FieldConflict[] = [];
  for (const [name, incoming] of versionsOf(write)) {
    const current = register(state, name);
    if (current === null || current.device_id === write.device_id) continue;
    if (covers(seen, current.device_id, current.seq) || sameValue(current.value, incoming.value)) continue;
    found.push(
      beats(incoming, current)
        ? { field: name, winner: incoming, loser: current }
        : { field: name, winner: current, loser: incoming },
    );
  }
  return found;
}

/**
 * Equality that keeps JSON types apart (§7.7): `1`, `"1"` and `true` differ. JavaScript has
 * one number type, so `1` and `1.0` compare equal here; §2.4 asks every client to write
 * integral floats without a fraction for that reason.
 */
export function sameValue(left: Scalar, right: Scalar): boolean {
  return typeof left === typeof right && left === right;
}

/** True when the record's archived register holds `true`. */
export function isArchived(state: RecordState): boolean {
  return state.archived !== null && state.archived.value === true;
}

/** The current value of every field written so far. */
export function valuesOf(state: RecordState): Record<string, Scalar> {
  const values: Record<string, Scalar> = {};
  for (const [name, version] of Object.entries(state.fields)) values[name] = version.value;
  return values;
}
