// The web UI: a session check, the live stream, and three pages chosen by
// the URL's fragment (#/, #/guest/NAME, #/create).
import { logout, startSession } from "./api.js";
import { connect } from "./live.js";
import { createWizard } from "./views/create.js";
import { dashboard } from "./views/dashboard.js";
import { guestPage } from "./views/guest.js";

const main = document.getElementById("main");
let leave = () => {};

function route() {
  leave();
  const hash = location.hash || "#/";
  const m = hash.match(/^#\/guest\/(.+)$/);
  if (m) leave = guestPage(main, decodeURIComponent(m[1]));
  else if (hash === "#/create") leave = createWizard(main);
  else leave = dashboard(main);
  for (const a of document.querySelectorAll("nav a"))
    a.toggleAttribute("aria-current", a.getAttribute("href") === hash);
}

async function start() {
  if (!(await startSession())) return;
  document.getElementById("logout").addEventListener("click", logout);
  connect(document.getElementById("live"));
  window.addEventListener("hashchange", route);
  route();
}

start();
