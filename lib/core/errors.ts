import type { ErrorCode } from "./native-types.js";

/**
 * Why a native call failed. The addon picks the code from libtorch's exception type and
 * message; `TORCH` is a libtorch failure that fits no narrower code.
 */
export type { ErrorCode };

/**
 * The error every spin-native call throws (or rejects with) for a failure in native code or
 * in the arguments' values. Wrong argument types and counts are `TypeError`s instead.
 */
export class SpinNativeError extends Error {
  /** What kind of failure this is, stable across libtorch versions. */
  readonly code: ErrorCode;
  /** The call that failed, e.g. `tensor.matmul`. */
  readonly call: string;

  constructor(message: string, code: ErrorCode, call: string) {
    super(message);
    this.name = "SpinNativeError";
    this.code = code;
    this.call = call;
  }
}
