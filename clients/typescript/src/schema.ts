/**
 * The syncable tables, their fields, and the rules a field value must satisfy
 * (PROTOCOL.md §2.4, §3). A local edit is checked against these before it enters the outbox:
 * the server refuses a change set as a whole, so one bad change would otherwise block every
 * change queued behind it.
 */

import type { Scalar } from "./wire.js";

/** The tables that sync (§3). */
export const TABLE_NAMES = [
  "teams",
  "players",
  "seasons",
  "matches",
  "events",
  "lineup",
  "match_notes",
  "clock_actions",
  "club_settings",
  "player_teams",
  "default_lineups",
  "app_settings",
] as const;

/** A table of §3. */
export type TableName = (typeof TABLE_NAMES)[number];

export type FieldType = "text" | "int" | "float" | "bool" | "uuid" | "date" | "timestamp" | "choice";

/** The rules of one field. */
export interface FieldSpec {
  readonly type: FieldType;
  readonly minimum?: number;
  readonly maximum?: number;
  readonly choices?: readonly string[];
  /** Present and non-null when the record is created; never cleared later. */
  readonly required?: boolean;
  /** Fixed by the change that creates the record (it places the record in a match). */
  readonly immutable?: boolean;
}

/** The rules of one table. */
export interface TableSpec {
  readonly name: TableName;
  readonly fields: Readonly<Record<string, FieldSpec>>;
  /** The field naming the match a record belongs to; pulls can be scoped by it. */
  readonly matchField?: string;
  /** True for `matches`: the record's own id is the match id. */
  readonly recordIsMatch?: boolean;
}

export const EVENT_KINDS = [
  // The enum of the app's PostgreSQL schema.
  "goal", "assist", "key_pass", "save", "interception", "tackle", "foul", "penalty",
  "free_kick", "ball_out", "own_goal",
  // Used by the app's own code.
  "ball_won", "ball_lost", "corner",
  // Added by later app versions.
  "yellow_card", "red_card", "offside", "shot_on_target", "shot_off_target", "clearance",
  "block", "cross", "header", "formation_change",
  // Substitutions, so that minutes played derive from the log.
  "substitution",
] as const;

export const CLOCK_ACTIONS = [
  "start", "pause", "resume", "end_period", "start_period", "finish", "abandon", "postpone",
] as const;

export const PERIOD_FORMATS = ["half", "quarter"] as const;
export const VIEWER_NAMES = ["first_name_initial", "squad_number"] as const;

/** Text values hold at most this many Unicode code points. */
export const MAX_TEXT = 10_000;

const text = (required = false): FieldSpec => (required ? { type: "text", required } : { type: "text" });
const int = (minimum: number, maximum: number): FieldSpec => ({ type: "int", minimum, maximum });
const choice = (choices: readonly string[], required = false): FieldSpec =>
  required ? { type: "choice", choices, required } : { type: "choice", choices };
const UUID: FieldSpec = { type: "uuid" };
const MATCH: FieldSpec = { type: "uuid", required: true, immutable: true };
const TIMESTAMP: FieldSpec = { type: "timestamp" };
const BOOL: FieldSpec = { type: "bool" };
const DATE: FieldSpec = { type: "date" };
const PITCH: FieldSpec = { type: "float", minimum: 0, maximum: 100 };
const MINUTE: FieldSpec = { type: "float", minimum: 0, maximum: 1000 };

/** Every syncable table by name. */
export const TABLES: Readonly<Record<TableName, TableSpec>> = {
  teams: {
    name: "teams",
    fields: {
      name: text(true),
      short_name: text(),
      is_opponent: BOOL,
      color: text(),
      notes: text(),
      viewer_names: choice(VIEWER_NAMES),
    },
  },
  players: {
    name: "players",
    fields: {
      full_name: text(true),
      squad_number: int(0, 999),
      preferred_pos: text(),
      dob: DATE,
      notes: text(),
      current_team: UUID,
    },
  },
  seasons: {
    name: "seasons",
    fields: { label: text(true), start_date: DATE, end_date: DATE, is_current: BOOL },
  },
  matches: {
    name: "matches",
    recordIsMatch: true,
    fields: {
      season_id: UUID,
      kickoff_ts: TIMESTAMP,
      competition: text(),
      home_team_id: UUID,
      away_team_id: UUID,
      venue: text(),
      duration_mins: int(1, 600),
      period_format: choice(PERIOD_FORMATS),
      our_score: int(0, 999),
      opponent_score: int(0, 999),
      notes: text(),
    },
  },
  events: {
    name: "events",
    matchField: "match_id",
    fields: {
      match_id: MATCH,
      season_id: UUID,
      period_number: int(0, 99),
      clock_ms: int(0, 24 * 3600 * 1000),
      kind: choice(EVENT_KINDS, true),
      team_id: UUID,
      player_id: UUID,
      related_event_id: UUID,
      notes: text(),
      sentiment: int(-4, 4),
      x: PITCH,
      y: PITCH,
      created_at: TIMESTAMP,
    },
  },
  lineup: {
    name: "lineup",
    matchField: "match_id",
    fields: {
      match_id: MATCH,
      player_id: { type: "uuid", required: true, immutable: true },
      start_min: MINUTE,
      end_min: MINUTE,
      position: text(),
    },
  },
  match_notes: {
    name: "match_notes",
    matchField: "match_id",
    fields: { match_id: MATCH, period_number: int(0, 99), note_text: text(), created_at: TIMESTAMP },
  },
  clock_actions: {
    name: "clock_actions",
    matchField: "match_id",
    fields: {
      match_id: MATCH,
      action: choice(CLOCK_ACTIONS, true),
      at: { type: "timestamp", required: true },
      period_number: int(0, 99),
    },
  },
  club_settings: {
    name: "club_settings",
    fields: {
      viewer_names: choice(VIEWER_NAMES),
      default_period_format: choice(PERIOD_FORMATS),
      default_duration_mins: int(1, 600),
    },
  },
  player_teams: {
    name: "player_teams",
    fields: {
      player_id: { type: "uuid", required: true },
      team_id: { type: "uuid", required: true },
      start_date: DATE,
      end_date: DATE,
      is_active: BOOL,
    },
  },
  default_lineups: {
    name: "default_lineups",
    fields: { team_id: { type: "uuid", required: true }, formation: text() },
  },
  app_settings: {
    name: "app_settings",
    fields: { key: { type: "text", required: true, immutable: true }, value: text() },
  },
};

/** True when `name` is a syncable table. */
export function isTableName(name: string): name is TableName {
  return Object.hasOwn(TABLES, name);
}

const CANONICAL_UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const DATE_TEXT = /^([0-9]{4})-([0-9]{2})-([0-9]{2})$/;
const RFC3339 =
  /^([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]{1,6})?(Z|([+-])([0-9]{2}):([0-9]{2}))$/;

/** True for a lowercase canonical UUID (§2.1), the only spelling allowed in field values. */
export function isCanonicalUuid(value: string): boolean {
  return CANONICAL_UUID.test(value);
}

/** Why `value` is not acceptable for a field of `spec`, or `null` when it is (§2.4). */
export function checkValue(spec: FieldSpec, value: Scalar): string | null {
  if (value === null) {
    return spec.required === true ? "may not be null" : null;
  }
  switch (spec.type) {
    case "int":
    case "float":
      return checkNumber(spec, value);
    case "bool":
      return typeof value === "boolean" ? null : "expected true or false";
    default:
      break;
  }
  if (typeof value !== "string") {
    return `expected a string, got ${typeof value}`;
  }
  switch (spec.type) {
    case "text":
      if (value.includes("\u0000")) return "contains a NUL character (U+0000)";
      return codePoints(value) <= MAX_TEXT ? null : `longer than ${MAX_TEXT} characters`;
    case "choice":
      return (spec.choices ?? []).includes(value) ? null : `must be one of: ${(spec.choices ?? []).join(", ")}`;
    case "uuid":
      return isCanonicalUuid(value) ? null : "expected a lowercase canonical UUID";
    case "date":
      return isDate(value) ? null : "expected a date as YYYY-MM-DD";
    default:
      return isTimestamp(value) ? null : "expected an RFC 3339 timestamp such as 2026-03-01T10:00:00Z";
  }
}

function checkNumber(spec: FieldSpec, value: Scalar): string | null {
  if (typeof value !== "number") {
    return `expected a number, got ${typeof value}`;
  }
  // JSON cannot carry NaN or Infinity (JSON.stringify would send null instead).
  if (!Number.isFinite(value)) return "expected a finite number";
  if (spec.type === "int" && !Number.isInteger(value)) return "expected an integer";
  if (spec.minimum !== undefined && value < spec.minimum) return `must be >= ${spec.minimum}`;
  if (spec.maximum !== undefined && value > spec.maximum) return `must be <= ${spec.maximum}`;
  return null;
}

function codePoints(value: string): number {
  let count = 0;
  for (const _ of value) count += 1;
  return count;
}

function isRealDate(year: number, month: number, day: number): boolean {
  if (year < 1 || month < 1 || month > 12 || day < 1) return false;
  const leap = (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
  const days = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1] ?? 0;
  return day <= days;
}

/** `YYYY-MM-DD`, a real calendar date (year 1 or later, as the server reads it). */
export function isDate(value: string): boolean {
  const found = DATE_TEXT.exec(value);
  return found !== null && isRealDate(Number(found[1]), Number(found[2]), Number(found[3]));
}

/** RFC 3339 with seconds and a zone, a real date and time, as the server reads it (§2.4). */
export function isTimestamp(value: string): boolean {
  const found = RFC3339.exec(value);
  if (found === null) return false;
  const [, year, month, day, hour, minute, second] = found.map(Number) as number[];
  if (!isRealDate(year ?? 0, month ?? 0, day ?? 0)) return false;
  if ((hour ?? 24) > 23 || (minute ?? 60) > 59 || (second ?? 60) > 59) return false;
  // RFC 3339's offset: hours 00-23, minutes 00-59.
  if (found[8] !== "Z" && (Number(found[10]) > 23 || Number(found[11]) > 59)) return false;
  return true;
}
