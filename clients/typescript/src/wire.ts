/**
 * Wire types of the sync protocol (PROTOCOL.md §5, §6, §8, §17). Requests carry exactly the
 * members listed here (the server refuses unknown ones); responses are read leniently, so the
 * server may add members at any time.
 */

import type { TableName } from "./schema.js";

/** A field value: a JSON scalar (§2.4). Objects and arrays are never field values. */
export type Scalar = string | number | boolean | null;

/** The fields an upsert writes, by name. */
export type Fields = Readonly<Record<string, Scalar>>;

/** What a change does to its record (§5.1, §7.3). */
export type Op = "upsert" | "delete" | "restore";

/** One change a device made to one record (§5.1). */
export interface Change {
  /** Dense per device: the device's first change is 1, the next 2, and so on. */
  readonly seq: number;
  /** The device's HLC when it made the change, in wire form; never re-stamped. */
  readonly hlc: string;
  readonly table: TableName;
  /** The record's id, a lowercase canonical UUID. */
  readonly id: string;
  readonly op: Op;
  /** For `upsert`: the fields written; empty for `delete` and `restore`. */
  readonly fields: Fields;
}

/** A change set: consecutive changes of one device, applied atomically (§5.1). */
export interface PushRequest {
  readonly device_id: string;
  readonly changes: readonly Change[];
  /** What the device had integrated when it made the earliest change of the set (§5.4). */
  readonly seen: Readonly<Record<string, number>>;
}

/** A change whose effective HLC differs from the one the device sent (§4.3). */
export interface Restamp {
  readonly seq: number;
  readonly hlc: string;
}

/** One side of a conflict: a value and the write that put it there (§8.3). */
export interface ConflictSide {
  readonly value: Scalar;
  readonly device_id: string;
  readonly seq: number;
  readonly hlc: string;
}

/** Two values written to one field without either writer seeing the other (§8.3). */
export interface ConflictRecord {
  readonly id: string;
  /** The server sequence of the change whose arrival revealed the conflict. */
  readonly server_seq: number;
  readonly table: TableName;
  readonly record_id: string;
  readonly match_id: string | null;
  /** The field, or `_deleted` for the archived flag. */
  readonly field: string;
  readonly winner: ConflictSide;
  readonly loser: ConflictSide;
  readonly detected_at: string;
  /** Set once a coach reinstated the losing value: the server sequence of that change. */
  readonly reinstated_seq: number | null;
  readonly reinstated_by?: string | null;
}

/** The answer to a push (§5.2). */
export interface PushResponse {
  readonly device_id: string;
  /** Every change of this device up to this sequence is durably stored. */
  readonly acked_seq: number;
  readonly applied: number;
  readonly duplicates: number;
  /** The club log's last server sequence once this push was stored (§5.7). */
  readonly cursor: number;
  readonly restamped: readonly Restamp[];
  readonly conflicts: readonly ConflictRecord[];
  readonly server_time_ms: number;
}

/** A pull request (§6.1). */
export interface PullRequest {
  readonly device_id: string;
  readonly cursor: number;
  readonly match_id: string | null;
  readonly limit: number;
  readonly include_own: boolean;
}

/** A change as the server stored it, with its place in the club log (§6.2). */
export interface LoggedChange {
  readonly server_seq: number;
  readonly device_id: string;
  readonly seq: number;
  /** The effective HLC: every replica merges on this value. */
  readonly hlc: string;
  readonly table: TableName;
  readonly id: string;
  readonly op: Op;
  readonly fields: Fields;
}

/** One page of a pull (§6.2). */
export interface PullResponse {
  readonly changes: readonly LoggedChange[];
  readonly conflicts: readonly ConflictRecord[];
  /** Pass back as `cursor` to continue; everything up to it has been delivered. */
  readonly cursor: number;
  readonly has_more: boolean;
  readonly server_time_ms: number;
}

/** The answer to a reinstatement (§8.5). */
export interface ReinstateResponse {
  readonly conflict: ConflictRecord;
  readonly change: LoggedChange;
  readonly cursor: number;
}

/** The token pair and who it belongs to (§13.2). */
export interface TokenPair {
  readonly access_token: string;
  readonly refresh_token: string;
  readonly token_type: string;
  /** Seconds the access token is valid for. */
  readonly expires_in: number;
  readonly user: { readonly id: string; readonly email: string };
  readonly team: { readonly id: string; readonly name: string } | null;
  readonly club: { readonly id: string; readonly name: string };
  readonly role: "owner" | "coach" | "viewer";
  readonly device_id: string;
}

/** An RFC 9457 problem document, as every error answer carries (§10.1). */
export interface Problem {
  readonly type?: string;
  readonly title?: string;
  readonly status?: number;
  readonly detail?: string;
  readonly [extension: string]: unknown;
}
