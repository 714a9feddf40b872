// Shared test helpers: plain-JS float64 references and tolerant comparisons. Nothing here
// calls the library except to read a tensor's elements out.
import { expect } from "vitest";

import { SpinNativeError, type Tensor } from "../lib/index.js";

/** The elements of a tensor as plain numbers, row-major (int64 via Number, bool as 0/1). */
export function valuesOf(t: Tensor): number[] {
  if (t.dtype === "float16" || t.dtype === "bfloat16") throw new Error("valuesOf: read 16-bit floats as raw bits");
  return Array.from(t.toTypedArray() as ArrayLike<number | bigint>, (v) => Number(v));
}

/** Row-major flattening of nested JS arrays. */
export function flatten(nested: unknown): number[] {
  if (!Array.isArray(nested)) return [Number(nested)];
  return nested.flatMap((item) => flatten(item));
}

/**
 * Elementwise |actual - expected| <= atol + rtol * |expected|, with NaN matching NaN and
 * infinities matching exactly. Reports the first offending index.
 */
export function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, rtol = 1e-12, atol = 0): void {
  expect(actual.length, "length").toBe(expected.length);
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i]!;
    const e = expected[i]!;
    if (Number.isNaN(e)) {
      expect(Number.isNaN(a), `index ${i}: expected NaN, got ${a}`).toBe(true);
      continue;
    }
    if (!Number.isFinite(e)) {
      expect(a, `index ${i}`).toBe(e);
      continue;
    }
    const bound = atol + rtol * Math.abs(e);
    if (!(Math.abs(a - e) <= bound)) {
      expect.fail(`index ${i}: got ${a}, expected ${e} (|diff| ${Math.abs(a - e)} > ${bound})`);
    }
  }
}

/** Calls fn and returns the SpinNativeError it throws (fails the test otherwise). */
export function catchNative(fn: () => unknown): SpinNativeError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(SpinNativeError);
    return error as SpinNativeError;
  }
  return expect.fail("expected a SpinNativeError, nothing was thrown");
}

/** Expects fn to throw a SpinNativeError with this code; returns it. */
export function expectCode(fn: () => unknown, code: SpinNativeError["code"]): SpinNativeError {
  const error = catchNative(fn);
  expect(error.code, error.message).toBe(code);
  return error;
}

/** Deterministic pseudo-random numbers in [-1, 1) (a small LCG), for reproducible inputs. */
export function pseudoRandom(count: number, seed = 1): number[] {
  let state = seed >>> 0;
  const out: number[] = [];
  for (let i = 0; i < count; i++) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    out.push(state / 2 ** 31 - 1);
  }
  return out;
}

/** Reshapes a flat row-major array into nested rows of `cols`. */
export function rows(flat: number[], cols: number): number[][] {
  const out: number[][] = [];
  for (let i = 0; i < flat.length; i += cols) out.push(flat.slice(i, i + cols));
  return out;
}

/** Plain-JS float64 matrix product of row-major a [n, k] and b [k, m]. */
export function matmulRef(a: number[], b: number[], n: number, k: number, m: number): number[] {
  const out = new Array<number>(n * m).fill(0);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < m; j++) {
      let acc = 0;
      for (let p = 0; p < k; p++) acc += a[i * k + p]! * b[p * m + j]!;
      out[i * m + j] = acc;
    }
  }
  return out;
}

/** Softmax of one row, in float64, shifted by the max for stability. */
export function softmaxRef(row: number[]): number[] {
  const max = Math.max(...row);
  const exps = row.map((v) => Math.exp(v - max));
  const total = exps.reduce((a, b) => a + b, 0);
  return exps.map((v) => v / total);
}

/** log(sum(exp(row))) in float64, stably. */
export function logSumExpRef(row: number[]): number {
  const max = Math.max(...row);
  return max + Math.log(row.reduce((acc, v) => acc + Math.exp(v - max), 0));
}

/** log(sigmoid(x)) in float64, stably. */
export function logSigmoidRef(x: number): number {
  return x >= 0 ? -Math.log1p(Math.exp(-x)) : x - Math.log1p(Math.exp(x));
}

export function sigmoidRef(x: number): number {
  return 1 / (1 + Math.exp(-x));
}

/** What `promise` rejected with; fails the test when it resolves. */
export async function rejection<E = unknown>(promise: Promise<unknown>): Promise<E> {
  try {
    await promise;
  } catch (error) {
    return error as E;
  }
  return expect.fail("expected the promise to reject");
}

/** The metrics of one SPIN native step: the original's names plus spin-native's pair counts. */
export const SPIN_STEP_METRICS = [
  "loss",
  "rewards/real",
  "rewards/generated",
  "rewards/accuracies",
  "rewards/margins",
  "logps/real",
  "logps/generated",
  "logits/real",
  "logits/generated",
  "pairs/identical",
  "rewards/accuracies_distinct",
] as const;
