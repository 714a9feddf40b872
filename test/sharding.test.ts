// ZeRO stages 1–3 on c10d/Gloo with real processes: the sharded optimizer, reducer and
// weights against the replicated ones on 2 and 3 ranks (accumulation, clipping, a skipped
// non-finite update, tied weights), SpinTrainer runs against one rank, resume bitwise and
// across stages, and the ZeRO stage read from configs.
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";

import { describe, expect, test } from "vitest";

import { loadSafetensors } from "../lib/model/safetensors.js";
import { distributedOptions, loadRunConfig } from "../lib/run/config.js";
import { writeCharModel } from "./tiny-char-model.js";
import { spawnNode } from "./cli-helpers.js";
import { CLI, WORKER, distTestRoot, freshPort, launch, read, runAlone, writeCharCheckpoint } from "./dist-helpers.js";

const root = distTestRoot("spin-zero-");

type Params = Record<string, number[]>;

/** The largest difference between two parameter sets, relative to max(1e-3, |value|). */
function worstDifference(a: Params, b: Params): number {
  let worst = 0;
  for (const [name, values] of Object.entries(a)) {
    const other = b[name]!;
    expect(other, name).toBeDefined();
    values.forEach((v, i) => (worst = Math.max(worst, Math.abs(v - other[i]!) / Math.max(1e-3, Math.abs(v)))));
  }
  return worst;
}

describe.each([
  [2, "llama"],
  [3, "llama"],
  [2, "gpt2"], // tied embedding: one tensor, one share of state
])("optimizer and reducer sharded over %i ranks (%s)", (ranks, variant) => {
  test("stages 1–3 update as the replicated run does, hold 1/N of the state, and skip a non-finite update together", async () => {
    const dir = mkdtempSync(path.join(root, "zero-"));
    await writeCharModel(path.join(dir, variant), variant as "llama" | "gpt2");
    for (const stage of [0, 1, 2, 3]) {
      const run = launch(ranks, ["zero", dir, variant], 90_000, { SPIN_TEST_SHARDING: String(stage) });
      expect(run.status, run.stderr + run.stdout).toBe(0);
    }
    const runs = [0, 1, 2, 3].map((stage) => Array.from({ length: ranks }, (_, rank) => read(dir, `zero-${stage}`, rank)));
    const replicated = runs[0]![0];
    const applied = replicated.updates.map((u: { applied: boolean }) => u.applied);
    expect(applied).toEqual([true, true, false, true]);
    // Clipping bites (the norm is above 0.05) and the updates move the weights.
    expect(replicated.updates[0].gradNorm).toBeGreaterThan(0.05);
    expect(worstDifference(replicated.updates[0].params, replicated.updates[3].params)).toBeGreaterThan(1e-3);
    // The skipped update changed nothing.
    expect(replicated.updates[2].params).toEqual(replicated.updates[1].params);
    const totalState = replicated.stateNumel;
    // While the layers are sharded, whole-model calls are refused.
    expect(runs[3]![0].refused).toMatch(/model\.parameters: the layers' weights are sharded across ranks \(ZeRO stage 3, while training\)/);
    for (const stage of [1, 2, 3]) {
      for (let rank = 0; rank < ranks; rank++) {
        const sharded = runs[stage]![rank];
        sharded.updates.forEach((update: { applied: boolean; gradNorm: number; params: Params }, i: number) => {
          expect(update.applied, `stage ${stage} rank ${rank} update ${i}`).toBe(applied[i]);
          if (applied[i]) expect(Math.abs(update.gradNorm - replicated.updates[i].gradNorm) / replicated.updates[i].gradNorm).toBeLessThan(1e-12);
          // Float64: the sharded and replicated arithmetic differ in rounding only.
          expect(worstDifference(replicated.updates[i].params, update.params), `stage ${stage} rank ${rank} update ${i}`).toBeLessThan(1e-9);
        });
        // Each rank keeps its own shard: about 1/N of the state (the buckets' padding apart).
        expect(sharded.stateNumel).toBeLessThanOrEqual(Math.ceil(totalState / ranks) + 64);
        expect(sharded.stateNumel).toBeGreaterThanOrEqual(Math.floor(totalState / ranks) - 64 * ranks);
      }
    }
  }, 240_000);
});

test.each([
  [2, 1, 6, "1", ""], // a short last update: its 2 rows split 1 + 1
  [1, 2, 8, "2", ""], // gradients reduced every micro-batch into the shards
  [2, 1, 8, "2", "lora"], // the adapter's state and gradients sharded
  [1, 2, 8, "3", ""], // layers gathered per use, with gradient checkpointing
  [2, 1, 6, "3", "lora"],
])("SpinTrainer on 2 ranks, batch %i × %i accumulation, %i rows, ZeRO stage %s %s, equals 1 rank with batch 4", async (batch, accumulation, count, stage, lora) => {
  const dir = mkdtempSync(path.join(root, "train-"));
  await writeCharCheckpoint(path.join(dir, "model"));
  const env: Record<string, string> = { SPIN_TEST_SHARDING: stage, ...(lora ? { SPIN_TEST_LORA: "1" } : {}) };
  const two = launch(2, ["train", dir, String(batch), String(accumulation), String(count)], 90_000, env);
  expect(two.status, two.stderr + two.stdout).toBe(0);
  const one = runAlone(["train", dir, "4", "1", String(count)], { ...env, SPIN_TEST_SHARDING: "0" });
  expect(one.status, one.stderr).toBe(0);
  const single = read(dir, "train", 0); // the 1-rank run wrote rank 0 last; rank 1 is the 2-rank run
  const rank1 = read(dir, "train", 1);
  expect(worstDifference(single.params, rank1.params)).toBeLessThan(1e-6);
  single.losses.forEach((loss: number, i: number) => expect(Math.abs(rank1.losses[i] - loss) / Math.abs(loss)).toBeLessThan(1e-6));
  expect(single.losses[0]).not.toBeCloseTo(single.losses[3], 6);
}, 120_000);

test("a sharded run resumed from its checkpoint equals one that was not stopped; its shards resume only sharded", async () => {
  const dir = mkdtempSync(path.join(root, "resume-"));
  await writeCharCheckpoint(path.join(dir, "model"));
  const train = (stage: string, options: { tag: string; maxSteps: number }) =>
    launch(2, ["train", dir, "2", "2", "8", JSON.stringify(options)], 90_000, { SPIN_TEST_SHARDING: stage });
  for (const run of [train("2", { tag: "stopped", maxSteps: 2 }), train("2", { tag: "stopped", maxSteps: 4 }), train("2", { tag: "straight", maxSteps: 4 })]) {
    expect(run.status, run.stderr + run.stdout).toBe(0);
  }
  const resumed = read(dir, "train-stopped", 0);
  const straight = read(dir, "train-straight", 0);
  expect(resumed.losses).toHaveLength(2);
  expect(resumed.losses).toEqual(straight.losses.slice(2));
  expect(resumed.params).toEqual(straight.params);
  const checkpoint = path.join(dir, "run-stopped", "checkpoint-4");
  for (const rank of [0, 1]) expect(existsSync(path.join(checkpoint, `optimizer-rank-${rank}-of-2.safetensors`))).toBe(true);
  expect(existsSync(path.join(checkpoint, "optimizer.safetensors"))).toBe(false);
  expect(JSON.parse(readFileSync(path.join(checkpoint, "trainer_state.json"), "utf8")).zeroStage).toBe(2);
  // No staging folder is left behind.
  expect(existsSync(path.join(dir, "run-stopped", ".optimizer-shards-4"))).toBe(false);

  // Replicated state resumes sharded (each rank takes its elements); shards resume at another stage.
  for (const [first, second] of [
    ["0", "1"],
    ["1", "2"],
    ["2", "3"],
  ] as const) {
    const tag = `switch-${first}-${second}`;
    expect(train(first, { tag, maxSteps: 2 }).status).toBe(0);
    const run = train(second, { tag, maxSteps: 4 });
    expect(run.status, run.stderr + run.stdout).toBe(0);
    const switched = read(dir, `train-${tag}`, 0);
    expect(worstDifference(straight.params, switched.params)).toBeLessThan(1e-6);
    if (second === "3") {
      // Rank 0 saved the weights it received a layer at a time: the final model, exactly.
      const saved = await loadSafetensors(path.join(dir, `run-${tag}`, "checkpoint-4", "model", "model.safetensors"));
      try {
        expect(Object.keys(saved).sort()).toEqual(Object.keys(switched.params).sort());
        for (const [name, values] of Object.entries(switched.params as Params)) expect(Array.from(saved[name]!.toTypedArray() as Float64Array), name).toEqual(values);
      } finally {
        for (const t of Object.values(saved)) t.dispose();
      }
    }
  }
  // Shards cannot resume replicated.
  expect(train("0", { tag: "stopped", maxSteps: 6 }).status).not.toBe(0);
  expect(read(dir, "train-error", 0).message).toMatch(/holds optimizer state sharded over 2 ranks \(ZeRO stage 2\); this run has 2 rank\(s\) at stage 0/);
}, 240_000);

test("a rank killed during a stage-3 run fails the job within the timeout, naming the rank", async () => {
  const dir = mkdtempSync(path.join(root, "kill-"));
  await writeCharCheckpoint(path.join(dir, "model"));
  let rank1Pid = 0;
  let killed = false;
  const started = Date.now();
  const args = ["launch", "--nproc-per-node=2", `--master-port=${freshPort()}`, "--", process.execPath, WORKER, "train", dir, "2", "1", "8", JSON.stringify({ tag: "kill", maxSteps: 40 })];
  const run = spawnNode(
    CLI,
    args,
    (line) => {
      rank1Pid ||= Number(/^\[rank 1\] pid (\d+)$/.exec(line)?.[1] ?? 0);
      if (!killed && rank1Pid && /^\[rank 1\] step 2$/.test(line)) {
        killed = true;
        process.kill(rank1Pid, "SIGKILL");
      }
    },
    { SPIN_TEST_SHARDING: "3" },
  );
  const exit = await run.exit;
  expect(killed).toBe(true);
  expect(exit.code).not.toBe(0);
  expect(exit.stdout + exit.stderr).toMatch(/rank 1 failed \(signal SIGKILL\)/);
  expect((Date.now() - started) / 1000).toBeLessThan(45);
}, 90_000);

test("stage 3 without gradient checkpointing is refused before training, naming the setting", async () => {
  const dir = mkdtempSync(path.join(root, "no-ckpt-"));
  await writeCharCheckpoint(path.join(dir, "model"));
  const run = launch(2, ["train", dir, "2", "1", "8"], 90_000, { SPIN_TEST_SHARDING: "3", SPIN_TEST_NO_CHECKPOINT: "1" });
  expect(run.status).not.toBe(0);
  expect(read(dir, "train-error", 0).message).toMatch(/ZeRO stage 3 .* set gradientCheckpointing \(gradient_checkpointing: true\)/);
}, 120_000);

describe("the ZeRO stage in configs", () => {
  const write = (name: string, text: string) => {
    const file = path.join(root, name);
    writeFileSync(file, text);
    return file;
  };
  const stageOf = async (yaml: string) => (await distributedOptions(await loadRunConfig(write("run.yaml", yaml), []))).sharding;

  test("zero_stage, an accelerate config, its DeepSpeed file, a DeepSpeed JSON", async () => {
    expect(await stageOf("model_name_or_path: m\n")).toBe(0);
    expect(await stageOf("model_name_or_path: m\nzero_stage: 2\n")).toBe(2);
    expect(await stageOf("model_name_or_path: m\nzero_stage: 3\n")).toBe(3);
    const accelerate = write("accelerate.yaml", "compute_environment: LOCAL_MACHINE\ndistributed_type: DEEPSPEED\ndeepspeed_config:\n  zero_stage: 1\n  offload_optimizer_device: none\n");
    expect(await stageOf(`model_name_or_path: m\nconfig_file: ${accelerate}\n`)).toBe(1);
    // zero_stage wins over the file.
    expect(await stageOf(`model_name_or_path: m\nconfig_file: ${accelerate}\nzero_stage: 0\n`)).toBe(0);
    write("ds.json", JSON.stringify({ zero_optimization: { stage: 2, overlap_comm: true }, train_micro_batch_size_per_gpu: "auto" }));
    const pointing = write("accelerate-file.yaml", "distributed_type: DEEPSPEED\ndeepspeed_config:\n  deepspeed_config_file: ds.json\n");
    expect(await stageOf(`model_name_or_path: m\nconfig_file: ${pointing}\n`)).toBe(2);
    expect(await stageOf(`model_name_or_path: m\nconfig_file: ${path.join(root, "ds.json")}\n`)).toBe(2);
  });

  test("other stages and unreadable files are refused, naming the key or file", async () => {
    await expect(stageOf("model_name_or_path: m\nzero_stage: 4\n")).rejects.toThrow(/zero_stage: the ZeRO stage must be 0, 1, 2 or 3, got 4/);
    await expect(stageOf("model_name_or_path: m\nzero_stage: 1.5\n")).rejects.toThrow(/zero_stage/);
    const five = write("zero5.yaml", "deepspeed_config:\n  zero_stage: 5\n");
    await expect(stageOf(`model_name_or_path: m\nconfig_file: ${five}\n`)).rejects.toThrow(new RegExp(`zero_stage \\(from ${five}\\): the ZeRO stage must be`));
    await expect(stageOf(`model_name_or_path: m\nconfig_file: ${path.join(root, "missing.yaml")}\n`)).rejects.toThrow(/cannot read config_file .*missing\.yaml/);
    const list = write("list.yaml", "- 1\n- 2\n");
    await expect(stageOf(`model_name_or_path: m\nconfig_file: ${list}\n`)).rejects.toThrow(/must hold a mapping/);
  });
});
