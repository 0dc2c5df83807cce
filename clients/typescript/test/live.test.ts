/**
 * Live updates over the match WebSocket against a real server (PROTOCOL.md §17): a change
 * pushed by one coach appears in the other coach's app table at once, and a subscription that
 * was stopped resumes from the last message it processed.
 */

import WebSocket from "ws";
import { afterEach, describe, expect, inject, it } from "vitest";

import { connectDexie } from "../src/dexieAdapter.js";
import { grassrootsTables } from "../src/grassroots.js";
import { randomId } from "../src/ids.js";
import type { PresenceDevice, WebSocketConstructor } from "../src/live.js";
import { SyncClient } from "../src/sync.js";
import { twoCoachesOfOneClub, waitFor } from "./support.js";

const serverUrl = inject("serverUrl");
const webSocket = WebSocket as unknown as WebSocketConstructor;
const cleanup: Array<() => void> = [];
afterEach(() => cleanup.splice(0).forEach((close) => close()));

/** Anna (a plain client) and Ben (the app's Dexie tables) in one club, and a match of
 * Anna's that Ben has not pulled. */
async function twoCoaches(name: string) {
  return twoCoachesOfOneClub(
    name,
    {
      anna: (db) => SyncClient.open({ db, serverUrl }),
      ben: (db) => connectDexie(db, { serverUrl, tables: grassrootsTables }),
    },
    cleanup,
  );
}

describe("a match live", () => {
  it("merges other devices' changes as they commit and resumes after a stop", async () => {
    const { anna, ben, benDb, match } = await twoCoaches("live");

    const presence: PresenceDevice[][] = [];
    let caughtUp = 0;
    const live = ben.live(match, { webSocket, random: () => 0 });
    live.on("presence", (devices) => presence.push([...devices]));
    live.on("caughtUp", () => (caughtUp += 1));
    await waitFor(() => caughtUp === 1, "the first catch-up");
    // The catch-up holds the match created before the socket opened.
    expect(await ben.get("matches", match)).toMatchObject({ values: { venue: "Riverside Park" } });
    await waitFor(() => presence.some((devices) => devices.some((d) => d.device_id === ben.deviceId)), "ben's presence");

    const goal = await anna.create("events", { match_id: match, kind: "goal", clock_ms: 120_000 });
    await anna.push();
    await waitFor(async () => (await benDb.table("events").get(goal)) !== undefined, "the goal in ben's app table");
    expect(await benDb.table("events").get(goal)).toMatchObject({ id: goal, matchId: match, kind: "goal", clockMs: 120_000, isDeleted: false });
    expect(await ben.pendingCount()).toBe(0);
    const seqAfterGoal = await ben.liveSince(match);
    expect(seqAfterGoal).toBeGreaterThan(0);

    // Ben's app leaves the match; Anna edits the goal meanwhile; the app comes back to it.
    live.stop();
    await anna.update("events", goal, { notes: "curled in" });
    const save = await anna.create("events", { match_id: match, kind: "save" });
    await anna.delete("events", save);
    await anna.push();
    const resumed = ben.live(match, { webSocket, random: () => 0 });
    let resumedCaughtUp = false;
    const errors: Error[] = [];
    resumed.on("caughtUp", () => (resumedCaughtUp = true));
    resumed.on("error", (error) => errors.push(error));
    await waitFor(() => resumedCaughtUp || errors.length > 0, "the resumed catch-up");
    expect(errors).toEqual([]);
    await resumed.settled();
    expect(await benDb.table("events").get(goal)).toMatchObject({ notes: "curled in" });
    expect(await benDb.table("events").get(save)).toMatchObject({ kind: "save", isDeleted: true });
    expect(await ben.liveSince(match)).toBeGreaterThan(seqAfterGoal);
    resumed.stop();
    expect(resumed.state).toBe("closed");
  });

  it("pulls the player a live change names before this device has them", async () => {
    const { anna, ben, benDb, match } = await twoCoaches("live-player");
    let caughtUp = false;
    const live = ben.live(match, { webSocket, random: () => 0 });
    live.on("caughtUp", () => (caughtUp = true));
    await waitFor(() => caughtUp, "the catch-up");

    // A player Anna adds on the touchline (club-wide: not on the match socket) scores.
    const player = await anna.create("players", { full_name: "Maya Kowalski", squad_number: 9 });
    const goal = await anna.create("events", { match_id: match, kind: "goal", player_id: player });
    await anna.push();
    await waitFor(async () => (await benDb.table("events").get(goal)) !== undefined, "the goal");
    await waitFor(async () => (await ben.get("players", player)) !== null, "the scorer, pulled");
    expect(await ben.get("players", player)).toMatchObject({ values: { full_name: "Maya Kowalski" } });
    live.stop();
  });
});
