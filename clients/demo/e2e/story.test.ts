/**
 * The coach-to-family story in a real browser (headless Chromium) against a real sync server:
 *
 * 1. Two coaches of one club open the demo page in two browser contexts; Anna starts a match
 *    and logs a goal, Ben follows the match.
 * 2. Anna shares the match; a third context (a parent's phone, 390×844) opens the link and
 *    sees the score; the overlay strip is opened too. Both are screenshotted, and the viewer
 *    page's HTML, JS and CSS stay within the byte budget on the wire.
 * 3. Both coaches go offline, log a goal each and change the same event's scorer and notes,
 *    come back online one after the other and converge to the same events and the same
 *    conflicts; the parent's page shows each new score within a second of the server
 *    acknowledging the push that made it.
 * 4. Anna switches the link off: the parent's page turns into the friendly notice, and opening
 *    the link again answers 410 with the same notice.
 */

import { writeFileSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { join } from "node:path";
import { brotliDecompressSync, gunzipSync } from "node:zlib";

import { chromium, type Browser, type BrowserContext, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, inject, test } from "vitest";

import { CHROMIUM, CHROMIUM_ARGS } from "./chromium.js";

const serverUrl = inject("serverUrl");
const demoUrl = inject("demoUrl");
const screenshots = inject("screenshots");

/** HTML, JS and CSS of the viewer page together, compressed, in bytes. */
const BUDGET_BYTES = 30_000;
/** From the push's acknowledgement to the parent's page showing the new score. */
const MERGE_TO_VIEWER_MS = 1_000;
const WAIT_MS = 10_000;

interface Coach {
  readonly email: string;
  readonly password: string;
  readonly device: string;
}

const ANNA: Coach = { email: "anna@riverside.example", password: "correct horse battery staple", device: "anna-phone" };
const BEN: Coach = { email: "ben@riverside.example", password: "another horse battery staple", device: "ben-phone" };

interface TokenPair {
  readonly access_token: string;
  readonly club: { readonly id: string };
}

interface ScoreChange {
  readonly home: string;
  readonly away: string;
  readonly at: number;
}

declare global {
  interface Window {
    __scoreChanges?: ScoreChange[];
  }
}

async function api<T>(method: string, path: string, body?: unknown, token?: string): Promise<T> {
  const headers: Record<string, string> = { accept: "application/json" };
  if (body !== undefined) headers["content-type"] = "application/json";
  if (token !== undefined) headers.authorization = `Bearer ${token}`;
  const response = await fetch(`${serverUrl}${path}`, { method, headers, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
  const text = await response.text();
  if (!response.ok) throw new Error(`${method} ${path} answered ${response.status}: ${text}`);
  return (text === "" ? undefined : JSON.parse(text)) as T;
}

/** Relative luminance (WCAG 2) of a computed `rgb(r, g, b)` colour. */
function luminance(colour: string): number {
  const [r, g, b] = (colour.match(/\d+(\.\d+)?/g) ?? []).slice(0, 3).map((part) => {
    const c = Number(part) / 255;
    return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
  });
  return 0.2126 * (r ?? 0) + 0.7152 * (g ?? 0) + 0.0722 * (b ?? 0);
}

/** WCAG 2 contrast ratio of two computed colours. */
function contrast(a: string, b: string): number {
  const [light, dark] = [luminance(a), luminance(b)].sort((x, y) => y - x) as [number, number];
  return (light + 0.05) / (dark + 0.05);
}

/** Wait until `selector`'s text is `expected`; on timeout, say what it was instead. */
async function waitText(page: Page, selector: string, expected: string, timeout = WAIT_MS): Promise<void> {
  try {
    await page.waitForFunction(([s, t]) => document.querySelector(s)?.textContent?.trim() === t, [selector, expected] as const, { timeout });
  } catch {
    const actual = await page.evaluate((s) => document.querySelector(s)?.textContent?.trim() ?? "(missing)", selector);
    throw new Error(`${page.url()}: ${selector} reads "${actual}", expected "${expected}" within ${timeout} ms`);
  }
}

/** Wait until a demo page says it is online with nothing waiting to sync. */
async function waitSynced(page: Page, who: string): Promise<void> {
  try {
    await page.waitForFunction(() => document.querySelector("#status")?.getAttribute("data-state") === "online" && document.querySelector("#pending")?.textContent === "0", undefined, {
      timeout: WAIT_MS,
    });
  } catch {
    const status = await page.evaluate(() => `${document.querySelector("#status")?.textContent?.replace(/\s+/g, " ").trim()} / ${document.querySelector("#error")?.textContent}`);
    throw new Error(`${who}'s page did not sync: ${status}`);
  }
}

/** The events list of a demo page, one line per event: id, kind, side, scorer, notes. */
function eventLines(page: Page): Promise<string[]> {
  return page.$$eval("#events li", (items) =>
    items.map((item) => [item.getAttribute("data-id"), ...["kind", "side", "scorer", "notes"].map((name) => item.querySelector(`.${name}`)?.textContent ?? "")].join(" | ")),
  );
}

async function editEvent(page: Page, eventId: string, scorer: string, notes: string): Promise<void> {
  await page.click(`#events li[data-id="${eventId}"] button.edit`);
  await page.fill('#edit-event [name="scorer"]', scorer);
  await page.fill('#edit-event [name="notes"]', notes);
  await page.click('#edit-event button[type="submit"]');
  await waitText(page, `#events li[data-id="${eventId}"] .scorer`, scorer);
}

/** GET `url` as a browser would, asking for brotli or gzip; the body's bytes as they came. */
function fetchRaw(url: string): Promise<{ status: number; encoding: string; bytes: number; text: string }> {
  return new Promise((resolve, reject) => {
    const request = httpRequest(url, { headers: { "accept-encoding": "br, gzip" } }, (response) => {
      const chunks: Buffer[] = [];
      response.on("data", (chunk: Buffer) => chunks.push(chunk));
      response.on("error", reject);
      response.on("end", () => {
        const raw = Buffer.concat(chunks);
        const encoding = String(response.headers["content-encoding"] ?? "identity");
        const plain = encoding === "br" ? brotliDecompressSync(raw) : encoding === "gzip" ? gunzipSync(raw) : raw;
        resolve({ status: response.statusCode ?? 0, encoding, bytes: raw.length, text: plain.toString("utf8") });
      });
    });
    request.on("error", reject);
    request.end();
  });
}

/** Scripts and stylesheets an HTML page references, as absolute URLs. */
function referencedAssets(html: string, base: string): string[] {
  const found: string[] = [];
  for (const tag of html.match(/<script\b[^>]*>/gi) ?? []) {
    const src = /\bsrc\s*=\s*["']?([^"'\s>]+)/i.exec(tag)?.[1];
    if (src !== undefined) found.push(new URL(src, base).href);
  }
  for (const tag of html.match(/<link\b[^>]*>/gi) ?? []) {
    const rel = /\brel\s*=\s*["']?([^"'>]+)/i.exec(tag)?.[1]?.toLowerCase() ?? "";
    const href = /\bhref\s*=\s*["']?([^"'\s>]+)/i.exec(tag)?.[1];
    if (href !== undefined && /\b(stylesheet|modulepreload|preload)\b/.test(rel)) found.push(new URL(href, base).href);
  }
  return found;
}

describe("two coaches offline, a parent watching", () => {
  let browser: Browser;
  let annaContext: BrowserContext;
  let benContext: BrowserContext;
  let viewerContext: BrowserContext;
  let anna: Page;
  let ben: Page;
  let viewer: Page;
  let owner: TokenPair;
  let matchId = "";
  let firstGoal = "";
  let shareUrl = "";
  /** Scripts, stylesheets and documents of the server the viewer page loaded. */
  const viewerLoads = new Set<string>();
  const pageErrors: string[] = [];

  async function openCoach(coach: Coach, extra: Record<string, string> = {}): Promise<{ context: BrowserContext; page: Page }> {
    const context = await browser.newContext({ viewport: { width: 800, height: 900 } });
    const page = await context.newPage();
    page.on("pageerror", (error) => pageErrors.push(`${coach.device}: ${error.message}`));
    const query = new URLSearchParams({ server: serverUrl, email: coach.email, password: coach.password, device: coach.device, ...extra });
    await page.goto(`${demoUrl}/?${query}`);
    return { context, page };
  }

  beforeAll(async () => {
    // The club: Anna founds it, Ben joins as a coach by invite.
    owner = await api<TokenPair>("POST", "/api/auth/signup", { email: ANNA.email, password: ANNA.password, team_name: "Riverside U11" });
    const invite = await api<{ code: string }>("POST", `/api/clubs/${owner.club.id}/invites`, { role: "coach" }, owner.access_token);
    await api("POST", "/api/auth/signup", { email: BEN.email, password: BEN.password, invite_code: invite.code });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    console.log(`screenshots: ${screenshots}`);
  });

  afterAll(async () => {
    await browser?.close();
  });

  test("Anna starts a match on the demo page and Ben follows it", async () => {
    ({ context: annaContext, page: anna } = await openCoach(ANNA));
    await anna.waitForSelector("#matches:not([hidden])", { timeout: WAIT_MS });
    await anna.fill('#new-match [name="opponent"]', "Hillview U11");
    await anna.click('#new-match button[type="submit"]');
    await waitText(anna, "#home-name", "Riverside U11");
    await waitText(anna, "#away-name", "Hillview U11");
    matchId = new URL(anna.url()).searchParams.get("match") ?? "";
    expect(matchId).toMatch(/^[0-9a-f-]{36}$/);

    await anna.click("#goal-home");
    await waitText(anna, "#home-score", "1");
    await waitSynced(anna, "Anna");
    firstGoal = (await anna.getAttribute("#events li", "data-id")) ?? "";
    expect(firstGoal).not.toBe("");

    ({ context: benContext, page: ben } = await openCoach(BEN, { match: matchId }));
    await waitText(ben, "#home-name", "Riverside U11");
    await waitText(ben, "#home-score", "1");
    await ben.waitForSelector('#status[data-live="open"]', { timeout: WAIT_MS });
    await waitSynced(ben, "Ben");
    expect(await ben.$$eval("#events li", (items) => items.length)).toBe(1);
    // The server agrees: the score derives from the merged events.
    expect(await api("GET", `/api/matches/${matchId}/score`, undefined, owner.access_token)).toEqual({ home: 1, away: 0 });
  });

  test("a parent opens the share link on a phone, and the overlay", async () => {
    await anna.click("#share");
    await anna.waitForSelector("#share-url[href]", { timeout: WAIT_MS });
    shareUrl = (await anna.getAttribute("#share-url", "href")) ?? "";
    expect(shareUrl.startsWith(`${serverUrl}/watch/`)).toBe(true);

    viewerContext = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true });
    viewer = await viewerContext.newPage();
    viewer.on("pageerror", (error) => pageErrors.push(`viewer: ${error.message}`));
    viewer.on("request", (request) => {
      if (request.url().startsWith(serverUrl) && ["document", "script", "stylesheet"].includes(request.resourceType())) viewerLoads.add(request.url());
    });
    const response = await viewer.goto(shareUrl);
    expect(response?.status()).toBe(200);
    await viewer.waitForSelector('body[data-state="live"]', { timeout: WAIT_MS });
    const [text, background] = await viewer.evaluate(() => [getComputedStyle(document.body).color, getComputedStyle(document.body).backgroundColor]);
    expect(contrast(text, background)).toBeGreaterThanOrEqual(4.5);
    await waitText(viewer, "#home-name", "Riverside U11");
    await waitText(viewer, "#away-name", "Hillview U11");
    await waitText(viewer, "#home-score", "1");
    await waitText(viewer, "#away-score", "0");
    expect(await viewer.$$eval("#feed > li", (items) => items.length)).toBe(1);
    await viewer.screenshot({ path: join(screenshots, "viewer-390x844.png") });

    // The overlay, as a streaming tool opens it over a 1280×720 video.
    const overlayContext = await browser.newContext({ viewport: { width: 1280, height: 720 } });
    const overlay = await overlayContext.newPage();
    overlay.on("pageerror", (error) => pageErrors.push(`overlay: ${error.message}`));
    expect((await overlay.goto(`${shareUrl}/overlay`))?.status()).toBe(200);
    await waitText(overlay, "#home-score", "1");
    await waitText(overlay, "#away-score", "0");
    await waitText(overlay, "#home-name", "Riverside U11");
    await overlay.waitForSelector("#clock", { timeout: WAIT_MS });
    // A streaming tool lays the strip over the video: nothing behind it may be painted.
    const backgrounds = await overlay.evaluate(() => [getComputedStyle(document.documentElement).backgroundColor, getComputedStyle(document.body).backgroundColor]);
    for (const colour of backgrounds) expect(colour).toMatch(/^(transparent|rgba\(0, 0, 0, 0\))$/);
    await overlay.screenshot({ path: join(screenshots, "overlay.png"), omitBackground: true });
    await overlayContext.close();
    expect(pageErrors).toEqual([]);
  });

  test("the viewer page's HTML, JS and CSS stay under the byte budget, compressed", async () => {
    const token = new URL(shareUrl).pathname.split("/")[2] ?? "";
    const page = await fetchRaw(shareUrl);
    expect(page.status).toBe(200);
    const urls = new Set([shareUrl, ...referencedAssets(page.text, shareUrl), ...viewerLoads]);
    const lines: string[] = [];
    let total = 0;
    for (const url of urls) {
      const answer = url === shareUrl ? page : await fetchRaw(url);
      expect(answer.status, url).toBe(200);
      total += answer.bytes;
      lines.push(`${String(answer.bytes).padStart(7)} B  ${answer.encoding.padEnd(8)} ${url.replace(token, "<token>")}`);
    }
    console.log(`viewer page on the wire (Accept-Encoding: br, gzip):\n${lines.join("\n")}\n${String(total).padStart(7)} B  in all (budget ${BUDGET_BYTES} B)`);
    expect(urls.size).toBeGreaterThan(1);
    expect(total).toBeLessThan(BUDGET_BYTES);
  });

  test("offline edits of the same event converge, and the parent sees each score within a second", async () => {
    // Every change of the parent's score line, with the page's own clock.
    await viewer.evaluate(() => {
      const read = () => ({ home: document.querySelector("#home-score")?.textContent ?? "", away: document.querySelector("#away-score")?.textContent ?? "" });
      let last = read();
      window.__scoreChanges = [];
      new MutationObserver(() => {
        const now = read();
        if (now.home !== last.home || now.away !== last.away) window.__scoreChanges?.push({ ...now, at: Date.now() });
        last = now;
      }).observe(document.body, { subtree: true, childList: true, characterData: true });
    });

    await annaContext.setOffline(true);
    await benContext.setOffline(true);
    await anna.waitForSelector('#status[data-state="offline"]', { timeout: WAIT_MS });
    await ben.waitForSelector('#status[data-state="offline"]', { timeout: WAIT_MS });

    await anna.click("#goal-away");
    await waitText(anna, "#away-score", "1");
    await editEvent(anna, firstGoal, "Maya Kent", "Left foot, top corner");
    await ben.click("#goal-home");
    await waitText(ben, "#home-score", "2");
    await editEvent(ben, firstGoal, "Jamie Smith", "Header from the corner");
    expect(Number(await anna.textContent("#pending"))).toBeGreaterThan(0);
    expect(Number(await ben.textContent("#pending"))).toBeGreaterThan(0);
    // Nothing has left the phones: the parent still sees 1–0.
    expect([await viewer.textContent("#home-score"), await viewer.textContent("#away-score")]).toEqual(["1", "0"]);

    const ackBefore = async (page: Page) => page.evaluate(() => window.__lastAck ?? 0);
    const measure = async (page: Page, who: string, side: "home" | "away", expected: string): Promise<number> => {
      const before = await ackBefore(page);
      await (page === anna ? annaContext : benContext).setOffline(false);
      await waitSynced(page, who);
      const ackedAt = await ackBefore(page);
      expect(ackedAt, `${who}'s push was acknowledged`).toBeGreaterThan(before);
      await waitText(viewer, `#${side}-score`, expected, 5_000);
      const changes = (await viewer.evaluate(() => window.__scoreChanges ?? [])) as ScoreChange[];
      const seen = changes.find((change) => change[side] === expected);
      expect(seen, `the parent's page showed ${side} ${expected}`).toBeDefined();
      const delay = (seen?.at ?? Infinity) - ackedAt;
      // Negative: the parent's page had the score before the coach's page took the answer in.
      console.log(`${who}'s push: the parent's page showed ${side} ${expected} at ${delay >= 0 ? "+" : ""}${delay} ms from the acknowledgement`);
      return delay;
    };
    // Anna comes back first with the away goal, then Ben with the home goal.
    expect(await measure(anna, "Anna", "away", "1")).toBeLessThan(MERGE_TO_VIEWER_MS);
    expect(await measure(ben, "Ben", "home", "2")).toBeLessThan(MERGE_TO_VIEWER_MS);

    // Both phones end with the same events, the same scorer and the same conflicts.
    const deadline = Date.now() + WAIT_MS;
    let annaEvents: string[] = [];
    let benEvents: string[] = [];
    let conflicts: [string[], string[]] = [[], []];
    while (Date.now() < deadline) {
      annaEvents = await eventLines(anna);
      benEvents = await eventLines(ben);
      conflicts = [await anna.$$eval("#conflicts li", (items) => items.map((item) => item.textContent ?? "")), await ben.$$eval("#conflicts li", (items) => items.map((item) => item.textContent ?? ""))];
      if (annaEvents.length === 3 && annaEvents.join("\n") === benEvents.join("\n") && conflicts[0].length >= 2 && conflicts[0].join("\n") === conflicts[1].join("\n")) break;
      await anna.waitForTimeout(100);
    }
    expect(benEvents).toEqual(annaEvents);
    expect(annaEvents).toHaveLength(3);
    // Ben's edit came later (a greater HLC), so his scorer and notes win on every replica.
    const edited = annaEvents.find((line) => line.startsWith(firstGoal)) ?? "";
    expect(edited).toContain("Jamie Smith");
    expect(edited).toContain("Header from the corner");
    // The losing values are not lost: each phone lists both conflicts (scorer and notes).
    expect(conflicts[1]).toEqual(conflicts[0]);
    expect(conflicts[0].join("\n")).toContain("Maya Kent");
    expect(conflicts[0].join("\n")).toContain("Left foot, top corner");
    for (const page of [anna, ben]) {
      await waitText(page, "#home-score", "2");
      await waitText(page, "#away-score", "1");
    }

    // The server, the parent and the coaches agree on 2–1.
    expect(await api("GET", `/api/matches/${matchId}/score`, undefined, owner.access_token)).toEqual({ home: 2, away: 1 });
    await waitText(viewer, "#home-score", "2");
    await waitText(viewer, "#away-score", "1");
    await viewer.waitForFunction(() => document.querySelectorAll("#feed > li").length === 3, undefined, { timeout: WAIT_MS });
    // The parent sees the winning scorer as first name and initial, never the surname.
    await viewer.waitForFunction(() => document.querySelector("#feed")?.textContent?.includes("Jamie S.") === true, undefined, { timeout: WAIT_MS });
    const feed = (await viewer.textContent("#feed")) ?? "";
    expect(feed).not.toContain("Smith");
    expect(feed).not.toContain("Kent");
    expect(feed).not.toContain("Header from the corner");
    await viewer.screenshot({ path: join(screenshots, "viewer-390x844-after-sync.png") });
    await anna.screenshot({ path: join(screenshots, "coach-anna.png"), fullPage: true });
    await ben.screenshot({ path: join(screenshots, "coach-ben.png"), fullPage: true });
    expect(pageErrors).toEqual([]);
  });

  test("where WebSockets are broken, the page says so, falls back to Server-Sent Events and fits 320 px", async () => {
    // A narrow old phone on a network that breaks WebSockets: every socket to /ws/ is refused.
    const context = await browser.newContext({ viewport: { width: 320, height: 640 }, colorScheme: "dark" });
    await context.routeWebSocket(/\/ws\/match\//, (socket) => socket.close({ code: 1011, reason: "blocked" }));
    await context.addInitScript(() => {
      const seen: string[] = [];
      (window as unknown as { __states: string[] }).__states = seen;
      new MutationObserver(() => {
        const state = document.body?.dataset.state;
        if (state !== undefined && seen.at(-1) !== state) seen.push(state);
      }).observe(document, { subtree: true, attributes: true, attributeFilter: ["data-state"] });
    });
    const page = await context.newPage();
    page.on("pageerror", (error) => pageErrors.push(`viewer (SSE): ${error.message}`));
    const streams: string[] = [];
    page.on("request", (request) => {
      if (request.url().includes("/stream")) streams.push(request.url());
    });
    await page.goto(shareUrl);
    await page.waitForSelector('body[data-state="live"]', { timeout: WAIT_MS });
    expect(streams.length).toBeGreaterThan(0);
    const states = await page.evaluate(() => (window as unknown as { __states: string[] }).__states);
    expect(states).toContain("reconnecting");
    const before = Number(await page.textContent("#home-score"));
    await anna.click("#goal-home");
    await waitText(page, "#home-score", String(before + 1));
    // Nothing wider than the screen: no sideways scrolling on a 320 px phone.
    expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(320);
    // Dark mode follows the phone, with text that stays readable (WCAG contrast of at least 4.5).
    const [text, background] = await page.evaluate(() => [getComputedStyle(document.body).color, getComputedStyle(document.body).backgroundColor]);
    expect(contrast(text, background)).toBeGreaterThanOrEqual(4.5);
    expect(luminance(background)).toBeLessThan(0.1);
    await page.screenshot({ path: join(screenshots, "viewer-320-sse.png") });
    await context.close();
    expect(pageErrors).toEqual([]);
  });

  test("switching the link off turns the parent's page into a friendly notice", async () => {
    await anna.click("#revoke");
    await waitText(anna, "#share-url", "The link is switched off.");
    await viewer.waitForSelector('body[data-state="ended"]', { timeout: 5_000 });
    await viewer.waitForSelector("#notice", { state: "visible", timeout: WAIT_MS });
    const notice = (await viewer.textContent("#notice")) ?? "";
    expect(notice).toMatch(/link/i);
    const body = (await viewer.textContent("body")) ?? "";
    expect(body).not.toMatch(/traceback|exception|stack|undefined|null|\bat \S+:\d+/i);
    await viewer.screenshot({ path: join(screenshots, "viewer-revoked.png") });

    const again = await viewerContext.newPage();
    again.on("pageerror", (error) => pageErrors.push(`viewer (reopened): ${error.message}`));
    const response = await again.goto(shareUrl);
    expect(response?.status()).toBe(410);
    expect(response?.headers()["content-type"]).toMatch(/^text\/html/);
    expect(await again.getAttribute("body", "data-state")).toBe("ended");
    await again.waitForSelector("#notice", { state: "visible", timeout: WAIT_MS });
    expect((await again.textContent("#notice")) ?? "").toMatch(/link/i);
    expect(pageErrors).toEqual([]);
    writeFileSync(join(screenshots, "README.txt"), "Written by the browser test (clients/demo/e2e/story.test.ts): the viewer page on a 390x844 phone (at 2x), the same page after the offline edits synced, the overlay strip over a 1280x720 frame (transparent background), the notice of a switched-off link, and both coaches' demo pages once they converged.\n");
  });
});
