// Tensor: the typed TypeScript face of a native tensor handle. Every op returns a new
// Tensor that the caller owns: dispose() it, create it inside scope(), or let the
// FinalizationRegistry free it eventually.
import type { BinaryOp, NativeTensor, Operand, ReduceOp, UnaryOp } from "./native-types.js";
import { type DType, type TensorData, isDType } from "./dtype.js";
import { SpinNativeError } from "./errors.js";
import { adopt, release } from "./memory.js";

/** `"cpu"`, `"cuda"` or `"cuda:N"`. */
export type Device = string;

/** A tensor or a plain number/boolean, which follows the tensor's dtype like a Python scalar. */
export type TensorLike = Tensor | number | boolean;

/** Nested arrays of numbers or booleans, as returned by {@link Tensor.toList}. */
export type NestedList = number | boolean | NestedList[];

function dimsOf(dims: number | number[] | undefined): number[] | null {
  if (dims === undefined) return null;
  return Array.isArray(dims) ? dims : [dims];
}

export class Tensor implements Disposable {
  readonly #handle: NativeTensor;

  /** @internal Tensors are made by factories ({@link tensor}, {@link zeros}, …) and ops. */
  constructor(handle: NativeTensor) {
    this.#handle = handle;
    adopt(this, handle);
  }

  /** @internal The native handle behind a tensor argument (for lib/ only); a TypeError names the call otherwise. */
  static handleOf(tensor: unknown, call = "tensor", name = "tensor"): NativeTensor {
    if (!(tensor instanceof Tensor)) throw new TypeError(`${call}: argument '${name}' must be a Tensor`);
    return tensor.#handle;
  }

  static #operand(value: TensorLike): Operand {
    return value instanceof Tensor ? value.#handle : value;
  }

  #wrap(handle: NativeTensor): Tensor {
    return new Tensor(handle);
  }

  // ---- metadata ----------------------------------------------------------------------

  /** Sizes of each dimension. */
  get shape(): number[] {
    return this.#handle.shape;
  }
  /** Number of dimensions. */
  get ndim(): number {
    return this.#handle.shape.length;
  }
  /** Number of elements. */
  get numel(): number {
    return this.#handle.shape.reduce((a, b) => a * b, 1);
  }
  get dtype(): DType {
    return this.#handle.dtype;
  }
  get device(): Device {
    return this.#handle.device;
  }
  /** Bytes of this tensor's elements. */
  get nbytes(): number {
    return this.#handle.nbytes;
  }
  /** True once {@link dispose} ran; any further use throws a `DISPOSED` error. */
  get disposed(): boolean {
    return this.#handle.disposed;
  }

  // ---- lifecycle and conversion -----------------------------------------------------

  /** Drops this handle's reference to the native tensor. Safe to call twice. */
  dispose(): void {
    release(this);
    this.#handle.dispose();
  }
  [Symbol.dispose](): void {
    this.dispose();
  }

  /** A copy of the elements in a typed array (bool → Uint8Array, 16-bit floats → raw bits in a Uint16Array). */
  toTypedArray(): TensorData {
    return this.#handle.toTypedArray();
  }

  /** The elements as nested arrays of numbers (or booleans); int64 beyond 2^53 throws. */
  toList(): NestedList {
    const is16Bit = this.dtype === "float16" || this.dtype === "bfloat16";
    const flat = is16Bit ? this.#handle.to(null, "float32") : this.#handle;
    const data = flat.toTypedArray();
    if (is16Bit) flat.dispose();
    const at = (i: number): number | boolean => {
      const value = data[i] as number | bigint;
      if (this.dtype === "bool") return value !== 0;
      if (typeof value === "bigint") {
        if (value > BigInt(Number.MAX_SAFE_INTEGER) || value < BigInt(Number.MIN_SAFE_INTEGER)) {
          throw new SpinNativeError(`tensor.toList: int64 value ${value} is beyond 2^53; use toTypedArray()`, "INVALID_ARGUMENT", "tensor.toList");
        }
        return Number(value);
      }
      return value;
    };
    const shape = this.shape;
    let next = 0;
    const build = (dim: number): NestedList => {
      if (dim === shape.length) return at(next++);
      return Array.from({ length: shape[dim]! }, () => build(dim + 1));
    };
    return build(0);
  }

  /** The value of a one-element tensor. */
  item(): number | boolean {
    return this.#handle.item();
  }

  /** A tensor on another device and/or of another dtype (this tensor itself, re-handled, when nothing changes). */
  to(target: Device | DType | { device?: Device; dtype?: DType }): Tensor {
    if (typeof target === "string") {
      return isDType(target) ? this.#wrap(this.#handle.to(null, target)) : this.#wrap(this.#handle.to(target, null));
    }
    return this.#wrap(this.#handle.to(target.device ?? null, target.dtype ?? null));
  }
  contiguous(): Tensor {
    return this.#wrap(this.#handle.contiguous());
  }
  clone(): Tensor {
    return this.#wrap(this.#handle.clone());
  }
  /** The same data, cut from the autograd graph. */
  detach(): Tensor {
    return this.#wrap(this.#handle.detach());
  }
  /** Copies `source` into this tensor in place (broadcasting, converting dtype and device). */
  copyFrom(source: Tensor): this {
    this.#handle.copyFrom(Tensor.handleOf(source, "tensor.copyFrom", "source"));
    return this;
  }

  // ---- elementwise --------------------------------------------------------------------

  #unary(op: UnaryOp): Tensor {
    return this.#wrap(this.#handle.unary(op));
  }
  #binary(op: BinaryOp, other: TensorLike): Tensor {
    return this.#wrap(this.#handle.binary(op, Tensor.#operand(other)));
  }

  neg(): Tensor { return this.#unary("neg"); }
  abs(): Tensor { return this.#unary("abs"); }
  sqrt(): Tensor { return this.#unary("sqrt"); }
  rsqrt(): Tensor { return this.#unary("rsqrt"); }
  square(): Tensor { return this.#unary("square"); }
  reciprocal(): Tensor { return this.#unary("reciprocal"); }
  exp(): Tensor { return this.#unary("exp"); }
  log(): Tensor { return this.#unary("log"); }
  log1p(): Tensor { return this.#unary("log1p"); }
  sigmoid(): Tensor { return this.#unary("sigmoid"); }
  /** log(sigmoid(x)), computed stably (the SPIN loss is −logSigmoid(β·Δ)). */
  logSigmoid(): Tensor { return this.#unary("logSigmoid"); }
  tanh(): Tensor { return this.#unary("tanh"); }
  relu(): Tensor { return this.#unary("relu"); }
  silu(): Tensor { return this.#unary("silu"); }
  sign(): Tensor { return this.#unary("sign"); }
  floor(): Tensor { return this.#unary("floor"); }
  ceil(): Tensor { return this.#unary("ceil"); }
  round(): Tensor { return this.#unary("round"); }
  logicalNot(): Tensor { return this.#unary("logicalNot"); }
  isNan(): Tensor { return this.#unary("isNan"); }
  isFinite(): Tensor { return this.#unary("isFinite"); }

  /** Elementwise sum, broadcasting like PyTorch. */
  add(other: TensorLike): Tensor { return this.#binary("add", other); }
  sub(other: TensorLike): Tensor { return this.#binary("sub", other); }
  mul(other: TensorLike): Tensor { return this.#binary("mul", other); }
  /** True division (integers divide to floats). */
  div(other: TensorLike): Tensor { return this.#binary("div", other); }
  pow(exponent: TensorLike): Tensor { return this.#binary("pow", exponent); }
  maximum(other: TensorLike): Tensor { return this.#binary("maximum", other); }
  minimum(other: TensorLike): Tensor { return this.#binary("minimum", other); }
  eq(other: TensorLike): Tensor { return this.#binary("eq", other); }
  ne(other: TensorLike): Tensor { return this.#binary("ne", other); }
  lt(other: TensorLike): Tensor { return this.#binary("lt", other); }
  le(other: TensorLike): Tensor { return this.#binary("le", other); }
  gt(other: TensorLike): Tensor { return this.#binary("gt", other); }
  ge(other: TensorLike): Tensor { return this.#binary("ge", other); }
  logicalAnd(other: TensorLike): Tensor { return this.#binary("logicalAnd", other); }
  logicalOr(other: TensorLike): Tensor { return this.#binary("logicalOr", other); }

  /** Limits every element to [min, max]; either bound may be omitted. */
  clamp(min?: number | null, max?: number | null): Tensor {
    return this.#wrap(this.#handle.clamp(min ?? null, max ?? null));
  }

  /**
   * Inverted dropout (always on: call it only where training wants it): each element is
   * zeroed with probability `p` and the rest scaled by 1 / (1 − p). Draws one seed from
   * libtorch's default generator ({@link manualSeed}); the mask is a hash of that seed and
   * the element's index, recomputed in backward rather than stored. Not the same draws as
   * `torch.nn.functional.dropout`.
   */
  dropout(p: number): Tensor {
    return this.#wrap(this.#handle.dropout(p));
  }

  // ---- reductions ---------------------------------------------------------------------

  #reduce(op: ReduceOp, dims: number | number[] | undefined, keepDim: boolean): Tensor {
    return this.#wrap(this.#handle.reduce(op, dimsOf(dims), keepDim));
  }

  /** Sum over `dims` (all elements when omitted). */
  sum(dims?: number | number[], keepDim = false): Tensor { return this.#reduce("sum", dims, keepDim); }
  mean(dims?: number | number[], keepDim = false): Tensor { return this.#reduce("mean", dims, keepDim); }
  /** Product over one dim (all elements when omitted). */
  prod(dim?: number, keepDim = false): Tensor { return this.#reduce("prod", dim, keepDim); }
  /** Largest value over `dims` (all elements when omitted). */
  max(dims?: number | number[], keepDim = false): Tensor { return this.#reduce("amax", dims, keepDim); }
  min(dims?: number | number[], keepDim = false): Tensor { return this.#reduce("amin", dims, keepDim); }
  /** Index of the largest value along `dim` (in the flattened tensor when omitted); int64. */
  argmax(dim?: number, keepDim = false): Tensor { return this.#reduce("argmax", dim, keepDim); }
  argmin(dim?: number, keepDim = false): Tensor { return this.#reduce("argmin", dim, keepDim); }
  /** log(sum(exp(x))) over `dims`, computed stably. */
  logsumexp(dims?: number | number[], keepDim = false): Tensor { return this.#reduce("logsumexp", dims, keepDim); }
  all(dim?: number, keepDim = false): Tensor { return this.#reduce("all", dim, keepDim); }
  any(dim?: number, keepDim = false): Tensor { return this.#reduce("any", dim, keepDim); }

  softmax(dim: number): Tensor {
    return this.#wrap(this.#handle.softmax(dim, false));
  }
  logSoftmax(dim: number): Tensor {
    return this.#wrap(this.#handle.softmax(dim, true));
  }

  // ---- linear algebra -----------------------------------------------------------------

  /** Matrix product with PyTorch's broadcasting rules (batched, vector cases). */
  matmul(other: Tensor): Tensor {
    return this.#wrap(this.#handle.matmul(Tensor.handleOf(other, "tensor.matmul", "other")));
  }
  /** {@link matmul} on a worker thread: the event loop keeps running meanwhile. */
  async matmulAsync(other: Tensor): Promise<Tensor> {
    return this.#wrap(await this.#handle.matmulAsync(Tensor.handleOf(other, "tensor.matmulAsync", "other")));
  }

  // ---- indexing and shape -------------------------------------------------------------

  /** Picks values along `dim` at `index` (int64, same rank): out[i][j] = x[i][index[i][j]] for dim 1. */
  gather(dim: number, index: Tensor): Tensor {
    return this.#wrap(this.#handle.gather(dim, Tensor.handleOf(index, "tensor.gather", "index")));
  }
  /** The slices at the given indices (1-D int64 tensor) along `dim`. */
  indexSelect(dim: number, index: Tensor): Tensor {
    return this.#wrap(this.#handle.indexSelect(dim, Tensor.handleOf(index, "tensor.indexSelect", "index")));
  }
  /** The slice at `index` along `dim`, with that dim removed (negative indices count from the end). */
  select(dim: number, index: number): Tensor {
    return this.#wrap(this.#handle.select(dim, index));
  }
  /** Python's `x[start:end:step]` along `dim` — a view. */
  slice(dim: number, start?: number | null, end?: number | null, step = 1): Tensor {
    return this.#wrap(this.#handle.slice(dim, start ?? null, end ?? null, step));
  }
  /** The same elements in another shape; one size may be -1. */
  reshape(shape: number[]): Tensor {
    return this.#wrap(this.#handle.reshape(shape));
  }
  transpose(dim0: number, dim1: number): Tensor {
    return this.#wrap(this.#handle.transpose(dim0, dim1));
  }
  permute(dims: number[]): Tensor {
    return this.#wrap(this.#handle.permute(dims));
  }
  /** Removes size-1 dims (only `dim`, when given). */
  squeeze(dim?: number): Tensor {
    return this.#wrap(this.#handle.squeeze(dim ?? null));
  }
  unsqueeze(dim: number): Tensor {
    return this.#wrap(this.#handle.unsqueeze(dim));
  }
  /** A broadcast view to `shape` (-1 keeps a size). */
  expand(shape: number[]): Tensor {
    return this.#wrap(this.#handle.expand(shape));
  }

  // ---- autograd -----------------------------------------------------------------------

  /** Whether operations on this tensor are recorded for {@link backward}. Settable on leaf tensors. */
  get requiresGrad(): boolean {
    return this.#handle.requiresGrad;
  }
  set requiresGrad(value: boolean) {
    this.#handle.setRequiresGrad(value);
  }
  /** Chainable form of `requiresGrad = value`. */
  requireGrad(value = true): this {
    this.#handle.setRequiresGrad(value);
    return this;
  }
  /** True for tensors created by the user rather than by a recorded op. */
  get isLeaf(): boolean {
    return this.#handle.isLeaf;
  }
  /**
   * Accumulates d(this)/d(leaf) into every leaf's {@link grad}. A one-element tensor needs no
   * `gradient`; otherwise pass d(loss)/d(this).
   */
  backward(gradient?: Tensor | null, options: { retainGraph?: boolean } = {}): void {
    this.#handle.backward(gradient ? Tensor.handleOf(gradient, "tensor.backward", "gradient") : null, options.retainGraph ?? false);
  }
  /** The accumulated gradient (a new handle each call; dispose it), or null before backward. */
  get grad(): Tensor | null {
    const grad = this.#handle.grad();
    return grad ? this.#wrap(grad) : null;
  }
  /** Frees the accumulated gradient (PyTorch's `zero_grad(set_to_none=True)`). */
  zeroGrad(): void {
    this.#handle.zeroGrad();
  }

  toString(): string {
    return this.disposed ? "Tensor(disposed)" : `Tensor(shape=[${this.shape.join(", ")}], dtype=${this.dtype}, device=${this.device})`;
  }
}
