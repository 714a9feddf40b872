// matmulAsync: runs on a libuv worker, so the event loop keeps ticking; results, failures,
// input lifetimes and grad mode behave like the synchronous call.
import { describe, expect, test } from "vitest";

import { SpinNativeError, type Tensor, memoryStats, noGrad, randn, scope, tensor } from "../lib/index.js";
import { expectClose, matmulRef, pseudoRandom, rejection, valuesOf } from "./helpers.js";

const f64Matrix = (data: number[], r: number, c: number) => tensor(new Float64Array(data), { shape: [r, c] });

describe("matmulAsync", () => {
  test("gives the same values as a JS reference (2-D, batched, vector)", async () => {
    const a = pseudoRandom(5 * 7, 21);
    const b = pseudoRandom(7 * 3, 22);
    const at = f64Matrix(a, 5, 7);
    const bt = f64Matrix(b, 7, 3);
    const out = await at.matmulAsync(bt);
    expect(out.shape).toEqual([5, 3]);
    expect(out.dtype).toBe("float64");
    expectClose(valuesOf(out), matmulRef(a, b, 5, 7, 3), 1e-12, 1e-15);

    const batched = await at.reshape([1, 5, 7]).expand([2, 5, 7]).matmulAsync(bt);
    expect(batched.shape).toEqual([2, 5, 3]);
    expectClose(valuesOf(batched), [...matmulRef(a, b, 5, 7, 3), ...matmulRef(a, b, 5, 7, 3)], 1e-12, 1e-15);

    const vec = await at.matmulAsync(f64Matrix(b.slice(0, 7), 7, 1).reshape([7]));
    expect(vec.shape).toEqual([5]);
    expectClose(valuesOf(vec), matmulRef(a, b.slice(0, 7), 5, 7, 1), 1e-12, 1e-15);
    [at, bt, out, batched, vec].forEach((t) => t.dispose());
  });

  test("the event loop keeps ticking while a long matmulAsync runs", async () => {
    // Calibrate: enough 1536x1536 float32 products in one batched call to last >= ~250 ms.
    const one = randn([1536, 1536]);
    const t0 = performance.now();
    one.matmul(one).dispose();
    const single = performance.now() - t0;
    const batch = Math.min(8, Math.max(1, Math.ceil(250 / single)));
    const big = one.reshape([1, 1536, 1536]).expand([batch, 1536, 1536]);

    let ticks = 0;
    const timer = setInterval(() => ticks++, 5);
    const start = performance.now();
    let ticksAtResolve = -1;
    const product = await big.matmulAsync(one).then((result) => {
      ticksAtResolve = ticks;
      return result;
    });
    const elapsed = performance.now() - start;
    clearInterval(timer);

    expect(product.shape).toEqual([batch, 1536, 1536]);
    // A blocking implementation would let at most one tick through before resolving.
    expect(ticksAtResolve, `${ticksAtResolve} ticks in ${elapsed.toFixed(0)} ms (batch ${batch})`).toBeGreaterThanOrEqual(8);
    expect(ticksAtResolve).toBeGreaterThanOrEqual(Math.floor(elapsed / 5 / 4));
    [one, big, product].forEach((t) => t.dispose());
  });

  test("a failing matmulAsync rejects with SHAPE_MISMATCH instead of throwing or crashing", async () => {
    const a = f64Matrix([1, 2, 3, 4, 5, 6], 2, 3);
    const promise = a.matmulAsync(a);
    expect(promise).toBeInstanceOf(Promise);
    const error = (await rejection(promise)) as SpinNativeError;
    expect(error).toBeInstanceOf(SpinNativeError);
    expect(error.code).toBe("SHAPE_MISMATCH");
    expect(error.call).toBe("tensor.matmulAsync");
    expect(error.message.startsWith("tensor.matmulAsync: ")).toBe(true);
    expect(error.message).not.toMatch(/Exception raised from/);
    // the addon is still usable afterwards
    const ok = await a.matmulAsync(a.transpose(0, 1));
    expect(ok.toList()).toEqual([[14, 32], [32, 77]]);
    a.dispose();
    ok.dispose();
  });

  test("a disposed input or a non-tensor argument rejects", async () => {
    const a = f64Matrix([1, 2, 3, 4], 2, 2);
    const d = f64Matrix([1, 2, 3, 4], 2, 2);
    d.dispose();
    const disposed = (await rejection(a.matmulAsync(d))) as SpinNativeError;
    expect(disposed).toBeInstanceOf(SpinNativeError);
    expect(disposed.code).toBe("DISPOSED");
    expect(await rejection(a.matmulAsync(3 as never))).toBeInstanceOf(TypeError);
    a.dispose();
  });

  test("disposing the inputs right after starting still gives the correct result", async () => {
    const n = 120;
    const k = 90;
    const m = 70;
    const a = pseudoRandom(n * k, 31);
    const b = pseudoRandom(k * m, 32);
    const at = f64Matrix(a, n, k);
    const bt = f64Matrix(b, k, m);
    const promise = at.matmulAsync(bt);
    at.dispose();
    bt.dispose();
    expect(at.disposed && bt.disposed).toBe(true);
    const out = await promise;
    expectClose(valuesOf(out), matmulRef(a, b, n, k, m), 1e-12, 1e-14);
    out.dispose();
  });

  test("concurrent calls each resolve to their own product", async () => {
    const inputs = [1, 2, 3, 4].map((seed) => ({ a: pseudoRandom(16, seed), b: pseudoRandom(16, seed + 100) }));
    const results = await Promise.all(inputs.map(({ a, b }) => f64Matrix(a, 4, 4).matmulAsync(f64Matrix(b, 4, 4))));
    results.forEach((out, i) => {
      expectClose(valuesOf(out), matmulRef(inputs[i]!.a, inputs[i]!.b, 4, 4, 4), 1e-12, 1e-15);
      out.dispose();
    });
  });

  test("no native handles are left behind", async () => {
    const before = memoryStats().liveTensors;
    const a = f64Matrix([1, 2, 3, 4], 2, 2);
    const wrong = f64Matrix([1, 2, 3], 3, 1);
    const results = await Promise.all([a.matmulAsync(a), a.matmulAsync(a)]);
    await rejection(a.matmulAsync(wrong));
    const mid = memoryStats().liveTensors;
    [...results, a, wrong].forEach((t) => t.dispose());
    expect(memoryStats().liveTensors).toBe(mid - 4);
    // garbage from earlier tests may have been collected meanwhile, never more handles
    expect(memoryStats().liveTensors).toBeLessThanOrEqual(before);
  });
});

describe("grad mode in the worker", () => {
  test("inside noGrad the async result does not require grad", async () => {
    const a = f64Matrix([1, 2, 3, 4], 2, 2).requireGrad();
    const promise = noGrad(() => a.matmulAsync(a));
    const out = await promise; // awaited outside noGrad: the mode at the call is what counts
    expect(out.requiresGrad).toBe(false);
    expect(out.toList()).toEqual([[7, 10], [15, 22]]);
    out.dispose();
    a.dispose();
  });

  test("outside noGrad, a requiresGrad input gives a result that backpropagates", async () => {
    const aData = [1, 2, 3, 4, 5, 6];
    const bData = [1, -1, 2, 0.5, -3, 4];
    const a = f64Matrix(aData, 2, 3).requireGrad();
    const b = f64Matrix(bData, 3, 2);
    const out = await a.matmulAsync(b);
    expect(out.requiresGrad).toBe(true);
    expect(out.isLeaf).toBe(false);
    scope(() => out.sum().backward());
    // d sum(a @ b) / d a[i][k] = sum_j b[k][j]
    const rowSums = [bData[0]! + bData[1]!, bData[2]! + bData[3]!, bData[4]! + bData[5]!];
    const grad = a.grad as Tensor;
    expect(grad.toList()).toEqual([rowSums, rowSums]);
    [grad, out, a, b].forEach((t) => t.dispose());
  });
});
