// Held-out metrics without training: the mean NLL of the real responses, and the SPIN metrics
// of a policy against a live opponent. The trainers' evaluate() and `spin-native eval` use them.
import { tensor } from "../core/create.js";
import { noGrad } from "../core/runtime.js";
import type { Tensor } from "../core/tensor.js";
import type { SpinRow } from "../data/rows.js";
import type { CausalLM } from "../model/causal-lm.js";
import type { Tokenizer } from "../model/tokenizer.js";
import { type SpinBatch, SpinCollator } from "./collator.js";
import { SPIN_DEFAULTS, type SpinObjective } from "./config.js";
import { sftStep, spinStep } from "./step.js";

export interface EvaluateOptions {
  tokenizer: Tokenizer;
  /** Pairs per forward pass (default 8). */
  batchSize?: number;
  maxLength?: number;
  maxPromptLength?: number;
  bf16?: boolean;
}

export function disposeBatch(batch: { ids: Tensor; attentionMask: Tensor; labels: Tensor }): void {
  batch.ids.dispose();
  batch.attentionMask.dispose();
  batch.labels.dispose();
}

function collatorFor(options: EvaluateOptions): SpinCollator {
  return new SpinCollator({
    tokenizer: options.tokenizer,
    maxLength: options.maxLength ?? SPIN_DEFAULTS.maxLength,
    maxPromptLength: options.maxPromptLength ?? SPIN_DEFAULTS.maxPromptLength,
  });
}

/**
 * The mean of `measure` over `rows` in chunks of `size`, each chunk weighted by `weight` of
 * its result (default: its rows), keys prefixed `eval_`; "tokens" is dropped.
 */
export async function meanOverChunks(
  rows: readonly SpinRow[],
  size: number,
  measure: (chunk: SpinRow[], start: number) => Promise<Record<string, number>>,
  weight: (metrics: Record<string, number>, chunk: SpinRow[]) => number = (_, chunk) => chunk.length,
): Promise<Record<string, number>> {
  const sums = new Map<string, number>();
  let total = 0;
  for (let start = 0; start < rows.length; start += size) {
    const chunk = rows.slice(start, start + size);
    const metrics = await measure(chunk, start);
    const w = weight(metrics, chunk);
    total += w;
    for (const [k, v] of Object.entries(metrics)) sums.set(k, (sums.get(k) ?? 0) + v * w);
  }
  return Object.fromEntries([...sums].filter(([k]) => k !== "tokens").map(([k, v]) => [`eval_${k}`, v / Math.max(1, total)]));
}

/** One no-grad pass of `opponent` over a collated SPIN batch: summed log-probs of the real and generated responses. */
export async function opponentLogps(opponent: CausalLM, batch: SpinBatch): Promise<[real: number[], generated: number[]]> {
  const out = await noGrad(() => opponent.logprobs(batch.ids, batch.attentionMask, batch.labels));
  const sums = Array.from(out.sum.toTypedArray() as Float32Array);
  for (const t of Object.values(out)) t.dispose();
  const pairs = sums.length / 2;
  return [sums.slice(0, pairs), sums.slice(pairs)];
}

/** The mean length in tokens of a batch's generated responses (the "generated/length" metric). */
export function meanGeneratedLength(batch: SpinBatch): number {
  return batch.generatedTokens.reduce((a, b) => a + b, 0) / Math.max(1, batch.generatedTokens.length);
}

/** The mean negative log-likelihood per real-response token of `rows` under `model` ({eval_loss}). */
export async function evaluateSft(model: CausalLM, rows: readonly SpinRow[], options: EvaluateOptions): Promise<{ eval_loss: number }> {
  const collator = collatorFor(options);
  const metrics = await meanOverChunks(
    rows,
    options.batchSize ?? SPIN_DEFAULTS.perDeviceTrainBatchSize,
    async (chunk, start) => {
      const batch = collator.collateSft(chunk, chunk.map((_, i) => start + i));
      try {
        return { ...(await sftStep(model, batch, { backward: false, bf16: options.bf16 ?? false })) };
      } finally {
        disposeBatch(batch);
      }
    },
    (m) => m.tokens!,
  );
  return { eval_loss: metrics.eval_loss! };
}

/** The SPIN metrics of `model` against a live `opponent` on `rows` (eval_-prefixed), without training. */
export async function evaluateSpin(
  model: CausalLM,
  opponent: CausalLM,
  rows: readonly SpinRow[],
  objective: Partial<SpinObjective>,
  options: EvaluateOptions,
): Promise<Record<string, number>> {
  const collator = collatorFor(options);
  return meanOverChunks(rows, options.batchSize ?? SPIN_DEFAULTS.perDeviceTrainBatchSize, async (chunk, start) => {
    const batch = collator.collate(chunk, chunk.map((_, i) => start + i));
    const [real, generated] = await opponentLogps(opponent, batch);
    const opponentReal = tensor(Float32Array.from(real));
    const opponentGenerated = tensor(Float32Array.from(generated));
    const identical = tensor(batch.identical, { dtype: "bool" });
    try {
      const metrics = await spinStep(model, { ...batch, opponentReal, opponentGenerated, identical }, objective, { backward: false, bf16: options.bf16 ?? false });
      return { ...metrics, "generated/length": meanGeneratedLength(batch) };
    } finally {
      disposeBatch(batch);
      for (const t of [opponentReal, opponentGenerated, identical]) t.dispose();
    }
  });
}
