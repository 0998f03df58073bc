// One microphone button that records while pressed: press to start, press again to stop;
// the recording (a Blob) goes to onBlob. Used for voice notes and for voice clips.

export function recorderButton(button, { start, stop, onBlob, say, noMic }) {
  let recorder = null;
  const label = (text) => {
    if (button.hasAttribute("aria-label")) button.setAttribute("aria-label", text);
    else button.textContent = text;
  };
  return async function toggle() {
    if (recorder) { recorder.stop(); return; }
    let media;
    try {
      media = await navigator.mediaDevices.getUserMedia({ audio: true });
    } catch {
      say(noMic);
      return;
    }
    const chunks = [];
    const current = recorder = new MediaRecorder(media);
    current.addEventListener("dataavailable", (e) => chunks.push(e.data));
    current.addEventListener("stop", () => {
      media.getTracks().forEach((t) => t.stop());
      recorder = null;
      button.setAttribute("aria-pressed", "false");
      label(start.label);
      const blob = new Blob(chunks, { type: current.mimeType || "audio/webm" });
      if (blob.size) onBlob(blob);
    });
    current.start();
    button.setAttribute("aria-pressed", "true");
    label(stop.label);
    say(stop.hint);
  };
}
