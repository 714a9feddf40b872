// The run report: one self-contained HTML page (inline CSS and SVG, no scripts, no external
// resources) summarising a pipeline run folder: the run state, the training curves of every
// iteration, generation statistics and the held-out metrics. It renders whatever exists, so
// it can be written while a run is in progress.
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";

import { writeFileAtomic } from "../core/atomic.js";
import type { IterationRecord, RunState } from "./pipeline.js";
import { PALETTE, type PlotSeries, colorOf, escapeHtml, formatNumber, isNum, svgBarPlot, svgLinePlot } from "./report-plots.js";

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
