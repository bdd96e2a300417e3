// What the e2e scripts share: the environment test_browser.py gives them,
// headless Chromium (Debian's, driven by playwright-core), and steps
// logged so that a failure names the step it happened in.
import { join } from "node:path";

export const env = process.env;
const { chromium } = await import(join(env.KVZ_SOURCE_DIR, "web/node_modules/playwright-core/index.mjs"));

export function launch() {
  return chromium.launch({ executablePath: env.KVZ_CHROMIUM, headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"] });
}

export function steps(prefix) {
  const st = { current: "start" };
  st.log = (s) => {
    st.current = s;
    console.log(prefix + ": " + s);
  };
  return st;
}

export function check(cond, what) {
  if (!cond) throw new Error(what);
}

// A logged-in page on the dashboard: {page, errors (page errors seen),
// shot(name) (a full-page screenshot in KVZ_SHOTS)}.
export async function login(browser) {
  const ctx = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 900 } });
  const page = await ctx.newPage();
  page.setDefaultTimeout(30000);
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  const shot = (name) => page.screenshot({ path: join(env.KVZ_SHOTS, name + ".png"), fullPage: true });
  await page.goto(env.KVZ_UI + "/ui/login");
  await page.fill("#token", env.KVZ_TOKEN);
  await page.press("#token", "Enter");
  await page.waitForURL(env.KVZ_UI + "/");
  return { page, errors, shot };
}

// The same, on a running guest's page.
export async function openGuest(browser, guest) {
  const opened = await login(browser);
  await opened.page.goto(env.KVZ_UI + "/#/guest/" + guest);
  await opened.page.waitForFunction(() => document.getElementById("guest-state")?.textContent === "running");
  return opened;
}

// Runs body({log, browser, page}) in a fresh browser; body sets page once
// it has one. Ends with "PREFIX: all steps passed", or with "PREFIX: FAILED
// at step ...", exit status 1 and a screenshot PREFIX-failure.png.
export async function runSteps(prefix, body) {
  const st = steps(prefix);
  const browser = await launch();
  const run = { log: st.log, browser, page: null };
  try {
    await body(run);
    console.log(prefix + ": all steps passed");
  } catch (e) {
    console.log(prefix + ": FAILED at step '" + st.current + "': " + e.message);
    if (run.page)
      await run.page.screenshot({ path: join(env.KVZ_SHOTS, prefix + "-failure.png"), fullPage: true }).catch(() => {});
    process.exitCode = 1;
  } finally {
    await browser.close();
  }
}
