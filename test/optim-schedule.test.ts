// The optimizer (lib/spin/optim.ts over native/optim.cc) against float64 JS re-implementations of
// torch.optim.RMSprop and torch.optim.AdamW and of torch.nn.utils.clip_grad_norm_, on a
// float64 model's parameters with gradients read back before each step; the non-finite
// guard; and the learning-rate schedules and step arithmetic against transformers' formulas
// (optimization.py, trainer.py) written out by hand.
import path from "node:path";

import { afterAll, beforeAll, describe, expect, test } from "vitest";

import {
  CausalLM,
  Optimizer,
  type OptimizerOptions,
  SpinNativeError,
  lrMultiplier,
  scope,
  setNumThreads,
  stepsPerEpoch,
  tensor,
  totalSteps,
  warmupSteps,
} from "../lib/index.js";
import { removeRoot, tempRoot, writeFixture } from "./fixtures.js";
import { valuesOf } from "./helpers.js";

const root = tempRoot("optim");
let dir: string;

beforeAll(async () => {
  setNumThreads(1);
  dir = path.join(root, "llama");
  await writeFixture(dir, "llama");
});
afterAll(() => removeRoot(root));

type Values = Map<string, number[]>;

function snapshot(model: CausalLM): Values {
  const out: Values = new Map();
  for (const [name, p] of model.parameters()) {
    out.set(name, valuesOf(p));
    p.dispose();
  }
  return out;
}

const IDS = [
  [3, 9, 17, 25, 1, 40, 12],
  [5, 5, 60, 2, 33, 8, 19],
];

/**
 * Accumulates gradients of a simple loss of the model's logits; `k` varies the loss between
 * steps. Returns the gradients as they stand before the optimizer step.
 */
function backward(model: CausalLM, k: number): Values {
  scope(() => {
    const ids = tensor(IDS, { dtype: "int64" });
    const mask = tensor(IDS.map((r) => r.map(() => 1)), { dtype: "int64" });
    const logits = model.forward(ids, mask);
    logits.logSoftmax(-1).select(2, k % 64).mean().mul(3).add(logits.square().mean().mul(0.05 * k)).backward();
  });
  const grads: Values = new Map();
  for (const [name, p] of model.parameters()) {
    const g = p.grad;
    expect(g, `${name} has a gradient`).not.toBeNull();
    grads.set(name, valuesOf(g!));
    g!.dispose();
    p.dispose();
  }
  return grads;
}

function globalNorm(grads: Values): number {
  let sq = 0;
  for (const g of grads.values()) for (const v of g) sq += v * v;
  return Math.sqrt(sq);
}

/** torch.nn.utils.clip_grad_norm_: coef = max / (norm + 1e-6), clamped to 1. */
function clipCoefficient(norm: number, maxNorm: number): number {
  return maxNorm > 0 ? Math.min(1, maxNorm / (norm + 1e-6)) : 1;
}

/** torch.optim.RMSprop (centered False, momentum 0), float64. */
class RMSpropRef {
  readonly squareAvg: Values = new Map();
  constructor(
    readonly lr: number,
    readonly alpha = 0.99,
    readonly eps = 1e-8,
    readonly weightDecay = 0,
  ) {}
  step(params: Values, grads: Values, clip = 1): Values {
    const out: Values = new Map();
    for (const [name, theta] of params) {
      const g0 = grads.get(name)!.map((v) => v * clip);
      const g = this.weightDecay !== 0 ? g0.map((v, i) => v + this.weightDecay * theta[i]!) : g0;
      const avg = this.squareAvg.get(name) ?? theta.map(() => 0);
      const next = avg.map((a, i) => this.alpha * a + (1 - this.alpha) * g[i]! * g[i]!);
      this.squareAvg.set(name, next);
      out.set(
        name,
        theta.map((t, i) => t - (this.lr * g[i]!) / (Math.sqrt(next[i]!) + this.eps)),
      );
    }
    return out;
  }
}

/** torch.optim.AdamW (amsgrad False), float64. */
class AdamWRef {
  readonly m: Values = new Map();
  readonly v: Values = new Map();
  t = 0;
  constructor(
    public lr: number,
    readonly beta1 = 0.9,
    readonly beta2 = 0.999,
    readonly eps = 1e-8,
    readonly weightDecay = 0,
  ) {}
  step(params: Values, grads: Values, clip = 1): Values {
    this.t++;
    const bias1 = 1 - this.beta1 ** this.t;
    const bias2 = 1 - this.beta2 ** this.t;
    const out: Values = new Map();
    for (const [name, theta0] of params) {
      const g = grads.get(name)!.map((x) => x * clip);
      const theta = theta0.map((x) => x * (1 - this.lr * this.weightDecay)); // decoupled decay
      const m = (this.m.get(name) ?? theta.map(() => 0)).map((x, i) => x + (1 - this.beta1) * (g[i]! - x));
      const v = (this.v.get(name) ?? theta.map(() => 0)).map((x, i) => this.beta2 * x + (1 - this.beta2) * g[i]! * g[i]!);
      this.m.set(name, m);
      this.v.set(name, v);
      out.set(
        name,
        theta.map((x, i) => x - (this.lr / bias1) * (m[i]! / (Math.sqrt(v[i]!) / Math.sqrt(bias2) + this.eps))),
      );
    }
    return out;
  }
}

/** Compares parameters after a step: the update θ' − θ to 1e-9 relative of the expected update. */
function expectParams(actual: Values, expected: Values, before: Values, what: string): void {
  let largest = 0;
  for (const [name, exp] of expected) {
    const got = actual.get(name)!;
    const base = before.get(name)!;
    for (let i = 0; i < exp.length; i++) {
      const want = exp[i]! - base[i]!;
      const have = got[i]! - base[i]!;
      largest = Math.max(largest, Math.abs(want));
      const bound = 1e-9 * Math.abs(want) + 1e-14;
      if (!(Math.abs(have - want) <= bound)) expect.fail(`${what}: ${name}[${i}] moved by ${have}, expected ${want}`);
    }
  }
  expect(largest, `${what}: the step moved the parameters`).toBeGreaterThan(0);
}

async function float64Model(): Promise<CausalLM> {
  return CausalLM.load(dir, { dtype: "float64" });
}

describe("RMSprop as torch.optim.RMSprop", () => {
  for (const weightDecay of [0, 0.1]) {
    test(`four steps, alpha 0.99, eps 1e-8, weight decay ${weightDecay}, no clipping`, async () => {
      using model = await float64Model();
      const options: OptimizerOptions = { kind: "rmsprop", alpha: 0.99, eps: 1e-8, weightDecay };
      const optimizer = new Optimizer(model, options);
      const ref = new RMSpropRef(1e-2, 0.99, 1e-8, weightDecay);
      for (let step = 1; step <= 4; step++) {
        const before = snapshot(model);
        const grads = backward(model, step);
        const { gradNorm, applied } = await optimizer.step(1e-2, 0);
        expect(applied).toBe(true);
        expect(Math.abs(gradNorm - globalNorm(grads)) / globalNorm(grads), "gradNorm").toBeLessThan(1e-6);
        expectParams(snapshot(model), ref.step(before, grads), before, `step ${step}`);
        expect(optimizer.steps).toBe(step);
        for (const [name, p] of model.parameters()) expect(p.grad, `${name}: the step frees the gradient`).toBeNull();
      }
      // The optimizer state is square_avg, as torch names it.
      const state = optimizer.state();
      for (const [name, avg] of ref.squareAvg) {
        const got = valuesOf(state[`${name}.square_avg`]!);
        avg.forEach((a, i) => expect(Math.abs(got[i]! - a)).toBeLessThanOrEqual(1e-12 * a + 1e-300));
      }
      for (const t of Object.values(state)) t.dispose();
    });
  }

  test("the default alpha is 0.99 and the default eps 1e-8", async () => {
    using model = await float64Model();
    const optimizer = new Optimizer(model, { kind: "rmsprop" });
    const ref = new RMSpropRef(3e-3);
    for (let step = 1; step <= 2; step++) {
      const before = snapshot(model);
      const grads = backward(model, step + 7);
      await optimizer.step(3e-3, 0);
      expectParams(snapshot(model), ref.step(before, grads), before, `step ${step}`);
    }
  });
});

describe("AdamW as torch.optim.AdamW", () => {
  test("five steps: decoupled weight decay 0.01, betas (0.9, 0.999), bias corrections", async () => {
    using model = await float64Model();
    const optimizer = new Optimizer(model, { kind: "adamw", beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01 });
    const ref = new AdamWRef(5e-3, 0.9, 0.999, 1e-8, 0.01);
    for (let step = 1; step <= 5; step++) {
      const before = snapshot(model);
      const grads = backward(model, step);
      const { applied } = await optimizer.step(5e-3, 0);
      expect(applied).toBe(true);
      expectParams(snapshot(model), ref.step(before, grads), before, `step ${step}`);
    }
    const state = optimizer.state();
    expect(Object.keys(state).filter((k) => k.startsWith("lm_head.weight.")).sort()).toEqual(["lm_head.weight.exp_avg", "lm_head.weight.exp_avg_sq"]);
    for (const t of Object.values(state)) t.dispose();
  });

  test("other betas and eps; a changing learning rate", async () => {
    using model = await float64Model();
    const optimizer = new Optimizer(model, { kind: "adamw", beta1: 0.5, beta2: 0.9, eps: 1e-3, weightDecay: 0.1 });
    const lrs = [1e-2, 5e-3, 2e-2];
    // The reference keeps its moments across steps; its lr is set per step.
    const ref = new AdamWRef(0, 0.5, 0.9, 1e-3, 0.1);
    for (const [k, lr] of lrs.entries()) {
      const before = snapshot(model);
      const grads = backward(model, k + 3);
      await optimizer.step(lr, 0);
      ref.lr = lr;
      expectParams(snapshot(model), ref.step(before, grads), before, `step ${k + 1} (lr ${lr})`);
    }
  });
});

describe("grad-norm clipping as torch.nn.utils.clip_grad_norm_", () => {
  test("norm above max: gradients scaled by max / (norm + 1e-6); the returned norm is the norm before clipping", async () => {
    using model = await float64Model();
    const optimizer = new Optimizer(model, { kind: "rmsprop" });
    const ref = new RMSpropRef(1e-2);
    for (let step = 1; step <= 3; step++) {
      const before = snapshot(model);
      const grads = backward(model, step);
      const norm = globalNorm(grads);
      const maxNorm = norm / 4;
      const clip = clipCoefficient(norm, maxNorm);
      expect(clip).toBeLessThan(0.26);
      const { gradNorm } = await optimizer.step(1e-2, maxNorm);
      expect(Math.abs(gradNorm - norm) / norm, `step ${step} gradNorm ${gradNorm} vs ${norm}`).toBeLessThan(1e-6);
      const expected = ref.step(before, grads, clip);
      // square_avg carries (clip · g)²: it shows the clipping directly.
      const state = optimizer.state();
      for (const [name, avg] of ref.squareAvg) {
        const got = valuesOf(state[`${name}.square_avg`]!);
        avg.forEach((a, i) => {
          if (!(Math.abs(got[i]! - a) <= 1e-6 * a + 1e-300)) expect.fail(`step ${step}: ${name}.square_avg[${i}] ${got[i]} vs ${a}`);
        });
      }
      for (const t of Object.values(state)) t.dispose();
      const after = snapshot(model);
      for (const [name, exp] of expected) {
        const got = after.get(name)!;
        const base = before.get(name)!;
        exp.forEach((e, i) => {
          const want = e - base[i]!;
          if (!(Math.abs(got[i]! - base[i]! - want) <= 1e-6 * Math.abs(want) + 1e-14)) expect.fail(`step ${step}: ${name}[${i}]`);
        });
      }
    }
  });

  test("norm below max: the coefficient is clamped to 1 (gradients unchanged)", async () => {
    using model = await float64Model();
    const optimizer = new Optimizer(model, { kind: "adamw", weightDecay: 0 });
    const ref = new AdamWRef(1e-2);
    const before = snapshot(model);
    const grads = backward(model, 2);
    const norm = globalNorm(grads);
    const { gradNorm } = await optimizer.step(1e-2, norm * 2);
    expect(Math.abs(gradNorm - norm) / norm).toBeLessThan(1e-6);
    expectParams(snapshot(model), ref.step(before, grads, 1), before, "unclipped");
    const state = optimizer.state();
    const exp = ref.m.get("model.norm.weight")!;
    const got = valuesOf(state["model.norm.weight.exp_avg"]!);
    exp.forEach((e, i) => expect(Math.abs(got[i]! - e)).toBeLessThanOrEqual(1e-12 * Math.abs(e) + 1e-300));
    for (const t of Object.values(state)) t.dispose();
  });
});

describe("non-finite gradients", () => {
  for (const [what, value] of [
    ["NaN", Number.NaN],
    ["Infinity", Number.POSITIVE_INFINITY],
  ] as const) {
    test(`a ${what} gradient: applied false, parameters and state unchanged, gradients freed, the update not counted`, async () => {
      using model = await float64Model();
      const optimizer = new Optimizer(model, { kind: "adamw", weightDecay: 0.01 });
      const ref = new AdamWRef(1e-2, 0.9, 0.999, 1e-8, 0.01);
      // One good step first, so there is optimizer state to keep.
      let before = snapshot(model);
      ref.step(before, backward(model, 1));
      await optimizer.step(1e-2, 0);
      const stateBefore = Object.fromEntries(Object.entries(optimizer.state()).map(([k, t]) => [k, valuesOf(t)]));
      before = snapshot(model);

      backward(model, 2);
      const params = model.parameters();
      const bad = params.get("model.layers.1.mlp.up_proj.weight")!;
      scope(() => bad.mul(value).sum().backward()); // adds a non-finite gradient to one parameter
      const result = await optimizer.step(1e-2, 1);
      expect(result.applied).toBe(false);
      expect(Number.isFinite(result.gradNorm), `gradNorm ${result.gradNorm}`).toBe(false);
      expect(snapshot(model)).toEqual(before);
      for (const [name, p] of params) expect(p.grad, `${name}: gradient freed`).toBeNull();
      expect(optimizer.steps).toBe(1);
      const stateAfter = Object.fromEntries(Object.entries(optimizer.state()).map(([k, t]) => [k, valuesOf(t)]));
      expect(stateAfter).toEqual(stateBefore);
      for (const p of params.values()) p.dispose();

      // The next good step continues as if the bad one never happened (bias correction t = 2).
      const grads = backward(model, 3);
      const norm = globalNorm(grads);
      await optimizer.step(1e-2, 0);
      expect(norm).toBeGreaterThan(0);
      expectParams(snapshot(model), ref.step(before, grads), before, "the step after the dropped one");
      expect(optimizer.steps).toBe(2);
    });
  }

  test("a step without any gradient is an error", async () => {
    using model = await float64Model();
    const optimizer = new Optimizer(model, { kind: "rmsprop" });
    await expect(optimizer.step(1e-3, 1)).rejects.toBeInstanceOf(SpinNativeError);
    await expect(optimizer.step(1e-3, 1)).rejects.toThrow(/without gradients/);
  });
});

// ---- schedules --------------------------------------------------------------------------

describe("learning-rate multipliers as transformers' schedules", () => {
  // transformers.optimization, written out: lr_lambda(current_step) with 0-based steps.
  test("linear (get_linear_schedule_with_warmup), total 10, warmup 2", () => {
    const expected = [0, 0.5, 1, 7 / 8, 6 / 8, 5 / 8, 4 / 8, 3 / 8, 2 / 8, 1 / 8, 0, 0];
    expected.forEach((e, step) => expect(lrMultiplier("linear", step, 10, 2), `step ${step}`).toBeCloseTo(e, 15));
  });

  test("linear: the first update of a warmed-up run uses lr 0; no warmup starts at 1", () => {
    expect(lrMultiplier("linear", 0, 100, 10)).toBe(0);
    expect(lrMultiplier("linear", 0, 100, 1)).toBe(0);
    expect(lrMultiplier("linear", 1, 100, 1)).toBe(1);
    expect(lrMultiplier("linear", 0, 100, 0)).toBe(1);
    expect(lrMultiplier("linear", 50, 100, 0)).toBe(0.5);
    expect(lrMultiplier("linear", 99, 100, 0)).toBeCloseTo(0.01, 15);
  });

  test("cosine (get_cosine_schedule_with_warmup, num_cycles 0.5), total 10, warmup 2", () => {
    const cases: [number, number][] = [
      [0, 0],
      [1, 0.5],
      [2, 1],
      [4, 0.5 + Math.SQRT2 / 4], // progress 1/4: ½(1 + cos(π/4))
      [6, 0.5], // progress 1/2
      [8, 0.5 - Math.SQRT2 / 4], // progress 3/4
      [10, 0],
      [12, 0.5 - Math.SQRT2 / 4], // progress 5/4: transformers' formula rises again past the end
    ];
    for (const [step, e] of cases) expect(lrMultiplier("cosine", step, 10, 2), `step ${step}`).toBeCloseTo(e, 14);
  });

  test("constant (get_constant_schedule): 1 from the first update, warmup ignored", () => {
    for (const step of [0, 1, 5, 100]) expect(lrMultiplier("constant", step, 10, 3)).toBe(1);
  });

  test("constant_with_warmup (get_constant_schedule_with_warmup), warmup 4", () => {
    const expected = [0, 0.25, 0.5, 0.75, 1, 1, 1, 1];
    expected.forEach((e, step) => expect(lrMultiplier("constant_with_warmup", step, 6, 4), `step ${step}`).toBe(e));
    expect(lrMultiplier("constant_with_warmup", 0, 6, 0)).toBe(1);
  });

  test("warmupSteps = ceil(ratio × total), in float64 as transformers' math.ceil(total * ratio)", () => {
    expect(warmupSteps(778, 0.1)).toBe(78); // 77.8
    expect(warmupSteps(2334, 0.1)).toBe(234); // 233.4
    expect(warmupSteps(10, 0.1)).toBe(1);
    expect(warmupSteps(20, 0.1)).toBe(2);
    expect(warmupSteps(30, 0.1)).toBe(3);
    // 100 * 0.07 is 7.000000000000001 in float64, so Python's math.ceil(100 * 0.07) is 8 too.
    expect(100 * 0.07).toBeGreaterThan(7);
    expect(warmupSteps(100, 0.07)).toBe(8);
    expect(warmupSteps(7, 0)).toBe(0);
    expect(warmupSteps(7, 1)).toBe(7);
  });
});

describe("step arithmetic", () => {
  test("stepsPerEpoch = ceil(N / (per-device batch × world × accumulation))", () => {
    expect(stepsPerEpoch(49792, 8, 8, 1)).toBe(778); // 49 792 / 64 = 778 exactly
    expect(stepsPerEpoch(49800, 8, 8, 1)).toBe(779); // docs/method.md, Steps per epoch: the partial batch counts
    expect(stepsPerEpoch(50000, 8, 8, 1)).toBe(782);
    expect(stepsPerEpoch(64, 8, 1, 8)).toBe(1);
    expect(stepsPerEpoch(65, 8, 1, 8)).toBe(2);
    expect(stepsPerEpoch(0, 8, 1, 1)).toBe(0);
    expect(() => stepsPerEpoch(10, 0, 1, 1)).toThrow(SpinNativeError);
  });

  test("totalSteps = epochs × stepsPerEpoch; warmup ceil(0.1 × total) of the original configs", () => {
    expect(totalSteps(6, 49792, 8, 8, 1)).toBe(4668);
    expect(warmupSteps(totalSteps(6, 49792, 8, 8, 1), 0.1)).toBe(467);
    expect(totalSteps(2, 49792, 8, 8, 1)).toBe(1556);
  });
});
