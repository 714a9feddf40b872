// The op set against hand-computed values and plain-JS float64 references: elementwise
// arithmetic and broadcasting, scalar operands, unary math, reductions, softmax, matmul,
// indexing and shape ops.
import { describe, expect, test } from "vitest";

import { arange, cat, scope, stack, tensor, where } from "../lib/index.js";
import {
  expectClose,
  flatten,
  logSigmoidRef,
  logSumExpRef,
  matmulRef,
  pseudoRandom,
  rows,
  sigmoidRef,
  softmaxRef,
  valuesOf,
} from "./helpers.js";

const f64 = (data: Parameters<typeof tensor>[0]) => tensor(data, { dtype: "float64" });
const i64 = (data: Parameters<typeof tensor>[0]) => tensor(data, { dtype: "int64" });

describe("elementwise arithmetic and broadcasting", () => {
  test("[2,3] op [3] broadcasts the row", () =>
    scope(() => {
      const a = f64([[1, 2, 3], [4, 5, 6]]);
      const b = f64([10, 20, 30]);
      expect(a.add(b).toList()).toEqual([[11, 22, 33], [14, 25, 36]]);
      expect(a.sub(b).toList()).toEqual([[-9, -18, -27], [-6, -15, -24]]);
      expect(a.mul(b).toList()).toEqual([[10, 40, 90], [40, 100, 180]]);
      expect(a.div(b).toList()).toEqual([[0.1, 0.1, 0.1], [0.4, 0.25, 0.2]]);
    }));

  test("[2,1] * [1,3] gives an outer product [2,3]", () =>
    scope(() => {
      const out = f64([[1], [2]]).mul(f64([[3, 4, 5]]));
      expect(out.shape).toEqual([2, 3]);
      expect(out.toList()).toEqual([[3, 4, 5], [6, 8, 10]]);
    }));

  test("a float32 tensor with a fractional scalar stays float32", () =>
    scope(() => {
      const out = tensor([1, 2]).add(0.5);
      expect(out.dtype).toBe("float32");
      expect(out.toList()).toEqual([1.5, 2.5]);
      // 0.1 is applied at float32 precision: Math.fround(1 + Math.fround(0.1))
      expect(tensor([1]).add(0.1).toList()).toEqual([Math.fround(1 + Math.fround(0.1))]);
    }));

  test("a float16 tensor with an integer scalar stays float16", () =>
    scope(() => {
      const out = tensor([1, 2], { dtype: "float16" }).add(1);
      expect(out.dtype).toBe("float16");
      expect(Array.from(out.toTypedArray() as Uint16Array)).toEqual([0x4000, 0x4200]); // 2, 3
    }));

  test("an int64 tensor with an integer scalar stays int64", () =>
    scope(() => {
      const out = i64([1, 2]).add(2);
      expect(out.dtype).toBe("int64");
      expect(Array.from(out.toTypedArray() as BigInt64Array)).toEqual([3n, 4n]);
      expect(i64([5, -5]).mul(3).toList()).toEqual([15, -15]);
    }));

  test("an int tensor times a fractional scalar becomes float32", () =>
    scope(() => {
      const out = i64([1, 2]).mul(1.5);
      expect(out.dtype).toBe("float32");
      expect(out.toList()).toEqual([1.5, 3]);
    }));

  test("dividing int tensors is true division into float32", () =>
    scope(() => {
      const byScalar = tensor([1, 2, -3], { dtype: "int32" }).div(2);
      expect(byScalar.dtype).toBe("float32");
      expect(byScalar.toList()).toEqual([0.5, 1, -1.5]);
      const byTensor = i64([7, -7]).div(i64([2, 2]));
      expect(byTensor.dtype).toBe("float32");
      expect(byTensor.toList()).toEqual([3.5, -3.5]);
      expect(i64([1, 0, -1]).div(0).toList()).toEqual([Infinity, NaN, -Infinity]);
    }));

  test("pow with scalar and tensor exponents", () =>
    scope(() => {
      expect(f64([1, 2, 3]).pow(2).toList()).toEqual([1, 4, 9]);
      expect(f64([2, 3, 4]).pow(f64([3, 2, 0.5])).toList()).toEqual([8, 9, 2]);
      expect(f64([[2], [3]]).pow(f64([1, 2])).toList()).toEqual([[2, 4], [3, 9]]);
      expectClose(valuesOf(f64([2, 5]).pow(-1.5)), [2 ** -1.5, 5 ** -1.5]);
      const ints = i64([2, 3]).pow(3);
      expect(ints.dtype).toBe("int64");
      expect(ints.toList()).toEqual([8, 27]);
    }));

  test("maximum and minimum, with broadcasting, scalars and NaN propagation", () =>
    scope(() => {
      const a = f64([1, 5, NaN, -2]);
      const b = f64([3, 2, 1, -2]);
      expect(a.maximum(b).toList()).toEqual([3, 5, NaN, -2]);
      expect(a.minimum(b).toList()).toEqual([1, 2, NaN, -2]);
      expect(f64([[1, 4], [6, 2]]).maximum(f64([3, 3])).toList()).toEqual([[3, 4], [6, 3]]);
      expect(f64([-1, 0.5, 2]).maximum(0).toList()).toEqual([0, 0.5, 2]);
      expect(f64([-1, 0.5, 2]).minimum(1).toList()).toEqual([-1, 0.5, 1]);
    }));

  test("comparisons return bool", () =>
    scope(() => {
      const a = tensor([1, 2, 3]);
      const b = tensor([3, 2, 1]);
      const cases: [string, ReturnType<typeof tensor>, boolean[]][] = [
        ["eq", a.eq(b), [false, true, false]],
        ["ne", a.ne(b), [true, false, true]],
        ["lt", a.lt(b), [true, false, false]],
        ["le", a.le(b), [true, true, false]],
        ["gt", a.gt(b), [false, false, true]],
        ["ge", a.ge(b), [false, true, true]],
        ["gt scalar", a.gt(1.5), [false, true, true]],
        ["eq scalar", a.eq(2), [false, true, false]],
      ];
      for (const [name, out, expected] of cases) {
        expect(out.dtype, name).toBe("bool");
        expect(out.toList(), name).toEqual(expected);
      }
      const broadcast = tensor([[1], [2]]).lt(tensor([1, 2, 3]));
      expect(broadcast.shape).toEqual([2, 3]);
      expect(broadcast.toList()).toEqual([[false, true, true], [false, false, true]]);
    }));

  test("logical ops treat nonzero as true and return bool", () =>
    scope(() => {
      const a = tensor([1, 0, 2, 0]);
      const b = tensor([1, 1, 0, 0]);
      expect(a.logicalAnd(b).toList()).toEqual([true, false, false, false]);
      expect(a.logicalOr(b).toList()).toEqual([true, true, true, false]);
      expect(a.logicalNot().toList()).toEqual([false, true, false, true]);
      expect(a.logicalAnd(b).dtype).toBe("bool");
      expect(tensor([true, false]).logicalOr(false).toList()).toEqual([true, false]);
    }));

  test("where with tensor and scalar branches", () =>
    scope(() => {
      const cond = tensor([true, false, true]);
      expect(where(cond, tensor([1, 2, 3]), tensor([-1, -2, -3])).toList()).toEqual([1, -2, 3]);
      const mixed = where(cond, 0.5, tensor([-1, -2, -3]));
      expect(mixed.dtype).toBe("float32");
      expect(mixed.toList()).toEqual([0.5, -2, 0.5]);
      expect(where(cond, f64([10, 20, 30]), 0).toList()).toEqual([10, 0, 30]);
      expect(where(cond, 1, 2).toList()).toEqual([1, 2, 1]);
      // broadcasting condition [2,1] against branches [3]
      const b = where(tensor([[true], [false]]), tensor([1, 2, 3]), tensor([4, 5, 6]));
      expect(b.toList()).toEqual([[1, 2, 3], [4, 5, 6]]);
    }));

  test("clamp with min, max and both", () =>
    scope(() => {
      const x = f64([-3, -0.5, 0, 0.5, 3]);
      expect(x.clamp(-1, 1).toList()).toEqual([-1, -0.5, 0, 0.5, 1]);
      expect(x.clamp(0).toList()).toEqual([0, 0, 0, 0.5, 3]);
      expect(x.clamp(null, 0).toList()).toEqual([-3, -0.5, 0, 0, 0]);
      expect(x.clamp(undefined, -1).toList()).toEqual([-3, -1, -1, -1, -1]);
    }));
});

describe("unary math against Math.* in float64", () => {
  const xs = [-4.5, -1.25, -0.3, 0, 0.7, 2, 9.5];
  const positive = [1e-8, 0.2, 1, 2.5, 100, 1e6];
  const cases: [string, (t: ReturnType<typeof tensor>) => ReturnType<typeof tensor>, (x: number) => number, number[]][] = [
    ["exp", (t) => t.exp(), Math.exp, xs],
    ["log", (t) => t.log(), Math.log, positive],
    ["log1p", (t) => t.log1p(), Math.log1p, [-0.5, -1e-10, 0, 1e-12, 0.3, 10]],
    ["sqrt", (t) => t.sqrt(), Math.sqrt, [0, ...positive]],
    ["rsqrt", (t) => t.rsqrt(), (x) => 1 / Math.sqrt(x), positive],
    ["sigmoid", (t) => t.sigmoid(), sigmoidRef, xs],
    ["logSigmoid", (t) => t.logSigmoid(), logSigmoidRef, [...xs, -30, 30]],
    ["tanh", (t) => t.tanh(), Math.tanh, xs],
    ["relu", (t) => t.relu(), (x) => Math.max(0, x), xs],
    ["silu", (t) => t.silu(), (x) => x * sigmoidRef(x), xs],
    ["neg", (t) => t.neg(), (x) => -x, xs],
    ["abs", (t) => t.abs(), Math.abs, xs],
    ["square", (t) => t.square(), (x) => x * x, xs],
    ["reciprocal", (t) => t.reciprocal(), (x) => 1 / x, [-4, -0.5, 0.25, 3]],
    ["sign", (t) => t.sign(), Math.sign, xs],
    ["floor", (t) => t.floor(), Math.floor, xs],
    ["ceil", (t) => t.ceil(), Math.ceil, xs],
  ];
  for (const [name, op, ref, inputs] of cases) {
    test(name, () =>
      scope(() => {
        const out = op(f64(inputs));
        expect(out.dtype).toBe("float64");
        expectClose(valuesOf(out), inputs.map(ref), 1e-12, 1e-300);
      }));
  }

  test("round is round-half-to-even", () =>
    scope(() => {
      expect(f64([2.5, 1.5, 0.5, -0.5, -1.5, 2.4, -2.6]).round().toList()).toEqual([2, 2, 0, -0, -2, 2, -3]);
    }));

  test("isNan and isFinite", () =>
    scope(() => {
      const t = f64([1, NaN, Infinity, -Infinity, 0]);
      expect(t.isNan().toList()).toEqual([false, true, false, false, false]);
      expect(t.isFinite().toList()).toEqual([true, false, false, false, true]);
    }));

  test("float32 unary ops agree with float64 references to float32 precision", () =>
    scope(() => {
      const inputs = [-3, -0.5, 0.25, 1, 4];
      expectClose(valuesOf(tensor(inputs).exp()), inputs.map((x) => Math.exp(Math.fround(x))), 1e-6);
      expectClose(valuesOf(tensor(inputs).tanh()), inputs.map(Math.tanh), 1e-6, 1e-7);
      expectClose(valuesOf(tensor(inputs).sigmoid()), inputs.map(sigmoidRef), 1e-6);
    }));

  test("logSigmoid is stable at extremes", () =>
    scope(() => {
      for (const dtype of ["float32", "float64"] as const) {
        const out = valuesOf(tensor([-1000, 1000, -100, 100], { dtype }).logSigmoid());
        expect(out.every(Number.isFinite), `${dtype}: ${out}`).toBe(true);
        expectClose([out[0]!], [-1000], 1e-7);
        expect(Math.abs(out[1]!)).toBeLessThan(1e-30);
        expectClose([out[2]!], [-100], 1e-7);
        expect(Math.abs(out[3]!)).toBeLessThan(1e-30);
      }
    }));
});

describe("reductions", () => {
  // x = [[1, 5, 3], [4, 2, 6]]
  const x = () => f64([[1, 5, 3], [4, 2, 6]]);

  test("sum: all, per dim, negative dim, several dims, keepDim", () =>
    scope(() => {
      const all = x().sum();
      expect(all.shape).toEqual([]);
      expect(all.item()).toBe(21);
      expect(x().sum(0).toList()).toEqual([5, 7, 9]);
      expect(x().sum(1).toList()).toEqual([9, 12]);
      expect(x().sum(-1).toList()).toEqual([9, 12]);
      expect(x().sum([0, 1]).item()).toBe(21);
      const kept = x().sum(1, true);
      expect(kept.shape).toEqual([2, 1]);
      expect(kept.toList()).toEqual([[9], [12]]);
      const keptAll = x().sum(undefined, true);
      expect(keptAll.shape).toEqual([1, 1]);
      expect(keptAll.toList()).toEqual([[21]]);
    }));

  test("sum keeps int64, and counts trues of a bool tensor as int64", () =>
    scope(() => {
      const s = i64([[1, 2], [3, 4]]).sum(0);
      expect(s.dtype).toBe("int64");
      expect(s.toList()).toEqual([4, 6]);
      const count = tensor([true, false, true, true]).sum();
      expect(count.dtype).toBe("int64");
      expect(count.item()).toBe(3);
    }));

  test("mean", () =>
    scope(() => {
      expect(x().mean().item()).toBe(3.5);
      expect(x().mean(0).toList()).toEqual([2.5, 3.5, 4.5]);
      expect(x().mean(1, true).toList()).toEqual([[3], [4]]);
      expect(x().mean([0, 1], true).shape).toEqual([1, 1]);
    }));

  test("max and min", () =>
    scope(() => {
      expect(x().max().item()).toBe(6);
      expect(x().min().item()).toBe(1);
      expect(x().max(1).toList()).toEqual([5, 6]);
      expect(x().min(1).toList()).toEqual([1, 2]);
      const kept = x().max(0, true);
      expect(kept.shape).toEqual([1, 3]);
      expect(kept.toList()).toEqual([[4, 5, 6]]);
      expect(x().min([0, 1]).item()).toBe(1);
    }));

  test("prod", () =>
    scope(() => {
      expect(x().prod().item()).toBe(720);
      expect(x().prod(1).toList()).toEqual([15, 48]);
      expect(x().prod(0, true).toList()).toEqual([[4, 10, 18]]);
    }));

  test("argmax and argmin are int64 indices", () =>
    scope(() => {
      const am = x().argmax();
      expect(am.dtype).toBe("int64");
      expect(am.item()).toBe(5); // flat index of 6
      expect(x().argmin().item()).toBe(0);
      expect(x().argmax(1).toList()).toEqual([1, 2]);
      expect(x().argmax(0).toList()).toEqual([1, 0, 1]);
      expect(x().argmin(1).toList()).toEqual([0, 1]);
      expect(x().argmin(0).toList()).toEqual([0, 1, 0]);
      const kept = x().argmax(1, true);
      expect(kept.shape).toEqual([2, 1]);
      expect(kept.toList()).toEqual([[1], [2]]);
    }));

  test("logsumexp against a JS reference, stable for large values", () =>
    scope(() => {
      const data = [[1, 5, 3], [4, 2, 6]];
      expectClose([x().logsumexp().item() as number], [logSumExpRef(data.flat())]);
      expectClose(valuesOf(x().logsumexp(1)), data.map(logSumExpRef));
      expectClose(valuesOf(x().logsumexp(0)), [0, 1, 2].map((j) => logSumExpRef([data[0]![j]!, data[1]![j]!])));
      expect(x().logsumexp(1, true).shape).toEqual([2, 1]);
      const big = f64([1000, 1000]).logsumexp().item() as number;
      expectClose([big], [1000 + Math.LN2]);
    }));

  test("all and any", () =>
    scope(() => {
      const b = () => tensor([[true, false, true], [true, true, true]]);
      expect(b().all().item()).toBe(false);
      expect(b().any().item()).toBe(true);
      expect(b().all(1).toList()).toEqual([false, true]);
      expect(b().all(0).toList()).toEqual([true, false, true]);
      expect(b().any(0).toList()).toEqual([true, true, true]);
      expect(tensor([[false, false], [false, true]]).any(1).toList()).toEqual([false, true]);
      const kept = b().all(1, true);
      expect(kept.shape).toEqual([2, 1]);
      expect(kept.dtype).toBe("bool");
    }));

  test("reductions of an empty tensor", () =>
    scope(() => {
      expect(tensor([]).sum().item()).toBe(0);
      expect(tensor([]).prod().item()).toBe(1);
    }));
});

describe("softmax and logSoftmax", () => {
  const data = rows(pseudoRandom(12, 7).map((v) => v * 4), 4); // [3, 4]

  test("rows sum to 1 and match a JS reference (dim -1)", () =>
    scope(() => {
      const s = f64(data).softmax(-1);
      const expected = data.map(softmaxRef);
      expectClose(valuesOf(s), expected.flat(), 1e-12);
      expectClose(valuesOf(s.sum(1)), [1, 1, 1], 1e-12);
    }));

  test("softmax over dim 0 normalises columns", () =>
    scope(() => {
      const s = f64(data).softmax(0);
      const cols = [0, 1, 2, 3].map((j) => softmaxRef(data.map((r) => r[j]!)));
      const expected = data.map((_, i) => cols.map((c) => c[i]!));
      expectClose(valuesOf(s), expected.flat(), 1e-12);
    }));

  test("logSoftmax is the log of the reference softmax", () =>
    scope(() => {
      const ls = f64(data).logSoftmax(1);
      expectClose(valuesOf(ls), data.map((r) => softmaxRef(r).map(Math.log)).flat(), 1e-12);
      expectClose(valuesOf(ls.exp().sum(-1)), [1, 1, 1], 1e-12);
    }));

  test("large logits stay finite", () =>
    scope(() => {
      expectClose(valuesOf(tensor([1000, 1001, 999]).softmax(0)), softmaxRef([1000, 1001, 999]), 1e-6);
      expectClose(valuesOf(f64([1000, 1001, 999]).logSoftmax(0)), softmaxRef([1000, 1001, 999]).map(Math.log), 1e-12);
    }));
});

describe("matmul against a JS triple loop", () => {
  test("a 2x2 matrix times the identity is itself", () =>
    scope(() => {
      const a = tensor([[1, 2], [3, 4]]);
      const eye = tensor([[1, 0], [0, 1]]);
      expect(a.matmul(eye).toList()).toEqual([[1, 2], [3, 4]]);
      expect(eye.matmul(a).toList()).toEqual([[1, 2], [3, 4]]);
    }));

  test("2-D float64", () =>
    scope(() => {
      const a = pseudoRandom(12, 1);
      const b = pseudoRandom(20, 2);
      const out = f64(rows(a, 4)).matmul(f64(rows(b, 5)));
      expect(out.shape).toEqual([3, 5]);
      expectClose(valuesOf(out), matmulRef(a, b, 3, 4, 5), 1e-12, 1e-15);
    }));

  test("2-D float32", () =>
    scope(() => {
      const a = pseudoRandom(6 * 7, 3).map(Math.fround);
      const b = pseudoRandom(7 * 2, 4).map(Math.fround);
      const out = tensor(rows(a, 7)).matmul(tensor(rows(b, 2)));
      expect(out.dtype).toBe("float32");
      expectClose(valuesOf(out), matmulRef(a, b, 6, 7, 2), 1e-5, 1e-6);
    }));

  test("batched 3-D, and a 2-D right operand broadcast over the batch", () =>
    scope(() => {
      const a = pseudoRandom(2 * 3 * 4, 5);
      const b = pseudoRandom(2 * 4 * 2, 6);
      const at = tensor(new Float64Array(a), { shape: [2, 3, 4] });
      const out = at.matmul(tensor(new Float64Array(b), { shape: [2, 4, 2] }));
      expect(out.shape).toEqual([2, 3, 2]);
      const expected = [0, 1].flatMap((n) => matmulRef(a.slice(n * 12, n * 12 + 12), b.slice(n * 8, n * 8 + 8), 3, 4, 2));
      expectClose(valuesOf(out), expected, 1e-12, 1e-15);

      const shared = b.slice(0, 8);
      const outShared = at.matmul(tensor(new Float64Array(shared), { shape: [4, 2] }));
      expect(outShared.shape).toEqual([2, 3, 2]);
      const expectedShared = [0, 1].flatMap((n) => matmulRef(a.slice(n * 12, n * 12 + 12), shared, 3, 4, 2));
      expectClose(valuesOf(outShared), expectedShared, 1e-12, 1e-15);
    }));

  test("vector cases: dot, matrix-vector, vector-matrix", () =>
    scope(() => {
      const dot = f64([1, 2, 3]).matmul(f64([4, -5, 6]));
      expect(dot.shape).toEqual([]);
      expect(dot.item()).toBe(1 * 4 - 2 * 5 + 3 * 6);
      const mv = f64([[1, 2, 3], [4, 5, 6]]).matmul(f64([1, 0, -1]));
      expect(mv.shape).toEqual([2]);
      expect(mv.toList()).toEqual([-2, -2]);
      const vm = f64([1, -1]).matmul(f64([[1, 2, 3], [4, 5, 6]]));
      expect(vm.shape).toEqual([3]);
      expect(vm.toList()).toEqual([-3, -3, -3]);
    }));
});

describe("indexing", () => {
  const x = () => f64([[1, 2, 3], [4, 5, 6]]);

  test("gather along dims 1 and 0", () =>
    scope(() => {
      expect(x().gather(1, i64([[2, 0], [1, 1]])).toList()).toEqual([[3, 1], [5, 5]]);
      expect(x().gather(0, i64([[1, 0, 1]])).toList()).toEqual([[4, 2, 6]]);
      expect(x().gather(-1, i64([[0], [2]])).toList()).toEqual([[1], [6]]);
    }));

  test("indexSelect", () =>
    scope(() => {
      expect(x().indexSelect(0, i64([1, 0, 1])).toList()).toEqual([[4, 5, 6], [1, 2, 3], [4, 5, 6]]);
      expect(x().indexSelect(1, i64([2, 0])).toList()).toEqual([[3, 1], [6, 4]]);
    }));

  test("select with positive and negative indices removes the dim", () =>
    scope(() => {
      expect(x().select(0, 1).toList()).toEqual([4, 5, 6]);
      expect(x().select(0, -1).toList()).toEqual([4, 5, 6]);
      expect(x().select(1, -1).toList()).toEqual([3, 6]);
      expect(x().select(-1, 0).toList()).toEqual([1, 4]);
      expect(x().select(1, -3).toList()).toEqual([1, 4]);
    }));

  test("slice with step and negative bounds (Python semantics)", () =>
    scope(() => {
      const r = arange(0, 10); // [0..9]
      const py = (start: number | null, end: number | null, step: number) => {
        const n = 10;
        const s = start === null ? 0 : start < 0 ? Math.max(0, n + start) : Math.min(start, n);
        const e = end === null ? n : end < 0 ? Math.max(0, n + end) : Math.min(end, n);
        const out: number[] = [];
        for (let i = s; i < e; i += step) out.push(i);
        return out;
      };
      expect(r.slice(0, 1, 8, 3).toList()).toEqual([1, 4, 7]);
      expect(r.slice(0, -3).toList()).toEqual([7, 8, 9]);
      expect(r.slice(0, null, -2).toList()).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
      expect(r.slice(0, -5, -1, 2).toList()).toEqual([5, 7]);
      expect(r.slice(0, 2, 100).toList()).toEqual(py(2, 100, 1));
      expect(r.slice(0, -100, 3).toList()).toEqual(py(-100, 3, 1));
      expect(r.slice(0, null, null, 4).toList()).toEqual([0, 4, 8]);
      expect(x().slice(1, 0, 3, 2).toList()).toEqual([[1, 3], [4, 6]]);
      expect(x().slice(-1, -2).toList()).toEqual([[2, 3], [5, 6]]);
    }));
});

describe("shape ops", () => {
  test("reshape with -1 keeps row-major order", () =>
    scope(() => {
      const t = f64([[1, 2, 3], [4, 5, 6]]);
      expect(t.reshape([-1]).toList()).toEqual([1, 2, 3, 4, 5, 6]);
      expect(t.reshape([3, -1]).toList()).toEqual([[1, 2], [3, 4], [5, 6]]);
      expect(t.reshape([-1, 1, 2]).shape).toEqual([3, 1, 2]);
      // a non-contiguous input reshapes in its logical order
      expect(t.transpose(0, 1).reshape([-1]).toList()).toEqual([1, 4, 2, 5, 3, 6]);
    }));

  test("transpose", () =>
    scope(() => {
      const t = f64([[1, 2, 3], [4, 5, 6]]).transpose(0, 1);
      expect(t.shape).toEqual([3, 2]);
      expect(t.toList()).toEqual([[1, 4], [2, 5], [3, 6]]);
      expect(f64([[1, 2], [3, 4]]).transpose(-1, -2).toList()).toEqual([[1, 3], [2, 4]]);
    }));

  test("permute moves every element to its permuted index", () =>
    scope(() => {
      const src = arange(0, 24).reshape([2, 3, 4]);
      const p = src.permute([2, 0, 1]);
      expect(p.shape).toEqual([4, 2, 3]);
      const got = flatten(p.toList());
      // out[i][j][k] = in[j][k][i], with in[a][b][c] = 12a + 4b + c
      const expected: number[] = [];
      for (let i = 0; i < 4; i++) for (let j = 0; j < 2; j++) for (let k = 0; k < 3; k++) expected.push(12 * j + 4 * k + i);
      expect(got).toEqual(expected);
    }));

  test("squeeze and unsqueeze", () =>
    scope(() => {
      const t = tensor([[[1], [2], [3]]]); // [1, 3, 1]
      expect(t.squeeze().shape).toEqual([3]);
      expect(t.squeeze().toList()).toEqual([1, 2, 3]);
      expect(t.squeeze(0).shape).toEqual([3, 1]);
      expect(t.squeeze(-1).shape).toEqual([1, 3]);
      expect(t.squeeze(1).shape).toEqual([1, 3, 1]); // size 3: unchanged
      const v = tensor([1, 2, 3]);
      expect(v.unsqueeze(0).toList()).toEqual([[1, 2, 3]]);
      expect(v.unsqueeze(-1).toList()).toEqual([[1], [2], [3]]);
      expect(v.unsqueeze(1).shape).toEqual([3, 1]);
    }));

  test("expand broadcasts size-1 dims, -1 keeps a size", () =>
    scope(() => {
      const col = tensor([[1], [2], [3]]);
      expect(col.expand([3, 4]).toList()).toEqual([[1, 1, 1, 1], [2, 2, 2, 2], [3, 3, 3, 3]]);
      expect(col.expand([-1, 2]).toList()).toEqual([[1, 1], [2, 2], [3, 3]]);
      const row = tensor([1, 2]);
      expect(row.expand([2, 2, 2]).toList()).toEqual([[[1, 2], [1, 2]], [[1, 2], [1, 2]]]);
    }));

  test("cat along dims 0, 1 and -1", () =>
    scope(() => {
      const a = tensor([[1, 2]]);
      const b = tensor([[3, 4], [5, 6]]);
      expect(cat([a, b]).toList()).toEqual([[1, 2], [3, 4], [5, 6]]);
      expect(cat([a, b], 0).shape).toEqual([3, 2]);
      const c = tensor([[7], [8]]);
      expect(cat([b, c], 1).toList()).toEqual([[3, 4, 7], [5, 6, 8]]);
      expect(cat([b, c, b], -1).toList()).toEqual([[3, 4, 7, 3, 4], [5, 6, 8, 5, 6]]);
    }));

  test("stack along a new dim", () =>
    scope(() => {
      const a = tensor([1, 2]);
      const b = tensor([3, 4]);
      expect(stack([a, b]).toList()).toEqual([[1, 2], [3, 4]]);
      expect(stack([a, b], 1).toList()).toEqual([[1, 3], [2, 4]]);
      expect(stack([a, b, a], -1).shape).toEqual([2, 3]);
      expect(stack([tensor(1), tensor(2)]).toList()).toEqual([1, 2]);
    }));
});
