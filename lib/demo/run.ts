// The demo — spin-native's main job on the embedded tiny model and data: θ0 (an
// under-trained SFT model for two-number addition) → SPIN iterations 0..T−1, each scored
// on held-out prompts, and the same number of updates spent on continued SFT as the
// baseline the paper compares against.
import { readFileSync } from "node:fs";
import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { writeFileAtomic } from "../io/atomic.js";
import { CausalLM } from "../model.js";
import { type PipelineResult, runPipeline } from "../pipeline.js";
import { setNumThreads } from "../runtime.js";
import { Tokenizer } from "../tokenizer.js";
import { type Metrics, SftTrainer } from "../trainer.js";
import { type DemoScores, scoreModel } from "./evaluate.js";
import { DEMO_SFT, readExamples, spinRow } from "./task.js";

/** examples/demo in the package: the base model and the data. */
export function demoAssets(): { model: string; train: string; test: string } {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!existsSync(path.join(dir, "package.json"))) dir = path.dirname(dir);
  const demo = path.join(dir, "examples", "demo");
  return { model: path.join(demo, "model"), train: path.join(demo, "data", "train.jsonl"), test: path.join(demo, "data", "test.jsonl") };
}

export interface DemoOptions {
  runDir: string;
  iterations?: number;
  log?: (line: string) => void;
}

export interface DemoRow {
  label: string;
  updates: number;
  accuracy: number;
  meanLogprob: number;
  margins: number | null;
}

export interface DemoResult {
  pipeline: PipelineResult;
  rows: DemoRow[];
  seconds: number;
}

/**
 * SPIN settings of the demo: β 1 and RMSprop (docs/method.md, "Small-scale behaviour"), at 1/1000
 * of the SFT lr — measured here, 1/100 drove real and generated log-probs down together.
 */
export const DEMO_SPIN = {
  optim: "rmsprop" as const,
  learningRate: DEMO_SFT.learningRate / 1000,
  beta: 1.0,
  numTrainEpochs: 1,
  perDeviceTrainBatchSize: 32,
  warmupRatio: 0.1,
  lrSchedulerType: "linear" as const,
  loggingSteps: 10,
  saveStrategy: "epoch" as const,
  maxLength: 64,
  maxPromptLength: 48,
};

const asMetrics = (s: DemoScores): Metrics => ({ accuracy: s.accuracy, meanLogprob: s.meanLogprob });

export async function runDemo(options: DemoOptions): Promise<DemoResult> {
  const started = Date.now();
  const log = options.log ?? console.log;
  setNumThreads(1); // measured: a model this small runs several times faster on one thread
  const assets = demoAssets();
  const sftRows = readFileSync(assets.train, "utf8").split("\n").filter((l) => l.trim() !== "").map((l) => JSON.parse(l) as unknown);
  const test = readExamples(assets.test);
  const evaluate = async (model: CausalLM, tokenizer: Tokenizer) => asMetrics(await scoreModel(model, tokenizer, test));
  const iterations = options.iterations ?? 3;

  const pipeline = await runPipeline({
    runDir: options.runDir,
    baseModel: assets.model,
    sftRows,
    iterations,
    training: { ...DEMO_SPIN, logToConsole: false },
    generation: { batchSize: 250, maxNewTokens: 6, doSample: false },
    evaluate,
    log,
  });

  // The baseline: the same number of updates as all SPIN iterations, spent on more SFT.
  const spinUpdates = pipeline.state.iteration.reduce((sum, r) => sum + (r.train?.steps ?? 0), 0);
  const baselineFile = path.join(options.runDir, "sft-baseline.json");
  let baseline: Metrics;
  if (existsSync(baselineFile)) {
    baseline = JSON.parse(readFileSync(baselineFile, "utf8")) as Metrics;
  } else {
    log(`continued SFT baseline: ${spinUpdates} updates from θ0`);
    const model = await CausalLM.load(assets.model);
    const tokenizer = await Tokenizer.fromDir(assets.model);
    const trainer = new SftTrainer({ model, tokenizer, config: { ...DEMO_SFT, maxSteps: spinUpdates, outputDir: path.join(options.runDir, "sft-baseline"), saveStrategy: "no", maxLength: 64, maxPromptLength: 48 } });
    const examples = readExamples(assets.train);
    await trainer.train(examples.map(spinRow));
    baseline = await evaluate(model, tokenizer);
    model.dispose();
    await writeFileAtomic(baselineFile, JSON.stringify(baseline) + "\n");
  }

  const state = pipeline.state;
  const rows: DemoRow[] = [
    { label: "θ0 (SFT, under-trained)", updates: 0, accuracy: state.baseEval!.accuracy!, meanLogprob: state.baseEval!.meanLogprob!, margins: null },
    ...state.iteration.map((r, t) => ({
      label: `SPIN iteration ${t} → θ${t + 1}`,
      updates: r.train?.steps ?? 0,
      accuracy: r.eval?.accuracy ?? NaN,
      meanLogprob: r.eval?.meanLogprob ?? NaN,
      margins: r.train?.metrics["rewards/margins"] ?? null,
    })),
    { label: `continued SFT (${spinUpdates} updates)`, updates: spinUpdates, accuracy: baseline.accuracy!, meanLogprob: baseline.meanLogprob!, margins: null },
  ];
  return { pipeline, rows, seconds: (Date.now() - started) / 1000 };
}

/** The demo's table, as printed by `spin-native demo`. */
export function formatDemoTable(rows: DemoRow[]): string {
  const header = ["model", "updates", "held-out exact match", "mean log p(ground truth)", "rewards/margins (last log)"];
  const cells = rows.map((r) => [r.label, String(r.updates), `${(100 * r.accuracy).toFixed(1)}%`, r.meanLogprob.toFixed(3), r.margins === null ? "" : r.margins.toFixed(3)]);
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (values: string[]) => "| " + values.map((v, i) => v.padEnd(widths[i]!)).join(" | ") + " |";
  return [line(header), "|" + widths.map((w) => "-".repeat(w + 2)).join("|") + "|", ...cells.map(line)].join("\n");
}
