// The live view (/live): "Use camera" opens the webcam; its frames go to the server over the
// WebSocket /v1/live and each answer comes back into the page: the camera picture with the 2D
// skeletons drawn on it, the same 3D viewer and angle charts as a job's result (fed frame by frame),
// and a latency readout (capture to 3D back, p50 / p95 over the last 5 s, answers per second,
// frames dropped). Record / Stop recording turns the session into a normal job.

import { AnglePlots } from "./angle_plots.js";
import { css, sideColours } from "./colours.js";
import { el, say } from "./dom.js";
import { LatencyStats, LiveClient } from "./live_client.js";
import { JOINTS } from "./poses.js";
import { boneSide, COCO17_BONES, COCO17_LEFT, COCO17_RIGHT } from "./skeleton.js";
import { PoseViewer, webglAvailable } from "./viewer3d.js";

const MIN_SCORE = 0.3;                 // 2D joints below this are not drawn
const HISTORY_S = 10;                  // seconds of angles the charts keep
const READOUT_EVERY_MS = 250;
// the space the 3D view frames before anyone is seen: a person 1 to 5 m in front of the camera
const LIVE_BOUNDS = { min: [-1.5, 0, -5], max: [1.5, 1.9, -1] };

function ms(value) {
  return Number.isFinite(value) ? `${Math.round(value)} ms` : "–";
}

/** The live 3D model in the shape the viewer reads (parsePoses'), one frame, updated in place. */
function emptyLiveModel() {
  return { frameCount: 1, times: [0], fps: 0, still: false, tracks: new Map(), angleInfo: [], warnings: [] };
}

/** Angles over the last seconds, in the shape the charts read: times[] and per track angles[name][]. */
class AngleHistory {
  constructor(angleInfo) {
    this.angleInfo = angleInfo;
    this.anglesFrom = "the live 3D";
    this.times = [];
    this.tracks = new Map();
    this.frameCount = 0;
  }

  add(t, persons) {
    this.times.push(t);
    const seen = new Map(persons.map((p) => [p.track_id, p]));
    for (const p of persons) {
      if (this.tracks.has(p.track_id)) continue;
      const blank = () => Object.fromEntries(this.angleInfo.map((a) => [a.name, new Array(this.times.length - 1).fill(NaN)]));
      this.tracks.set(p.track_id, { id: p.track_id, angles: blank(), confidence: blank() });
    }
    for (const [id, track] of this.tracks) {
      const p = seen.get(id);
      for (const { name } of this.angleInfo) {
        track.angles[name].push(p?.angles_deg?.[name] ?? NaN);
        track.confidence[name].push(p?.angle_confidence?.[name] ?? NaN);
      }
    }
    while (this.times.length && this.times[0] < t - HISTORY_S) {
      this.times.shift();
      for (const track of this.tracks.values()) {
        for (const series of [...Object.values(track.angles), ...Object.values(track.confidence)]) series.shift();
      }
    }
    for (const [id, track] of this.tracks) {   // forget a person with no value left in the window
      if (!seen.has(id) && !Object.values(track.angles).some((s) => s.some(Number.isFinite))) this.tracks.delete(id);
    }
    this.frameCount = this.times.length;
  }
}

export class LiveView {
  constructor(root) {
    this.root = root;
    this.client = null;
    this.viewer = null;
    this.plots = null;
    this.latest = null;          // the last frame answered
    this.stats = new LatencyStats();
    this.frame = 0;
  }

  async show() {
    this.start = el("button", { type: "button", className: "primary", id: "live-start", textContent: "Use camera" });
    this.stopCamera = el("button", { type: "button", id: "live-stop", textContent: "Stop camera", disabled: true });
    this.record = el("button", { type: "button", id: "live-record", textContent: "Record", disabled: true });
    this.stopRecord = el("button", { type: "button", id: "live-record-stop", textContent: "Stop recording", disabled: true });
    this.persons = el("select", { id: "live-max-persons" },
      ...[1, 2, 3, 4].map((n) => el("option", { value: String(n), textContent: String(n), selected: n === 1 })));
    this.message = el("p", { className: "message", hidden: true, id: "live-message" });
    this.recorded = el("p", { className: "note", id: "live-recorded" });
    this.picture = el("canvas", { className: "live-picture", id: "live-picture", width: 640, height: 480 });
    this.picture.setAttribute("aria-label", "the camera picture with the 2D skeletons found in it");
    this.readout = el("dl", { className: "latency", id: "live-latency" });
    this.stage = el("div", { className: "viewer", id: "viewer" });
    this.plotsBox = el("div", { id: "angle-plots" });
    this.root.replaceChildren(
      el("section", { className: "card", id: "live" },
        el("h2", { textContent: "Live camera" }),
        el("p", { className: "lead", textContent: "Your camera's frames go to this server; 2D keypoints, 3D poses and joint angles come back for each frame as it is answered. Record a stretch to keep it as a job with the usual exports." }),
        el("div", { className: "live-controls" }, this.start, this.stopCamera, this.record, this.stopRecord,
          el("label", { htmlFor: "live-max-persons", textContent: "Persons " }, this.persons)),
        this.message, this.recorded,
        el("div", { className: "side-by-side" },
          el("div", { className: "media-column" }, this.picture, this.readout),
          el("div", { className: "viewer-box" }, this.stage))),
      el("section", { className: "card" }, el("h2", { textContent: "Joint angles" }), this.plotsBox));
    this.updateReadout();
    this.start.addEventListener("click", () => this.begin());
    this.stopCamera.addEventListener("click", () => this.end("Camera stopped."));
    this.record.addEventListener("click", () => {
      this.record.disabled = true;
      this.client?.send({ type: "record_start" });
    });
    this.stopRecord.addEventListener("click", () => {
      this.stopRecord.disabled = true;
      this.recorded.textContent = "Encoding the recording and submitting it as a job…";
      this.client?.send({ type: "record_stop" });
    });
  }

  async begin() {
    say(this.message, "");
    this.start.disabled = true;
    this.persons.disabled = true;
    this.stats = new LatencyStats();
    this.client = new LiveClient({
      onReady: (msg) => this.ready(msg),
      onFrame: (msg, latency) => this.answer(msg, latency),
      onRecording: () => {
        this.stopRecord.disabled = false;
        this.recorded.textContent = "Recording…";
      },
      onRecorded: (msg) => this.recordedJob(msg),
      onError: (text) => say(this.message, text),
      onClose: (code, reason) => this.end("", `The live connection closed (${code}${reason ? `: ${reason}` : ""}).`),
    }, { maxPersons: Number(this.persons.value) });
    try {
      await this.client.start();
    } catch (err) {
      this.end("", err.message);
      return;
    }
    this.stopCamera.disabled = false;
    this.record.disabled = false;
    this.draw();
  }

  ready(msg) {
    if (webglAvailable()) {
      this.model = emptyLiveModel();
      this.viewer = new PoseViewer(this.stage, this.model, { bounds: LIVE_BOUNDS });
      this.viewer.frame = 0;
    } else {
      this.stage.replaceChildren(el("p", { className: "note", textContent: "This browser has no WebGL: the 3D view cannot be drawn." }));
    }
    this.history = new AngleHistory(msg.angles);
    this.plots = new AnglePlots(this.plotsBox, this.history, () => {}, { live: true });
    this.startMs = null;
    this.lastReadout = 0;
  }

  answer(msg, latency) {
    const now = performance.now();
    this.latest = msg;
    this.stats.add(now, latency);
    this.startMs ??= msg.capture_ms;
    const t = (msg.capture_ms - this.startMs) / 1000;
    if (this.viewer) this.show3d(msg.persons);
    if (this.history) {
      this.history.add(t, msg.persons);
      const shown = this.plots.trackId;
      if (!this.history.tracks.has(shown) && this.history.tracks.size) this.plots.setTrack(Math.min(...this.history.tracks.keys()));
    }
    if (now - this.lastReadout >= READOUT_EVERY_MS) {
      this.lastReadout = now;
      this.plots?.refresh();
      this.plots?.setTime(t);
      this.updateReadout();
    }
  }

  show3d(persons) {
    const model = this.model;
    const here = new Set();
    for (const p of persons) {
      let track = model.tracks.get(p.track_id);
      if (!track) {
        track = { id: p.track_id, joints: new Float32Array(JOINTS * 3), present: new Uint8Array(1), angles: {}, confidence: {}, contacts: null };
        model.tracks.set(p.track_id, track);
        this.viewer.addTrack(track);
      }
      p.keypoints_3d.forEach((xyz, j) => track.joints.set(xyz, j * 3));
      track.present[0] = 1;
      here.add(p.track_id);
    }
    for (const [id, track] of model.tracks) if (!here.has(id)) track.present[0] = 0;
    if (!here.has(this.viewer.selected) && here.size) this.viewer.selected = Math.min(...here);
    this.viewer.draw();   // frame 0 of the live model, rewritten for every answer
    this.stage.dataset.persons = String(here.size);
    this.stage.dataset.answered = String(this.latest?.answered ?? 0);
  }

  /** The camera picture and the latest answer's 2D skeletons, every animation frame. */
  draw() {
    if (!this.client || this.client.stopped) return;
    const video = this.client.video;
    const canvas = this.picture;
    if (video.videoWidth && (canvas.width !== video.videoWidth || canvas.height !== video.videoHeight)) {
      canvas.width = video.videoWidth;
      canvas.height = video.videoHeight;
    }
    const ctx = canvas.getContext("2d");
    if (video.videoWidth) ctx.drawImage(video, 0, 0, canvas.width, canvas.height);
    const msg = this.latest;
    if (msg && msg.width) {
      const sx = canvas.width / msg.width;
      const sy = canvas.height / msg.height;
      const width = Math.max(2, canvas.width / 200);
      for (const p of msg.persons) {
        const colours = sideColours(p.track_id);
        const k = p.keypoints_2d;
        ctx.lineWidth = width;
        for (const bone of COCO17_BONES) {
          const [a, b] = bone;
          if (k[a][2] < MIN_SCORE || k[b][2] < MIN_SCORE) continue;
          ctx.strokeStyle = css(colours[boneSide(bone, COCO17_LEFT, COCO17_RIGHT)]);
          ctx.beginPath();
          ctx.moveTo(k[a][0] * sx, k[a][1] * sy);
          ctx.lineTo(k[b][0] * sx, k[b][1] * sy);
          ctx.stroke();
        }
        ctx.fillStyle = "#f4f4f4";
        for (const [x, y, s] of k) {
          if (s < MIN_SCORE) continue;
          ctx.beginPath();
          ctx.arc(x * sx, y * sy, width * 1.2, 0, 2 * Math.PI);
          ctx.fill();
        }
      }
      canvas.dataset.persons = String(msg.persons.length);
      canvas.dataset.frame = String(msg.frame);
    }
    this.raf = requestAnimationFrame(() => this.draw());
  }

  updateReadout() {
    const s = this.stats.summary(performance.now());
    const msg = this.latest;
    const dropped = (msg?.dropped ?? 0) + (this.client?.skipped ?? 0);
    const rows = [
      ["Latency, capture to 3D (last 5 s)", `p50 ${ms(s.p50)} · p95 ${ms(s.p95)}`],
      ["Answered", `${s.fps.toFixed(1)} frames/s · ${msg?.answered ?? 0} in all`],
      ["Dropped", `${msg?.dropped ?? 0} by the server (busy) · ${this.client?.skipped ?? 0} not sent (camera faster than the upload)`],
      ["Server, last frame", msg ? `2D ${ms(msg.timings_ms.pose2d)} · 3D ${ms(msg.timings_ms.lift3d)} · in all ${ms(msg.timings_ms.server)}` : "–"],
    ];
    this.readout.replaceChildren(...rows.flatMap(([dt, dd]) => [el("dt", { textContent: dt }), el("dd", { textContent: dd })]));
    Object.assign(this.readout.dataset, {
      p50: String(s.p50), p95: String(s.p95), fps: s.fps.toFixed(2), answered: String(msg?.answered ?? 0),
      dropped: String(dropped),
    });
  }

  recordedJob(msg) {
    this.record.disabled = false;
    this.stopRecord.disabled = true;
    const link = el("a", { href: msg.url, textContent: "its job", id: "live-job-link" });
    link.dataset.nav = "";
    this.recorded.replaceChildren(`Recorded ${msg.frames} frames at ${Number(msg.fps).toFixed(1)} frames/s: `, link,
      msg.detail ? ` (${msg.detail})` : " (runs like an upload: 2D, 3D, exports).");
  }

  /** Stop the camera and the session; `note` in the readout's place, `error` as an error message. */
  end(note = "", error = "") {
    cancelAnimationFrame(this.raf);
    this.client?.stop();
    this.client = null;
    this.start.disabled = false;
    this.persons.disabled = false;
    this.stopCamera.disabled = true;
    this.record.disabled = true;
    this.stopRecord.disabled = true;
    if (error) say(this.message, error);
    else if (note) say(this.message, note, "info");
  }

  dispose() {
    this.end();
    this.viewer?.dispose();
    this.plots?.dispose();
  }
}
