// Process-wide runtime: threads, versions, devices, seeding and the factories (random,
// ranges, filled tensors).
import { existsSync } from "node:fs";
import os from "node:os";

import { describe, expect, test } from "vitest";

import {
  arange,
  cudaAvailable,
  deviceCount,
  full,
  getNumThreads,
  manualSeed,
  ones,
  rand,
  randn,
  runtimeInfo,
  scope,
  setNumThreads,
  tensor,
  zeros,
} from "../lib/index.js";
import { expectClose, expectCode, matmulRef, valuesOf } from "./helpers.js";

describe("threads", () => {
  test.runIf(!process.env.OMP_NUM_THREADS)("default thread count is every core this process may use", () => {
    expect(getNumThreads()).toBe(os.availableParallelism());
    expect(runtimeInfo().numThreads).toBe(os.availableParallelism());
  });

  test.runIf(!!process.env.OMP_NUM_THREADS)("OMP_NUM_THREADS, when set, decides the thread count", () => {
    expect(getNumThreads()).toBe(Number(process.env.OMP_NUM_THREADS));
  });

  test("runtimeInfo reports the available cores", () => {
    expect(runtimeInfo().availableCores).toBe(os.availableParallelism());
  });

  test("runtimeInfo reports the c10d backends: Gloo wherever libgloo-dev was there at build time", () => {
    const backends = runtimeInfo().distributedBackends;
    if (existsSync("/usr/include/gloo/algorithm.h")) expect(backends).toContain("gloo");
    // gpu-check.sh builds against a CUDA libtorch with NCCL.
    if (process.env.SPIN_TEST_DEVICE?.startsWith("cuda")) expect(backends).toContain("nccl");
  });

  test("setNumThreads changes the count and can be restored", () => {
    const original = getNumThreads();
    try {
      setNumThreads(1);
      expect(getNumThreads()).toBe(1);
      expect(runtimeInfo().numThreads).toBe(1);
      // still computes correctly with one thread
      scope(() => {
        const a = [1, 2, 3, 4, 5, 6];
        const out = tensor(new Float64Array(a), { shape: [2, 3] }).matmul(tensor(new Float64Array(a), { shape: [3, 2] }));
        expect(valuesOf(out)).toEqual(matmulRef(a, a, 2, 3, 2));
      });
      setNumThreads(3);
      expect(getNumThreads()).toBe(3);
    } finally {
      setNumThreads(original);
    }
    expect(getNumThreads()).toBe(original);
  });

  test("setNumThreads rejects counts outside 1..1024", () => {
    const original = getNumThreads();
    expectCode(() => setNumThreads(0), "INVALID_ARGUMENT");
    expectCode(() => setNumThreads(-2), "INVALID_ARGUMENT");
    expectCode(() => setNumThreads(1025), "INVALID_ARGUMENT");
    expect(() => setNumThreads(1.5)).toThrow(TypeError);
    expect(getNumThreads()).toBe(original);
  });
});

describe("versions and devices", () => {
  test("torchVersion looks like a version; parallelInfo is libtorch's report", () => {
    const info = runtimeInfo();
    expect(info.torchVersion).toMatch(/^\d+\.\d+/);
    expect(info.parallelInfo).toMatch(/ATen\/Parallel/);
    expect(info.parallelInfo).toContain(`at::get_num_threads() : ${getNumThreads()}`);
  });

  test("cudaAvailable and deviceCount agree with runtimeInfo", () => {
    const count = runtimeInfo().cudaDeviceCount;
    expect(Number.isInteger(count) && count >= 0).toBe(true);
    expect(deviceCount()).toBe(count);
    expect(cudaAvailable()).toBe(count > 0);
  });

  test.runIf(runtimeInfo().cudaDeviceCount === 0)("without CUDA: no devices, and cuda tensors are refused", () => {
    expect(cudaAvailable()).toBe(false);
    expect(deviceCount()).toBe(0);
    expectCode(() => zeros([1], { device: "cuda:0" }), "DEVICE");
  });

  test.runIf(runtimeInfo().cudaDeviceCount > 0)("with CUDA: an op on cuda:0 matches the CPU reference", () =>
    scope(() => {
      const a = [1, 2, 3, 4, 5, 6];
      const b = [0.5, -1, 2, 3, -0.25, 1];
      const ga = tensor(new Float64Array(a), { shape: [2, 3], device: "cuda:0" });
      expect(ga.device).toBe("cuda:0");
      const gb = tensor(new Float64Array(b), { shape: [3, 2] }).to("cuda:0");
      const out = ga.matmul(gb).exp();
      expect(out.device).toBe("cuda:0");
      expectClose(valuesOf(out), matmulRef(a, b, 2, 3, 2).map(Math.exp), 1e-12);
      expect(out.to("cpu").device).toBe("cpu");
    }));
});

describe("random numbers", () => {
  test("manualSeed makes randn and rand repeat; another seed gives other numbers", () =>
    scope(() => {
      manualSeed(1234);
      const first = valuesOf(randn([16]));
      const firstU = valuesOf(rand([8]));
      manualSeed(1234);
      expect(valuesOf(randn([16]))).toEqual(first);
      expect(valuesOf(rand([8]))).toEqual(firstU);
      manualSeed(4321);
      expect(valuesOf(randn([16]))).not.toEqual(first);
    }));

  test("randn over 100k samples has mean ~ 0 and std ~ 1", () =>
    scope(() => {
      manualSeed(7);
      const samples = randn([100_000]).toTypedArray() as Float32Array;
      let sum = 0;
      for (const v of samples) sum += v;
      const mean = sum / samples.length;
      let squares = 0;
      for (const v of samples) squares += (v - mean) ** 2;
      const std = Math.sqrt(squares / (samples.length - 1));
      // standard errors: 0.0032 for the mean, 0.0022 for the std
      expect(Math.abs(mean)).toBeLessThan(0.02);
      expect(Math.abs(std - 1)).toBeLessThan(0.02);
      // about 68.3% within one standard deviation
      const within = samples.filter((v) => Math.abs(v) < 1).length / samples.length;
      expect(Math.abs(within - 0.6827)).toBeLessThan(0.01);
    }));

  test("rand is uniform in [0, 1)", () =>
    scope(() => {
      manualSeed(8);
      const samples = rand([100_000], { dtype: "float64" }).toTypedArray() as Float64Array;
      let min = Infinity;
      let max = -Infinity;
      let sum = 0;
      for (const v of samples) {
        min = Math.min(min, v);
        max = Math.max(max, v);
        sum += v;
      }
      expect(min).toBeGreaterThanOrEqual(0);
      expect(max).toBeLessThan(1);
      expect(Math.abs(sum / samples.length - 0.5)).toBeLessThan(0.01);
      const quarter = samples.filter((v) => v < 0.25).length / samples.length;
      expect(Math.abs(quarter - 0.25)).toBeLessThan(0.01);
    }));

  test("random tensors have the requested shape and dtype", () =>
    scope(() => {
      const r = randn([2, 3]);
      expect(r.shape).toEqual([2, 3]);
      expect(r.dtype).toBe("float32");
      expect(randn([4], { dtype: "float64" }).dtype).toBe("float64");
      expect(rand([3, 1], { dtype: "float16" }).dtype).toBe("float16");
    }));
});

describe("arange, full, zeros, ones", () => {
  test("arange defaults to int64", () =>
    scope(() => {
      const r = arange(0, 5);
      expect(r.dtype).toBe("int64");
      expect(Array.from(r.toTypedArray() as BigInt64Array)).toEqual([0n, 1n, 2n, 3n, 4n]);
      expect(arange(2, 11, 3).toList()).toEqual([2, 5, 8]);
      expect(arange(5, 0, -2).toList()).toEqual([5, 3, 1]);
      expect(arange(-3, -1).toList()).toEqual([-3, -2]);
      expect(arange(0, 0).shape).toEqual([0]);
    }));

  test("arange with a float dtype and a fractional step", () =>
    scope(() => {
      const r = arange(0, 1, 0.25, { dtype: "float32" });
      expect(r.dtype).toBe("float32");
      expect(r.toList()).toEqual([0, 0.25, 0.5, 0.75]);
      expect(arange(1, 2.5, 0.5, { dtype: "float64" }).toList()).toEqual([1, 1.5, 2]);
    }));

  test("full fills with the value, float32 by default", () =>
    scope(() => {
      const f = full([2, 3], 7);
      expect(f.dtype).toBe("float32");
      expect(f.toList()).toEqual([[7, 7, 7], [7, 7, 7]]);
      expect(full([2], -1.5, { dtype: "float64" }).toList()).toEqual([-1.5, -1.5]);
      expect(full([3], 0.1).toList()).toEqual([0.1, 0.1, 0.1].map(Math.fround));
      const ints = full([2], 9, { dtype: "int32" });
      expect(ints.dtype).toBe("int32");
      expect(Array.from(ints.toTypedArray() as Int32Array)).toEqual([9, 9]);
      expect(full([], 4).shape).toEqual([]);
    }));

  test("zeros and ones in several dtypes", () =>
    scope(() => {
      const z = zeros([2, 2]);
      expect(z.dtype).toBe("float32");
      expect(Array.from(z.toTypedArray() as Float32Array)).toEqual([0, 0, 0, 0]);
      expect(Array.from(zeros([3], { dtype: "int64" }).toTypedArray() as BigInt64Array)).toEqual([0n, 0n, 0n]);
      expect(ones([2], { dtype: "float64" }).toList()).toEqual([1, 1]);
      expect(Array.from(ones([2], { dtype: "int64" }).toTypedArray() as BigInt64Array)).toEqual([1n, 1n]);
      expect(ones([2], { dtype: "bool" }).toList()).toEqual([true, true]);
      expect(zeros([2], { dtype: "bool" }).toList()).toEqual([false, false]);
      expect(Array.from(ones([2], { dtype: "float16" }).toTypedArray() as Uint16Array)).toEqual([0x3c00, 0x3c00]);
      expect(Array.from(ones([1], { dtype: "bfloat16" }).toTypedArray() as Uint16Array)).toEqual([0x3f80]);
      expect(Array.from(ones([2], { dtype: "uint8" }).toTypedArray() as Uint8Array)).toEqual([1, 1]);
    }));
});
