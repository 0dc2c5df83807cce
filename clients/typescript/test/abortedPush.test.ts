/**
 * A tab killed between sending a push and receiving its answer, against a real server: the
 * request is aborted once the server has answered, before the client reads the answer. The
 * restarted app re-sends the same changes; the server acknowledges them as duplicates, and
 * every change exists exactly once.
 */

import { afterEach, describe, expect, inject, it } from "vitest";

import { SyncUnavailable } from "../src/errors.js";
import { randomId } from "../src/ids.js";
import { SyncClient } from "../src/sync.js";
import type { PushResponse } from "../src/wire.js";
import { Device, PASSWORD, serverChanges, uniqueEmail } from "./support.js";

const serverUrl = inject("serverUrl");
const cleanup: Array<() => void> = [];
afterEach(() => cleanup.splice(0).forEach((close) => close()));

/** A fetch that lets a push reach the server, then drops the answer as a killed tab would. */
function killedAfterSending(controller: AbortController) {
  return async (input: string, init: RequestInit): Promise<Response> => {
    const { signal: _ignored, ...rest } = init;
    const answer = await globalThis.fetch(input, rest);
    if (new URL(input).pathname === "/api/sync/push") {
      controller.abort(new DOMException("the tab was closed", "AbortError"));
      throw controller.signal.reason;
    }
    return answer;
  };
}

async function open(device: Device, fetchFn?: (input: string, init: RequestInit) => Promise<Response>): Promise<SyncClient> {
  const db = device.open();
  const client = await SyncClient.open({ db, serverUrl, retry: { attempts: 1 }, ...(fetchFn === undefined ? {} : { fetch: fetchFn }) });
  cleanup.push(() => {
    client.close();
    db.close();
  });
  return client;
}

describe("a push whose answer never arrives", () => {
  it("is re-sent on restart and stored once", async () => {
    const phone = new Device();
    const controller = new AbortController();
    const email = uniqueEmail("cara");
    const first = await open(phone, killedAfterSending(controller));
    await first.signup({ email, password: PASSWORD, team_name: "Hillview U10" });
    const match = randomId();
    await first.create("matches", { venue: "Hillview Rec", period_format: "half" }, match);
    const events = [randomId(), randomId(), randomId()];
    for (const [index, id] of events.entries()) {
      await first.create("events", { match_id: match, kind: "goal", clock_ms: 60_000 * (index + 1) }, id);
    }
    await first.update("events", events[0] ?? "", { notes: "top corner" });
    const sent = await first.pendingChanges();
    expect(sent.map((c) => c.seq)).toEqual([1, 2, 3, 4, 5]);

    await expect(first.push({ signal: controller.signal })).rejects.toThrow(/tab was closed/);
    // Nothing was acknowledged, so nothing left the outbox.
    expect(await first.pendingChanges()).toEqual(sent);

    // The app restarts: a new handle on the same IndexedDB, a working network.
    first.close();
    const answers: PushResponse[] = [];
    const restarted = await open(phone, async (input, init) => {
      const response = await globalThis.fetch(input, init);
      if (new URL(input).pathname === "/api/sync/push") answers.push((await response.clone().json()) as PushResponse);
      return response;
    });
    expect(restarted.deviceId).toBe(first.deviceId);
    expect(await restarted.pendingChanges()).toEqual(sent);
    expect(await restarted.push()).toBe(5);
    expect(answers).toHaveLength(1);
    expect(answers[0]).toMatchObject({ acked_seq: 5, applied: 0, duplicates: 5 });
    expect(await restarted.pendingCount()).toBe(0);
    // The next change continues the sequence.
    await restarted.update("events", events[1] ?? "", { notes: "header" });
    expect((await restarted.pendingChanges()).map((c) => c.seq)).toEqual([6]);
    await restarted.push();

    // Another device of the club sees each change exactly once.
    const other = await open(new Device());
    await other.login(email, PASSWORD);
    const mine = (await serverChanges(serverUrl, other)).filter((c) => c.device_id === restarted.deviceId);
    expect(mine.map((c) => c.seq)).toEqual([1, 2, 3, 4, 5, 6]);
    await other.pull();
    expect((await other.get("events", events[0] ?? ""))?.values).toMatchObject({ notes: "top corner", kind: "goal" });
    expect(await other.confirmedState("events", events[0] ?? "")).toEqual(await restarted.confirmedState("events", events[0] ?? ""));
  });

  it("is sent again when the request was aborted before the server got it", async () => {
    const phone = new Device();
    const email = uniqueEmail("dev");
    let reachable = false;
    const client = await open(phone, async (input, init) => {
      if (!reachable && new URL(input).pathname === "/api/sync/push") throw new TypeError("fetch failed");
      return globalThis.fetch(input, init);
    });
    await client.signup({ email, password: PASSWORD, team_name: "Dale U9" });
    const team = await client.create("teams", { name: "Dale U9 B" });
    await expect(client.push()).rejects.toBeInstanceOf(SyncUnavailable);
    expect(await client.pendingCount()).toBe(1);
    reachable = true;
    expect(await client.push()).toBe(1);
    expect(await client.pendingCount()).toBe(0);
    expect((await client.confirmedState("teams", team))?.fields.name?.value).toBe("Dale U9 B");
  });
});
