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
