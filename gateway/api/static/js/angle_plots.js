// Joint-angle plots over time for one person: one chart per joint, left and right side on the same
// chart (left solid and lighter, right dashed and darker: the overlay's side shading), a cursor at
// the shown time; a click on a chart seeks to that time.

import uPlot from "../vendor/uplot/uPlot.esm.js";

import { css, sideColours } from "./colours.js";

const HEIGHT = 190;
const AXIS = { stroke: "#c8ccd4", grid: { stroke: "#343a46", width: 1 }, ticks: { stroke: "#343a46" } };

/** Angle names grouped by joint: "left_knee" and "right_knee" -> {key: "knee", left, right}. */
export function angleGroups(angleInfo) {
  const groups = new Map();
  for (const info of angleInfo) {
    const m = /^(left|right)_(.+)$/.exec(info.name);
    const key = m ? m[2] : info.name;
    if (!groups.has(key)) groups.set(key, { key, left: null, right: null, single: null });
    const g = groups.get(key);
    if (m) g[m[1]] = info; else g.single = info;
  }
  return [...groups.values()];
}

const UNIT_WORDS = { deg: "degrees", rad: "radians" };
const PREFERRED = ["knee_flexion", "hip_flexion", "knee", "hip", "elbow_flexion", "elbow"];

export function unitWords(unit) {
  return UNIT_WORDS[unit] || unit || "degrees";
}

/** Whether any person has a value of this group at any frame. */
function hasData(group, model) {
  const names = [group.left, group.right, group.single].filter(Boolean).map((i) => i.name);
  for (const track of model.tracks.values()) {
    for (const name of names) if (track.angles[name]?.some(Number.isFinite)) return true;
  }
  return false;
}

/** The sign conventions of a chart's series, said once when left and right say the same. */
export function conventionText(parts) {
  const texts = parts.filter(([, i]) => i.convention).map(([side, i]) => [side, i.convention]);
  if (!texts.length) return "Angle at the joint between its two segments, 0 to 180 degrees (see the README, Joint angles).";
  const same = texts.every(([, t]) => t.replace(/\b(left|right)\b/g, "") === texts[0][1].replace(/\b(left|right)\b/g, ""));
  if (texts.length === 1) return texts[0][1];
  const shared = texts[0][1].replace(/^(left|right) /, "");
  if (same && !/\b(left|right)\b/.test(shared)) return shared;
  return texts.map(([side, t]) => `${side ? side.charAt(0).toUpperCase() + side.slice(1) + ": " : ""}${t}`).join(" · ");
}

/** Mean of the finite values, or null when there are none. */
function meanOf(values) {
  if (!values) return null;
  let sum = 0;
  let n = 0;
  for (const v of values) if (Number.isFinite(v)) { sum += v; n++; }
  return n ? sum / n : null;
}

function title(key) {
  const words = key.replace(/_/g, " ");
  return words.charAt(0).toUpperCase() + words.slice(1);
}

function toSeries(values) {
  return Array.from(values, (v) => (Number.isFinite(v) ? v : null));
}

export class AnglePlots {
  /**
   * container: where the picker and charts go; model: parsePoses(); onSeek(t seconds) when a chart
   * is clicked. options.live: the model fills as time goes (every angle offered, `refresh()` redraws).
   */
  constructor(container, model, onSeek, options = {}) {
    this.container = container;
    this.model = model;
    this.onSeek = onSeek;
    this.time = 0;
    this.trackId = null;
    this.charts = [];
    this.groups = angleGroups(model.angleInfo).map((g) => ({ ...g, empty: !options.live && !hasData(g, model) }));
    const withData = this.groups.filter((g) => !g.empty);
    const preferred = PREFERRED.filter((k) => withData.some((g) => g.key === k)).slice(0, 2);
    this.chosen = new Set(preferred.length ? preferred : withData.slice(0, 2).map((g) => g.key));
    container.replaceChildren();
    if (!this.groups.length) {
      container.append(Object.assign(document.createElement("p"), {
        className: "note", textContent: "This result carries no joint angles.",
      }));
      return;
    }
    const picker = document.createElement("fieldset");
    picker.className = "angle-picker";
    picker.append(Object.assign(document.createElement("legend"), { textContent: "Angles to plot" }));
    for (const g of this.groups) {
      const label = document.createElement("label");
      const box = Object.assign(document.createElement("input"), { type: "checkbox", checked: this.chosen.has(g.key), value: g.key, disabled: g.empty });
      if (g.empty) label.title = conventionText([["", g.left || g.right || g.single]]);
      box.addEventListener("change", () => {
        if (box.checked) this.chosen.add(g.key); else this.chosen.delete(g.key);
        this.build();
      });
      label.append(box, ` ${title(g.key)}${g.empty ? " (no values)" : ""}`);
      picker.append(label);
    }
    this.chartsBox = document.createElement("div");
    this.chartsBox.className = "charts";
    const source = document.createElement("p");
    source.className = "note";
    source.textContent = options.live
      ? "Angles of the live 3D; time axis in seconds since the camera started."
      : `Angles from ${model.anglesFrom}; time axis in seconds. Click a chart to seek.`;
    container.append(picker, this.chartsBox, source);
    this.resizeObserver = new ResizeObserver(() => this.resize());
    this.resizeObserver.observe(this.chartsBox);
  }

  setTrack(trackId) {
    this.trackId = trackId;
    this.build();
  }

  setTime(t) {
    this.time = t;
    for (const c of this.charts) {
      // redraw only when the cursor moves by a pixel (long videos: thousands of points per chart)
      const x = Math.round(c.plot.valToPos(t, "x", true));
      if (x === c.cursorX) continue;
      c.cursorX = x;
      c.plot.redraw(false, false);
    }
  }

  /** The drawing width that fits a chart's figure (its content box). */
  static width(box) {
    const style = getComputedStyle(box);
    const inner = box.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
    return Math.max(160, Math.floor(inner));
  }

  resize() {
    for (const c of this.charts) {
      const w = AnglePlots.width(c.box);
      if (c.plot.width !== w) c.plot.setSize({ width: w, height: HEIGHT });
    }
  }

  destroyCharts() {
    for (const c of this.charts) c.plot.destroy();
    this.charts = [];
    this.chartsBox.replaceChildren();
  }

  build() {
    if (!this.chartsBox) return;
    this.destroyCharts();
    const track = this.model.tracks.get(this.trackId);
    let points = 0;
    for (const g of this.groups.filter((x) => this.chosen.has(x.key))) {
      const parts = [g.left && ["left", g.left], g.right && ["right", g.right], g.single && ["", g.single]].filter(Boolean);
      const colours = sideColours(this.trackId ?? 0);
      const data = this.chartData(parts, track);
      points += data.slice(1).reduce((n, ys) => n + ys.filter((v) => v !== null).length, 0);
      const series = [{ label: "time (s)" }];
      for (const [side] of parts) {
        series.push({
          label: side || title(g.key),
          stroke: css(side === "right" ? colours.right : side === "left" ? colours.left : colours.mid),
          width: 2,
          dash: side === "right" ? [7, 4] : undefined,
          spanGaps: false,
          value: (u, v) => (v == null ? "–" : `${v.toFixed(1)}°`),
        });
      }
      const box = document.createElement("figure");
      box.className = "chart";
      const info = parts[0][1];
      const caption = document.createElement("figcaption");
      const unit = unitWords(info.unit);
      caption.append(Object.assign(document.createElement("strong"), { textContent: title(g.key) }), ` (${unit})`);
      const confidence = parts.map(([side, i]) => [side, meanOf(track?.confidence[i.name])]).filter(([, c]) => c !== null);
      if (confidence.length) {
        caption.append(Object.assign(document.createElement("small"), {
          className: "confidence",
          textContent: ` mean confidence ${confidence.map(([side, c]) => `${side ? side + " " : ""}${c.toFixed(2)}`).join(", ")}`,
        }));
      }
      const convention = document.createElement("p");
      convention.className = "convention";
      const text = conventionText(parts);
      convention.textContent = text.charAt(0).toUpperCase() + text.slice(1);
      box.append(caption);
      this.chartsBox.append(box);
      const plot = new uPlot({
        width: AnglePlots.width(box),
        height: HEIGHT,
        series,
        scales: { x: { time: false } },
        axes: [
          { ...AXIS, label: "time (s)", labelSize: 18, size: 36 },
          { ...AXIS, label: unit === "degrees" ? "°" : unit, labelSize: 18, size: 48 },
        ],
        legend: { live: true },
        cursor: { drag: { x: false, y: false } },
        hooks: { draw: [(u) => this.drawCursor(u)] },
      }, data, box);
      box.append(convention);
      plot.over.addEventListener("click", (e) => {
        const t = plot.posToVal(e.offsetX, "x");
        if (Number.isFinite(t)) this.onSeek(Math.max(0, t));
      });
      this.charts.push({ key: g.key, plot, box, parts });
    }
    this.chartsBox.dataset.points = String(points);
    this.chartsBox.dataset.track = String(this.trackId);
  }

  /** uPlot's data of one chart: the times, then one series per side (null where unknown). */
  chartData(parts, track) {
    const data = [Array.from(this.model.times)];
    for (const [, info] of parts) {
      const values = track?.angles[info.name];
      data.push(values ? toSeries(values) : new Array(this.model.times.length).fill(null));
    }
    return data;
  }

  /** Redraw every chart from the model's current values (a live model that has grown). */
  refresh() {
    if (!this.chartsBox) return;
    const track = this.model.tracks.get(this.trackId);
    let points = 0;
    for (const c of this.charts) {
      const data = this.chartData(c.parts, track);
      points += data.slice(1).reduce((n, ys) => n + ys.filter((v) => v !== null).length, 0);
      c.plot.setData(data);
    }
    this.chartsBox.dataset.points = String(points);
  }

  drawCursor(u) {
    const x = u.valToPos(this.time, "x", true);
    if (!Number.isFinite(x)) return;
    const ctx = u.ctx;
    ctx.save();
    ctx.strokeStyle = "#ffffff";
    ctx.lineWidth = Math.max(1, devicePixelRatio);
    ctx.beginPath();
    ctx.moveTo(x, u.bbox.top);
    ctx.lineTo(x, u.bbox.top + u.bbox.height);
    ctx.stroke();
    ctx.restore();
  }

  dispose() {
    this.resizeObserver?.disconnect();
    if (this.chartsBox) this.destroyCharts();
  }
}
