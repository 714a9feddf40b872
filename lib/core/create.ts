// Making tensors: from JS values and typed arrays, filled, ranges, random; and the ops that
// combine several tensors (cat, stack, where).
import { type DType, type TensorData, dtypeOfArray, isDType, isFloatingDType } from "./dtype.js";
import { SpinNativeError } from "./errors.js";
import { native } from "./native.js";
import { type Device, type NestedList, Tensor, type TensorLike } from "./tensor.js";

/** Where and as what a new tensor is made. */
export interface TensorOptions {
  dtype?: DType;
  device?: Device;
  /** Make it a leaf that records operations for autograd (floating-point dtypes only). */
  requiresGrad?: boolean;
}

/** Applies `options.requiresGrad` to a tensor just made; frees it when that is refused. */
function finish(made: Tensor, options: TensorOptions): Tensor {
  if (options.requiresGrad === undefined) return made;
  try {
    made.requiresGrad = options.requiresGrad;
    return made;
  } catch (error) {
    made.dispose();
    throw error;
  }
}

function fail(message: string, call: string): never {
  throw new SpinNativeError(`${call}: ${message}`, "INVALID_ARGUMENT", call);
}

/** Flattens rectangular nested arrays, naming the first path where they are ragged or not numbers. */
function flatten(data: NestedList, call: string): { values: (number | boolean)[]; shape: number[] } {
  const shape: number[] = [];
  for (let level: NestedList = data; Array.isArray(level); level = level[0]!) {
    shape.push(level.length);
    if (level.length === 0) break;
  }
  const values: (number | boolean)[] = [];
  const walk = (node: NestedList, dim: number, where: string): void => {
    if (dim === shape.length) {
      if (typeof node !== "number" && typeof node !== "boolean") fail(`expected a number or boolean at ${where || "top"}, got ${typeof node}`, call);
      values.push(node);
      return;
    }
    if (!Array.isArray(node) || node.length !== shape[dim]) {
      fail(`ragged nested array at ${where || "top"}: expected ${shape[dim]} items, got ${Array.isArray(node) ? node.length : "a scalar"}`, call);
    }
    node.forEach((child, i) => walk(child, dim + 1, `${where}[${i}]`));
  };
  walk(data, 0, "");
  return { values, shape };
}

/**
 * A tensor from a number, a boolean, nested arrays or a typed array.
 * Numbers default to float32 (JS has one number type), booleans to bool; a typed array keeps
 * its own dtype (Float64Array → float64, BigInt64Array → int64, …) unless `dtype` is given.
 * Integer dtypes reject non-integer numbers rather than truncate them.
 *
 * `requiresGrad: true` makes it a leaf that autograd tracks (floating-point dtypes only).
 *
 * @example tensor([[1, 2], [3, 4]], { dtype: "float64", requiresGrad: true })
 */
export function tensor(data: NestedList | TensorData, options: TensorOptions & { shape?: number[] } = {}): Tensor {
  return finish(fromData(data, options), options);
}

function fromData(data: NestedList | TensorData, options: TensorOptions & { shape?: number[] }): Tensor {
  const call = "tensor";
  if (options.dtype !== undefined && !isDType(options.dtype)) {
    throw new SpinNativeError(`${call}: unknown dtype '${String(options.dtype)}'`, "DTYPE", call);
  }
  if (ArrayBuffer.isView(data)) {
    const shape = options.shape ?? [data.length];
    const own = dtypeOfArray(data);
    const dtype = options.dtype ?? own ?? fail("a Uint16Array holds raw 16-bit floats: pass dtype float16 or bfloat16", call);
    if (own === null || own === dtype || (own === "uint8" && dtype === "bool")) {
      return new Tensor(native.fromTypedArray(data, shape, dtype, options.device ?? null));
    }
    const raw = native.fromTypedArray(data, shape, own);
    try {
      return new Tensor(raw.to(options.device ?? null, dtype));
    } finally {
      raw.dispose();
    }
  }
  if (options.shape) fail("shape is only for typed-array data", call);
  const { values, shape } = flatten(data, call);
  const allBoolean = values.length > 0 && values.every((v) => typeof v === "boolean");
  const dtype = options.dtype ?? (allBoolean ? "bool" : "float32");
  const numbers = Float64Array.from(values, (v) => Number(v));
  if (!isFloatingDType(dtype)) {
    numbers.forEach((v, i) => {
      if (!Number.isInteger(v)) fail(`value ${v} at flat index ${i} is not an integer, as dtype ${dtype} needs`, call);
    });
  }
  const raw = native.fromTypedArray(numbers, shape, "float64");
  try {
    return new Tensor(raw.to(options.device ?? null, dtype));
  } finally {
    raw.dispose();
  }
}

/** A tensor of `shape` filled with `value` (float32 unless `dtype` says otherwise). */
export function full(shape: number[], value: number, options: TensorOptions = {}): Tensor {
  return finish(new Tensor(native.full(shape, value, options.dtype ?? null, options.device ?? null)), options);
}
export function zeros(shape: number[], options: TensorOptions = {}): Tensor {
  return full(shape, 0, options);
}
export function ones(shape: number[], options: TensorOptions = {}): Tensor {
  return full(shape, 1, options);
}

/** Values from `start` up to (not including) `end` by `step`; int64 unless `dtype` says otherwise. */
export function arange(start: number, end: number, step = 1, options: TensorOptions = {}): Tensor {
  return finish(new Tensor(native.arange(start, end, step, options.dtype ?? null, options.device ?? null)), options);
}

/** Uniform samples in [0, 1) from libtorch's global generator (see {@link manualSeed}). */
export function rand(shape: number[], options: TensorOptions = {}): Tensor {
  return finish(new Tensor(native.random("uniform", shape, options.dtype ?? null, options.device ?? null)), options);
}
/** Standard normal samples from libtorch's global generator (see {@link manualSeed}). */
export function randn(shape: number[], options: TensorOptions = {}): Tensor {
  return finish(new Tensor(native.random("normal", shape, options.dtype ?? null, options.device ?? null)), options);
}
/** Seeds libtorch's global generators, so {@link rand} and {@link randn} repeat. */
export function manualSeed(seed: number): void {
  native.manualSeed(seed);
}

/** Joins tensors along an existing dim. */
export function cat(tensors: Tensor[], dim = 0): Tensor {
  return new Tensor(native.cat(handlesOf(tensors, "cat"), dim));
}
/** Joins tensors along a new dim. */
export function stack(tensors: Tensor[], dim = 0): Tensor {
  return new Tensor(native.stack(handlesOf(tensors, "stack"), dim));
}
/** Elementwise `condition ? a : b`, broadcasting all three. */
export function where(condition: Tensor, a: TensorLike, b: TensorLike): Tensor {
  const operand = (v: TensorLike, name: string) => (v instanceof Tensor ? Tensor.handleOf(v, "where", name) : v);
  return new Tensor(native.where(Tensor.handleOf(condition, "where", "condition"), operand(a, "a"), operand(b, "b")));
}

function handlesOf(tensors: Tensor[], call: string) {
  if (!Array.isArray(tensors)) throw new TypeError(`${call}: argument 'tensors' must be an array of Tensors`);
  return tensors.map((t) => Tensor.handleOf(t, call, "tensors"));
}
