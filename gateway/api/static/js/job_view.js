// One job's page (/jobs/{id}): what it is, its progress while it runs (Server-Sent Events), its
// error in words when it failed, its result and downloads when it succeeded; cancel, retry, delete.

import { deleteJob, getJob, retryJob } from "./api.js";
import { el, formatDate, say, stateBadge } from "./dom.js";
import { renderDownloads } from "./downloads.js";
import { ResultView } from "./result.js";

// stage names as the API reports them (services/common/stage_names.py; the API migrates older
// manifests' names), in pipeline order
const STAGE_LABELS = {
  decoder: "Decoding frames",
  pose2d: "2D keypoints",
  lifter3d: "3D poses",
  renderer: "Rendering and exports",
};
const FINISHED = new Set(["succeeded", "failed", "cancelled"]);
const WAITING = {
  queued: "Waiting for a worker…",
  recovering: "Its worker stopped answering; another worker takes the job over and resumes it…",
};

function videoFacts(video) {
  if (!video) return "";
  const parts = [`${video.width}×${video.height}`];
  if (video.still_image) parts.push("photo");
  else {
    parts.push(`${Number(video.fps).toFixed(video.fps % 1 ? 2 : 0)} fps`,
      `${video.frame_count} frame${video.frame_count === 1 ? "" : "s"}`, `${Number(video.duration_s).toFixed(1)} s`);
  }
  return parts.join(" · ");
}

/** The options a job was submitted with, in words (0 or "" = the server's default). */
function optionsUsed(options) {
  if (!options) return "";
  const words = [];
  if ("max_persons" in options) words.push(`max persons ${options.max_persons || "default"}`);
  if ("working_size" in options) words.push(`working size ${options.working_size ? `${options.working_size} px` : "default"}`);
  if ("pose_model" in options) words.push(`2D model ${options.pose_model || "default"}`);
  if ("render" in options) words.push(options.render ? "rendered" : "not rendered");
  return words.length ? `Options: ${words.join(", ")}` : "";
}

export class JobView {
  /** root: the element to fill; id: the job id; navigate(path): go to another page of the app. */
  constructor(root, id, navigate) {
    this.root = root;
    this.id = id;
    this.navigate = navigate;
    this.events = null;
    this.poll = null;
    this.result = null;
    this.disposed = false;
  }

  async show() {
    this.head = el("div", { className: "job-head" });
    this.message = el("p", { className: "message", hidden: true, id: "job-message" });
    this.progress = el("div", { className: "progress", id: "job-progress" });
    this.resultBox = el("div", { className: "result", id: "result" });
    this.downloads = el("ul", { className: "downloads", id: "downloads" });
    this.downloadsSection = el("section", { className: "downloads-section", hidden: true },
      el("h3", { textContent: "Downloads" }), this.downloads);
    this.root.replaceChildren(this.head, this.message, this.progress, this.resultBox, this.downloadsSection);
    this.head.append(el("p", { className: "note", textContent: "Loading the job…" }));
    try {
      this.job = await getJob(this.id);
    } catch (err) {
      this.head.replaceChildren(el("h2", { textContent: "Job not found" }));
      say(this.message, err.status === 404
        ? "There is no job with this address: it was deleted, or the link is incomplete."
        : err.message);
      return;
    }
    this.update(this.job);
    if (!FINISHED.has(this.job.state)) this.follow();
  }

  update(job) {
    this.job = job;
    this.root.dataset.state = job.state;
    document.title = `${job.input_name} (${job.state}) · hpe3d`;
    const actions = el("div", { className: "actions" });
    if (!FINISHED.has(job.state)) actions.append(this.button("Cancel", () => this.cancel(), "danger"));
    if (job.state === "failed") actions.append(this.button("Retry", () => this.retry()));
    if (FINISHED.has(job.state)) actions.append(this.button("Delete", () => this.remove(), "danger"));
    actions.append(this.button("Copy link", () => this.copyLink(), "secondary"));
    this.head.replaceChildren(
      el("h2", {}, el("span", { className: "input-name", textContent: job.input_name }), " ", stateBadge(job.state)),
      el("p", { className: "facts", textContent: [formatDate(job.created_at), videoFacts(job.video)].filter(Boolean).join(" · ") }),
      job.expires_at ? el("p", { className: "facts expires", textContent: `Kept until ${formatDate(job.expires_at)}: then the job and all its files are deleted.` }) : null,
      el("p", { className: "facts options-used", textContent: optionsUsed(job.options) }),
      actions,
    );
    if (job.state === "failed" && job.error) {
      say(this.message, `Failed at ${STAGE_LABELS[job.error.stage] || job.error.stage}: ${job.error.message}`);
    } else if (job.state === "cancelled") {
      say(this.message, "This job was cancelled.", "info");
    }
    const warnings = job.warnings || [];
    this.root.querySelector(".warnings")?.remove();
    if (warnings.length) {
      this.message.after(el("ul", { className: "warnings" }, ...warnings.map((w) => el("li", { textContent: w }))));
    }
    this.showProgress(job.progress, job.state);
    if (job.state === "succeeded") this.showResult(job);
  }

  button(text, action, kind = "") {
    const b = el("button", { type: "button", textContent: text, className: kind });
    b.addEventListener("click", async () => {
      b.disabled = true;
      try { await action(); } finally { b.disabled = false; }
    });
    return b;
  }

  showProgress(progress, state, detail = "") {
    if (state === "succeeded") {
      this.progress.replaceChildren();
      return;
    }
    const names = Object.keys(progress || {});
    const rows = (names.length ? names : ["decoder", "pose2d", "lifter3d", "renderer"]).map((name) => {
      const label = STAGE_LABELS[name] || name;
      const p = progress?.[name] || { done: 0, total: 0 };
      const bar = el("progress", { max: p.total || 1, value: p.done });
      bar.setAttribute("aria-label", label);
      return el("div", { className: "stage" }, el("span", { textContent: label }), bar,
        el("span", { className: "count", textContent: p.total ? `${p.done}/${p.total}` : "" }));
    });
    const line = FINISHED.has(state) ? null
      : el("p", { className: "note", textContent: detail || WAITING[state] || "Working…" });
    this.progress.replaceChildren(...rows, ...(line ? [line] : []));
  }

  follow() {
    this.events?.close();
    const source = new EventSource(this.job.links.events);
    this.events = source;
    source.addEventListener("progress", (e) => {
      const data = JSON.parse(e.data);
      if (data.state !== this.job.state) {
        this.job.state = data.state;
        this.root.dataset.state = data.state;
        this.head.querySelector(".badge")?.replaceWith(stateBadge(data.state));
      }
      this.showProgress(data.progress, data.state, data.message ? `${STAGE_LABELS[data.stage] || data.stage}: ${data.message}` : "");
    });
    source.addEventListener("done", () => {
      source.close();
      this.refresh();
    });
    source.onerror = () => {
      // the stream broke (server restart, proxy timeout): fall back to polling the job
      source.close();
      if (!this.disposed && !this.poll) this.poll = setInterval(() => this.refresh(), 2000);
    };
  }

  async refresh() {
    if (this.disposed) return;
    try {
      const job = await getJob(this.id);
      if (FINISHED.has(job.state)) {
        clearInterval(this.poll);
        this.poll = null;
      }
      this.update(job);
    } catch (err) {
      if (err.status === 404) {
        clearInterval(this.poll);
        this.poll = null;
        say(this.message, "This job no longer exists: it was deleted.");
      }
    }
  }

  async showResult(job) {
    renderDownloads(this.downloads, job.links.artifacts);
    this.downloadsSection.hidden = job.links.artifacts.length === 0;
    if (this.result) return;
    this.result = new ResultView(this.resultBox, job);
    try {
      await this.result.show();
    } catch (err) {
      say(this.message, `The result could not be shown: ${err.message}`);
    }
  }

  async cancel() {
    // DELETE /v1/jobs/{id} is the cancel: it stops the job's stage work and deletes its objects
    if (!window.confirm("Cancelling stops the job and deletes it with its files. Continue?")) return;
    try {
      await deleteJob(this.id);
      this.navigate("/", "The job was cancelled and deleted.");
    } catch (err) {
      say(this.message, `Could not cancel: ${err.message}`);
    }
  }

  async remove() {
    if (!window.confirm("Delete this job and all its files?")) return;
    try {
      await deleteJob(this.id);
      this.navigate("/", "The job was deleted.");
    } catch (err) {
      say(this.message, `Could not delete: ${err.message}`);
    }
  }

  async retry() {
    try {
      await retryJob(this.id);
    } catch (err) {
      say(this.message, `Could not retry: ${err.message}`);
      return;
    }
    say(this.message, "");
    this.result?.dispose();
    this.result = null;
    this.resultBox.replaceChildren();
    await this.refresh();
    if (!FINISHED.has(this.job.state)) this.follow();
  }

  async copyLink() {
    const url = `${location.origin}/jobs/${this.id}`;
    try {
      await navigator.clipboard.writeText(url);
      say(this.message, `Link copied: ${url}`, "info");
    } catch {
      say(this.message, `Link to this job: ${url}`, "info");
    }
  }

  dispose() {
    this.disposed = true;
    this.events?.close();
    clearInterval(this.poll);
    this.result?.dispose();
  }
}
