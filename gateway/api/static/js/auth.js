// Signing in: the page keeps the API key in this browser's localStorage and sends it as a header
// (never in a URL); POST /v1/session turns it into a short-lived HttpOnly cookie that lets the
// browser load what it cannot send a header with (the video, thumbnails, downloads, the event
// stream). The cookie is renewed while the page is open; "Sign out" forgets both.

import { el } from "./dom.js";

const STORAGE_KEY = "hpe3d.apiKey";
const RENEW_MS = 20 * 60 * 1000;  // the server's sessions last an hour

let renewal = null;
let whoami = null;
let memoryKey = "";  // where the key stays when the browser refuses localStorage

export function storedKey() {
  try { return localStorage.getItem(STORAGE_KEY) || memoryKey; } catch { return memoryKey; }
}

/** Headers that authenticate a request of the page (none while signed out or with auth off). */
export function authHeaders() {
  const key = storedKey();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

/** Who the page is signed in as ({user, admin, auth, retention_days, ...}), or null. */
export function currentUser() {
  return whoami;
}

async function openSession(key) {
  const headers = key ? { Authorization: `Bearer ${key}` } : {};
  const resp = await fetch("/v1/session", { method: "POST", headers });
  if (!resp.ok) {
    let detail = "";
    try { detail = (await resp.json()).detail || ""; } catch { /* not JSON */ }
    const error = new Error(detail || `The server answered ${resp.status}.`);
    error.status = resp.status;
    throw error;
  }
  return resp.json();
}

function keepRenewing(key) {
  clearInterval(renewal);
  renewal = setInterval(() => openSession(key).catch(() => {}), RENEW_MS);
}

/**
 * Resolves to true when the page may call the API: the server runs without authentication
 * (``<body data-auth="off">``), a stored key still opens a session, or (``data-auth="oidc"``) the
 * token a proxy adds does. False: the sign-in form is needed (without a key, and with no OpenID
 * Connect issuer configured, nothing is asked of the server).
 */
export async function ensureSignedIn() {
  if (document.body.dataset.auth === "off") return true;
  const key = storedKey();
  // behind a proxy that adds an OpenID Connect token to every request, no key is needed
  if (!key && document.body.dataset.auth !== "oidc") return false;
  try {
    whoami = await openSession(key);
    keepRenewing(key);
    return true;
  } catch (err) {
    if (err.status === 401) {
      forgetKey();
      return false;
    }
    throw err;
  }
}

function forgetKey() {
  memoryKey = "";
  try { localStorage.removeItem(STORAGE_KEY); } catch { /* storage disabled */ }
  clearInterval(renewal);
  whoami = null;
}

export async function signOut() {
  forgetKey();
  await fetch("/v1/session", { method: "DELETE" }).catch(() => {});
}

/** The sign-in form in ``root``; resolves once a key is accepted. */
export function showSignIn(root, reason = "") {
  return new Promise((resolve) => {
    const input = el("input", { type: "password", id: "api-key", name: "api-key", autocomplete: "current-password",
      required: true, spellcheck: false, placeholder: "hpe3d_…" });
    const message = el("p", { className: reason ? "message error" : "message", id: "sign-in-message",
      hidden: !reason, textContent: reason });
    const button = el("button", { type: "submit", id: "sign-in", textContent: "Sign in" });
    const form = el("form", { className: "sign-in", id: "sign-in-form" },
      el("h2", { textContent: "Sign in" }),
      el("p", { className: "note", textContent: "Paste your API key. `hpe3d serve` prints one for its own stack "
        + "(the line \"API key: …\"); an operator makes others with `hpe3d keys create`. The key stays in "
        + "this browser until you sign out." }),
      el("label", { htmlFor: "api-key", textContent: "API key" }), input, button, message);
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const key = input.value.trim();
      button.disabled = true;
      try {
        whoami = await openSession(key);
        memoryKey = key;
        try { localStorage.setItem(STORAGE_KEY, key); } catch { /* storage disabled: this page only */ }
        keepRenewing(key);
        resolve(whoami);
      } catch (err) {
        message.hidden = false;
        message.className = "message error";
        message.textContent = err.status === 401 ? `That key was refused: ${err.message}` : err.message;
      } finally {
        button.disabled = false;
      }
    });
    root.replaceChildren(form);
    input.focus();
  });
}

/** Tell the page its key no longer works (an answer 401): it shows the sign-in form again. */
export function signedOutByServer() {
  forgetKey();
  window.dispatchEvent(new CustomEvent("hpe3d:signed-out"));
}
