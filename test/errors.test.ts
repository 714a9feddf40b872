// Every failure reaches JavaScript as a SpinNativeError with a stable code, the failing call
// and libtorch's reason without a C++ backtrace — or, for wrongly typed arguments, a TypeError.
import { describe, expect, test } from "vitest";

import {
  SpinNativeError,
  type Tensor,
  arange,
  cat,
  deviceCount,
  full,
  manualSeed,
  rand,
  scope,
  setNumThreads,
  stack,
  tensor,
  where,
  zeros,
} from "../lib/index.js";
import { native } from "../lib/core/native.js";
import { catchNative, expectCode } from "./helpers.js";

const BACKTRACE = [/Exception raised from/, /frame #\d+/, /most recent call first/];

function expectNoBacktrace(error: Error): void {
  for (const pattern of BACKTRACE) expect(error.message).not.toMatch(pattern);
}

function expectTypeError(fn: () => unknown): TypeError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(TypeError);
    expect(error).not.toBeInstanceOf(SpinNativeError);
    return error as TypeError;
  }
  return expect.fail("expected a TypeError, nothing was thrown");
}

describe("the error object", () => {
  test("matmul shape mismatch: SHAPE_MISMATCH, names the call, no C++ backtrace", () =>
    scope(() => {
      const error = expectCode(() => zeros([2, 3]).matmul(zeros([2, 3])), "SHAPE_MISMATCH");
      expect(error).toBeInstanceOf(SpinNativeError);
      expect(error).toBeInstanceOf(Error);
      expect(error.name).toBe("SpinNativeError");
      expect(error.call).toBe("tensor.matmul");
      expect(error.message.startsWith("tensor.matmul:")).toBe(true);
      expect(error.message).toMatch(/2x3/); // libtorch's reason survives
      expect(error.message).not.toMatch(/\n/);
      expectNoBacktrace(error);
      expect(error.stack).toContain("SpinNativeError");
    }));

  test("libtorch errors of several kinds carry no backtrace", () =>
    scope(() => {
      const failures = [
        () => zeros([2]).add(zeros([3])),
        () => zeros([2]).reshape([3]),
        () => zeros([2]).select(0, 5),
        () => tensor([1, 2], { dtype: "int64" }).mean(),
        () => cat([zeros([2, 3]), zeros([2, 4])]),
        () => zeros([2]).sum(4),
      ];
      for (const fail of failures) {
        const error = catchNative(fail);
        expectNoBacktrace(error);
        expect(error.message.startsWith(`${error.call}: `), error.message).toBe(true);
      }
    }));
});

describe("DISPOSED", () => {
  test("any use of a disposed tensor throws DISPOSED naming the call", () =>
    scope(() => {
      const other = zeros([2, 2]);
      const uses: [string, (t: Tensor) => unknown][] = [
        ["tensor.add", (t) => t.add(1)],
        ["tensor.matmul", (t) => t.matmul(other)],
        ["tensor.toTypedArray", (t) => t.toTypedArray()],
        ["tensor.item", (t) => t.item()],
        ["tensor.shape", (t) => t.shape],
        ["tensor.dtype", (t) => t.dtype],
        ["tensor.sum", (t) => t.sum()],
        ["tensor.reshape", (t) => t.reshape([4])],
        ["tensor.clone", (t) => t.clone()],
        ["tensor.to", (t) => t.to("float64")],
        ["tensor.grad", (t) => t.grad],
        ["tensor.backward", (t) => t.backward()],
        ["tensor.setRequiresGrad", (t) => t.requireGrad()],
      ];
      for (const [call, use] of uses) {
        const t = zeros([2, 2]);
        t.dispose();
        const error = expectCode(() => use(t), "DISPOSED");
        expect(error.call).toBe(call);
      }
      const d = zeros([2]);
      d.dispose();
      expectCode(() => d.toList(), "DISPOSED");
    }));

  test("a disposed tensor passed as an argument throws DISPOSED", () =>
    scope(() => {
      const d = zeros([2, 2]);
      d.dispose();
      expectCode(() => zeros([2, 2]).matmul(d), "DISPOSED");
      expectCode(() => zeros([2, 2]).add(d), "DISPOSED");
      expectCode(() => zeros([2, 2]).copyFrom(d), "DISPOSED");
      expectCode(() => cat([zeros([2, 2]), d]), "DISPOSED");
      expectCode(() => where(tensor([true, false]), d, 0), "DISPOSED");
    }));

  test("dispose() twice is fine; disposed and toString report it", () => {
    const t = zeros([3]);
    expect(t.disposed).toBe(false);
    t.dispose();
    expect(() => t.dispose()).not.toThrow();
    expect(t.disposed).toBe(true);
    expect(String(t)).toBe("Tensor(disposed)");
  });
});

describe("DTYPE", () => {
  test("unknown dtype names", () =>
    scope(() => {
      expectCode(() => tensor([1], { dtype: "float8" as never }), "DTYPE");
      expectCode(() => tensor(new Float32Array([1]), { dtype: "float8" as never }), "DTYPE");
      expectCode(() => zeros([2], { dtype: "complex64" as never }), "DTYPE");
      expectCode(() => arange(0, 3, 1, { dtype: "int128" as never }), "DTYPE");
      expectCode(() => rand([2], { dtype: "half" as never }), "DTYPE");
      expectCode(() => zeros([2]).to({ dtype: "float8" as never }), "DTYPE");
    }));

  test("an unknown dtype is reported as DTYPE even for non-integer data", () =>
    scope(() => {
      // lib/core/create.ts checks "integer dtype needs integers" before validating the dtype name
      expectCode(() => tensor([1.5], { dtype: "float8" as never }), "DTYPE");
    }));

  test("ops that libtorch rejects for a dtype", () =>
    scope(() => {
      const ints = tensor([1, 2], { dtype: "int64" });
      expectCode(() => ints.mean(), "DTYPE");
      expectCode(() => ints.softmax(0), "DTYPE");
      expectCode(() => zeros([1, 2]).gather(1, tensor([[0]])), "DTYPE"); // float index
      expectCode(() => zeros([1, 2]).matmul(zeros([2, 1], { dtype: "float64" })), "DTYPE");
      expectCode(() => where(tensor([1, 0]), zeros([2]), 1), "DTYPE"); // float condition
      expectCode(() => rand([2], { dtype: "int64" }), "DTYPE");
    }));

  test("a typed array that does not carry the requested dtype", () =>
    scope(() => {
      expectCode(() => tensor(new Uint16Array([1]), { dtype: "int32" }), "DTYPE");
    }));
});

describe("DEVICE", () => {
  test("to('tpu') and other unknown devices", () =>
    scope(() => {
      const error = expectCode(() => zeros([1]).to("tpu"), "DEVICE");
      expect(error.message).toMatch(/tpu/);
      expectCode(() => zeros([1]).to({ device: "gpu" }), "DEVICE");
      expectCode(() => zeros([1], { device: "tpu" }), "DEVICE");
    }));

  test("a CUDA device index beyond the visible devices", () =>
    scope(() => {
      expectCode(() => zeros([1]).to(`cuda:${deviceCount() + 7}`), "DEVICE");
    }));

  test.runIf(deviceCount() === 0)("cuda on a machine without CUDA", () =>
    scope(() => {
      const error = expectCode(() => zeros([1]).to("cuda:0"), "DEVICE");
      expect(error.message).toMatch(/CUDA is not available/);
      expectCode(() => zeros([1]).to("cuda"), "DEVICE");
      expectCode(() => tensor([1], { device: "cuda:0" }), "DEVICE");
      expectCode(() => zeros([1], { device: "cuda" }), "DEVICE");
    }));
});

describe("SHAPE_MISMATCH", () => {
  test("broadcasting, cat, stack, expand, copyFrom", () =>
    scope(() => {
      expectCode(() => zeros([2]).add(zeros([3])), "SHAPE_MISMATCH");
      expectCode(() => cat([zeros([2, 3]), zeros([2, 4])]), "SHAPE_MISMATCH");
      expectCode(() => stack([zeros([2]), zeros([3])]), "SHAPE_MISMATCH");
      expectCode(() => zeros([3]).expand([2, 4]), "SHAPE_MISMATCH");
      expectCode(() => zeros([2]).copyFrom(zeros([3])), "SHAPE_MISMATCH");
      expectCode(() => zeros([3]).matmul(zeros([4])), "SHAPE_MISMATCH");
    }));

  test("typed-array data that does not fill the shape; negative sizes", () =>
    scope(() => {
      expectCode(() => tensor(new Float32Array(3), { shape: [2, 2] }), "SHAPE_MISMATCH");
      expectCode(() => zeros([-1]), "SHAPE_MISMATCH");
    }));

  test("reshape to a shape with another number of elements", () =>
    scope(() => {
      // libtorch raises this one as std::runtime_error, not c10::Error
      const error = expectCode(() => zeros([2]).reshape([3]), "SHAPE_MISMATCH");
      expect(error.message).toMatch(/^tensor\.reshape: /);
    }));
});

describe("INVALID_ARGUMENT", () => {
  test("ragged nested arrays name the path", () =>
    scope(() => {
      const ragged = expectCode(() => tensor([[1, 2], [3]]), "INVALID_ARGUMENT");
      expect(ragged.call).toBe("tensor");
      expect(ragged.message).toMatch(/ragged/);
      expect(ragged.message).toContain("[1]");
      const deep = expectCode(() => tensor([[[1], [2]], [[3], [4, 5]]]), "INVALID_ARGUMENT");
      expect(deep.message).toContain("[1][1]");
      const notNumber = expectCode(() => tensor([[1, "a"]] as never), "INVALID_ARGUMENT");
      expect(notNumber.message).toContain("[0][1]");
      const mixedDepth = expectCode(() => tensor([1, [2]] as never), "INVALID_ARGUMENT");
      expect(mixedDepth.message).toContain("[1]");
    }));

  test("non-integers for integer dtypes", () =>
    scope(() => {
      const error = expectCode(() => tensor([1, 2.5], { dtype: "int64" }), "INVALID_ARGUMENT");
      expect(error.message).toMatch(/2\.5/);
      expectCode(() => tensor([NaN], { dtype: "int32" }), "INVALID_ARGUMENT");
      expectCode(() => tensor([Infinity], { dtype: "uint8" }), "INVALID_ARGUMENT");
      expectCode(() => tensor([0.5], { dtype: "bool" }), "INVALID_ARGUMENT");
    }));

  test("bad typed-array inputs", () =>
    scope(() => {
      expectCode(() => tensor(new Uint16Array([1])), "INVALID_ARGUMENT"); // 16-bit floats need a dtype
      expectCode(() => tensor(new Uint8Array([0, 2]), { dtype: "bool" }), "INVALID_ARGUMENT");
      expectCode(() => tensor([1, 2], { shape: [2] }), "INVALID_ARGUMENT"); // shape is for typed arrays
    }));

  test("indices out of range", () =>
    scope(() => {
      expectCode(() => zeros([2]).select(0, 5), "INVALID_ARGUMENT");
      expectCode(() => zeros([2]).indexSelect(0, tensor([5], { dtype: "int64" })), "INVALID_ARGUMENT");
      expectCode(() => zeros([2]).sum(3), "INVALID_ARGUMENT");
      expectCode(() => zeros([2, 3]).transpose(0, 5), "INVALID_ARGUMENT");
      expectCode(() => tensor(3).select(0, 0), "INVALID_ARGUMENT");
    }));

  test("gather with an out-of-range index is an index error like select/indexSelect", () =>
    scope(() => {
      expectCode(() => zeros([1, 2]).gather(1, tensor([[5]], { dtype: "int64" })), "INVALID_ARGUMENT");
    }));

  test("argument values the addon rejects", () =>
    scope(() => {
      expectCode(() => zeros([2]).clamp(), "INVALID_ARGUMENT");
      expectCode(() => arange(0, 10).slice(0, 0, 5, 0), "INVALID_ARGUMENT");
      expectCode(() => arange(0, 10).slice(0, 0, 5, -1), "INVALID_ARGUMENT");
      expectCode(() => zeros([2]).sum([]), "INVALID_ARGUMENT");
      expectCode(() => zeros([2, 2]).prod([0, 1] as never), "INVALID_ARGUMENT");
      expectCode(() => cat([]), "INVALID_ARGUMENT");
      expectCode(() => stack([]), "INVALID_ARGUMENT");
      expectCode(() => arange(0, 5, 0), "INVALID_ARGUMENT");
      expectCode(() => manualSeed(-1), "INVALID_ARGUMENT");
      expectCode(() => setNumThreads(0), "INVALID_ARGUMENT");
    }));
});

describe("TypeError for wrongly typed arguments", () => {
  test("native entry points name the call and the argument", () =>
    scope(() => {
      const a = zeros([2, 2]);
      const reshape = expectTypeError(() => a.reshape("x" as never));
      expect(reshape.message).toBe("tensor.reshape: argument 1 'shape' must be an array of integers");
      expect(expectTypeError(() => a.add("x" as never)).message).toMatch(/^tensor\.add: /);
      expect(expectTypeError(() => a.sum("x" as never)).message).toMatch(/^tensor\.sum: /);
      expectTypeError(() => a.softmax("1" as never));
      expectTypeError(() => a.clamp("0" as never));
      expectTypeError(() => a.select(0, 1.5));
      expectTypeError(() => a.slice(0, 0.5));
      expectTypeError(() => a.transpose(0, "1" as never));
      expectTypeError(() => a.permute([0, "1"] as never));
      expectTypeError(() => a.expand(3 as never));
      expectTypeError(() => a.indexSelect(0, [0] as never));
      expectTypeError(() => zeros("3" as never));
      expectTypeError(() => full([2], "1" as never));
      expectTypeError(() => arange("0" as never, 3));
      expectTypeError(() => manualSeed(1.5));
      expectTypeError(() => setNumThreads("2" as never));
      expectTypeError(() => cat([a, 3] as never));
      expectTypeError(() => where(1 as never, a, a));
    }));

  test("Tensor-typed parameters reject non-tensors with a TypeError", () =>
    scope(() => {
      const a = zeros([2, 2]);
      expectTypeError(() => a.matmul(3 as never));
      expectTypeError(() => a.gather(1, 3 as never));
      expectTypeError(() => a.copyFrom({} as never));
      expectTypeError(() => cat("x" as never));
    }));

  test("those TypeErrors name the call, like the native ones", () =>
    scope(() => {
      const a = zeros([2, 2]);
      // lib/core/tensor.ts reads `other.#handle` directly, which throws V8's
      // "Cannot read private member #handle from an object whose class did not declare it"
      expect(expectTypeError(() => a.matmul(3 as never)).message).toMatch(/^tensor\.matmul: /);
      expect(expectTypeError(() => a.gather(1, 3 as never)).message).toMatch(/^tensor\.gather: /);
      expect(expectTypeError(() => a.indexSelect(0, {} as never)).message).toMatch(/^tensor\.indexSelect: /);
      expect(expectTypeError(() => a.copyFrom(3 as never)).message).toMatch(/^tensor\.copyFrom: /);
    }));

  test("the native class cannot be constructed with new", () => {
    const error = expectTypeError(() => new (native.NativeTensor as unknown as new () => unknown)());
    expect(error.message).toMatch(/not by new/);
    expectTypeError(() => new (native.NativeTensor as unknown as new (x: number) => unknown)(1));
  });
});

describe("OUT_OF_MEMORY", () => {
  test("zeros([1e12]) is refused by the CPU allocator and the process carries on", () => {
    const error = expectCode(() => zeros([1e12]), "OUT_OF_MEMORY");
    expect(error.call).toBe("full");
    expectNoBacktrace(error);
    scope(() => {
      expect(zeros([3]).add(1).toList()).toEqual([1, 1, 1]);
    });
  });
});
