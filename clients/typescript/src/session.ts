/**
 * A device's login (PROTOCOL.md §13): the token pair, kept in IndexedDB with the sync state so
 * that a service worker can push with it too, and renewed when the server refuses it.
 *
 * Refresh tokens rotate and are single-use: presenting a used one makes the server revoke the
 * whole login. Two tabs (or a tab and the service worker) meeting the same expired token must
 * therefore refresh it once between them. Renewal runs under a Web Lock where the platform has
 * them, and re-reads the stored pair first: if another context renewed it meanwhile, its new
 * token is used and nothing is refreshed twice.
 */

import { LoginRequired, SyncRejected } from "./errors.js";
import type { StoredSession } from "./store.js";
import { requestJson, type FetchFunction } from "./transport.js";
import type { TokenPair } from "./wire.js";

/** Where the token pair is kept between runs. */
export interface SessionStore {
  load(): Promise<StoredSession | undefined>;
  save(session: StoredSession | null): Promise<void>;
}

/** What a signup sends (§13.1): a new club with its team, or joining one by invite. */
export type SignupRequest =
  | { email: string; password: string; team_name: string }
  | { email: string; password: string; invite_code: string };

// Renew a little before expiry, so a request does not leave with a token that dies in flight.
const EXPIRY_MARGIN_MS = 30_000;
const LOCK_NAME = "touchline-session";

interface LockManagerLike {
  request<T>(name: string, callback: () => Promise<T>): Promise<T>;
}

export class Session {
  readonly #base: string;
  readonly #store: SessionStore;
  readonly #fetch: FetchFunction;
  readonly #now: () => number;
  #current: StoredSession | undefined;
  #renewing: Promise<StoredSession> | null = null;

  constructor(options: { baseUrl: string; store: SessionStore; fetch?: FetchFunction; now?: () => number }) {
    this.#base = options.baseUrl.replace(/\/+$/, "");
    this.#store = options.store;
    this.#fetch = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
    this.#now = options.now ?? Date.now;
  }

  /** The stored login, if any (club, user, device and role included). */
  async current(): Promise<StoredSession | undefined> {
    this.#current ??= await this.#store.load();
    return this.#current;
  }

  /** Log this device in (§13.2); the device id is the installation's, never another's. */
  async login(email: string, password: string, deviceId: string): Promise<StoredSession> {
    return this.#adopt(await this.#exchange("/api/auth/login", { email, password, device_id: deviceId }));
  }

  /** Sign up (§13.1) and log this device in. */
  async signup(request: SignupRequest, deviceId: string): Promise<StoredSession> {
    return this.#adopt(await this.#exchange("/api/auth/signup", { ...request, device_id: deviceId }));
  }

  /** End this device's sessions on the server (best effort) and forget the tokens. */
  async logout(signal?: AbortSignal): Promise<void> {
    const session = await this.current();
    if (session !== undefined) {
      try {
        await requestJson(this.#fetch, `${this.#base}/api/auth/logout`, { method: "POST", token: session.accessToken, signal });
      } finally {
        this.#current = undefined;
        await this.#store.save(null);
      }
    }
  }

  /** An access token to send now, renewed first when it is about to expire. */
  async accessToken(signal?: AbortSignal): Promise<string> {
    const session = await this.current();
    if (session === undefined) throw new LoginRequired("this device is not logged in");
    if (session.expiresAt - EXPIRY_MARGIN_MS > this.#now()) return session.accessToken;
    return this.renew(session.accessToken, signal);
  }

  /**
   * The server refused `refused` (401): get a fresh token, refreshing the pair at most once
   * however many requests met the refusal. Throws {@link LoginRequired} when the refresh
   * token is dead too (expired, used, or the login was ended): the user must log in again.
   */
  async renew(refused: string, signal?: AbortSignal): Promise<string> {
    this.#renewing ??= this.#withLock(() => this.#renewOnce(refused, signal)).finally(() => {
      this.#renewing = null;
    });
    return (await this.#renewing).accessToken;
  }

  async #renewOnce(refused: string, signal?: AbortSignal): Promise<StoredSession> {
    // Another tab or the service worker may have renewed it already: use theirs.
    const stored = await this.#store.load();
    if (stored === undefined) throw new LoginRequired("this device is not logged in");
    if (stored.accessToken !== refused && stored.expiresAt - EXPIRY_MARGIN_MS > this.#now()) {
      this.#current = stored;
      return stored;
    }
    try {
      return this.#adopt(await this.#exchange("/api/auth/refresh", { refresh_token: stored.refreshToken }, signal));
    } catch (error) {
      if (error instanceof SyncRejected && error.status === 401) {
        this.#current = undefined;
        await this.#store.save(null);
        throw new LoginRequired(`the login ended (${error.code}); log in again`);
      }
      throw error;
    }
  }

  async #exchange(path: string, body: object, signal?: AbortSignal): Promise<TokenPair> {
    const sentAt = this.#now();
    const { body: pair } = await requestJson<TokenPair>(this.#fetch, this.#base + path, { method: "POST", body, signal });
    // Measured from before the request, so network time only makes the expiry earlier.
    return { ...pair, expires_in: pair.expires_in - Math.ceil((this.#now() - sentAt) / 1000) };
  }

  async #adopt(pair: TokenPair): Promise<StoredSession> {
    const session: StoredSession = {
      accessToken: pair.access_token,
      refreshToken: pair.refresh_token,
      expiresAt: this.#now() + pair.expires_in * 1000,
      clubId: pair.club.id,
      userId: pair.user.id,
      deviceId: pair.device_id,
      role: pair.role,
    };
    // Stored before it is used: a refresh token that is lost after the server rotated it
    // would end the login.
    await this.#store.save(session);
    this.#current = session;
    return session;
  }

  async #withLock<T>(work: () => Promise<T>): Promise<T> {
    const locks = (globalThis.navigator as { locks?: LockManagerLike } | undefined)?.locks;
    return locks === undefined ? work() : locks.request(LOCK_NAME, work);
  }
}
