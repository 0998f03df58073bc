// Cloned voices in Settings (see bot/web/voices.py): the voices of the personas this
// person manages (use, delete), and cloning a new one from clips recorded here or chosen
// as files, with the consent of the person heard. The engine checks clips and consent.

import { recorderButton } from "./recorder.js";

const $ = (sel) => document.querySelector(sel);

export function setupVoices({ api, el, say, fail, player }) {
  const clips = [];  // Blobs waiting to be sent, in order

  function listClips() {
    $("#clone-clips").replaceChildren(...clips.map((c, i) => el("li", {},
      `Clip ${i + 1} (${Math.round(c.size / 1024)} kB) `,
      el("button", { type: "button", textContent: "Remove",
        onclick: () => { clips.splice(i, 1); listClips(); } }))));
  }

  async function load() {
    const v = await api("/web/api/voices");
    const box = $("#voices");
    box.hidden = !v.personas.length;
    if (box.hidden) return;
    $("#voices-why").hidden = v.available;
    $("#voices-why").textContent = v.why || "";
    $("#clone-form").hidden = !v.available;
    $("#clone-persona").replaceChildren(...v.personas.map((p) =>
      el("option", { value: p.name, textContent: p.display_name })));
    $("#voices-list").replaceChildren(...v.personas.map((p) => el("section", {},
      el("h3", { textContent: p.display_name }),
      el("ul", { className: "list" }, ...(p.voices.length ? p.voices.map((voice) => el("li", {},
        `${voice.active ? "● " : ""}${voice.name}: ${voice.clips} clips, ${voice.seconds} s, ` +
          `consent of ${voice.consent} `,
        voice.active ? null : el("button", { type: "button", textContent: "Use",
          onclick: () => act(`/web/api/voices/${voice.id}/use`, "POST", `${voice.name} is in use.`) }),
        el("button", { type: "button", className: "danger", textContent: "Delete",
          onclick: () => confirm(`Delete the voice ${voice.name} and its clips?`) &&
            act(`/web/api/voices/${voice.id}`, "DELETE", `${voice.name} is deleted.`) })))
        : [el("li", { className: "muted", textContent: "No cloned voice: the standard voice speaks." })])))));
  }

  async function act(path, method, done) {
    try { await api(path, { method }); say(done); await load(); } catch (error) { fail(error); }
  }

  async function clone(e) {
    e.preventDefault();
    if (!clips.length) { say("Add a clip first (record one or choose a file)."); return; }
    const go = $("#clone-go");
    go.disabled = true;
    try {
      await api("/web/api/voices/clone", { method: "POST", body: {
        persona: $("#clone-persona").value, name: $("#clone-name").value.trim() } });
      for (const [i, blob] of clips.entries()) {
        say(`Checking clip ${i + 1} of ${clips.length}…`);
        await api("/web/api/voices/clone/clips", { method: "POST", raw: blob });
      }
      say("Cloning the voice…");
      const done = await api("/web/api/voices/clone/finish", { method: "POST", body: {
        speaker: $("#clone-speaker").value.trim(), agreed: $("#clone-agreed").checked } });
      clips.length = 0;
      listClips();
      $("#clone-sample").replaceChildren("Hear it: ", player(done.sample.url, done.sample.duration_s));
      say(`The voice ${done.voice.name} is cloned and in use.`);
      await load();
    } catch (error) {
      await api("/web/api/voices/clone", { method: "DELETE" }).catch(() => {});
      fail(error);
    } finally {
      go.disabled = false;
    }
  }

  const recordClip = recorderButton($("#clone-record"), {
    start: { label: "🎙 Record a clip" },
    stop: { label: "⏹ Stop the clip", hint: "Recording a clip: 6-30 s, then press stop." },
    onBlob: (blob) => { clips.push(blob); listClips(); }, say,
    noMic: "No microphone: allow it, or choose files.",
  });
  $("#clone-record").addEventListener("click", () => recordClip().catch(fail));
  $("#clone-files").addEventListener("change", (e) => {
    clips.push(...e.target.files);
    e.target.value = "";
    listClips();
  });
  $("#clone-form").addEventListener("submit", (e) => clone(e).catch(fail));
  return { load };
}
