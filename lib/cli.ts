#!/usr/bin/env node
// The spin-native command line: generate | train | sft | iterate | convert | eval | demo | info.
// Run configs use the original SPIN config.yaml keys (lib/run/config.ts), with --key=value
// overrides; unknown keys are errors that name the nearest valid key.
// The modules that load libtorch (model, generator, trainer, pipeline, runtime, demo) are
// imported by the commands that use them, so usage, config errors and `convert` start fast.
import { mkdir } from "node:fs/promises";
import path from "node:path";

import { distributedOptions, iterationSchedule, loadRunConfig, numberKey, type RawConfig, stringKey, trainingFields } from "./run/config.js";
import { resolveSplitFiles } from "./data/dataset-files.js";
import { type RawRow, readRows, readSpinRows } from "./data/dataset-read.js";
import { convertDataset } from "./data/dataset-write.js";
import { fractionCount, mixDatasets } from "./data/mixer.js";
import { SpinNativeError } from "./core/errors.js";
import type { SelfPlayOptions } from "./spin/generator.js";
import type { LoadModelOptions } from "./model/causal-lm.js";
import { launch, rankDevice } from "./distributed/launch.js";
import { createProgress } from "./run/progress.js";
import { writeReport } from "./run/report.js";
import type { SpinConfig } from "./spin/config.js";
import type { DType } from "./core/dtype.js";
import type { Distributed } from "./distributed/distributed.js";
import { lockRunFolder, runCommand } from "./core/run-lock.js";

const USAGE: Record<string, string> = {
  generate: `spin-native generate [config.yaml] --model_name_or_path=DIR --input=DATA --output_dir=DIR [--split=train --batch_size=16 --frac_len=0 --data_frac=0 --max_new_tokens=256 --prompt_format=chat|spin-instruction --do_sample=false --temperature=1 --top_p=1 --format=jsonl|parquet]
  Self-play generation: answers every SFT prompt of DATA with the model and writes SPIN rows {real, generated} to <output_dir>/<split>/. Resumable.`,
  train: `spin-native train config.yaml [--key=value ...]
  SPIN training of model_name_or_path on dataset_mixer ({path: fraction}) with the original config keys (beta, learning_rate, optim, num_train_epochs, per_device_train_batch_size, gradient_accumulation_steps, max_length, max_prompt_length, lr_scheduler_type, warmup_ratio, seed, output_dir, save_strategy, logging_steps, …). Resumes from the newest checkpoint in output_dir (refused, with the list of changes, when the settings differ from the checkpoint's; --allow_config_change=true resumes anyway and records them); the final model is written to output_dir/model.`,
  sft: `spin-native sft config.yaml [--key=value ...]
  Supervised fine-tuning on the real responses of dataset_mixer (same keys as train).`,
  iterate: `spin-native iterate config.yaml [--key=value ...]
  The SPIN loop: iterations × (generate with θt → mix with t−1 → train θt+1). Keys: model_name_or_path, dataset_mixer (SFT data), iterations, output_dir (the run folder), iteration_schedule ([{learning_rate, beta, num_train_epochs}, …]), previous_fraction, generation keys (batch_size, max_new_tokens, prompt_format, do_sample, …) and training keys. Re-running resumes at the exact stage; report.html is written after every stage.`,
  convert: `spin-native convert FROM TO
  Converts a dataset between jsonl, json and parquet (by extension), in the original's schema.`,
  eval: `spin-native eval [config.yaml] --model_name_or_path=DIR --input=DATA [--split=test --opponent=DIR]
  Held-out metrics: mean NLL of the real responses; with --opponent, the SPIN metrics against it.`,
  demo: `spin-native demo [--out=DIR] [--iterations=3] [--seed=42]
  The SPIN demo on the embedded tiny model and data: θ0 → SPIN iterations (logistic loss, IPO loss, and with an SFT term) → table of held-out exact match (per task), mean log-prob of the ground truth, reward margins and identical pairs, against continued SFT with the same updates (at SPIN's lr and at the best of a sweep); report.html plots them.`,
  launch: `spin-native launch --nproc-per-node=N [--nnodes=M --node-rank=R --master-addr=A --master-port=P --rdzv-id=ID] -- <command ...>
  Starts N worker processes with RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT set (torchrun-style), and OMP_NUM_THREADS = cores / N unless already set; output is prefixed by rank; if a rank fails the others are stopped and the exit code is non-zero. Each job has an id (--rdzv-id, SPIN_JOB_ID, or random for one node): a rank of another job on the same port is refused.`,
  info: `spin-native info
  libtorch version, threads, BLAS build and CUDA devices.`,
};

/** Raw rows (any shape) of one split of a source, file after file. */
async function* streamRawRows(source: string, split: "train" | "test"): AsyncGenerator<RawRow> {
  for (const file of await resolveSplitFiles(source, split)) yield* readRows(file);
}

/** Creates an output folder before any work, so one that cannot be made fails at once, with the OS's reason. */
async function makeOutputFolder(dir: string): Promise<void> {
  try {
    await mkdir(dir, { recursive: true });
  } catch (error) {
    throw new SpinNativeError(`cannot create output folder ${dir}: ${(error as Error).message}`, "IO", "cli");
  }
}

/** A run stopped by Ctrl-C: exit code 130 (as a shell reports a SIGINT), and how to go on. */
function interrupted(what: string): void {
  process.exitCode = 130;
  process.stderr.write(`spin-native: interrupted: ${what}; re-run the same command to resume\n`);
}

function help(): string {
  return `spin-native <command> [options]\n\nCommands:\n${Object.values(USAGE).map((u) => "  " + u.split("\n")[0]).join("\n")}\n\nspin-native <command> --help for details.\n`;
}

function loadOptions(config: RawConfig): LoadModelOptions {
  const dtype = stringKey(config, "torch_dtype");
  const device = stringKey(config, "device");
  // Under launch, "cuda" is this rank's GPU.
  return { ...(dtype && dtype !== "auto" ? { dtype: dtype as DType } : {}), ...(device ? { device: rankDevice(device) } : {}) };
}

function generationOptions(config: RawConfig): SelfPlayOptions {
  const pick = <T>(key: string) => (config[key] ?? undefined) as T | undefined;
  const options: SelfPlayOptions = {};
  const set = <K extends keyof SelfPlayOptions>(field: K, value: SelfPlayOptions[K] | undefined) => {
    if (value !== undefined) options[field] = value;
  };
  set("batchSize", numberKey(config, "batch_size"));
  set("maxNewTokens", numberKey(config, "max_new_tokens"));
  set("fracLen", numberKey(config, "frac_len"));
  set("dataFrac", numberKey(config, "data_frac"));
  set("promptFormat", pick<SelfPlayOptions["promptFormat"]>("prompt_format"));
  set("doSample", pick<boolean>("do_sample"));
  set("temperature", numberKey(config, "temperature"));
  set("topK", numberKey(config, "top_k"));
  set("topP", numberKey(config, "top_p"));
  set("minP", numberKey(config, "min_p"));
  set("repetitionPenalty", numberKey(config, "repetition_penalty"));
  set("format", pick<SelfPlayOptions["format"]>("format"));
  set("seed", numberKey(config, "seed"));
  return options;
}

/** dataset_mixer {path: fraction} (or a single input path) → rows of one split. */
async function mixedRows(config: RawConfig, split: "train" | "test") {
  const mixer = config.dataset_mixer;
  if (mixer && typeof mixer === "object" && !Array.isArray(mixer)) {
    const sources = [];
    for (const [source, fraction] of Object.entries(mixer)) {
      sources.push({ rows: await readSpinRows(source, split), fraction: Number(fraction) });
    }
    return mixDatasets(sources, numberKey(config, "seed") ?? 42);
  }
  return readSpinRows(stringKey(config, "input", true), split);
}

async function trainCommand(config: RawConfig, kind: "spin" | "sft"): Promise<void> {
  const modelDir = stringKey(config, "model_name_or_path", true);
  const outputDir = stringKey(config, "output_dir", true);
  await makeOutputFolder(outputDir);
  const { Distributed } = await import("./distributed/distributed.js");
  // Under `spin-native launch` (WORLD_SIZE > 1) the run is data-parallel.
  const distributed = await Distributed.fromEnv(process.env, distributedOptions(config));
  // The folder is held from before the load (a refused duplicate wastes nothing) until the
  // final model is written.
  const lock = await lockRunFolder(outputDir, runCommand(`spin-native ${kind === "spin" ? "train" : "sft"}`), distributed);
  try {
    await trainAndSave(config, kind, outputDir, modelDir, distributed);
  } finally {
    lock?.release();
  }
  distributed?.destroy();
}

async function trainAndSave(config: RawConfig, kind: "spin" | "sft", outputDir: string, modelDir: string, distributed: Distributed | null): Promise<void> {
  const [{ CausalLM }, { Tokenizer }, { SftTrainer, SpinTrainer }] = await Promise.all([import("./model/causal-lm.js"), import("./model/tokenizer.js"), import("./spin/trainer.js")]);
  const rows = await mixedRows(config, "train");
  const model = await CausalLM.load(modelDir, loadOptions(config));
  const tokenizer = await Tokenizer.fromDir(modelDir);
  const fields = { ...trainingFields(config), outputDir, logToConsole: true };
  const trainer =
    kind === "spin" ? new SpinTrainer({ model, tokenizer, config: fields, distributed }) : new SftTrainer({ model, tokenizer, config: fields, distributed });
  const progress = createProgress(kind === "spin" ? "SPIN" : "SFT");
  trainer.on("step", (s) => progress.update(s.step, s.totalSteps, `loss ${s.metrics.loss?.toFixed(4)}`));
  const abort = new AbortController();
  process.once("SIGINT", () => abort.abort());
  const result = await trainer.train(rows, { resumeFrom: "latest", signal: abort.signal, allowConfigChange: config.allow_config_change === true, folderLocked: true });
  trainer.dispose();
  if (result.aborted) interrupted(`stopped after update ${result.globalStep}, checkpoint saved in ${outputDir}`);
  else progress.done(`${result.globalStep} updates`);
  if (!result.aborted && (distributed?.isMain ?? true)) await model.save(path.join(outputDir, "model"));
  await distributed?.barrier();
  model.dispose();
}

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
  const file = rest[0] && !rest[0].startsWith("--") ? rest[0] : null;
  const flags = file ? rest.slice(1) : rest;
  switch (command) {
    case "launch": {
      const separator = rest.indexOf("--");
      if (separator < 0) throw new SpinNativeError(`launch: put the command after --\n${USAGE.launch}`, "INVALID_ARGUMENT", "cli");
      const option = (name: string) => rest.slice(0, separator).find((f) => f.startsWith(`--${name}=`))?.split("=")[1];
      const result = await launch({
        nprocPerNode: Number(option("nproc-per-node") ?? 1),
        nnodes: Number(option("nnodes") ?? 1),
        nodeRank: Number(option("node-rank") ?? 0),
        masterAddr: option("master-addr") ?? "127.0.0.1",
        masterPort: Number(option("master-port") ?? 29500),
        ...(option("rdzv-id") ? { jobId: option("rdzv-id")! } : {}),
        command: rest.slice(separator + 1),
      });
      process.exitCode = result.exitCode;
      return;
    }
    case "info": {
      const { runtimeInfo } = await import("./core/runtime.js");
      console.log(JSON.stringify({ ...runtimeInfo(), ompWaitPolicy: process.env.OMP_WAIT_POLICY }, null, 2));
      return;
    }
    case "demo": {
      const option = (name: string) => flags.find((f) => f.startsWith(`--${name}=`))?.split("=")[1];
      const runDir = path.resolve(option("out") ?? "spin-demo-run");
      const { formatDemoTable, runDemo } = await import("./run/demo/run.js");
      const integer = (name: string, fallback: number, min: number) => {
        const text = option(name);
        if (text !== undefined && (!/^\d+$/.test(text) || Number(text) < min || Number(text) >= 2 ** 32)) {
          throw new SpinNativeError(`demo: --${name} takes an integer in [${min}, 2^32), got '${text}'\n${USAGE.demo}`, "INVALID_ARGUMENT", "cli");
        }
        return text === undefined ? fallback : Number(text);
      };
      const result = await runDemo({ runDir, iterations: integer("iterations", 3, 1), seed: integer("seed", 42, 0) });
      console.log(`\nSPIN demo (run folder ${runDir}, ${result.seconds.toFixed(0)} s)\n`);
      console.log(formatDemoTable(result.rows));
      console.log(`\ncontinued SFT, held-out exact match by lr: ${result.sweep.map((s) => `${s.learningRate.toExponential()}: ${(100 * s.accuracy).toFixed(1)}%`).join(", ")}`);
      console.log(`report: ${path.join(runDir, "report.html")}`);
      return;
    }
    case "convert": {
      if (rest.length !== 2) throw new SpinNativeError(`convert takes FROM and TO\n${USAGE.convert}`, "INVALID_ARGUMENT", "cli");
      const result = await convertDataset(rest[0]!, rest[1]!);
      console.log(`wrote ${JSON.stringify(result)}`);
      return;
    }
  }
  const config = await loadRunConfig(file, flags);
  const threads = numberKey(config, "threads");
  if (threads) (await import("./core/runtime.js")).setNumThreads(threads);
  switch (command) {
    case "generate": {
      const modelDir = stringKey(config, "model_name_or_path", true);
      const [{ CausalLM }, { Tokenizer }, { SelfPlayGenerator }] = await Promise.all([import("./model/causal-lm.js"), import("./model/tokenizer.js"), import("./spin/generator.js")]);
      const split = stringKey(config, "split") ?? "train";
      const outputDir = stringKey(config, "output_dir", true);
      await makeOutputFolder(outputDir);
      const rows: RawRow[] = [];
      for await (const row of streamRawRows(stringKey(config, "input", true), split as "train" | "test")) rows.push(row);
      const model = await CausalLM.load(modelDir, loadOptions(config));
      const tokenizer = await Tokenizer.fromDir(modelDir);
      const generator = new SelfPlayGenerator({ model, tokenizer, options: { ...generationOptions(config), split, rowLocation: (i) => rows[i]! } });
      const progress = createProgress("generate");
      const abort = new AbortController();
      process.once("SIGINT", () => abort.abort());
      generator.on("progress", (p) => {
        progress.update(p.rows, p.total, `${p.tokensPerSecond.toFixed(0)} tok/s`);
        // Ctrl-C stops the run at this batch boundary: the rows written so far stay, and a re-run resumes after them. A second Ctrl-C kills at once.
        abort.signal.throwIfAborted();
      });
      const summary = await generator.run(rows.map((r) => r.raw), outputDir).catch((error: unknown) => {
        if (abort.signal.aborted) return null;
        throw error;
      });
      if (summary === null) interrupted(`generation stopped, the rows written so far are kept in ${outputDir}`);
      else progress.done(`${summary.rows} rows, EOS rate ${(100 * summary.eosRate).toFixed(1)}%`);
      model.dispose();
      return;
    }
    case "train":
      return trainCommand(config, "spin");
    case "sft":
      return trainCommand(config, "sft");
    case "iterate": {
      const runDir = stringKey(config, "output_dir", true);
      const schedule = iterationSchedule(config);
      await makeOutputFolder(runDir);
      const rows: RawRow[] = [];
      const mixer = config.dataset_mixer;
      // SFT prompts: each source's first ⌊fraction·n⌋ rows (as the training mix subsamples), in order.
      const sources: [string, number][] =
        mixer && typeof mixer === "object" && !Array.isArray(mixer) ? Object.entries(mixer).map(([source, fraction]) => [source, Number(fraction)]) : [[stringKey(config, "input", true), 1]];
      for (const [source, fraction] of sources) {
        const raw: RawRow[] = [];
        for await (const row of streamRawRows(source, "train")) raw.push(row);
        rows.push(...raw.slice(0, fractionCount(fraction, raw.length)));
      }
      const { runPipeline } = await import("./run/pipeline.js");
      const { Distributed } = await import("./distributed/distributed.js");
      const distributed = await Distributed.fromEnv(process.env, distributedOptions(config));
      const abort = new AbortController();
      process.once("SIGINT", () => abort.abort());
      const result = await runPipeline({
        runDir,
        baseModel: stringKey(config, "model_name_or_path", true),
        sftRows: rows.map((r) => r.raw),
        iterations: numberKey(config, "iterations") ?? 3,
        training: { ...trainingFields(config), logToConsole: true } as Partial<Omit<SpinConfig, "outputDir">>,
        ...(schedule ? { perIteration: schedule } : {}),
        generation: { ...generationOptions(config), rowLocation: (i) => rows[i]! },
        previousFraction: numberKey(config, "previous_fraction") ?? 1,
        load: loadOptions(config),
        signal: abort.signal,
        log: (line) => console.log(line),
        onStage: () => writeReport(runDir).then(() => undefined),
        distributed,
        allowConfigChange: config.allow_config_change === true,
      });
      distributed?.destroy();
      if (result.aborted) interrupted(`stopped, the run folder ${runDir} keeps every finished stage`);
      else console.log(`done: ${result.finalModel}`);
      return;
    }
    case "eval": {
      const modelDir = stringKey(config, "model_name_or_path", true);
      const [{ CausalLM }, { Tokenizer }, { SftTrainer, SpinTrainer }] = await Promise.all([import("./model/causal-lm.js"), import("./model/tokenizer.js"), import("./spin/trainer.js")]);
      const rows = await readSpinRows(stringKey(config, "input", true), (stringKey(config, "split") ?? "test") as "train" | "test");
      const model = await CausalLM.load(modelDir, loadOptions(config));
      const tokenizer = await Tokenizer.fromDir(modelDir);
      const outputDir = path.join(stringKey(config, "output_dir") ?? ".spin-eval");
      const sft = new SftTrainer({ model, tokenizer, config: { ...trainingFields(config), outputDir } });
      const metrics: Record<string, number> = await sft.evaluate(rows);
      sft.dispose();
      const opponentDir = stringKey(config, "opponent");
      if (opponentDir) {
        const opponent = await CausalLM.load(opponentDir, loadOptions(config));
        const spin = new SpinTrainer({ model, tokenizer, opponent, config: { ...trainingFields(config), outputDir, precomputeOpponent: false } });
        Object.assign(metrics, await spin.evaluate(rows));
        spin.dispose();
        opponent.dispose();
      }
      console.log(JSON.stringify(metrics, null, 2));
      model.dispose();
      return;
    }
  }
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
