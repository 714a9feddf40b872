// The report's building blocks: number and HTML formatting, axis ticks, and self-contained
// SVG line and bar plots (no scripts, no external resources).

/** Series colours: iteration t takes colour t (modulo the palette). */
export const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"];

/** The colour of iteration t's series. */
export function colorOf(t: number): string {
  return PALETTE[t % PALETTE.length]!;
}

// ---------------------------------------------------------------- text and numbers

/** Escapes text for HTML element content and attribute values. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);
}

export function isNum(v: unknown): v is number {
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
