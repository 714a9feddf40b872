// The ZeRO stage of a data-parallel run, checked where a user gives it (API option, YAML
// zero_stage, an accelerate or DeepSpeed config). Free of the addon: configs are checked
// before libtorch loads.
import { SpinNativeError } from "../core/errors.js";

/** ZeRO stages: 0 (replicated), 1 (optimizer state), 2 (+ gradients), 3 (+ the layers' weights). */
export type ShardingStage = 0 | 1 | 2 | 3;

/** Checks a ZeRO stage given by a user (API option, YAML `zero_stage`, a DeepSpeed config). */
export function shardingStage(value: unknown, where: string): ShardingStage {
  if (value !== 0 && value !== 1 && value !== 2 && value !== 3) {
    throw new SpinNativeError(`${where}: the ZeRO stage must be 0, 1, 2 or 3, got ${JSON.stringify(value)}`, "INVALID_ARGUMENT", "distributed");
  }
  return value;
}
