// Training checkpoints: <outputDir>/checkpoint-<step>/ with the model (a Hugging Face
// folder), the optimizer state (safetensors; one file per rank when it is sharded) and
// trainer_state.json (counters and data position). Written atomically; resuming from one
// continues the run that would have happened without the interruption.
import { createHash } from "node:crypto";
import { appendFile, mkdir, readFile, readdir, rename, rm } from "node:fs/promises";
import path from "node:path";

import type { SpinRow } from "../data/rows.js";
import { SpinNativeError } from "../core/errors.js";
import { writeDirAtomic, writeFileAtomic } from "../core/atomic.js";
import type { CausalLM } from "../model/causal-lm.js";
import type { Tensor } from "../core/tensor.js";
import type { Optimizer } from "./optim.js";
import { noGrad } from "../core/runtime.js";
import { type LoraConfig, adapterDtype, readAdapterTensors } from "../model/lora.js";
import { loadCheckpointTensors, loadSafetensors, saveSafetensors } from "../model/safetensors.js";
import type { SpinConfig, TrainingConfig } from "./config.js";

/** The settings that decide what a run computes, by field name (see trainingFingerprint). */
export type TrainingFingerprint = Record<string, string | number | boolean | null>;

/** Where the run is: the next update to make is `stepInEpoch` of `epoch`. */
export interface TrainerState {
  globalStep: number;
  epoch: number;
  stepInEpoch: number;
  totalSteps: number;
  stepsPerEpoch: number;
  numRows: number;
  seed: number;
  /** Updates the optimizer applied (AdamW's bias correction counts them). */
  optimizerSteps: number;
  /** Ranks of the data-parallel run (1 when not distributed). */
  worldSize?: number;
  /** ZeRO stage of the optimizer state (absent: 0, one replicated optimizer.safetensors). */
  zeroStage?: number;
  /** What the run computes with (absent in checkpoints of spin-native before it was recorded). */
  fingerprint?: TrainingFingerprint;
}

/**
 * Everything that changes the result of a run: optimizer and its settings, learning rate and
 * schedule, the loss and β, lengths, precision, batch and accumulation, world size, seed, and
 * the training rows themselves (a hash). The schedule is taken as resolved: its warmup, and its
 * length only when the rate decays over it (linear, cosine) — so a run with a constant rate may
 * be extended. Logging, checkpointing and gradient checkpointing (which recomputes the same
 * values) are left out: they may change on a resume.
 */
export function trainingFingerprint(
  config: TrainingConfig & Partial<SpinConfig>,
  schedule: { totalSteps: number; warmupSteps: number },
  rows: readonly SpinRow[],
  worldSize: number,
  dtype: string,
  adapter: LoraConfig | null = null,
): TrainingFingerprint {
  const data = createHash("sha256");
  for (const row of rows) data.update(JSON.stringify(row)).update("\n");
  const fingerprint: TrainingFingerprint = {
    optim: config.optim,
    learningRate: config.learningRate,
    lrSchedulerType: config.lrSchedulerType,
    warmupSteps: config.lrSchedulerType === "constant" ? null : schedule.warmupSteps,
    decaySteps: config.lrSchedulerType === "linear" || config.lrSchedulerType === "cosine" ? schedule.totalSteps : null,
    weightDecay: config.weightDecay,
    rmspropAlpha: config.rmspropAlpha,
    adamBeta1: config.adamBeta1,
    adamBeta2: config.adamBeta2,
    adamEpsilon: config.adamEpsilon,
    maxGradNorm: config.maxGradNorm,
    perDeviceTrainBatchSize: config.perDeviceTrainBatchSize,
    gradientAccumulationSteps: config.gradientAccumulationSteps,
    worldSize,
    seed: config.seed,
    maxLength: config.maxLength,
    maxPromptLength: config.maxPromptLength,
    bf16: config.bf16,
    dtype,
    rows: rows.length,
    data: data.digest("hex").slice(0, 16),
  };
  for (const field of ["beta", "lossType", "labelSmoothing"] as const) {
    if (config[field] !== undefined) fingerprint[field] = config[field];
  }
  // Recorded only when used, so checkpoints from before the option resume as they were.
  if (config.sftWeight) fingerprint.sftWeight = config.sftWeight;
  if (config.averageLogProb) fingerprint.averageLogProb = true;
  if (adapter) fingerprint.lora = `r=${adapter.r} alpha=${adapter.alpha} dropout=${adapter.dropout} rslora=${adapter.useRslora} modules=${adapter.modules.join(",")}`;
  return fingerprint;
}

/** The fields whose values differ, as "field: saved → now" lines. */
export function fingerprintChanges(saved: TrainingFingerprint, now: TrainingFingerprint): string[] {
  const fields = [...new Set([...Object.keys(saved), ...Object.keys(now)])];
  return fields.filter((f) => saved[f] !== now[f]).map((f) => `${f}: ${JSON.stringify(saved[f] ?? null)} → ${JSON.stringify(now[f] ?? null)}`);
}

/** Records a resume that changed the run's settings in <outputDir>/events.jsonl. */
export async function recordConfigChange(outputDir: string, step: number, changes: string[]): Promise<void> {
  const event = { time: new Date().toISOString(), step, event: "resumed with a changed configuration", changes };
  await appendFile(path.join(outputDir, "events.jsonl"), JSON.stringify(event) + "\n");
}

const PREFIX = "checkpoint-";
const OPTIMIZER_FILE = "optimizer.safetensors";

/** A sharded optimizer's file for one rank of a run of `world` ranks. */
function optimizerShardFile(rank: number, world: number): string {
  return `optimizer-rank-${rank}-of-${world}.safetensors`;
}

/** Where the ranks leave their optimizer shards for the checkpoint of `step`. */
function shardStaging(outputDir: string, step: number): string {
  return path.join(outputDir, `.optimizer-shards-${step}`);
}

/**
 * A sharded run's first half of a checkpoint, on every rank: this rank's optimizer state,
 * written atomically where rank 0's {@link saveTrainingCheckpoint} collects it (after a barrier).
 */
export async function saveOptimizerShard(outputDir: string, step: number, optimizer: Optimizer, rank: number, world: number): Promise<void> {
  const staging = shardStaging(outputDir, step);
  await mkdir(staging, { recursive: true });
  const file = path.join(staging, optimizerShardFile(rank, world));
  const state = optimizer.state();
  try {
    await saveSafetensors(`${file}.tmp`, state);
  } finally {
    for (const t of Object.values(state)) t.dispose();
  }
  await rename(`${file}.tmp`, file);
}

/**
 * Writes checkpoint-<step> (rank 0); a sharded optimizer's files must be staged by every rank
 * first. `weights`: the trained tensors to save instead of the model's own (ZeRO stage 3).
 */
export async function saveTrainingCheckpoint(
  outputDir: string,
  state: TrainerState,
  model: CausalLM,
  optimizer: Optimizer,
  weights: Record<string, Tensor> | null = null,
): Promise<string> {
  const dir = path.join(outputDir, `${PREFIX}${state.globalStep}`);
  const world = state.worldSize ?? 1;
  const staging = shardStaging(outputDir, state.globalStep);
  await writeDirAtomic(dir, async (temp) => {
    // With an adapter only the adapter changes: it is what a checkpoint holds.
    if (model.adapter) await model.saveAdapter(path.join(temp, "adapter"), weights ?? undefined);
    else await model.save(path.join(temp, "model"), weights ? { weights } : {});
    if (optimizer.sharding > 0) {
      for (let rank = 0; rank < world; rank++) {
        const name = optimizerShardFile(rank, world);
        await rename(path.join(staging, name), path.join(temp, name)).catch((error: Error) => {
          throw new SpinNativeError(`checkpoint: rank ${rank}'s optimizer shard is missing from ${staging}: ${error.message}`, "IO", "trainer.checkpoint");
        });
      }
    } else {
      const optimizerState = optimizer.state();
      try {
        await saveSafetensors(path.join(temp, OPTIMIZER_FILE), optimizerState);
      } finally {
        for (const t of Object.values(optimizerState)) t.dispose();
      }
    }
    await writeFileAtomic(path.join(temp, "trainer_state.json"), JSON.stringify(optimizer.sharding > 0 ? { ...state, zeroStage: optimizer.sharding } : state, null, 2) + "\n");
  });
  await rm(staging, { recursive: true, force: true });
  return dir;
}

/** Checkpoint folders of a run, oldest first. */
export async function listCheckpoints(outputDir: string): Promise<{ step: number; dir: string }[]> {
  let names: string[];
  try {
    names = await readdir(outputDir);
  } catch {
    return [];
  }
  return names
    .filter((n) => new RegExp(`^${PREFIX}\\d+$`).test(n))
    .map((n) => ({ step: Number(n.slice(PREFIX.length)), dir: path.join(outputDir, n) }))
    .sort((a, b) => a.step - b.step);
}

/** Removes the oldest checkpoints beyond `keep`. */
export async function rotateCheckpoints(outputDir: string, keep: number | null): Promise<void> {
  if (keep === null) return;
  const all = await listCheckpoints(outputDir);
  for (const { dir } of all.slice(0, Math.max(0, all.length - keep))) await rm(dir, { recursive: true, force: true });
}

/** Resolves "latest" (or a path) to a checkpoint folder; null when the run has none yet. */
export async function findCheckpoint(outputDir: string, resumeFrom: string): Promise<string | null> {
  if (resumeFrom !== "latest") return resumeFrom;
  return (await listCheckpoints(outputDir)).at(-1)?.dir ?? null;
}

/**
 * Loads parameters and optimizer state from `dir` into the live model and optimizer; returns
 * the saved state. A sharded optimizer reads its rank's file, or this rank's elements of a
 * replicated run's state; a sharded checkpoint resumes only with sharding on as many ranks.
 */
export async function restoreTrainingCheckpoint(dir: string, model: CausalLM, optimizer: Optimizer, rank = 0, world = 1): Promise<TrainerState> {
  let state: TrainerState;
  try {
    state = JSON.parse(await readFile(path.join(dir, "trainer_state.json"), "utf8")) as TrainerState;
  } catch (error) {
    throw new SpinNativeError(`resume: cannot read ${path.join(dir, "trainer_state.json")}: ${(error as Error).message}`, "IO", "trainer.resume");
  }
  const adapter = model.adapter !== null;
  const folder = path.join(dir, adapter ? "adapter" : "model");
  const saved = adapter ? await readAdapterTensors(folder, adapterDtype(model.dtype), model.device) : await loadCheckpointTensors(folder, { dtype: model.dtype, device: model.device });
  const live = adapter ? new Map(Object.entries(model.adapterTensors()!)) : model.parameters();
  try {
    noGrad(() => {
      for (const [name, parameter] of live) {
        const value = saved[name];
        if (!value) throw new SpinNativeError(`resume: ${folder} lacks ${name}`, "IO", "trainer.resume");
        parameter.copyFrom(value);
      }
    });
  } finally {
    for (const t of [...live.values(), ...Object.values(saved)]) t.dispose();
  }
  const savedStage = state.zeroStage ?? 0;
  const savedWorld = state.worldSize ?? 1;
  if (savedStage > 0 && (optimizer.sharding === 0 || savedWorld !== world)) {
    throw new SpinNativeError(
      `resume: ${dir} holds optimizer state sharded over ${savedWorld} ranks (ZeRO stage ${savedStage}); this run has ${world} rank(s) ` +
        `at stage ${optimizer.sharding}. Resume it on ${savedWorld} ranks with sharding 1 or 2 (zero_stage)`,
      "INVALID_ARGUMENT",
      "trainer.resume",
    );
  }
  const optimizerState = await loadSafetensors(path.join(dir, savedStage > 0 ? optimizerShardFile(rank, world) : OPTIMIZER_FILE));
  try {
    optimizer.loadState(optimizerState, state.optimizerSteps);
  } finally {
    for (const t of Object.values(optimizerState)) t.dispose();
  }
  return state;
}
