// The page's entry point: "/" shows the upload and the job history, "/jobs/{id}" one job, "/live"
// the camera view. Links marked data-nav change the view without reloading; the address is always
// the job's permalink.

import { currentUser, ensureSignedIn, showSignIn, signOut } from "./auth.js";
import { el } from "./dom.js";
import { HomeView } from "./home.js";
import { JobView } from "./job_view.js";
import { LiveView } from "./live_view.js";

const root = document.getElementById("main");
const account = document.getElementById("account");
let current = null;

function route(notice = "") {
  current?.dispose();
  const m = /^\/jobs\/([0-9a-f]{32})\/?$/.exec(location.pathname);
  const live = /^\/live\/?$/.test(location.pathname);
  current = m ? new JobView(root, m[1], navigate) : live ? new LiveView(root) : new HomeView(root, navigate, notice);
  document.title = live ? "hpe3d: live camera" : "hpe3d: video to 3D human motion";
  document.body.dataset.view = m ? "job" : live ? "live" : "home";
  current.show().catch((err) => {
    root.prepend(Object.assign(document.createElement("p"), { className: "message error", textContent: `The page failed: ${err.message}` }));
    throw err;
  });
}

function navigate(path, notice = "") {
  if (path !== location.pathname) history.pushState({}, "", path);
  window.scrollTo(0, 0);
  route(notice);
}

document.addEventListener("click", (e) => {
  const link = e.target.closest("a[data-nav]");
  if (!link || e.metaKey || e.ctrlKey || e.shiftKey || e.button !== 0) return;
  e.preventDefault();
  navigate(new URL(link.href).pathname);
});
window.addEventListener("popstate", () => route());

/** "Signed in as NAME · Sign out" in the header (nothing with authentication off). */
function showAccount() {
  const who = currentUser();
  if (!who || !who.auth) {
    account.replaceChildren();
    return;
  }
  const out = el("button", { type: "button", className: "secondary small", id: "sign-out", textContent: "Sign out" });
  out.addEventListener("click", async () => {
    await signOut();
    signIn();
  });
  account.replaceChildren(el("span", { className: "who", textContent: `${who.user}${who.admin ? " (admin)" : ""}` }), " ", out);
}

async function signIn(reason = "") {
  current?.dispose();
  current = null;
  account.replaceChildren();
  document.body.dataset.view = "sign-in";
  await showSignIn(root, reason);
  showAccount();
  route();
}

window.addEventListener("hpe3d:signed-out", () => {
  if (document.body.dataset.view !== "sign-in") signIn("This browser's key was refused (revoked, or the server changed); sign in again.");
});

async function start() {
  let signedIn;
  try {
    signedIn = await ensureSignedIn();
  } catch (err) {
    root.replaceChildren(el("p", { className: "message error", textContent: `Could not reach the server: ${err.message}` }));
    return;
  }
  if (!signedIn) {
    await signIn();
    return;
  }
  showAccount();
  route();
}
start();
