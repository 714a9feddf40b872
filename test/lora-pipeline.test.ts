// SPIN with LoRA end to end through the command line: `spin-native iterate` with the original's
// PEFT keys (use_peft, lora_r, lora_alpha, lora_dropout, lora_target_modules) for 2 iterations
// on a tiny checkpoint. Each iteration writes a PEFT adapter and leaves the base untouched;
// iteration 1 continues from adapter 0. A run killed with SIGKILL in iteration 1's training
// after a checkpoint and re-run ends with the same adapter bytes as an uninterrupted one (the
// adapter dropout included). `spin-native merge` folds the final adapter into a plain model
// whose logits equal base + adapter.
import { existsSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import path from "node:path";

import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { CausalLM, noGrad, ones, tensor, writeParquet } from "../lib/index.js";
import { readSpinRows } from "../lib/data/dataset-read.js";
import { type RunState, runPipeline } from "../lib/run/pipeline.js";
import { CLI, type Exit, ensureDist, runCli, sftRows, spawnNode, writeTinyCheckpoint } from "./cli-helpers.js";
import { removeRoot, tempRoot } from "./fixtures.js";
import { valuesOf } from "./helpers.js";

const root = tempRoot("lora-pipeline");
const base = path.join(root, "base");
const sft = path.join(root, "sft.parquet");
const configFile = path.join(root, "config.yaml");
const plainRun = path.join(root, "run-plain");
const killedRun = path.join(root, "run-killed");
// 16 prompts, batch 4, 2 epochs: iteration 0 trains 8 updates, iteration 1 16 (its rows + iteration 0's).
const STEPS = [8, 16];

const CONFIG = `model_name_or_path: ${base}
dataset_mixer:
  ${sft}: 1.0
iterations: 2
threads: 1
batch_size: 8
max_new_tokens: 4
use_peft: true
lora_r: 4
lora_alpha: 8
lora_dropout: 0.1
lora_target_modules: all-linear
learning_rate: 1.0e-2
beta: 0.5
optim: adamw_torch
warmup_ratio: 0.1
num_train_epochs: 2
per_device_train_batch_size: 4
max_length: 64
max_prompt_length: 48
save_strategy: steps
save_steps: 3
logging_steps: 1
seed: 42
`;

beforeAll(async () => {
  ensureDist();
  await writeTinyCheckpoint(base);
  expect(await writeParquet(sft, sftRows(16))).toBe(16);
  writeFileSync(configFile, CONFIG);
}, 120_000);
afterAll(() => removeRoot(root));

const bytes = (p: string) => readFileSync(p);
const stepOf = (line: string) => Number(/^\[step (\d+) /.exec(line)?.[1] ?? NaN);
const describeExit = (exit: Exit) => `code ${exit.code}, signal ${exit.signal}\nstdout:\n${exit.stdout}\nstderr:\n${exit.stderr}`;

function iterate(runDir: string, killWhen?: (line: string, lines: string[]) => boolean) {
  let killed = false;
  const child = spawnNode(CLI, ["iterate", configFile, `--output_dir=${runDir}`], (line, process) => {
    if (!killed && killWhen?.(line, child.lines)) {
      killed = true;
      process.kill("SIGKILL");
    }
  });
  return child;
}

function logitsOf(model: CausalLM): number[] {
  const ids = tensor([[3, 9, 14, 20, 7]], { dtype: "int64" });
  const mask = ones([1, 5], { dtype: "int64" });
  const logits = noGrad(() => model.forward(ids, mask));
  const values = valuesOf(logits);
  for (const t of [ids, mask, logits]) t.dispose();
  return values;
}

describe("spin-native iterate with use_peft", () => {
  test("an uninterrupted run writes one PEFT adapter per iteration and leaves the base untouched", async () => {
    const baseBytes = bytes(path.join(base, "model.safetensors"));
    const exit = await iterate(plainRun).exit;
    expect(exit.code, describeExit(exit)).toBe(0);
    expect(exit.stdout).toContain(`done: ${path.join(plainRun, "iter1", "adapter")}`);
    expect(exit.stdout).toContain(`iteration 1: training on 32 pairs from ${path.join(plainRun, "iter0", "adapter")}`);
    for (const t of [0, 1]) {
      const dir = path.join(plainRun, `iter${t}`);
      expect(readdirSync(dir).sort()).toEqual(["adapter", "data", "metrics.jsonl", "train"]);
      expect(readdirSync(path.join(dir, "adapter")).sort()).toEqual(["adapter_config.json", "adapter_model.safetensors"]);
      const config = JSON.parse(readFileSync(path.join(dir, "adapter", "adapter_config.json"), "utf8"));
      expect(config).toMatchObject({ peft_type: "LORA", r: 4, lora_alpha: 8, lora_dropout: 0.1, target_modules: "all-linear" });
      expect(readFileSync(path.join(dir, "metrics.jsonl"), "utf8").trimEnd().split("\n")).toHaveLength(STEPS[t]!);
    }
    expect(bytes(path.join(base, "model.safetensors")).equals(baseBytes)).toBe(true);
    expect(bytes(path.join(plainRun, "iter1/adapter/adapter_model.safetensors")).equals(bytes(path.join(plainRun, "iter0/adapter/adapter_model.safetensors")))).toBe(false);
    const state = JSON.parse(readFileSync(path.join(plainRun, "run.json"), "utf8")) as RunState;
    expect(state.lora).toEqual({ r: 4, alpha: 8, dropout: 0.1, targetModules: "all-linear" });
  });

  test("killed in iteration 1's training after a checkpoint and re-run: the same adapters, byte for byte", async () => {
    const trainDir = path.join(killedRun, "iter1", "train");
    const first = iterate(killedRun, (line, lines) => {
      if (!lines.some((l) => l.startsWith("iteration 1: training"))) return false;
      return stepOf(line) >= 5 && existsSync(trainDir) && readdirSync(trainDir).some((n) => /^checkpoint-\d+$/.test(n));
    });
    const firstExit = await first.exit;
    expect(firstExit.signal, describeExit(firstExit)).toBe("SIGKILL");
    expect(existsSync(path.join(killedRun, "iter1", "adapter")), "adapter 1 not saved yet").toBe(false);
    const second = await iterate(killedRun).exit;
    expect(second.code, describeExit(second)).toBe(0);
    const steps = second.stdout.split("\n").map(stepOf).filter((s) => !Number.isNaN(s));
    expect(steps[0]).toBeGreaterThan(1); // resumed after a checkpoint, not from the start
    for (const file of ["iter0/adapter/adapter_model.safetensors", "iter1/adapter/adapter_model.safetensors", "iter1/train/opponent_logps.json"]) {
      expect(bytes(path.join(killedRun, file)).equals(bytes(path.join(plainRun, file))), file).toBe(true);
    }
  });

  test("`adapter` starts the run from an adapter: θ0 = base + adapter, and iteration 0 continues training it", async () => {
    const startRun = path.join(root, "run-from-adapter");
    const start = path.join(plainRun, "iter0", "adapter");
    const exit = await runCli(["iterate", configFile, `--output_dir=${startRun}`, `--adapter=${start}`, "--iterations=1"]);
    expect(exit.code, describeExit(exit)).toBe(0);
    expect(exit.stdout).toContain(`iteration 0: generating with ${start}`);
    // θ0 here is θ1 of the plain run: the same answers (greedy) to the same prompts.
    const answers = async (dir: string) => (await readSpinRows(dir, "train")).map((r) => JSON.stringify(r)).sort();
    expect(await answers(path.join(startRun, "iter0", "data"))).toEqual(await answers(path.join(plainRun, "iter1", "data")));
    const trained = bytes(path.join(startRun, "iter0/adapter/adapter_model.safetensors"));
    expect(trained.equals(bytes(path.join(start, "adapter_model.safetensors")))).toBe(false);
    expect(JSON.parse(readFileSync(path.join(startRun, "run.json"), "utf8")).adapter).toBe(start);
    const other = await runCli(["iterate", configFile, `--output_dir=${startRun}`, `--adapter=${path.join(plainRun, "iter1", "adapter")}`, "--iterations=1"]);
    expect(other.code).toBe(1);
    expect(other.stderr).toContain(`started from adapter ${start}, not ${path.join(plainRun, "iter1", "adapter")}`);
  });

  test("a run folder of a LoRA run refuses other LoRA settings", async () => {
    const exit = await runCli(["iterate", configFile, `--output_dir=${plainRun}`, "--lora_r=8"]);
    expect(exit.code).toBe(1);
    expect(exit.stderr).toMatch(/was run with lora .*"r":4.* not .*"r":8/);
  });

  test("runPipeline refuses an adapter in its load options (each iteration has its own: the lora option)", async () => {
    for (const load of [{ lora: { r: 4 } }, { adapter: path.join(plainRun, "iter0", "adapter") }]) {
      const run = runPipeline({ runDir: path.join(root, "run-load-lora"), baseModel: base, sftRows: sftRows(4), iterations: 1, training: {}, load });
      await expect(run).rejects.toThrow("pipeline: LoRA settings go in the pipeline's lora option, not in load (load.adapter / load.lora)");
    }
    expect(existsSync(path.join(root, "run-load-lora"))).toBe(false);
  });

  test("`spin-native merge` writes a plain model equal to base + adapter", async () => {
    const merged = path.join(root, "merged");
    const adapter = path.join(plainRun, "iter1", "adapter");
    const exit = await runCli(["merge", `--model_name_or_path=${base}`, `--adapter=${adapter}`, `--output_dir=${merged}`]);
    expect(exit.code, describeExit(exit)).toBe(0);
    using withAdapter = await CausalLM.load(base);
    await withAdapter.loadAdapter(adapter);
    using plain = await CausalLM.load(merged);
    expect(plain.adapter).toBeNull();
    const expected = logitsOf(withAdapter);
    const got = logitsOf(plain);
    const scale = Math.max(1, ...expected.map(Math.abs));
    expect(Math.max(...got.map((v, i) => Math.abs(v - expected[i]!)))).toBeLessThan(1e-6 * scale);
    const missing = await runCli(["merge", `--model_name_or_path=${base}`, `--output_dir=${merged}`]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("'adapter' is required");
  });
});
