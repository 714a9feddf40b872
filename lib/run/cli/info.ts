// `spin-native info` (libtorch, threads, BLAS, CUDA devices) and `spin-native convert FROM TO`.
import { SpinNativeError } from "../../core/errors.js";
import { convertDataset } from "../../data/dataset-write.js";
import { USAGE } from "./usage.js";

export async function info(): Promise<void> {
  const { runtimeInfo } = await import("../../core/runtime.js");
  console.log(JSON.stringify({ ...runtimeInfo(), ompWaitPolicy: process.env.OMP_WAIT_POLICY }, null, 2));
}

export async function convert(argv: string[]): Promise<void> {
  if (argv.length !== 2) throw new SpinNativeError(`convert takes FROM and TO\n${USAGE.convert}`, "INVALID_ARGUMENT", "cli");
  const result = await convertDataset(argv[0]!, argv[1]!);
  console.log(`wrote ${JSON.stringify(result)}`);
}
