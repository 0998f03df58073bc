// A live call with the persona over /web/api/call (see bot/web/call.py): the microphone
// goes up as 16 kHz PCM from an AudioWorklet; the server listens (VAD), answers and sends
// each sentence's audio as soon as it exists, which plays back to back here. When the
// person talks over the persona, the server says "barge_in" and playback stops at once.

const $ = (sel) => document.querySelector(sel);

export function setupCall({ addBubble, note, say }) {
  const panel = $("#call-panel");
  const status = $("#call-status");
  const partial = $("#call-partial");
  let call = null;

  const show = (what, text) => {
    panel.dataset.state = what;
    status.textContent = text;
  };
  const count = (name) => { panel.dataset[name] = String(Number(panel.dataset[name] || 0) + 1); };

  async function start() {
    if (call) return;
    // the audio graph first, so that the first word said is already captured
    const ctx = new AudioContext({ latencyHint: "interactive" });
    await ctx.audioWorklet.addModule("/static/capture-worklet.js");
    const capture = new AudioWorkletNode(ctx, "doppel-capture");
    let mic;
    try {
      mic = await navigator.mediaDevices.getUserMedia({ audio: {
        channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true } });
    } catch {
      ctx.close();
      say("No microphone: allow it to call.");
      return;
    }
    panel.hidden = false;
    $("#call").setAttribute("aria-pressed", "true");
    show("connecting", "Connecting…");
    const mute = ctx.createGain();
    mute.gain.value = 0;
    ctx.createMediaStreamSource(mic).connect(capture).connect(mute).connect(ctx.destination);
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${scheme}://${location.host}/web/api/call`);
    ws.binaryType = "arraybuffer";
    call = { ws, ctx, mic, sources: new Set(), next: 0, bubble: null, spoken: "", last: null,
             barged: false };
    const early = [];  // what was said while connecting is sent once the call is open
    capture.port.onmessage = (e) => {
      if (ws.readyState === WebSocket.OPEN) ws.send(e.data);
      else if (ws.readyState === WebSocket.CONNECTING && early.length < 500) early.push(e.data);
    };
    ws.onopen = () => { for (const frame of early.splice(0)) ws.send(frame); };
    ws.onmessage = (e) => (typeof e.data === "string" ? event(JSON.parse(e.data)) : play(e.data));
    ws.onclose = (e) => { if (e.reason) say(e.reason); stop(false); };
    ws.onerror = () => say("The call could not connect.");
  }

  function event(d) {
    const c = call;
    if (!c) return;
    switch (d.type) {
      case "ready":
        show("listening", `On a call with ${d.text}${d.caption ? ` (${d.caption})` : ""}. Just talk.`);
        break;
      case "speech": if (!c.sources.size) show("hearing", "Listening…"); break;
      case "partial": partial.textContent = d.text; break;
      case "heard":
        partial.textContent = "";
        c.asked = addBubble("user", `📞 ${d.text}`);
        c.bubble = addBubble("assistant", "…");
        c.spoken = "";
        c.lead = "";
        c.barged = false;
        show("thinking", "Thinking…");
        break;
      case "disclosure": c.lead = `🤖 ${d.text}\n\n`; break;
      case "audio":
        c.spoken = (c.spoken ? c.spoken + " " : "") + d.text.trim();
        if (c.bubble) note(c.bubble, c.lead + c.spoken);
        if (d.latency_s != null) panel.dataset.latency = String(d.latency_s);
        break;
      case "barge_in":
        count("bargeIns");
        c.barged = true;  // the "done" that follows keeps what was heard: cut short
        panel.dataset.stopped = String(c.sources.size);  // sentences cut off or still queued
        silence();
        show("hearing", "Listening…");
        break;
      case "done": {
        // The turn's answer; or, later, the same answer cut where they talked over it
        // while it still played (written in full before they did).
        const late = !c.bubble && d.message_id != null && c.last &&
          c.last.dataset.messageId === String(d.message_id);
        const bubble = c.bubble || (late ? c.last : null);
        if (bubble && !d.text) {  // nothing of it was heard: the next turn asks it again
          bubble.remove();
          c.asked?.remove();
        } else if (bubble) {
          note(bubble, c.lead + d.text);
          if (d.message_id != null) bubble.dataset.messageId = d.message_id;
          if (c.barged) bubble.classList.add("cut");
        }
        c.last = bubble;
        c.bubble = null;
        c.barged = false;
        break;
      }
      case "ignored": if (!c.sources.size) show("listening", "Listening…"); break;
      case "notice": say(d.text); break;
    }
  }

  function play(buffer) {
    const c = call;
    if (!c) return;
    const rate = new DataView(buffer).getUint32(0, true);
    const pcm = new Int16Array(buffer, 4);
    const audio = c.ctx.createBuffer(1, pcm.length, rate);
    const samples = audio.getChannelData(0);
    for (let i = 0; i < pcm.length; i++) samples[i] = pcm[i] / 32768;
    const source = c.ctx.createBufferSource();
    source.buffer = audio;
    source.connect(c.ctx.destination);
    const at = Math.max(c.next, c.ctx.currentTime + 0.03);
    source.start(at);
    c.next = at + audio.duration;
    c.sources.add(source);
    count("audio");
    panel.dataset.playing = String(c.sources.size);
    show("speaking", "Speaking… (talk to interrupt)");
    source.onended = () => {
      c.sources.delete(source);
      panel.dataset.playing = String(c.sources.size);
      if (!c.sources.size && call === c) {
        if (c.ws.readyState === WebSocket.OPEN) c.ws.send(JSON.stringify({ type: "played" }));
        show("listening", "Listening…");
      }
    };
  }

  function silence() {
    const c = call;
    if (!c) return;
    for (const s of c.sources) { s.onended = null; s.stop(); }
    c.sources.clear();
    c.next = 0;
    panel.dataset.playing = "0";
  }

  function stop(hangup = true) {
    const c = call;
    if (!c) return;
    silence();
    call = null;
    if (hangup && c.ws.readyState === WebSocket.OPEN) {
      c.ws.send(JSON.stringify({ type: "hangup" }));
      c.ws.close();
    }
    c.mic.getTracks().forEach((t) => t.stop());
    c.ctx.close();
    partial.textContent = "";
    show("ended", "Call ended.");
    panel.hidden = true;
    $("#call").setAttribute("aria-pressed", "false");
  }

  $("#call").addEventListener("click", () => (call ? stop() : start().catch((e) => {
    say(e.message || "The call could not start.");
    stop(false);
  })));
  $("#hangup").addEventListener("click", () => stop());
}
