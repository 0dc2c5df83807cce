/** The client's outbox, push, pull and merge against an in-memory server. */

import { afterEach, describe, expect, it } from "vitest";

import { InvalidChange } from "../src/edits.js";
import { SyncUnavailable } from "../src/errors.js";
import { encodeHlc, parseHlc } from "../src/hlc.js";
import { lineupId, randomId } from "../src/ids.js";
import { SyncClient } from "../src/sync.js";
import { FakeServer } from "./fakeServer.js";
import { Device } from "./support.js";

const MATCH = "4c077bde-e851-49dd-9956-e6c32bede9ac";
const closers: Array<() => void> = [];
afterEach(() => closers.splice(0).forEach((close) => close()));

async function device(server: FakeServer, options: { now?: () => number; deviceId?: string; pushBatch?: number; attempts?: number } = {}): Promise<SyncClient> {
  const db = new Device().open();
  const client = await SyncClient.open({
    db,
    serverUrl: "http://127.0.0.1:9",
    transport: server,
    now: options.now ?? (() => server.nowMs),
    random: () => 0,
    retry: { attempts: options.attempts ?? 3, baseMs: 1, capMs: 1 },
    ...(options.deviceId === undefined ? {} : { deviceId: options.deviceId }),
    ...(options.pushBatch === undefined ? {} : { pushBatch: options.pushBatch }),
  });
  closers.push(() => {
    client.close();
    db.close();
  });
  return client;
}

describe("the outbox", () => {
  it("numbers changes densely, stamps them and keeps the vector they were made with", async () => {
    const server = new FakeServer();
    const anna = await device(server, { deviceId: "phone-anna" });
    const ben = await device(server, { deviceId: "phone-ben" });
    const goal = await ben.create("events", { match_id: MATCH, kind: "goal" });
    await ben.sync();
    await anna.create("teams", { name: "Riverside" });
    await anna.sync();
    await anna.update("events", goal, { notes: "seen" });
    const pending = await anna.pendingChanges();
    expect(pending.map((c) => [c.seq, c.op, c.table])).toEqual([[2, "upsert", "events"]]);
    expect(pending[0]?.seen).toEqual({ "phone-ben": 1 });
    expect(parseHlc(pending[0]?.hlc ?? "").wallMs).toBe(server.nowMs);
    expect((await anna.deviceState()).nextSeq).toBe(3);
  });

  it("refuses, and records nothing of, an edit the server would refuse", async () => {
    const client = await device(new FakeServer());
    await expect(client.create("events", { match_id: MATCH })).rejects.toBeInstanceOf(InvalidChange);
    await expect(client.create("events", { match_id: MATCH, kind: "goal", sentiment: 9 })).rejects.toThrow(/sentiment/);
    await expect(client.delete("teams", randomId())).rejects.toThrow(/no such record/);
    const id = await client.create("lineup", { match_id: MATCH, player_id: MATCH }, lineupId(MATCH, MATCH));
    await expect(client.update("lineup", id, { player_id: randomId() })).rejects.toThrow(/cannot change once set/);
    await expect(client.record([{ table: "teams", id: randomId(), op: "upsert", fields: { name: "A" } }, { table: "teams", id: randomId(), op: "upsert", fields: {} }])).rejects.toThrow(/required/);
    expect((await client.pendingChanges()).map((c) => c.seq)).toEqual([1]);
  });
});

describe("push and pull", () => {
  it("adopts the effective HLC of a restamped change and moves its clock past it", async () => {
    const server = new FakeServer();
    const fast = await device(server, { now: () => server.nowMs + 3_600_000 });
    const team = await fast.create("teams", { name: "Riverside" });
    await fast.push();
    const effective = encodeHlc({ wallMs: server.nowMs + 60_000, logical: 0 });
    expect((await fast.confirmedState("teams", team))?.fields.name?.hlc).toBe(effective);
    expect(server.ingest.log[0]?.hlc).toBe(effective);
    // A later edit still sorts after the capped one on every replica.
    await fast.update("teams", team, { name: "Riverside FC" });
    expect(((await fast.pendingChanges())[0]?.hlc ?? "") > effective).toBe(true);
  });

  it("retries with backoff while the server is unavailable, then reports it", async () => {
    const server = new FakeServer();
    const client = await device(server, { attempts: 3 });
    await client.create("teams", { name: "Riverside" });
    server.failures = ["push", "pull"];
    expect(await client.sync()).toEqual({ pushed: 1, pulled: 0 });
    expect(client.status).toMatchObject({ pending: 0, offline: false, lastError: null });
    await client.create("teams", { name: "Hillview" });
    server.failures = ["push", "push", "push"];
    await expect(client.sync()).rejects.toBeInstanceOf(SyncUnavailable);
    expect(client.status).toMatchObject({ pending: 1, offline: true });
  });

  it("splits the outbox when the server takes fewer changes per set, and one run per set", async () => {
    const server = new FakeServer();
    server.maxChanges = 2;
    const anna = await device(server, { deviceId: "phone-anna" });
    const ben = await device(server, { deviceId: "phone-ben" });
    for (let i = 0; i < 5; i += 1) await anna.create("teams", { name: `Team ${i}` });
    await ben.create("teams", { name: "Ben's" });
    await ben.push();
    await anna.pull();
    await anna.create("teams", { name: "After the pull" });
    expect(await anna.push()).toBe(6);
    expect(server.pushes.filter((p) => p.device_id === "phone-anna").map((p) => [p.changes.map((c) => c.seq), p.seen])).toEqual([
      [[1, 2], {}],
      [[3, 4], {}],
      [[5], {}],
      [[6], { "phone-ben": 1 }],
    ]);
  });

  it("converges with another device and learns the conflict from its push and the other's pull", async () => {
    const server = new FakeServer();
    const anna = await device(server, { deviceId: "phone-anna" });
    const ben = await device(server, { deviceId: "phone-ben" });
    const learned: string[] = [];
    anna.on("conflict", (c) => learned.push(`anna:${c.field}`));
    ben.on("conflict", (c) => learned.push(`ben:${c.field}`));
    const goal = await anna.create("events", { match_id: MATCH, kind: "goal" });
    await anna.sync();
    await ben.sync();
    await ben.update("events", goal, { kind: "own_goal" });
    server.nowMs += 1000;
    await anna.update("events", goal, { kind: "penalty" });
    await anna.delete("events", goal);
    await ben.sync();
    await anna.sync();
    await ben.sync();
    expect(await anna.confirmedState("events", goal)).toEqual(await ben.confirmedState("events", goal));
    expect(await anna.get("events", goal)).toEqual({ values: { match_id: MATCH, kind: "penalty" }, archived: true });
    expect(learned.sort()).toEqual(["anna:kind", "ben:kind"]);
    // Pulling again changes nothing and announces nothing.
    await anna.pull();
    expect(learned).toHaveLength(2);
  });
});
