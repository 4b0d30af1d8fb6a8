// Small DOM helpers shared by the views.

export function el(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children.filter((c) => c !== null && c !== undefined && c !== false));
  return node;
}

export function formatDate(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  return d.toLocaleString(undefined, { year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
}

/** Show a message where the person is looking: kind "error", "info" or "" (hide). */
export function say(box, text, kind = "error") {
  box.textContent = text || "";
  box.className = `message ${kind}`;
  box.hidden = !text;
  if (text && kind === "error") box.setAttribute("role", "alert"); else box.removeAttribute("role");
}

export const STATE_WORDS = {
  queued: "queued",
  running: "running",
  recovering: "recovering",
  succeeded: "done",
  failed: "failed",
  cancelled: "cancelled",
};

export function stateBadge(state) {
  return el("span", { className: `badge state-${state}`, textContent: STATE_WORDS[state] || state });
}
