/**
 * Mappings of the coaches' app's Dexie tables (`grassroots_db`, the current schema with
 * camelCase fields and soft deletes) to the sync protocol's tables (PROTOCOL.md §3). Pass
 * them to {@link connectDexie}, whole or in part, or use them as the model for your own.
 *
 * Device bookkeeping (`synced`, `syncedAt`, `createdByUserId`, match state and periods) stays
 * on the device. Placeholder players (`anon`, `unknown`, `''`) sync as "no player".
 */

import { appSettingId } from "./ids.js";
import type { AppRow, FieldMapping, TableMapping } from "./dexieAdapter.js";

/** Player ids the app used for "no player". */
export const PLACEHOLDER_PLAYERS: ReadonlySet<string> = new Set(["anon", "unknown", ""]);

const playerRef: FieldMapping = {
  field: "player_id",
  toWire: (value) => (typeof value === "string" && PLACEHOLDER_PLAYERS.has(value) ? null : value),
};

interface AppFormationSlot {
  playerId?: unknown;
  position?: unknown;
  pitchX?: unknown;
  pitchY?: unknown;
}

/** `formation` travels as one JSON text, `[{player_id, position, x, y}]` (§3.11). */
const formation: FieldMapping = {
  field: "formation",
  toWire: (value) =>
    Array.isArray(value)
      ? JSON.stringify(
          (value as AppFormationSlot[]).map((slot) => ({ player_id: slot.playerId ?? null, position: slot.position ?? null, x: slot.pitchX ?? null, y: slot.pitchY ?? null })),
        )
      : value,
  fromWire: (value) => {
    if (typeof value !== "string") return value;
    try {
      const slots = JSON.parse(value) as Array<Record<string, unknown>>;
      return slots.map((slot) => ({ playerId: slot.player_id, position: slot.position, pitchX: slot.x, pitchY: slot.y }));
    } catch {
      return [];
    }
  },
};

/** The app's tables that sync, by Dexie table name. */
export const grassrootsTables: Readonly<Record<string, TableMapping>> = {
  teams: {
    table: "teams",
    archivedFlag: "isDeleted",
    fields: { name: "name", isOpponent: "is_opponent", homeKitPrimary: "color", notes: "notes" },
  },
  players: {
    table: "players",
    archivedFlag: "isDeleted",
    fields: { name: "full_name", squadNumber: "squad_number", preferredPosition: "preferred_pos", dateOfBirth: "dob", notes: "notes", currentTeam: "current_team" },
  },
  seasons: {
    table: "seasons",
    archivedFlag: "isDeleted",
    fields: { label: "label", startDate: "start_date", endDate: "end_date", isCurrent: "is_current" },
  },
  matches: {
    table: "matches",
    archivedFlag: "isDeleted",
    fields: {
      seasonId: "season_id",
      kickoffTime: "kickoff_ts",
      competition: "competition",
      homeTeamId: "home_team_id",
      awayTeamId: "away_team_id",
      venue: "venue",
      durationMinutes: "duration_mins",
      periodFormat: "period_format",
      notes: "notes",
    },
  },
  events: {
    table: "events",
    archivedFlag: "isDeleted",
    fields: {
      matchId: "match_id",
      periodNumber: "period_number",
      clockMs: "clock_ms",
      kind: "kind",
      teamId: "team_id",
      playerId: playerRef,
      notes: "notes",
      sentiment: "sentiment",
      createdAt: "created_at",
    },
  },
  lineup: {
    table: "lineup",
    archivedFlag: "isDeleted",
    fields: { matchId: "match_id", playerId: "player_id", startMinute: "start_min", endMinute: "end_min", position: "position" },
  },
  matchNotes: {
    table: "match_notes",
    archivedFlag: "isDeleted",
    fields: { matchId: "match_id", periodNumber: "period_number", notes: "note_text", createdAt: "created_at" },
  },
  playerTeams: {
    table: "player_teams",
    archivedFlag: "isDeleted",
    fields: { playerId: "player_id", teamId: "team_id", startDate: "start_date", endDate: "end_date", isActive: "is_active" },
  },
  defaultLineups: {
    table: "default_lineups",
    archivedFlag: "isDeleted",
    fields: { teamId: "team_id", formation },
  },
  settings: {
    table: "app_settings",
    // One record per key, the same on every device of the club (§3.12).
    recordId: (row: AppRow, clubId) => appSettingId(clubId ?? "", String(row.key)),
    localKey: (_id, values) => values.key,
    fields: { key: "key", value: "value" },
  },
};
