/**
 * Background Sync: changes queued while offline are pushed when the signal returns, even if
 * the app's page is closed by then.
 *
 * - In the page, {@link scheduleSync} registers a one-off sync tag with the service worker
 *   whenever changes are queued. Where the browser has no Background Sync (Safari on
 *   iPhone), the page flushes itself instead: when it comes back online, when it becomes
 *   visible again, and on a timer while changes wait.
 * - In the service worker, {@link handleBackgroundSync} answers the `sync` event for that tag
 *   by flushing the outbox (push, then pull). A flush that cannot reach the server rejects,
 *   so the browser retries the tag later with its own backoff.
 *
 * Both sides work on the same IndexedDB state, so whichever runs first does the work and the
 * other finds nothing left to send; a push repeated by both is acknowledged as duplicates.
 */

import { SyncUnavailable } from "./errors.js";
import type { SyncClient } from "./sync.js";

/** The default Background Sync tag. */
export const SYNC_TAG = "touchline-sync";

/** The part of `ServiceWorkerRegistration` used here (`sync` exists where Background Sync does). */
export interface SyncRegistration {
  readonly sync?: { register(tag: string): Promise<void> };
}

/** The browser surface the page side listens to; the real `window` and `document` by default. */
export interface PageEnvironment {
  addEventListener(type: "online", listener: () => void): void;
  removeEventListener(type: "online", listener: () => void): void;
  readonly document?: {
    readonly visibilityState: string;
    addEventListener(type: "visibilitychange", listener: () => void): void;
    removeEventListener(type: "visibilitychange", listener: () => void): void;
  };
  readonly navigator?: {
    readonly onLine?: boolean;
    readonly serviceWorker?: { getRegistration(): Promise<SyncRegistration | undefined> };
  };
}

export interface ScheduleOptions {
  /** The service worker's registration; by default the page's current one
   * (`navigator.serviceWorker.getRegistration()`), looked up each time changes are queued. */
  readonly registration?: SyncRegistration | Promise<SyncRegistration> | null;
  readonly tag?: string;
  /** While changes wait and Background Sync is missing, flush this often (default 30 s). */
  readonly intervalMs?: number;
  readonly environment?: PageEnvironment;
}

/**
 * Page side: push queued changes through Background Sync where it exists, and by the page's
 * own flushes where it does not. Returns a function that stops listening.
 */
export function scheduleSync(client: SyncClient, options: ScheduleOptions = {}): () => void {
  const environment = options.environment ?? (globalThis as unknown as PageEnvironment);
  const tag = options.tag ?? SYNC_TAG;
  // Not `navigator.serviceWorker.ready`: it never settles on a page without a worker, and
  // nothing would ever be flushed from there.
  const given = options.registration;
  const registration = (): Promise<SyncRegistration | null> =>
    Promise.resolve(given === undefined ? currentRegistration(environment) : given).catch(() => null);
  const visible = () => environment.document === undefined || environment.document.visibilityState !== "hidden";
  const online = () => environment.navigator?.onLine !== false;

  // Failures are reported through the client's status event; here they only end the attempt.
  const flush = () => {
    if (online()) client.sync().catch(() => undefined);
  };
  const onQueued = async () => {
    const found = await registration();
    if (found?.sync !== undefined) {
      try {
        await found.sync.register(tag);
        return;
      } catch {
        // Background Sync refused (permissions, private mode): flush from the page instead.
      }
    }
    flush();
  };
  const onVisibility = () => {
    if (visible()) flush();
  };

  const stopQueued = client.on("queued", () => void onQueued());
  environment.addEventListener("online", flush);
  environment.document?.addEventListener("visibilitychange", onVisibility);
  const interval = options.intervalMs ?? 30_000;
  const timer = setInterval(() => {
    void (async () => {
      const found = await registration();
      if (found?.sync === undefined && visible() && client.status.pending > 0) flush();
    })();
  }, interval);
  return () => {
    stopQueued();
    clearInterval(timer);
    environment.removeEventListener("online", flush);
    environment.document?.removeEventListener("visibilitychange", onVisibility);
  };
}

async function currentRegistration(environment: PageEnvironment): Promise<SyncRegistration | null> {
  const container = environment.navigator?.serviceWorker;
  return (await container?.getRegistration()) ?? null;
}

/** The part of a `SyncEvent` used here. */
export interface SyncEventLike {
  readonly tag: string;
  waitUntil(work: Promise<unknown>): void;
}

/** The part of `ServiceWorkerGlobalScope` used here. */
export interface ServiceWorkerScopeLike {
  addEventListener(type: "sync", listener: (event: SyncEventLike) => void): void;
}

export interface BackgroundSyncOptions {
  /** Opens the client in the service worker: the same database and mappings as the page. */
  readonly openClient: () => Promise<SyncClient>;
  readonly tag?: string;
}

/**
 * Service-worker side: flush the outbox when the browser fires the sync tag. Returns the
 * flush itself, for a `message` handler or a periodic sync.
 */
export function handleBackgroundSync(scope: ServiceWorkerScopeLike, options: BackgroundSyncOptions): () => Promise<void> {
  const tag = options.tag ?? SYNC_TAG;
  let opened: Promise<SyncClient> | null = null;
  const flush = async () => {
    opened ??= options.openClient().catch((error: unknown) => {
      opened = null;
      throw error;
    });
    const client = await opened;
    try {
      await client.push();
      await client.pull();
    } catch (error) {
      // Rejecting asks the browser to retry the tag later; a refusal or an ended login will
      // not get better by retrying, and the page reports it when it next opens.
      if (error instanceof SyncUnavailable) throw error;
    }
  };
  scope.addEventListener("sync", (event) => {
    if (event.tag === tag) event.waitUntil(flush());
  });
  return flush;
}
