// The family viewer (PROTOCOL.md §14 and §17): a snapshot, then one delta per merge, over the
// match WebSocket, or over Server-Sent Events where a network breaks WebSockets. The clock
// ticks here between updates. Everything shown is set with textContent: nothing the server
// relays is ever parsed as HTML.
"use strict";

const page = document.body;
const token = decodeURIComponent(location.pathname.split("/")[2] || "");
const $ = (id) => document.getElementById(id);

const KINDS = {
  goal: "Goal", own_goal: "Own goal", assist: "Assist", save: "Save", penalty: "Penalty",
  free_kick: "Free kick", corner: "Corner", foul: "Foul", yellow_card: "Yellow card",
  red_card: "Red card", substitution: "Substitution", shot_on_target: "Shot on target",
  shot_off_target: "Shot off target", key_pass: "Key pass", tackle: "Tackle",
  interception: "Interception", offside: "Offside", ball_out: "Ball out", ball_won: "Ball won",
  ball_lost: "Ball lost", clearance: "Clearance", block: "Block", cross: "Cross",
  header: "Header", formation_change: "Formation change",
};
const STATUS = {
  scheduled: "Not started", live: "Live", half_time: "Half time", extra_time: "Extra time",
  finished: "Full time", abandoned: "Abandoned", postponed: "Postponed",
};
// Close codes that end the link for good (§17.7); anything else is worth reconnecting.
const FINAL = {
  4404: ["This link doesn't work", "There is no match behind this link."],
  4410: ["This link has ended", "The coach switched this link off, or it has expired."],
};

let match = null;
let events = new Map();
let clockBase = null; // {elapsed, at}: period_elapsed_ms when received, and when (local ms)
let retries = 0;
let socketFailures = 0;
let current = null; // the open WebSocket or EventSource
let ended = false;

function setState(state, text) {
  page.dataset.state = state;
  const line = $("connection");
  if (line) line.textContent = text;
}

function periodLabel(number, format) {
  if (!number) return "";
  if (format === "quarter") return number <= 4 ? `Q${number}` : `Extra time ${number - 4}`;
  if (number <= 2) return number === 1 ? "1st half" : "2nd half";
  return `Extra time ${number - 2}`;
}

function mmss(ms) {
  const seconds = Math.max(0, Math.floor(ms / 1000));
  return `${String(Math.floor(seconds / 60)).padStart(2, "0")}:${String(seconds % 60).padStart(2, "0")}`;
}

function renderMatch() {
  if (!match) return;
  $("home-name").textContent = match.home_team || "Home";
  $("away-name").textContent = match.away_team || "Away";
  $("home-score").textContent = String(match.score.home);
  $("away-score").textContent = String(match.score.away);
  const status = $("status");
  if (status) status.textContent = STATUS[match.status] || match.status;
  const period = $("period");
  if (period) period.textContent = periodLabel(match.current_period, match.period_format);
  const title = `${match.home_team || "Home"} ${match.score.home}–${match.score.away} ${match.away_team || "Away"}`;
  document.title = title;
  tick();
}

function tick() {
  if (!match || !clockBase) return;
  const running = match.clock_running;
  const elapsed = clockBase.elapsed + (running ? Date.now() - clockBase.at : 0);
  $("clock").textContent = match.status === "scheduled" ? "--:--" : mmss(elapsed);
}

function order(a, b) {
  return (b.period || 0) - (a.period || 0) || (b.timestamp < a.timestamp ? -1 : b.timestamp > a.timestamp ? 1 : 0);
}

function renderFeed() {
  const feed = $("feed");
  if (!feed) return;
  const items = [...events.values()].sort(order).map((event) => {
    const item = document.createElement("li");
    const time = document.createElement("time");
    time.textContent = event.timestamp;
    const text = document.createElement("span");
    const side = event.team === "home" ? match?.home_team : event.team === "away" ? match?.away_team : null;
    text.textContent = [KINDS[event.kind] || event.kind, event.player, side && `(${side})`]
      .filter(Boolean).join(" · ");
    if (event.kind === "goal" || event.kind === "own_goal") text.className = "goal";
    item.append(time, text);
    return item;
  });
  feed.replaceChildren(...items);
}

function takeMatch(next, serverTimeMs) {
  match = next;
  clockBase = { elapsed: next.period_elapsed_ms || 0, at: Date.now() };
  void serverTimeMs;
  renderMatch();
}

function apply(message) {
  if (message.type === "snapshot") {
    events = new Map(message.view.recent_events.map((event) => [event.id, event]));
    takeMatch(message.view.match, message.view.server_time_ms);
    renderFeed();
  } else if (message.type === "delta") {
    if (message.match) takeMatch(message.match, message.server_time_ms);
    for (const event of message.events || []) events.set(event.id, event);
    for (const id of message.removed || []) events.delete(id);
    if (message.events || message.removed || message.match) renderFeed();
  }
}

function end([title, text]) {
  ended = true;
  if (current) current.close();
  const notice = $("notice");
  const heading = notice.querySelector("h1");
  if (heading) heading.textContent = title;
  notice.querySelector("p").textContent = text;
  notice.hidden = false;
  // Nothing of the match stays on screen once its link has ended.
  for (const id of ["view", "events"]) {
    const part = $(id);
    if (part) part.hidden = true;
  }
  setState("ended", "");
}

function reconnectLater() {
  if (ended) return;
  setState("reconnecting", "Reconnecting…");
  // Exponential backoff with jitter, so a whole touchline of phones does not return at once.
  const delay = Math.min(15000, 500 * 2 ** retries) * (0.5 + Math.random() / 2);
  retries += 1;
  setTimeout(connect, delay);
}

async function connect() {
  if (ended) return;
  let matchId;
  try {
    const answer = await fetch(`/api/watch/${encodeURIComponent(token)}`, { cache: "no-store" });
    if (answer.status === 410 || answer.status === 404) {
      end(answer.status === 410 ? FINAL[4410] : FINAL[4404]);
      return;
    }
    if (!answer.ok) throw new Error(`status ${answer.status}`);
    const view = await answer.json();
    apply({ type: "snapshot", view });
    matchId = view.match.id;
  } catch {
    reconnectLater();
    return;
  }
  if (socketFailures >= 2 || !("WebSocket" in window)) stream();
  else socket(matchId);
}

function socket(matchId) {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${scheme}://${location.host}/ws/match/${matchId}?token=${encodeURIComponent(token)}`);
  let opened = false;
  current = ws;
  ws.onopen = () => {
    opened = true;
    retries = 0;
    socketFailures = 0;
    setState("live", "Live updates on");
  };
  ws.onmessage = (message) => apply(JSON.parse(message.data));
  ws.onclose = (closed) => {
    if (current !== ws) return;
    current = null;
    if (FINAL[closed.code]) return end(FINAL[closed.code]);
    if (!opened) socketFailures += 1;
    reconnectLater();
  };
}

function stream() {
  // Server-Sent Events: the same messages; the browser resumes by itself with Last-Event-ID.
  const source = new EventSource(`/api/watch/${encodeURIComponent(token)}/stream`);
  current = source;
  source.onopen = () => {
    retries = 0;
    setState("live", "Live updates on");
  };
  for (const type of ["snapshot", "delta", "heartbeat"]) {
    source.addEventListener(type, (message) => apply(JSON.parse(message.data)));
  }
  source.addEventListener("error", () => {
    if (current !== source) return;
    // The stream ended: the link was revoked, or the network dropped. Ask which.
    source.close();
    current = null;
    connect();
  });
}

setState("connecting", "Connecting…");
setInterval(tick, 1000);
connect();
