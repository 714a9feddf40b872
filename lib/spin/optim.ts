// The optimizer over a CausalLM's parameters (native/optim.cc): RMSprop, as the original
// SPIN runs, or AdamW; PyTorch's update formulas; global grad-norm clipping.
import { SpinNativeError } from "../core/errors.js";
import type { NativeOptimizer, NativeOptimizerOptions } from "../core/native-types.js";
import type { CausalLM } from "../model/causal-lm.js";
import type { Distributed, ShardingStage } from "../distributed/distributed.js";
import { native } from "../core/native.js";
import { Tensor } from "../core/tensor.js";
import { showValue } from "../core/validate.js";
import { OPTIMIZER_KINDS, TRAINING_DEFAULTS, type TrainingConfig, fieldProblem } from "./config.js";

/** Optimizer kind and hyper-parameters; omitted ones take the training defaults (RMSprop alpha 0.99, AdamW betas 0.9/0.999, eps 1e-8, weight decay 0). */
export type OptimizerOptions = Pick<NativeOptimizerOptions, "kind"> & Partial<Omit<NativeOptimizerOptions, "kind">>;

type Hyperparameter = keyof Omit<NativeOptimizerOptions, "kind">;

/** The training option behind each hyper-parameter: its default and its rule. */
const FIELD_OF: Record<Hyperparameter, keyof TrainingConfig> = {
  alpha: "rmspropAlpha",
  beta1: "adamBeta1",
  beta2: "adamBeta2",
  eps: "adamEpsilon",
  weightDecay: "weightDecay",
};

/**
 * Holds a reference to every parameter of its model and a state as large as the model
 * (RMSprop) or twice (AdamW): dispose it when training ends — the weights it references
 * outlive `CausalLM.dispose()` until then.
 *
 * Given a process group with `sharding` 1–3 (ZeRO), each rank keeps the state of about
 * 1/worldSize of the elements, updates those, and all-gathers the result: `step` is then a
 * collective that every rank calls.
 */
export class Optimizer implements Disposable {
  readonly #native: NativeOptimizer;
  readonly #model: CausalLM;
  readonly #distributed: Distributed | null;
  /** The ZeRO stage this optimizer runs at (0: replicated or single process). */
  readonly sharding: ShardingStage;

  /**
   * Makes every parameter of `model` trainable (requiresGrad) and allocates the optimizer state
   * (this rank's share of it when `distributed.sharding` is 1–3).
   *
   * @throws SpinNativeError `INVALID_ARGUMENT` naming the option: an unknown kind, alpha or a
   *   beta outside [0, 1), eps not > 0, weightDecay not ≥ 0 (non-finite values included).
   */
  constructor(model: CausalLM, options: OptimizerOptions, distributed: Distributed | null = null) {
    if (!OPTIMIZER_KINDS.includes(options.kind)) {
      throw new SpinNativeError(`optimizer: kind must be "rmsprop" or "adamw", got ${showValue(options.kind)}`, "INVALID_ARGUMENT", "optimizer");
    }
    const resolved = { kind: options.kind } as NativeOptimizerOptions;
    for (const [name, field] of Object.entries(FIELD_OF) as [Hyperparameter, keyof TrainingConfig][]) {
      const value = options[name] ?? TRAINING_DEFAULTS[field as keyof typeof TRAINING_DEFAULTS];
      const expected = fieldProblem(field, value);
      if (expected !== null) throw new SpinNativeError(`optimizer: ${name} must be ${expected}, got ${showValue(value)}`, "INVALID_ARGUMENT", "optimizer");
      resolved[name] = value as number;
    }
    this.sharding = distributed?.sharding ?? 0;
    this.#distributed = this.sharding > 0 ? distributed : null;
    this.#native = this.#distributed
      ? native.createOptimizer(model.nativeHandle, resolved, { stage: this.sharding, bucketBytes: this.#distributed.bucketBytes })
      : native.createOptimizer(model.nativeHandle, resolved);
    this.#model = model;
  }

  /** @internal the gradient reducer of a stage-2 run fills this optimizer's gradient shards */
  get nativeHandle(): NativeOptimizer {
    return this.#native;
  }

  /** Updates done so far. */
  get steps(): number {
    return this.#native.steps;
  }

  get disposed(): boolean {
    return this.#native.disposed;
  }

  /**
   * Frees the state and drops the references to the model's parameters (idempotent). A step
   * in flight finishes first; every later call is refused with `DISPOSED`.
   */
  dispose(): void {
    this.#native.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  /**
   * Clips gradients to `maxGradNorm` (0: no clipping), updates the parameters and frees the
   * gradients. Returns the norm before clipping; `applied` is false (and nothing changed)
   * when it was not finite.
   *
   * @throws TypeError when `lr` or `maxGradNorm` is not a number; SpinNativeError
   *   `INVALID_ARGUMENT` when either is negative or not finite, before anything changes (such
   *   an update would leave every weight non-finite).
   */
  async step(lr: number, maxGradNorm: number): Promise<{ gradNorm: number; applied: boolean }> {
    for (const [name, value] of [["lr", lr], ["maxGradNorm", maxGradNorm]] as const) {
      if (typeof value !== "number") throw new TypeError(`optimizer.step: ${name} must be a number, got ${typeof value}`);
      if (!(Number.isFinite(value) && value >= 0)) {
        throw new SpinNativeError(`optimizer.step: ${name} must be a finite number ≥ 0, got ${value}`, "INVALID_ARGUMENT", "optimizer.step");
      }
    }
    const step = () => this.#native.step(lr, maxGradNorm);
    const distributed = this.#distributed;
    return this.#model.usage.update("Optimizer.step", distributed ? () => distributed.serialize(step) : step);
  }

  /**
   * ZeRO stage 3: frees the decoder layers' weights, keeping this rank's shard of each; the
   * model then gathers a layer around each use (forwards with gradients need gradient
   * checkpointing) and refuses whole-model calls (parameters, save) until
   * {@link gatherParameters}. The trainers do this for the length of a run.
   */
  shardParameters(): void {
    this.#native.shardParameters();
  }

  /** ZeRO stage 3: makes every weight whole again — a collective every rank calls. */
  gatherParameters(): Promise<void> {
    const distributed = this.#distributed;
    if (!distributed) return this.#native.gatherParameters();
    return distributed.serialize(() => this.#native.gatherParameters());
  }

  /**
   * ZeRO stage 3, a collective: on rank `root`, CPU copies of every trained weight, whole,
   * gathered one layer at a time (null on the other ranks); the layers stay sharded. What a
   * checkpoint saves, without any rank holding more than one extra layer on its device.
   */
  async gatheredWeights(root = 0): Promise<Record<string, Tensor> | null> {
    const distributed = this.#distributed;
    const gather = () => this.#native.gatheredWeights(root);
    const handles = await (distributed ? distributed.serialize(gather) : gather());
    return handles === null ? null : Object.fromEntries(Object.entries(handles).map(([name, h]) => [name, new Tensor(h)]));
  }

  /** Frees the gradients (and, sharded, this rank's gradient shards) without an update: a skipped update. */
  discardGradients(): void {
    this.#native.discardGradients();
  }

  /**
   * The state tensors ("<param>.square_avg", …), live: dispose the handles when done. Sharded,
   * a parameter's tensors hold this rank's elements, flat, unless it owns the whole parameter.
   */
  state(): Record<string, Tensor> {
    return Object.fromEntries(Object.entries(this.#native.state()).map(([k, h]) => [k, new Tensor(h)]));
  }

  /**
   * Restores `state()`'s tensors. A sharded optimizer also takes whole, parameter-shaped ones
   * (a replicated run's state) and keeps its elements.
   */
  loadState(state: Record<string, Tensor>, steps: number): void {
    this.#native.loadState(Object.fromEntries(Object.entries(state).map(([k, t]) => [k, Tensor.handleOf(t, "optimizer.loadState", k)])), steps);
  }
}
