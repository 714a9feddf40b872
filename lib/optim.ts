// The optimizer over a CausalLM's parameters (native/optim.cc): RMSprop, as the original
// SPIN runs, or AdamW; PyTorch's update formulas; global grad-norm clipping.
import type { NativeOptimizer, NativeOptimizerOptions } from "./native-types.js";
import type { CausalLM } from "./model.js";
import { native } from "./native.js";
import { Tensor } from "./tensor.js";

/** Optimizer kind and hyper-parameters (RMSprop alpha 0.99, AdamW betas 0.9/0.999, eps 1e-8, weight decay 0 by default). */
export type OptimizerOptions = NativeOptimizerOptions;

export class Optimizer {
  readonly #native: NativeOptimizer;

  /** Makes every parameter of `model` trainable (requiresGrad) and allocates the optimizer state. */
  constructor(model: CausalLM, options: OptimizerOptions) {
    this.#native = native.createOptimizer(model.nativeHandle, options);
  }

  /** Updates done so far. */
  get steps(): number {
    return this.#native.steps;
  }

  /**
   * Clips gradients to `maxGradNorm` (0: no clipping), updates the parameters and frees the
   * gradients. Returns the norm before clipping; `applied` is false (and nothing changed)
   * when it was not finite.
   */
  step(lr: number, maxGradNorm: number): Promise<{ gradNorm: number; applied: boolean }> {
    return this.#native.step(lr, maxGradNorm);
  }

  /** The state tensors ("<param>.square_avg", …), live: dispose the handles when done. */
  state(): Record<string, Tensor> {
    return Object.fromEntries(Object.entries(this.#native.state()).map(([k, h]) => [k, new Tensor(h)]));
  }

  loadState(state: Record<string, Tensor>, steps: number): void {
    this.#native.loadState(Object.fromEntries(Object.entries(state).map(([k, t]) => [k, Tensor.handleOf(t, "optimizer.loadState", k)])), steps);
  }
}
