#!/usr/bin/env node
// The spin-native command line: generate | train | sft | iterate | convert | eval | merge | demo
// | info | launch, one module per command in run/cli/. Run configs use the original SPIN config.yaml
// keys (run/config.ts), with --key=value overrides; unknown keys are errors that name the
// nearest valid key. A config is read and checked before its command's module is imported,
// so usage and config errors come before libtorch loads.
import { SpinNativeError } from "./core/errors.js";
import { type RawConfig, loadRunConfig, numberKey } from "./run/config.js";
import { splitArguments } from "./run/cli/common.js";
import { USAGE, help } from "./run/cli/usage.js";

type ConfigCommand = (config: RawConfig) => Promise<void>;
type ArgvCommand = (argv: string[]) => Promise<void>;

/** Commands that take a run config (file and overrides). */
const CONFIG_COMMANDS: Record<string, () => Promise<ConfigCommand>> = {
  generate: async () => (await import("./run/cli/generate.js")).generate,
  train: async () => (await import("./run/cli/train.js")).train,
  sft: async () => (await import("./run/cli/train.js")).sft,
  iterate: async () => (await import("./run/cli/iterate.js")).iterate,
  eval: async () => (await import("./run/cli/eval.js")).evaluate,
  merge: async () => (await import("./run/cli/merge.js")).merge,
};

/** Commands that read their own arguments. */
const ARGV_COMMANDS: Record<string, () => Promise<ArgvCommand>> = {
  launch: async () => (await import("./run/cli/launch.js")).launchCommand,
  info: async () => (await import("./run/cli/info.js")).info,
  convert: async () => (await import("./run/cli/info.js")).convert,
  demo: async () => (await import("./run/cli/demo.js")).demo,
};

async function main(argv: string[]): Promise<void> {
  const [command = "help", ...rest] = argv;
  if (command === "help" || command === "--help" || command === "-h") {
    process.stdout.write(help());
    return;
  }
  if (!USAGE[command]) throw new SpinNativeError(`unknown command '${command}'\n\n${help()}`, "INVALID_ARGUMENT", "cli");
  if (rest.includes("--help") || rest.includes("-h")) {
    process.stdout.write(USAGE[command] + "\n");
    return;
  }
  const withArgv = ARGV_COMMANDS[command];
  if (withArgv) return (await withArgv())(rest);
  const { file, flags } = splitArguments(rest);
  const config = await loadRunConfig(file, flags);
  const run = await CONFIG_COMMANDS[command]!();
  const threads = numberKey(config, "threads");
  if (threads) (await import("./core/runtime.js")).setNumThreads(threads);
  return run(config);
}

/**
 * Calls whose INVALID_ARGUMENT errors are about the command line, the config or a command's
 * arguments (exit code 2), not about the data or a run (1).
 */
const USAGE_CALLS = ["cli", "config", "launch", "convertDataset"];

// Exit codes: 0 finished, 130 interrupted (set where a run stops on Ctrl-C), 2 usage, 1 any other error.
main(process.argv.slice(2)).catch((error: unknown) => {
  const message = error instanceof Error ? error.message : String(error);
  process.stderr.write(`spin-native: ${message}\n`);
  process.exit(error instanceof SpinNativeError && error.code === "INVALID_ARGUMENT" && USAGE_CALLS.includes(error.call) ? 2 : 1);
});
