/**
 * Background Sync: the page registers the sync tag when changes are queued, flushes by itself
 * where the browser lacks Background Sync, and the service worker flushes on the `sync` event.
 */

import { afterEach, describe, expect, it } from "vitest";

import { SyncUnavailable } from "../src/errors.js";
import { handleBackgroundSync, scheduleSync, SYNC_TAG, type PageEnvironment, type SyncEventLike } from "../src/serviceWorker.js";
import { SyncClient } from "../src/sync.js";
import type { SyncTransport } from "../src/transport.js";
import type { PullResponse, PushRequest, PushResponse } from "../src/wire.js";
import { Device, waitFor } from "./support.js";

/** A server that acknowledges every push, or is unreachable. */
class StubTransport implements SyncTransport {
  pushes: PushRequest[] = [];
  reachable = true;
  async push(request: PushRequest): Promise<PushResponse> {
    if (!this.reachable) throw new SyncUnavailable("unreachable");
    this.pushes.push(request);
    const last = request.changes.at(-1)?.seq ?? 0;
    return { device_id: request.device_id, acked_seq: last, applied: request.changes.length, duplicates: 0, cursor: last, restamped: [], conflicts: [], server_time_ms: 0 };
  }
  async pull(): Promise<PullResponse> {
    if (!this.reachable) throw new SyncUnavailable("unreachable");
    return { changes: [], conflicts: [], cursor: 0, has_more: false, server_time_ms: 0 };
  }
  async conflicts() {
    return [];
  }
  async reinstate(): Promise<never> {
    throw new Error("not used");
  }
}

class FakePage implements PageEnvironment {
  readonly listeners = new Map<string, Set<() => void>>();
  readonly navigator = { onLine: true };
  readonly document = {
    visibilityState: "visible",
    addEventListener: (type: string, listener: () => void) => this.addEventListener(type, listener),
    removeEventListener: (type: string, listener: () => void) => this.removeEventListener(type, listener),
  };
  addEventListener(type: string, listener: () => void): void {
    this.listeners.set(type, new Set([...(this.listeners.get(type) ?? []), listener]));
  }
  removeEventListener(type: string, listener: () => void): void {
    this.listeners.get(type)?.delete(listener);
  }
  fire(type: string): void {
    for (const listener of this.listeners.get(type) ?? []) listener();
  }
}

const stops: Array<() => void> = [];
afterEach(() => stops.splice(0).forEach((stop) => stop()));

async function client(transport: SyncTransport): Promise<SyncClient> {
  const db = new Device().open();
  const opened = await SyncClient.open({ db, serverUrl: "http://127.0.0.1:9", transport, retry: { attempts: 1 } });
  stops.push(() => {
    opened.close();
    db.close();
  });
  return opened;
}

describe("Background Sync", () => {
  it("registers the sync tag when changes are queued", async () => {
    const transport = new StubTransport();
    const sync = await client(transport);
    const tags: string[] = [];
    stops.push(scheduleSync(sync, { registration: { sync: { register: async (tag) => void tags.push(tag) } }, environment: new FakePage() }));
    await sync.create("teams", { name: "Riverside U10" });
    await waitFor(() => tags.length === 1, "the tag");
    expect(tags).toEqual([SYNC_TAG]);
    // The page leaves the push to the service worker.
    expect(transport.pushes).toHaveLength(0);
  });

  it("flushes from the page where Background Sync is missing: at once, on online and on visibility", async () => {
    const transport = new StubTransport();
    transport.reachable = false;
    const sync = await client(transport);
    const page = new FakePage();
    stops.push(scheduleSync(sync, { registration: {}, environment: page, intervalMs: 60_000 }));
    await sync.create("teams", { name: "Riverside U10" });
    await waitFor(() => sync.status.offline, "the failed flush");
    expect(await sync.pendingCount()).toBe(1);
    transport.reachable = true;
    page.fire("online");
    await waitFor(async () => (await sync.pendingCount()) === 0, "the flush on online");
    await sync.create("teams", { name: "Riverside U11" });
    await waitFor(async () => (await sync.pendingCount()) === 0, "the flush when queued");
    transport.reachable = false;
    await sync.create("teams", { name: "Riverside U12" });
    await waitFor(() => sync.status.offline && !sync.status.syncing, "the failed flush");
    transport.reachable = true;
    page.document.visibilityState = "visible";
    page.fire("visibilitychange");
    await waitFor(async () => (await sync.pendingCount()) === 0, "the flush on visibility");
    expect(transport.pushes.map((p) => p.changes.map((c) => c.seq))).toEqual([[1], [2], [3]]);
  });

  it("flushes from a page with no service worker registered", async () => {
    const transport = new StubTransport();
    const sync = await client(transport);
    const page = new FakePage();
    // What a browser offers before any worker is registered: `ready` would never settle.
    Object.assign(page.navigator, {
      serviceWorker: { ready: new Promise(() => undefined), getRegistration: async () => undefined },
    });
    stops.push(scheduleSync(sync, { environment: page, intervalMs: 60_000 }));
    await sync.create("teams", { name: "Riverside U10" });
    await waitFor(async () => (await sync.pendingCount()) === 0, "the flush when queued");
    expect(transport.pushes).toHaveLength(1);
  });

  it("finds a worker the page registers later, and leaves the push to it", async () => {
    const transport = new StubTransport();
    const sync = await client(transport);
    const page = new FakePage();
    const tags: string[] = [];
    let registered: { sync: { register(tag: string): Promise<void> } } | undefined;
    Object.assign(page.navigator, { serviceWorker: { getRegistration: async () => registered } });
    stops.push(scheduleSync(sync, { environment: page, intervalMs: 60_000 }));
    registered = { sync: { register: async (tag) => void tags.push(tag) } };
    await sync.create("teams", { name: "Riverside U10" });
    await waitFor(() => tags.length === 1, "the tag");
    expect(transport.pushes).toHaveLength(0);
  });

  it("flushes the outbox in the service worker's sync event, and asks for a retry when offline", async () => {
    const transport = new StubTransport();
    const sync = await client(transport);
    await sync.create("teams", { name: "Riverside U10" });
    let listener: ((event: SyncEventLike) => void) | undefined;
    handleBackgroundSync({ addEventListener: (_type, handler) => (listener = handler) }, { openClient: async () => sync });
    const fire = (tag: string) => {
      let work: Promise<unknown> = Promise.resolve("not handled");
      listener?.({ tag, waitUntil: (promise) => (work = promise) });
      return work;
    };
    expect(await fire("another-tag")).toBe("not handled");
    transport.reachable = false;
    await expect(fire(SYNC_TAG)).rejects.toBeInstanceOf(SyncUnavailable);
    transport.reachable = true;
    await fire(SYNC_TAG);
    expect(await sync.pendingCount()).toBe(0);
    expect(transport.pushes).toHaveLength(1);
  });
});
