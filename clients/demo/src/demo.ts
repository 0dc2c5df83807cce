/**
 * A small coach page on the Touchline sync client: log in, pick or start a match, log goals,
 * change an event's scorer or notes, watch the pending count, the conflicts, and share the
 * match with family. Everything is written to IndexedDB first and synced when the network
 * allows, exactly as in the coaches' app.
 *
 * Query parameters log in straight away: `?server=…&email=…&password=…&device=…[&match=…]`.
 */

import Dexie from "dexie";

import {
  LoginRequired,
  SYNC_STORES,
  SyncClient,
  randomId,
  scheduleSync,
  stableId,
  type ConflictRecord,
  type LiveMatch,
  type LocalEdit,
  type Scalar,
  type SyncStatus,
} from "../../typescript/src/index.js";

declare global {
  interface Window {
    /** Epoch ms of the last push the server acknowledged (read by the browser test). */
    __lastAck?: number;
  }
}

type Values = Record<string, Scalar>;
interface Row {
  readonly id: string;
  readonly values: Values;
  readonly archived: boolean;
}

const REMEMBERED = "touchline-demo";
const FIELD_LABELS: Readonly<Record<string, string>> = { player_id: "scorer", notes: "notes", team_id: "side", _deleted: "deleted" };

const $ = <T extends HTMLElement = HTMLElement>(selector: string): T => {
  const found = document.querySelector<T>(selector);
  if (found === null) throw new Error(`the page lacks ${selector}`);
  return found;
};

let client: SyncClient | null = null;
let clubId = "";
let matchId: string | null = null;
let live: LiveMatch | null = null;
let shareId: string | null = null;
let lastPending = 0;

// -- opening the client ---------------------------------------------------------------------

async function openClient(server: string, device: string): Promise<SyncClient> {
  // One database per device id, so two tabs can play two coaches.
  const db = new Dexie(`touchline-demo-${device}`);
  db.version(1).stores({ ...SYNC_STORES });
  return SyncClient.open({ db, serverUrl: server, deviceId: device, retry: { attempts: 4, baseMs: 250, capMs: 2_000 } });
}

async function logIn(form: FormData, signup: boolean): Promise<void> {
  const server = String(form.get("server") ?? "").trim();
  const device = String(form.get("device") ?? "").trim();
  const email = String(form.get("email") ?? "").trim();
  const password = String(form.get("password") ?? "");
  const sync = await openClient(server, device);
  const team = String(form.get("team") ?? "").trim();
  if (signup) await sync.signup({ email, password, team_name: team || "My team" });
  else await sync.login(email, password);
  localStorage.setItem(REMEMBERED, JSON.stringify({ server, device }));
  await begin(sync);
}

async function begin(sync: SyncClient): Promise<void> {
  client = sync;
  clubId = (await sync.session.current())?.clubId ?? "";
  lastPending = sync.status.pending;
  sync.on("status", onStatus);
  sync.on("changes", render);
  sync.on("queued", render);
  sync.on("conflict", render);
  // No service worker here: the page pushes by itself (when queued, on `online`, on a timer).
  scheduleSync(sync, { intervalMs: 5_000 });
  window.addEventListener("online", () => {
    renderStatus();
    if (matchId !== null) follow(matchId);
  });
  window.addEventListener("offline", () => {
    // A phone losing the signal loses its socket too; it resumes from where it was.
    live?.stop();
    live = null;
    renderStatus();
  });
  $("#login").hidden = true;
  const wanted = new URLSearchParams(location.search).get("match");
  await syncNow();
  if (wanted !== null) select(wanted);
  else showMatches();
}

async function syncNow(): Promise<void> {
  if (client === null || !navigator.onLine) return;
  try {
    await client.sync();
  } catch (error) {
    showError(error);
  }
}

// -- status ---------------------------------------------------------------------------------

function onStatus(status: SyncStatus): void {
  if (status.pending < lastPending) window.__lastAck = Date.now();
  lastPending = status.pending;
  renderStatus();
}

function renderStatus(): void {
  const status = client?.status;
  const badge = $("#status");
  $("#pending").textContent = String(status?.pending ?? 0);
  let state: string;
  let text: string;
  if (status === undefined) [state, text] = ["offline", "not connected"];
  else if (!navigator.onLine || status.offline) [state, text] = ["offline", "offline: changes are kept on this device"];
  else if (status.lastError !== null) [state, text] = ["error", `sync stopped: ${status.lastError.message}`];
  else if (status.syncing) [state, text] = ["syncing", "syncing…"];
  else if (status.pending > 0) [state, text] = ["pending", "online, changes waiting"];
  else [state, text] = ["online", `online, synced ${status.lastSyncedAt === null ? "never" : new Date(status.lastSyncedAt).toLocaleTimeString()}`];
  badge.dataset.state = state;
  badge.dataset.live = live?.state ?? "closed";
  $("#status-text").textContent = text;
}

function showError(error: unknown): void {
  $("#error").textContent = error instanceof Error ? error.message : String(error);
  if (error instanceof LoginRequired) $("#login").hidden = false;
}

// -- reading the replica ----------------------------------------------------------------------

const byId = (rows: readonly Row[]): Map<string, Row> => new Map(rows.map((row) => [row.id, row]));
const text = (value: Scalar | undefined): string => (value === null || value === undefined ? "" : String(value));

async function rows(table: "matches" | "teams" | "players" | "events" | "clock_actions"): Promise<Row[]> {
  if (client === null) return [];
  return (await client.list(table)).filter((row) => !row.archived);
}

/** The score of §9.1, from the match's live events. */
function score(match: Values, events: readonly Row[]): { home: number; away: number } {
  const result = { home: 0, away: 0 };
  for (const { values } of events) {
    const home = values.team_id === match.home_team_id;
    const away = values.team_id === match.away_team_id;
    if (values.kind === "goal" && home) result.home += 1;
    else if (values.kind === "goal" && away) result.away += 1;
    else if (values.kind === "own_goal" && away) result.home += 1;
    else if (values.kind === "own_goal" && home) result.away += 1;
  }
  return result;
}

async function kickoffMs(id: string): Promise<number | null> {
  const start = (await rows("clock_actions")).find((row) => row.values.match_id === id && row.values.action === "start");
  const at = Date.parse(text(start?.values.at));
  return Number.isNaN(at) ? null : at;
}

// -- rendering ---------------------------------------------------------------------------------

let drawing: Promise<void> | null = null;
let redraw = false;

/** Draw the page again from the replica; calls made while drawing coalesce into one more. */
function render(): void {
  if (drawing !== null) {
    redraw = true;
    return;
  }
  drawing = (async () => {
    do {
      redraw = false;
      try {
        await draw();
      } catch (error) {
        showError(error);
      }
    } while (redraw);
  })().finally(() => {
    drawing = null;
  });
}

async function draw(): Promise<void> {
  renderStatus();
  if (client === null) return;
  const teams = byId(await rows("teams"));
  const teamName = (id: Scalar | undefined) => text(teams.get(text(id))?.values.name) || "?";
  if (matchId === null) {
    const list = $("#match-list");
    list.replaceChildren(
      ...(await rows("matches")).map((match) => {
        const item = document.createElement("li");
        const button = document.createElement("button");
        button.type = "button";
        button.dataset.id = match.id;
        button.textContent = `${teamName(match.values.home_team_id)} v ${teamName(match.values.away_team_id)} · ${text(match.values.kickoff_ts).slice(0, 16).replace("T", " ")}`;
        button.addEventListener("click", () => select(match.id));
        item.append(button);
        return item;
      }),
    );
    return;
  }
  const id = matchId;
  const match = await client.get("matches", id);
  if (match === null) {
    $("#home-name").textContent = "(waiting for the match…)";
    return;
  }
  const players = byId(await rows("players"));
  const events = (await rows("events"))
    .filter((row) => row.values.match_id === id)
    .sort((a, b) => Number(a.values.period_number ?? 0) - Number(b.values.period_number ?? 0) || Number(a.values.clock_ms ?? 0) - Number(b.values.clock_ms ?? 0) || (a.id < b.id ? -1 : 1));
  const { home, away } = score(match.values, events);
  $("#home-name").textContent = teamName(match.values.home_team_id);
  $("#away-name").textContent = teamName(match.values.away_team_id);
  $("#home-score").textContent = String(home);
  $("#away-score").textContent = String(away);

  $("#events").replaceChildren(
    ...events.map((event) => {
      const item = document.createElement("li");
      item.dataset.id = event.id;
      const side = event.values.team_id === match.values.home_team_id ? "home" : event.values.team_id === match.values.away_team_id ? "away" : "";
      const scorer = text(players.get(text(event.values.player_id))?.values.full_name);
      const minute = `${Math.floor(Number(event.values.clock_ms ?? 0) / 60_000) + 1}'`;
      for (const [name, value] of [
        ["minute", minute],
        ["kind", text(event.values.kind).replace("_", " ")],
        ["side", side === "" ? "" : teamName(event.values.team_id)],
        ["scorer", scorer],
        ["notes", text(event.values.notes)],
      ] as const) {
        const span = document.createElement("span");
        span.className = name;
        span.textContent = value;
        item.append(span, " ");
      }
      const edit = document.createElement("button");
      edit.type = "button";
      edit.className = "edit";
      edit.textContent = "Edit";
      edit.addEventListener("click", () => openEditor(event.id, scorer, text(event.values.notes)));
      item.append(edit);
      return item;
    }),
  );

  const conflicts = (await client.conflicts()).filter((conflict) => conflict.match_id === id);
  const shown = (conflict: ConflictRecord, value: Scalar) =>
    conflict.field === "player_id" ? text(players.get(text(value))?.values.full_name) || "nobody" : conflict.field === "team_id" ? teamName(value) : text(value) || "(empty)";
  $("#conflicts").replaceChildren(
    ...conflicts.map((conflict) => {
      const item = document.createElement("li");
      item.dataset.id = conflict.id;
      const field = FIELD_LABELS[conflict.field] ?? conflict.field;
      item.textContent = `${conflict.table === "events" ? "Event" : conflict.table} ${field}: “${shown(conflict, conflict.winner.value)}” (${conflict.winner.device_id}) replaced “${shown(conflict, conflict.loser.value)}” (${conflict.loser.device_id})`;
      return item;
    }),
  );
}

function showMatches(): void {
  live?.stop();
  live = null;
  matchId = null;
  $("#match").hidden = true;
  $("#matches").hidden = false;
  history.replaceState(null, "", withParams({ match: null }));
  render();
}

function select(id: string): void {
  matchId = id;
  shareId = null;
  $("#share-url").textContent = "";
  $("#share-url").removeAttribute("href");
  $("#revoke").hidden = true;
  $("#error").textContent = "";
  $("#matches").hidden = true;
  $("#match").hidden = false;
  history.replaceState(null, "", withParams({ match: id }));
  follow(id);
  render();
}

/** Follow the match over its WebSocket while online: the other coaches' edits arrive at once. */
function follow(id: string): void {
  if (client === null || !navigator.onLine || live?.matchId === id) return;
  live?.stop();
  live = client.live(id);
  live.on("state", renderStatus);
}

function withParams(changes: Record<string, string | null>): string {
  const params = new URLSearchParams(location.search);
  params.delete("password"); // never leave a password in the address bar or the history
  for (const [name, value] of Object.entries(changes)) {
    if (value === null) params.delete(name);
    else params.set(name, value);
  }
  const query = params.toString();
  return `${location.pathname}${query === "" ? "" : `?${query}`}`;
}

// -- editing -----------------------------------------------------------------------------------

async function newMatch(opponent: string): Promise<void> {
  if (client === null) return;
  const own = (await rows("teams")).find((team) => team.values.is_opponent !== true);
  if (own === undefined) throw new Error("your team has not arrived yet: go online once and try again");
  const now = new Date().toISOString();
  const opponentId = randomId();
  const id = randomId();
  await client.record([
    { table: "teams", id: opponentId, op: "upsert", fields: { name: opponent, is_opponent: true } },
    { table: "matches", id, op: "upsert", fields: { home_team_id: own.id, away_team_id: opponentId, kickoff_ts: now, period_format: "half", duration_mins: 50 } },
    { table: "clock_actions", id: randomId(), op: "upsert", fields: { match_id: id, action: "start", at: now, period_number: 1 } },
  ]);
  select(id);
}

async function logGoal(side: "home" | "away"): Promise<void> {
  if (client === null || matchId === null) return;
  const match = await client.get("matches", matchId);
  const teamId = match?.values[side === "home" ? "home_team_id" : "away_team_id"];
  if (typeof teamId !== "string") throw new Error("the match has no such team");
  const kickoff = await kickoffMs(matchId);
  const clockMs = kickoff === null ? 0 : Math.min(Math.max(0, Date.now() - kickoff), 86_400_000);
  await client.create("events", { match_id: matchId, kind: "goal", team_id: teamId, period_number: 1, clock_ms: clockMs, created_at: new Date().toISOString() });
}

function openEditor(id: string, scorer: string, notes: string): void {
  const form = $<HTMLFormElement>("#edit-event");
  (form.elements.namedItem("id") as HTMLInputElement).value = id;
  (form.elements.namedItem("scorer") as HTMLInputElement).value = scorer;
  (form.elements.namedItem("notes") as HTMLInputElement).value = notes;
  form.hidden = false;
  (form.elements.namedItem("scorer") as HTMLInputElement).focus();
}

/** Write only what changed, so an untouched field never overrides another coach's edit. */
async function saveEvent(id: string, scorer: string, notes: string): Promise<void> {
  if (client === null) return;
  const event = await client.get("events", id);
  if (event === null) throw new Error("that event is gone");
  const edits: LocalEdit[] = [];
  const fields: Record<string, Scalar> = {};
  let playerId: string | null = null;
  if (scorer !== "") {
    // The same name gives the same player id on every device, even offline.
    playerId = stableId(clubId, "players", scorer.toLowerCase());
    if ((await client.get("players", playerId)) === null) edits.push({ table: "players", id: playerId, op: "upsert", fields: { full_name: scorer } });
  }
  if ((event.values.player_id ?? null) !== playerId) fields.player_id = playerId;
  if (text(event.values.notes) !== notes) fields.notes = notes === "" ? null : notes;
  if (Object.keys(fields).length > 0) edits.push({ table: "events", id, op: "upsert", fields });
  if (edits.length > 0) await client.record(edits);
}

// -- sharing -------------------------------------------------------------------------------------

async function api<T>(method: "GET" | "DELETE", path: string): Promise<T | null> {
  if (client === null) throw new Error("log in first");
  const token = await client.session.accessToken();
  const response = await fetch(`${client.serverUrl}${path}`, { method, headers: { accept: "application/json", authorization: `Bearer ${token}` } });
  if (!response.ok) {
    const problem = (await response.json().catch(() => ({}))) as { title?: string; detail?: string };
    throw new Error(`${response.status} ${problem.title ?? ""}${problem.detail === undefined ? "" : `: ${problem.detail}`}`);
  }
  return response.status === 204 ? null : ((await response.json()) as T);
}

async function share(): Promise<void> {
  if (matchId === null) return;
  const link = await api<{ id: string; url: string; expires_at: string }>("GET", `/api/matches/${matchId}/share`);
  if (link === null) return;
  shareId = link.id;
  const anchor = $<HTMLAnchorElement>("#share-url");
  anchor.href = link.url;
  anchor.textContent = link.url;
  $("#revoke").hidden = false;
}

async function revoke(): Promise<void> {
  if (matchId === null || shareId === null) return;
  await api("DELETE", `/api/matches/${matchId}/share/${shareId}`);
  shareId = null;
  const anchor = $<HTMLAnchorElement>("#share-url");
  anchor.removeAttribute("href");
  anchor.textContent = "The link is switched off.";
  $("#revoke").hidden = true;
}

// -- wiring ----------------------------------------------------------------------------------------

function on(selector: string, event: string, handler: (event: Event) => Promise<void> | void): void {
  $(selector).addEventListener(event, (event) => {
    $("#error").textContent = "";
    Promise.resolve(handler(event)).catch(showError);
  });
}

on("#login", "submit", async (event) => {
  event.preventDefault();
  const submitter = (event as SubmitEvent).submitter as HTMLButtonElement | null;
  await logIn(new FormData(event.target as HTMLFormElement), submitter?.value === "signup");
});
on("#new-match", "submit", async (event) => {
  event.preventDefault();
  const form = event.target as HTMLFormElement;
  await newMatch(String(new FormData(form).get("opponent") ?? "").trim());
  form.reset();
});
on("#goal-home", "click", () => logGoal("home"));
on("#goal-away", "click", () => logGoal("away"));
on("#edit-event", "submit", async (event) => {
  event.preventDefault();
  const form = event.target as HTMLFormElement;
  const data = new FormData(form);
  await saveEvent(String(data.get("id")), String(data.get("scorer") ?? "").trim(), String(data.get("notes") ?? "").trim());
  form.hidden = true;
});
on("#edit-cancel", "click", () => {
  $("#edit-event").hidden = true;
});
on("#share", "click", share);
on("#revoke", "click", revoke);
on("#back", "click", showMatches);
on("#logout", "click", async () => {
  await client?.session.logout().catch(() => undefined);
  localStorage.removeItem(REMEMBERED);
  location.href = location.pathname;
});

async function boot(): Promise<void> {
  const params = new URLSearchParams(location.search);
  const remembered = JSON.parse(localStorage.getItem(REMEMBERED) ?? "{}") as { server?: string; device?: string };
  const form = $<HTMLFormElement>("#login");
  const field = (name: string) => form.elements.namedItem(name) as HTMLInputElement;
  field("server").value = params.get("server") ?? remembered.server ?? `${location.protocol}//${location.hostname}:8000`;
  field("device").value = params.get("device") ?? remembered.device ?? `coach-${randomId().slice(0, 8)}`;
  field("email").value = params.get("email") ?? "";
  const password = params.get("password");
  if (password !== null) {
    field("password").value = password;
    history.replaceState(null, "", withParams({}));
    await logIn(new FormData(form), false);
    return;
  }
  if (remembered.server !== undefined && remembered.device !== undefined && params.get("device") === null) {
    const sync = await openClient(remembered.server, remembered.device);
    if ((await sync.session.current()) !== undefined) {
      await begin(sync);
      return;
    }
  }
  renderStatus();
}

boot().catch(showError);
