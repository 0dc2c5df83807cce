/**
 * Two coaches' phones against a real sync server: both go offline, both log events and edit
 * the same event, both come back. Afterwards both local databases equal the server's state
 * and the conflict is reported to each (PROTOCOL.md §11 as an end-to-end run).
 */

import type { Dexie } from "dexie";
import { afterEach, describe, expect, inject, it } from "vitest";

import { connectDexie } from "../src/dexieAdapter.js";
import { grassrootsTables } from "../src/grassroots.js";
import { randomId } from "../src/ids.js";
import type { SyncClient } from "../src/sync.js";
import type { ConflictRecord } from "../src/wire.js";
import { Device, Network, PASSWORD, uniqueEmail } from "./support.js";

const serverUrl = inject("serverUrl");

interface Phone {
  db: Dexie;
  client: SyncClient;
  network: Network;
  conflicts: ConflictRecord[];
}

const opened: Phone[] = [];

async function phone(deviceId: string): Promise<Phone> {
  const network = new Network();
  const db = new Device().open();
  const client = await connectDexie(db, { serverUrl, tables: grassrootsTables, deviceId, fetch: network.fetch, retry: { attempts: 1 } });
  const conflicts: ConflictRecord[] = [];
  client.on("conflict", (conflict) => conflicts.push(conflict));
  const made = { db, client, network, conflicts };
  opened.push(made);
  return made;
}

afterEach(() => {
  for (const { db, client } of opened.splice(0)) {
    client.close();
    db.close();
  }
});

/** The events as the server holds them (REST view of the merged state). */
async function serverEvents(client: SyncClient, matchId: string): Promise<Map<string, Record<string, unknown>>> {
  const token = await client.session.accessToken();
  const response = await fetch(`${serverUrl}/api/matches/${matchId}/events?limit=1000&include_deleted=true`, {
    headers: { authorization: `Bearer ${token}` },
  });
  expect(response.status).toBe(200);
  const page = (await response.json()) as { items: Array<Record<string, unknown>> };
  return new Map(page.items.map((item) => [String(item.id), item]));
}

/** What a phone's app table shows, in the server's terms. */
async function localEvents(db: Dexie): Promise<Map<string, Record<string, unknown>>> {
  const rows = (await db.table("events").toArray()) as Array<Record<string, unknown>>;
  return new Map(
    rows.map((row) => [
      String(row.id),
      {
        kind: row.kind,
        match_id: row.matchId,
        player_id: row.playerId ?? null,
        team_id: row.teamId ?? null,
        period_number: row.periodNumber ?? null,
        clock_ms: row.clockMs ?? null,
        deleted: row.isDeleted === true,
      },
    ]),
  );
}

function comparable(item: Record<string, unknown>): Record<string, unknown> {
  const { kind, match_id, player_id, team_id, period_number, clock_ms, deleted } = item;
  return { kind, match_id, player_id, team_id, period_number, clock_ms, deleted };
}

describe("two coaches against a real server", () => {
  it("converge after editing the same event offline, and both are told of the conflict", async () => {
    const anna = await phone(`anna-${randomId().slice(0, 8)}`);
    const ben = await phone(`ben-${randomId().slice(0, 8)}`);
    const email = uniqueEmail("anna");
    const signedUp = await anna.client.signup({ email, password: PASSWORD, team_name: "Riverside U11" });
    await ben.client.login(email, PASSWORD);

    // Anna sets up the match through the app's own tables; the adapter records it.
    const home = randomId();
    const away = randomId();
    const match = randomId();
    const goal = randomId();
    const ella = randomId();
    const maya = randomId();
    const zoe = randomId();
    await anna.db.table("teams").bulkAdd([
      { id: home, name: "Riverside U11", isOpponent: false, isDeleted: false },
      { id: away, name: "Hillview U11", isOpponent: true, isDeleted: false },
    ]);
    await anna.db.table("players").bulkAdd([
      { id: ella, name: "Ella Jones", currentTeam: home, isDeleted: false },
      { id: maya, name: "Maya Khan", currentTeam: home, isDeleted: false },
      { id: zoe, name: "Zoe Park", currentTeam: home, isDeleted: false },
    ]);
    await anna.db.table("matches").add({ id: match, homeTeamId: home, awayTeamId: away, kickoffTime: "2026-03-01T10:00:00.000Z", periodFormat: "half", durationMinutes: 50, isDeleted: false });
    await anna.db.table("events").add({ id: goal, matchId: match, kind: "goal", teamId: home, playerId: ella, periodNumber: 1, clockMs: 754000, createdAt: "2026-03-01T10:12:34.250Z", isDeleted: false, synced: false });
    expect(await anna.client.pendingCount()).toBe(7);
    await anna.client.sync();
    expect(await anna.client.pendingCount()).toBe(0);
    await ben.client.sync();
    expect(await ben.db.table("events").get(goal)).toMatchObject({ id: goal, playerId: ella, kind: "goal", matchId: match });
    expect(await ben.db.table("teams").get(home)).toMatchObject({ name: "Riverside U11" });
    expect(signedUp.role).toBe("owner");

    // The signal drops for both. Each logs an event and corrects the scorer differently.
    anna.network.offline = true;
    ben.network.offline = true;
    await ben.db.table("events").update(goal, { playerId: maya });
    await ben.db.table("events").add({ id: randomId(), matchId: match, kind: "save", teamId: home, periodNumber: 1, clockMs: 800000, isDeleted: false });
    await anna.db.table("events").update(goal, { playerId: zoe });
    await anna.db.table("events").add({ id: randomId(), matchId: match, kind: "corner", teamId: away, periodNumber: 1, clockMs: 810000, isDeleted: false });
    await expect(anna.client.sync()).rejects.toThrow(/network is down/);
    await expect(ben.client.sync()).rejects.toThrow(/network is down/);
    expect(anna.client.status).toMatchObject({ offline: true, pending: 2 });
    expect(ben.client.status).toMatchObject({ offline: true, pending: 2 });
    // Offline, each phone shows its own edit.
    expect(await anna.db.table("events").get(goal)).toMatchObject({ playerId: zoe });
    expect(await ben.db.table("events").get(goal)).toMatchObject({ playerId: maya });

    // Both come back: Ben pushes first, Anna second (her push reveals the conflict), then
    // Ben pulls her changes.
    anna.network.offline = false;
    ben.network.offline = false;
    await ben.client.sync();
    await anna.client.sync();
    await ben.client.sync();
    expect(anna.client.status).toMatchObject({ offline: false, pending: 0, lastError: null });
    expect(ben.client.status).toMatchObject({ offline: false, pending: 0, lastError: null });

    // Both local databases equal the server's state.
    const server = await serverEvents(anna.client, match);
    expect(server.size).toBe(3);
    for (const local of [await localEvents(anna.db), await localEvents(ben.db)]) {
      expect(new Map([...local].map(([id, row]) => [id, row]))).toEqual(new Map([...server].map(([id, item]) => [id, comparable(item)])));
    }
    const annaState = await anna.client.confirmedState("events", goal);
    expect(annaState).toEqual(await ben.client.confirmedState("events", goal));
    // The later, concurrent write won on both phones, whichever it was.
    expect(server.get(goal)?.player_id).toBe(annaState?.fields.player_id?.value);

    // The conflict reached both phones: Anna's from her push answer, Ben's from his pull.
    for (const { conflicts } of [anna, ben]) {
      expect(conflicts).toHaveLength(1);
      expect(conflicts[0]).toMatchObject({ table: "events", record_id: goal, field: "player_id", match_id: match });
      expect(new Set([conflicts[0]?.winner.value, conflicts[0]?.loser.value])).toEqual(new Set([maya, zoe]));
    }
    expect(anna.conflicts[0]?.id).toBe(ben.conflicts[0]?.id);
    expect(await anna.client.conflicts()).toEqual(await ben.client.conflicts());
  });
});
