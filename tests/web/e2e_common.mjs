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

// A logged-in page on a running guest's page: {page, errors (page errors
// seen), shot(name) (a full-page screenshot in KVZ_SHOTS)}.
export async function openGuest(browser, guest) {
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
  await page.goto(env.KVZ_UI + "/#/guest/" + guest);
  await page.waitForFunction(() => document.getElementById("guest-state")?.textContent === "running");
  return { page, errors, shot };
}
