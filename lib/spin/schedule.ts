// Learning-rate schedules with transformers' formulas (optimization.py): the multiplier for
// optimizer update number `step` (0-based), so the first update of a warmed-up run uses lr 0,
// exactly as the original SPIN runs did.

export const SCHEDULER_TYPES = ["linear", "cosine", "constant", "constant_with_warmup"] as const;
export type SchedulerType = (typeof SCHEDULER_TYPES)[number];

/** Warmup steps as transformers computes them from a ratio: ceil(ratio × total). */
export function warmupSteps(totalSteps: number, warmupRatio: number): number {
  return Math.ceil(totalSteps * warmupRatio);
}

/** The learning-rate multiplier in [0, 1] at update `step` of `total` with `warmup` warmup steps. */
export function lrMultiplier(type: SchedulerType, step: number, total: number, warmup: number): number {
  if (type === "constant") return 1;
  if (step < warmup) return step / Math.max(1, warmup);
  if (type === "constant_with_warmup") return 1;
  const progress = (step - warmup) / Math.max(1, total - warmup);
  if (type === "linear") return Math.max(0, (total - step) / Math.max(1, total - warmup));
  return Math.max(0, 0.5 * (1 + Math.cos(Math.PI * progress)));
}
