// The SPIN objective as functions of log-probs (lib/spin/objective.ts, native/spin_loss.cc):
// spinLoss on float64 tensors against float64 JS formulas for every loss type, its gradient
// through autograd against central finite differences of the JS formula, identical pairs'
// zero gradient, spinMetrics against hand-computed values, bad input named; and spinStep's
// length-averaged form (TRL ≥ 0.7.11's IPO) against the loss recomputed from the model's own
// summed log-probs and token counts.
import path from "node:path";

import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { CausalLM, SpinCollator, type SpinLossType, type Tensor, noGrad, setNumThreads, spinLoss, spinMetrics, spinStep, tensor } from "../lib/index.js";
import { removeRoot, tempRoot, writeFixture } from "./fixtures.js";
import { logSigmoidRef, valuesOf } from "./helpers.js";
import { pairOf, tinyTokenizer } from "./tiny-tokenizer.js";

const root = tempRoot("spin-objective");
afterAll(() => removeRoot(root));
beforeAll(() => setNumThreads(1));

// Four pairs: Δ of both signs, one near zero, and the last identical (Δ pinned to 0 when marked).
const POLICY_REAL = [-10.5, -22.25, -7.0, -15.0];
const POLICY_GENERATED = [-12.0, -20.0, -7.1, -15.0];
const OPPONENT_REAL = [-11.0, -21.0, -7.05, -14.0];
const OPPONENT_GENERATED = [-11.5, -21.5, -7.0, -14.0];

interface Case {
  lossType: SpinLossType;
  beta: number;
  labelSmoothing?: number;
}

const CASES: Case[] = [
  { lossType: "sigmoid", beta: 0.1 },
  { lossType: "sigmoid", beta: 2.0, labelSmoothing: 0.2 },
  { lossType: "hinge", beta: 0.7 },
  { lossType: "ipo", beta: 0.1 },
  { lossType: "ipo", beta: 5.0 },
];

/** The per-pair loss of Δ, in float64 (docs/method.md, "Loss"). */
function pairLoss(delta: number, c: Case): number {
  const eps = c.labelSmoothing ?? 0;
  if (c.lossType === "sigmoid") return -(1 - eps) * logSigmoidRef(c.beta * delta) - eps * logSigmoidRef(-c.beta * delta);
  if (c.lossType === "hinge") return Math.max(0, 1 - c.beta * delta);
  return (delta - 1 / (2 * c.beta)) ** 2;
}

function referenceLoss(real: number[], generated: number[], c: Case, identical: boolean[] = []): number {
  const deltas = real.map((r, i) => (identical[i] ? 0 : r - generated[i]! - (OPPONENT_REAL[i]! - OPPONENT_GENERATED[i]!)));
  return deltas.reduce((sum, d) => sum + pairLoss(d, c), 0) / deltas.length;
}

function leaves(real = POLICY_REAL, generated = POLICY_GENERATED) {
  return {
    policyReal: tensor(real, { dtype: "float64", requiresGrad: true }),
    policyGenerated: tensor(generated, { dtype: "float64", requiresGrad: true }),
    opponentReal: tensor(OPPONENT_REAL, { dtype: "float64" }),
    opponentGenerated: tensor(OPPONENT_GENERATED, { dtype: "float64" }),
  };
}

function disposeAll(...tensors: (Tensor | null | undefined)[]): void {
  for (const t of tensors) t?.dispose();
}

describe("spinLoss on tensors", () => {
  test.each(CASES)("$lossType β=$beta ε=$labelSmoothing: the value equals the float64 formula", (c) => {
    const logps = leaves();
    const loss = spinLoss(logps, c);
    expect(loss.shape).toEqual([]);
    expect(Number(loss.item())).toBeCloseTo(referenceLoss(POLICY_REAL, POLICY_GENERATED, c), 12);
    disposeAll(loss, ...Object.values(logps));
  });

  test.each(CASES)("$lossType β=$beta: gradients equal central finite differences of the formula", (c) => {
    const logps = leaves();
    const loss = spinLoss(logps, c);
    loss.backward();
    const h = 1e-6;
    for (const side of ["policyReal", "policyGenerated"] as const) {
      const grad = logps[side].grad!;
      const values = valuesOf(grad);
      grad.dispose();
      for (let i = 0; i < POLICY_REAL.length; i++) {
        const shifted = (d: number) => {
          const real = [...POLICY_REAL];
          const generated = [...POLICY_GENERATED];
          (side === "policyReal" ? real : generated)[i]! += d;
          return referenceLoss(real, generated, c);
        };
        const numeric = (shifted(h) - shifted(-h)) / (2 * h);
        expect(Math.abs(values[i]! - numeric), `${side}[${i}]: ${values[i]} vs ${numeric}`).toBeLessThan(1e-7);
      }
    }
    disposeAll(loss, ...Object.values(logps));
  });

  test("an identical pair's Δ is 0 and its gradient exactly zero", () => {
    const logps = leaves();
    const identical = tensor([false, false, false, true], { dtype: "bool" });
    const c: Case = { lossType: "sigmoid", beta: 0.1 };
    const loss = spinLoss(logps, { ...c, identical });
    expect(Number(loss.item())).toBeCloseTo(referenceLoss(POLICY_REAL, POLICY_GENERATED, c, [false, false, false, true]), 12);
    loss.backward();
    const grad = logps.policyReal.grad!;
    const values = valuesOf(grad);
    expect(values[3]).toBe(0);
    expect(values[0]).not.toBe(0);
    disposeAll(loss, grad, identical, ...Object.values(logps));
  });

  test("defaults: β 0.1 and the sigmoid loss", () => {
    const logps = leaves();
    const loss = spinLoss(logps);
    expect(Number(loss.item())).toBeCloseTo(referenceLoss(POLICY_REAL, POLICY_GENERATED, { lossType: "sigmoid", beta: 0.1 }), 12);
    disposeAll(loss, ...Object.values(logps));
  });

  test("bad input is an error naming the option or the tensor", () => {
    const logps = leaves();
    expect(() => spinLoss(logps, { beta: 0 })).toThrow(/spinLoss: beta must be a finite number > 0, got 0/);
    expect(() => spinLoss(logps, { lossType: "kto" as SpinLossType })).toThrow(/lossType must be one of sigmoid, hinge, ipo/);
    expect(() => spinLoss(logps, { labelSmoothing: 0.5 })).toThrow(/labelSmoothing must be a finite number in \[0, 0.5\)/);
    const short = tensor([-1, -2], { dtype: "float64" });
    expect(() => spinLoss({ ...logps, opponentGenerated: short })).toThrow(/opponentGenerated has 2 values, policyReal 4/);
    const matrix = tensor([[-1, -2, -3, -4]], { dtype: "float64" });
    expect(() => spinLoss({ ...logps, opponentReal: matrix })).toThrow(/opponentReal must be a 1-D floating tensor/);
    const identical = tensor([true], { dtype: "bool" });
    expect(() => spinLoss(logps, { identical })).toThrow(/identical must hold one value per pair \(4\)/);
    expect(() => spinLoss({ ...logps, policyReal: [1, 2] as unknown as Tensor })).toThrow(TypeError);
    disposeAll(short, matrix, identical, ...Object.values(logps));
  });
});

describe("spinMetrics", () => {
  test("rewards, margins, accuracies and log-probs equal hand-computed values", () => {
    const logps = leaves();
    const beta = 0.5;
    const identical = tensor([false, false, false, true], { dtype: "bool" });
    const m = spinMetrics(logps, { beta, identical });
    const real = POLICY_REAL.map((p, i) => beta * (p - OPPONENT_REAL[i]!));
    const generated = POLICY_GENERATED.map((p, i) => beta * (p - OPPONENT_GENERATED[i]!));
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    expect(m["rewards/real"]).toBeCloseTo(mean(real), 12);
    expect(m["rewards/generated"]).toBeCloseTo(mean(generated), 12);
    expect(m["rewards/margins"]).toBeCloseTo(mean(real.map((r, i) => r - generated[i]!)), 12);
    expect(m["logps/real"]).toBeCloseTo(mean(POLICY_REAL), 12);
    expect(m["logps/generated"]).toBeCloseTo(mean(POLICY_GENERATED), 12);
    // Margins: 0.5·(0.5 − (−1.5)) > 0, 0.5·(−1.25 − 1.5) < 0, 0.5·(0.05 − (−0.1)) > 0, identical.
    expect(m["rewards/accuracies"]).toBeCloseTo(2 / 4, 12);
    expect(m["rewards/accuracies_distinct"]).toBeCloseTo(2 / 3, 12);
    expect(m["pairs/identical"]).toBeCloseTo(1 / 4, 12);
    const plain = spinMetrics(logps, { beta });
    expect(plain["pairs/identical"]).toBeUndefined();
    expect(plain["rewards/accuracies"]).toBeCloseTo(2 / 4, 12);
    expect(() => spinMetrics(logps, { beta: -1 })).toThrow(/spinMetrics: beta must be/);
    disposeAll(identical, ...Object.values(logps));
  });
});

describe("spinStep with averageLogProb (TRL ≥ 0.7.11's IPO)", () => {
  test("the loss is IPO on per-token means of the model's own summed log-probs; the summed form differs", async () => {
    const dir = path.join(root, "llama");
    await writeFixture(dir, "llama");
    using model = await CausalLM.load(dir);
    const collator = new SpinCollator({ tokenizer: tinyTokenizer() });
    const batch = collator.collate([pairOf("hi", "abcd", "c"), pairOf("yo", "ab", "xyzzy"), pairOf("q", "no", "nope")]);
    const out = await noGrad(() => model.logprobs(batch.ids, batch.attentionMask, batch.labels));
    const sums = valuesOf(out.sum);
    const tokens = valuesOf(out.tokens);
    disposeAll(...Object.values(out));
    const pairs = 3;
    // An opponent a little off the policy on each side, so Δ ≠ 0.
    const opponentRealValues = sums.slice(0, pairs).map((s, i) => s + 0.4 * (i + 1));
    const opponentGeneratedValues = sums.slice(pairs).map((s, i) => s - 0.3 * (i + 1));
    const opponentReal = tensor(Float32Array.from(opponentRealValues));
    const opponentGenerated = tensor(Float32Array.from(opponentGeneratedValues));
    const beta = 0.1;
    const stepBatch = { ids: batch.ids, attentionMask: batch.attentionMask, labels: batch.labels, opponentReal, opponentGenerated };
    const averaged = await spinStep(model, stepBatch, { lossType: "ipo", beta, averageLogProb: true }, { backward: false });
    const summed = await spinStep(model, stepBatch, { lossType: "ipo", beta }, { backward: false });
    const ipo = (deltas: number[]) => deltas.reduce((a, d) => a + (d - 1 / (2 * beta)) ** 2, 0) / deltas.length;
    const averagedDeltas = [0, 1, 2].map(
      (i) =>
        sums[i]! / tokens[i]! -
        sums[pairs + i]! / tokens[pairs + i]! -
        (opponentRealValues[i]! / tokens[i]! - opponentGeneratedValues[i]! / tokens[pairs + i]!),
    );
    const summedDeltas = [0, 1, 2].map((i) => sums[i]! - sums[pairs + i]! - (opponentRealValues[i]! - opponentGeneratedValues[i]!));
    expect(averaged.loss).toBeCloseTo(ipo(averagedDeltas), 4);
    expect(summed.loss).toBeCloseTo(ipo(summedDeltas), 3);
    expect(Math.abs(averaged.loss - summed.loss)).toBeGreaterThan(1);
    // The reported log-probs are the ones the loss used.
    expect(averaged["logps/real"]).toBeCloseTo((sums[0]! / tokens[0]! + sums[1]! / tokens[1]! + sums[2]! / tokens[2]!) / 3, 5);
    disposeAll(opponentReal, opponentGenerated, batch.ids, batch.attentionMask, batch.labels);
  });
});
