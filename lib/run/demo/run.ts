// The demo — spin-native's main job on the embedded tiny model and data. From θ0 (a tiny
// Llama under-trained on letter reversal and digit sorting):
//   - SPIN, iterations 0..T−1 (the original method, logistic loss);
//   - SPIN with an SFT term (sftWeight α: + α × the real answer's mean NLL);
//   - continued SFT from θ0 with SPIN's optimizer, batch and total updates: at SPIN's lr
//     ("matched") and at the best lr of a small sweep,
// every model scored on held-out prompts, per task. Each arm lives in its own folder of the run
// folder and is resumed, not redone, when the demo is run again.
import { createHash } from "node:crypto";
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { SpinNativeError } from "../../core/errors.js";
import { writeFileAtomic } from "../../core/atomic.js";
import { CausalLM } from "../../model/causal-lm.js";
import { type IterationRecord, type PipelineResult, runPipeline } from "../pipeline.js";
import { type ComparedModel, writeReport } from "../report.js";
import { setNumThreads } from "../../core/runtime.js";
import { Tokenizer } from "../../model/tokenizer.js";
import { type Metrics, SftTrainer } from "../../spin/trainer.js";
import { DEMO_MAX_NEW_TOKENS, type DemoScores, scoreModel } from "./evaluate.js";
import { DEMO_TASKS, type DemoExample, readExamples, sftRow, spinRow } from "./task.js";

/** examples/demo in the package: the base model and the data. */
export function demoAssets(): { model: string; train: string; test: string } {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!existsSync(path.join(dir, "package.json"))) dir = path.dirname(dir);
  const demo = path.join(dir, "examples", "demo");
  return { model: path.join(demo, "model"), train: path.join(demo, "data", "train.jsonl"), test: path.join(demo, "data", "test.jsonl") };
}

/** Options of {@link runDemo}. */
export interface DemoOptions {
  /** The run folder; re-running with the same options resumes it. */
  runDir: string;
  /** SPIN iterations (default 3). */
  iterations?: number;
  /** Seed of the data order, the t/t−1 mixing and the self-play draws (θ0 and the data are fixed). */
  seed?: number;
  /** Progress lines (default console.log). */
  log?: (line: string) => void;
}

/** One line of the demo's table. */
export interface DemoRow {
  label: string;
  /** Updates from θ0 to this model. */
  updates: number;
  scores: DemoScores;
  /** rewards/margins of the iteration's last log (SPIN rows). */
  margins: number | null;
  /** Share of the iteration's pairs whose generated answer equals the real one (SPIN rows). */
  identicalPairs: number | null;
}

/** What {@link runDemo} returns: the SPIN runs, the table's rows and the sweep. */
export interface DemoResult {
  /** The SPIN runs, in {@link DEMO_ARMS}' order (spins[0]: the original method). */
  spins: PipelineResult[];
  rows: DemoRow[];
  /** Held-out exact match of continued SFT at every learning rate of the sweep. */
  sweep: { learningRate: number; accuracy: number }[];
  seconds: number;
}

/**
 * SPIN settings of the demo: the original's RMSprop and global batch of 64, with β 1 (the
 * original's 0.1 gives a saw-tooth on short answers: docs/method.md, "Small-scale behaviour")
 * and 2 epochs per iteration.
 */
export const DEMO_SPIN = {
  optim: "rmsprop" as const,
  learningRate: 2e-5,
  beta: 1.0,
  numTrainEpochs: 2,
  perDeviceTrainBatchSize: 64,
  warmupRatio: 0.1,
  lrSchedulerType: "linear" as const,
  loggingSteps: 5,
  saveStrategy: "epoch" as const,
  maxLength: 64,
  maxPromptLength: 48,
};

/** α of the SPIN + SFT term arm. */
export const DEMO_SFT_WEIGHT = 1;

/**
 * Self-play decoding of the demo: sampling at temperature 1, as the original's vLLM path does
 * (its default is greedy). With greedy answers, a pair's generated answer is θt's mode, a letter
 * or two from the real one, and pushing it down pulled the real answer down with it: θ0's
 * reversal fell from 49% to 23% in the first iteration (docs/method.md, "Small-scale behaviour").
 * Row seeds start at the demo's seed.
 */
export const DEMO_GENERATION = { batchSize: 300, maxNewTokens: DEMO_MAX_NEW_TOKENS, doSample: true, temperature: 1 };

/**
 * The SPIN runs of the demo, each DEMO_SPIN with `training` on top, in `folder` of the run
 * folder ("" = the run folder itself, whose report.html compares them all).
 */
export const DEMO_ARMS: readonly { label: string; folder: string; training: { sftWeight?: number } }[] = [
  { label: "SPIN", folder: "", training: {} },
  { label: `SPIN + SFT term (α ${DEMO_SFT_WEIGHT})`, folder: "sft-term", training: { sftWeight: DEMO_SFT_WEIGHT } },
];

/** Learning rates of the continued-SFT sweep; the first is SPIN's (the matched baseline). */
export const DEMO_SFT_SWEEP = [DEMO_SPIN.learningRate, 1e-4, 1e-3];

/** Training prompts the SPIN iterations answer (the first of train.jsonl, both tasks mixed). */
export const DEMO_SPIN_PROMPTS = 1200;

const asMetrics = (s: DemoScores): Metrics => ({ accuracy: s.accuracy, ...Object.fromEntries(DEMO_TASKS.map((t) => [t, s.taskAccuracy[t]])), meanLogprob: s.meanLogprob });
const asScores = (m: Metrics | undefined): DemoScores => ({
  accuracy: m?.accuracy ?? NaN,
  taskAccuracy: Object.fromEntries(DEMO_TASKS.map((t) => [t, m?.[t] ?? NaN])) as DemoScores["taskAccuracy"],
  meanLogprob: m?.meanLogprob ?? NaN,
});

/**
 * Runs (or resumes) the demo in `options.runDir` and writes its report.html.
 *
 * @throws SpinNativeError `INVALID_ARGUMENT` for bad options, or a run folder made with other
 *   settings, another seed or another θ0.
 */
export async function runDemo(options: DemoOptions): Promise<DemoResult> {
  const started = Date.now();
  const log = options.log ?? console.log;
  const iterations = options.iterations ?? 3;
  const seed = options.seed ?? 42;
  if (!Number.isInteger(iterations) || iterations < 1) throw new SpinNativeError(`demo: iterations must be an integer >= 1, got ${iterations}`, "INVALID_ARGUMENT", "demo");
  if (!Number.isInteger(seed) || seed < 0 || seed >= 2 ** 32) throw new SpinNativeError(`demo: seed must be an integer in [0, 2^32), got ${seed}`, "INVALID_ARGUMENT", "demo");
  setNumThreads(1); // measured: a model this small runs several times faster on one thread
  const assets = demoAssets();
  const fingerprint = demoFingerprint(assets, seed);
  await claimRunFolder(options.runDir, fingerprint);
  const train = readExamples(assets.train).slice(0, DEMO_SPIN_PROMPTS);
  const test = readExamples(assets.test);
  const evaluate = async (model: CausalLM, tokenizer: Tokenizer) => asMetrics(await scoreModel(model, tokenizer, test));
  // One failing arm stops the others (they would otherwise train on, unseen, until they end).
  const abort = new AbortController();
  const spinRun = async (arm: (typeof DEMO_ARMS)[number]) => {
    try {
      return await runPipeline({
        runDir: path.join(options.runDir, arm.folder),
        baseModel: assets.model,
        sftRows: train.map(sftRow),
        iterations,
        training: { ...DEMO_SPIN, ...arm.training, seed, logToConsole: false },
        mixSeed: seed,
        generation: { ...DEMO_GENERATION, seed },
        evaluate,
        signal: abort.signal,
        log: (line) => log(`${arm.label}: ${line}`),
        onStage: async () => void (await writeReport(options.runDir, { title: "SPIN demo" })),
      }); // aborted only when another arm failed, whose error is thrown below
    } catch (error) {
      abort.abort();
      throw error;
    }
  };

  // The SPIN arms are independent single-threaded runs, side by side on the cores.
  const settled = await Promise.allSettled(DEMO_ARMS.map(spinRun));
  const failed = settled.find((a) => a.status === "rejected");
  if (failed) throw (failed as PromiseRejectedResult).reason;
  const spins = settled.map((a) => (a as PromiseFulfilledResult<PipelineResult>).value);
  // A run folder may hold more iterations from an earlier, longer run: only the first `iterations` count.
  const armIterations = spins.map((run) => run.state.iteration.slice(0, iterations));
  const updates = armIterations[0]!.reduce((sum, r) => sum + (r.train?.steps ?? 0), 0);
  // All at once: three single-threaded runs keep both cores busy, where pairs would leave one idle.
  const sweepScores = await Promise.all(DEMO_SFT_SWEEP.map((lr) => continuedSft(options.runDir, train, lr, updates, seed, fingerprint, evaluate, log)));
  const sweep = DEMO_SFT_SWEEP.map((learningRate, k) => ({ learningRate, scores: sweepScores[k]! }));
  const matched = sweep[0]!;
  const best = sweep.reduce((a, b) => (b.scores.accuracy > a.scores.accuracy ? b : a));

  const rows: DemoRow[] = [
    { label: "θ0 (SFT, under-trained)", updates: 0, scores: asScores(spins[0]!.state.baseEval), margins: null, identicalPairs: null },
    ...DEMO_ARMS.flatMap((arm, i) => spinRows(arm.label, armIterations[i]!)),
    { label: `continued SFT, matched (lr ${matched.learningRate.toExponential()})`, updates, scores: matched.scores, margins: null, identicalPairs: null },
    { label: `continued SFT, best lr of sweep (lr ${best.learningRate.toExponential()})`, updates, scores: best.scores, margins: null, identicalPairs: null },
  ];
  const atEnd = (scores: DemoScores) => Array.from({ length: iterations + 1 }, (_, t) => (t === iterations ? asMetrics(scores) : undefined));
  const comparison: ComparedModel[] = [
    ...DEMO_ARMS.slice(1).map((arm, i) => ({ name: arm.label, evals: [spins[i + 1]!.state.baseEval, ...armIterations[i + 1]!.map((r) => r.eval)] })),
    { name: "continued SFT, matched", evals: atEnd(matched.scores) },
    { name: `continued SFT, lr ${best.learningRate.toExponential()}`, evals: atEnd(best.scores) },
  ];
  await writeReport(options.runDir, { title: "SPIN demo", comparison, runName: DEMO_ARMS[0]!.label });
  return { spins, rows, sweep: sweep.map((s) => ({ learningRate: s.learningRate, accuracy: s.scores.accuracy })), seconds: (Date.now() - started) / 1000 };
}

/** Everything a demo run's numbers depend on besides the code: settings, seed, θ0 and data. */
function demoFingerprint(assets: ReturnType<typeof demoAssets>, seed: number): string {
  const hash = createHash("sha256");
  hash.update(JSON.stringify({ DEMO_SPIN, DEMO_GENERATION, DEMO_ARMS, DEMO_SFT_SWEEP, DEMO_SPIN_PROMPTS, seed }));
  // Every file of θ0's folder: weights, config, tokenizer and generation_config (sampling defaults).
  const modelFiles = readdirSync(assets.model).sort().map((name) => path.join(assets.model, name));
  for (const file of [...modelFiles, assets.train, assets.test]) hash.update(readFileSync(file));
  return hash.digest("hex").slice(0, 16);
}

/** Records the fingerprint in a new run folder; refuses a folder made with other settings, seed or θ0. */
async function claimRunFolder(runDir: string, fingerprint: string): Promise<void> {
  const file = path.join(runDir, "demo.json");
  await mkdir(runDir, { recursive: true });
  const saved = existsSync(file) ? (JSON.parse(readFileSync(file, "utf8")) as { fingerprint?: string }).fingerprint : undefined;
  if (saved === undefined && existsSync(path.join(runDir, "run.json"))) {
    throw new SpinNativeError(`demo: ${runDir} holds a run of an earlier demo; use another --out or remove it`, "INVALID_ARGUMENT", "demo");
  }
  if (saved !== undefined && saved !== fingerprint) {
    throw new SpinNativeError(`demo: ${runDir} holds a demo run with other settings, another seed or another θ0; use another --out or remove it`, "INVALID_ARGUMENT", "demo");
  }
  if (saved === undefined) await writeFileAtomic(file, JSON.stringify({ fingerprint }) + "\n");
}

function spinRows(label: string, iterations: readonly IterationRecord[]): DemoRow[] {
  let updates = 0;
  return iterations.map((r, t) => {
    updates += r.train?.steps ?? 0;
    return {
      label: `${label}, iteration ${t} → θ${t + 1}`,
      updates,
      scores: asScores(r.eval),
      margins: r.train?.metrics["rewards/margins"] ?? null,
      identicalPairs: r.generate?.identicalPairs ?? null,
    };
  });
}

/** Continued SFT from θ0 on the SPIN prompts' real answers: SPIN's optimizer, batch and updates at `learningRate`. */
async function continuedSft(
  runDir: string,
  train: DemoExample[],
  learningRate: number,
  updates: number,
  seed: number,
  fingerprint: string,
  evaluate: (model: CausalLM, tokenizer: Tokenizer) => Promise<Metrics>,
  log: (line: string) => void,
): Promise<DemoScores> {
  const dir = path.join(runDir, "continued-sft", `lr-${learningRate}`);
  const resultFile = path.join(dir, "result.json");
  if (existsSync(resultFile)) {
    const saved = JSON.parse(readFileSync(resultFile, "utf8")) as { updates: number; fingerprint: string; metrics: Metrics };
    if (saved.updates === updates && saved.fingerprint === fingerprint) return asScores(saved.metrics);
  }
  log(`continued SFT: ${updates} updates from θ0 at lr ${learningRate}`);
  const assets = demoAssets();
  const model = await CausalLM.load(assets.model);
  try {
    const tokenizer = await Tokenizer.fromDir(assets.model);
    const { optim, perDeviceTrainBatchSize, warmupRatio, lrSchedulerType, maxLength, maxPromptLength } = DEMO_SPIN;
    const config = { optim, perDeviceTrainBatchSize, warmupRatio, lrSchedulerType, maxLength, maxPromptLength, learningRate, seed, maxSteps: updates, outputDir: path.join(dir, "train"), saveStrategy: "no" as const, logToConsole: false };
    const trainer = new SftTrainer({ model, tokenizer, config });
    await trainer.train(train.map(spinRow));
    trainer.dispose();
    const metrics = await evaluate(model, tokenizer);
    await writeFileAtomic(resultFile, JSON.stringify({ updates, fingerprint, metrics }) + "\n");
    return asScores(metrics);
  } finally {
    model.dispose();
  }
}

const percent = (v: number) => (Number.isFinite(v) ? `${(100 * v).toFixed(1)}%` : "—");

/** The demo's table, as printed by `spin-native demo`. */
export function formatDemoTable(rows: DemoRow[]): string {
  const header = ["model", "updates", "held-out exact match", ...DEMO_TASKS.map((t) => `  ${t}`), "mean log p(ground truth)", "rewards/margins", "identical pairs"];
  const cells = rows.map((r) => [
    r.label,
    String(r.updates),
    percent(r.scores.accuracy),
    ...DEMO_TASKS.map((t) => percent(r.scores.taskAccuracy[t])),
    Number.isFinite(r.scores.meanLogprob) ? r.scores.meanLogprob.toFixed(3) : "—",
    r.margins === null ? "" : r.margins.toFixed(3),
    r.identicalPairs === null ? "" : percent(r.identicalPairs),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (values: string[]) => "| " + values.map((v, i) => v.padEnd(widths[i]!)).join(" | ") + " |";
  return [line(header), "|" + widths.map((w) => "-".repeat(w + 2)).join("|") + "|", ...cells.map(line)].join("\n");
}
