// The SPIN objective (docs/method.md, "The method", "Loss" and "Metrics"; native/spin_loss.cc and the
// native train step): step-0 values, the loss types and metrics on hand-built opponent
// log-probs against float64 JS formulas, parameter gradients of the full loss through a
// float64 model against central finite differences of an independent float64 loss, a live
// opponent model against precomputed opponent log-probs, and identical pairs' zero gradient.
//
// Float32 note: the native step computes response log-probs with a float32 log-softmax (as
// docs/method.md ("Log-probabilities") says, and as transformers' `logits.float()` does — for a float64 model too) and
// the pair arithmetic in float32. Where a formula's inputs are differences of ~30-sized sums,
// the expected Δ replays those float32 subtractions exactly with Math.fround; the loss
// formulas themselves are then evaluated in float64.
import path from "node:path";

import { afterAll, beforeAll, describe, expect, test } from "vitest";

import {
  CausalLM,
  SpinCollator,
  type SpinBatch,
  type SpinRow,
  SpinTrainer,
  Tensor,
  type Tokenizer,
  noGrad,
  setNumThreads,
  spinStep,
  tensor,
} from "../lib/index.js";
import { VOCAB, removeRoot, tempRoot, writeFixture } from "./fixtures.js";
import { SPIN_STEP_METRICS, logSigmoidRef, valuesOf } from "./helpers.js";
import { pairOf, tinyTokenizer } from "./tiny-tokenizer.js";

const root = tempRoot("spin-loss");
let dir: string;
let tok: Tokenizer;
let collator: SpinCollator;

beforeAll(async () => {
  // One thread: libgomp's wake-ups dominate these tiny models on two cores, and one thread
  // makes every run below deterministic.
  setNumThreads(1);
  dir = path.join(root, "llama");
  await writeFixture(dir, "llama");
  tok = tinyTokenizer();
  collator = new SpinCollator({ tokenizer: tok });
});
afterAll(() => removeRoot(root));

const f = Math.fround;
const LN2 = Math.log(2);

/** Distinct pairs of different lengths, plus one identical pair (last). */
const ROWS: SpinRow[] = [
  pairOf("hi", "ab", "cd"),
  pairOf("yo", "abc", "x"),
  pairOf("q", "no", "nope"),
  pairOf("hey", "ok", "ok"),
];

let runCounter = 0;
const freshOut = () => path.join(root, `run-${++runCounter}`);

interface StepOptions {
  lossType?: "sigmoid" | "hinge" | "ipo";
  beta?: number;
  labelSmoothing?: number;
  sftWeight?: number;
  scale?: number;
  backward?: boolean;
}

/** One SPIN step (lib's spinStep) on a collated batch with the given opponent log-probs. */
async function stepOn(model: CausalLM, batch: SpinBatch, opponentReal: number[], opponentGenerated: number[], options: StepOptions): Promise<Record<string, number>> {
  const oReal = tensor(Float32Array.from(opponentReal));
  const oGen = tensor(Float32Array.from(opponentGenerated));
  const identical = tensor(batch.identical, { dtype: "bool" });
  try {
    const { scale, backward, ...objective } = options;
    const metrics = await spinStep(model, { ...batch, opponentReal: oReal, opponentGenerated: oGen, identical }, objective, { scale, backward });
    return { ...metrics };
  } finally {
    for (const t of [oReal, oGen, identical]) t.dispose();
  }
}

function disposeBatch(batch: SpinBatch): void {
  for (const t of [batch.ids, batch.attentionMask, batch.labels]) t.dispose();
}

/** The policy's summed response log-probs (float32 values) of a batch's 2B rows. */
async function policySums(model: CausalLM, batch: SpinBatch): Promise<number[]> {
  const out = await noGrad(() => model.logprobs(batch.ids, batch.attentionMask, batch.labels));
  try {
    return valuesOf(out.sum);
  } finally {
    for (const t of Object.values(out)) t.dispose();
  }
}

/**
 * An independent reference of the response log-probs from the model's logits (float64 JS
 * log-softmax): per row, Σ log p(labels[t+1] | ≤ t) and the per-token logit means.
 */
function referenceLogps(model: CausalLM, batch: SpinBatch): { sum: number[]; logitMeanSum: number[]; tokens: number[] } {
  const [n, T] = batch.ids.shape as [number, number];
  const logits = noGrad(() => model.forward(batch.ids, batch.attentionMask));
  const flat = valuesOf(logits);
  logits.dispose();
  const labels = batch.labels.toList() as number[][];
  const sum: number[] = [];
  const logitMeanSum: number[] = [];
  const tokens: number[] = [];
  for (let r = 0; r < n; r++) {
    let s = 0;
    let m = 0;
    let k = 0;
    for (let t = 0; t + 1 < T; t++) {
      const label = labels[r]![t + 1]!;
      if (label === -100) continue;
      const row = flat.slice((r * T + t) * VOCAB, (r * T + t + 1) * VOCAB);
      const max = Math.max(...row);
      const lse = max + Math.log(row.reduce((acc, v) => acc + Math.exp(v - max), 0));
      s += row[label]! - lse;
      m += row.reduce((acc, v) => acc + v, 0) / VOCAB;
      k++;
    }
    sum.push(s);
    logitMeanSum.push(m);
    tokens.push(k);
  }
  return { sum, logitMeanSum, tokens };
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

function expectNear(actual: number | undefined, expected: number, rtol: number, atol: number, what: string): void {
  expect(actual, `${what} is reported`).toBeTypeOf("number");
  const bound = atol + rtol * Math.abs(expected);
  expect(Math.abs(actual! - expected), `${what}: got ${actual}, expected ${expected}`).toBeLessThanOrEqual(bound);
}

// ---- (a) step 0 -----------------------------------------------------------------------------

describe("step 0: the policy equals the opponent", () => {
  test("SpinTrainer.evaluate() with a live opponent: loss ln 2 (sigmoid), 1 (hinge), 1/(2β)² (ipo); rewards 0; strict accuracy 0", async () => {
    using policy = await CausalLM.load(dir);
    using opponent = await CausalLM.load(dir);
    for (const [lossType, expected] of [
      ["sigmoid", LN2],
      ["hinge", 1],
      ["ipo", (1 / (2 * 0.1)) ** 2],
    ] as const) {
      const trainer = new SpinTrainer({ model: policy, tokenizer: tok, opponent, config: { outputDir: freshOut(), precomputeOpponent: false, lossType, beta: 0.1, perDeviceTrainBatchSize: 3 } });
      const m = await trainer.evaluate(ROWS);
      expectNear(m.eval_loss, expected, 1e-6, 1e-7, `${lossType} eval_loss`);
      for (const key of ["eval_rewards/real", "eval_rewards/generated", "eval_rewards/margins"]) {
        expect(Math.abs(m[key]!), `${key} = ${m[key]}`).toBeLessThanOrEqual(1e-6);
      }
      expect(m["eval_rewards/accuracies"]).toBe(0); // strict: equal rewards are not "correct"
      expect(m["eval_rewards/accuracies_distinct"]).toBe(0);
      expect(m["eval_pairs/identical"]).toBeCloseTo(1 / 4, 12);
      for (const key of Object.keys(m)) expect(key.startsWith("eval_"), key).toBe(true);
    }
  });

  test("precomputed opponent: the first train step reports loss ln 2 and zero rewards at lr 0; evaluate() after it too", async () => {
    using model = await CausalLM.load(dir);
    const before = new Map([...model.parameters()].map(([n, p]) => [n, valuesOf(p)]));
    const trainer = new SpinTrainer({ model, tokenizer: tok, config: { outputDir: freshOut(), maxSteps: 1, perDeviceTrainBatchSize: 4, saveStrategy: "no" } });
    const steps: { metrics: Record<string, number>; learningRate: number }[] = [];
    trainer.on("step", (s) => steps.push(s));
    // One update of a warmed-up linear schedule (warmup ceil(0.1 · 1) = 1): lr 0.
    await trainer.train(ROWS);
    expect(steps.map((s) => s.learningRate)).toEqual([0]);
    const metrics = steps[0]!.metrics;
    expectNear(metrics.loss, LN2, 1e-6, 1e-7, "loss");
    for (const key of ["rewards/real", "rewards/generated", "rewards/margins"]) {
      expect(Math.abs(metrics[key]!), `${key} = ${metrics[key]}`).toBeLessThanOrEqual(1e-6);
    }
    expect(metrics["rewards/accuracies"]).toBe(0);
    expect(metrics["rewards/accuracies_distinct"]).toBe(0);
    expect(metrics["pairs/identical"]).toBe(0.25);
    for (const [name, p] of model.parameters()) expect(valuesOf(p), `${name} unchanged by an lr-0 update`).toEqual(before.get(name));
    const m = await trainer.evaluate(ROWS);
    expectNear(m.eval_loss, LN2, 1e-6, 1e-7, "eval_loss");
    for (const key of ["eval_rewards/real", "eval_rewards/generated", "eval_rewards/margins"]) {
      expect(Math.abs(m[key]!), `${key} = ${m[key]}`).toBeLessThanOrEqual(1e-6);
    }
    expect(m["eval_rewards/accuracies"]).toBe(0);
  });
  test("precomputed opponent, learning rate 0 (the policy stays θt): every update reports zero rewards and strict accuracy 0", async () => {
    // The opponent pass batches rows in input order, the updates in the epoch's permutation:
    // the same texts at other batch positions. The spec's step-0 values must not depend on that.
    const words = ["a", "bb", "ccc", "dd dd", "e", "fff ff", "g g g", "hello", "x", "yy", "zzz z", "q"];
    const rows = words.map((w, i) => pairOf(words[(i + 3) % words.length]!, w, words[(i + 5) % words.length]!));
    using model = await CausalLM.load(dir);
    const trainer = new SpinTrainer({ model, tokenizer: tok, config: { outputDir: freshOut(), learningRate: 0, perDeviceTrainBatchSize: 3, saveStrategy: "no" } });
    const steps: { step: number; metrics: Record<string, number> }[] = [];
    trainer.on("step", (s) => steps.push(s));
    await trainer.train(rows);
    expect(steps.length).toBe(4);
    for (const { step, metrics } of steps) {
      expectNear(metrics.loss, LN2, 1e-6, 1e-7, `update ${step} loss`);
      expect(Math.abs(metrics["rewards/margins"]!), `update ${step} rewards/margins`).toBeLessThanOrEqual(1e-6);
    }
    expect(steps.map((s) => s.metrics["rewards/accuracies"]), "rewards/accuracies per update").toEqual([0, 0, 0, 0]);
  });
});

// ---- (b) the formulas ---------------------------------------------------------------------

describe("loss and metrics on hand-built opponent log-probs", () => {
  // Rewards chosen per pair: real reward / β = a, generated reward / β = b (Δ = a − b).
  // Pair 1 prefers the generated response, pair 2 has βΔ > 1 (hinge 0), pair 3 is the
  // identical pair with a tie (strictly not "correct").
  const A = [0.5, -0.3, 2.0, 0.25];
  const B = [-0.5, 0.9, -1.0, 0.25];

  interface Case {
    policy: number[];
    oReal: number[];
    oGen: number[];
    /** Δ per pair as the native float32 arithmetic forms it. */
    delta: number[];
  }

  async function handBuilt(model: CausalLM, batch: SpinBatch): Promise<Case> {
    const policy = await policySums(model, batch);
    const P = ROWS.length;
    const oReal = policy.slice(0, P).map((p, i) => f(p - A[i]!));
    const oGen = policy.slice(P).map((p, i) => f(p - B[i]!));
    const delta = oReal.map((_, i) => f(f(policy[i]! - policy[P + i]!) - f(oReal[i]! - oGen[i]!)));
    return { policy, oReal, oGen, delta };
  }

  test("rewards, accuracies (strict), margins, logps, logits, pairs/identical, accuracies_distinct", async () => {
    using model = await CausalLM.load(dir);
    const batch = collator.collate(ROWS);
    try {
      expect(batch.identical).toEqual([false, false, false, true]);
      const c = await handBuilt(model, batch);
      const P = ROWS.length;
      const pr = c.policy.slice(0, P);
      const pg = c.policy.slice(P);
      expect(pr[3]).toBe(pg[3]); // identical rows score identically
      const beta = 0.5;
      const m = await stepOn(model, batch, c.oReal, c.oGen, { beta, backward: false });

      const realRewards = pr.map((p, i) => beta * (p - c.oReal[i]!));
      const genRewards = pg.map((p, i) => beta * (p - c.oGen[i]!));
      expectNear(m["rewards/real"], mean(realRewards), 1e-6, 1e-9, "rewards/real");
      expectNear(m["rewards/generated"], mean(genRewards), 1e-6, 1e-9, "rewards/generated");
      expectNear(m["rewards/real"], (beta * mean(A)), 1e-5, 1e-6, "rewards/real vs the chosen rewards");
      expectNear(m["rewards/margins"], mean(realRewards.map((r, i) => r - genRewards[i]!)), 1e-6, 1e-9, "rewards/margins");
      // Pairs 0 and 2 are correct, 1 is wrong, 3 is a tie: 2/4 overall, 2/3 of the distinct pairs.
      expect(realRewards.map((r, i) => r > genRewards[i]!)).toEqual([true, false, true, false]);
      expect(m["rewards/accuracies"]).toBe(0.5);
      expect(m["pairs/identical"]).toBe(0.25);
      expectNear(m["rewards/accuracies_distinct"], 2 / 3, 1e-12, 0, "rewards/accuracies_distinct");
      expectNear(m["logps/real"], mean(pr), 1e-12, 1e-12, "logps/real");
      expectNear(m["logps/generated"], mean(pg), 1e-12, 1e-12, "logps/generated");

      // Against the independent float64 reference of the log-probs and logits.
      const ref = referenceLogps(model, batch);
      ref.sum.forEach((s, r) => expectNear(c.policy[r], s, 1e-5, 1e-5, `row ${r} log-prob sum`));
      const perToken = (rows: number[]) => rows.reduce((a, r) => a + ref.logitMeanSum[r]!, 0) / rows.reduce((a, r) => a + ref.tokens[r]!, 0);
      expectNear(m["logits/real"], perToken([0, 1, 2, 3]), 1e-5, 1e-6, "logits/real");
      expectNear(m["logits/generated"], perToken([4, 5, 6, 7]), 1e-5, 1e-6, "logits/generated");
      expect(new Set(Object.keys(m))).toEqual(new Set(SPIN_STEP_METRICS));
    } finally {
      disposeBatch(batch);
    }
  });

  const LOSSES: { name: string; options: StepOptions; loss: (z: number, delta: number, beta: number) => number }[] = [
    { name: "sigmoid −logσ(βΔ), β 0.5", options: { lossType: "sigmoid", beta: 0.5 }, loss: (_z, d, b) => -logSigmoidRef(b * d) },
    { name: "sigmoid −logσ(βΔ), β 0.1 (default)", options: { beta: 0.1 }, loss: (_z, d, b) => -logSigmoidRef(b * d) },
    { name: "hinge relu(1 − βΔ)", options: { lossType: "hinge", beta: 0.5 }, loss: (_z, d, b) => Math.max(0, 1 - b * d) },
    { name: "ipo (Δ − 1/(2β))²", options: { lossType: "ipo", beta: 0.5 }, loss: (_z, d, b) => (d - 1 / (2 * b)) ** 2 },
    {
      name: "label-smoothed sigmoid −(1−ε)logσ(βΔ) − ε logσ(−βΔ), ε 0.1",
      options: { lossType: "sigmoid", beta: 0.5, labelSmoothing: 0.1 },
      loss: (_z, d, b) => -(1 - 0.1) * logSigmoidRef(b * d) - 0.1 * logSigmoidRef(-b * d),
    },
    {
      name: "label-smoothed sigmoid, ε 0.3, β 2",
      options: { lossType: "sigmoid", beta: 2, labelSmoothing: 0.3 },
      loss: (_z, d, b) => -(1 - 0.3) * logSigmoidRef(b * d) - 0.3 * logSigmoidRef(-b * d),
    },
  ];

  test.each(LOSSES)("loss: $name", async ({ options, loss }) => {
    using model = await CausalLM.load(dir);
    const batch = collator.collate(ROWS);
    try {
      const c = await handBuilt(model, batch);
      const beta = options.beta!;
      // The chosen Δ survive the float32 round trip closely (a sanity check of the setup).
      c.delta.forEach((d, i) => expect(Math.abs(d - (A[i]! - B[i]!)), `Δ${i}`).toBeLessThan(1e-4));
      const expected = mean(c.delta.map((d) => loss(beta * d, d, beta)));
      const m = await stepOn(model, batch, c.oReal, c.oGen, { ...options, backward: false });
      expectNear(m.loss, expected, 1e-6, 1e-7, "loss");
      if (options.lossType === "hinge") expect(c.delta.map((d) => beta * d > 1)).toEqual([false, false, true, false]);
    } finally {
      disposeBatch(batch);
    }
  });
});

describe("the SFT term (sftWeight α)", () => {
  test("loss = SPIN loss + α × mean NLL per real token, against the float64 reference; loss/spin and loss/sft reported", async () => {
    using model = await CausalLM.load(dir);
    const batch = collator.collate(ROWS);
    try {
      const P = ROWS.length;
      const ref = referenceLogps(model, batch);
      const policy = await policySums(model, batch);
      const oReal = policy.slice(0, P).map((p) => f(p + 0.3));
      const oGen = policy.slice(P).map((p) => f(p - 0.2));
      const alpha = 0.7;
      const plain = await stepOn(model, batch, oReal, oGen, { beta: 0.5, backward: false });
      const withSft = await stepOn(model, batch, oReal, oGen, { beta: 0.5, sftWeight: alpha, backward: false });
      const nll = -ref.sum.slice(0, P).reduce((a, b) => a + b, 0) / ref.tokens.slice(0, P).reduce((a, b) => a + b, 0);
      expectNear(withSft["loss/sft"], nll, 1e-5, 1e-6, "loss/sft");
      expectNear(withSft["loss/spin"], plain.loss!, 1e-7, 0, "loss/spin");
      expectNear(withSft.loss, plain.loss! + alpha * nll, 1e-5, 1e-6, "loss");
      // Every other metric is the SPIN step's own.
      for (const key of SPIN_STEP_METRICS.filter((k) => k !== "loss")) expect(withSft[key], key).toBe(plain[key]);
      expect(Object.keys(plain)).not.toContain("loss/sft");
    } finally {
      disposeBatch(batch);
    }
  });

  test("α = 0 is the original step bit for bit: metrics and gradients", async () => {
    const run = async (options: StepOptions) => {
      using model = await CausalLM.load(dir);
      const params = model.parameters();
      const batch = collator.collate(ROWS);
      try {
        for (const p of params.values()) p.requireGrad();
        const policy = await policySums(model, batch);
        const P = ROWS.length;
        const metrics = await stepOn(model, batch, policy.slice(0, P).map((p) => f(p + 0.3)), policy.slice(P), { beta: 0.5, scale: 1, ...options });
        const grads = [...params.values()].map((p) => {
          const g = p.grad!;
          const values = valuesOf(g);
          g.dispose();
          return values;
        });
        return { metrics, grads };
      } finally {
        disposeBatch(batch);
        for (const p of params.values()) p.dispose();
      }
    };
    const original = await run({});
    const zero = await run({ sftWeight: 0 });
    expect(zero.metrics).toEqual(original.metrics);
    expect(zero.grads).toEqual(original.grads);
  });

  test("a negative or non-finite α is refused, naming sftWeight", async () => {
    using model = await CausalLM.load(dir);
    expect(() => new SpinTrainer({ model, tokenizer: tok, config: { outputDir: freshOut(), sftWeight: -1 } })).toThrow(/sftWeight must be a finite number ≥ 0/);
    expect(() => new SpinTrainer({ model, tokenizer: tok, config: { outputDir: freshOut(), sftWeight: Number.NaN } })).toThrow(/sftWeight/);
  });
});

// ---- (c) gradients vs finite differences ---------------------------------------------------

describe("parameter gradients of the SPIN loss vs float64 central finite differences", () => {
  const GRAD_ROWS = ROWS.slice(0, 3); // distinct pairs only
  const PARAMS = ["model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight", "model.layers.1.mlp.down_proj.weight", "model.norm.weight", "lm_head.weight"];

  const CASES: { name: string; options: StepOptions; loss: (delta: number, beta: number) => number }[] = [
    { name: "sigmoid", options: { lossType: "sigmoid", beta: 0.5 }, loss: (d, b) => -logSigmoidRef(b * d) },
    { name: "label-smoothed sigmoid (ε 0.2)", options: { lossType: "sigmoid", beta: 0.5, labelSmoothing: 0.2 }, loss: (d, b) => -0.8 * logSigmoidRef(b * d) - 0.2 * logSigmoidRef(-b * d) },
    { name: "ipo", options: { lossType: "ipo", beta: 0.5 }, loss: (d, b) => (d - 1 / (2 * b)) ** 2 },
    { name: "hinge", options: { lossType: "hinge", beta: 0.5 }, loss: (d, b) => Math.max(0, 1 - b * d) },
    { name: "sigmoid + SFT term (α 0.7)", options: { lossType: "sigmoid", beta: 0.5, sftWeight: 0.7 }, loss: (d, b) => -logSigmoidRef(b * d) },
  ];

  test.each(CASES)("$name", async ({ options, loss }) => {
    using model = await CausalLM.load(dir, { dtype: "float64" });
    const params = model.parameters();
    const batch = collator.collate(GRAD_ROWS);
    try {
      for (const p of params.values()) p.requireGrad();
      const P = GRAD_ROWS.length;
      const policy = await policySums(model, batch);
      // Opponent log-probs that put Δ at −0.6, 0.4, 1.1 at θ (inside the hinge's linear part).
      const targetDelta = [-0.6, 0.4, 1.1];
      const oReal = policy.slice(0, P).map((p, i) => f(p - targetDelta[i]!));
      const oGen = policy.slice(P).map((p) => f(p));
      const beta = options.beta!;
      /** The full SPIN loss at the current parameters, in float64 from the reference log-probs. */
      const L = (): number => {
        const { sum: s, tokens } = referenceLogps(model, batch);
        // The SFT term: α × the mean NLL per real-response token.
        const realTokens = tokens.slice(0, P).reduce((a, b) => a + b, 0);
        const sft = -s.slice(0, P).reduce((a, b) => a + b, 0) / realTokens;
        return mean(oReal.map((or, i) => loss(s[i]! - s[P + i]! - (or - oGen[i]!), beta))) + (options.sftWeight ?? 0) * sft;
      };

      for (const p of params.values()) p.zeroGrad();
      const metrics = await stepOn(model, batch, oReal, oGen, { ...options, scale: 1 });
      expectNear(metrics.loss, L(), 1e-5, 1e-6, "the step's loss vs the float64 reference");

      const eps = 1e-5;
      for (const name of PARAMS) {
        const param = params.get(name)!;
        const grad = param.grad;
        expect(grad, `${name} has a gradient`).not.toBeNull();
        const g = valuesOf(grad!);
        grad!.dispose();
        const theta = valuesOf(param);
        const scale = Math.max(...g.map(Math.abs));
        expect(scale, `${name}: gradient is not all zero`).toBeGreaterThan(0);
        // The three largest coordinates and two fixed ones.
        const byMagnitude = g.map((v, i) => [Math.abs(v), i] as const).sort((a, b) => b[0] - a[0]);
        const coords = [...new Set([byMagnitude[0]![1], byMagnitude[1]![1], byMagnitude[2]![1], 0, Math.floor(g.length / 2) + 1])];
        for (const i of coords) {
          const at = (value: number) => {
            const changed = Float64Array.from(theta);
            changed[i] = value;
            const source = tensor(changed, { shape: param.shape });
            noGrad(() => param.copyFrom(source));
            source.dispose();
            return L();
          };
          const fd = (at(theta[i]! + eps) - at(theta[i]! - eps)) / (2 * eps);
          at(theta[i]!);
          // The analytic gradient runs through the float32 log-softmax and a float32 Δ (sums of
          // ~25 carry absolute errors ~2e-6, which move σ(βΔ) by ~5e-7 relative): measured
          // agreement is within 9e-7 relative; allowed 3e-6 of the coordinate, or 1e-6 of
          // the parameter's largest gradient for small coordinates.
          expectNear(g[i], fd, 3e-6, 1e-6 * scale, `${name}[${i}] (analytic ${g[i]}, finite difference ${fd})`);
        }
      }
    } finally {
      disposeBatch(batch);
      for (const p of params.values()) {
        p.zeroGrad();
        p.dispose();
      }
    }
  });
});

// ---- (d) live opponent vs precomputed ------------------------------------------------------

describe("a live opponent model equals precomputed opponent log-probs", () => {
  test("same losses and metrics over several updates, same final parameters", async () => {
    const rows = [...ROWS, pairOf("ab", "abc", "bca"), pairOf("c", "cc", "c"), pairOf("zz", "yes", "no"), pairOf("why", "because", "dunno")];
    const config = {
      maxSteps: 6,
      perDeviceTrainBatchSize: 2,
      gradientAccumulationSteps: 2,
      learningRate: 1e-3,
      warmupRatio: 0,
      lrSchedulerType: "constant" as const,
      beta: 0.5,
      saveStrategy: "no" as const,
    };
    const run = async (live: boolean) => {
      using model = await CausalLM.load(dir);
      using opponent = await CausalLM.load(dir);
      const trainer = live
        ? new SpinTrainer({ model, tokenizer: tok, opponent, config: { ...config, outputDir: freshOut(), precomputeOpponent: false } })
        : new SpinTrainer({ model, tokenizer: tok, config: { ...config, outputDir: freshOut() } });
      const metrics: Record<string, number>[] = [];
      trainer.on("step", (s) => metrics.push(s.metrics));
      await trainer.train(rows);
      const params = new Map([...model.parameters()].map(([n, p]) => [n, valuesOf(p)]));
      return { metrics, params };
    };
    const pre = await run(false);
    const live = await run(true);
    expect(live.metrics.length).toBe(6);
    // Float32 rounding apart: packed forwards put a row beside other rows when the opponent's
    // log-probs are precomputed than during training, and BLAS rounds a product's row
    // differently with the matrix around it; six updates at lr 1e-3 carry that along.
    live.metrics.forEach((m, step) => {
      expect(Object.keys(m).sort()).toEqual(Object.keys(pre.metrics[step]!).sort());
      for (const [key, value] of Object.entries(m)) expectNear(value, pre.metrics[step]![key]!, 1e-4, 1e-5, `update ${step + 1} ${key}`);
    });
    // The updates did move the model, so the comparison below is not vacuous.
    expect(pre.metrics.at(-1)!["rewards/margins"]).toBeGreaterThan(1e-3);
    // The two runs agree to 1% of how far the updates moved each tensor. (An absolute bound
    // depends on the CPU: measured 1e-6 to 1.3e-5 between AVX2 and AVX-512 BLAS kernels, since
    // Adam turns rounding-level gradients into full-size steps.)
    using initial = await CausalLM.load(dir);
    const start = new Map([...initial.parameters()].map(([n, p]) => [n, valuesOf(p)]));
    for (const [name, values] of live.params) {
      const other = pre.params.get(name)!;
      const diff = Math.max(...values.map((v, i) => Math.abs(v - other[i]!)));
      const moved = Math.max(...other.map((v, i) => Math.abs(v - start.get(name)![i]!)));
      expect(moved, `${name} did not move`).toBeGreaterThan(1e-4);
      expect(diff, `${name}: max |diff| ${diff}, moved ${moved}`).toBeLessThanOrEqual(0.01 * moved);
    }
  });
});

// ---- (e) identical pairs -------------------------------------------------------------------

describe("identical pairs", () => {
  const IDENTICAL = [pairOf("hi", "abc", "abc"), pairOf("yo", "hello there", "hello there"), pairOf("q", "x", "x")];
  // Arbitrary opponent values, equal within each pair: Δ ≡ 0 mathematically.
  const OPPONENT = [-3, -40, -7];

  test("metrics: loss ln 2, pairs/identical 1, and the strict accuracy counts every identical pair as wrong", async () => {
    using model = await CausalLM.load(dir);
    const batch = collator.collate(IDENTICAL);
    try {
      expect(batch.identical).toEqual([true, true, true]);
      const policy = await policySums(model, batch);
      const m = await stepOn(model, batch, OPPONENT, OPPONENT, { lossType: "sigmoid", beta: 0.1, backward: false });
      expectNear(m.loss, LN2, 1e-6, 1e-7, "loss");
      expect(m["pairs/identical"]).toBe(1);
      expect(m["rewards/accuracies_distinct"]).toBe(0); // no distinct pair: reported as 0
      // docs/method.md, Metrics: identical pairs are counted as wrong by the strict accuracy, whatever
      // rounding does to the two (mathematically equal) log-probs of the same text.
      const rowDiffs = [0, 1, 2].map((i) => policy[i]! - policy[3 + i]!);
      expect(m["rewards/accuracies"], `real − generated policy log-prob of the identical rows: ${rowDiffs.join(", ")}`).toBe(0);
      expect(Math.abs(m["rewards/margins"]!)).toBeLessThanOrEqual(1e-6);
    } finally {
      disposeBatch(batch);
    }
  });

  test("gradients: a step on only identical pairs (sigmoid) leaves every parameter gradient exactly zero", async () => {
    using model = await CausalLM.load(dir);
    const params = model.parameters();
    const batch = collator.collate(IDENTICAL);
    try {
      for (const p of params.values()) p.requireGrad().zeroGrad();
      // d loss / dθ = −β/2 · (∇πr − ∇πg) / B per pair, and ∇πr = ∇πg for the same text.
      await stepOn(model, batch, OPPONENT, OPPONENT, { lossType: "sigmoid", beta: 0.1 });
      const nonzero: string[] = [];
      for (const [name, p] of params) {
        const g = p.grad;
        const values = g ? valuesOf(g) : [];
        g?.dispose();
        const largest = Math.max(0, ...values.map(Math.abs));
        if (largest !== 0) nonzero.push(`${name} (max |grad| ${largest.toExponential(2)})`);
      }
      expect(nonzero, "parameters with a nonzero gradient").toEqual([]);
    } finally {
      disposeBatch(batch);
      for (const p of params.values()) {
        p.zeroGrad();
        p.dispose();
      }
    }
  });
});
