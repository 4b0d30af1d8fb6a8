// The page's entry point: "/" shows the upload and the job history, "/jobs/{id}" one job, "/live"
// the camera view. Links marked data-nav change the view without reloading; the address is always
// the job's permalink.

import { HomeView } from "./home.js";
import { JobView } from "./job_view.js";
import { LiveView } from "./live_view.js";

const root = document.getElementById("main");
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
route();
