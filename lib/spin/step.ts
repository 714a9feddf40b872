// One micro-batch of training in one native call, off the event loop: the forward pass on the
// collated rows, the objective, and backward scaled by 1 / accumulation steps. The trainers,
// the tests and the benchmarks all step through these two functions.
import { tensor } from "../core/create.js";
import { native } from "../core/native.js";
import { Tensor } from "../core/tensor.js";
import type { CausalLM } from "../model/causal-lm.js";
import { SPIN_DEFAULTS, type SpinObjective, checkField } from "./config.js";
import type { SpinMetrics } from "./objective.js";

/** Collated rows (SpinCollator): token ids, attention mask, labels (-100 outside responses). */
export interface StepBatch {
  ids: Tensor;
  attentionMask: Tensor;
  labels: Tensor;
}

/** A SPIN batch: rows [real; generated] and the opponent's log-probs of each pair. */
export interface SpinStepBatch extends StepBatch {
  /** [B] the opponent's summed log-probs of the real responses. */
  opponentReal: Tensor;
  opponentGenerated: Tensor;
  /** [B] bool (a Tensor, or SpinBatch.identical as it comes): pairs whose generated response equals the real one. */
  identical?: Tensor | readonly boolean[] | null;
}

export interface StepOptions {
  /** Multiplies the loss before backward: 1 / gradient-accumulation steps (default 1). */
  scale?: number;
  /** false: forward and metrics only, no gradient recorded (evaluation). Default true. */
  backward?: boolean;
  gradientCheckpointing?: boolean;
  /** Forward under bf16 autocast, float32 weights. */
  bf16?: boolean;
  /**
   * Run the rows without padding, packed end to end; in a SPIN step each pair's prompt (and
   * any leading tokens its two responses share) runs once for both responses, in forward and
   * backward (default true). false: the padded [2B, T] batch as collated. Log-probs, loss and
   * gradients agree within float32 rounding.
   */
  packing?: boolean;
}

/** A SPIN step's metrics: the loss, the reward metrics, and the original's logits metrics. */
export interface SpinStepMetrics extends SpinMetrics {
  loss: number;
  /** Mean logit per real-response token. */
  "logits/real": number;
  "logits/generated": number;
  /** The two terms, when sftWeight > 0. */
  "loss/spin"?: number;
  "loss/sft"?: number;
}

export interface SftStepMetrics {
  /** Mean negative log-likelihood per response token. */
  loss: number;
  /** Response tokens in the batch. */
  tokens: number;
}

function nativeBatch(batch: StepBatch, call: string) {
  return {
    ids: Tensor.handleOf(batch.ids, call, "ids"),
    attentionMask: Tensor.handleOf(batch.attentionMask, call, "attentionMask"),
    labels: Tensor.handleOf(batch.labels, call, "labels"),
  };
}

function nativeOptions(options: StepOptions) {
  return {
    scale: options.scale ?? 1,
    backward: options.backward ?? true,
    checkpoint: options.gradientCheckpointing ?? false,
    autocastBf16: options.bf16 ?? false,
    packing: options.packing ?? true,
  };
}

/** Runs `work` as an update of the model's weights (gradients) or, without backward, as a read. */
function guarded<T>(model: CausalLM, call: string, backward: boolean, work: () => Promise<T>): Promise<T> {
  return backward ? model.usage.update(call, work) : model.usage.read(call, work);
}

/**
 * One SPIN micro-step of `model` (the policy θ) on a batch: Σ log πθ of each response, the SPIN
 * loss against the opponent's log-probs (plus α × the SFT term), and — unless `backward` is
 * false — backward, accumulating into the parameters' gradients. A non-finite loss is
 * returned, not back-propagated. Objective fields omitted take the training defaults.
 */
export async function spinStep(model: CausalLM, batch: SpinStepBatch, objective: Partial<SpinObjective> = {}, options: StepOptions = {}): Promise<SpinStepMetrics> {
  const resolved: SpinObjective = {
    beta: objective.beta ?? SPIN_DEFAULTS.beta,
    lossType: objective.lossType ?? SPIN_DEFAULTS.lossType,
    labelSmoothing: objective.labelSmoothing ?? SPIN_DEFAULTS.labelSmoothing,
    sftWeight: objective.sftWeight ?? SPIN_DEFAULTS.sftWeight,
    averageLogProb: objective.averageLogProb ?? SPIN_DEFAULTS.averageLogProb,
  };
  for (const [field, value] of Object.entries(resolved)) checkField(field as keyof SpinObjective, value, "spinStep");
  const step = nativeOptions(options);
  const flags = Array.isArray(batch.identical) ? tensor(batch.identical as boolean[], { dtype: "bool" }) : null;
  try {
    const identical = flags ?? (batch.identical as Tensor | null | undefined);
    const handles = {
      ...nativeBatch(batch, "spinStep"),
      opponentReal: Tensor.handleOf(batch.opponentReal, "spinStep", "opponentReal"),
      opponentGenerated: Tensor.handleOf(batch.opponentGenerated, "spinStep", "opponentGenerated"),
      identical: identical ? Tensor.handleOf(identical, "spinStep", "identical") : null,
    };
    const metrics = await guarded(model, "spinStep", step.backward, () => native.spinTrainStep(model.nativeHandle, handles, { ...resolved, ...step }));
    return metrics as unknown as SpinStepMetrics;
  } finally {
    flags?.dispose();
  }
}

/** One supervised micro-step: mean NLL per response token, and backward unless `backward` is false. */
export async function sftStep(model: CausalLM, batch: StepBatch, options: StepOptions = {}): Promise<SftStepMetrics> {
  const step = nativeOptions(options);
  const metrics = await guarded(model, "sftStep", step.backward, () => native.sftTrainStep(model.nativeHandle, nativeBatch(batch, "sftStep"), step));
  return metrics as unknown as SftStepMetrics;
}
