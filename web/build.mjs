// Bundles the web UI into OUT (default ../build/web): app.js and login.js
// (esbuild, minified, every dependency inside), app.css (uPlot's and
// xterm.js's CSS and ours), index.html and login.html. kvzd reads exactly these files.
import * as esbuild from "esbuild";
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = process.argv[2] || join(here, "../build/web");
mkdirSync(out, { recursive: true });

await esbuild.build({
  entryPoints: { app: join(here, "src/app.js"), login: join(here, "src/login.js") },
  bundle: true,
  minify: true,
  format: "iife",
  target: ["es2020"],
  outdir: out,
  legalComments: "none",
  logLevel: "warning",
});
const css = [join(here, "node_modules/uplot/dist/uPlot.min.css"),
  join(here, "node_modules/@xterm/xterm/css/xterm.css"), join(here, "src/app.css")]
  .map((f) => readFileSync(f, "utf8")).join("\n");
writeFileSync(join(out, "app.css"), css);
for (const page of ["index.html", "login.html"])
  copyFileSync(join(here, "src", page), join(out, page));
