#!/usr/bin/env node
// The spin-native command line. Commands arrive with the issues that build them: today
// `info` (runtime and BLAS configuration) and `demo` (announces the SPIN demo).
import { runtimeInfo, tensor } from "./index.js";

const HELP = `spin-native <command>

Commands:
  info     libtorch version, threads, BLAS build and CUDA devices
  demo     the SPIN demo on the embedded tiny model and data (coming with the pipeline)
  help     this text
`;

function info(): void {
  const runtime = runtimeInfo();
  const check = tensor([[1, 2], [3, 4]]).matmul(tensor([[1], [1]])).toList();
  console.log(
    JSON.stringify(
      {
        torchVersion: runtime.torchVersion,
        numThreads: runtime.numThreads,
        availableCores: runtime.availableCores,
        blas: runtime.blas,
        ompWaitPolicy: process.env.OMP_WAIT_POLICY,
        cudaDeviceCount: runtime.cudaDeviceCount,
        matmulCheck: check,
      },
      null,
      2,
    ),
  );
}

const [command = "help"] = process.argv.slice(2);
switch (command) {
  case "info":
    info();
    break;
  case "demo":
    info();
    console.log("\nThe SPIN demo (SFT -> SPIN iterations 0..2 on the embedded tiny model) arrives with the pipeline; the native runtime above is ready.");
    break;
  case "help":
  case "--help":
  case "-h":
    process.stdout.write(HELP);
    break;
  default:
    process.stderr.write(`spin-native: unknown command '${command}'\n\n${HELP}`);
    process.exit(2);
}
