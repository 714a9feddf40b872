// Data parallelism over c10d/Gloo on loopback: collectives for 2 and 3 ranks, a SPIN run on
// 2 ranks with per-rank batch b equal to 1 rank with batch 2b (with and without gradient
// accumulation), the gradient reducer against the ranks' own gradients, data-parallel
// generation and `iterate`, and a dead or hung rank failing the job within the timeout. Workers
// are real processes started by `spin-native launch`.
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";

import { describe, expect, test } from "vitest";

import { maxRelativeDifference, sftRows, spawnNode, writeTinyCheckpoint } from "./cli-helpers.js";
import { cudaAvailable, rankDevice } from "../lib/index.js";
import { writeJsonl } from "../lib/data/dataset-write.js";
import { writeCharModel } from "./tiny-char-model.js";
import { CLI, WORKER, distTestRoot, freshPort, launch, read, runAlone, writeCharCheckpoint } from "./dist-helpers.js";

const root = distTestRoot("spin-dist-");

describe.each([2, 3])("collectives on %i ranks", (ranks) => {
  test("allReduce sum/avg/max, broadcast, allGather, barrier", () => {
    const dir = mkdtempSync(path.join(root, "coll-"));
    const run = launch(ranks, ["collectives", dir]);
    expect(run.status, run.stderr + run.stdout).toBe(0);
    const n = ranks;
    for (let rank = 0; rank < n; rank++) {
      const r = read(dir, "collectives", rank);
      expect(r.sum).toEqual([(n * (n + 1)) / 2, (10 * n * (n + 1)) / 2]);
      expect(r.avg).toBeCloseTo((n + 1) / 2, 12);
      expect(r.max).toBe(Math.max(...Array.from({ length: n }, (_, k) => (k * 7) % 5)));
      expect(r.broadcast).toEqual([42, 1]);
      expect(r.gathered).toEqual(Array.from({ length: n }, (_, k) => [k, k * k]));
    }
    // Output is prefixed by rank.
    expect(run.stdout + run.stderr).not.toContain("[launch]");
  });
});

test.each([
  [2, 1, 8, ""],
  [1, 2, 8, ""], // the reduction overlaps the last micro-batch's backward only
  [2, 1, 6, ""], // the last update's 2 rows are split 1 + 1, not 2 + 0
  [2, 1, 8, "lora"], // only the adapter's gradients are reduced
  [1, 2, 8, "lora"],
])("SPIN on 2 ranks with batch %i × %i accumulation steps equals 1 rank with batch 4 (%i rows) %s", async (batch, accumulation, count, lora) => {
  const dir = mkdtempSync(path.join(root, "train-"));
  await writeCharCheckpoint(path.join(dir, "model"));
  const env: Record<string, string> = lora ? { SPIN_TEST_LORA: "1" } : {};
  const two = launch(2, ["train", dir, String(batch), String(accumulation), String(count)], 90_000, env);
  expect(two.status, two.stderr + two.stdout).toBe(0);
  const one = runAlone(["train", dir, "4", "1", String(count)], env);
  expect(one.status, one.stderr).toBe(0);
  const single = read(dir, "train", 0); // the 1-rank run wrote rank 0 last; rank 1 is the 2-rank run
  const rank1 = read(dir, "train", 1);
  let worst = 0;
  for (const [name, values] of Object.entries(single.params as Record<string, number[]>)) {
    const other = (rank1.params as Record<string, number[]>)[name]!;
    values.forEach((v, i) => (worst = Math.max(worst, Math.abs(v - other[i]!) / Math.max(1e-3, Math.abs(v)))));
  }
  expect(worst).toBeLessThan(1e-6);
  if (lora) expect(Object.keys(single.params).filter((name) => name.endsWith("lora_B.weight")).length).toBeGreaterThan(0);
  expect(single.losses.length).toBe(4);
  rank1.losses.forEach((loss: number, i: number) => expect(Math.abs(loss - single.losses[i]) / Math.abs(single.losses[i])).toBeLessThan(1e-6));
  // The updates moved the parameters (the comparison is not vacuous).
  expect(single.losses[0]).not.toBeCloseTo(single.losses[3], 6);
}, 120_000);

describe.each([
  ["llama", "1"],
  ["gpt2", "1"], // tied embedding: one gradient under two uses
  ["llama", "0"], // not overlapped: every bucket after backward
])("gradient reducer (%s, overlap=%s)", (variant, overlap) => {
  test("averages the ranks' accumulated gradients, buckets started during backward", async () => {
    const dir = mkdtempSync(path.join(root, "reduce-"));
    await writeCharModel(path.join(dir, variant), variant as "llama" | "gpt2");
    const run = spawnSync(process.execPath, [CLI, "launch", "--nproc-per-node=2", `--master-port=${freshPort()}`, "--", process.execPath, WORKER, "reduce", dir, variant], {
      encoding: "utf8",
      timeout: 90_000,
      env: { ...process.env, OMP_NUM_THREADS: "1", OVERLAP: overlap },
    });
    expect(run.status, run.stderr + run.stdout).toBe(0);
    const ranks = [read(dir, "reduce", 0), read(dir, "reduce", 1)];
    const expectMean = (reducedKey: string, localKey: string) => {
      for (const r of ranks) {
        for (const [name, reduced] of Object.entries(r[reducedKey] as Record<string, number[]>)) {
          const a = ranks[0][localKey][name] as number[];
          const b = ranks[1][localKey][name] as number[];
          reduced.forEach((v, i) => expect(Math.abs(v - (a[i]! + b[i]!) / 2)).toBeLessThanOrEqual(1e-15 * Math.max(1, Math.abs(v))));
        }
      }
    };
    expectMean("reduced", "local");
    // The round after a failed one (below) starts clean.
    expectMean("reducedAfter", "localAfter");
    for (const r of ranks) {
      expect(r.stats.buckets).toBeGreaterThan(4);
      // Overlapped: every bucket's gradients are final before backward returns.
      expect(r.stats.overlapped).toBe(overlap === "1" ? r.stats.buckets : 0);
      if (overlap === "1") expect(r.twice).toMatch(/received a gradient after its bucket's all-reduce had started/);
      else expect(r.twice).toBeNull();
    }
    // The ranks' gradients differed (the average is not vacuous).
    const name = Object.keys(ranks[0].local)[0]!;
    expect(ranks[0].local[name]).not.toEqual(ranks[1].local[name]);
  }, 120_000);
});

test("a 2-rank run resumed from its checkpoint equals one that was not stopped; another world size is refused", async () => {
  const dir = mkdtempSync(path.join(root, "resume-"));
  await writeCharCheckpoint(path.join(dir, "model"));
  const train = (ranks: number, options: { tag: string; maxSteps: number }) => {
    const args = ["train", dir, String(4 / ranks), "1", "8", JSON.stringify(options)];
    return ranks === 1
      ? runAlone([...args])
      : launch(ranks, args);
  };
  for (const run of [train(2, { tag: "stopped", maxSteps: 2 }), train(2, { tag: "stopped", maxSteps: 4 }), train(2, { tag: "straight", maxSteps: 4 })]) {
    expect(run.status, run.stderr + run.stdout).toBe(0);
  }
  const resumed = read(dir, "train-stopped", 0);
  const straight = read(dir, "train-straight", 0);
  expect(resumed.losses).toHaveLength(2); // updates 3 and 4 only
  expect(resumed.losses).toEqual(straight.losses.slice(2));
  expect(resumed.params).toEqual(straight.params);
  const refused = train(1, { tag: "stopped", maxSteps: 6 });
  expect(refused.status).toBe(3);
  expect(read(dir, "train-error", 0).message).toMatch(/was written by a run of 2 rank\(s\); this run has 1\. Resume with the same world size/);
}, 120_000);

test("Ctrl-C reaching one rank stops every rank after the same update, with its checkpoint", async () => {
  const dir = mkdtempSync(path.join(root, "stop-"));
  await writeCharCheckpoint(path.join(dir, "model"));
  let rank1Pid = 0;
  let sent = false;
  const options = JSON.stringify({ tag: "stop", maxSteps: 40 });
  const run = spawnNode(CLI, ["launch", "--nproc-per-node=2", `--master-port=${freshPort()}`, "--", process.execPath, WORKER, "train", dir, "2", "1", "8", options], (line) => {
    rank1Pid ||= Number(/^\[rank 1\] pid (\d+)$/.exec(line)?.[1] ?? 0);
    // Only rank 1 hears it: rank 0 learns it from the update's collective agreement.
    if (!sent && rank1Pid && /^\[rank 1\] step 2$/.test(line)) {
      sent = true;
      process.kill(rank1Pid, "SIGINT");
    }
  });
  const exit = await run.exit;
  expect(exit.code, exit.stdout + exit.stderr).toBe(0);
  expect(sent).toBe(true);
  const [zero, one] = [read(dir, "train-stop", 0), read(dir, "train-stop", 1)];
  expect(zero.aborted && one.aborted).toBe(true);
  expect(zero.globalStep).toBe(one.globalStep);
  expect(zero.globalStep).toBeLessThan(40);
  expect(zero.params).toEqual(one.params);
  expect(existsSync(path.join(dir, "run-stop", `checkpoint-${zero.globalStep}`))).toBe(true);
}, 120_000);

test("rankDevice: 'cuda' is the local rank's GPU in a data-parallel run", () => {
  expect(rankDevice("cuda", { WORLD_SIZE: "4", LOCAL_RANK: "3" })).toBe("cuda:3");
  expect(rankDevice("cuda", {})).toBe("cuda");
  expect(rankDevice("cuda:1", { WORLD_SIZE: "4", LOCAL_RANK: "3" })).toBe("cuda:1");
  expect(rankDevice("cpu", { WORLD_SIZE: "4", LOCAL_RANK: "3" })).toBe("cpu");
});

// Where libtorch has CUDA and a GPU is visible (scripts/gpu-check.sh): NCCL in a group of one.
describe.runIf(cudaAvailable())("NCCL on one GPU (world size 1)", () => {
  test("collectives on CUDA and CPU tensors, and the overlapped gradient reducer", async () => {
    const dir = mkdtempSync(path.join(root, "nccl-"));
    await writeCharModel(path.join(dir, "llama"));
    const run = spawnSync(process.execPath, [WORKER, "nccl", dir, String(freshPort())], { encoding: "utf8", timeout: 90_000 });
    expect(run.status, run.stderr + run.stdout).toBe(0);
    const r = read(dir, "nccl", 0);
    for (const [name, reduced] of Object.entries(r.reduced as Record<string, number[]>)) expect(reduced, name).toEqual(r.local[name]);
    expect(r.stats.overlapped).toBe(r.stats.buckets);
    expect(r.twice).toMatch(/after its bucket's all-reduce had started/);
    for (const where of [process.env.SPIN_TEST_DEVICE ?? "cuda:0", "cpu"]) {
      expect(r[where].reduced).toEqual([1.5, -2]);
      expect(r[where].gathered).toEqual([[1.5, -2]]);
    }
  }, 120_000);
});

test("generation on 2 ranks equals generation on 1 rank", async () => {
  const dir = mkdtempSync(path.join(root, "gen-"));
  await writeCharCheckpoint(path.join(dir, "model"));
  const two = launch(2, ["generate", dir]);
  expect(two.status, two.stderr + two.stdout).toBe(0);
  const one = runAlone(["generate", dir]);
  expect(one.status, one.stderr).toBe(0);
  const merged = readFileSync(path.join(dir, "gen-2", "train.jsonl"), "utf8");
  const single = readFileSync(path.join(dir, "gen-1", "train", "train-0.jsonl"), "utf8");
  expect(merged.split("\n").filter(Boolean)).toHaveLength(7);
  expect(merged).toBe(single);
  // The summary over ranks equals the single generator's (rank 1 of the 2-rank run; the 1-rank
  // run wrote rank 0's file last); some rows end with EOS, some run to the length limit.
  const [alone, spread] = [read(dir, "generate", 0), read(dir, "generate", 1)];
  expect(alone.eosRate).toBeGreaterThan(0);
  expect(alone.meanGeneratedTokens).toBeLessThan(8);
  expect(spread.eosRate).toBeCloseTo(alone.eosRate, 12);
  expect(spread.meanGeneratedTokens).toBeCloseTo(alone.meanGeneratedTokens, 12);
}, 120_000);

test("spin-native iterate under launch on 2 ranks equals 1 rank with twice the batch", async () => {
  const dir = mkdtempSync(path.join(root, "iterate-"));
  await writeTinyCheckpoint(path.join(dir, "base"));
  await writeJsonl(path.join(dir, "sft.jsonl"), sftRows(16));
  const config = (runDir: string, batch: number) =>
    [
      `model_name_or_path: ${path.join(dir, "base")}`,
      `input: ${path.join(dir, "sft.jsonl")}`,
      `output_dir: ${runDir}`,
      "iterations: 1",
      "threads: 1",
      "batch_size: 4",
      "max_new_tokens: 4",
      "learning_rate: 1.0e-3",
      "optim: adamw_torch",
      "warmup_ratio: 0",
      `per_device_train_batch_size: ${batch}`,
      "save_strategy: 'no'",
      "max_length: 64",
      "max_prompt_length: 48",
      // Many small buckets, overlapped with backward (the 1-rank run ignores them).
      "ddp_bucket_cap_mb: 0.05",
      "ddp_timeout: 120",
    ].join("\n");
  writeFileSync(path.join(dir, "two.yaml"), config(path.join(dir, "run-2"), 2));
  writeFileSync(path.join(dir, "one.yaml"), config(path.join(dir, "run-1"), 4));
  const port = freshPort();
  const two = spawnSync(process.execPath, [CLI, "launch", "--nproc-per-node=2", `--master-port=${port}`, "--", process.execPath, CLI, "iterate", path.join(dir, "two.yaml")], {
    encoding: "utf8",
    timeout: 120_000,
    env: { ...process.env, OMP_NUM_THREADS: "1" },
  });
  expect(two.status, two.stderr + two.stdout).toBe(0);
  const one = spawnSync(process.execPath, [CLI, "iterate", path.join(dir, "one.yaml")], { encoding: "utf8", timeout: 120_000, env: { ...process.env, OMP_NUM_THREADS: "1" } });
  expect(one.status, one.stderr + one.stdout).toBe(0);
  // The same generated rows, merged from the ranks' fractions.
  expect(readFileSync(path.join(dir, "run-2", "iter0", "data", "train.jsonl"), "utf8")).toBe(
    readFileSync(path.join(dir, "run-1", "iter0", "data", "train", "train-0.jsonl"), "utf8"),
  );
  const worst = await maxRelativeDifference(path.join(dir, "run-2", "iter0", "model", "model.safetensors"), path.join(dir, "run-1", "iter0", "model", "model.safetensors"));
  expect(worst).toBeLessThan(1e-4);
  const state = JSON.parse(readFileSync(path.join(dir, "run-2", "run.json"), "utf8"));
  expect(state.iteration[0].train.steps).toBe(4);
  // The generation summary covers every rank's rows, as the 1-rank run's does.
  const alone = JSON.parse(readFileSync(path.join(dir, "run-1", "run.json"), "utf8"));
  for (const key of ["rows", "eosRate", "meanGeneratedTokens"]) expect(state.iteration[0].generate[key], key).toBeCloseTo(alone.iteration[0].generate[key], 12);
}, 240_000);

test.each([
  // Rank 0's all-reduce gives up after the 8 s timeout; the launcher then stops rank 1.
  ["hangs", "hang", /rank 0 failed \(exit code 4\)/],
  // The launcher sees rank 1 die; rank 0 may be stopped before its collective fails.
  ["is killed with SIGKILL", "die", /rank 1 failed \(signal SIGKILL\)/],
])("a rank that %s fails the job within the timeout, naming the rank", (_, mode, failed) => {
  const dir = mkdtempSync(path.join(root, `${mode}-`));
  const started = Date.now();
  const run = launch(2, [mode, dir], 60_000);
  const seconds = (Date.now() - started) / 1000;
  expect(run.status).not.toBe(0);
  expect(run.stdout + run.stderr).toMatch(failed);
  expect(seconds).toBeLessThan(45);
  const reported = existsSync(path.join(dir, `${mode}-rank0.json`));
  if (mode === "hang") expect(reported).toBe(true);
  if (reported) {
    const r = read(dir, mode, 0);
    expect(r.code).toBe("IO");
    expect(r.error).toMatch(/allReduce failed on rank 0 of 2 \(a peer died, hung past the 8000 ms timeout, or disconnected\)/);
  }
}, 90_000);
