// The SPIN iteration loop: for t = 0..T−1, generate with θt → SPIN rows of t → mix with the
// rows of t−1 → train θt+1 from θt against θt (opponent log-probs precomputed by θt) → save.
// A run folder records every finished stage in run.json, so re-running the same command
// after a crash resumes at the exact stage: generation resumes at its last written row,
// training at its last checkpoint, and finished work is never redone.
import { copyFile, readFile, readdir, rm } from "node:fs/promises";
import path from "node:path";

import { readSpinRows } from "../data/dataset-read.js";
import { mixDatasets } from "../data/mixer.js";
import { identicalPairShare } from "../data/rows.js";
import { SpinNativeError } from "../core/errors.js";
import type { Distributed } from "../distributed/distributed.js";
import { generateDataParallel } from "../spin/distributed-generation.js";
import type { GenerationSummary } from "../spin/self-play-events.js";
import type { SelfPlayOptions } from "../spin/self-play-options.js";
import { writeFileAtomic } from "../core/atomic.js";
import { lockRunFolder, runCommand } from "../core/run-lock.js";
import { CausalLM, type LoadModelOptions } from "../model/causal-lm.js";
import type { LoraOptions } from "../model/lora.js";
import { Tokenizer } from "../model/tokenizer.js";
import type { SpinConfig } from "../spin/config.js";
import { type Metrics, SpinTrainer } from "../spin/trainer.js";

export interface PipelineOptions {
  /** The run folder: run.json, report data, iter0/, iter1/, … */
  runDir: string;
  /** θ0: a Hugging Face model folder (its tokenizer is used throughout). */
  baseModel: string;
  /** SFT rows (any shape of docs/method.md, "Data"): prompts to answer and ground truths. */
  sftRows: unknown[];
  iterations: number;
  /** Training settings shared by every iteration (outputDir is set per iteration). */
  training: Partial<Omit<SpinConfig, "outputDir">>;
  /** Per-iteration overrides, e.g. the original schedule's lr and β ({@link ORIGINAL_SCHEDULE}). */
  perIteration?: Partial<Omit<SpinConfig, "outputDir">>[];
  generation?: SelfPlayOptions;
  /** Fraction of iteration t−1's rows mixed into iteration t (the original: 1). */
  previousFraction?: number;
  /** Seed of the mixing shuffle (default 42). */
  mixSeed?: number;
  /** Held-out scores of θ0 and of every θt+1 (e.g. exact-match accuracy). */
  evaluate?: (model: CausalLM, tokenizer: Tokenizer, label: string) => Promise<Metrics>;
  load?: LoadModelOptions;
  signal?: AbortSignal;
  /** Resume a training stage even when its settings changed (TrainOptions.allowConfigChange). */
  allowConfigChange?: boolean;
  /** Progress lines (stage starts and ends). */
  log?: (line: string) => void;
  /** Called after every finished stage (e.g. to refresh report.html). */
  onStage?: (state: RunState) => Promise<void>;
  /**
   * Data-parallel group: generation is split into one fraction per rank, training is
   * data-parallel, and rank 0 alone writes run.json, models and evaluations.
   */
  distributed?: Distributed | null;
  /**
   * SPIN with LoRA: iteration 0 trains a fresh adapter on the frozen base, iteration t+1
   * continues from adapter t (θt = base + adapter t, also the opponent), and each iteration
   * saves its adapter in PEFT's format (iter<t>/adapter). Generation runs with the adapter.
   */
  lora?: LoraOptions | null;
  /**
   * θ0's adapter: a PEFT folder over `baseModel`. The run is then a LoRA run that starts from
   * it: θ0 = base + this adapter, and iteration 0 continues training it (its own r, α, dropout
   * and targets; `lora`, when given too, is recorded but not applied to it).
   */
  adapter?: string;
  /** With LoRA, also write each iteration's merged model (iter<t>/model). Default false. */
  mergeAdapters?: boolean;
}

/** The original SPIN schedule: lr 5e-7 for iterations 0–1, 1e-7 for 2–3; β 0.1 for 0–2, 5.0 for 3. */
export const ORIGINAL_SCHEDULE: Partial<SpinConfig>[] = [
  { learningRate: 5e-7, beta: 0.1 },
  { learningRate: 5e-7, beta: 0.1 },
  { learningRate: 1e-7, beta: 0.1 },
  { learningRate: 1e-7, beta: 5.0 },
];

export interface IterationRecord {
  /** identicalPairs: share of the iteration's own pairs whose generated response equals the real one. */
  generate?: Pick<GenerationSummary, "rows" | "eosRate" | "meanGeneratedTokens" | "seconds"> & { identicalPairs?: number };
  train?: { steps: number; rows: number; metrics: Metrics };
  eval?: Metrics;
}

export interface RunState {
  version: 1;
  baseModel: string;
  /** The LoRA settings of a run with adapters (absent: full fine-tuning). */
  lora?: LoraOptions;
  /** θ0's adapter folder, when the run started from one. */
  adapter?: string;
  iterations: number;
  baseEval?: Metrics;
  iteration: IterationRecord[];
}

export interface PipelineResult {
  state: RunState;
  aborted: boolean;
  /** The folder of the last trained model (θT), or the base model if none was trained; with LoRA, θT's adapter folder. */
  finalModel: string;
}

const STATE_FILE = "run.json";

/** A model of the loop: a model folder, and with LoRA the adapter over it. */
interface Theta {
  dir: string;
  adapter: string | null;
}

async function readState(runDir: string, options: PipelineOptions): Promise<RunState> {
  try {
    const state = JSON.parse(await readFile(path.join(runDir, STATE_FILE), "utf8")) as RunState;
    if (path.resolve(state.baseModel) !== path.resolve(options.baseModel)) {
      throw new SpinNativeError(`pipeline: ${runDir} belongs to a run from ${state.baseModel}, not ${options.baseModel}; use another run folder`, "INVALID_ARGUMENT", "pipeline");
    }
    if (JSON.stringify(state.lora ?? null) !== JSON.stringify(options.lora ?? null)) {
      throw new SpinNativeError(
        `pipeline: ${runDir} was run with lora ${JSON.stringify(state.lora ?? null)}, not ${JSON.stringify(options.lora ?? null)}; use another run folder`,
        "INVALID_ARGUMENT",
        "pipeline",
      );
    }
    const startAdapter = (value: string | undefined) => (value === undefined ? "none" : path.resolve(value));
    if (startAdapter(state.adapter) !== startAdapter(options.adapter)) {
      throw new SpinNativeError(`pipeline: ${runDir} started from adapter ${startAdapter(state.adapter)}, not ${startAdapter(options.adapter)}; use another run folder`, "INVALID_ARGUMENT", "pipeline");
    }
    state.iterations = options.iterations;
    return state;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
    return {
      version: 1,
      baseModel: options.baseModel,
      ...(options.lora ? { lora: options.lora } : {}),
      ...(options.adapter !== undefined ? { adapter: options.adapter } : {}),
      iterations: options.iterations,
      iteration: [],
    };
  }
}

/** Folder names of iteration t. */
export function iterationPaths(runDir: string, t: number) {
  const dir = path.join(runDir, `iter${t}`);
  return {
    dir,
    data: path.join(dir, "data"),
    train: path.join(dir, "train"),
    model: path.join(dir, "model"),
    adapter: path.join(dir, "adapter"),
    metrics: path.join(dir, "metrics.jsonl"),
  };
}

/** Runs (or resumes) the SPIN iterations. */
export async function runPipeline(options: PipelineOptions): Promise<PipelineResult> {
  const log = options.log ?? (() => {});
  if (options.iterations < 1) throw new SpinNativeError("pipeline: iterations must be >= 1", "INVALID_ARGUMENT", "pipeline");
  if (options.load?.adapter !== undefined || options.load?.lora !== undefined) {
    // Each iteration has its own adapter; one given to every load would be attached to all of them.
    throw new SpinNativeError("pipeline: LoRA settings go in the pipeline's lora option, not in load (load.adapter / load.lora)", "INVALID_ARGUMENT", "pipeline");
  }
  const dist = options.distributed ?? null;
  const main = !dist || dist.isMain;
  // One run per run folder (another writer is refused, naming it: lib/core/run-lock.ts).
  const lock = await lockRunFolder(options.runDir, runCommand("runPipeline"), dist);
  try {
    return await runStages(options, log, dist, main);
  } finally {
    lock?.release();
  }
}

async function runStages(options: PipelineOptions, log: (line: string) => void, dist: Distributed | null, main: boolean): Promise<PipelineResult> {
  const state = await readState(options.runDir, options);
  // Every rank keeps the same state in memory; rank 0 writes it.
  const save = async () => {
    if (main) {
      await writeFileAtomic(path.join(options.runDir, STATE_FILE), JSON.stringify(state, null, 2) + "\n");
      await options.onStage?.(state);
    }
    await dist?.barrier();
  };
  const tokenizer = await Tokenizer.fromDir(options.baseModel);
  const lora = options.lora ?? null;
  // A run that starts from an adapter trains and saves adapters, as one with lora does.
  const adapters = lora !== null || options.adapter !== undefined;
  // θt: a model folder, or with LoRA the base and adapter t (none before the first training,
  // unless the run starts from an adapter).
  const withModel = async <T>(theta: Theta, fn: (model: CausalLM) => Promise<T>, training = false): Promise<T> => {
    const attach = theta.adapter ? { adapter: theta.adapter } : lora && training ? { lora } : {};
    const model = await CausalLM.load(theta.dir, { ...options.load, ...attach });
    try {
      return await fn(model);
    } finally {
      model.dispose();
    }
  };

  let current: Theta = { dir: options.baseModel, adapter: options.adapter ?? null };
  if (options.evaluate && !state.baseEval) {
    log("evaluating θ0");
    state.baseEval = main ? await withModel(current, (m) => options.evaluate!(m, tokenizer, "base")) : {};
    await save();
  }
  const shown = (theta: Theta) => theta.adapter ?? theta.dir;
  for (let t = 0; t < options.iterations; t++) {
    const paths = iterationPaths(options.runDir, t);
    const record = (state.iteration[t] ??= {});
    if (!record.generate) {
      log(`iteration ${t}: generating with ${shown(current)}`);
      const init = (model: CausalLM) => ({ model, tokenizer, options: { ...options.generation, split: "train" } });
      const result = await withModel(current, (model) => generateDataParallel(init(model), options.sftRows, paths.data, dist ?? null));
      const identicalPairs = identicalPairShare(await readSpinRows(paths.data, "train"));
      record.generate = { rows: result.rows, eosRate: result.eosRate, meanGeneratedTokens: result.meanGeneratedTokens, seconds: result.seconds, identicalPairs };
      await save();
    }
    if (options.signal?.aborted) return { state, aborted: true, finalModel: shown(current) };
    if (!record.train) {
      const own = await readSpinRows(paths.data, "train");
      const rows =
        t === 0
          ? own
          : mixDatasets(
              [
                { rows: own, fraction: 1 },
                { rows: await readSpinRows(iterationPaths(options.runDir, t - 1).data, "train"), fraction: options.previousFraction ?? 1 },
              ],
              options.mixSeed ?? 42,
            );
      log(`iteration ${t}: training on ${rows.length} pairs from ${shown(current)}`);
      const result = await withModel(current, async (model) => {
        // Each iteration's trainer (its optimizer state is model-sized) is freed before the next.
        const trainer = new SpinTrainer({ model, tokenizer, distributed: dist, config: { ...options.training, ...options.perIteration?.[t], outputDir: paths.train } });
        try {
          const trained = await trainer.train(rows, {
            resumeFrom: "latest",
            ...(options.signal ? { signal: options.signal } : {}),
            ...(options.allowConfigChange ? { allowConfigChange: true } : {}),
          });
          if (!trained.aborted && main) {
            if (adapters) await model.saveAdapter(paths.adapter);
            // With an adapter attached, save() writes the merged weights.
            if (!adapters || options.mergeAdapters) await model.save(paths.model);
          }
          await dist?.barrier();
          return trained;
        } finally {
          trainer.dispose();
        }
      }, true);
      if (result.aborted) return { state, aborted: true, finalModel: shown(current) };
      if (main) await copyFile(path.join(paths.train, "metrics.jsonl"), paths.metrics).catch(() => undefined);
      record.train = { steps: result.globalStep, rows: rows.length, metrics: result.metrics };
      await save();
    }
    // θt+1 is saved and recorded: the step checkpoints are no longer needed (they are
    // model-sized). Removed only after run.json records the stage — a crash before that
    // resumes from the last checkpoint instead of training the iteration again — and on every
    // pass, so a crash in the middle of the removal is cleaned up by the next run.
    for (const entry of main ? await readdir(paths.train).catch(() => [] as string[]) : []) {
      if (entry.startsWith("checkpoint-")) await rm(path.join(paths.train, entry), { recursive: true, force: true });
    }
    current = adapters ? { dir: options.baseModel, adapter: paths.adapter } : { dir: paths.model, adapter: null };
    if (options.evaluate && !record.eval) {
      log(`iteration ${t}: evaluating θ${t + 1}`);
      record.eval = main ? await withModel(current, (m) => options.evaluate!(m, tokenizer, `iter${t}`)) : {};
      await save();
    }
  }
  return { state, aborted: false, finalModel: shown(current) };
}
