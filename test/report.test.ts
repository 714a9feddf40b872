// The run report (lib/run/report.ts): a synthetic two-iteration run folder with known values is
// rendered; the page holds the table values and one <svg> per plot with a polyline per
// iteration whose points are the log lines. Then headless Chromium loads the page: a
// screenshot of the expected size, and the DOM it parsed holds the SVG elements. Chromium is
// required (Debian: `apt-get install -y chromium`): without it the browser tests fail.
import { execFile } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";

import { afterAll, beforeAll, describe, expect, test } from "vitest";

import type { RunState } from "../lib/run/pipeline.js";
import { type LogLine, REPORT_PLOTS, parseMetricsJsonl, renderReport, writeReport } from "../lib/run/report.js";
import { escapeHtml, formatNumber, niceTicks } from "../lib/run/report-plots.js";

const CHROMIUM = process.env.CHROMIUM ?? "chromium";
const root = mkdtempSync(path.join(os.tmpdir(), "spin-test-report-"));

/** Log lines with known values: iteration t, `count` lines at steps 1..count. */
function logLines(t: number, count: number): LogLine[] {
  return Array.from({ length: count }, (_, i) => {
    const step = i + 1;
    return {
      step,
      epoch: step / count,
      loss: 0.7 - 0.05 * step - 0.1 * t,
      "rewards/real": 0.01 * step,
      "rewards/generated": -0.02 * step,
      "rewards/accuracies": Math.min(1, 0.5 + 0.1 * step),
      "rewards/margins": 0.03 * step + 0.2 * t,
      "logps/real": -40 + step + 5 * t,
      "logps/generated": -45 - 2 * step - 3 * t,
      "logits/real": -1.5,
      "logits/generated": -1.6,
      "pairs/identical": 0,
      "rewards/accuracies_distinct": Math.min(1, 0.5 + 0.1 * step),
      "generated/length": 20 + t,
      learning_rate: 5e-7 * (1 - step / (count + 1)),
      grad_norm: 1.25 + 0.1 * step,
      "tokens/s": 1500 + step,
    };
  });
}

const ITER0_LINES = 6;
const ITER1_LINES = 4;

const STATE: RunState = {
  version: 1,
  baseModel: "/models/<tiny> & \"zephyr\"",
  iterations: 2,
  baseEval: { accuracy: 0.25, meanLogprob: -3.5 },
  iteration: [
    {
      generate: { rows: 128, eosRate: 0.875, meanGeneratedTokens: 23.5, seconds: 12.25 },
      train: { steps: 6, rows: 128, metrics: { loss: 0.4, "rewards/margins": 0.18 } },
      eval: { accuracy: 0.375, meanLogprob: -2.75 },
    },
    {
      generate: { rows: 256, eosRate: 0.9375, meanGeneratedTokens: 19.25, seconds: 20.5 },
      train: { steps: 4, rows: 256, metrics: { loss: 0.4, "rewards/margins": 0.32 } },
      eval: { accuracy: 0.5, meanLogprob: -2.125 },
    },
  ],
};

function writeRun(dir: string, state: RunState, logs: { t: number; lines: LogLine[]; where: "done" | "training" }[]): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, "run.json"), JSON.stringify(state, null, 2) + "\n");
  for (const { t, lines, where } of logs) {
    const folder = where === "done" ? path.join(dir, `iter${t}`) : path.join(dir, `iter${t}`, "train");
    mkdirSync(folder, { recursive: true });
    writeFileSync(path.join(folder, "metrics.jsonl"), lines.map((l) => JSON.stringify(l) + "\n").join(""));
  }
}

/** The <svg> elements of the page, by the data-metric of their <figure>. */
function plotsOf(html: string): Map<string, string> {
  const plots = new Map<string, string>();
  for (const m of html.matchAll(/<figure data-metric="([^"]+)">(<svg[\s\S]*?<\/svg>)<\/figure>/g)) plots.set(m[1]!, m[2]!);
  return plots;
}

/** Points per polyline, per series, of one svg. */
function polylinePoints(svg: string): number[] {
  return [...svg.matchAll(/<polyline points="([^"]*)"/g)].map((m) => m[1]!.trim().split(/\s+/).length);
}

function run(file: string, args: string[], timeoutMs = 60_000): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { timeout: timeoutMs, maxBuffer: 64 << 20 }, (error, stdout, stderr) => {
      if (error) reject(Object.assign(error, { stdout, stderr }));
      else resolve({ stdout, stderr });
    });
  });
}

/** The browser's version, or a failure that says how to install it. */
async function requireChromium(): Promise<string> {
  try {
    return (await run(CHROMIUM, ["--version"], 30_000)).stdout.trim();
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new Error(
      `headless Chromium is required by the report tests but "${CHROMIUM}" ${code === "ENOENT" ? "is not installed" : `failed to run (${String(error)})`}; ` +
        "install it with `apt-get install -y chromium` (the Debian package \"chromium\"), or point CHROMIUM at a Chromium binary",
    );
  }
}

function chromiumArgs(userDataDir: string): string[] {
  return [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    `--user-data-dir=${userDataDir}`,
  ];
}

let runDir: string;
let reportFile: string;
let html: string;

beforeAll(async () => {
  runDir = path.join(root, "run");
  writeRun(runDir, STATE, [
    { t: 0, lines: logLines(0, ITER0_LINES), where: "done" },
    { t: 1, lines: logLines(1, ITER1_LINES), where: "done" },
  ]);
  // a stale metrics.jsonl of training is ignored once the iteration's own file exists
  mkdirSync(path.join(runDir, "iter0", "train"), { recursive: true });
  writeFileSync(path.join(runDir, "iter0", "train", "metrics.jsonl"), JSON.stringify({ step: 1, loss: 9 }) + "\n");
  reportFile = await writeReport(runDir);
  html = readFileSync(reportFile, "utf8");
});

afterAll(() => {
  rmSync(root, { recursive: true, force: true });
});

describe("writeReport", () => {
  test("writes report.html in the run folder, with no temp file left", () => {
    expect(reportFile).toBe(path.join(runDir, "report.html"));
    expect(html.startsWith("<!DOCTYPE html>")).toBe(true);
    expect(html).toContain("<title>SPIN run report</title>");
    expect(readFileSync(path.join(runDir, "run.json"), "utf8")).toContain('"iterations": 2');
    expect(readdirSync(runDir).filter((f) => f.includes(".tmp-"))).toEqual([]);
  });

  test("self-contained: no scripts, no external resources", () => {
    expect(html).not.toMatch(/<script/i);
    expect(html).not.toMatch(/<link\b/i);
    expect(html).not.toMatch(/\b(src|href)=/i);
    expect(html).not.toMatch(/url\(/i);
  });

  test("escapes text from the run state", () => {
    expect(html).toContain(escapeHtml(STATE.baseModel));
    expect(html).toContain("/models/&lt;tiny&gt; &amp; &quot;zephyr&quot;");
    expect(html).not.toContain("<tiny>");
  });

  test("the summary table: generation and training per iteration", () => {
    const summary = /<table class="summary">([\s\S]*?)<\/table>/.exec(html)?.[1] ?? "";
    for (const text of ["generated rows", "EOS rate", "128", "256", "87.5%", "93.8%", "23.5", "19.25", "12.3", "20.5", "done"]) expect(summary).toContain(text);
    expect(html).toContain("2 of 2 iterations trained.");
  });

  test("the held-out table: base and every iteration, one column per metric", () => {
    const table = /<table class="eval">([\s\S]*?)<\/table>/.exec(html)?.[1] ?? "";
    expect(table).toMatch(/<th>model<\/th><th>accuracy<\/th><th>meanLogprob<\/th>/);
    expect(renderReport({ ...STATE, baseEval: { "arc/acc_norm": 0.5 } }, [])).toContain("<th>arc/<wbr>acc_<wbr>norm</th>");
    const rows = [...table.matchAll(/<tr>([\s\S]*?)<\/tr>/g)].map((m) => m[1]!).slice(1);
    expect(rows).toHaveLength(3);
    expect(rows[0]).toContain("θ0 (base)");
    expect(rows[0]).toMatch(/<td>0\.25<\/td><td>-3\.5<\/td>/);
    expect(rows[1]).toContain("θ1 (after iteration 0)");
    expect(rows[1]).toMatch(/<td>0\.375<span class="delta">\(\+0\.125\)<\/span><\/td><td>-2\.75<span class="delta">\(\+0\.75\)<\/span><\/td>/);
    expect(rows[2]).toContain("θ2 (after iteration 1)");
    expect(rows[2]).toMatch(/<td>0\.5<span[^>]*>\(\+0\.25\)<\/span><\/td><td>-2\.125<span[^>]*>\(\+1\.375\)<\/span><\/td>/);
  });

  test("one <svg> per plot; a polyline per iteration with a point per log line", () => {
    const plots = plotsOf(html);
    expect([...plots.keys()]).toEqual([...REPORT_PLOTS.map((p) => p.key), "meanGeneratedTokens", "eosRate"]);
    // … and one per held-out metric (accuracy, meanLogprob), θ0..θ2 on x.
    expect([...html.matchAll(/<figure data-heldout="([^"]+)">/g)].map((m) => m[1])).toEqual(["accuracy", "meanLogprob"]);
    expect(html.match(/<svg\b/g)).toHaveLength(REPORT_PLOTS.length + 2 + 2);
    for (const plot of REPORT_PLOTS) {
      const svg = plots.get(plot.key)!;
      expect(polylinePoints(svg), plot.key).toEqual([ITER0_LINES, ITER1_LINES]);
      expect(svg).toContain(`<title>${escapeHtml(plot.title)}</title>`);
      expect(svg).toContain("global update step");
      expect(svg).toContain(">iter 0</text>"); // legend
      expect(svg).toContain(">iter 1</text>");
      expect(svg).toContain(">iter1</text>"); // the marker where iteration 1 begins
    }
    // iteration 1 is laid after iteration 0's 6 updates: x of its points are steps 7..10
    const loss = plots.get("loss")!;
    const xsOf = (series: number) =>
      [...loss.matchAll(/<polyline points="([^"]*)"/g)][series]![1]!.split(" ").map((p) => Number(p.split(",")[0]));
    const x0 = xsOf(0);
    const x1 = xsOf(1);
    const dx = x0[1]! - x0[0]!;
    expect(dx).toBeGreaterThan(0);
    expect(x1[0]! - x0[5]!).toBeCloseTo(dx, 1);
    // bars: one per iteration
    expect(plots.get("meanGeneratedTokens")!.match(/<rect class="bar"/g)).toHaveLength(2);
    expect(plots.get("eosRate")!).toContain(">87.5%</text>");
    expect(plots.get("eosRate")!).toContain(">93.8%</text>");
  });
});

describe("renderReport with missing data", () => {
  test("an iteration in training (its train/metrics.jsonl), one pending, no evaluation", async () => {
    const dir = path.join(root, "partial");
    const state: RunState = {
      version: 1,
      baseModel: "/models/tiny",
      iterations: 3,
      iteration: [{ generate: STATE.iteration[0]!.generate!, train: STATE.iteration[0]!.train! }, { generate: STATE.iteration[1]!.generate! }],
    };
    const torn = logLines(1, 3).map((l) => JSON.stringify(l) + "\n").join("") + '{"step": 4, "loss": 0.';
    writeRun(dir, state, [{ t: 0, lines: logLines(0, ITER0_LINES), where: "done" }]);
    mkdirSync(path.join(dir, "iter1", "train"), { recursive: true });
    writeFileSync(path.join(dir, "iter1", "train", "metrics.jsonl"), torn);
    const page = readFileSync(await writeReport(dir), "utf8");
    expect(page).toContain("1 of 3 iterations trained.");
    expect(page).toContain("training (step 3)");
    expect(page).toContain("pending");
    expect(page).toContain("No held-out evaluation recorded.");
    const plots = plotsOf(page);
    expect(polylinePoints(plots.get("loss")!)).toEqual([ITER0_LINES, 3]);
    // iteration 2 has no generation yet: its bar is a dash
    expect(plots.get("eosRate")!.match(/<rect class="bar"/g)).toHaveLength(2);
  });

  test("nothing yet: no run.json, no logs", async () => {
    const dir = path.join(root, "empty");
    mkdirSync(dir, { recursive: true });
    const page = readFileSync(await writeReport(dir), "utf8");
    expect(page).toContain("No iteration has started yet.");
    expect(page.match(/<svg\b/g)).toHaveLength(REPORT_PLOTS.length + 2);
    expect(page).toContain("no data yet");
    expect(page).not.toContain("<polyline");
  });

  test("non-finite values (null in JSON) break the line; only base evaluated", () => {
    const lines = logLines(0, 5);
    lines[2]!.loss = null;
    const page = renderReport({ version: 1, baseModel: "m", iterations: 1, baseEval: { accuracy: 0.1 }, iteration: [{}] }, [lines]);
    expect(polylinePoints(plotsOf(page).get("loss")!)).toEqual([2, 2]);
    expect(polylinePoints(plotsOf(page).get("rewards/margins")!)).toEqual([5]);
    expect(page).toMatch(/θ1 \(after iteration 0\)<\/th><td>—<\/td>/);
    expect(page).toContain("generating");
  });

  test("helpers", () => {
    expect(parseMetricsJsonl('{"step":1,"loss":0.5}\n\n{"step":2,"loss":null,"x":"s"}\n{"ste')).toEqual([{ step: 1, loss: 0.5 }, { step: 2, loss: null }]);
    expect(niceTicks(0, 1, 5).ticks).toEqual([0, 0.2, 0.4, 0.6000000000000001, 0.8, 1]);
    expect(niceTicks(-47, -37, 5)).toMatchObject({ lo: -48, hi: -36, step: 2 });
    expect([formatNumber(undefined), formatNumber(3), formatNumber(0.123456), formatNumber(2.5e-7), formatNumber(NaN)]).toEqual(["—", "3", "0.1235", "2.5e-7", "NaN"]);
  });
});

describe("in headless Chromium", () => {
  test("renders: a screenshot of the window size, and the parsed DOM holds the plots", async () => {
    const version = await requireChromium();
    expect(version).toMatch(/Chromium|Chrome/);
    const url = pathToFileURL(reportFile).href;
    const t0 = performance.now();

    const png = path.join(root, "report.png");
    const profile1 = mkdtempSync(path.join(root, "chromium-profile-"));
    await run(CHROMIUM, [...chromiumArgs(profile1), `--screenshot=${png}`, "--window-size=1200,2000", url]);
    const bytes = readFileSync(png);
    expect(bytes.length).toBeGreaterThan(20_000);
    expect([...bytes.subarray(0, 8)]).toEqual([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
    expect(bytes.subarray(12, 16).toString("latin1")).toBe("IHDR");
    expect([bytes.readUInt32BE(16), bytes.readUInt32BE(20)]).toEqual([1200, 2000]);

    const profile2 = mkdtempSync(path.join(root, "chromium-profile-"));
    const { stdout: dom } = await run(CHROMIUM, [...chromiumArgs(profile2), "--dump-dom", url]);
    expect(dom.match(/<svg\b/g)).toHaveLength(REPORT_PLOTS.length + 2 + 2);
    expect(dom.match(/<polyline\b/g)).toHaveLength(REPORT_PLOTS.length * 2 + 2);
    expect(dom).toContain('<table class="eval">');
    if (process.env.REPORT_SCREENSHOT) writeFileSync(process.env.REPORT_SCREENSHOT, bytes);
    console.log(`chromium (${version}): screenshot + DOM dump in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  });
});

describe("the report's held-out comparison", () => {
  test("one plot per held-out metric, with a series per compared model and a point where it has a value", () => {
    const state = {
      version: 1 as const,
      baseModel: "/m",
      iterations: 2,
      baseEval: { accuracy: 0.4, meanLogprob: -4 },
      iteration: [
        { generate: { rows: 10, eosRate: 1, meanGeneratedTokens: 4, seconds: 1, identicalPairs: 0.3 }, eval: { accuracy: 0.45, meanLogprob: -3.9 } },
        { generate: { rows: 10, eosRate: 1, meanGeneratedTokens: 4, seconds: 1, identicalPairs: 0.5 }, eval: { accuracy: 0.5, meanLogprob: -3.8 } },
      ],
    };
    const html = renderReport(state, [[], []], { comparison: [{ name: "baseline B", evals: [undefined, undefined, { accuracy: 0.6, meanLogprob: -3 }] }] });
    for (const key of ["accuracy", "meanLogprob"]) {
      const figure = new RegExp(`<figure data-heldout="${key}">([\\s\\S]*?)</figure>`).exec(html)?.[1];
      expect(figure, key).toBeDefined();
      expect(figure).toContain("this run");
      expect(figure).toContain("baseline B");
      expect(figure!.match(/<polyline/g)).toHaveLength(2); // the run's three points, the baseline's one
      expect(figure!.match(/<circle/g)).toHaveLength(1); // a lone point is marked
    }
    expect(html).toContain("<td>30.0%</td>");
    expect(html).toContain("<td>50.0%</td>");
  });
});
