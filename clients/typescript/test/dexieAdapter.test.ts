/** The Dexie adapter: app writes become changes, atomically; merged records reach app tables. */

import { afterEach, describe, expect, it } from "vitest";

import { connectDexie } from "../src/dexieAdapter.js";
import { grassrootsTables } from "../src/grassroots.js";
import { appSettingId, randomId, stableId } from "../src/ids.js";
import type { SyncClient } from "../src/sync.js";
import { FakeServer } from "./fakeServer.js";
import { Device, waitFor } from "./support.js";

const CLUB = "3dfd91dc-2feb-4e6c-b91f-f7b02c331e2f";
const closers: Array<() => void> = [];
afterEach(() => closers.splice(0).forEach((close) => close()));

async function phone(server: FakeServer, deviceId: string) {
  const db = new Device().open();
  const client = await connectDexie(db, { serverUrl: "http://127.0.0.1:9", transport: server, tables: grassrootsTables, deviceId, now: () => server.nowMs });
  // A stored login names the club, which maps the app's non-UUID ids.
  await db.table("touchlineState").put({ key: "session", value: { accessToken: "a", refreshToken: "r", expiresAt: 0, clubId: CLUB, userId: randomId(), deviceId, role: "coach" } });
  closers.push(() => {
    client.close();
    db.close();
  });
  return { db, client };
}

describe("the Dexie adapter", () => {
  it("records creates, updates and soft deletes made through the app's own calls", async () => {
    const { db, client } = await phone(new FakeServer(), "phone-anna");
    const match = randomId();
    const event = randomId();
    await db.table("events").add({ id: event, matchId: match, kind: "goal", playerId: "anon", clockMs: 1000, synced: false, createdByUserId: "u1" });
    await db.table("events").update(event, { kind: "own_goal", synced: true });
    await db.table("events").update(event, { synced: false }); // device bookkeeping only
    await db.table("events").where("id").equals(event).modify({ isDeleted: true });
    const pending = await client.pendingChanges();
    expect(pending.map((c) => [c.op, c.fields])).toEqual([
      // A placeholder player is "no player": absent on create.
      ["upsert", { match_id: match, kind: "goal", clock_ms: 1000 }],
      ["upsert", { kind: "own_goal" }],
      ["delete", {}],
    ]);
  });

  it("keeps the app's write and its outbox entry together, or neither", async () => {
    const { db, client } = await phone(new FakeServer(), "phone-anna");
    await expect(
      db.transaction("rw", db.table("teams"), async () => {
        await db.table("teams").add({ id: randomId(), name: "Riverside" });
        throw new Error("the app changed its mind");
      }),
    ).rejects.toThrow(/changed its mind/);
    expect(await db.table("teams").count()).toBe(0);
    expect(await client.pendingCount()).toBe(0);
  });

  it("maps non-UUID ids the way the import tool does, and writes merged records back to the same rows", async () => {
    const server = new FakeServer();
    const anna = await phone(server, "phone-anna");
    const ben = await phone(server, "phone-ben");
    await anna.db.table("teams").add({ id: "1", name: "Riverside Rovers U10", isDeleted: false });
    await anna.db.table("players").add({ id: "2", name: "Theo Shaw", currentTeam: "1", squadNumber: 14, isDeleted: false });
    await anna.db.table("settings").put({ key: "theme", value: '"dark"' });
    const [team, player, setting] = await anna.client.pendingChanges();
    expect(team).toMatchObject({ id: stableId(CLUB, "teams", "1"), fields: { name: "Riverside Rovers U10" } });
    expect(player).toMatchObject({ id: stableId(CLUB, "players", "2"), fields: { current_team: stableId(CLUB, "teams", "1") } });
    expect(setting).toMatchObject({ table: "app_settings", id: appSettingId(CLUB, "theme"), fields: { key: "theme", value: '"dark"' } });
    await anna.client.sync();
    await ben.client.sync();
    // Ben's app sees the records under their UUIDs; nothing he received is queued again.
    expect(await ben.db.table("players").get(stableId(CLUB, "players", "2"))).toMatchObject({ name: "Theo Shaw", currentTeam: stableId(CLUB, "teams", "1"), isDeleted: false });
    expect(await ben.db.table("settings").get("theme")).toMatchObject({ key: "theme", value: '"dark"' });
    expect(await ben.client.pendingCount()).toBe(0);
    // Ben renames the team; Anna's row "1" gets the new name, and no new row appears.
    await ben.db.table("teams").update(stableId(CLUB, "teams", "1"), { name: "Riverside Rovers" });
    await ben.client.sync();
    await anna.client.sync();
    expect(await anna.db.table("teams").toArray()).toEqual([expect.objectContaining({ id: "1", name: "Riverside Rovers" })]);
    expect(await anna.db.table("players").get("2")).toMatchObject({ currentTeam: "1" });
    expect(await anna.client.pendingCount()).toBe(0);
  });

  it("tells the app about a write the server would refuse, and keeps the app's row", async () => {
    const { db, client } = await phone(new FakeServer(), "phone-anna");
    const refused: string[] = [];
    client.on("refused", ({ error }) => refused.push(error.message));
    await db.table("events").add({ id: randomId(), matchId: randomId(), kind: "dribble" });
    await waitFor(() => refused.length === 1, "the refusal");
    expect(refused[0]).toMatch(/kind: must be one of/);
    expect(await db.table("events").count()).toBe(1);
    expect(await client.pendingCount()).toBe(0);
  });
});
