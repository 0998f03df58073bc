// Doppel's web app: chat, stories, favourites (offline too) and settings over /web/api.
// No build step: a plain ES module served as it is.

import { setupCall } from "./call.js";
import { recorderButton } from "./recorder.js";
import { setupVoices } from "./voices.js";

const $ = (sel) => document.querySelector(sel);
const el = (tag, props = {}, ...children) => {
  const node = Object.assign(document.createElement(tag), props);
  for (const child of children) if (child != null) node.append(child);
  return node;
};

const state = { me: null, options: null, history: Promise.resolve() };

// -- talking to the server -------------------------------------------------------------

class HttpError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

// fetch, with the offline banner shown while the server cannot be reached at all.
async function reach(path, init) {
  let res;
  try {
    res = await fetch(path, init);
  } catch (error) {
    $("#offline").hidden = false;
    throw error;
  }
  $("#offline").hidden = !res.headers.has("x-doppel-offline");  // the worker's kept copy
  return res;
}

async function api(path, { method = "GET", body, raw } = {}) {
  const headers = {};
  if (method !== "GET") headers["X-Doppel"] = "web";
  if (body !== undefined && !raw) headers["Content-Type"] = "application/json";
  const res = await reach(path, {
    method, headers, credentials: "same-origin",
    body: raw ?? (body !== undefined ? JSON.stringify(body) : undefined),
  });
  if (!res.ok) {
    let message = `Something went wrong (${res.status}).`;
    try {
      const data = await res.json();
      message = data.error || (typeof data.detail === "string" ? data.detail : message);
    } catch { /* not JSON */ }
    throw new HttpError(res.status, message);
  }
  if (res.status === 204) return null;
  return (res.headers.get("content-type") || "").includes("json") ? res.json() : res;
}

// A POST answered with server-sent events: handlers[event](data) for each.
async function stream(path, handlers, { body, raw, type } = {}) {
  const headers = { "X-Doppel": "web" };
  headers["Content-Type"] = raw ? (type || "application/octet-stream") : "application/json";
  const res = await reach(path, {
    method: "POST", headers, credentials: "same-origin",
    body: raw ?? JSON.stringify(body ?? {}),
  });
  if (!res.ok) {
    let message = `Something went wrong (${res.status}).`;
    try { const d = await res.json(); message = d.error || d.detail || message; } catch { }
    throw new HttpError(res.status, message);
  }
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const event = /^event: (.*)$/m.exec(block)?.[1];
      const data = /^data: (.*)$/m.exec(block)?.[1];
      if (event && handlers[event]) handlers[event](JSON.parse(data));
    }
  }
}

function say(text) { $("#status").textContent = text; }

const UNREACHABLE = "Doppel cannot be reached: you are offline or the server is down.";

function fail(error) {
  if (error instanceof HttpError && error.status === 401) return signedOut();
  say(error instanceof HttpError ? error.message : UNREACHABLE);
}

// -- start -----------------------------------------------------------------------------

async function start() {
  if ("serviceWorker" in navigator) {
    navigator.serviceWorker.register("/sw.js").catch(() => {});
    // The first visit's requests went past the worker: ask again so it keeps them.
    navigator.serviceWorker.addEventListener("controllerchange", () => {
      if (!state.me) return;
      fetch("/web/api/me", { credentials: "same-origin" }).catch(() => {});
      loadFavourites().catch(() => {});
    });
  }
  addEventListener("offline", () => { $("#offline").hidden = false; });
  setupTabs();
  setupChat();
  setupStories();
  setupSettings();
  try {
    state.me = await api("/web/api/me");
  } catch (error) {
    if (error instanceof HttpError) return signedOut();
    $("#offline").hidden = false;   // nothing cached: offline before ever signing in
    return signedOut();
  }
  signedIn();
}

function signedOut() {
  state.me = null;
  $(".tabs").hidden = true;
  for (const view of document.querySelectorAll(".view")) view.hidden = true;
  $("#view-signin").hidden = false;
  $("#persona-name").textContent = "Doppel";
  $("#persona-avatar").src = "/static/icon.svg";
  say("");
}

function signedIn() {
  $("#view-signin").hidden = true;
  $(".tabs").hidden = false;
  showPersona();
  show("chat");
  reloadHistory();
  loadStoryOptions().catch(fail);
  loadFavourites().catch(fail);
  fillSettings();
  say(`Signed in as ${state.me.name}`);
}

function showPersona() {
  const p = state.me.persona;
  $("#persona-name").textContent = p.display_name;
  $("#persona-avatar").src = p.avatar || "/static/icon.svg";
  $("#persona-avatar").alt = p.avatar ? p.display_name : "";
  document.title = `${p.display_name} · Doppel`;
}

// -- tabs ------------------------------------------------------------------------------

function setupTabs() {
  const tabs = [...document.querySelectorAll('[role="tab"]')];
  for (const tab of tabs) {
    tab.addEventListener("click", () => show(tab.id.slice(4)));
    tab.addEventListener("keydown", (e) => {
      const i = tabs.indexOf(tab);
      const next = { ArrowRight: tabs[(i + 1) % tabs.length],
        ArrowLeft: tabs[(i + tabs.length - 1) % tabs.length],
        Home: tabs[0], End: tabs[tabs.length - 1] }[e.key];
      if (next) { e.preventDefault(); next.focus(); show(next.id.slice(4)); }
    });
  }
}

function show(name) {
  for (const tab of document.querySelectorAll('[role="tab"]')) {
    const on = tab.id === `tab-${name}`;
    tab.setAttribute("aria-selected", on);
    tab.tabIndex = on ? 0 : -1;
  }
  for (const view of document.querySelectorAll(".view")) view.hidden = view.id !== `view-${name}`;
  if (name === "favourites") loadFavourites().catch(fail);
  if (name === "dashboard") loadDashboard().catch(fail);
  if (name === "settings") state.voices?.load().catch(fail);
}

async function loadDashboard() {
  const d = await api("/web/api/dashboard");
  const figure = (label, value) => el("div", {}, el("dt", { textContent: label }),
    el("dd", { textContent: value }));
  $("#figures").replaceChildren(
    figure("Stories written", d.stories),
    figure("Favourite genres", d.favourite_genres.map((g) => g.genre).join(", ") || "none yet"),
    figure("Listening", `${Math.round(d.listened_s / 60)} min`),
    figure("Streak", `${d.streak_days} day${d.streak_days === 1 ? "" : "s"} (best ${d.best_streak_days})`),
    figure("Favourites", d.favourites),
    figure("Messages", d.messages));
  $("#achievements").replaceChildren(...d.achievements.map((a) => el("li",
    { className: a.earned ? "earned" : "" },
    el("strong", { textContent: `${a.earned ? "🏆" : "🔒"} ${a.title}` }),
    el("span", { className: "muted", textContent: a.earned
      ? `Earned ${new Date(a.earned + "T12:00").toLocaleDateString()}` : a.description }))));
}

// -- chat ------------------------------------------------------------------------------

function setupChat() {
  const input = $("#chat-input");
  $("#chat-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const text = input.value.trim();
    if (!text) return;
    input.value = "";
    send({ text });
  });
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("#chat-form").requestSubmit(); }
  });
  $("#record").addEventListener("click", recorderButton($("#record"), {
    start: { label: "Record a voice note" },
    stop: { label: "Stop and send the voice note", hint: "Recording… press 🎙 again to send." },
    onBlob: (blob) => send({}, { voice: blob }), say,
    noMic: "No microphone: allow it to send voice notes.",
  }));
  setupCall({ addBubble, note, say });
}

// The history replaces what the list shows: a message sent meanwhile waits for it, so
// that what the person just wrote (and its reply) is never wiped by a late history.
function reloadHistory() {
  state.history = loadHistory().catch(fail);
  return state.history;
}

async function loadHistory() {
  const { messages } = await api("/web/api/history");
  const list = $("#messages");
  list.replaceChildren();
  const latest = messages.findLast((m) => m.role === "assistant");
  for (const m of messages) {
    if (m.role !== "assistant") { addBubble(m.role, m.content); continue; }
    showReply(addBubble("assistant", ""), { text: m.content, disclosure: m.disclosure,
      sources: m.sources, message_id: m.id, truncated: m.status === "truncated" }, m === latest);
  }
  if (!messages.length) greet();
  list.scrollTop = list.scrollHeight;
}

// An empty conversation: who answers here, and what to ask.
function greet() {
  const name = state.me.persona.display_name;
  $("#messages").append(el("li", { className: "greeting" },
    el("strong", { textContent: `Say hello to ${name}.` }),
    el("span", { className: "muted", textContent: ` Ask what ${name} knows or remembers,` +
      " or 🎙 send a voice note: answers come from what is in memory, with their sources." })));
}

// Changes the conversation; the newest message stays in sight while it grows, unless the
// person has scrolled up to read.
function pinned(change) {
  const list = $("#messages");
  const atEnd = list.scrollHeight - list.scrollTop - list.clientHeight < 64;
  const out = change();
  if (atEnd) list.scrollTop = list.scrollHeight;
  return out;
}

function addBubble(role, text) {
  $("#messages .greeting")?.remove();
  const li = el("li", { className: `msg ${role}` });
  li.append(el("div", { className: "text", textContent: text }));
  $("#messages").append(li);
  $("#messages").scrollTop = $("#messages").scrollHeight;
  return li;
}

function note(bubble, text) {
  pinned(() => { bubble.querySelector(".text").textContent = text; });
}

function attach(bubble, ...nodes) {
  pinned(() => bubble.append(...nodes));
}

async function send(body, { voice } = {}) {
  await state.history;
  const mine = body.text ? addBubble("user", body.text) : null;
  const bubble = addBubble("assistant", "…");
  bubble.setAttribute("aria-busy", "true");
  if (voice) say("Sending your voice note…");
  const handlers = {
    heard: (d) => { bubble.before(addBubble("user", `🎙 ${d.text}`)); say(""); },
    queued: (d) => note(bubble, `You are #${d.position} in line…`),
    dequeued: () => note(bubble, "…"),
    text: (d) => note(bubble, d.text),
    done: (d) => { bubble.dataset.final = d.text; },
    voice: (d) => attach(bubble, player(d.url, d.duration_s)),
    result: (d) => finishReply(bubble, d),
    error: (d) => note(bubble, d.message),
  };
  try {
    if (voice) await stream("/web/api/voice", handlers, { raw: voice, type: voice.type });
    else await stream("/web/api/chat", handlers, { body });
  } catch (error) {
    if (error instanceof HttpError) note(bubble, error.message);
    else {  // never sent: nothing of it is lost, it waits in the composer
      mine?.remove();
      bubble.classList.add("failed");
      note(bubble, `Not sent. ${UNREACHABLE}`);
      if (body.text && !$("#chat-input").value) $("#chat-input").value = body.text;
    }
    fail(error);
  } finally {
    bubble.removeAttribute("aria-busy");
    if (voice && $("#status").textContent.startsWith("Sending your voice note")) say("");
  }
}

function finishReply(bubble, result) {
  const shown = bubble.dataset.final || "";  // the AI disclosure leads a persona's first reply
  const disclosure = shown.startsWith("🤖 ") ? shown.split("\n\n")[0].slice(3) : "";
  showReply(bubble, { ...result, disclosure }, true);
}

// A reply as it stays: its text (after the disclosure, if it had one), its source cards
// and its buttons; those that act on the newest reply only (🔁, 🔊, ⏩) move to it.
function showReply(bubble, result, latest) {
  let text = (result.disclosure ? `🤖 ${result.disclosure}\n\n` : "") + (result.text || "");
  if (result.truncated) text += "\n\n(I ran out of room there; ⏩ for more.)";
  if (result.error) text = (text ? text + "\n\n" : "") + result.error;
  note(bubble, text);
  if (result.sources?.length) {
    const box = el("div", { className: "sources" });
    for (const s of result.sources) {
      const title = `[${s.n}] ${s.date ? s.date + " · " : ""}${s.title}`;
      box.append(el("details", { className: "source" }, el("summary", { textContent: title }),
        el("p", { textContent: s.excerpt })));
    }
    attach(bubble, box);
  }
  if (result.message_id == null) return;
  bubble.dataset.messageId = result.message_id;
  const target = `reply:${result.message_id}`;
  if (latest) for (const old of document.querySelectorAll("#messages .latest")) old.remove();
  const newest = (button) => { button?.classList.add("latest"); return latest ? button : null; };
  attach(bubble, el("div", { className: "actions" },
    actionButton("⭐", "Favourite", async (b) => {
      const { notice } = await api(`/web/api/messages/${result.message_id}/favourite`, { method: "POST" });
      b.setAttribute("aria-pressed", "true");
      say(notice);
    }),
    newest(actionButton("🔁", "Again", () => send({ again: true }))),
    newest(actionButton("🔊", "Read aloud", async () => {
      const audio = await api("/web/api/say", { method: "POST" });
      attach(bubble, player(audio.url, audio.duration_s));
    })),
    ...rateButtons(target),
    result.truncated ? newest(actionButton("⏩", "Continue", () => send({ go_on: true }))) : null,
  ));
}

function actionButton(label, name, act) {
  const b = el("button", { type: "button", textContent: label, title: name });
  b.setAttribute("aria-label", name);
  b.addEventListener("click", () => Promise.resolve(act(b)).catch(fail));
  return b;
}

function rateButtons(target) {
  const buttons = [];
  for (const [label, name, good] of [["👍", "Good", true], ["👎", "Bad", false]]) {
    buttons.push(actionButton(label, name, async (b) => {
      const { notice } = await api("/web/api/rate", { method: "POST", body: { target, good } });
      for (const other of buttons) other.setAttribute("aria-pressed", String(other === b));
      say(notice);
    }));
  }
  return buttons;
}

// A voice note: play/pause and its waveform.
function player(url, duration) {
  const audio = el("audio", { src: url, preload: "auto" });
  const canvas = el("canvas", { width: 320, height: 64 });
  canvas.setAttribute("aria-hidden", "true");
  const button = el("button", { type: "button", textContent: "▶" });
  button.setAttribute("aria-label", `Play (${Math.round(duration)} s)`);
  button.addEventListener("click", () => (audio.paused ? audio.play() : audio.pause()));
  audio.addEventListener("play", () => { button.textContent = "⏸"; });
  audio.addEventListener("pause", () => { button.textContent = "▶"; });
  audio.addEventListener("ended", () => { button.textContent = "▶"; });
  drawWaveform(url, canvas);
  return el("div", { className: "player" }, button, canvas, audio,
    el("span", { className: "muted", textContent: `${duration.toFixed(1)} s` }));
}

async function drawWaveform(url, canvas) {
  const g = canvas.getContext("2d");
  g.fillStyle = getComputedStyle(document.body).color;
  let peaks = new Array(80).fill(0.05);
  try {
    const data = await (await fetch(url, { credentials: "same-origin" })).arrayBuffer();
    const ctx = new OfflineAudioContext(1, 1, 48000);
    const samples = (await ctx.decodeAudioData(data)).getChannelData(0);
    const step = Math.max(1, Math.floor(samples.length / peaks.length));
    peaks = peaks.map((_, i) => {
      let max = 0;
      for (let j = i * step; j < Math.min(samples.length, (i + 1) * step); j++) {
        max = Math.max(max, Math.abs(samples[j]));
      }
      return Math.max(0.05, max);
    });
  } catch { /* drawn flat: the audio still plays */ }
  const w = canvas.width / peaks.length;
  peaks.forEach((p, i) => {
    const h = p * canvas.height;
    g.fillRect(i * w, (canvas.height - h) / 2, Math.max(1, w - 1), h);
  });
}

// -- stories ---------------------------------------------------------------------------

function setupStories() {
  $("#story-form").addEventListener("submit", (e) => { e.preventDefault(); writeStory(); });
  $("#more-ideas").addEventListener("click", () => loadIdeas(true).catch(fail));
  for (const id of ["#genre", "#age", "#language"]) {
    $(id).addEventListener("change", () => loadIdeas(false).catch(fail));
  }
  let timer;
  $("#history-search").addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(() => loadStories().catch(fail), 250);
  });
  $("#clear-history").addEventListener("click", async () => {
    if (!confirm("Clear your story history? Favourites stay.")) return;
    await api("/web/api/stories?confirm=true", { method: "DELETE" }).catch(fail);
    loadStories().catch(fail);
  });
  $("#save-prompt").addEventListener("click", async () => {
    const name = prompt("A name for these options:");
    if (!name) return;
    state.options = await api("/web/api/prompts", { method: "POST", body: { name, ...storyFields() } })
      .catch(fail) || state.options;
    fillOptions();
  });
  $("#saved-prompts").addEventListener("change", (e) => {
    const saved = state.options.saved_prompts.find((p) => p.name === e.target.value);
    if (!saved) return;
    $("#genre").value = saved.genre; $("#age").value = saved.age_group;
    $("#language").value = saved.language; $("#length").value = saved.length;
    $("#characters").value = saved.characters; $("#prompt").value = saved.prompt;
  });
  $("#add-genre").addEventListener("click", async () => {
    const name = $("#genre-name").value.trim();
    if (!name) return;
    state.options = await api("/web/api/genres", {
      method: "POST", body: { name, description: $("#genre-description").value.trim() },
    }).catch(fail) || state.options;
    fillOptions();
    $("#genre").value = name.toLowerCase();
  });
}

function storyFields() {
  return {
    genre: $("#genre").value, age_group: $("#age").value, language: $("#language").value,
    length: $("#length").value, characters: $("#characters").value, prompt: $("#prompt").value,
  };
}

async function loadStoryOptions() {
  state.options = await api("/web/api/stories/options");
  fillOptions();
  await Promise.all([loadIdeas(false), loadStories()]);
}

function fillOptions() {
  const o = state.options;
  const fill = (sel, items) => {
    const keep = sel.value;
    sel.replaceChildren(...items.map(([value, label]) => el("option", { value, textContent: label })));
    if (keep && items.some(([v]) => v === keep)) sel.value = keep;
  };
  fill($("#genre"), [...o.genres, ...o.custom_genres.map((g) => g.name)].map((g) => [g, g]));
  fill($("#age"), o.age_groups.map((a) => [a, `${a} years`]));
  if (!$("#age").dataset.set) { $("#age").value = "6-8"; $("#age").dataset.set = "1"; }
  fill($("#language"), Object.entries(o.languages));
  fill($("#length"), o.lengths.map((l) => [l, l]));
  fill($("#saved-prompts"), [["", "Saved prompts…"], ...o.saved_prompts.map((p) => [p.name, p.name])]);
}

async function loadIdeas(more) {
  const q = new URLSearchParams({ genre: $("#genre").value || "adventure",
    language: $("#language").value || "en", age_group: $("#age").value || "6-8", more });
  const { ideas } = await api(`/web/api/stories/ideas?${q}`);
  $("#ideas").replaceChildren(...ideas.map((idea) => el("li", {},
    actionButton(idea, `Use the idea: ${idea}`, () => { $("#prompt").value = idea; $("#prompt").focus(); }))));
}

async function writeStory() {
  const out = $("#story-output");
  out.hidden = false;
  delete out.dataset.storyId;
  out.replaceChildren(el("p", { className: "muted", textContent: "Writing…" }));
  out.scrollIntoView({ behavior: "smooth", block: "start" });
  $("#write").disabled = true;
  const pictures = [];  // they may come before the story: drawn with it, never wiped by it
  try {
    await stream("/web/api/stories", {
      queued: (d) => out.replaceChildren(el("p", { className: "muted", textContent: `You are #${d.position} in line…` })),
      text: (d) => out.replaceChildren(el("div", { textContent: d.text })),
      done: (d) => out.replaceChildren(el("div", { textContent: d.text })),
      story: (s) => renderStory(out, { ...s, pictures }),
      pictures: (d) => {
        pictures.push(...d.pictures);
        if (out.dataset.storyId) addPictures(out, d.pictures);
      },
      error: (d) => out.append(el("p", { className: "muted", textContent: d.message })),
    }, { body: storyFields() });
  } catch (error) {
    out.replaceChildren(el("p", { textContent: error.message || "Could not reach Doppel." }));
    fail(error);
  } finally {
    $("#write").disabled = false;
  }
  loadStories().catch(fail);
}

function renderStory(box, s) {
  box.hidden = false;
  box.dataset.storyId = s.id;
  const fav = actionButton(s.favourite ? "★ Favourite" : "☆ Favourite", "Favourite", async (b) => {
    const now = b.getAttribute("aria-pressed") !== "true";
    const updated = await api(`/web/api/stories/${s.id}/favourite?on=${now}`, { method: "POST" });
    b.setAttribute("aria-pressed", String(updated.favourite));
    b.textContent = updated.favourite ? "★ Favourite" : "☆ Favourite";
    loadFavourites().catch(fail);
    loadStories().catch(fail);
  });
  fav.setAttribute("aria-pressed", String(s.favourite));
  const narrate = actionButton("🔊 Read aloud", "Read aloud", async (b) => {
    b.disabled = true;
    try {
      const { parts } = await api(`/web/api/stories/${s.id}/narrate`, { method: "POST" });
      const players = parts.map((p) => player(p.url, p.duration_s));
      box.append(...players);
      players[0]?.scrollIntoView({ behavior: "smooth", block: "nearest" });
    } finally { b.disabled = false; }
  });
  box.replaceChildren(el("h3", { textContent: s.title }),
    el("p", { className: "muted", textContent: `${s.genre} · ${s.age_group} years · ${new Date(s.created_at).toLocaleString()}` }),
    el("div", { className: "content", textContent: s.content }),
    el("div", { className: "row actions" }, fav, narrate, ...rateButtons(`story:${s.id}`)));
  if (s.pictures) addPictures(box, s.pictures);
}

function addPictures(box, pictures) {
  for (const p of pictures) {
    box.append(el("figure", {}, el("img", { src: p.url, alt: p.caption, loading: "lazy" }),
      el("figcaption", { className: "muted", textContent: p.caption })));
  }
}

async function loadStories() {
  const q = new URLSearchParams({ search: $("#history-search").value });
  const { groups } = await api(`/web/api/stories?${q}`);
  const box = $("#history");
  if (!groups.length) {
    box.replaceChildren(el("p", { className: "muted", textContent: $("#history-search").value ? "No story matches." : "No stories yet." }));
    return;
  }
  box.replaceChildren(...groups.map((g) => el("section", { className: "group" },
    el("h3", { textContent: g.label }),
    el("ul", { className: "list" }, ...g.stories.map((s) => el("li", {},
      actionButton(`${s.favourite ? "★ " : ""}${s.title}`, `Open ${s.title}`, () => openStory(s.id, $("#story-output")))))))));
}

async function openStory(id, box) {
  renderStory(box, await api(`/web/api/stories/${id}`));
  box.scrollIntoView({ behavior: "smooth", block: "start" });
}

async function loadFavourites() {
  const { stories } = await api("/web/api/favourites");
  $("#favourites").replaceChildren(...(stories.length ? stories.map((s) => el("li", {},
    actionButton(`★ ${s.title}`, `Open ${s.title}`, () => openStory(s.id, $("#story-view")).catch(fail))))
    : [el("li", { className: "muted", textContent: "No favourites yet: ☆ a story to keep it here." })]));
  // Fetched once now, so the service worker has them for when there is no connection.
  for (const s of stories) fetch(`/web/api/stories/${s.id}`, { credentials: "same-origin" }).catch(() => {});
}

// -- settings --------------------------------------------------------------------------

function setupSettings() {
  state.voices = setupVoices({ api, el, say, fail, player });
  $("#settings-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      state.me = await api("/web/api/settings", { method: "POST", body: {
        persona: $("#persona").value, reply_mode: $("#reply-mode").value,
        timezone: $("#timezone").value.trim() || null,
      } });
      showPersona();
      say("Saved.");
      reloadHistory();
    } catch (error) { fail(error); }
  });
  $("#logout").addEventListener("click", async () => {
    await api("/web/api/logout", { method: "POST" }).catch(() => {});
    await forgetCache();
    signedOut();
  });
  $("#forget").addEventListener("click", () => $("#confirm-forget").showModal());
  $("#confirm-forget").addEventListener("close", async () => {
    if ($("#confirm-forget").returnValue !== "forget") return;
    try {
      await api("/web/api/forget", { method: "POST", body: { confirm: true } });
      await forgetCache();
      signedOut();
      say("Done: everything about you is deleted.");
    } catch (error) { fail(error); }
  });
}

async function loadAdmin() {
  const a = await api("/web/api/admin");
  $("#admin").hidden = false;
  $("#admin-model").textContent = `Model: ${a.model} · ${a.tokens_per_s} tokens/s so far`;
  const cell = (tag, text) => el(tag, { textContent: text });
  $("#admin-queues").replaceChildren($("#admin-queues caption") || "",
    el("tr", {}, cell("th", "Queue"), cell("th", "Waiting"), cell("th", "Running")),
    ...Object.entries(a.queues).map(([name, q]) =>
      el("tr", {}, cell("td", name), cell("td", q.queued), cell("td", q.running))));
  $("#admin-personas").replaceChildren(...a.personas.map((p) => el("section", {},
    el("h3", { textContent: `${p.display_name} (${p.name}${p.private ? ", private" : ""})` }),
    el("p", { className: "muted", textContent: `Memory: ${p.memory}` }),
    el("ul", { className: "list" }, ...(p.voices.length ? p.voices.map((v) => el("li", {
      textContent: `${v.active ? "● " : ""}${v.name}: ${v.clips} clips, ${v.seconds} s; ` +
        `consent of ${v.consent} (${new Date(v.consent_at).toLocaleDateString()})` }))
      : [el("li", { className: "muted", textContent: "No cloned voice." })])))));
}

function fillSettings() {
  const me = state.me;
  if (me.admin) loadAdmin().catch(fail);
  $("#persona").replaceChildren(...me.personas.map((p) =>
    el("option", { value: p.name, textContent: p.display_name })));
  $("#persona").value = me.persona.name;
  $("#reply-mode").value = me.reply_mode;
  $("#timezone").value = me.timezone || "";
}

// What this browser kept for offline use belongs to whoever was signed in: gone with them.
async function forgetCache() {
  if ("caches" in window) await caches.delete("doppel-data");
}

start();
