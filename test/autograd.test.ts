// Autograd: gradients of a composite loss against central finite differences of a plain-JS
// float64 forward pass, and the grad lifecycle (accumulate, zeroGrad, retainGraph, noGrad).
import { describe, expect, test } from "vitest";

import { type Tensor, arange, full, isGradEnabled, noGrad, ones, rand, randn, scope, tensor, where, zeros } from "../lib/index.js";
import { expectClose, expectCode, logSigmoidRef, pseudoRandom, rows, softmaxRef, valuesOf } from "./helpers.js";

const f64 = (data: Parameters<typeof tensor>[0]) => tensor(data, { dtype: "float64" });

describe("gradients of a composite function vs central finite differences", () => {
  const N = 3;
  const K = 4;
  const M = 2;
  const C = [[0.5, -1], [2, 0.25], [-0.75, 1.5]];
  const IDX = [2, 0, 3];
  // Inputs kept away from 0 so where(x > 0, …) is smooth within ±eps of every element.
  const X0 = pseudoRandom(N * K, 11).map((v) => (Math.abs(v) < 0.05 ? v + 0.2 : v) * 2);
  const W0 = pseudoRandom(K * M, 12);

  /** f(x, w) in plain JS float64, the same formula as the tensor version below. */
  function fRef(x: number[], w: number[]): number {
    let f = 0;
    const z: number[] = [];
    for (let i = 0; i < N; i++) {
      for (let j = 0; j < M; j++) {
        let acc = 0;
        for (let p = 0; p < K; p++) acc += x[i * K + p]! * w[p * M + j]!;
        z.push(acc);
      }
    }
    // t1: sum(logSigmoid(x @ w) * c)
    for (let i = 0; i < N; i++) for (let j = 0; j < M; j++) f += logSigmoidRef(z[i * M + j]!) * C[i]![j]!;
    // t2: mean(softmax(x, -1)^2)
    let t2 = 0;
    for (let i = 0; i < N; i++) for (const s of softmaxRef(x.slice(i * K, i * K + K))) t2 += s * s;
    f += t2 / (N * K);
    // t3: sum(exp(x) * 0.1)
    for (const v of x) f += Math.exp(v) * 0.1;
    // t4: sum(gather(logSoftmax(x, -1), 1, idx))
    for (let i = 0; i < N; i++) f += Math.log(softmaxRef(x.slice(i * K, i * K + K))[IDX[i]!]!);
    // t5: sum(where(x > 0, 2x, x^3))
    for (const v of x) f += v > 0 ? 2 * v : v ** 3;
    // t6: sum((x @ w) / (1 + sum_k w_kj^2))
    for (let j = 0; j < M; j++) {
      let norm = 1;
      for (let p = 0; p < K; p++) norm += w[p * M + j]! ** 2;
      for (let i = 0; i < N; i++) f += z[i * M + j]! / norm;
    }
    // t7: sum((x^2 + 1)^1.5)
    for (const v of x) f += (v * v + 1) ** 1.5;
    return f;
  }

  function fTensor(x: Tensor, w: Tensor): Tensor {
    const c = f64(C);
    const idx = tensor(IDX.map((i) => [i]), { dtype: "int64" });
    const z = x.matmul(w);
    const t1 = z.logSigmoid().mul(c).sum();
    const t2 = x.softmax(-1).square().mean();
    const t3 = x.exp().mul(0.1).sum();
    const t4 = x.logSoftmax(-1).gather(1, idx).sum();
    const t5 = where(x.gt(0), x.mul(2), x.pow(3)).sum();
    const t6 = z.div(w.square().sum(0).add(1)).sum();
    const t7 = x.square().add(1).pow(1.5).sum();
    return t1.add(t2).add(t3).add(t4).add(t5).add(t6).add(t7);
  }

  function centralDifferences(at: number[], f: (perturbed: number[]) => number, eps = 1e-6): number[] {
    return at.map((_, i) => {
      const plus = at.slice();
      const minus = at.slice();
      plus[i]! += eps;
      minus[i]! -= eps;
      return (f(plus) - f(minus)) / (2 * eps);
    });
  }

  test("the tensor forward pass matches the JS forward pass", () =>
    scope(() => {
      const value = fTensor(f64(rows(X0, K)), f64(rows(W0, M)));
      expect(value.shape).toEqual([]);
      expectClose([value.item() as number], [fRef(X0, W0)], 1e-12);
    }));

  test("x.grad and w.grad match central finite differences (rtol 1e-6)", () =>
    scope(() => {
      const x = f64(rows(X0, K)).requireGrad();
      const w = f64(rows(W0, M)).requireGrad();
      fTensor(x, w).backward();
      const gx = x.grad!;
      const gw = w.grad!;
      expect(gx.dtype).toBe("float64");
      expect(gx.shape).toEqual([N, K]);
      expect(gw.shape).toEqual([K, M]);
      const fdX = centralDifferences(X0, (xp) => fRef(xp, W0));
      const fdW = centralDifferences(W0, (wp) => fRef(X0, wp));
      expectClose(valuesOf(gx), fdX, 1e-6, 1e-8);
      expectClose(valuesOf(gw), fdW, 1e-6, 1e-8);
    }));
});

describe("grad lifecycle", () => {
  test("grad is null before backward; leaves and results are told apart", () =>
    scope(() => {
      const x = f64([1, 2, 3]).requireGrad();
      expect(x.grad).toBeNull();
      expect(x.isLeaf).toBe(true);
      expect(x.requiresGrad).toBe(true);
      const y = x.mul(2);
      expect(y.isLeaf).toBe(false);
      expect(y.requiresGrad).toBe(true);
      expect(f64([1]).requiresGrad).toBe(false);
    }));

  test("gradients accumulate over two backward calls; zeroGrad resets to null", () =>
    scope(() => {
      const x = f64([1, -2, 3]).requireGrad();
      x.square().sum().backward(); // d/dx sum(x^2) = 2x
      expect(x.grad!.toList()).toEqual([2, -4, 6]);
      x.square().sum().backward();
      expect(x.grad!.toList()).toEqual([4, -8, 12]);
      x.zeroGrad();
      expect(x.grad).toBeNull();
      x.mul(3).sum().backward();
      expect(x.grad!.toList()).toEqual([3, 3, 3]);
    }));

  test("backward on a non-scalar without a gradient throws SHAPE_MISMATCH", () =>
    scope(() => {
      const x = f64([1, 2, 3]).requireGrad();
      const error = expectCode(() => x.mul(2).backward(), "SHAPE_MISMATCH");
      expect(error.call).toBe("tensor.backward");
      expect(x.grad).toBeNull();
    }));

  test("backward on a non-scalar with an explicit gradient", () =>
    scope(() => {
      const x = f64([1, 2, 3]).requireGrad();
      x.square().backward(f64([1, 10, 100])); // 2x * g
      expect(x.grad!.toList()).toEqual([2, 40, 600]);
      expectCode(() => x.square().backward(f64([1, 2])), "SHAPE_MISMATCH");
    }));

  test("backward on a tensor that does not require grad throws INVALID_ARGUMENT", () =>
    scope(() => {
      expectCode(() => f64([1, 2]).sum().backward(), "INVALID_ARGUMENT");
    }));

  test("retainGraph allows a second backward; without it the second one fails", () =>
    scope(() => {
      const x = f64([0, 1]).requireGrad();
      const y = x.exp().sum();
      y.backward(null, { retainGraph: true });
      y.backward();
      expectClose(valuesOf(x.grad!), [2 * Math.exp(0), 2 * Math.exp(1)]);

      const z = x.exp().sum();
      z.backward();
      expect(() => z.backward()).toThrow(/second time/);
    }));

  test("requiresGrad can be turned off again on a leaf", () =>
    scope(() => {
      const x = f64([1]).requireGrad();
      x.requiresGrad = false;
      expect(x.requiresGrad).toBe(false);
      expect(x.mul(2).requiresGrad).toBe(false);
    }));

  test("setting requiresGrad on an int tensor throws DTYPE; on a non-leaf INVALID_ARGUMENT", () =>
    scope(() => {
      const ints = tensor([1, 2], { dtype: "int64" });
      expectCode(() => {
        ints.requiresGrad = true;
      }, "DTYPE");
      expectCode(() => tensor([true]).requireGrad(), "DTYPE");
      const nonLeaf = f64([1, 2]).requireGrad().mul(2);
      expectCode(() => {
        nonLeaf.requiresGrad = true;
      }, "INVALID_ARGUMENT");
    }));

  test("detach() gives a leaf without grad, same values", () =>
    scope(() => {
      const x = f64([1, 2]).requireGrad();
      const y = x.mul(3);
      const d = y.detach();
      expect(d.requiresGrad).toBe(false);
      expect(d.isLeaf).toBe(true);
      expect(d.toList()).toEqual([3, 6]);
      // the detached branch contributes no gradient
      y.add(d).sum().backward();
      expect(x.grad!.toList()).toEqual([3, 3]);
    }));
});

describe("noGrad", () => {
  test("results made inside do not require grad; the mode is restored", () =>
    scope(() => {
      const x = f64([1, 2]).requireGrad();
      expect(isGradEnabled()).toBe(true);
      const inside = noGrad(() => {
        expect(isGradEnabled()).toBe(false);
        return x.mul(2);
      });
      expect(inside.requiresGrad).toBe(false);
      expect(inside.toList()).toEqual([2, 4]);
      expect(isGradEnabled()).toBe(true);
      expect(x.mul(2).requiresGrad).toBe(true);
    }));

  test("the mode is restored when fn throws", () => {
    expect(() =>
      noGrad(() => {
        throw new Error("boom");
      }),
    ).toThrow("boom");
    expect(isGradEnabled()).toBe(true);
  });

  test("nested noGrad keeps grad off until the outermost one returns", () => {
    noGrad(() => {
      noGrad(() => expect(isGradEnabled()).toBe(false));
      expect(isGradEnabled()).toBe(false);
    });
    expect(isGradEnabled()).toBe(true);
  });

  const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

  test("an async function is covered to its end, across awaits; code running meanwhile is not", async () => {
    const x = f64([1, 2]).requireGrad();
    const seen: string[] = [];
    const inside = noGrad(async () => {
      seen.push(`start ${isGradEnabled()}`);
      await sleep(10);
      seen.push(`after a timer ${isGradEnabled()}`);
      await Promise.resolve();
      seen.push(`after a microtask ${isGradEnabled()}`);
      return x.mul(2);
    });
    seen.push(`caller ${isGradEnabled()}`);
    const outside = (async () => {
      await sleep(2);
      seen.push(`other task ${isGradEnabled()}`);
      return x.mul(3);
    })();
    const [a, b] = await Promise.all([inside, outside]);
    seen.push(`end ${isGradEnabled()}`);
    expect(seen).toEqual([
      "start false",
      "caller true",
      "other task true",
      "after a timer false",
      "after a microtask false",
      "end true",
    ]);
    expect(a.requiresGrad).toBe(false);
    expect(b.requiresGrad).toBe(true);
    for (const t of [x, a, b]) t.dispose();
  });

  test("a rejected async function leaves grad on afterwards", async () => {
    await expect(
      noGrad(async () => {
        await sleep(1);
        throw new Error("boom");
      }),
    ).rejects.toThrow("boom");
    await sleep(1);
    expect(isGradEnabled()).toBe(true);
  });
});

describe("requiresGrad at creation", () => {
  test("tensor, full, zeros, ones, rand and randn make tracked leaves; backward reaches them", () =>
    scope(() => {
      const made = [
        tensor([1, 2], { requiresGrad: true }),
        full([2], 3, { requiresGrad: true }),
        zeros([2], { requiresGrad: true }),
        ones([2], { dtype: "float64", requiresGrad: true }),
        rand([2], { requiresGrad: true }),
        randn([2], { requiresGrad: true }),
      ];
      for (const t of made) {
        expect(t.requiresGrad).toBe(true);
        expect(t.isLeaf).toBe(true);
        t.mul(t).sum().backward();
        // d/dt sum(t²) = 2t
        expectClose(valuesOf(t.grad!), valuesOf(t).map((v) => 2 * v), 1e-6);
      }
      expect(tensor([1, 2]).requiresGrad).toBe(false);
      expect(tensor([1, 2], { requiresGrad: false }).requiresGrad).toBe(false);
    }));

  test("an integer dtype is refused, naming the dtype; a non-boolean is a TypeError", () => {
    expectCode(() => tensor([1, 2], { dtype: "int64", requiresGrad: true }), "DTYPE");
    expectCode(() => arange(0, 3, 1, { requiresGrad: true }), "DTYPE");
    expect(() => tensor([1, 2], { requiresGrad: "yes" as unknown as boolean })).toThrow(TypeError);
  });
});
