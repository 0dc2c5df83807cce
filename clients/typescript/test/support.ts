/** Helpers shared by the tests: app databases on separate fake IndexedDB stores, and waiting. */

import { Dexie } from "dexie";
import { IDBFactory, IDBKeyRange } from "fake-indexeddb";

import { SYNC_STORES } from "../src/store.js";
import type { SyncClient } from "../src/sync.js";
import type { LoggedChange } from "../src/wire.js";

/** The app's stores (the current `grassroots_db` schema, trimmed to what the tests use). */
export const APP_STORES = {
  events: "id, matchId, playerId, teamId, kind, createdAt, updatedAt, synced",
  matches: "id, seasonId, homeTeamId, awayTeamId, kickoffTime, isDeleted",
  teams: "id, name, isDeleted",
  players: "id, currentTeam, name, squadNumber, isDeleted",
  seasons: "id, label, isDeleted",
  lineup: "id, matchId, playerId",
  matchNotes: "matchNoteId, matchId",
  playerTeams: "id, playerId, teamId",
  defaultLineups: "id, teamId",
  settings: "key, updatedAt",
};

/** One device's IndexedDB: its own in-memory store, like a separate phone. */
export class Device {
  readonly indexedDB = new IDBFactory();
  constructor(readonly name = "grassroots_db") {}

  /** A fresh Dexie handle on this device's database (a new tab, or the app after a restart). */
  open(): Dexie {
    const db = new Dexie(this.name, { indexedDB: this.indexedDB, IDBKeyRange });
    db.version(16).stores({ ...APP_STORES, ...SYNC_STORES });
    return db;
  }
}

/** Wait until `condition` holds, checking every few milliseconds, failing after `timeoutMs`. */
export async function waitFor(condition: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((done) => setTimeout(done, 10));
  }
}

/** A `fetch` that can be cut off, like a phone losing its signal. */
export class Network {
  offline = false;
  readonly requests: string[] = [];
  readonly fetch = async (input: string, init: RequestInit): Promise<Response> => {
    this.requests.push(`${init.method ?? "GET"} ${new URL(input).pathname}`);
    if (this.offline) throw new TypeError("fetch failed: the network is down");
    return globalThis.fetch(input, init);
  };
}

let counter = 0;
/** A unique email per call, so tests never share an account. */
export function uniqueEmail(label: string): string {
  counter += 1;
  return `${label}-${Date.now()}-${counter}-${Math.floor(Math.random() * 1e6)}@clubs.example`;
}

export const PASSWORD = "correct horse battery staple";

/**
 * Two coaches of one new club: Anna signs it up and creates a match, which she syncs; Ben
 * logs in and has not pulled it. Each opens a client on a database of its own with `open`;
 * `cleanup` gets what closes them.
 */
export async function twoCoachesOfOneClub<A extends SyncClient, B extends SyncClient>(
  name: string,
  open: { anna: (db: Dexie) => Promise<A>; ben: (db: Dexie) => Promise<B> },
  cleanup: Array<() => void>,
) {
  const email = uniqueEmail(name);
  const annaDb = new Device().open();
  const anna = await open.anna(annaDb);
  const benDb = new Device().open();
  const ben = await open.ben(benDb);
  cleanup.push(() => {
    anna.close();
    ben.close();
    annaDb.close();
    benDb.close();
  });
  await anna.signup({ email, password: PASSWORD, team_name: "Riverside U10" });
  await ben.login(email, PASSWORD);
  const match = await anna.create("matches", { venue: "Riverside Park" });
  await anna.sync();
  return { email, anna, annaDb, ben, benDb, match };
}

/** Every change the server holds for `other`'s club, as `other` pulls it raw (one page). */
export async function serverChanges(serverUrl: string, other: SyncClient): Promise<LoggedChange[]> {
  const token = await other.session.accessToken();
  const response = await fetch(`${serverUrl}/api/sync/pull`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
    body: JSON.stringify({ device_id: other.deviceId, cursor: 0, limit: 1000 }),
  });
  return ((await response.json()) as { changes: LoggedChange[] }).changes;
}
