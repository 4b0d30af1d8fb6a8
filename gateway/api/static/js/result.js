// The result of a finished job: the rendered video (or image) beside the interactive 3D view,
// kept in sync through one clock; the person picker; the joint-angle plots under them.

import { AnglePlots, angleGroups, conventionText, unitWords } from "./angle_plots.js";
import { css, trackColour } from "./colours.js";
import { el } from "./dom.js";
import { FreeClock, VideoClock } from "./playback.js";
import { addAnglesFromCsv, frameAtTime, parsePoses } from "./poses.js";
import { PoseViewer, webglAvailable } from "./viewer3d.js";

function formatTime(t) {
  const m = Math.floor(t / 60);
  const s = t - m * 60;
  return `${m}:${s.toFixed(2).padStart(5, "0")}`;
}

/** poses.json's camera estimate in words, or "" when the file has none. */
function cameraWords(camera) {
  if (!camera || !(camera.focal_px > 0)) return "";
  const parts = [`focal length ${Math.round(camera.focal_px)} px${camera.focal_from_prior ? " (not estimated from the video)" : ""}`];
  if (Number.isFinite(camera.pitch_deg)) parts.push(`tilted ${Math.abs(camera.pitch_deg).toFixed(0)}° ${camera.pitch_deg >= 0 ? "down" : "up"}`);
  if (Number.isFinite(camera.height_m) && camera.height_m > 0) parts.push(`${camera.height_m.toFixed(2)} m above the floor`);
  return `Camera: ${parts.join(", ")}.`;
}

async function fetchArtifact(artifacts, name, as = "json") {
  const a = artifacts.find((x) => x.name === name);
  if (!a) return null;
  const resp = await fetch(a.url);
  if (!resp.ok) throw new Error(`${name}: the server answered ${resp.status}`);
  return as === "json" ? resp.json() : resp.text();
}

export class ResultView {
  /** root: the element to fill; job: the job view from the API (finished, succeeded). */
  constructor(root, job) {
    this.root = root;
    this.job = job;
    this.viewer = null;
    this.plots = null;
  }

  async show() {
    const artifacts = this.job.links.artifacts;
    const status = el("p", { className: "note", textContent: "Loading the poses…" });
    this.root.replaceChildren(status);
    const doc = await fetchArtifact(artifacts, "poses.json");
    if (!doc) {
      status.textContent = "This job has no poses.json, so there is nothing to show in 3D.";
      return;
    }
    const model = parsePoses(doc);
    if (!model.angleInfo.length && artifacts.some((a) => a.name === "joint_angles.csv")) {
      addAnglesFromCsv(model, await fetchArtifact(artifacts, "joint_angles.csv", "text"));
    }
    this.model = model;
    this.build(artifacts);
  }

  build(artifacts) {
    const model = this.model;
    const media = el("div", { className: "media" });
    const render = artifacts.find((a) => a.name === "render.mp4") || artifacts.find((a) => a.name === "render.png");
    let clock;
    if (render && render.name.endsWith(".mp4")) {
      const video = el("video", { controls: true, preload: "auto", muted: true, playsInline: true, id: "result-video" });
      video.src = render.url;
      video.setAttribute("aria-label", "rendered video: 2D skeletons and the rendered 3D panel");
      media.append(video);
      clock = new VideoClock(video);
      this.video = video;
    } else {
      if (render) media.append(el("img", { src: render.url, alt: "rendered image: 2D skeletons and a 3D panel", id: "result-image" }));
      else media.append(el("p", { className: "note", textContent: "This job ran without rendering; the 3D view plays the poses on its own." }));
      const last = model.times.length ? model.times[model.times.length - 1] : 0;
      clock = new FreeClock(last + (model.fps ? 1 / model.fps : 1 / 30));
    }
    this.clock = clock;

    const stage = el("div", { className: "viewer", id: "viewer" });
    const viewerBox = el("div", { className: "viewer-box" }, stage);
    const controls = el("div", { className: "viewer-controls" });
    const playButton = el("button", { type: "button", className: "play", textContent: "Play" });
    const scrub = el("input", { type: "range", min: 0, max: Math.max(0, model.frameCount - 1), step: 1, value: 0, id: "scrub" });
    scrub.setAttribute("aria-label", "frame");
    const clockLabel = el("span", { className: "clock", textContent: "" });
    const resetButton = el("button", { type: "button", textContent: "Reset view", className: "secondary" });
    const follow = el("input", { type: "checkbox", id: "follow" });
    const followLabel = el("label", { htmlFor: "follow", className: "follow" }, follow, " Follow person");
    playButton.title = "Play or pause the video and the 3D view together (Space; arrow keys step a frame)";
    if (!model.still) controls.append(playButton, scrub, clockLabel);
    controls.append(resetButton);
    if (!model.still && model.source?.name === "world") controls.append(followLabel);
    viewerBox.append(controls);
    if (model.source) viewerBox.append(el("p", { className: "note", textContent: model.source.note }));
    const camera = cameraWords(model.camera);
    if (camera) viewerBox.append(el("p", { className: "note", textContent: camera }));


    const picker = el("div", { className: "person-picker", role: "radiogroup", id: "person-picker" });
    picker.setAttribute("aria-label", "person");
    const ids = [...model.tracks.keys()].sort((a, b) => a - b);
    for (const id of ids) {
      const track = model.tracks.get(id);
      const seen = track.present.reduce((n, v) => n + v, 0);
      const button = el("button", { type: "button", className: "person" },
        el("span", { className: "swatch" }), ` Person ${id}`, el("small", { textContent: model.still ? "" : ` in ${seen} of ${model.frameCount} frames` }));
      button.querySelector(".swatch").style.background = css(trackColour(id));
      button.dataset.track = String(id);
      button.setAttribute("role", "radio");
      button.addEventListener("click", () => this.select(id));
      picker.append(button);
    }
    const plotsBox = el("div", { className: "plots", id: "angle-plots" });
    const persons = el("section", { className: "persons" }, el("h3", { textContent: ids.length === 1 ? "Person" : "Persons" }),
      ids.length ? picker : el("p", { className: "note", textContent: "No person was found." }),
      el("p", { className: "note", textContent: "Colours match the skeletons drawn on the video: left side lighter, right side darker." }));
    const side = el("div", { className: "side-by-side" }, el("div", { className: "media-column" }, media, persons), viewerBox);
    this.root.replaceChildren(side, el("section", { className: "angles" }, el("h3", { textContent: "Joint angles" }), plotsBox));

    if (webglAvailable()) {
      this.viewer = new PoseViewer(stage, model);
    } else {
      stage.append(el("p", { className: "note", textContent: "The 3D view needs WebGL, which this browser does not offer." }));
    }
    resetButton.addEventListener("click", () => {
      follow.checked = false;
      this.viewer?.setFollow(false);
    });
    follow.addEventListener("change", () => this.viewer?.setFollow(follow.checked));
    this.plots = model.still ? null : new AnglePlots(plotsBox, model, (t) => this.seek(t));
    if (model.still) this.stillAngles(plotsBox);

    playButton.addEventListener("click", () => {
      if (clock.paused) clock.play().catch(() => {}); else clock.pause();
    });
    scrub.addEventListener("input", () => this.seek(model.times[Number(scrub.value)] ?? 0));
    clock.onTime((t) => {
      const frame = frameAtTime(model.times, t);
      this.viewer?.setFrame(frame);
      this.plots?.setTime(t);
      scrub.value = String(Math.max(0, frame));
      clockLabel.textContent = `${formatTime(t)} · frame ${frame + 1}/${model.frameCount}`;
      playButton.textContent = clock.paused ? "Play" : "Pause";
    });
    this.picker = picker;
    // Space plays or pauses, arrows step a frame, unless the person is typing or on a control
    this.onKey = (e) => {
      if (e.target.closest("input, select, textarea, button, video, a") || e.ctrlKey || e.metaKey || e.altKey) return;
      if (e.key === " " && !model.still) {
        e.preventDefault();
        if (clock.paused) clock.play().catch(() => {}); else clock.pause();
      } else if ((e.key === "ArrowRight" || e.key === "ArrowLeft") && !model.still) {
        e.preventDefault();
        clock.pause();
        const frame = frameAtTime(model.times, clock.time) + (e.key === "ArrowRight" ? 1 : -1);
        this.seek(model.times[Math.max(0, Math.min(model.frameCount - 1, frame))]);
      }
    };
    document.addEventListener("keydown", this.onKey);
    if (ids.length) this.select(ids[0]);
    clock.emit(clock.time);
  }

  /** Seek everything to t seconds; the frame shown is the last one whose timestamp is <= t. */
  seek(t) {
    const frame = frameAtTime(this.model.times, t);
    // land inside the frame's interval so the video decodes that frame, not the one before
    const target = frame >= 0 ? this.model.times[frame] + 0.001 : t;
    this.clock.seek(target);
  }

  select(id) {
    for (const b of this.picker.querySelectorAll("button")) b.setAttribute("aria-checked", String(b.dataset.track === String(id)));
    this.viewer?.setSelected(id);
    this.plots?.setTrack(id);
    if (this.model.still) this.stillAngles(this.root.querySelector("#angle-plots"), id);
  }

  /** A single frame has no curve to plot: its angles as a table, left and right side by side, each
   * with its convention on the line under it. */
  stillAngles(box, id = [...this.model.tracks.keys()][0]) {
    if (!box) return;
    const track = this.model.tracks.get(id);
    if (!track || !this.model.angleInfo.length) {
      box.replaceChildren(el("p", { className: "note", textContent: "This result carries no joint angles." }));
      return;
    }
    const format = (info) => {
      const v = track.angles[info.name]?.[0];
      if (!Number.isFinite(v)) return "–";
      const unit = unitWords(info.unit);
      return unit === "degrees" ? `${v.toFixed(1)}°` : `${v.toFixed(1)} ${unit}`;
    };
    const cell = (text, props = {}) => el("td", { textContent: text, ...props });
    const table = el("table", { className: "angle-table" });
    table.append(el("tr", {}, el("th", { textContent: "angle" }), el("th", { textContent: "left" }),
      el("th", { textContent: "right" })));
    for (const g of angleGroups(this.model.angleInfo)) {
      const parts = [g.left && ["left", g.left], g.right && ["right", g.right], g.single && ["", g.single]].filter(Boolean);
      const text = conventionText(parts);
      const row = el("tr", {}, cell(g.key.replace(/_/g, " ")));
      if (g.single) row.append(cell(format(g.single), { colSpan: 2, className: "value" }));
      else row.append(cell(g.left ? format(g.left) : "", { className: "value" }), cell(g.right ? format(g.right) : "", { className: "value" }));
      table.append(row, el("tr", { className: "convention-row" },
        cell(text.charAt(0).toUpperCase() + text.slice(1), { colSpan: 3, className: "convention" })));
    }
    box.replaceChildren(table);
    box.dataset.points = String((table.rows.length - 1) / 2);
  }

  dispose() {
    if (this.onKey) document.removeEventListener("keydown", this.onKey);
    this.video?.pause();
    this.viewer?.dispose();
    this.plots?.dispose();
  }
}
