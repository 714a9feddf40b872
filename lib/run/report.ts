// The run report: one self-contained HTML page (inline CSS and SVG, no scripts, no external
// resources) summarising a pipeline run folder: the run state, the training curves of every
// iteration, generation statistics and the held-out metrics. It renders whatever exists, so
// it can be written while a run is in progress.
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";

import { writeFileAtomic } from "../core/atomic.js";
import type { IterationRecord, RunState } from "./pipeline.js";

/** One line of an iteration's metrics.jsonl (non-finite values were written as null). */
export type LogLine = Record<string, number | null>;

export interface RenderOptions {
  /** The page title (default: "SPIN run report"). */
  title?: string;
  /** Shown in the header; renderReport itself never reads the clock. */
  generatedAt?: Date;
  /** Shown in the header: where the run lives. */
  runDir?: string;
  /**
   * Other models to plot beside this run's held-out metrics, per iteration: evals[t] is the
   * model at x = t (θt's position; undefined where there is none), e.g. a second SPIN run, or a
   * baseline with the updates of t iterations.
   */
  comparison?: readonly ComparedModel[];
  /** The legend name of this run's own series beside the comparison (default "this run"). */
  runName?: string;
}

/** A series of held-out metrics drawn beside the run's own (RenderOptions.comparison). */
export interface ComparedModel {
  name: string;
  evals: readonly (Record<string, number> | undefined)[];
}

/** The metrics plotted per update step, in order. */
export const REPORT_PLOTS: readonly { key: string; title: string; yDomain?: [number, number] }[] = [
  { key: "loss", title: "loss" },
  { key: "rewards/margins", title: "rewards/margins" },
  { key: "rewards/accuracies", title: "rewards/accuracies", yDomain: [0, 1] },
  { key: "logps/real", title: "logps/real" },
  { key: "logps/generated", title: "logps/generated" },
];

const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"];

/** The colour of iteration t's series. */
function colorOf(t: number): string {
  return PALETTE[t % PALETTE.length]!;
}

// ---------------------------------------------------------------- text and numbers

/** Escapes text for HTML element content and attribute values. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);
}

function isNum(v: unknown): v is number {
  return typeof v === "number" && Number.isFinite(v);
}

/** A compact rendering of a metric value: integers as they are, others with 4 significant digits. */
export function formatNumber(v: number | null | undefined): string {
  if (v === null || v === undefined) return "—";
  if (Number.isNaN(v)) return "NaN";
  if (!Number.isFinite(v)) return v > 0 ? "∞" : "−∞";
  if (Number.isInteger(v) && Math.abs(v) < 1e15) return String(v);
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-4 || a >= 1e6)) return v.toExponential(3).replace(/\.?0+e/, "e");
  return String(Number(v.toPrecision(4)));
}

/** Tick values between lo and hi at a "nice" step (1, 2 or 5 × 10^k), about `count` of them. */
export function niceTicks(lo: number, hi: number, count = 5): { ticks: number[]; step: number; lo: number; hi: number } {
  if (!(hi > lo)) {
    const pad = lo === 0 ? 1 : Math.abs(lo) * 0.1;
    lo -= pad;
    hi += pad;
  }
  const raw = (hi - lo) / Math.max(1, count);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const norm = raw / mag;
  const step = (norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 5 ? 5 : 10) * mag;
  const first = Math.floor(lo / step + 1e-9) * step;
  const last = Math.ceil(hi / step - 1e-9) * step;
  const ticks: number[] = [];
  for (let i = 0; first + i * step <= last + step * 1e-9; i++) ticks.push(first + i * step);
  return { ticks, step, lo: first, hi: last };
}

/**
 * An axis over [lo, hi] widened by `pad` of its span on each side (so no line runs along the
 * frame), with nice ticks inside it.
 */
function axisRange(lo: number, hi: number, padLo: number, padHi: number, count: number): { ticks: number[]; step: number; lo: number; hi: number } {
  if (!(hi > lo)) {
    const p = lo === 0 ? 1 : Math.abs(lo) * 0.1;
    lo -= p;
    hi += p;
  }
  const span = hi - lo;
  const a = lo - padLo * span;
  const b = hi + padHi * span;
  const { ticks, step } = niceTicks(a, b, count);
  return { ticks: ticks.filter((t) => t >= a - step * 1e-9 && t <= b + step * 1e-9), step, lo: a, hi: b };
}

/** A tick label with as many decimals as the tick step needs. */
function tickLabel(v: number, step: number): string {
  const a = Math.max(Math.abs(v), step);
  if (a >= 1e6 || step < 1e-4) return v === 0 ? "0" : v.toExponential(1).replace(/\.0e/, "e");
  const decimals = Math.max(0, -Math.floor(Math.log10(step) + 1e-9));
  const s = v.toFixed(decimals);
  return s === "-0" || /^-0\.0*$/.test(s) ? s.slice(1) : s;
}

// ---------------------------------------------------------------- SVG plots

export interface PlotSeries {
  name: string;
  color: string;
  /** [x, y] points in x order; a point with a non-finite y breaks the line. */
  points: [number, number | null][];
}

export interface LinePlotOptions {
  title: string;
  xLabel: string;
  yLabel?: string;
  series: PlotSeries[];
  width?: number;
  height?: number;
  /** A fixed y range (widened if a value falls outside). */
  yDomain?: [number, number];
  /** Dashed vertical lines with a label, e.g. iteration boundaries. */
  xMarkers?: { x: number; label: string }[];
}

const FONT = `font-family="system-ui, -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif"`;

function svgOpen(width: number, height: number, title: string): string {
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" class="plot" viewBox="0 0 ${width} ${height}" width="${width}" height="${height}" role="img" aria-label="${escapeHtml(title)}" ${FONT} font-size="12">` +
    `<title>${escapeHtml(title)}</title><rect x="0" y="0" width="${width}" height="${height}" fill="#ffffff"/>` +
    `<text x="${width / 2}" y="20" text-anchor="middle" font-size="15" font-weight="600" fill="#222">${escapeHtml(title)}</text>`
  );
}

/** Legend entries in rows under the title; returns the markup and the height used. */
function legend(items: { name: string; color: string }[], left: number, right: number, top: number): { svg: string; height: number } {
  if (items.length === 0) return { svg: "", height: 0 };
  const rowHeight = 18;
  let x = left;
  let y = top;
  const parts: string[] = [];
  for (const item of items) {
    const w = 26 + item.name.length * 6.6 + 14;
    if (x + w > right && x > left) {
      x = left;
      y += rowHeight;
    }
    parts.push(
      `<g class="legend-item"><line x1="${x}" y1="${y}" x2="${x + 20}" y2="${y}" stroke="${item.color}" stroke-width="3"/>` +
        `<text x="${x + 26}" y="${y + 4}" fill="#333">${escapeHtml(item.name)}</text></g>`,
    );
    x += w;
  }
  return { svg: `<g class="legend">${parts.join("")}</g>`, height: y - top + rowHeight };
}

function noData(width: number, height: number, top: number): string {
  return `<text x="${width / 2}" y="${(top + height) / 2}" text-anchor="middle" fill="#999" font-size="14">no data yet</text>`;
}

/** A line plot: axes, ticks with labels, one polyline per series (split at missing values), a legend. */
export function svgLinePlot(options: LinePlotOptions): string {
  const width = options.width ?? 560;
  const height = options.height ?? 320;
  const parts = [svgOpen(width, height, options.title)];
  const lg = legend(options.series, 64, width - 16, 40);
  parts.push(lg.svg);
  const m = { left: 64, right: 16, top: 40 + lg.height + 6, bottom: 46 };
  const xs: number[] = [];
  const ys: number[] = [];
  for (const s of options.series) {
    for (const [x, y] of s.points) {
      if (isNum(x) && isNum(y)) {
        xs.push(x);
        ys.push(y);
      }
    }
  }
  if (xs.length === 0) {
    parts.push(noData(width, height, m.top), "</svg>");
    return parts.join("");
  }
  let yLo = Math.min(...ys);
  let yHi = Math.max(...ys);
  if (options.yDomain) {
    yLo = Math.min(yLo, options.yDomain[0]);
    yHi = Math.max(yHi, options.yDomain[1]);
  }
  const markerXs = (options.xMarkers ?? []).map((mk) => mk.x);
  const xt = axisRange(Math.min(0, ...xs, ...markerXs), Math.max(...xs, ...markerXs), 0, 0.02, 7);
  const yt = axisRange(yLo, yHi, 0.05, 0.05, 6);
  const pw = width - m.left - m.right;
  const ph = height - m.top - m.bottom;
  const sx = (x: number) => m.left + ((x - xt.lo) / (xt.hi - xt.lo)) * pw;
  const sy = (y: number) => m.top + ph - ((y - yt.lo) / (yt.hi - yt.lo)) * ph;
  const r = (v: number) => Math.round(v * 100) / 100;

  // grid, ticks and tick labels
  const axis: string[] = [];
  for (const y of yt.ticks) {
    const py = r(sy(y));
    axis.push(`<line x1="${m.left}" y1="${py}" x2="${m.left + pw}" y2="${py}" stroke="#e6e6e6"/>`);
    axis.push(`<line x1="${m.left - 5}" y1="${py}" x2="${m.left}" y2="${py}" stroke="#444"/>`);
    axis.push(`<text x="${m.left - 8}" y="${py + 4}" text-anchor="end" fill="#444">${escapeHtml(tickLabel(y, yt.step))}</text>`);
  }
  for (const x of xt.ticks) {
    const px = r(sx(x));
    axis.push(`<line x1="${px}" y1="${m.top}" x2="${px}" y2="${m.top + ph}" stroke="#f0f0f0"/>`);
    axis.push(`<line x1="${px}" y1="${m.top + ph}" x2="${px}" y2="${m.top + ph + 5}" stroke="#444"/>`);
    axis.push(`<text x="${px}" y="${m.top + ph + 18}" text-anchor="middle" fill="#444">${escapeHtml(tickLabel(x, xt.step))}</text>`);
  }
  parts.push(`<g class="axes">${axis.join("")}</g>`);
  for (const mk of options.xMarkers ?? []) {
    const px = r(sx(mk.x));
    parts.push(
      `<g class="marker"><line x1="${px}" y1="${m.top}" x2="${px}" y2="${m.top + ph}" stroke="#888" stroke-dasharray="4 3"/>` +
        `<text x="${px + 3}" y="${m.top + 11}" fill="#777" font-size="10">${escapeHtml(mk.label)}</text></g>`,
    );
  }
  parts.push(
    `<rect x="${m.left}" y="${m.top}" width="${pw}" height="${ph}" fill="none" stroke="#444"/>`,
    `<text x="${m.left + pw / 2}" y="${height - 8}" text-anchor="middle" fill="#222">${escapeHtml(options.xLabel)}</text>`,
  );
  if (options.yLabel) {
    parts.push(`<text transform="translate(14 ${m.top + ph / 2}) rotate(-90)" text-anchor="middle" fill="#222">${escapeHtml(options.yLabel)}</text>`);
  }

  // the series: one polyline per unbroken run of finite points
  options.series.forEach((s, index) => {
    const segments: [number, number][][] = [[]];
    for (const [x, y] of s.points) {
      if (isNum(x) && isNum(y)) segments[segments.length - 1]!.push([x, y]);
      else if (segments[segments.length - 1]!.length > 0) segments.push([]);
    }
    const lines: string[] = [];
    for (const seg of segments) {
      if (seg.length === 0) continue;
      const pts = seg.map(([x, y]) => `${r(sx(x))},${r(sy(y))}`).join(" ");
      lines.push(`<polyline points="${pts}" fill="none" stroke="${s.color}" stroke-width="2" stroke-linejoin="round" stroke-linecap="round"/>`);
      // a lone point would draw nothing: mark it
      if (seg.length === 1) lines.push(`<circle cx="${r(sx(seg[0]![0]))}" cy="${r(sy(seg[0]![1]))}" r="3" fill="${s.color}"/>`);
    }
    parts.push(`<g class="series" data-series="${index}" data-name="${escapeHtml(s.name)}">${lines.join("")}</g>`);
  });
  parts.push("</svg>");
  return parts.join("");
}

export interface BarPlotOptions {
  title: string;
  /** One group of bars per category (e.g. iteration). */
  categories: { label: string; color: string; value: number | null | undefined }[];
  yLabel?: string;
  yDomain?: [number, number];
  /** How a value is written above its bar. */
  format?: (v: number) => string;
  width?: number;
  height?: number;
}

/** A bar chart: one bar per category with its value written above it. */
export function svgBarPlot(options: BarPlotOptions): string {
  const width = options.width ?? 360;
  const height = options.height ?? 260;
  const parts = [svgOpen(width, height, options.title)];
  const m = { left: 56, right: 12, top: 40, bottom: 40 };
  const values = options.categories.map((c) => c.value).filter(isNum);
  if (options.categories.length === 0 || values.length === 0) {
    parts.push(noData(width, height, m.top), "</svg>");
    return parts.join("");
  }
  const lo = Math.min(0, ...values, options.yDomain?.[0] ?? 0);
  const hi = Math.max(...values, options.yDomain?.[1] ?? -Infinity);
  const yt = axisRange(lo, hi, 0, 0.14, 5);
  const pw = width - m.left - m.right;
  const ph = height - m.top - m.bottom;
  const sy = (y: number) => m.top + ph - ((y - yt.lo) / (yt.hi - yt.lo)) * ph;
  const r = (v: number) => Math.round(v * 100) / 100;
  const format = options.format ?? formatNumber;
  for (const y of yt.ticks) {
    const py = r(sy(y));
    parts.push(
      `<line x1="${m.left}" y1="${py}" x2="${m.left + pw}" y2="${py}" stroke="#e6e6e6"/>`,
      `<line x1="${m.left - 5}" y1="${py}" x2="${m.left}" y2="${py}" stroke="#444"/>`,
      `<text x="${m.left - 8}" y="${py + 4}" text-anchor="end" fill="#444">${escapeHtml(tickLabel(y, yt.step))}</text>`,
    );
  }
  const slot = pw / options.categories.length;
  const barWidth = Math.min(56, slot * 0.6);
  options.categories.forEach((c, i) => {
    const cx = m.left + slot * (i + 0.5);
    parts.push(`<text x="${r(cx)}" y="${m.top + ph + 18}" text-anchor="middle" fill="#444">${escapeHtml(c.label)}</text>`);
    if (!isNum(c.value)) {
      parts.push(`<text x="${r(cx)}" y="${m.top + ph - 6}" text-anchor="middle" fill="#999">—</text>`);
      return;
    }
    const y0 = sy(Math.max(0, yt.lo));
    const y1 = sy(c.value);
    parts.push(
      `<rect class="bar" x="${r(cx - barWidth / 2)}" y="${r(Math.min(y0, y1))}" width="${r(barWidth)}" height="${r(Math.max(1, Math.abs(y0 - y1)))}" fill="${c.color}"/>`,
      `<text x="${r(cx)}" y="${r(Math.min(y0, y1) - 5)}" text-anchor="middle" fill="#222">${escapeHtml(format(c.value))}</text>`,
    );
  });
  parts.push(`<rect x="${m.left}" y="${m.top}" width="${pw}" height="${ph}" fill="none" stroke="#444"/>`);
  if (options.yLabel) {
    parts.push(`<text transform="translate(14 ${m.top + ph / 2}) rotate(-90)" text-anchor="middle" fill="#222">${escapeHtml(options.yLabel)}</text>`);
  }
  parts.push("</svg>");
  return parts.join("");
}

// ---------------------------------------------------------------- the page

/** The number of iterations the report shows: planned, recorded or logged. */
function iterationCount(state: RunState, logs: readonly (readonly LogLine[] | undefined)[]): number {
  let n = Math.max(state.iterations ?? 0, state.iteration?.length ?? 0);
  for (let t = logs.length - 1; t >= n; t--) {
    if (logs[t]?.length) {
      n = t + 1;
      break;
    }
  }
  return n;
}

function lastStep(lines: readonly LogLine[] | undefined): number {
  let step = 0;
  for (const line of lines ?? []) if (isNum(line.step)) step = Math.max(step, line.step);
  return step;
}

function statusOf(record: IterationRecord | undefined, lines: readonly LogLine[] | undefined, evaluating: boolean): string {
  if (!record?.generate) return record || lines?.length ? "generating" : "pending";
  if (!record.train) return lines?.length ? `training (step ${lastStep(lines)})` : "generated";
  if (evaluating && !record.eval) return "trained, not evaluated";
  return "done";
}

function table(header: string[], rows: string[][], className: string): string {
  // long metric names may wrap after "/" and "_"
  const head = `<tr>${header.map((h) => `<th>${escapeHtml(h).replace(/([/_])/g, "$1<wbr>")}</th>`).join("")}</tr>`;
  const body = rows.map((row) => `<tr>${row.map((cell, i) => (i === 0 ? `<th scope="row">${cell}</th>` : `<td>${cell}</td>`)).join("")}</tr>`).join("");
  return `<div class="scroll"><table class="${className}"><thead>${head}</thead><tbody>${body}</tbody></table></div>`;
}

const CSS = `
*{box-sizing:border-box}
body{margin:0;padding:24px 28px;background:#f6f7f9;color:#222;font-family:system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;font-size:14px;line-height:1.45}
h1{font-size:24px;margin:0 0 4px}
h2{font-size:18px;margin:28px 0 10px;border-bottom:1px solid #ddd;padding-bottom:4px}
.meta{color:#666;margin:0 0 12px}
.meta code{background:#eceef1;padding:1px 4px;border-radius:3px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(560px,1fr));gap:14px}
.grid.small{grid-template-columns:repeat(auto-fill,minmax(360px,1fr))}
figure{margin:0;background:#fff;border:1px solid #e0e0e0;border-radius:6px;padding:6px}
figure svg{display:block;width:100%;height:auto}
figcaption{color:#666;font-size:12px;padding:2px 6px}
table{border-collapse:collapse;background:#fff;border:1px solid #e0e0e0;margin:4px 0 8px}
th,td{padding:5px 10px;border-bottom:1px solid #eee;text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
thead th{background:#eef1f5;font-weight:600;text-align:center;white-space:normal;max-width:130px;vertical-align:bottom}
.scroll{max-width:100%;overflow-x:auto}
tbody th{text-align:left;font-weight:500}
.delta{color:#888;font-size:12px;margin-left:4px}
.swatch{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:6px;vertical-align:baseline}
.note{color:#777;font-style:italic}
`;

/**
 * The report page of a run, from its state (run.json) and its log lines (logs[t]: the lines
 * of iteration t's metrics.jsonl). Pure: the same input gives the same page.
 */
export function renderReport(state: RunState, logs: readonly (readonly LogLine[] | undefined)[], options: RenderOptions = {}): string {
  const title = options.title ?? "SPIN run report";
  const n = iterationCount(state, logs);
  const records = state.iteration ?? [];
  const evaluating = state.baseEval !== undefined || records.some((r) => r?.eval !== undefined);
  const iterName = (t: number) => `iteration ${t} (θ${t}→θ${t + 1})`;
  const swatch = (t: number) => `<span class="swatch" style="background:${colorOf(t)}"></span>`;
  const out: string[] = [];

  out.push(`<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">`);
  out.push(`<title>${escapeHtml(title)}</title><style>${CSS}</style></head><body>`);
  out.push(`<h1>${escapeHtml(title)}</h1>`);
  const meta: string[] = [`base model <code>${escapeHtml(String(state.baseModel ?? "?"))}</code>`];
  if (options.runDir) meta.push(`run folder <code>${escapeHtml(options.runDir)}</code>`);
  if (options.generatedAt) meta.push(`written ${escapeHtml(options.generatedAt.toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC"))}`);
  out.push(`<p class="meta">${meta.join(" · ")}</p>`);

  // summary
  const trained = records.filter((r) => r?.train).length;
  out.push(`<h2>Summary</h2>`);
  out.push(`<p>${trained} of ${state.iterations ?? n} iteration${(state.iterations ?? n) === 1 ? "" : "s"} trained.</p>`);
  const summaryRows: string[][] = [];
  for (let t = 0; t < n; t++) {
    const r = records[t];
    const g = r?.generate;
    const tr = r?.train;
    summaryRows.push([
      `${swatch(t)}${escapeHtml(iterName(t))}`,
      escapeHtml(statusOf(r, logs[t], evaluating)),
      escapeHtml(formatNumber(g?.rows)),
      g ? escapeHtml(`${(100 * g.eosRate).toFixed(1)}%`) : "—",
      escapeHtml(formatNumber(g?.meanGeneratedTokens)),
      g?.identicalPairs === undefined ? "—" : escapeHtml(`${(100 * g.identicalPairs).toFixed(1)}%`),
      g ? escapeHtml(g.seconds.toFixed(1)) : "—",
      escapeHtml(formatNumber(tr?.rows)),
      escapeHtml(formatNumber(tr?.steps ?? (logs[t]?.length ? lastStep(logs[t]) : undefined))),
      escapeHtml(formatNumber(tr?.metrics?.loss ?? lastValue(logs[t], "loss"))),
      escapeHtml(formatNumber(tr?.metrics?.["rewards/margins"] ?? lastValue(logs[t], "rewards/margins"))),
      escapeHtml(formatNumber(tr?.metrics?.["rewards/accuracies"] ?? lastValue(logs[t], "rewards/accuracies"))),
    ]);
  }
  out.push(
    summaryRows.length > 0
      ? table(
          ["iteration", "status", "generated rows", "EOS rate", "mean generated tokens", "identical pairs", "generation seconds", "training pairs", "updates", "loss (last log)", "margins (last log)", "accuracies (last log)"],
          summaryRows,
          "summary",
        )
      : `<p class="note">No iteration has started yet.</p>`,
  );

  // training curves on a global step axis: iteration t's steps follow iteration t−1's
  const offsets: number[] = [];
  let offset = 0;
  for (let t = 0; t < n; t++) {
    offsets.push(offset);
    offset += records[t]?.train?.steps ?? lastStep(logs[t]);
  }
  const markers = offsets.slice(1, n).flatMap((x, i) => (logs[i + 1]?.length ? [{ x, label: `iter${i + 1}` }] : []));
  out.push(`<h2>Training curves</h2>`);
  out.push(`<p class="meta">x: global update step, iterations laid end to end (iteration t's step s is at s + the updates of iterations 0..t−1); dashed lines mark where an iteration begins. One point per log line.</p>`);
  out.push(`<div class="grid">`);
  for (const plot of REPORT_PLOTS) {
    const series: PlotSeries[] = [];
    for (let t = 0; t < n; t++) {
      const lines = logs[t];
      if (!lines?.length) continue;
      series.push({
        name: `iter ${t}`,
        color: colorOf(t),
        points: lines.map((line) => [offsets[t]! + (isNum(line.step) ? line.step : 0), isNum(line[plot.key]) ? line[plot.key]! : null]),
      });
    }
    const svg = svgLinePlot({ title: plot.title, xLabel: "global update step (iterations end to end)", yLabel: plot.key, series, xMarkers: markers, ...(plot.yDomain ? { yDomain: plot.yDomain } : {}) });
    out.push(`<figure data-metric="${escapeHtml(plot.key)}">${svg}</figure>`);
  }
  out.push(`</div>`);

  // generation
  out.push(`<h2>Generation</h2><div class="grid small">`);
  const cats = (value: (r: IterationRecord | undefined) => number | undefined) =>
    Array.from({ length: n }, (_, t) => ({ label: `iter ${t}`, color: colorOf(t), value: value(records[t]) }));
  out.push(
    `<figure data-metric="meanGeneratedTokens">${svgBarPlot({ title: "mean generated tokens per row", yLabel: "tokens", categories: cats((r) => r?.generate?.meanGeneratedTokens), format: (v) => v.toFixed(1) })}</figure>`,
  );
  out.push(
    `<figure data-metric="eosRate">${svgBarPlot({ title: "EOS rate (rows ending with EOS)", yLabel: "share of rows", yDomain: [0, 1], categories: cats((r) => r?.generate?.eosRate), format: (v) => `${(100 * v).toFixed(1)}%` })}</figure>`,
  );
  out.push(`</div>`);

  // held-out metrics
  out.push(`<h2>Held-out metrics</h2>`);
  const evalRows: { label: string; t: number | null; metrics: Record<string, number> | undefined }[] = [
    { label: "θ0 (base)", t: null, metrics: state.baseEval },
    ...Array.from({ length: n }, (_, t) => ({ label: `θ${t + 1} (after iteration ${t})`, t, metrics: records[t]?.eval })),
  ];
  const names: string[] = [];
  for (const row of evalRows) for (const k of Object.keys(row.metrics ?? {})) if (!names.includes(k)) names.push(k);
  if (names.length === 0) {
    out.push(`<p class="note">No held-out evaluation recorded.</p>`);
  } else {
    const base = state.baseEval;
    const rows = evalRows.map((row) => [
      `${row.t === null ? "" : swatch(row.t)}${escapeHtml(row.label)}`,
      ...names.map((k) => {
        const v = row.metrics?.[k];
        if (v === undefined || v === null) return "—";
        let cell = escapeHtml(formatNumber(v));
        const b = base?.[k];
        if (row.t !== null && isNum(v) && isNum(b)) {
          const d = v - b;
          cell += `<span class="delta">(${d >= 0 ? "+" : "−"}${escapeHtml(formatNumber(Math.abs(d)))})</span>`;
        }
        return cell;
      }),
    ]);
    out.push(table(["model", ...names], rows, "eval"));
    if (base) out.push(`<p class="meta">In parentheses: the change from θ0.</p>`);
    out.push(heldOutPlots(names, [{ name: options.runName ?? "this run", evals: evalRows.map((row) => row.metrics) }, ...(options.comparison ?? [])]));
  }
  out.push(`</body></html>\n`);
  return out.join("\n");
}

/** One plot per held-out metric: x is the model θt, one series per compared model. */
function heldOutPlots(names: readonly string[], models: readonly ComparedModel[]): string {
  const out = [`<div class="grid">`];
  for (const key of names) {
    const series: PlotSeries[] = models.map((m, i) => ({
      name: m.name,
      color: colorOf(PALETTE.length - 1 - (i % PALETTE.length)), // from the palette's end: iteration colours come from its start
      points: m.evals.map((e, t): [number, number | null] => [t, isNum(e?.[key]) ? e[key] : null]),
    }));
    const svg = svgLinePlot({ title: key, xLabel: "model θt (t = SPIN iterations, or the same updates)", yLabel: key, series });
    out.push(`<figure data-heldout="${escapeHtml(key)}">${svg}</figure>`);
  }
  out.push(`</div>`);
  return out.join("\n");
}

function lastValue(lines: readonly LogLine[] | undefined, key: string): number | undefined {
  for (let i = (lines?.length ?? 0) - 1; i >= 0; i--) {
    const v = lines![i]![key];
    if (isNum(v)) return v;
  }
  return undefined;
}

// ---------------------------------------------------------------- reading a run folder

/** The lines of a metrics.jsonl; torn or malformed lines (a crash mid-write) are skipped. */
export function parseMetricsJsonl(text: string): LogLine[] {
  const lines: LogLine[] = [];
  for (const raw of text.split("\n")) {
    if (raw.trim() === "") continue;
    let parsed: unknown;
    try {
      parsed = JSON.parse(raw);
    } catch {
      continue;
    }
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) continue;
    const line: LogLine = {};
    for (const [k, v] of Object.entries(parsed)) if (typeof v === "number" || v === null) line[k] = v;
    if (isNum(line.step)) lines.push(line);
  }
  return lines;
}

async function readText(file: string): Promise<string | null> {
  try {
    return await readFile(file, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw error;
  }
}

/**
 * Reads a run folder: run.json (a placeholder state if it is not written yet) and, for every
 * iteration, iter<t>/metrics.jsonl, or iter<t>/train/metrics.jsonl while it is training.
 */
export async function readRun(runDir: string): Promise<{ state: RunState; logs: LogLine[][] }> {
  const stateText = await readText(path.join(runDir, "run.json"));
  const state: RunState = stateText === null ? { version: 1, baseModel: "(run.json not written yet)", iterations: 0, iteration: [] } : (JSON.parse(stateText) as RunState);
  state.iteration ??= [];
  let n = Math.max(state.iterations ?? 0, state.iteration.length);
  try {
    for (const entry of await readdir(runDir)) {
      const match = /^iter(\d+)$/.exec(entry);
      if (match) n = Math.max(n, Number(match[1]) + 1);
    }
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
  }
  const logs: LogLine[][] = [];
  for (let t = 0; t < n; t++) {
    const dir = path.join(runDir, `iter${t}`);
    const text = (await readText(path.join(dir, "metrics.jsonl"))) ?? (await readText(path.join(dir, "train", "metrics.jsonl")));
    logs.push(text === null ? [] : parseMetricsJsonl(text));
  }
  return { state, logs };
}

/** Writes `<runDir>/report.html` (atomically) from the run folder as it is now; returns its path. */
export async function writeReport(runDir: string, options: Pick<RenderOptions, "title" | "comparison" | "runName"> = {}): Promise<string> {
  const { state, logs } = await readRun(runDir);
  const file = path.join(runDir, "report.html");
  await writeFileAtomic(file, renderReport(state, logs, { ...options, generatedAt: new Date(), runDir: path.resolve(runDir) }));
  return file;
}
