// The start page: the upload (drop or choose a file, options with their real defaults and a line of
// help each, errors in words next to the button) and the job history.

import { deleteJob, getLifterWeights, getModels, getOptions, listJobs, submitJob } from "./api.js";
import { el, formatDate, say, stateBadge } from "./dom.js";
import { humanSize } from "./downloads.js";

const LABELS = {
  max_persons: "Max persons", working_size: "Working size (px)", render: "Render the video", pose_model: "2D pose model",
  lifter_weights: "3D lifter weights",
};
const FINISHED = new Set(["succeeded", "failed", "cancelled"]);

function label(name) {
  return LABELS[name] || name.replace(/_/g, " ").replace(/^./, (c) => c.toUpperCase());
}

/** The help line of an option: its description without wire details ("0 = server default", "one of GET ..."). */
function helpLine(option) {
  let text = (option.help || "").replace(/;?\s*0 = server default/i, "").replace(/,?\s*one of GET \S+;?/i, ";").replace(/;\s*;/, ";")
    .replace(/;?\s*empty = the default[^;]*/i, "").replace(/`/g, "").trim();
  if (text) text = text.charAt(0).toUpperCase() + text.slice(1);
  const parts = [text && `${text}.`];
  if (option.type === "integer" || option.type === "number") {
    if (option.minimum != null && option.maximum != null) parts.push(`${option.minimum} to ${option.maximum}.`);
    parts.push(`Default ${option.default}${option.server_default_setting ? ` (server setting ${option.server_default_setting})` : ""}.`);
  } else if (option.type === "boolean") {
    parts.push(`Default ${option.default ? "on" : "off"}.`);
  } else if (option.default != null && option.default !== "" && !option.choices) {
    parts.push(`Default ${option.default}.`);
  }
  if (option.choices?.some((c) => c.disabled)) parts.push("The greyed-out ones need their official weights installed first.");
  return parts.filter(Boolean).join(" ");
}

function optionField(option) {
  const id = `opt-${option.name}`;
  const help = el("small", { className: "help", id: `${id}-help`, textContent: helpLine(option) });
  let input;
  if (option.type === "boolean") {
    input = el("input", { type: "checkbox", name: option.name, id, checked: Boolean(option.default) });
    const row = el("div", { className: "field check" }, el("label", { htmlFor: id }, input, ` ${label(option.name)}`), help);
    input.setAttribute("aria-describedby", help.id);
    return row;
  }
  if (option.choices) {
    input = el("select", { name: option.name, id }, ...option.choices.map((c) => {
      const choice = typeof c === "string" ? { value: c, text: c } : c;
      const node = el("option", { value: choice.value, textContent: choice.text, selected: choice.value === String(option.default), disabled: Boolean(choice.disabled) });
      if (choice.title) node.title = choice.title;
      return node;
    }));
  } else if (option.type === "string") {
    input = el("input", { type: "text", name: option.name, id, value: option.default ?? "", spellcheck: false });
  } else {
    input = el("input", { type: "number", name: option.name, id, value: option.default ?? "", inputMode: "numeric" });
    if (option.minimum != null) input.min = option.minimum;
    if (option.maximum != null) input.max = option.maximum;
    if (option.type === "integer") input.step = 1;
  }
  input.setAttribute("aria-describedby", help.id);
  return el("div", { className: "field" }, el("label", { htmlFor: id, textContent: label(option.name) }), input, help);
}

/** The 2D models the server offers (GET /v1/models) as choices; "" is the server's default model. */
async function modelChoices() {
  try {
    const { models, not_loaded: missing = [] } = await getModels();
    const fallback = models.find((m) => m.default);
    return [
      { value: "", text: fallback ? `default (${fallback.name})` : "server default" },
      ...models.filter((m) => !m.default).map((m) => ({ value: m.name, text: m.name })),
      ...missing.map((m) => ({ value: m.name, text: `${m.name} (not installed)`, disabled: true, title: m.how || "" })),
    ];
  } catch {
    return null; // GET /v1/models failed (503: the pose2d stage does not answer): a text field
  }
}

/** The lifter weights the caller may use (GET /v1/lifter-weights: shipped ones, then the caller's own) as
 * choices; "" is the default weights. */
async function weightsChoices() {
  try {
    const { weights } = await getLifterWeights();
    const fallback = weights.find((w) => w.default);
    return [
      { value: "", text: fallback ? `default (${fallback.name})` : "server default", title: fallback?.summary || "" },
      ...weights.filter((w) => !w.default).map((w) => ({
        value: w.name, text: w.kind === "own" ? `${w.name} (yours)` : w.name, title: w.summary,
      })),
    ];
  } catch {
    return null; // the list could not be read: a text field
  }
}

export class HomeView {
  constructor(root, navigate, notice = "") {
    this.root = root;
    this.navigate = navigate;
    this.notice = notice;
    this.file = null;
    this.timer = null;
  }

  async show() {
    this.message = el("p", { className: "message", hidden: true, id: "upload-message" });
    this.fileInput = el("input", { type: "file", id: "file", name: "file", accept: "video/*,image/*", className: "visually-hidden" });
    this.fileName = el("span", { className: "file-name", textContent: "No file chosen" });
    const drop = el("label", { className: "drop", htmlFor: "file", id: "drop" },
      el("strong", { textContent: "Drop a video or a photo here" }),
      el("span", { textContent: " or " }),
      el("span", { className: "choose", textContent: "choose a file" }),
      el("br"), this.fileName);
    this.optionsBox = el("div", { className: "options" });
    this.submit = el("button", { type: "submit", textContent: "Start", id: "start", className: "primary" });
    this.uploadBar = el("progress", { max: 1, value: 0, hidden: true, id: "upload-progress" });
    this.uploadBar.setAttribute("aria-label", "upload");
    this.limits = el("p", { className: "note" });
    // the page checks the fields itself, so that a problem is said next to the Start button
    const form = el("form", { id: "upload", noValidate: true },
      this.fileInput, drop, this.limits, this.optionsBox,
      el("div", { className: "submit-row" }, this.submit, this.uploadBar), this.message);
    this.historyList = el("ul", { className: "history", id: "history" });
    this.historyNote = el("p", { className: "note" });
    const refresh = el("button", { type: "button", textContent: "Refresh", className: "secondary" });
    refresh.addEventListener("click", () => this.loadHistory());
    this.root.replaceChildren(
      el("section", { className: "card upload-card" }, el("h2", { textContent: "New job" }),
        el("p", { className: "lead", textContent: "Upload a video or a photo of people: 2D keypoints, 3D poses in metres, joint angles, a rendered video and exports (JSON, CSV, BVH) come back." }),
        form),
      el("section", { className: "card" }, el("div", { className: "history-head" }, el("h2", { textContent: "Jobs" }), refresh),
        this.historyNote, this.historyList),
    );
    if (this.notice) say(this.message, this.notice, "info");
    this.wireDrop(drop);
    form.addEventListener("submit", (e) => { e.preventDefault(); this.start(form); });
    await Promise.all([this.loadOptions(), this.loadHistory()]);
  }

  wireDrop(drop) {
    this.fileInput.addEventListener("change", () => this.choose(this.fileInput.files[0]));
    for (const name of ["dragenter", "dragover"]) {
      drop.addEventListener(name, (e) => { e.preventDefault(); drop.classList.add("over"); });
    }
    for (const name of ["dragleave", "drop"]) {
      drop.addEventListener(name, () => drop.classList.remove("over"));
    }
    drop.addEventListener("drop", (e) => {
      e.preventDefault();
      if (e.dataTransfer?.files?.length) this.choose(e.dataTransfer.files[0]);
    });
  }

  choose(file) {
    this.file = file || null;
    this.fileName.textContent = file ? `${file.name} (${humanSize(file.size)})` : "No file chosen";
    say(this.message, "");
  }

  async loadOptions() {
    try {
      this.described = await getOptions();
    } catch (err) {
      say(this.message, `Could not load the job options: ${err.message}`);
      return;
    }
    const { options, limits } = this.described;
    const poseModel = options.find((o) => o.name === "pose_model");
    const weights = options.find((o) => o.name === "lifter_weights");
    const [models, weightChoices] = await Promise.all([
      poseModel && !poseModel.choices ? modelChoices() : null,
      weights && !weights.choices ? weightsChoices() : null,
    ]);
    if (models) poseModel.choices = models;
    if (weightChoices) weights.choices = weightChoices;
    this.optionsBox.replaceChildren(...options.map(optionField));
    this.limits.textContent = `Up to ${limits.max_upload_mb} MB and ${Math.round(limits.max_duration_s)} s of video.`;
  }

  async start(form) {
    say(this.message, "");
    if (!this.file) {
      say(this.message, "Choose a video or a photo first (drop it on the box above or click it).");
      return;
    }
    const limits = this.described?.limits;
    if (limits && this.file.size > limits.max_upload_mb * 1024 * 1024) {
      say(this.message, `${this.file.name} is ${humanSize(this.file.size)}: this server accepts up to ${limits.max_upload_mb} MB. Trim or compress the video and try again.`);
      return;
    }
    for (const input of form.querySelectorAll(".options input[type=number]")) {
      if (!input.checkValidity()) {
        say(this.message, `${label(input.name)}: ${input.validationMessage}`);
        input.focus();
        return;
      }
    }
    const body = new FormData();
    body.append("file", this.file, this.file.name);
    for (const option of this.described?.options || []) {
      const input = form.elements[option.name];
      if (!input) continue;
      const value = option.type === "boolean" ? String(input.checked) : input.value;
      if (value !== "") body.append(option.name, value);
    }
    this.submit.disabled = true;
    this.uploadBar.hidden = false;
    this.uploadBar.value = 0;
    say(this.message, "Uploading…", "info");
    try {
      const job = await submitJob(body, (f) => { this.uploadBar.value = f; });
      this.navigate(`/jobs/${job.id}`);
    } catch (err) {
      this.uploadBar.hidden = true;
      this.submit.disabled = false;
      this.fail(err);
    }
  }

  fail(err) {
    const failedJob = err.body && err.body.job;
    let text = err.message;
    if (err.status === 413) text = `Too large: ${err.message}.`.replace("..", ".");
    else if (err.status === 422) text = `Not accepted: ${err.message}`;
    else if (err.status === 0 && this.described) {
      text = `${err.message} (files over ${this.described.limits.max_upload_mb} MB are refused).`;
    }
    if (failedJob && !/[.!?]$/.test(text)) text += ".";
    say(this.message, text);
    if (failedJob) {
      const link = el("a", { href: `/jobs/${failedJob.id}`, textContent: "the failed job" });
      link.dataset.nav = "";
      this.message.append(" See ", link, ".");
    }
    this.loadHistory();
  }

  async loadHistory() {
    clearTimeout(this.timer);
    let jobs;
    try {
      jobs = (await listJobs(50)).jobs;
    } catch (err) {
      this.historyNote.textContent = `Could not load the jobs: ${err.message}`;
      return;
    }
    this.historyNote.textContent = jobs.length ? "" : "No jobs yet: the jobs you start appear here, newest first.";
    this.historyList.replaceChildren(...jobs.map((job) => this.historyItem(job)));
    if (jobs.some((j) => !FINISHED.has(j.state)) && !this.disposed) this.timer = setTimeout(() => this.loadHistory(), 3000);
  }

  historyItem(job) {
    const thumb = job.links.artifacts.find((a) => a.name === "thumbnail.jpg");
    const picture = thumb
      ? el("img", { src: thumb.url, alt: "", loading: "lazy", width: 96, height: 54 })
      : el("span", { className: `placeholder state-${job.state}`, textContent: job.video?.still_image ? "photo" : "video" });
    const facts = [formatDate(job.created_at)];
    if (job.video) facts.push(job.video.still_image ? "photo" : `${Number(job.video.duration_s).toFixed(1)} s`);
    if (job.expires_at) facts.push(`kept until ${formatDate(job.expires_at)}`);
    const link = el("a", { href: `/jobs/${job.id}`, className: "job-link" },
      el("span", { className: "thumb" }, picture),
      el("span", { className: "job-text" },
        el("span", { className: "input-name", textContent: job.input_name }),
        el("span", { className: "facts" }, stateBadge(job.state), ` ${facts.join(" · ")}`),
        job.error ? el("span", { className: "error-line", textContent: job.error.message }) : null));
    link.dataset.nav = "";
    const finished = FINISHED.has(job.state);
    const action = el("button", { type: "button", className: "danger small", textContent: finished ? "Delete" : "Cancel" });
    action.setAttribute("aria-label", `${finished ? "delete" : "cancel"} ${job.input_name}`);
    action.addEventListener("click", () => this.removeJob(job, finished));
    return el("li", {}, link, action);
  }

  /** DELETE /v1/jobs/{id}: cancels a running job and deletes the job and its files. */
  async removeJob(job, finished) {
    const question = finished
      ? `Delete the job for ${job.input_name} and all its files?`
      : `Cancel the job for ${job.input_name}? It stops and is deleted with its files.`;
    if (!window.confirm(question)) return;
    try {
      await deleteJob(job.id);
      await this.loadHistory();
      this.historyNote.textContent = finished ? `Deleted the job for ${job.input_name}.` : `Cancelled and deleted the job for ${job.input_name}.`;
    } catch (err) {
      await this.loadHistory();
      this.historyNote.textContent = `Could not ${finished ? "delete" : "cancel"} the job for ${job.input_name}: ${err.message}`;
    }
  }

  dispose() {
    this.disposed = true;
    clearTimeout(this.timer);
  }
}
