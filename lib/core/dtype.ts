import type { DType, TensorData } from "./native-types.js";

export type { DType, TensorData };

/** Every dtype name, in the order the README lists them. */
export const DTYPES: readonly DType[] = ["float32", "float64", "float16", "bfloat16", "int32", "int64", "uint8", "bool"];

export function isDType(value: string): value is DType {
  return (DTYPES as readonly string[]).includes(value);
}

export function isFloatingDType(dtype: DType): boolean {
  return dtype === "float32" || dtype === "float64" || dtype === "float16" || dtype === "bfloat16";
}

/** The dtype a typed array holds without conversion (Uint16Array: raw 16-bit floats, no default). */
export function dtypeOfArray(data: TensorData): DType | null {
  if (data instanceof Float32Array) return "float32";
  if (data instanceof Float64Array) return "float64";
  if (data instanceof Int32Array) return "int32";
  if (data instanceof BigInt64Array) return "int64";
  if (data instanceof Uint8Array) return "uint8";
  return null;
}
