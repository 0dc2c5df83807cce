/**
 * Pushes over the live socket against a real server (PROTOCOL.md §17.5): while a match is
 * live, change sets go over its WebSocket instead of `POST /api/sync/push`; after a stop they
 * go over HTTP again; a socket that fails with a push in flight hands it to HTTP, and the
 * change is stored once; the server's refusals raise what the HTTP answer raises.
 */

import WebSocket from "ws";
import { afterEach, describe, expect, inject, it } from "vitest";

import { SyncRejected, SyncUnavailable } from "../src/errors.js";
import type { LiveMatch, WebSocketConstructor, WebSocketLike } from "../src/live.js";
import { SyncClient } from "../src/sync.js";
import type { LoggedChange, PushRequest, PushResponse } from "../src/wire.js";
import { Device, PASSWORD, serverChanges, twoCoachesOfOneClub, waitFor } from "./support.js";

const serverUrl = inject("serverUrl");
const cleanup: Array<() => void> = [];
afterEach(() => cleanup.splice(0).forEach((close) => close()));

/** A `fetch` that notes every request and keeps the answers of pushes. */
class Recorder {
  readonly requests: string[] = [];
  readonly pushAnswers: PushResponse[] = [];
  readonly fetch = async (input: string, init: RequestInit): Promise<Response> => {
    const path = new URL(input).pathname;
    this.requests.push(`${init.method ?? "GET"} ${path}`);
    const response = await globalThis.fetch(input, init);
    if (path === "/api/sync/push" && response.ok) this.pushAnswers.push((await response.clone().json()) as PushResponse);
    return response;
  };

  get httpPushes(): number {
    return this.requests.filter((request) => request === "POST /api/sync/push").length;
  }
}

/** What the sockets carried, and the faults to inject into the next push. */
interface SocketScript {
  readonly pushes: PushRequest[];
  /** Cut the connection instead of sending the next push: the server never sees it. */
  cutBeforePush: boolean;
  /** Let the next push reach the server, then cut the connection as its `ack` arrives. */
  cutAtAck: boolean;
  /** Swallow the next `ack` and keep the connection: the push waits for its timeout. */
  swallowAck: boolean;
}

/** `ws` sockets that record the pushes they send and misbehave as `script` says. */
function scriptedSocket(script: SocketScript): WebSocketConstructor {
  return class ScriptedSocket implements WebSocketLike {
    readonly #inner: WebSocket;
    onopen: ((event: unknown) => void) | null = null;
    onmessage: ((event: { data: unknown }) => void) | null = null;
    onclose: ((event: { code: number; reason: string }) => void) | null = null;
    onerror: ((event: unknown) => void) | null = null;

    constructor(url: string) {
      this.#inner = new WebSocket(url);
      this.#inner.onopen = (event) => this.onopen?.(event);
      this.#inner.onerror = (event) => this.onerror?.(event);
      this.#inner.onclose = (event) => this.onclose?.({ code: event.code, reason: event.reason });
      this.#inner.onmessage = (event) => {
        const type = (JSON.parse(String(event.data)) as { type?: string }).type;
        if (type === "ack" && script.cutAtAck) {
          script.cutAtAck = false;
          this.#inner.terminate();
          return;
        }
        if (type === "ack" && script.swallowAck) {
          script.swallowAck = false;
          return;
        }
        this.onmessage?.({ data: event.data });
      };
    }

    get readyState(): number {
      return this.#inner.readyState;
    }

    send(data: string): void {
      const message = JSON.parse(data) as { type: string; change_set?: PushRequest };
      if (message.type === "push" && message.change_set !== undefined) {
        if (script.cutBeforePush) {
          script.cutBeforePush = false;
          this.#inner.terminate();
          return;
        }
        script.pushes.push(message.change_set);
      }
      this.#inner.send(data);
    }

    close(code?: number, reason?: string): void {
      this.#inner.close(code, reason);
    }
  };
}

function newScript(): SocketScript {
  return { pushes: [], cutBeforePush: false, cutAtAck: false, swallowAck: false };
}

/** Anna's device (fetch recorded) with a match pushed over HTTP, and Ben's in the same club. */
async function coaches(name: string) {
  const recorder = new Recorder();
  const coaches = await twoCoachesOfOneClub(
    name,
    {
      anna: (db) => SyncClient.open({ db, serverUrl, fetch: recorder.fetch, retry: { attempts: 1 } }),
      ben: (db) => SyncClient.open({ db, serverUrl }),
    },
    cleanup,
  );
  return { ...coaches, recorder };
}

/** Start `client`'s live match and wait until pushes can go over it. */
async function goLive(client: SyncClient, match: string, script: SocketScript, pushTimeoutMs?: number): Promise<LiveMatch> {
  const live = client.live(match, { webSocket: scriptedSocket(script), random: () => 0, ...(pushTimeoutMs === undefined ? {} : { pushTimeoutMs }) });
  await waitFor(() => live.canPush, "the live socket, caught up");
  return live;
}

/** Anna and Ben as `coaches` gives them, Anna's match live over a scripted socket, and the
 *  recorder cleared: what each test then sends is all it records. */
async function liveCoaches(name: string, pushTimeoutMs?: number) {
  const coached = await coaches(name);
  const script = newScript();
  const live = await goLive(coached.anna, coached.match, script, pushTimeoutMs);
  coached.recorder.requests.length = 0;
  return { ...coached, script, live };
}

/** Every change of `deviceId` the server stored for record `id`, as another device pulls it. */
async function storedChanges(other: SyncClient, deviceId: string, id: string): Promise<LoggedChange[]> {
  const changes = await serverChanges(serverUrl, other);
  return changes.filter((change) => change.device_id === deviceId && change.id === id);
}

describe("pushes while a match is live", () => {
  it("go over the socket, not POST /api/sync/push", async () => {
    const { recorder, anna, ben, match, script, live } = await liveCoaches("ws-push");

    const goal = await anna.create("events", { match_id: match, kind: "goal", clock_ms: 120_000 });
    await anna.update("events", goal, { notes: "top corner" });
    expect(await anna.push()).toBe(2);
    expect(recorder.httpPushes).toBe(0);
    expect(script.pushes).toHaveLength(1);
    expect(script.pushes[0]?.changes.map((c) => c.id)).toEqual([goal, goal]);
    expect(await anna.pendingCount()).toBe(0);
    expect((await anna.confirmedState("events", goal))?.fields.notes?.value).toBe("top corner");

    await ben.pull();
    expect(await ben.get("events", goal)).toMatchObject({ values: { kind: "goal", notes: "top corner", clock_ms: 120_000 } });
    live.stop();
  });

  it("go over HTTP again once the live match is stopped", async () => {
    const { recorder, anna, ben, match, script, live } = await liveCoaches("ws-stop");
    const goal = await anna.create("events", { match_id: match, kind: "goal" });
    expect(await anna.push()).toBe(1);
    expect(script.pushes).toHaveLength(1);

    live.stop();
    expect(live.canPush).toBe(false);
    recorder.requests.length = 0;
    await anna.update("events", goal, { notes: "after the stop" });
    expect(await anna.push()).toBe(1);
    expect(recorder.httpPushes).toBe(1);
    expect(script.pushes).toHaveLength(1);
    await ben.pull();
    expect(await ben.get("events", goal)).toMatchObject({ values: { notes: "after the stop" } });
  });

  it("fall back to HTTP when the socket drops before the server got the push", async () => {
    const { recorder, anna, ben, match, script, live } = await liveCoaches("ws-cut-before");

    const goal = await anna.create("events", { match_id: match, kind: "goal" });
    script.cutBeforePush = true;
    expect(await anna.push()).toBe(1);
    expect(script.pushes).toHaveLength(0);
    expect(recorder.httpPushes).toBe(1);
    expect(recorder.pushAnswers.at(-1)).toMatchObject({ applied: 1, duplicates: 0 });
    expect(await anna.pendingCount()).toBe(0);
    expect(await storedChanges(ben, anna.deviceId, goal)).toHaveLength(1);

    // The live match reconnects, and pushes go over it again.
    await waitFor(() => live.canPush, "the reconnected socket");
    await anna.update("events", goal, { notes: "back on the socket" });
    expect(await anna.push()).toBe(1);
    expect(script.pushes).toHaveLength(1);
    expect(recorder.httpPushes).toBe(1);
    live.stop();
  });

  it("fall back to HTTP when the socket drops before the answer, and the change is stored once", async () => {
    const { recorder, anna, ben, match, script, live } = await liveCoaches("ws-cut-at-ack");

    const goal = await anna.create("events", { match_id: match, kind: "goal", clock_ms: 60_000 });
    script.cutAtAck = true;
    expect(await anna.push()).toBe(1);
    // The server stored it from the socket; the HTTP retry is acknowledged as a duplicate.
    expect(script.pushes).toHaveLength(1);
    expect(recorder.httpPushes).toBe(1);
    expect(recorder.pushAnswers.at(-1)).toMatchObject({ applied: 0, duplicates: 1 });
    expect(await anna.pendingCount()).toBe(0);
    const stored = await storedChanges(ben, anna.deviceId, goal);
    expect(stored).toHaveLength(1);
    expect(stored[0]).toMatchObject({ op: "upsert", fields: { kind: "goal", clock_ms: 60_000 } });
    live.stop();
  });

  it("fall back to HTTP when no answer comes within the timeout", async () => {
    const { recorder, anna, ben, match, script, live } = await liveCoaches("ws-timeout", 300);

    const goal = await anna.create("events", { match_id: match, kind: "goal" });
    script.swallowAck = true;
    const started = Date.now();
    expect(await anna.push()).toBe(1);
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
    expect(script.pushes).toHaveLength(1);
    expect(recorder.httpPushes).toBe(1);
    expect(recorder.pushAnswers.at(-1)).toMatchObject({ applied: 0, duplicates: 1 });
    expect(await storedChanges(ben, anna.deviceId, goal)).toHaveLength(1);
    // The silent socket was closed; the live match reconnects by itself.
    await waitFor(() => live.canPush, "the reconnected socket");
    live.stop();
  });

  it("stop waiting when aborted, like an aborted HTTP push", async () => {
    const { recorder, anna, ben, match, script, live } = await liveCoaches("ws-abort");

    const goal = await anna.create("events", { match_id: match, kind: "goal" });
    script.swallowAck = true;
    const controller = new AbortController();
    setTimeout(() => controller.abort(new DOMException("the tab was closed", "AbortError")), 200);
    await expect(anna.push({ signal: controller.signal })).rejects.toBeInstanceOf(SyncUnavailable);
    expect(recorder.httpPushes).toBe(0);
    expect(await anna.pendingCount()).toBe(1);
    // The server did store it: the next push (over the socket still) is a duplicate.
    expect(await anna.push()).toBe(1);
    expect(script.pushes).toHaveLength(2);
    expect(recorder.httpPushes).toBe(0);
    expect(await storedChanges(ben, anna.deviceId, goal)).toHaveLength(1);
    live.stop();
  });

  it("raise the server's refusal as the HTTP answer would", async () => {
    const { email, recorder, anna, annaDb, match } = await coaches("ws-refused");
    // Carl, another device of the club, pushes over HTTP only.
    const carlDb = new Device().open();
    const carl = await SyncClient.open({ db: carlDb, serverUrl, retry: { attempts: 1 } });
    cleanup.push(() => {
      carl.close();
      carlDb.close();
    });
    await carl.login(email, PASSWORD);
    await carl.create("events", { match_id: match, kind: "save" });
    await carl.push();
    const script = newScript();
    const live = await goLive(anna, match, script);
    recorder.requests.length = 0;

    // Both devices skip ten sequence numbers: the server refuses the gap (409 sequence-gap).
    async function refusedPush(client: SyncClient, db: typeof annaDb): Promise<SyncRejected> {
      const row = (await db.table("touchlineState").get("device")) as { key: string; value: { nextSeq: number } };
      await db.table("touchlineState").put({ ...row, value: { ...row.value, nextSeq: row.value.nextSeq + 10 } });
      await client.create("events", { match_id: match, kind: "goal" });
      const error: unknown = await client.push().then(
        () => null,
        (failure: unknown) => failure,
      );
      expect(error).toBeInstanceOf(SyncRejected);
      return error as SyncRejected;
    }
    const overSocket = await refusedPush(anna, annaDb);
    const overHttp = await refusedPush(carl, carlDb);
    expect(script.pushes).toHaveLength(1);
    expect(recorder.httpPushes).toBe(0);

    expect(overSocket.status).toBe(409);
    expect(overSocket.code).toBe("sequence-gap");
    expect(overSocket.expectedSeq).toBe(2);
    expect(overHttp.expectedSeq).toBe(2);
    const shape = (error: SyncRejected) => ({
      name: error.name,
      status: error.status,
      code: error.code,
      title: error.problem.title,
      members: Object.keys(error.problem).sort(),
    });
    expect(shape(overSocket)).toEqual(shape(overHttp));
    expect(await anna.pendingCount()).toBe(1);
    live.stop();
  });
});
