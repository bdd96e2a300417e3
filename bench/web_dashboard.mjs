// Browser side of bench/web_dashboard.py: `load N` logs in, then loads the
// dashboard N times and prints each time (ms) from navigation to all guest
// rows and the host figures on screen; `hold S` keeps it open S seconds.
import { join } from "node:path";

const [mode, arg] = process.argv.slice(2);
const { KVZ_SOURCE_DIR, KVZ_UI, KVZ_TOKEN, KVZ_CHROMIUM, KVZ_GUESTS } = process.env;
const { chromium } = await import(join(KVZ_SOURCE_DIR, "web/node_modules/playwright-core/index.mjs"));
const browser = await chromium.launch({ executablePath: KVZ_CHROMIUM, headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"] });
try {
  const ctx = await browser.newContext({ ignoreHTTPSErrors: true });
  const page = await ctx.newPage();
  await page.goto(KVZ_UI + "/ui/login");
  await page.fill("#token", KVZ_TOKEN);
  await page.press("#token", "Enter");
  await page.waitForURL(KVZ_UI + "/");
  const n = Number(KVZ_GUESTS);
  if (mode === "load") {
    const times = [];
    for (let i = 0; i < Number(arg); i++) {
      const t0 = Date.now();
      await page.goto(KVZ_UI + "/");
      await page.waitForFunction((n) => document.querySelectorAll("#guests tbody tr").length === n &&
        !document.getElementById("host-cpu").textContent.startsWith("–"), n, { timeout: 30000 });
      times.push(Date.now() - t0);
    }
    console.log(JSON.stringify(times));
  } else {
    await page.waitForSelector("#guests tbody tr");
    await page.waitForTimeout(Number(arg) * 1000);
    console.log(JSON.stringify({ rows: await page.evaluate(() => document.querySelectorAll("#guests tbody tr").length) }));
  }
} finally {
  await browser.close();
}
