// A time series graph (uPlot) that new samples are appended to.
import uPlot from "uplot";

export class Series {
  // fields: [{label, key or get(sample), scale, fmt}], each a line on the chart.
  constructor(el, title, fields, height = 180) {
    this.fields = fields;
    this.data = [[], ...fields.map(() => [])];
    const width = Math.max(260, el.clientWidth || 600);
    this.plot = new uPlot({
      title,
      width,
      height,
      series: [{}, ...fields.map((f, i) => ({
        label: f.label,
        scale: f.scale || "y",
        stroke: ["#2f6fde", "#d2572e", "#3a9a56"][i % 3],
        width: 1.5,
        value: (u, v) => (v === null || v === undefined ? "–" : f.fmt ? f.fmt(v) : v),
      }))],
      axes: [{}, ...uniqueScales(fields).map((f, i) => ({
        scale: f.scale || "y",
        side: i ? 1 : 3,
        values: (u, ticks) => ticks.map((t) => (f.fmt ? f.fmt(t) : t)),
        size: 70,
      }))],
    }, this.data, el);
    this.resize = () => this.plot.setSize({ width: Math.max(260, el.clientWidth), height });
    window.addEventListener("resize", this.resize);
  }

  set(samples) {
    this.data = [samples.map((s) => s.ts_ms / 1000), ...this.fields.map((f) => samples.map((s) => valueOf(f, s)))];
    this.plot.setData(this.data);
  }

  push(sample) {
    if (!sample) return;
    const t = sample.ts_ms / 1000;
    const xs = this.data[0];
    if (xs.length && xs[xs.length - 1] >= t) return;
    xs.push(t);
    this.fields.forEach((f, i) => this.data[i + 1].push(valueOf(f, sample)));
    this.plot.setData(this.data);
  }

  destroy() {
    window.removeEventListener("resize", this.resize);
    this.plot.destroy();
  }
}

const valueOf = (f, sample) => (f.get ? f.get(sample) : sample[f.key]);

function uniqueScales(fields) {
  const seen = new Set();
  return fields.filter((f) => {
    const s = f.scale || "y";
    if (seen.has(s)) return false;
    seen.add(s);
    return true;
  });
}
