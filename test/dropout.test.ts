// Tensor.dropout (native/dropout.cc), the kernel behind LoRA's adapter dropout: the kept share
// against the binomial bound, kept values equal x / (1 − p) rounded as float32 or float64 would
// round them, masks seeded by manualSeed and fresh per call, adjacent elements and successive
// calls uncorrelated, the gradient exactly the forward's mask (recomputed, not stored), the
// 16-bit path, and bad arguments named.
import { describe, expect, test } from "vitest";

import { manualSeed, scope, tensor } from "../lib/index.js";
import { valuesOf } from "./helpers.js";

const N = 1 << 20;
const input = (n: number, dtype: "float32" | "float64" | "bfloat16" = "float32") =>
  tensor(Float32Array.from({ length: n }, (_, i) => 1 + (i % 97) / 64), { dtype });

/** Which elements the mask kept (inputs are all nonzero, so a zero output is a dropped element). */
const keptOf = (values: number[]) => values.map((v) => v !== 0);

describe("Tensor.dropout", () => {
  test.each([0.05, 0.5, 0.9])("p = %s: the kept share is within 5σ of 1 − p, kept values are exactly x · fl(1/(1 − p))", (p) =>
    scope(() => {
      const x = input(N);
      manualSeed(11);
      const out = valuesOf(x.dropout(p));
      const xs = valuesOf(x);
      const scale = Math.fround(1 / (1 - p));
      const kept = keptOf(out);
      const share = kept.filter(Boolean).length / N;
      expect(Math.abs(share - (1 - p))).toBeLessThan(5 * Math.sqrt((p * (1 - p)) / N));
      for (let i = 0; i < N; i += 997) expect(out[i]).toBe(kept[i] ? Math.fround(xs[i]! * scale) : 0);
    }));

  test("float64 scales in float64", () =>
    scope(() => {
      const x = input(4096, "float64");
      const out = valuesOf(x.dropout(0.3));
      const xs = valuesOf(x);
      expect(x.dropout(0.3).dtype).toBe("float64");
      out.forEach((v, i) => expect(v).toBe(v === 0 ? 0 : xs[i]! * (1 / (1 - 0.3))));
    }));

  test("manualSeed fixes the mask; successive calls draw fresh masks, uncorrelated with each other and along the tensor", () =>
    scope(() => {
      const x = input(N);
      const p = 0.5;
      manualSeed(3);
      const first = keptOf(valuesOf(x.dropout(p)));
      const second = keptOf(valuesOf(x.dropout(p)));
      manualSeed(3);
      expect(keptOf(valuesOf(x.dropout(p)))).toEqual(first);
      // P(both kept) = 1/4 for independent masks; 5σ of a binomial share over N pairs.
      const bound = 5 * Math.sqrt((0.25 * 0.75) / N);
      const acrossCalls = first.filter((k, i) => k && second[i]).length / N;
      const adjacent = first.filter((k, i) => k && first[(i + 1) % N]).length / N;
      const strided = first.filter((k, i) => k && first[(i + 1024) % N]).length / N; // the kernel's block size
      for (const share of [acrossCalls, adjacent, strided]) expect(Math.abs(share - 0.25)).toBeLessThan(bound);
    }));

  test("every position is dropped at the same rate (no index is favoured)", () =>
    scope(() => {
      const x = input(64);
      const draws = 4000;
      const keptCount = new Array<number>(64).fill(0);
      manualSeed(5);
      for (let d = 0; d < draws; d++) keptOf(valuesOf(x.dropout(0.5))).forEach((k, i) => (keptCount[i]! += k ? 1 : 0));
      // χ² over 64 positions (63 degrees of freedom): far below its 0.9999 quantile, about 117.
      const expected = draws / 2;
      const chi2 = keptCount.reduce((sum, c) => sum + ((c - expected) ** 2 / expected) * 2, 0);
      expect(chi2).toBeLessThan(117);
    }));

  test("the gradient is the forward's mask times 1/(1 − p), in the input's dtype", () =>
    scope(() => {
      for (const dtype of ["float32", "float64"] as const) {
        const x = input(50_000, dtype);
        x.requiresGrad = true;
        const weights = tensor(Float64Array.from({ length: 50_000 }, (_, i) => Math.cos(i)), { dtype });
        const out = x.dropout(0.25);
        out.mul(weights).sum().backward();
        const kept = keptOf(valuesOf(out));
        const w = valuesOf(weights);
        const scale = dtype === "float32" ? Math.fround(1 / 0.75) : 1 / 0.75;
        const grad = x.grad!;
        expect(grad.dtype).toBe(dtype);
        // A dropped element's gradient is g · 0 (−0 for a negative g), as the kernel computes it.
        const expected = w.map((v, i) => (dtype === "float32" ? Math.fround(v * (kept[i] ? scale : 0)) : v * (kept[i] ? scale : 0)));
        expect(valuesOf(grad)).toEqual(expected);
      }
    }));

  test("bfloat16 in, bfloat16 out: the kept elements are the float32 result rounded", () =>
    scope(() => {
      const x = input(8192, "bfloat16");
      manualSeed(9);
      const out = x.dropout(0.2);
      expect(out.dtype).toBe("bfloat16");
      const xs = valuesOf(x.to("float32"));
      const values = valuesOf(out.to("float32"));
      const kept = keptOf(values);
      expect(Math.abs(kept.filter(Boolean).length / 8192 - 0.8)).toBeLessThan(0.03);
      values.forEach((v, i) => expect(Math.abs(v - (kept[i] ? xs[i]! / 0.8 : 0))).toBeLessThanOrEqual(Math.abs(xs[i]! / 0.8) * 2 ** -8));
    }));

  test("p = 0 copies; p outside [0, 1) and integer tensors are errors naming the argument", () =>
    scope(() => {
      const x = input(10);
      expect(valuesOf(x.dropout(0))).toEqual(valuesOf(x));
      for (const p of [1, -0.1, Number.NaN, 2]) expect(() => x.dropout(p)).toThrow(/tensor.dropout: p must be in \[0, 1\)/);
      expect(() => tensor([1, 2], { dtype: "int64" }).dropout(0.5)).toThrow(/tensor.dropout: needs a floating-point tensor, got Long/);
    }));
});
