// SPIN on any Hugging Face checkpoint folder and SFT dataset, with the library's building
// blocks spelled out: load the model and its tokenizer, then for every iteration t
//   SelfPlayGenerator (θt answers every prompt) → SPIN rows {real, generated}
//   → mixed with iteration t−1's rows → SpinTrainer (θt+1 from θt, opponent θt) → save θt+1.
// (runPipeline / `spin-native iterate` does the same with a run.json, a report and exact
// resume of every stage; this example keeps the loop in view.)
//
// Run it from the repository root:
//   npx tsc -p tsconfig.build.json
//   node dist/examples/spin-on-checkpoint.js <model-dir> <data> <out-dir> [--key=value ...]
// e.g.
//   node dist/examples/spin-on-checkpoint.js ./zephyr-sft ./ultrachat/train.parquet ./spin-out --iterations=2 --max-new-tokens=128
//
// <model-dir>: a checkpoint folder (config.json, *.safetensors, tokenizer.json, tokenizer_config.json).
// <data>: a .parquet / .jsonl / .json file, a folder with train* files, or a glob; rows in any
//   shape docs/method.md lists under "Data" ({real, generated}, {messages}, {prompt, response}, {prompt, chosen, rejected}).
// <out-dir>: iter<t>/data (generated rows), iter<t>/train (checkpoints, metrics.jsonl), iter<t>/model (θt+1).
// Ctrl-C stops training at the next update (a checkpoint is written); the same command resumes.
//
// Data-parallel on N processes (each generates a fraction of the prompts and trains on a slice
// of every batch; rank 0 writes):
//   npx spin-native launch --nproc-per-node=N -- node dist/examples/spin-on-checkpoint.js <model-dir> <data> <out-dir>
//
// In your own project, import from "spin-native" instead of "../lib/index.js".
import { existsSync, statSync } from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

import {
  CausalLM,
  Distributed,
  SpinNativeError,
  type SpinRow,
  SpinTrainer,
  Tokenizer,
  generateDataParallel,
  mixDatasets,
  readSpinRows,
  rankDevice,
  setNumThreads,
} from "../lib/index.js";

const USAGE = `usage: node dist/examples/spin-on-checkpoint.js <model-dir> <data> <out-dir> [--key=value ...]
  --iterations=N         SPIN iterations (default 1)
  --limit=N              use only the first N prompts of the data (default: all)
  --max-new-tokens=N     generation length (default 256)
  --gen-batch-size=N     prompts per generate call (default 16)
  --batch-size=N         pairs per update (default 8)
  --epochs=N             epochs per iteration (default 1)
  --max-steps=N          updates per iteration, overriding --epochs (default 0: by epochs)
  --lr=X                 learning rate (default 5e-7)
  --beta=X               β of the SPIN loss (default 0.1)
  --max-length=N         tokens of prompt + response (default 1024)
  --max-prompt-length=N  prompt tokens kept (default 512)
  --save-steps=N         a checkpoint every N updates (default: one per epoch)
  --device=NAME          cpu (default) or cuda / cuda:N
  --threads=N            CPU threads`;

const OPTIONS = {
  iterations: { kind: "int", min: 1, default: 1 },
  limit: { kind: "int", min: 1, default: 0 },
  "max-new-tokens": { kind: "int", min: 1, default: 256 },
  "gen-batch-size": { kind: "int", min: 1, default: 16 },
  "batch-size": { kind: "int", min: 1, default: 8 },
  epochs: { kind: "int", min: 1, default: 1 },
  "max-steps": { kind: "int", min: 0, default: 0 },
  lr: { kind: "number", min: 0, default: 5e-7 },
  beta: { kind: "number", min: 0, default: 0.1 },
  "max-length": { kind: "int", min: 2, default: 1024 },
  "max-prompt-length": { kind: "int", min: 1, default: 512 },
  "save-steps": { kind: "int", min: 0, default: 0 },
  threads: { kind: "int", min: 0, default: 0 },
  device: { kind: "string", default: "cpu" },
} as const;
type Options = { [K in keyof typeof OPTIONS]: (typeof OPTIONS)[K]["default"] extends string ? string : number };

class UsageError extends Error {}

/** Parses `<model-dir> <data> <out-dir> [--key=value ...]`; throws UsageError naming what is wrong. */
export function parseArguments(argv: readonly string[]): { modelDir: string; data: string; outDir: string; options: Options } {
  const positional = argv.filter((a) => !a.startsWith("--"));
  if (positional.length !== 3) throw new UsageError(`expected <model-dir> <data> <out-dir>, got ${positional.length} argument(s)`);
  const options = Object.fromEntries(Object.entries(OPTIONS).map(([k, spec]) => [k, spec.default])) as Options;
  for (const flag of argv.filter((a) => a.startsWith("--"))) {
    const match = /^--([a-z-]+)=(.+)$/.exec(flag);
    if (!match) throw new UsageError(`'${flag}' is not of the form --key=value`);
    const key = match[1]! as keyof typeof OPTIONS;
    const spec = OPTIONS[key];
    if (!spec) throw new UsageError(`unknown option --${match[1]}`);
    if (spec.kind === "string") {
      (options as Record<string, unknown>)[key] = match[2]!;
      continue;
    }
    const value = Number(match[2]);
    if (!Number.isFinite(value) || (spec.kind === "int" && !Number.isInteger(value)) || value < spec.min) {
      throw new UsageError(`--${key} must be ${spec.kind === "int" ? "an integer" : "a number"} >= ${spec.min}, got '${match[2]}'`);
    }
    (options as Record<string, unknown>)[key] = value;
  }
  const [modelDir, data, outDir] = positional.map((p) => path.resolve(p)) as [string, string, string];
  for (const file of ["config.json", "tokenizer.json"]) {
    if (!existsSync(path.join(modelDir, file))) throw new UsageError(`${modelDir} is not a checkpoint folder: it has no ${file}`);
  }
  if (!/[*?]/.test(data) && !existsSync(data)) throw new UsageError(`the data ${data} does not exist`);
  if (existsSync(outDir) && !statSync(outDir).isDirectory()) throw new UsageError(`the output ${outDir} is not a folder`);
  return { modelDir, data, outDir, options };
}

/** Runs SPIN; returns the process exit code. */
export async function main(argv: readonly string[]): Promise<number> {
  if (argv.includes("--help") || argv.includes("-h")) {
    console.log(USAGE);
    return 0;
  }
  let args: ReturnType<typeof parseArguments>;
  try {
    args = parseArguments(argv);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    console.error(`spin-on-checkpoint: ${error.message}\n${USAGE}`);
    return 2;
  }
  const { modelDir, data, outDir, options: o } = args;
  if (o.threads > 0) setNumThreads(o.threads);
  // Under `spin-native launch` (WORLD_SIZE > 1): one rank of a data-parallel run.
  const distributed = await Distributed.fromEnv();
  const device = rankDevice(o.device); // "cuda" is this rank's GPU under launch
  const main = distributed?.isMain ?? true;
  const log = (line: string) => main && console.log(line);

  // SFT prompts and ground truths (any accepted shape, converted to SPIN rows).
  const sftRows = await readSpinRows(data, "train", o.limit > 0 ? { limit: o.limit } : {});
  log(`${sftRows.length} prompts from ${data}`);
  const tokenizer = await Tokenizer.fromDir(modelDir);
  let model = await CausalLM.load(modelDir, { device });

  const abort = new AbortController();
  process.once("SIGINT", () => {
    console.log("\nstopping at the next update (a checkpoint is written); run the same command to resume");
    abort.abort();
  });

  try {
    let previous: SpinRow[] | null = null;
    for (let t = 0; t < o.iterations; t++) {
      const dir = path.join(outDir, `iter${t}`);
      const modelOut = path.join(dir, "model");
      if (existsSync(path.join(modelOut, "config.json"))) {
        // θt+1 of a previous run: continue from it.
        log(`iteration ${t}: done before, loading θ${t + 1} from ${modelOut}`);
        model.dispose();
        model = await CausalLM.load(modelOut, { device });
        previous = await readSpinRows(path.join(dir, "data"), "train");
        continue;
      }

      // 1. Self-play: θt answers every prompt (resumes rows written by an interrupted run).
      const generated = await generateDataParallel(
        { model, tokenizer, options: { batchSize: o["gen-batch-size"], maxNewTokens: o["max-new-tokens"] } },
        sftRows,
        path.join(dir, "data"),
        distributed,
        (p) => log(`iteration ${t}: generated ${p.rows}/${p.total} (${p.tokensPerSecond.toFixed(0)} tok/s)`),
      );
      log(`iteration ${t}: ${generated.rows} rows`);

      // 2. The training pairs: this iteration's rows plus the previous iteration's (the original schedule).
      const own = await readSpinRows(path.join(dir, "data"), "train");
      const rows = previous === null ? own : mixDatasets([{ rows: own, fraction: 1 }, { rows: previous, fraction: 1 }], 42);

      // 3. θt+1 from θt against θt (the opponent's log-probs are computed before the first update).
      const trainer = new SpinTrainer({
        model,
        tokenizer,
        distributed,
        config: {
          outputDir: path.join(dir, "train"),
          learningRate: o.lr,
          beta: o.beta,
          numTrainEpochs: o.epochs,
          maxSteps: o["max-steps"],
          perDeviceTrainBatchSize: o["batch-size"],
          maxLength: o["max-length"],
          maxPromptLength: o["max-prompt-length"],
          ...(o["save-steps"] > 0 ? { saveStrategy: "steps" as const, saveSteps: o["save-steps"] } : {}),
          loggingSteps: 1,
        },
      });
      trainer.on("log", (line) => log(`iteration ${t}: step ${line.step} loss ${line.loss?.toFixed(4)} margins ${line["rewards/margins"]?.toFixed(4)}`));
      const result = await trainer.train(rows, { resumeFrom: "latest", signal: abort.signal });
      trainer.dispose(); // the optimizer state is model-sized: free it before the next iteration
      if (result.aborted) {
        log(`stopped at update ${result.globalStep} of iteration ${t}`);
        return 130;
      }

      // 4. Save θt+1 (with the tokenizer files); it generates and is the opponent next. Every
      // rank holds the same θt+1; rank 0 writes it while the others wait.
      if (main) await model.save(modelOut);
      await distributed?.barrier();
      log(`iteration ${t}: ${result.globalStep} updates on ${rows.length} pairs → ${modelOut}`);
      previous = own;
    }
    log(`done: ${path.join(outDir, `iter${o.iterations - 1}`, "model")}`);
    return 0;
  } finally {
    model.dispose();
    distributed?.destroy();
  }
}

// Run main only when this file is the program (importing it runs nothing).
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  main(process.argv.slice(2)).then(
    (code) => (process.exitCode = code),
    (error: unknown) => {
      console.error(`spin-on-checkpoint: ${error instanceof Error ? error.message : String(error)}`);
      process.exitCode = error instanceof SpinNativeError && error.code === "INVALID_ARGUMENT" ? 2 : 1;
    },
  );
}
