// Host data in and out of tensors: typed-array round trips for every dtype, nested lists,
// 16-bit float bit patterns, int64 beyond 2^53, metadata, item(), dtype conversion, copies.
import { describe, expect, test } from "vitest";

import { type DType, type TensorData, DTYPES, scope, tensor, zeros } from "../lib/index.js";
import { expectCode } from "./helpers.js";

function bytesOf(data: ArrayBufferView): number[] {
  return Array.from(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
}

// One sample per dtype, with edge values (extremes, denormals, -0, NaN, infinities).
const samples: { dtype: DType; data: TensorData; arrayType: new (n: number) => TensorData }[] = [
  {
    dtype: "float32",
    data: new Float32Array([1.5, -2.25, 3.4028234663852886e38, 1e-45, -0, NaN, Infinity, -Infinity]),
    arrayType: Float32Array,
  },
  {
    dtype: "float64",
    data: new Float64Array([0.1, -1e308, Number.MAX_VALUE, Number.MIN_VALUE, -0, NaN, Infinity, Math.PI]),
    arrayType: Float64Array,
  },
  {
    // 1, -2, 0.5, 65504 (max), 2^-24 (smallest denormal), +inf, -0, NaN
    dtype: "float16",
    data: new Uint16Array([0x3c00, 0xc000, 0x3800, 0x7bff, 0x0001, 0x7c00, 0x8000, 0x7e00]),
    arrayType: Uint16Array,
  },
  {
    dtype: "bfloat16",
    data: new Uint16Array([0x3f80, 0xc000, 0x3f00, 0x7f7f, 0x0001, 0x7f80, 0x8000, 0x7fc0]),
    arrayType: Uint16Array,
  },
  {
    dtype: "int32",
    data: new Int32Array([0, 1, -1, 2147483647, -2147483648, 123456789, -7, 42]),
    arrayType: Int32Array,
  },
  {
    dtype: "int64",
    data: new BigInt64Array([0n, -1n, 2n ** 63n - 1n, -(2n ** 63n), 2n ** 53n + 1n, -(2n ** 53n) - 3n, 42n, 7n]),
    arrayType: BigInt64Array,
  },
  { dtype: "uint8", data: new Uint8Array([0, 1, 127, 128, 254, 255, 3, 9]), arrayType: Uint8Array },
  { dtype: "bool", data: new Uint8Array([1, 0, 0, 1, 1, 1, 0, 0]), arrayType: Uint8Array },
];

describe("typed array round trips", () => {
  test("the samples cover every dtype", () => {
    expect(samples.map((s) => s.dtype).sort()).toEqual([...DTYPES].sort());
  });

  for (const { dtype, data, arrayType } of samples) {
    test(`${dtype}: tensor(typedArray) -> toTypedArray() gives identical bytes`, () =>
      scope(() => {
        const t = tensor(data, { shape: [2, 4], dtype });
        expect(t.dtype).toBe(dtype);
        expect(t.shape).toEqual([2, 4]);
        const out = t.toTypedArray();
        expect(out).toBeInstanceOf(arrayType);
        expect(out.length).toBe(8);
        expect(bytesOf(out)).toEqual(bytesOf(data));
      }));
  }

  test("a typed array made from a sub-range of a larger buffer is read from its offset", () =>
    scope(() => {
      const backing = new Float64Array([9, 9, 1, 2, 3, 9]);
      const view = backing.subarray(2, 5);
      expect(Array.from(tensor(view).toTypedArray() as Float64Array)).toEqual([1, 2, 3]);
    }));

  test("the returned typed array is a copy: writing to it does not change the tensor", () =>
    scope(() => {
      const input = new Int32Array([1, 2, 3]);
      const t = tensor(input);
      input[0] = 100; // the tensor copied the data on the way in
      const out = t.toTypedArray() as Int32Array;
      out[1] = 200; // and copies it on the way out
      expect(Array.from(t.toTypedArray() as Int32Array)).toEqual([1, 2, 3]);
    }));

  test("a typed array's own dtype is kept without a dtype option", () =>
    scope(() => {
      expect(tensor(new Float32Array(2)).dtype).toBe("float32");
      expect(tensor(new Float64Array(2)).dtype).toBe("float64");
      expect(tensor(new Int32Array(2)).dtype).toBe("int32");
      expect(tensor(new BigInt64Array(2)).dtype).toBe("int64");
      expect(tensor(new Uint8Array(2)).dtype).toBe("uint8");
    }));

  test("a typed array with another dtype is converted by value", () =>
    scope(() => {
      const t = tensor(new Int32Array([1, -2, 3]), { dtype: "float64" });
      expect(t.dtype).toBe("float64");
      expect(Array.from(t.toTypedArray() as Float64Array)).toEqual([1, -2, 3]);
      const f = tensor(new Float64Array([2.75, -0.5]), { dtype: "float32" });
      expect(Array.from(f.toTypedArray() as Float32Array)).toEqual([2.75, -0.5]);
    }));
});

describe("nested arrays and toList", () => {
  test("2-D numbers default to float32 and come back as the same nested lists", () =>
    scope(() => {
      const t = tensor([[1, 2, 3], [4, 5, 6]]);
      expect(t.dtype).toBe("float32");
      expect(t.shape).toEqual([2, 3]);
      expect(t.toList()).toEqual([[1, 2, 3], [4, 5, 6]]);
    }));

  test("3-D nesting is row-major in toTypedArray", () =>
    scope(() => {
      const t = tensor([[[1, 2], [3, 4]], [[5, 6], [7, 8]]], { dtype: "int32" });
      expect(t.shape).toEqual([2, 2, 2]);
      expect(Array.from(t.toTypedArray() as Int32Array)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
      expect(t.toList()).toEqual([[[1, 2], [3, 4]], [[5, 6], [7, 8]]]);
    }));

  test("float32 rounds values like Math.fround; float64 keeps them exactly", () =>
    scope(() => {
      expect(tensor([0.1, 1 / 3]).toList()).toEqual([Math.fround(0.1), Math.fround(1 / 3)]);
      expect(tensor([0.1, 1 / 3], { dtype: "float64" }).toList()).toEqual([0.1, 1 / 3]);
    }));

  test("booleans default to bool and come back as booleans", () =>
    scope(() => {
      const t = tensor([[true, false], [false, true]]);
      expect(t.dtype).toBe("bool");
      expect(t.toList()).toEqual([[true, false], [false, true]]);
      expect(Array.from(t.toTypedArray() as Uint8Array)).toEqual([1, 0, 0, 1]);
    }));

  test("integer dtypes from numbers", () =>
    scope(() => {
      expect(tensor([-3, 0, 7], { dtype: "int64" }).toList()).toEqual([-3, 0, 7]);
      expect(Array.from(tensor([-3, 0, 7], { dtype: "int64" }).toTypedArray() as BigInt64Array)).toEqual([-3n, 0n, 7n]);
      expect(tensor([0, 200, 255], { dtype: "uint8" }).toList()).toEqual([0, 200, 255]);
      expect(tensor([0, 1, 0], { dtype: "bool" }).toList()).toEqual([false, true, false]);
    }));
});

describe("16-bit floats", () => {
  // IEEE half: sign | 5-bit exponent (bias 15) | 10-bit mantissa. bfloat16: the top 16 bits of a float32.
  test("float16 from numbers gives the known bit patterns", () =>
    scope(() => {
      const values = [1, -2, 0.5, 65504, 2 ** -24, -0, Infinity, 1 + 2 ** -11, 1 + 3 * 2 ** -11, 65520];
      const bits = [0x3c00, 0xc000, 0x3800, 0x7bff, 0x0001, 0x8000, 0x7c00,
        0x3c00, // halfway between 1 and 1+2^-10: ties to even
        0x3c02, // halfway between 1+2^-10 and 1+2^-9: ties to even
        0x7c00, // above the largest finite half's rounding range: +inf
      ];
      const out = tensor(values, { dtype: "float16" }).toTypedArray();
      expect(out).toBeInstanceOf(Uint16Array);
      expect(Array.from(out as Uint16Array)).toEqual(bits);
    }));

  test("bfloat16 from numbers gives the known bit patterns", () =>
    scope(() => {
      const values = [1, -2, 0.5, 3, 1 / 3, 1 + 2 ** -8, 1 + 3 * 2 ** -8, -Infinity];
      const bits = [0x3f80, 0xc000, 0x3f00, 0x4040,
        0x3eab, // 1/3 = 1.0101010|1010…b × 2^-2 rounds up
        0x3f80, // tie to even
        0x3f82, // tie to even (up)
        0xff80,
      ];
      const out = tensor(values, { dtype: "bfloat16" }).toTypedArray();
      expect(out).toBeInstanceOf(Uint16Array);
      expect(Array.from(out as Uint16Array)).toEqual(bits);
    }));

  test("float16 raw bits read back as numbers", () =>
    scope(() => {
      const t = tensor(new Uint16Array([0x3c00, 0xc000, 0x3800, 0x7bff, 0x0001, 0x2e66]), { dtype: "float16" });
      expect(t.dtype).toBe("float16");
      // 0x2e66: exponent 11 -> 2^-4, mantissa 0x266 = 614 -> (1 + 614/1024) / 16
      expect(t.toList()).toEqual([1, -2, 0.5, 65504, 2 ** -24, (1 + 614 / 1024) / 16]);
      expect(Array.from(t.to("float64").toTypedArray() as Float64Array)).toEqual([1, -2, 0.5, 65504, 2 ** -24, (1 + 614 / 1024) / 16]);
    }));

  test("bfloat16 raw bits read back as numbers", () =>
    scope(() => {
      const t = tensor(new Uint16Array([0x3f80, 0xc000, 0x3f00, 0x4040, 0x3eab]), { dtype: "bfloat16" });
      expect(t.dtype).toBe("bfloat16");
      // 0x3eab: exponent 125 -> 2^-2, mantissa 0x2b = 43 -> (1 + 43/128) / 4
      expect(t.toList()).toEqual([1, -2, 0.5, 3, (1 + 43 / 128) / 4]);
    }));

  test("item() of a float16 scalar is the half-rounded value", () =>
    scope(() => {
      // 0.1 in half precision is 0x2e66
      expect(tensor(0.1, { dtype: "float16" }).item()).toBe((1 + 614 / 1024) / 16);
    }));
});

describe("int64 beyond 2^53", () => {
  test("BigInt64Array values survive a round trip exactly", () =>
    scope(() => {
      const big = [2n ** 53n + 1n, -(2n ** 60n) - 7n, 2n ** 63n - 1n, 9007199254740993n];
      const t = tensor(new BigInt64Array(big));
      expect(t.dtype).toBe("int64");
      expect(Array.from(t.toTypedArray() as BigInt64Array)).toEqual(big);
      // and through a copy made by libtorch
      expect(Array.from(t.clone().toTypedArray() as BigInt64Array)).toEqual(big);
    }));

  test("toList() and item() refuse values that a number cannot hold", () =>
    scope(() => {
      const t = tensor(new BigInt64Array([1n, 2n ** 53n + 1n]));
      expectCode(() => t.toList(), "INVALID_ARGUMENT");
      expectCode(() => t.select(0, 1).item(), "INVALID_ARGUMENT");
      expect(t.select(0, 0).item()).toBe(1);
      // exactly 2^53 - 1 is still fine
      expect(tensor(new BigInt64Array([2n ** 53n - 1n])).toList()).toEqual([Number.MAX_SAFE_INTEGER]);
    }));
});

describe("metadata", () => {
  const sizes: Record<DType, number> = { float32: 4, float64: 8, float16: 2, bfloat16: 2, int32: 4, int64: 8, uint8: 1, bool: 1 };
  for (const dtype of DTYPES) {
    test(`${dtype}: shape, ndim, numel, nbytes, dtype, device`, () =>
      scope(() => {
        const t = zeros([2, 3, 4], { dtype });
        expect(t.shape).toEqual([2, 3, 4]);
        expect(t.ndim).toBe(3);
        expect(t.numel).toBe(24);
        expect(t.nbytes).toBe(24 * sizes[dtype]);
        expect(t.dtype).toBe(dtype);
        expect(t.device).toBe("cpu");
        expect(t.disposed).toBe(false);
      }));
  }

  test("a view reports its own elements' bytes", () =>
    scope(() => {
      const v = zeros([4, 5], { dtype: "float64" }).slice(0, 1, 3);
      expect(v.shape).toEqual([2, 5]);
      expect(v.numel).toBe(10);
      expect(v.nbytes).toBe(80);
    }));

  test("toString names shape, dtype and device", () =>
    scope(() => {
      expect(String(zeros([2, 3], { dtype: "int32" }))).toBe("Tensor(shape=[2, 3], dtype=int32, device=cpu)");
    }));
});

describe("item()", () => {
  test("float, int and bool scalars", () =>
    scope(() => {
      expect(tensor(2.5).item()).toBe(2.5);
      expect(tensor([[-0.25]], { dtype: "float64" }).item()).toBe(-0.25);
      const i = tensor([[7]], { dtype: "int32" }).item();
      expect(i).toBe(7);
      expect(typeof i).toBe("number");
      expect(tensor([-9], { dtype: "int64" }).item()).toBe(-9);
      expect(tensor(200, { dtype: "uint8" }).item()).toBe(200);
      const b = tensor([true]).item();
      expect(b).toBe(true);
      expect(typeof b).toBe("boolean");
      expect(tensor(false).item()).toBe(false);
    }));

  test("item() of a tensor with several elements fails with SHAPE_MISMATCH", () =>
    scope(() => {
      expectCode(() => tensor([1, 2]).item(), "SHAPE_MISMATCH");
    }));
});

describe("to() dtype conversions", () => {
  test("float32 -> int32 truncates toward zero", () =>
    scope(() => {
      const t = tensor([1.7, -1.7, 2.5, -0.5, 99.99]).to("int32");
      expect(t.dtype).toBe("int32");
      expect(Array.from(t.toTypedArray() as Int32Array)).toEqual([1, -1, 2, 0, 99]);
    }));

  test("float32 -> float64 keeps the float32 values exactly", () =>
    scope(() => {
      const t = tensor([0.1, -3.3, 1e-3]).to("float64");
      expect(t.dtype).toBe("float64");
      expect(Array.from(t.toTypedArray() as Float64Array)).toEqual([0.1, -3.3, 1e-3].map(Math.fround));
    }));

  test("float64 -> float32 rounds to nearest", () =>
    scope(() => {
      const t = tensor([0.1, 1 / 3], { dtype: "float64" }).to({ dtype: "float32" });
      expect(Array.from(t.toTypedArray() as Float32Array)).toEqual([Math.fround(0.1), Math.fround(1 / 3)]);
    }));

  test("numbers -> bool is 'nonzero'", () =>
    scope(() => {
      expect(tensor([0, 3, -1], { dtype: "int32" }).to("bool").toList()).toEqual([false, true, true]);
      expect(tensor([true, false]).to("float32").toList()).toEqual([1, 0]);
    }));

  test("to(the same dtype or 'cpu') gives a separate handle with the same values", () =>
    scope(() => {
      const a = tensor([1, 2, 3]);
      const b = a.to("float32");
      const c = a.to("cpu");
      expect(c.device).toBe("cpu");
      b.dispose();
      c.dispose();
      expect(a.disposed).toBe(false);
      expect(a.toList()).toEqual([1, 2, 3]);
    }));
});

describe("copies and views", () => {
  test("clone is independent: copyFrom into the clone leaves the original alone", () =>
    scope(() => {
      const a = tensor([[1, 2], [3, 4]]);
      const b = a.clone();
      b.copyFrom(tensor([9])); // broadcasts
      expect(b.toList()).toEqual([[9, 9], [9, 9]]);
      expect(a.toList()).toEqual([[1, 2], [3, 4]]);
      a.copyFrom(tensor([[5, 6], [7, 8]]));
      expect(a.toList()).toEqual([[5, 6], [7, 8]]);
      expect(b.toList()).toEqual([[9, 9], [9, 9]]);
    }));

  test("contiguous copy of a transposed view is independent and in logical order", () =>
    scope(() => {
      const a = tensor([[1, 2, 3], [4, 5, 6]]);
      const c = a.transpose(0, 1).contiguous();
      expect(Array.from(c.toTypedArray() as Float32Array)).toEqual([1, 4, 2, 5, 3, 6]);
      c.copyFrom(zeros([3, 2]));
      expect(a.toList()).toEqual([[1, 2, 3], [4, 5, 6]]);
    }));

  test("copyFrom into a slice writes through to its base (a view, not a copy)", () =>
    scope(() => {
      const a = tensor([[1, 2, 3], [4, 5, 6]]);
      a.slice(1, 1, 3).copyFrom(tensor([[-1, -2], [-3, -4]]));
      expect(a.toList()).toEqual([[1, -1, -2], [4, -3, -4]]);
    }));

  test("copyFrom converts dtype", () =>
    scope(() => {
      const a = zeros([3], { dtype: "float64" });
      a.copyFrom(tensor(new BigInt64Array([1n, -2n, 3n])));
      expect(a.dtype).toBe("float64");
      expect(Array.from(a.toTypedArray() as Float64Array)).toEqual([1, -2, 3]);
    }));
});

describe("empty tensors and scalars", () => {
  test("shape [0]", () =>
    scope(() => {
      const t = tensor([]);
      expect(t.shape).toEqual([0]);
      expect(t.numel).toBe(0);
      expect(t.nbytes).toBe(0);
      expect(t.toList()).toEqual([]);
      expect(t.toTypedArray().length).toBe(0);
    }));

  test("shape [2, 0]", () =>
    scope(() => {
      const t = zeros([2, 0]);
      expect(t.shape).toEqual([2, 0]);
      expect(t.ndim).toBe(2);
      expect(t.numel).toBe(0);
      expect(t.toList()).toEqual([[], []]);
      const fromTyped = tensor(new Float32Array(0), { shape: [2, 0] });
      expect(fromTyped.shape).toEqual([2, 0]);
      expect(tensor(new BigInt64Array(0), { shape: [0, 3] }).toList()).toEqual([]);
    }));

  test("0-dim scalars", () =>
    scope(() => {
      const t = tensor(3.5);
      expect(t.shape).toEqual([]);
      expect(t.ndim).toBe(0);
      expect(t.numel).toBe(1);
      expect(t.nbytes).toBe(4);
      expect(t.item()).toBe(3.5);
      expect(t.toList()).toBe(3.5);
      const b = tensor(true);
      expect(b.dtype).toBe("bool");
      expect(b.shape).toEqual([]);
      expect(b.toList()).toBe(true);
      const typed = tensor(new Int32Array([7]), { shape: [] });
      expect(typed.shape).toEqual([]);
      expect(typed.item()).toBe(7);
    }));
});
