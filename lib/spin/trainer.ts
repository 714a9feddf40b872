// SpinTrainer (the SPIN objective against an opponent) and SftTrainer (NLL on responses),
// over the shared training loop in spin/loop.ts.
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import path from "node:path";

import { writeFileAtomic } from "../core/atomic.js";
import { tensor } from "../core/create.js";
import { SpinNativeError } from "../core/errors.js";
import type { Tensor } from "../core/tensor.js";
import type { SpinRow } from "../data/rows.js";
import type { Distributed } from "../distributed/distributed.js";
import type { CausalLM } from "../model/causal-lm.js";
import type { Tokenizer } from "../model/tokenizer.js";
import { type SftBatch, type SpinBatch, SpinCollator } from "./collator.js";
import { SPIN_DEFAULTS, type SpinConfig, TRAINING_DEFAULTS, type TrainingConfig, resolveConfig } from "./config.js";
import { disposeBatch, evaluateSft, meanGeneratedLength, meanOverChunks, opponentLogps } from "./evaluate.js";
import { type Metrics, TrainingLoop } from "./loop.js";
import { sftStep, spinStep } from "./step.js";

export { epochOrder, type Metrics, type TrainOptions, type TrainResult, type TrainerEvents } from "./loop.js";

function tokensOf(batch: SpinBatch | SftBatch): number {
  return (batch.attentionMask.sum().item() as number) ?? 0;
}

/** The opponent's summed log-probs of a pair's real and generated responses. */
type OpponentLogps = [real: number, generated: number];

function rowKey(row: SpinRow): string {
  return createHash("sha256").update(JSON.stringify([row.real, row.generated])).digest("hex");
}

export interface SpinTrainerOptions {
  /** The policy θ, trained in place; at the start it is θt. */
  model: CausalLM;
  tokenizer: Tokenizer;
  config: Partial<SpinConfig> & { outputDir: string };
  /** A live frozen opponent; by default the opponent is the model as given (θt), precomputed. */
  opponent?: CausalLM;
  /** Data-parallel group (see Distributed.fromEnv); each rank passes the same rows. */
  distributed?: Distributed | null;
}

/**
 * Trains θt+1 from θt with the SPIN loss: prefer the real response over the model's own
 * generated one, relative to the opponent θt. See docs/method.md ("Loss", "Metrics").
 */
export class SpinTrainer extends TrainingLoop<SpinConfig> {
  readonly tokenizer: Tokenizer;
  readonly opponent: CausalLM | null;
  readonly #collator: SpinCollator;
  readonly #opponentLogps = new Map<string, OpponentLogps>();

  constructor(options: SpinTrainerOptions) {
    super(options.model, resolveConfig<SpinConfig>(SPIN_DEFAULTS, options.config), options.distributed ?? null);
    this.tokenizer = options.tokenizer;
    this.opponent = options.opponent ?? null;
    this.#collator = new SpinCollator({ tokenizer: this.tokenizer, maxLength: this.config.maxLength, maxPromptLength: this.config.maxPromptLength });
  }

  protected override releaseCaches(): void {
    this.#opponentLogps.clear();
  }

  get #cacheFile(): string {
    return path.join(this.config.outputDir, "opponent_logps.json");
  }

  /** Computes (or reads from the run folder) the opponent's log-probs of every row, before any update. */
  protected override async prepare(rows: SpinRow[], evalRows: SpinRow[]): Promise<void> {
    if (this.opponent && !this.config.precomputeOpponent) return;
    const cached = await readFile(this.#cacheFile, "utf8").then((t) => JSON.parse(t) as Record<string, OpponentLogps>, () => ({}));
    for (const [key, value] of Object.entries(cached)) this.#opponentLogps.set(key, value);
    const missing = [...rows, ...evalRows].filter((row) => !this.#opponentLogps.has(rowKey(row)));
    if (missing.length === 0) return;
    const opponent = this.opponent ?? this.model;
    const size = this.config.perDeviceTrainBatchSize;
    for (let start = 0; start < missing.length; start += size) {
      const chunk = missing.slice(start, start + size);
      const [real, generated] = await this.#opponentPass(opponent, chunk);
      chunk.forEach((row, i) => this.#opponentLogps.set(rowKey(row), [real[i]!, generated[i]!]));
    }
    await writeFileAtomic(this.#cacheFile, JSON.stringify(Object.fromEntries(this.#opponentLogps)));
  }

  /** One no-grad pass of `opponent` over pairs: summed log-probs of real and generated responses. */
  async #opponentPass(opponent: CausalLM, rows: SpinRow[]): Promise<[number[], number[]]> {
    const batch = this.#collator.collate(rows);
    try {
      return await opponentLogps(opponent, batch);
    } finally {
      disposeBatch(batch);
    }
  }

  async #opponentFor(batch: SpinBatch, rows: SpinRow[]): Promise<[Tensor, Tensor]> {
    let real: number[];
    let generated: number[];
    if (this.opponent && !this.config.precomputeOpponent) {
      [real, generated] = await this.#opponentPass(this.opponent, rows);
    } else {
      const values = rows.map((row) => {
        const value = this.#opponentLogps.get(rowKey(row));
        if (!value) {
          throw new SpinNativeError(
            "trainer: no opponent log-probs for a row; rows to evaluate during training must be passed as evalRows to train() (or give a live opponent)",
            "INVALID_ARGUMENT",
            "trainer",
          );
        }
        return value;
      });
      real = values.map((v) => v[0]);
      generated = values.map((v) => v[1]);
    }
    return [tensor(Float32Array.from(real)), tensor(Float32Array.from(generated))];
  }

  async #step(rows: SpinRow[], indices: number[], scale: number, backward: boolean): Promise<Metrics> {
    const batch = this.#collator.collate(rows, indices);
    const kept = batch.rowIndices.map((index) => rows[indices.indexOf(index)]!);
    const [opponentReal, opponentGenerated] = await this.#opponentFor(batch, kept);
    const identical = tensor(batch.identical, { dtype: "bool" });
    try {
      const metrics = await spinStep(this.model, { ...batch, opponentReal, opponentGenerated, identical }, this.config, {
        scale,
        backward,
        gradientCheckpointing: this.config.gradientCheckpointing,
        bf16: this.config.bf16,
      });
      return { ...metrics, "generated/length": meanGeneratedLength(batch), tokens: tokensOf(batch) };
    } finally {
      disposeBatch(batch);
      for (const t of [opponentReal, opponentGenerated, identical]) t.dispose();
    }
  }

  protected override microStep(rows: SpinRow[], indices: number[], scale: number): Promise<Metrics> {
    return this.#step(rows, indices, scale, true);
  }

  /** SPIN metrics of `rows` under the current model, eval_-prefixed, without training. */
  override evaluate(rows: SpinRow[]): Promise<Metrics> {
    return meanOverChunks(rows, this.config.perDeviceTrainBatchSize, (chunk, start) => this.#step(chunk, chunk.map((_, i) => start + i), 1, false));
  }
}

export interface SftTrainerOptions {
  model: CausalLM;
  tokenizer: Tokenizer;
  config: Partial<TrainingConfig> & { outputDir: string };
  distributed?: Distributed | null;
}

/**
 * Supervised fine-tuning on the real responses: mean negative log-likelihood per response
 * token. Makes the demo's weak base model and is the "continued SFT" baseline.
 */
export class SftTrainer extends TrainingLoop<TrainingConfig> {
  readonly #collator: SpinCollator;
  readonly #tokenizer: Tokenizer;

  constructor(options: SftTrainerOptions) {
    super(options.model, resolveConfig<TrainingConfig>(TRAINING_DEFAULTS, options.config), options.distributed ?? null);
    this.#tokenizer = options.tokenizer;
    this.#collator = new SpinCollator({ tokenizer: options.tokenizer, maxLength: this.config.maxLength, maxPromptLength: this.config.maxPromptLength });
  }

  protected override async prepare(): Promise<void> {}

  protected override async microStep(rows: SpinRow[], indices: number[], scale: number): Promise<Metrics> {
    const batch = this.#collator.collateSft(rows, indices);
    try {
      const metrics = await sftStep(this.model, batch, { scale, gradientCheckpointing: this.config.gradientCheckpointing, bf16: this.config.bf16 });
      return { loss: metrics.loss, "response/tokens": metrics.tokens, tokens: tokensOf(batch) };
    } finally {
      disposeBatch(batch);
    }
  }

  override evaluate(rows: SpinRow[]): Promise<Metrics> {
    const { perDeviceTrainBatchSize: batchSize, maxLength, maxPromptLength, bf16 } = this.config;
    return evaluateSft(this.model, rows, { tokenizer: this.#tokenizer, batchSize, maxLength, maxPromptLength, bf16 });
  }
}
