// The training loop shared by SpinTrainer and SftTrainer: seeded epoch order, gradient
// accumulation, the learning-rate schedule, non-finite guards, logging, evaluation,
// checkpoints, resume and abort. Subclasses supply the micro-batch step. (About 460
// lines: the update loop, its resume and its abort paths share their state and read as one.)
import { EventEmitter } from "node:events";
import { appendFile, readFile } from "node:fs/promises";
import path from "node:path";
import { performance } from "node:perf_hooks";

import { stepsPerEpoch as updatesPerEpoch } from "./collator.js";
import type { SpinRow } from "../data/rows.js";
import { SpinNativeError } from "../core/errors.js";
import { writeFileAtomic } from "../core/atomic.js";
import type { Distributed, GradientReducer } from "../distributed/distributed.js";
import type { CausalLM } from "../model/causal-lm.js";
import { Optimizer } from "./optim.js";
import { manualSeed } from "../core/create.js";
import { microBatchSeed, permutation } from "../core/random.js";
import { lrMultiplier, warmupSteps } from "./schedule.js";
import { lockRunFolder, runCommand } from "../core/run-lock.js";
import {
  type TrainerState,
  findCheckpoint,
  fingerprintChanges,
  recordConfigChange,
  trainingFingerprint,
  restoreTrainingCheckpoint,
  saveOptimizerShard,
  rotateCheckpoints,
  saveTrainingCheckpoint,
} from "./checkpoint.js";
import type { TrainingConfig } from "./config.js";

export type Metrics = Record<string, number>;

/** Payloads of the trainer's events. */
export interface TrainerEvents {
  /** After every optimizer update. */
  step: { step: number; totalSteps: number; epoch: number; metrics: Metrics; learningRate: number; gradNorm: number };
  /** Every loggingSteps updates: metrics averaged since the last log. */
  log: Metrics & { step: number; epoch: number };
  /** After an evaluation: eval_-prefixed metrics. */
  eval: Metrics & { step: number; epoch: number };
  /** After a checkpoint is written. */
  checkpoint: { step: number; dir: string };
}

export interface TrainOptions {
  /** Stops at the next update boundary, after writing a checkpoint. */
  signal?: AbortSignal;
  /** "latest" (the newest checkpoint in outputDir, if any) or a checkpoint folder. */
  resumeFrom?: string;
  /** Rows for evaluation every evalSteps updates. */
  evalRows?: SpinRow[];
  /**
   * Resume even when the checkpoint was written with other settings (learning rate, β, batch,
   * data, …: see trainingFingerprint). Without it such a resume is refused with the list of
   * changes; with it, the changes are recorded in <outputDir>/events.jsonl and warned about.
   */
  allowConfigChange?: boolean;
  /** @internal The caller holds outputDir's run lock (the CLI, which also writes the final model there). */
  folderLocked?: boolean;
}

export interface TrainResult {
  globalStep: number;
  epoch: number;
  aborted: boolean;
  /** The last logged metrics. */
  metrics: Metrics;
}

/** A seeded permutation of 0..n-1 (mulberry32 + Fisher–Yates): the data order of one epoch. */
export function epochOrder(n: number, seed: number, epoch: number): number[] {
  return permutation(n, (seed ^ Math.imul(epoch + 1, 0x9e3779b1)) >>> 0);
}

class MetricAverager {
  #sums = new Map<string, number>();
  #count = 0;
  add(metrics: Metrics): void {
    for (const [k, v] of Object.entries(metrics)) this.#sums.set(k, (this.#sums.get(k) ?? 0) + v);
    this.#count++;
  }
  take(): Metrics {
    const out = Object.fromEntries([...this.#sums].map(([k, v]) => [k, v / Math.max(1, this.#count)]));
    this.#sums.clear();
    this.#count = 0;
    return out;
  }
  get empty(): boolean {
    return this.#count === 0;
  }
}

export abstract class TrainingLoop<C extends TrainingConfig> implements Disposable {
  readonly #events = new EventEmitter();
  protected optimizer: Optimizer | null = null;
  /** train() calls not yet settled (a second one is refused by the model's usage ledger). */
  #calls = 0;
  #disposed = false;

  constructor(
    readonly model: CausalLM,
    readonly config: C,
    /** Data-parallel group: each rank trains on its slice of every global batch. */
    readonly distributed: Distributed | null = null,
  ) {}

  on<K extends keyof TrainerEvents>(event: K, listener: (payload: TrainerEvents[K]) => void): this {
    this.#events.on(event, listener);
    return this;
  }

  protected emit<K extends keyof TrainerEvents>(event: K, payload: TrainerEvents[K]): void {
    this.#events.emit(event, payload);
  }

  /** Work before the first update, on the model as given (θt), before any resume: e.g. the opponent's log-probs. */
  protected abstract prepare(rows: SpinRow[], evalRows: SpinRow[]): Promise<void>;
  /** One micro-batch: forward, loss × scale, backward; returns its metrics (with `loss` and `tokens`). */
  protected abstract microStep(rows: SpinRow[], indices: number[], scale: number): Promise<Metrics>;
  /** Metrics of `rows` without training, eval_-prefixed. */
  abstract evaluate(rows: SpinRow[]): Promise<Metrics>;

  /**
   * Trains on `rows` as configured; resolves when the run ends, is aborted, or fails. The run
   * holds its output folder (another writer is refused: lib/core/run-lock.ts) and its model
   * (another call using it is refused: lib/model/usage.ts) until then.
   */
  async train(rows: SpinRow[], options: TrainOptions = {}): Promise<TrainResult> {
    const call = `${this.constructor.name}.train`;
    if (this.#disposed) throw new SpinNativeError(`${call}: the trainer was disposed`, "DISPOSED", call);
    if (rows.length === 0) throw new SpinNativeError("trainer: no training rows", "INVALID_ARGUMENT", "trainer.train");
    this.#calls++;
    try {
      return await this.model.usage.hold(call, async () => {
        const lock = options.folderLocked ? null : await lockRunFolder(this.config.outputDir, runCommand(call), this.distributed);
        try {
          return await this.#train(rows, options);
        } finally {
          lock?.release();
        }
      });
    } finally {
      this.#calls--;
    }
  }

  get disposed(): boolean {
    return this.#disposed;
  }

  /**
   * Frees the optimizer (its state, and its references to the model's weights) and what the
   * trainer cached; the model stays the caller's. Idempotent; refused with `BUSY` while a
   * train() call runs (abort it through its signal and await it first).
   */
  dispose(): void {
    const call = `${this.constructor.name}.dispose`;
    if (this.#calls > 0) throw new SpinNativeError(`${call}: train() is running; abort it (TrainOptions.signal) and await it first`, "BUSY", call);
    this.optimizer?.dispose();
    this.optimizer = null;
    this.releaseCaches();
    this.#disposed = true;
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  /** Drops what a subclass keeps between train() calls (e.g. the opponent's log-probs). */
  protected releaseCaches(): void {}

  async #train(rows: SpinRow[], options: TrainOptions): Promise<TrainResult> {
    const c = this.config;
    const dist = this.distributed;
    const world = dist?.worldSize ?? 1;
    const rank = dist?.rank ?? 0;
    const main = rank === 0;
    const perMicro = c.perDeviceTrainBatchSize * world; // one micro-batch of every rank
    const perUpdate = perMicro * c.gradientAccumulationSteps;
    const stepsPerEpoch = updatesPerEpoch(rows.length, c.perDeviceTrainBatchSize, world, c.gradientAccumulationSteps);
    const totalSteps = c.maxSteps > 0 ? c.maxSteps : c.numTrainEpochs * stepsPerEpoch;
    const warmup = c.warmupSteps ?? warmupSteps(totalSteps, c.warmupRatio);
    // maxSteps > 0 runs as many epochs as those updates need (HF's max_steps).
    const lastEpoch = c.stopAfterEpochs ?? (c.maxSteps > 0 ? Infinity : c.numTrainEpochs);

    if (dist?.sharding === 3 && !c.gradientCheckpointing) {
      throw new SpinNativeError(
        "trainer: ZeRO stage 3 gathers each layer's weights for its forward and again for its recomputation in backward: set gradientCheckpointing (gradient_checkpointing: true)",
        "INVALID_ARGUMENT",
        "trainer.train",
      );
    }
    this.optimizer ??= new Optimizer(this.model, {
      kind: c.optim,
      alpha: c.rmspropAlpha,
      beta1: c.adamBeta1,
      beta2: c.adamBeta2,
      eps: c.adamEpsilon,
      weightDecay: c.weightDecay,
    }, dist);
    const optimizer = this.optimizer;
    // After the optimizer made the parameters trainable: the reducer hooks their gradients.
    using reducer = dist?.gradientReducer(this.model, optimizer);
    await this.prepare(rows, options.evalRows ?? []);
    let state: TrainerState = { globalStep: 0, epoch: 0, stepInEpoch: 0, totalSteps, stepsPerEpoch, numRows: rows.length, seed: c.seed, optimizerSteps: 0, worldSize: world };
    const resumeDir = options.resumeFrom ? await findCheckpoint(c.outputDir, options.resumeFrom) : null;
    const fingerprint = trainingFingerprint(c, { totalSteps, warmupSteps: warmup }, rows, world, this.model.dtype, this.model.adapter);
    state.fingerprint = fingerprint;
    if (resumeDir) {
      const saved = await restoreTrainingCheckpoint(resumeDir, this.model, optimizer, rank, world);
      if ((saved.worldSize ?? 1) !== world) {
        throw new SpinNativeError(
          `resume: ${resumeDir} was written by a run of ${saved.worldSize ?? 1} rank(s); this run has ${world}. Resume with the same world size (the data order and batches depend on it)`,
          "INVALID_ARGUMENT",
          "trainer.resume",
        );
      }
      // Checkpoints from before fingerprints were recorded: rows, batch and seed only.
      const changes = saved.fingerprint
        ? fingerprintChanges(saved.fingerprint, fingerprint)
        : fingerprintChanges(
            { rows: saved.numRows, stepsPerEpoch: saved.stepsPerEpoch, seed: saved.seed },
            { rows: rows.length, stepsPerEpoch, seed: c.seed },
          );
      // Where the run stands is counted in updates of the saved layout: with another number of
      // updates per epoch (rows, batch, accumulation) it has no place to resume at.
      if (options.allowConfigChange && saved.stepsPerEpoch !== stepsPerEpoch) {
        throw new SpinNativeError(
          `resume: ${resumeDir} has ${saved.stepsPerEpoch} updates per epoch, this run ${stepsPerEpoch} (rows, batch or accumulation changed); ` +
            "a run cannot resume at its position with another epoch layout, even with allowConfigChange: start over in another output folder",
          "INVALID_ARGUMENT",
          "trainer.resume",
        );
      }
      if (changes.length > 0 && !options.allowConfigChange) {
        throw new SpinNativeError(
          `resume: ${resumeDir} was written with other settings than this run's:\n  ${changes.join("\n  ")}\n` +
            "Resume with the settings it was started with, start over in another output folder, or pass allowConfigChange " +
            "(CLI: --allow_config_change=true) to resume with the new ones (recorded in events.jsonl)",
          "INVALID_ARGUMENT",
          "trainer.resume",
        );
      }
      if (changes.length > 0) {
        if (main) await recordConfigChange(c.outputDir, saved.globalStep, changes);
        process.emitWarning(`spin-native: resuming ${c.outputDir} at update ${saved.globalStep} with changed settings: ${changes.join("; ")}`);
      }
      state = { ...saved, totalSteps, stepsPerEpoch, numRows: rows.length, seed: c.seed, fingerprint };
    }
    if (dist) {
      // Every rank resumes from the same checkpoint, or none does (only rank 0 writes them).
      const seen = await dist.max({ found: resumeDir ? 1 : 0, missing: resumeDir ? 0 : 1, step: state.globalStep, lowestStep: -state.globalStep });
      if (seen.found && seen.missing) {
        throw new SpinNativeError(
          `resume: some ranks see a checkpoint in ${c.outputDir} and others do not (this rank: ${resumeDir ?? "none"}); the ranks of a multi-machine run need a shared output folder`,
          "INVALID_ARGUMENT",
          "trainer.resume",
        );
      }
      if (seen.step !== -seen.lowestStep!) {
        throw new SpinNativeError(`resume: the ranks found checkpoints of different steps (${-seen.lowestStep!} to ${seen.step}) in ${c.outputDir}`, "INVALID_ARGUMENT", "trainer.resume");
      }
    }
    // Log lines past the restored step (or all, on a fresh start) belong to a lost run.
    if (main) await this.#truncateMetrics(state.globalStep);
    // Every rank starts from rank 0's parameters (a resume loads the same files everywhere).
    if (dist && !resumeDir) await dist.broadcastParameters(this.model);
    // ZeRO stage 3: from here to the end of the run each rank keeps its shard of the layers.
    if (optimizer.sharding === 3) optimizer.shardParameters();
    const result = await this.#updates(rows, options, state, optimizer, reducer ?? null, { totalSteps, stepsPerEpoch, warmup, lastEpoch, perMicro, perUpdate });
    // Whole again for what follows the run (saving, generation). Not after a failure: the
    // ranks may be out of step, and a collective then would hang.
    if (optimizer.sharding === 3) await optimizer.gatherParameters();
    return result;
  }

  /** The run's updates from `state` on, with checkpoints and logs. */
  async #updates(
    rows: SpinRow[],
    options: TrainOptions,
    state: TrainerState,
    optimizer: Optimizer,
    reducer: GradientReducer | null,
    layout: { totalSteps: number; stepsPerEpoch: number; warmup: number; lastEpoch: number; perMicro: number; perUpdate: number },
  ): Promise<TrainResult> {
    const c = this.config;
    const dist = this.distributed;
    const world = dist?.worldSize ?? 1;
    const rank = dist?.rank ?? 0;
    const main = rank === 0;
    const { totalSteps, stepsPerEpoch, warmup, lastEpoch, perMicro, perUpdate } = layout;

    const averager = new MetricAverager();
    let lastLogged: Metrics = {};
    let tokens = 0;
    let since = performance.now();
    const checkpoint = async () => {
      state.optimizerSteps = optimizer.steps;
      // A sharded optimizer's state is on every rank: each stages its file for rank 0.
      if (dist && optimizer.sharding > 0) {
        await saveOptimizerShard(c.outputDir, state.globalStep, optimizer, rank, world);
        await dist.barrier();
      }
      // Stage 3: rank 0 receives the weights a layer at a time, the layers stay sharded.
      const weights = optimizer.sharding === 3 ? await optimizer.gatheredWeights(0) : null;
      // Only rank 0 writes; the others wait, so a checkpoint is complete before anyone goes on.
      try {
        if (main) {
          const dir = await saveTrainingCheckpoint(c.outputDir, state, this.model, optimizer, weights);
          await rotateCheckpoints(c.outputDir, c.saveTotalLimit);
          this.emit("checkpoint", { step: state.globalStep, dir });
        }
      } finally {
        for (const t of Object.values(weights ?? {})) t.dispose();
      }
      await dist?.barrier();
    };

    while (state.epoch < lastEpoch && state.globalStep < totalSteps) {
      const order = epochOrder(rows.length, c.seed, state.epoch);
      while (state.stepInEpoch < stepsPerEpoch && state.globalStep < totalSteps) {
        const first = state.stepInEpoch * perUpdate;
        // Micro-batch k of the update spans perMicro rows; rank r takes its contiguous slice.
        // A short last one is split evenly, padded from the start of the epoch's order as
        // torch's DistributedSampler pads: every rank has rows, as many as the others.
        const micro: number[][] = [];
        for (let k = 0; k < c.gradientAccumulationSteps; k++) {
          const chunk = order.slice(first + k * perMicro, first + (k + 1) * perMicro);
          if (chunk.length === 0) break;
          const per = Math.ceil(chunk.length / world);
          const padded = [...chunk, ...Array.from({ length: per * world - chunk.length }, (_, i) => order[i % order.length]!)];
          micro.push(padded.slice(rank * per, (rank + 1) * per));
        }
        const stepMetrics = new MetricAverager();
        let finite = true;
        for (const [k, indices] of micro.entries()) {
          const last = k === micro.length - 1;
          reducer?.beforeBackward(last);
          // Adapter dropout draws from libtorch's generator: seeded per micro-batch, a resumed
          // run draws exactly what an uninterrupted one did.
          if ((this.model.adapter?.dropout ?? 0) > 0) manualSeed(microBatchSeed(c.seed, state.globalStep, k, rank));
          const metrics = await this.microStep(indices.map((i) => rows[i]!), indices, 1 / micro.length);
          if (!Number.isFinite(metrics.loss)) finite = false;
          tokens += metrics.tokens ?? 0;
          stepMetrics.add(metrics);
          // Before any other collective of the update, so every rank issues the buckets first.
          await reducer?.afterBackward(last);
        }
        let localMetrics = stepMetrics.take();
        let stop = options.signal?.aborted ?? false;
        if (dist) {
          // Every rank must take the same decisions (skip the update, stop after it), and the
          // metrics are those of the global batch.
          const agreed = await dist.averageMetrics({ ...localMetrics, finite: finite ? 1 : 0, stop: stop ? 1 : 0 });
          finite = agreed.finite === 1;
          stop = agreed.stop! > 0;
          delete agreed.finite;
          delete agreed.stop;
          localMetrics = agreed;
        }
        if (!finite) this.#nonFinite(`loss is ${localMetrics.loss}`, state, micro.flat());
        const learningRate = c.learningRate * lrMultiplier(c.lrSchedulerType, state.globalStep, totalSteps, warmup);
        if (!finite) optimizer.discardGradients();
        const { gradNorm, applied } = finite ? await optimizer.step(learningRate, c.maxGradNorm) : { gradNorm: NaN, applied: false };
        if (finite && !applied) this.#nonFinite(`gradient norm is ${gradNorm}`, state, micro.flat());
        state.globalStep++;
        state.stepInEpoch++;
        const epoch = state.epoch + state.stepInEpoch / stepsPerEpoch;
        const metrics = { ...localMetrics, learning_rate: learningRate, grad_norm: gradNorm };
        averager.add(metrics);
        this.emit("step", { step: state.globalStep, totalSteps, epoch, metrics, learningRate, gradNorm });

        if (state.globalStep % c.loggingSteps === 0) {
          const seconds = (performance.now() - since) / 1000;
          lastLogged = await this.#log({ ...averager.take(), "tokens/s": tokens / seconds }, state.globalStep, epoch);
          tokens = 0;
          since = performance.now();
        }
        if (c.evalSteps && options.evalRows && state.globalStep % c.evalSteps === 0) {
          this.emit("eval", { ...(await this.evaluate(options.evalRows)), step: state.globalStep, epoch });
        }
        const epochDone = state.stepInEpoch === stepsPerEpoch;
        if (epochDone) {
          state.epoch++;
          state.stepInEpoch = 0;
          if (c.saveStrategy === "epoch") await checkpoint();
        }
        if (c.saveStrategy === "steps" && state.globalStep % c.saveSteps === 0) await checkpoint();
        if (dist ? stop : options.signal?.aborted) {
          await checkpoint();
          return { globalStep: state.globalStep, epoch, aborted: true, metrics: lastLogged };
        }
        if (epochDone) break; // the next epoch has its own order
      }
    }
    const epoch = state.epoch + state.stepInEpoch / stepsPerEpoch;
    if (!averager.empty) {
      lastLogged = await this.#log({ ...averager.take(), "tokens/s": tokens / ((performance.now() - since) / 1000) }, state.globalStep, epoch);
    }
    if (c.saveStrategy === "steps" && state.globalStep % c.saveSteps !== 0) await checkpoint();
    // A run resumed at its last update logs nothing new: report the last line it had logged.
    if (Object.keys(lastLogged).length === 0) lastLogged = await this.#lastLogged();
    return { globalStep: state.globalStep, epoch, aborted: false, metrics: lastLogged };
  }

  /** Frees accumulated gradients of an update that is dropped. */
  #nonFinite(what: string, state: TrainerState, indices: number[]): void {
    if (this.config.onNonFinite === "skip") return;
    throw new SpinNativeError(
      `trainer: ${what} at update ${state.globalStep + 1} (epoch ${state.epoch}, rows ${indices.slice(0, 16).join(", ")}${indices.length > 16 ? ", …" : ""}); ` +
        `the last checkpoint in ${this.config.outputDir} is intact (onNonFinite: "skip" drops such updates instead)`,
      "INVALID_ARGUMENT",
      "trainer.train",
    );
  }

  async #log(metrics: Metrics, step: number, epoch: number): Promise<Metrics> {
    const line = { step, epoch, ...metrics };
    if ((this.distributed?.rank ?? 0) !== 0) return line; // rank 0 writes the run's log
    await appendFile(path.join(this.config.outputDir, "metrics.jsonl"), JSON.stringify(line) + "\n");
    if (this.config.logToConsole) {
      const shown = Object.entries(metrics).map(([k, v]) => `${k}=${Number.isInteger(v) ? v : v.toPrecision(4)}`);
      console.log(`[step ${step} epoch ${epoch.toFixed(2)}] ${shown.join(" ")}`);
    }
    this.emit("log", line);
    return line;
  }

  async #lastLogged(): Promise<Metrics> {
    const text = await readFile(path.join(this.config.outputDir, "metrics.jsonl"), "utf8").catch(() => "");
    const last = text.trim().split("\n").at(-1);
    return last ? (JSON.parse(last) as Metrics) : {};
  }

  /** After a resume, drops log lines past the checkpoint (they will be written again). */
  async #truncateMetrics(step: number): Promise<void> {
    const file = path.join(this.config.outputDir, "metrics.jsonl");
    let text: string;
    try {
      text = await readFile(file, "utf8");
    } catch {
      return;
    }
    const kept = text.split("\n").filter((line) => {
      try {
        return line !== "" && (JSON.parse(line) as { step: number }).step <= step;
      } catch {
        return false; // a line torn by a crash
      }
    });
    await writeFileAtomic(file, kept.map((l) => l + "\n").join(""));
  }
}
