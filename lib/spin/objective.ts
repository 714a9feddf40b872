// The SPIN objective on log-prob tensors, shaped as TRL's dpo_loss: `spinLoss` is the loss
// (with autograd, so it trains whatever produced the policy's log-probs), `spinMetrics` the
// original's reward metrics, separately. docs/method.md, "Loss" and "Metrics".
import { native } from "../core/native.js";
import { Tensor } from "../core/tensor.js";
import { SPIN_DEFAULTS, type SpinLossType, checkField } from "./config.js";

/** The four per-pair log-prob tensors of a batch of B pairs, each [B]. */
export interface PairLogprobs {
  /** log πθ(real): the policy's, with autograd. */
  policyReal: Tensor;
  policyGenerated: Tensor;
  /** log πθt(real): the opponent's (no gradient flows into them). */
  opponentReal: Tensor;
  opponentGenerated: Tensor;
}

export interface SpinLossOptions {
  /** β (default 0.1). */
  beta?: number;
  /** "sigmoid" (the original, default), "hinge" or "ipo". */
  lossType?: SpinLossType;
  /** ε of the conservative sigmoid loss (default 0). */
  labelSmoothing?: number;
  /** [B] bool: pairs whose generated response equals the real one; their Δ is 0, so no gradient. */
  identical?: Tensor | null;
}

/** The original's reward metrics of a batch (its names, as metrics.jsonl writes them). */
export interface SpinMetrics {
  /** Mean β·(log πθ(real) − log πθt(real)). */
  "rewards/real": number;
  "rewards/generated": number;
  /** Share of pairs whose real reward beats the generated one (ties and identical pairs count as wrong). */
  "rewards/accuracies": number;
  "rewards/margins": number;
  /** Mean log πθ(real). */
  "logps/real": number;
  "logps/generated": number;
  /** Share of identical pairs, when `identical` was given. */
  "pairs/identical"?: number;
  /** Accuracy over the pairs that are not identical, when `identical` was given. */
  "rewards/accuracies_distinct"?: number;
}

function handles(logps: PairLogprobs, identical: Tensor | null | undefined, call: string) {
  return [
    Tensor.handleOf(logps.policyReal, call, "policyReal"),
    Tensor.handleOf(logps.policyGenerated, call, "policyGenerated"),
    Tensor.handleOf(logps.opponentReal, call, "opponentReal"),
    Tensor.handleOf(logps.opponentGenerated, call, "opponentGenerated"),
    identical ? Tensor.handleOf(identical, call, "identical") : null,
  ] as const;
}

/**
 * The SPIN loss, the mean over pairs of ℓ(Δ) with
 * Δ = [log πθ(real) − log πθt(real)] − [log πθ(generated) − log πθt(generated)]:
 * sigmoid −logσ(βΔ) (with ε: −(1−ε)logσ(βΔ) − ε·logσ(−βΔ)), hinge relu(1 − βΔ), ipo
 * (Δ − 1/(2β))². Pass summed log-probs (the original) or per-token means (TRL ≥ 0.7.11's IPO).
 * The result is a scalar Tensor with autograd: dispose it.
 *
 * @throws TypeError when one of the four is not a Tensor; SpinNativeError INVALID_ARGUMENT
 *   naming the option or tensor: β not > 0, an unknown loss type, ε outside [0, 0.5), a tensor
 *   not 1-D floating; SHAPE_MISMATCH when the four (and `identical`) do not hold one value per pair.
 */
export function spinLoss(logps: PairLogprobs, options: SpinLossOptions = {}): Tensor {
  const resolved = {
    beta: options.beta ?? SPIN_DEFAULTS.beta,
    lossType: options.lossType ?? SPIN_DEFAULTS.lossType,
    labelSmoothing: options.labelSmoothing ?? SPIN_DEFAULTS.labelSmoothing,
  };
  for (const [field, value] of Object.entries(resolved)) checkField(field as keyof typeof resolved, value, "spinLoss");
  return new Tensor(native.spinLoss(...handles(logps, options.identical, "spinLoss"), resolved));
}

/**
 * The reward metrics of a batch's log-probs (no gradient is recorded).
 *
 * @throws SpinNativeError as {@link spinLoss} for β and the tensors.
 */
export function spinMetrics(logps: PairLogprobs, options: { beta?: number; identical?: Tensor | null } = {}): SpinMetrics {
  const beta = options.beta ?? SPIN_DEFAULTS.beta;
  checkField("beta", beta, "spinMetrics");
  return native.spinMetrics(...handles(logps, options.identical, "spinMetrics"), { beta }) as unknown as SpinMetrics;
}
