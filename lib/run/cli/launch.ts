// `spin-native launch`: starts the worker processes of a data-parallel job (torchrun-style).
import { SpinNativeError } from "../../core/errors.js";
import { launch } from "../../distributed/launch.js";
import { USAGE } from "./usage.js";

export async function launchCommand(argv: string[]): Promise<void> {
  const separator = argv.indexOf("--");
  if (separator < 0) throw new SpinNativeError(`launch: put the command after --\n${USAGE.launch}`, "INVALID_ARGUMENT", "cli");
  const option = (name: string) => argv.slice(0, separator).find((f) => f.startsWith(`--${name}=`))?.split("=")[1];
  const result = await launch({
    nprocPerNode: Number(option("nproc-per-node") ?? 1),
    nnodes: Number(option("nnodes") ?? 1),
    nodeRank: Number(option("node-rank") ?? 0),
    masterAddr: option("master-addr") ?? "127.0.0.1",
    masterPort: Number(option("master-port") ?? 29500),
    ...(option("rdzv-id") ? { jobId: option("rdzv-id")! } : {}),
    command: argv.slice(separator + 1),
  });
  process.exitCode = result.exitCode;
}
